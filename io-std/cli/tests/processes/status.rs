//! `fleet rsl status --json` against a live cluster of real processes, before and after the
//! leader is killed with SIGKILL: the leader changes, the dead replica shows unreachable,
//! and the survivors' lag is measured against the new leader. `fleet kv status --json`
//! against a durable KV cluster with a range moved: who owns what, each host's keys, and
//! what a dead owner leaves unowned. Bounded; children are SIGKILLed at the end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::kv::KvCluster;
use crate::support::{Cluster, FLEET};
use fleet_io_std::kv::KvBlockingClient;
use fleet_io_std::rsl::RslClient;

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

/// Runs `fleet kv status --json`; returns its exit code and the parsed object.
fn kv_status(cluster: &KvCluster) -> (i32, serde_json::Value) {
    let out = Command::new(FLEET)
        .args(["kv", "status", "--config", cluster.config.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    (out.status.code().unwrap_or(-1), v)
}

#[test]
fn kv_status_shows_who_owns_which_keys_and_what_a_dead_owner_leaves() {
    let t = Duration::from_secs(5);
    let mut cluster = KvCluster::start("kv-status", true, &[]);
    let mut c = KvBlockingClient::connect(&cluster.setup).unwrap();
    c.set(u64::MAX - 1, b"ready", Duration::from_secs(10)).expect("the KV cluster comes up within 10 s");
    for k in [3u64, 7, 15] {
        c.set(k, b"v", t).unwrap();
    }
    c.shard(0, Some(10), 1, None, t).unwrap();
    let expected = serde_json::json!([
        { "lo": 0, "hi": 10, "owner": 1 },
        { "lo": 10, "hi": null, "owner": 0 },
    ]);
    // The Shard is answered when the transfer starts; until host 1 acknowledges its last
    // part, status shows [0, 10) moving from host 0 to host 1.
    let deadline = Instant::now() + t;
    let v = loop {
        let (code, v) = kv_status(&cluster);
        if v["ranges"] == expected {
            assert_eq!(code, 0, "{v}");
            break v;
        }
        let moving = serde_json::json!({ "lo": 0, "hi": 10, "moving_from": 0, "moving_to": 1 });
        assert!(v["ranges"].as_array().unwrap().contains(&moving), "only a transfer in flight: {v}");
        assert!(Instant::now() < deadline, "the transfer did not finish in 5 s: {v}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let hosts = v["hosts"].as_array().unwrap();
    assert!(hosts.iter().all(|h| h["reachable"] == true && h["joining"] == false && h["durable"] == true), "{v}");
    assert_eq!(hosts[0]["keys"], 2, "15 and the ready key stay on host 0: {v}");
    assert_eq!(hosts[1]["keys"], 2, "3 and 7 moved to host 1: {v}");
    assert!(hosts[0]["sets"].as_u64().unwrap() >= 4, "{v}");

    // Host 2 owns nothing: its death leaves no key unowned, but it is unreachable.
    cluster.kill(2);
    let (code, v) = kv_status(&cluster);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["hosts"][2]["reachable"], false, "{v}");
    assert_eq!(v["ranges"], expected, "{v}");
    // Host 1 held [0, 10): nobody reports it now.
    cluster.kill(1);
    let (code, v) = kv_status(&cluster);
    assert_eq!(code, 1, "{v}");
    let gap = serde_json::json!({ "lo": 0, "hi": 10, "owner": null });
    assert!(v["ranges"].as_array().unwrap().contains(&gap), "{v}");
}
