//! Careless or hostile neighbours, with real processes on 127.0.0.1: requests sent once to
//! followers and never retried must not change views. Every wait is bounded; the children
//! are SIGKILLed when the test ends, pass or fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::UdpSocket;
use std::time::Duration;

use fleet_engine::rsl::apps::kv::KvOp;
use fleet_engine::rsl::RslMsg;
use fleet_engine::wire::{self, Bytes, Protocol};
use support::{Cluster, ClusterOptions};

const VIEW_TIMEOUT_MS: u64 = 500;

fn cluster(tag: &str) -> Cluster {
    Cluster::start_with(&ClusterOptions {
        tag,
        advertised: None,
        bind: None,
        view_timeout_ms: VIEW_TIMEOUT_MS,
        stats_lines: true,
        data_dirs: false,
        extra_args: Vec::new(),
    })
}

/// One Get request, as a client that vanishes right after sending it would send it.
fn stray_request(key: &[u8]) -> Vec<u8> {
    let mut op = [0u8; 64];
    let n = KvOp::Get(Bytes(key)).encode(&mut op).unwrap();
    let mut buf = [0u8; 128];
    let m = wire::encode(Protocol::Rsl, &RslMsg::Request { seqno: 1, request: Bytes(&op[..n]) }, &mut buf).unwrap();
    buf[..m].to_vec()
}

#[test]
fn requests_sent_once_to_followers_change_no_view() {
    let cluster = cluster("strays");
    let stats = cluster.wait_for_stats(Duration::from_secs(5), |s| s.iter().all(Option::is_some)).unwrap();
    let view = stats[0].unwrap().view;
    let leader = usize::try_from(view.1).unwrap();
    // Ten vanishing clients, each sending one request to one follower, never to the leader.
    for i in 0..10 {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let follower = (leader + 1 + i % 2) % 3;
        socket.send_to(&stray_request(format!("stray-{i}").as_bytes()), cluster.setup.addrs[follower]).unwrap();
    }
    // Six view timeouts: long enough for followers to suspect, and for a view change.
    std::thread::sleep(Duration::from_millis(6 * VIEW_TIMEOUT_MS));
    let after = cluster.stats();
    for (i, s) in after.iter().enumerate() {
        assert_eq!(s.unwrap().view, view, "replica {i} changed view: {after:?}");
    }
    // And the leader executed them (forwarded by the followers): ten more operations.
    let executed = after[leader].unwrap().executed - stats[leader].unwrap().executed;
    assert!(executed >= 1, "the forwarded requests were executed ({executed} operations)");
}
