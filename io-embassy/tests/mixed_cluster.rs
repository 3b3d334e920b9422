//! A mixed cluster: replica 0 runs through `fleet-io-embassy` on an embassy-net stack,
//! bridged to a real UDP socket on 127.0.0.2; replicas 1 and 2 are `fleet-io-std` servers
//! on 127.0.0.1. A std client talks to all three. They form one cluster: the embassy
//! replica leads the first view, a std replica takes over when the embassy stack is cut
//! off, and on reconnection the embassy replica catches up — by state transfer from a std
//! replica when the log has moved on (the engine's `KvApp` and io-std's `StdKvApp` share
//! the snapshot format).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use common::bridge::{mixed_addrs, Bridge, MixedAddrs};
use common::*;
use embassy_futures::join::join;
use embassy_futures::select::select;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_time::Timer;
use fleet_engine::rsl::apps::kv::KvApp;
use fleet_engine::rsl::{Replica, RslConfig};
use fleet_io_embassy::Node;
use fleet_io_std::capacity::{KEY_BYTES, MAX_REPLICAS, VALUE_BYTES};
use fleet_io_std::config::RslSetup;
use fleet_io_std::rsl::spawn_rsl;
use fleet_io_std::rsl::RslClient as StdClient;

/// Keys the replicated map holds, on every member (io-std's `max_keys`, the engine's `K`).
const MAX_KEYS: usize = 16;
/// The embassy member: the same application and reply size as io-std's `ServerReplica`
/// (`StdKvApp<64, 1024>` ⇔ `KvApp<K, 64, 1024>`, replies up to 1100 bytes).
type MixedReplica = Replica<KvApp<MAX_KEYS, KEY_BYTES, VALUE_BYTES>, 3, 8, 1472, 16384, 64, 1100>;
type MixedNode = Node<CriticalSectionRawMutex, MixedReplica>;

#[test]
fn embassy_and_std_replicas_form_one_cluster() {
    with_big_stack(body);
}

fn body() {
    let Some(MixedAddrs { inside, addrs, eps }) = mixed_addrs() else { return };
    let (inside_ip, p0) = (*inside.ip(), inside.port());
    // The whole cluster shares one parameter set; 1472-byte datagrams fit the embassy MTU.
    let std_config = rsl_config::<MAX_REPLICAS>(&eps, fast_params());
    let auth_cluster = std_config.identity();
    let setup = RslSetup {
        addrs: addrs.clone(),
        config: std_config,
        max_keys: MAX_KEYS,
        auth: None,
        auth_cluster,
        seeds: Vec::new(),
    };

    // The embassy member: a stack at 127.0.0.2/8 on the switch, the switch's default port
    // bridged to a std socket bound at 127.0.0.2:p0.
    let switch = switch(11);
    let bridge = Bridge::start(switch.attach_default().unwrap(), inside).expect("bridge socket");
    let config: RslConfig<3> = rsl_config(&eps, fast_params());
    // In memory, as the std replicas: all three start without state and are born together.
    let nonce = fleet_io_std::clock::incarnation_nonce();
    let replica = MixedReplica::new_rejoining(config, 0, KvApp::new(), fleet_io_embassy::now(), nonce).unwrap();
    let node: &'static MixedNode = Box::leak(Box::new(Node::new(eps[0], replica)));
    let stop = Arc::new(AtomicBool::new(false));
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let embassy = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("embassy".into())
            .stack_size(16 << 20)
            .spawn(move || {
                // A stack is not `Send`: build it on the thread that runs it.
                let (stack, mut runner, port) = stack(switch, inside_ip.octets(), 8);
                port_tx.send(port).unwrap();
                let socket = Box::leak(Box::new(TestSocket::new())).bind(stack, p0).unwrap();
                let bufs = Box::leak(Box::new(TestBuffers::new()));
                let stopped = async {
                    while !stop.load(Ordering::Relaxed) {
                        Timer::after_millis(20).await;
                    }
                };
                block_on(select(join(runner.run(), node.run(&socket, bufs)), stopped));
            })
            .unwrap()
    };
    let port = port_rx.recv().unwrap();
    let std1 = spawn_rsl(&setup, 1, None).expect("std replica 1");
    let std2 = spawn_rsl(&setup, 2, None).expect("std replica 2");

    let mut client = StdClient::with_retransmit(&setup, 100).unwrap();
    let t = StdDuration::from_secs(10);
    for i in 0..10 {
        client.put(format!("k{i}").as_bytes(), format!("v{i}").as_bytes(), t).expect("put");
    }
    for i in 0..10 {
        assert_eq!(client.get(format!("k{i}").as_bytes(), t).unwrap(), Some(format!("v{i}").into_bytes()));
    }
    let s = node.with(|s| s.host.status());
    assert!(s.is_leader, "the embassy replica leads view (1,0): {s:?}");
    // The Gets are queries the leader answers without a log write.
    assert!(s.ops_complete >= 10, "{s:?}");
    assert!(node.with(|s| s.host.stats().queries_answered) >= 1, "the embassy leader answered no query itself");
    assert_eq!(node.with(|s| s.host.app().get(b"k3").map(<[u8]>::to_vec)), Some(b"v3".to_vec()));

    // Cut the embassy member off: the std replicas elect a leader and go on.
    switch.set_connected(port, false);
    // The delete first: the map holds at most 16 keys.
    client.delete(b"k0", t).unwrap();
    for i in 10..17 {
        client.put(format!("k{i}").as_bytes(), format!("v{i}").as_bytes(), t).expect("put without the embassy replica");
    }
    assert_eq!(client.get(b"k16", t).unwrap(), Some(b"v16".to_vec()));
    let behind = node.with(|s| s.host.status().ops_complete);

    // Reconnect: the embassy replica catches up with the std replicas.
    switch.set_connected(port, true);
    let end = StdInstant::now() + StdDuration::from_secs(10);
    loop {
        let caught_up = node.with(|s| s.host.app().get(b"k16").is_some() && s.host.app().get(b"k0").is_none());
        if caught_up {
            break;
        }
        assert!(StdInstant::now() < end, "the embassy replica did not catch up: {:?}", node.with(|s| s.host.status()));
        std::thread::sleep(StdDuration::from_millis(20));
    }
    let (status, transfers, link) = node.with(|s| (s.host.status(), s.host.transfer().installed, s.link));
    assert!(status.ops_complete > behind, "{status:?}");
    eprintln!("embassy replica caught up: {status:?}, snapshots installed: {transfers}, link: {link:?}");
    assert_eq!(node.with(|s| s.host.app().len()), 16);
    // Eight operations (seven puts and a delete; the Get takes no log slot) passed while it
    // was cut off, more than the 7-slot log window: the
    // std replicas truncated past it, so it caught up by state transfer, from their
    // retained batches (a `StdKvApp` snapshot installs in a `KvApp` too: io-std's
    // `rsl::app` tests).
    assert!(status.ops_complete >= behind + 8, "caught up past the window: {status:?}, {transfers} snapshots");

    stop.store(true, Ordering::Relaxed);
    embassy.join().unwrap();
    drop(bridge);
    std1.stop().unwrap();
    std2.stop().unwrap();
}
