//! `fleet rsl status --json` against a live cluster of real processes, before and after the
//! leader is killed with SIGKILL: the leader changes, the dead replica shows unreachable,
//! and the survivors' lag is measured against the new leader. Bounded; children are
//! SIGKILLed at the end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use fleet_io_std::rsl::RslClient;
use support::{Cluster, FLEET};

/// Runs `fleet rsl status --json`; returns its exit code and the parsed array.
fn status(cluster: &Cluster) -> (i32, Vec<serde_json::Value>) {
    let out = Command::new(FLEET)
        .args(["rsl", "status", "--config", cluster.config.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    (out.status.code().unwrap_or(-1), rows)
}

fn leader_of(rows: &[serde_json::Value]) -> Option<u64> {
    rows.iter().find(|r| r["leader"] == true).map(|r| r["id"].as_u64().unwrap())
}

#[test]
fn status_shows_the_leader_change_after_a_leader_kill() {
    let mut cluster = Cluster::start("status", 500);
    let (code, rows) = status(&cluster);
    assert_eq!(code, 0, "{rows:?}");
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r["reachable"] == true), "{rows:?}");
    let first = leader_of(&rows).expect("a leader before the kill");
    let first_view = rows[first as usize]["view"].clone();
    assert!(rows.iter().all(|r| r["ops_complete"].as_u64().unwrap() >= 1), "the start-up put executed: {rows:?}");

    cluster.kill(first as usize);
    // Requests make the survivors suspect the dead leader; one completes once a new one leads.
    let mut client = RslClient::connect(&cluster.setup).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.put(b"after", b"kill", Duration::from_secs(2)).is_err() {
        assert!(Instant::now() < deadline, "no new leader within 20 s");
    }
    let (code, rows) = status(&cluster);
    assert_eq!(code, 0, "{rows:?}");
    let second = leader_of(&rows).expect("a leader after the kill");
    assert_ne!(second, first, "{rows:?}");
    assert_eq!(rows[first as usize]["reachable"], false, "{rows:?}");
    for r in rows.iter().filter(|r| r["reachable"] == true) {
        assert_ne!(r["view"], first_view, "the survivors are in a later view: {rows:?}");
        assert!(r["lag"].as_u64().is_some(), "lag measured against the new leader: {rows:?}");
    }
}
