//! Durable mode with real processes on 127.0.0.1: a replica killed with SIGKILL and
//! restarted from its data directory (with an empty application) rejoins through state
//! transfer, and the cluster stays linearizable across the kill, the restart and a later
//! view change whose quorum needs the restarted replica. Every loop is bounded in time;
//! children are SIGKILLed when the test ends, pass or fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::assert_linearizable;
use crate::support::{last_stats, Cluster, ClusterOptions, FLEET};
use fleet_cli::bench::{run_rsl, BenchOptions};
use fleet_proofs::history::HistoryRecord;

const VIEW_TIMEOUT_MS: u64 = 1000;

/// Three durable replicas (`--data-dir`) with stats lines, syncing on a thread whether
/// they lead or follow (the other durable tests use the default, `auto`, or `inline`).
fn durable_cluster(tag: &str) -> Cluster {
    Cluster::start_with(&ClusterOptions {
        stats_lines: true,
        data_dirs: true,
        extra_args: vec!["--sync".into(), "thread".into()],
        ..ClusterOptions::local(tag, VIEW_TIMEOUT_MS)
    })
}

/// The last `executed=` figure of a replica's stats lines.
fn executed(log: &Path) -> Option<u64> {
    last_stats(log).map(|s| s.executed)
}

fn bench(history: &Path, seconds: u64) -> BenchOptions {
    BenchOptions::recorded(history, Duration::from_secs(seconds))
}

#[test]
fn a_killed_replica_restarted_from_its_data_dir_rejoins_through_state_transfer() {
    let mut cluster = durable_cluster("restart");
    let setup = cluster.setup.clone();

    // Phase 1: load; replica 2 (a follower) is killed, the others go on, then it restarts
    // from its data directory with an empty application.
    let first = cluster.dir.join("history-1.jsonl");
    let opts = bench(&first, 6);
    let first_start = Instant::now();
    let result = std::thread::scope(|s| {
        let load = s.spawn(|| run_rsl(&setup, &opts));
        std::thread::sleep(Duration::from_millis(1500));
        cluster.kill(2);
        std::thread::sleep(Duration::from_millis(2000));
        cluster.spawn(2, "restarted");
        load.join().unwrap()
    })
    .unwrap();
    assert!(result.ops > 100, "{}", result.summary());
    assert_linearizable(&first);

    // The restarted replica replayed its log and caught up with the leader's execution
    // (operation numbers: each executes one batch of requests).
    let restarted_log = cluster.logs[2].clone();
    let target = executed(&cluster.logs[0]).expect("the leader logs its stats");
    assert!(target > 20, "the leader executed {target} batches");
    let deadline = Instant::now() + Duration::from_secs(15);
    while executed(&restarted_log).is_none_or(|e| e < target) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = std::fs::read_to_string(&restarted_log).unwrap();
    assert!(text.contains("recovered from"), "the replica replays its durable records:\n{text}");
    let caught_up = executed(&restarted_log).unwrap_or(0);
    assert!(caught_up >= target, "restarted replica executed {caught_up} of at least {target} operations:\n{text}");

    // Phase 2: kill the leader. The new view's quorum is {1, 2}: the restarted replica's
    // promises and votes are now needed, and no acknowledged write may be lost.
    let second = cluster.dir.join("history-2.jsonl");
    let opts = bench(&second, 5);
    let second_offset_us = first_start.elapsed().as_micros() as u64;
    let result = std::thread::scope(|s| {
        let load = s.spawn(|| run_rsl(&setup, &opts));
        std::thread::sleep(Duration::from_millis(1000));
        cluster.kill(0);
        load.join().unwrap()
    })
    .unwrap();
    assert!(result.ops > 50, "service resumed on {{1, 2}}: {}", result.summary());
    // Both phases as one history (phase 2's clock shifted to phase 1's, its clients
    // renumbered): every read after the restart must see every earlier write.
    let both = cluster.dir.join("history.jsonl");
    let mut all = std::fs::read_to_string(&first).unwrap();
    for line in std::fs::read_to_string(&second).unwrap().lines() {
        let mut r: HistoryRecord = serde_json::from_str(line).unwrap();
        r.client += 1000;
        r.invoke_us += second_offset_us;
        r.complete_us = r.complete_us.map(|c| c + second_offset_us);
        all.push_str(&serde_json::to_string(&r).unwrap());
        all.push('\n');
    }
    std::fs::write(&both, all).unwrap();
    assert_linearizable(&both);
}

/// `fleet rsl serve --id ID --data-dir DIR` in the foreground; its exit status and stderr.
fn serve_on(config: &Path, id: usize, dir: &Path) -> (bool, String) {
    let out = std::process::Command::new(FLEET)
        .args(["rsl", "serve", "--config", config.to_str().unwrap(), "--id", &id.to_string()])
        .args(["--data-dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_data_dir_of_another_replica_is_refused_with_a_sentence() {
    let mut cluster = durable_cluster("wrong-dir");
    cluster.kill(1);
    // Replica 1 started on replica 0's directory, while replica 0 uses it.
    let data0 = cluster.dir.join("data-0");
    let (ok, err) = serve_on(&cluster.config, 1, &data0);
    assert!(!ok);
    assert!(err.contains("in use by another running server"), "{err}");
    // The same once replica 0 is gone: the directory is still replica 0's.
    cluster.kill(0);
    let (ok, err) = serve_on(&cluster.config, 1, &data0);
    assert!(!ok);
    assert!(err.contains("different server"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
