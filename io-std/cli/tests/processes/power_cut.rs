//! Whole-cluster power cuts with real processes on 127.0.0.1: under a recorded load, every
//! replica of a durable cluster is killed with SIGKILL at once, at a random moment, and
//! restarted from its data directory; twenty times. After each round the cluster serves
//! again; at the end every key is read back, and the whole history (every round, and the
//! final reads) must be linearizable: no acknowledged write is lost. Every wait is bounded;
//! children are SIGKILLed when the test ends, pass or fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use crate::support::{kill_load, xorshift};
use crate::support::{read_back, write_linearizable};
use crate::support::{read_history, Cluster, ClusterOptions};
use fleet_cli::bench::run_rsl;
use fleet_io_std::rsl::RslClient;
use fleet_proofs::history::{HistoryRecord, RecordOp, RecordStatus};

const VIEW_TIMEOUT_MS: u64 = 1000;
const ROUNDS: u64 = 20;
const KEYS: u64 = 24;
const FIRST_KEY: u64 = 1 << 33;

#[test]
fn every_acknowledged_write_survives_twenty_power_cuts() {
    let mut cluster = Cluster::start_with(&ClusterOptions {
        stats_lines: true,
        data_dirs: true,
        ..ClusterOptions::local("power-cut", VIEW_TIMEOUT_MS)
    });
    let setup = cluster.setup.clone();
    let start = Instant::now();
    let mut all: Vec<HistoryRecord> = Vec::new();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut back_after = Vec::new();
    let mut acknowledged_writes = 0;
    for round in 0..ROUNDS {
        let history = cluster.dir.join(format!("history-{round}.jsonl"));
        let kill_after = Duration::from_millis(200 + xorshift(&mut rng) % 800);
        let opts = kill_load(&history, KEYS, FIRST_KEY, kill_after + Duration::from_millis(300));
        let offset_us = start.elapsed().as_micros() as u64;
        let result = std::thread::scope(|s| {
            let load = s.spawn(|| run_rsl(&setup, &opts));
            std::thread::sleep(kill_after);
            for id in 0..3 {
                cluster.kill(id);
            }
            load.join().unwrap()
        })
        .unwrap();
        for id in 0..3 {
            cluster.spawn(id, &format!("round-{round}"));
        }
        // The cluster serves again: a write commits.
        let restarted = Instant::now();
        let mut c = RslClient::connect(&setup).unwrap();
        c.put(format!("round-{round}").as_bytes(), b"back", Duration::from_secs(15))
            .unwrap_or_else(|e| panic!("round {round}: the cluster did not serve again: {e}"));
        back_after.push(restarted.elapsed());
        // This round's operations join the whole history, on one clock, with clients
        // renumbered so that rounds never share a client.
        for mut r in read_history(&history) {
            acknowledged_writes += usize::from(r.op == RecordOp::Set && r.status == RecordStatus::Ok);
            r.client += 100 * round;
            r.invoke_us += offset_us;
            r.complete_us = r.complete_us.map(|c| c + offset_us);
            all.push(r);
        }
        eprintln!("round {round}: {} ops before the cut, served again after {:?}", result.ops, back_after.last());
    }
    assert!(acknowledged_writes > 200, "only {acknowledged_writes} acknowledged writes: the load did not run");
    // Read every key back; the reads join the history.
    let mut c = RslClient::connect(&setup).unwrap();
    for key in FIRST_KEY..FIRST_KEY + KEYS {
        let invoke_us = start.elapsed().as_micros() as u64;
        let value = c.get(&key.to_be_bytes(), Duration::from_secs(10)).unwrap();
        let complete_us = start.elapsed().as_micros() as u64;
        all.push(read_back(key, invoke_us, complete_us, value));
    }
    write_linearizable(&cluster.dir.join("history.jsonl"), &mut all);
    let slowest = back_after.iter().max().unwrap();
    eprintln!("{ROUNDS} power cuts, {acknowledged_writes} acknowledged writes; back in at most {slowest:?}");
    // Back within about a view timeout: the restarted replicas elect a leader (one view
    // timeout, twice if the first candidate is not ready) and replay their logs.
    assert!(*slowest < Duration::from_millis(6 * VIEW_TIMEOUT_MS), "served again after {slowest:?}");
}
