//! `fleet kv shard` without `--via`: the CLI finds the range's current owner itself, so a
//! range moved to host 1 can be moved on from there; a range with two owners is refused with
//! an explanation. Real processes on 127.0.0.1; children are SIGKILLed at the end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use crate::support::kv::KvCluster;
use crate::support::FLEET;
use fleet_io_std::kv::KvBlockingClient;

const T: Duration = Duration::from_secs(5);

fn shard(cluster: &KvCluster, lo: u64, hi: u64, to: usize) -> (bool, String) {
    let out = Command::new(FLEET)
        .args(["kv", "shard", "--config", cluster.config.to_str().unwrap()])
        .args(["--lo", &lo.to_string(), "--hi", &hi.to_string(), "--to", &to.to_string()])
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn shard_finds_the_current_owner_without_via() {
    let cluster = KvCluster::start("kv-shard-cli", false, &[]);
    let mut c = KvBlockingClient::connect(&cluster.setup).unwrap();
    c.set(u64::MAX - 1, b"ready", Duration::from_secs(10)).expect("the KV cluster comes up within 10 s");
    for k in [3u64, 7, 15] {
        c.set(k, format!("v{k}").as_bytes(), T).unwrap();
    }
    // Host 0 owns everything: the first move needs no --via.
    assert_eq!(shard(&cluster, 0, 10, 1), (true, String::new()));
    // Host 1 owns [0, 10) now: moving it on to host 2 finds host 1 by itself.
    let (ok, err) = shard(&cluster, 0, 10, 2);
    assert!(ok, "{err}");
    assert_eq!(c.owner_of(3, T).unwrap(), 2);
    assert_eq!(c.get(7, T).unwrap().as_deref(), Some(&b"v7"[..]));
    assert_eq!(c.owner_of(15, T).unwrap(), 0);
    // [5, 20) spans hosts 2 and 0: refused, and said why.
    let (ok, err) = shard(&cluster, 5, 20, 1);
    assert!(!ok && err.contains("does not own every key"), "{err}");
    assert_eq!(c.get(15, T).unwrap().as_deref(), Some(&b"v15"[..]), "nothing moved");
}
