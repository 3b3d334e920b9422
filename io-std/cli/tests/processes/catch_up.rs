//! A replica that stalls under load catches up while the load goes on, whatever the state's
//! size: three `fleet rsl serve` processes on 127.0.0.1 holding 100,000 keys, a follower
//! frozen with SIGSTOP for 3 s while clients keep writing, then SIGCONT. It must reach the
//! leader's position at the moment it resumed within a few seconds, while writes continue;
//! then the leader is killed and service must resume within the usual failover time. The
//! history (on keys of their own, so it can be checked from an empty map) is linearizable.
//! Every wait is bounded; the children are SIGKILLed when the test ends, pass or fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use crate::support::assert_linearizable;
use crate::support::{first_completion_after, read_history, Cluster, ClusterOptions, StatsLine};
use fleet_cli::bench::{run_rsl, BenchOptions};

const VIEW_TIMEOUT_MS: u64 = 1000;
/// Keys in the replicated state before the stall.
const STATE_KEYS: u64 = 100_000;
const PAUSE: Duration = Duration::from_secs(3);
/// How long the resumed follower may take to reach where the leader was when it resumed.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(5);

fn options(keys: u64, first_key: u64, duration: Duration, fill: bool) -> BenchOptions {
    BenchOptions {
        clients: if fill { 32 } else { 8 },
        duration,
        value_size: if fill { 16 } else { 64 },
        keys,
        first_key,
        read_pct: 50,
        fill,
        op_timeout: Duration::from_secs(3),
        history: None,
        progress: false,
        load_threads: 2,
        pipeline: 1,
        connect: true,
        share_socket: true,
    }
}

fn leader_of(stats: &[Option<StatsLine>]) -> Option<usize> {
    stats.iter().position(|s| s.is_some_and(|s| s.leader))
}

#[test]
fn a_follower_frozen_for_3s_under_load_catches_up_while_writes_go_on() {
    let mut cluster = Cluster::start_with(&ClusterOptions {
        stats_lines: true,
        ..ClusterOptions::local("catch-up", VIEW_TIMEOUT_MS)
    });
    let setup = cluster.setup.clone();

    // The state: 100,000 keys.
    let filled = run_rsl(&setup, &options(STATE_KEYS, 0, Duration::from_secs(120), true)).unwrap();
    assert_eq!((filled.ops, filled.errors), (STATE_KEYS, 0), "the fill wrote every key: {}", filled.summary());

    let stats = cluster.wait_for_stats(Duration::from_secs(5), |s| leader_of(s).is_some()).unwrap();
    let leader = leader_of(&stats).unwrap();
    let follower = (leader + 1) % 3;

    // Load on keys of its own, recorded; the stall, the catch-up and the leader's kill all
    // happen while it runs.
    let history = cluster.dir.join("history.jsonl");
    let mut load = options(64, 1 << 40, Duration::from_secs(16), false);
    load.history = Some(history.clone());
    let start = Instant::now();
    let (caught_up_after, killed_at_us, result) = std::thread::scope(|s| {
        let bench = s.spawn(|| run_rsl(&setup, &load));
        std::thread::sleep(Duration::from_secs(2));
        cluster.pause(follower);
        std::thread::sleep(PAUSE);
        // Where the leader is now (its last stats line is at most a second old: a lower bound).
        let target = cluster.stats()[leader].map_or(0, |s| s.executed);
        cluster.resume(follower);
        let resumed = Instant::now();
        let caught = cluster
            .wait_for_stats(CATCH_UP_LIMIT, |s| s[follower].is_some_and(|f| f.executed >= target))
            .map(|_| resumed.elapsed());
        let still_loading = start.elapsed() < Duration::from_secs(12);
        // The caught-up follower must be able to serve in a new view.
        std::thread::sleep(Duration::from_secs(1));
        let at = start.elapsed().as_micros() as u64;
        cluster.kill(leader);
        (caught.map(|d| (d, still_loading, target)), at, bench.join().unwrap())
    });
    let (caught_up_after, still_loading, target) = caught_up_after.unwrap_or_else(|e| panic!("no catch-up: {e}"));
    assert!(still_loading, "the catch-up happened while writes went on");
    eprintln!("the frozen follower reached operation {target} {caught_up_after:?} after it resumed");

    let result = result.unwrap();
    assert!(result.ops > 500, "{}", result.summary());
    let records = read_history(&history);
    let resumed = first_completion_after(&records, killed_at_us).expect("operations completed after the kill");
    let gap_ms = (resumed - killed_at_us) / 1000;
    assert!(gap_ms < 2 * VIEW_TIMEOUT_MS, "service resumed {gap_ms} ms after the leader's kill");
    assert_linearizable(&history);
}
