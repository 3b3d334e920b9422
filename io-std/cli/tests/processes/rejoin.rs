//! In-memory replicas restarted without their state, with real processes on 127.0.0.1: under
//! a recorded load, the leader is killed with SIGKILL and started again (empty), then, once
//! it has rejoined, another replica is killed and started again. The history is
//! linearizable, and the cluster serves after the second kill, when the quorum needs the
//! replica that came back empty. Every loop is bounded; children are SIGKILLed at the end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::assert_linearizable;
use crate::support::{completed_between, read_history, Cluster, ClusterOptions};
use fleet_cli::bench::{run_rsl, BenchOptions};

const VIEW_TIMEOUT_MS: u64 = 500;

/// Waits (at most 15 s) until `log` says the replica rejoined.
fn wait_rejoined(log: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("rejoined") || Instant::now() >= deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn in_memory_replicas_restarted_without_state_rejoin_and_lose_nothing() {
    let mut cluster =
        Cluster::start_with(&ClusterOptions { stats_lines: true, ..ClusterOptions::local("rejoin", VIEW_TIMEOUT_MS) });
    let setup = cluster.setup.clone();
    let history = cluster.dir.join("history.jsonl");
    let opts = BenchOptions { value_size: 64, ..BenchOptions::recorded(&history, Duration::from_secs(14)) };
    let start = Instant::now();
    let (result, second_kill_us, first_text, second_text) = std::thread::scope(|s| {
        let load = s.spawn(|| run_rsl(&setup, &opts));
        // Replica 0 leads view 1.0: kill it, then start it again without state.
        std::thread::sleep(Duration::from_millis(2000));
        cluster.kill(0);
        std::thread::sleep(Duration::from_millis(1500));
        cluster.spawn(0, "empty");
        let first_text = wait_rejoined(&cluster.logs[0]);
        // Now replica 1: the next quorum is {0, 2}, so the replica that came back empty
        // must promise and vote.
        std::thread::sleep(Duration::from_millis(1000));
        let second_kill_us = start.elapsed().as_micros() as u64;
        cluster.kill(1);
        std::thread::sleep(Duration::from_millis(2000));
        cluster.spawn(1, "empty");
        let second_text = wait_rejoined(&cluster.logs[1]);
        (load.join().unwrap(), second_kill_us, first_text, second_text)
    });
    let result = result.unwrap();
    assert!(first_text.contains("rejoined"), "the restarted leader rejoins:\n{first_text}");
    assert!(second_text.contains("rejoined"), "the second restarted replica rejoins:\n{second_text}");
    assert!(result.ops > 500, "{}", result.summary());

    // Served while replica 1 was down: by {0, 2}, with the rejoined replica's votes.
    let records = read_history(&history);
    let served = completed_between(&records, second_kill_us + 500_000, second_kill_us + 2_000_000);
    assert!(served > 50, "{served} operations completed while replica 1 was down");
    assert_linearizable(&history);
}

#[test]
fn a_durable_replica_whose_data_directory_is_deleted_rejoins_and_loses_nothing() {
    let mut cluster = Cluster::start_with(&ClusterOptions {
        stats_lines: true,
        data_dirs: true,
        ..ClusterOptions::local("rejoin-disk", VIEW_TIMEOUT_MS)
    });
    let setup = cluster.setup.clone();
    let mut client = fleet_io_std::rsl::RslClient::connect(&setup).unwrap();
    let t = Duration::from_secs(10);
    for i in 0..20 {
        client.put(format!("kept-{i}").as_bytes(), format!("v{i}").as_bytes(), t).unwrap();
    }
    // A replaced disk: replica 2 is killed, its directory deleted, and it starts again.
    cluster.kill(2);
    std::fs::remove_dir_all(cluster.dir.join("data-2")).unwrap();
    cluster.spawn(2, "new-disk");
    let text = wait_rejoined(&cluster.logs[2]);
    assert!(text.contains("no promise or vote stored"), "it knows it has no state:\n{text}");
    assert!(text.contains("rejoined"), "and rejoins:\n{text}");
    // Replica 0 goes: the quorum {1, 2} needs the replica with the new disk.
    cluster.kill(0);
    for i in 0..20 {
        let got = client.get(format!("kept-{i}").as_bytes(), t).unwrap();
        assert_eq!(got.as_deref(), Some(format!("v{i}").as_bytes()), "kept-{i} after the disk was replaced");
    }
    client.put(b"after", b"new disk", t).expect("{1, 2} accept writes");
}
