//! KV hosts started without their state (`fleet kv serve` without `--data-dir`) with real
//! processes on 127.0.0.1: the scenario. Keys 3, 7, 50 and 60 are set, the range
//! [0, 10) is sharded to host 1, host 0 is killed with SIGKILL and started again with the
//! same command. It must not come back as the owner of every key: its own keys (50, 60) are
//! reported lost, never "not found"; keys 3 and 7 stay at host 1, reached through host 0 by
//! redirect, and a write to key 3 through host 0 lands at host 1 (no second owner). Every
//! wait is bounded; children are SIGKILLed when the test ends.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use crate::support::kv::KvCluster;
use fleet_engine::kv::Request;
use fleet_io_std::kv::{KvAnswer, KvBlockingClient};
use fleet_io_std::CallError;

const T: Duration = Duration::from_secs(5);

fn is_lost(r: &Result<KvAnswer, CallError>) -> bool {
    matches!(r, Err(CallError::Refused(why)) if why.contains("lost"))
}

#[test]
fn a_host_restarted_without_its_state_reports_its_keys_lost_and_claims_no_other_hosts_keys() {
    let mut cluster = KvCluster::start("kv-rejoin", false, &[]);
    let setup = cluster.setup.clone();
    let mut c = KvBlockingClient::connect(&setup).unwrap();
    c.set(u64::MAX - 1, b"ready", Duration::from_secs(10)).expect("the KV cluster comes up within 10 s");
    for k in [3u64, 7, 50, 60] {
        c.set(k, format!("v{k}").as_bytes(), T).unwrap();
    }
    c.shard(0, Some(10), 1, Some(0), T).unwrap();

    cluster.kill(0);
    cluster.spawn(0, "restarted");
    // Until host 0 has joined it answers nothing; then its own keys are lost.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut fresh = KvBlockingClient::connect(&setup).unwrap();
    loop {
        let r = fresh.call(Request::Get(50), Some(0), Duration::from_millis(500));
        if is_lost(&r) {
            break;
        }
        assert!(matches!(r, Err(CallError::Timeout(_))), "before it joins host 0 answers nothing: {r:?}");
        assert!(Instant::now() < deadline, "host 0 did not join within 15 s");
    }
    assert!(is_lost(&fresh.call(Request::Get(60), Some(0), T)), "never \"not found\"");
    assert!(is_lost(&fresh.call(Request::Set(50, b"again"), Some(0), T)), "no write to a lost key");
    // Host 1's keys, through host 0 (a redirect) and directly.
    assert_eq!(fresh.call(Request::Get(3), Some(0), T).unwrap(), KvAnswer::Value(Some(b"v3".to_vec())));
    assert_eq!(fresh.call(Request::Get(7), Some(1), T).unwrap(), KvAnswer::Value(Some(b"v7".to_vec())));
    // A write to key 3 through host 0 lands at host 1, the key's only owner.
    fresh.call(Request::Set(3, b"new"), Some(0), T).unwrap();
    assert_eq!(fresh.call(Request::Get(3), Some(1), T).unwrap(), KvAnswer::Value(Some(b"new".to_vec())));
    // The client from before the restart carries on: its channel to host 0 is refused as one
    // the lost incarnation may have served, and a read is simply sent again on a new one.
    assert_eq!(c.get(7, T).unwrap(), Some(b"v7".to_vec()));
    let log = cluster.log(0);
    assert!(log.contains("keys it held before are lost"), "{log}");
}
