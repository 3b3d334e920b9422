//! A sealed mixed cluster: replica 0 runs through `fleet-io-embassy` (`Node::run_sealed`),
//! replicas 1 and 2 are `fleet-io-std` servers, all under the same key files. They form one
//! cluster through the same wire (the embassy replica leads the first view, so every
//! client request passes through its guard); datagrams sealed under another key, or not
//! at all, sent to the embassy replica are refused and counted in its `LinkStats`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use common::bridge::{mixed_addrs, Bridge, MixedAddrs};
use common::*;
use embassy_futures::join::join;
use embassy_futures::select::select;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_time::Timer;
use fleet_engine::auth::{Guard, Role, AUTH_OVERHEAD_BYTES};
use fleet_engine::rsl::apps::kv::KvApp;
use fleet_engine::rsl::{Params, Replica, RslConfig};
use fleet_engine::Endpoint;
use fleet_io_embassy::durable::InMemory;
use fleet_io_embassy::Node;
use fleet_io_std::auth::{new_key_files, write_new_key_file, AuthFiles};
use fleet_io_std::capacity::{KEY_BYTES, MAX_REPLICAS, VALUE_BYTES};
use fleet_io_std::config::RslSetup;
use fleet_io_std::rsl::spawn_rsl;
use fleet_io_std::rsl::RslClient as StdClient;
use fleet_io_std::CallError;

const MAX_KEYS: usize = 16;
type SealedReplica = Replica<KvApp<MAX_KEYS, KEY_BYTES, VALUE_BYTES>, 3, 8, 1472, 16384, 64, 1100>;
type SealedNode = Node<CriticalSectionRawMutex, SealedReplica>;

#[test]
fn embassy_and_std_replicas_form_one_sealed_cluster() {
    with_big_stack(body);
}

fn sealed_params() -> Params {
    // The wire bound stays 1472 (the embassy MTU); the engine's leaves room for the seal.
    Params { max_datagram_bytes: 1472 - AUTH_OVERHEAD_BYTES, ..fast_params() }
}

fn body() {
    let Some(MixedAddrs { inside, addrs, eps }) = mixed_addrs() else { return };
    let (inside_ip, p0) = (*inside.ip(), inside.port());
    let dir = std::env::temp_dir().join(format!("fleet-embassy-sealed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let section = new_key_files(&dir).unwrap();
    let files = AuthFiles { member_key: section.member_key.into(), client_key: section.client_key.into() };
    let std_config = rsl_config::<MAX_REPLICAS>(&eps, sealed_params());
    let auth_cluster = std_config.identity();
    let setup = RslSetup {
        addrs: addrs.clone(),
        config: std_config,
        max_keys: MAX_KEYS,
        auth: Some(files.clone()),
        auth_cluster,
        seeds: Vec::new(),
    };

    let switch = switch(12);
    let bridge = Bridge::start(switch.attach_default().unwrap(), inside).expect("bridge socket");
    let config: RslConfig<3> = rsl_config(&eps, sealed_params());
    let keys = files.member_keyring(config.identity()).unwrap();
    let members: &'static [Endpoint] = Box::leak(eps.clone().into_boxed_slice());
    let nonce = fleet_io_std::clock::incarnation_nonce();
    let replica = SealedReplica::new_rejoining(config, 0, KvApp::new(), fleet_io_embassy::now(), nonce).unwrap();
    let node: &'static SealedNode = Box::leak(Box::new(Node::new(eps[0], replica)));
    let stop = Arc::new(AtomicBool::new(false));
    let embassy = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("embassy".into())
            .stack_size(16 << 20)
            .spawn(move || {
                let (stack, mut runner, _port) = stack(switch, inside_ip.octets(), 8);
                let socket = Box::leak(Box::new(TestSocket::new())).bind(stack, p0).unwrap();
                let bufs = Box::leak(Box::new(TestBuffers::new()));
                let mut guard = Guard::new(keys, members[0], Role::Member(members));
                let stopped = async {
                    while !stop.load(Ordering::Relaxed) {
                        Timer::after_millis(20).await;
                    }
                };
                let mut in_memory = InMemory;
                let run = node.run_sealed(&socket, bufs, &mut in_memory, &mut guard);
                block_on(select(join(runner.run(), run), stopped));
            })
            .unwrap()
    };
    let std1 = spawn_rsl(&setup, 1, None).expect("std replica 1");
    let std2 = spawn_rsl(&setup, 2, None).expect("std replica 2");

    let mut client = StdClient::with_retransmit(&setup, 100).unwrap();
    let t = StdDuration::from_secs(10);
    for i in 0..10 {
        client.put(format!("k{i}").as_bytes(), format!("v{i}").as_bytes(), t).expect("put");
    }
    assert_eq!(client.get(b"k3", t).unwrap(), Some(b"v3".to_vec()));
    let s = node.with(|s| s.host.status());
    // Ten puts through the log; the Get is a query, answered without one.
    assert!(s.is_leader && s.ops_complete >= 10, "the sealed embassy replica leads and executes: {s:?}");
    assert_eq!(node.with(|s| s.link.auth_refused), 0, "nothing of the key holders was refused");

    // Another client key: refused (the std replicas say so; firmware nodes stay silent).
    let wrong = dir.join("wrong-client.key");
    write_new_key_file(&wrong, 1, "client").unwrap();
    let wrong_files = AuthFiles { client_key: wrong, ..files.clone() };
    let mut impostor = StdClient::with_retransmit(&RslSetup { auth: Some(wrong_files), ..setup.clone() }, 100).unwrap();
    match impostor.put(b"k3", b"forged", StdDuration::from_millis(800)) {
        Err(CallError::KeyRefused { .. }) => {}
        other => panic!("a wrong client key must be refused by name: {other:?}"),
    }
    // Unsealed datagrams, as an unauthenticated cluster's client would send them.
    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..20 {
        raw.send_to(
            &[0xF1, fleet_engine::wire::WIRE_VERSION, b'R', 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14],
            addrs[0],
        )
        .unwrap();
    }
    let end = StdInstant::now() + StdDuration::from_secs(5);
    while node.with(|s| s.link.auth_refused) < 20 {
        assert!(StdInstant::now() < end, "refusals counted: {:?}", node.with(|s| s.link));
        std::thread::sleep(StdDuration::from_millis(20));
    }
    assert_eq!(client.get(b"k3", t).unwrap(), Some(b"v3".to_vec()), "unchanged");

    stop.store(true, Ordering::Relaxed);
    embassy.join().unwrap();
    drop(bridge);
    std1.stop().unwrap();
    std2.stop().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
