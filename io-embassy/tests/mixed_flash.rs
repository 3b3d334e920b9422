//! A mixed cluster whose embassy member is durable on flash and is restarted from it:
//! replica 0 runs through `fleet-io-embassy` with `RslFlash` over a `RamFlash` region
//! (`Node::run_durable`), replicas 1 and 2 are `fleet-io-std` servers. The embassy replica
//! is stopped (its stack and socket go, as at a device reset), the std replicas go on
//! without it, and it is started again from its flash: it comes back with every operation
//! it had executed and its acceptor state, as a member (not rejoining), and catches up.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use common::bridge::{mixed_addrs, Bridge, MixedAddrs};
use common::*;
use embassy_futures::join::join;
use embassy_futures::select::select;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_time::Timer;
use fleet_engine::rsl::apps::kv::KvApp;
use fleet_engine::rsl::durable::DURABLE_RECORD_OVERHEAD_BYTES;
use fleet_engine::rsl::{Replica, RslConfig};
use fleet_flash::{FlashLog, RamFlash, RslFlash, FRAME_BYTES};
use fleet_io_embassy::switch::PortId;
use fleet_io_embassy::Node;
use fleet_io_std::capacity::{KEY_BYTES, MAX_REPLICAS, VALUE_BYTES};
use fleet_io_std::config::RslSetup;
use fleet_io_std::rsl::spawn_rsl;
use fleet_io_std::rsl::RslClient as StdClient;

const MAX_KEYS: usize = 16;
const RB: usize = 1100;
type MixedReplica = Replica<KvApp<MAX_KEYS, KEY_BYTES, VALUE_BYTES>, 3, 8, 1472, 16384, 64, RB>;
type MixedNode = Node<CriticalSectionRawMutex, MixedReplica>;
const PAGE: usize = 4096;
const REGION: usize = 32 * PAGE;
type Flash = RamFlash<'static, PAGE>;
type Persister = RslFlash<'static, Flash>;
/// An image every 512 bytes of log: the run writes several (ten puts log about 800).
const COMPACT_AFTER_BYTES: u64 = 512;

fn leak(bytes: usize, fill: u8) -> &'static mut [u8] {
    Box::leak(vec![fill; bytes].into_boxed_slice())
}

/// Opens the persister over `region` (its record and snapshot buffers leaked once each).
fn persister(region: &'static mut [u8]) -> Persister {
    let buf = leak(1472 + DURABLE_RECORD_OVERHEAD_BYTES + FRAME_BYTES, 0);
    let log = block_on(FlashLog::open(Flash::new(region), 0..REGION as u32, buf)).expect("the flash log opens");
    RslFlash::new(log, buf, leak(RB, 0), COMPACT_AFTER_BYTES)
}

/// Runs `node` on a stack at `ip` (a new switch port, or `port` again) until `stop`; gives
/// back the persister and the port.
fn run_embassy(
    switch: &'static TestSwitch,
    port: Option<PortId>,
    ip: Ipv4Addr,
    udp_port: u16,
    node: &'static MixedNode,
    mut persister: Persister,
    stop: Arc<AtomicBool>,
) -> JoinHandle<(Persister, PortId)> {
    std::thread::Builder::new()
        .name("embassy".into())
        .stack_size(16 << 20)
        .spawn(move || {
            let (stack, mut runner, id) = match port {
                None => stack(switch, ip.octets(), 8),
                Some(id) => stack_on(switch.reopen(id).unwrap(), ip.octets(), 8),
            };
            let socket = Box::leak(Box::new(TestSocket::new())).bind(stack, udp_port).unwrap();
            let bufs = Box::leak(Box::new(TestBuffers::new()));
            let stopped = async {
                while !stop.load(Ordering::Relaxed) {
                    Timer::after_millis(20).await;
                }
            };
            block_on(select(join(runner.run(), node.run_durable(&socket, bufs, &mut persister)), stopped));
            (persister, id)
        })
        .unwrap()
}

#[test]
fn an_embassy_replica_restarted_from_flash_keeps_its_state_and_rejoins() {
    with_big_stack(body);
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let end = StdInstant::now() + StdDuration::from_secs(10);
    while !done() {
        assert!(StdInstant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(StdDuration::from_millis(20));
    }
}

fn body() {
    let Some(MixedAddrs { inside, addrs, eps }) = mixed_addrs() else { return };
    let (inside_ip, p0) = (*inside.ip(), inside.port());
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
    let switch = switch(17);
    let bridge = Bridge::start(switch.attach_default().unwrap(), inside).expect("bridge socket");
    let config: RslConfig<3> = rsl_config(&eps, fast_params());

    // First start: an erased region, so the replica rejoins (and is born with the others).
    let mut p = persister(leak(REGION, 0xFF));
    let nonce = fleet_io_std::clock::incarnation_nonce();
    let replica: MixedReplica =
        block_on(p.recover(config.clone(), 0, KvApp::new(), fleet_io_embassy::now(), nonce)).expect("first start");
    let node: &'static MixedNode = Box::leak(Box::new(Node::new(eps[0], replica)));
    let stop = Arc::new(AtomicBool::new(false));
    let embassy = run_embassy(switch, None, inside_ip, p0, node, p, stop.clone());
    let std1 = spawn_rsl(&setup, 1, None).expect("std replica 1");
    let std2 = spawn_rsl(&setup, 2, None).expect("std replica 2");

    let mut client = StdClient::with_retransmit(&setup, 100).unwrap();
    let t = StdDuration::from_secs(10);
    for i in 0..10 {
        client.put(format!("k{i}").as_bytes(), format!("v{i}").as_bytes(), t).expect("put");
    }
    wait_for("the embassy replica to execute every put", || node.with(|s| s.host.app().get(b"k9").is_some()));

    // The reset: the embassy replica's stack, socket and run loop go; its flash stays.
    stop.store(true, Ordering::Relaxed);
    let (p, port) = embassy.join().unwrap();
    let (before, max_bal, sent_1a) =
        node.with(|s| (s.host.status(), s.host.acceptor().max_bal, s.host.proposer().max_ballot_sent_1a));
    assert!(p.images() > 0, "images were written before the reset");
    assert!(node.with(|s| s.halted.is_none()));

    // The std replicas serve on without it.
    for i in 10..13 {
        client.put(format!("k{i}").as_bytes(), format!("v{i}").as_bytes(), t).expect("put without the embassy replica");
    }

    // Restart from the same flash.
    let region = p.into_log().into_flash().into_bytes();
    let mut p = persister(region);
    let nonce = fleet_io_std::clock::incarnation_nonce();
    let replica: MixedReplica =
        block_on(p.recover(config, 0, KvApp::new(), fleet_io_embassy::now(), nonce)).expect("restart from flash");
    let after = replica.status();
    assert!(!after.rejoining, "its acceptor state was on flash: it comes back a member: {after:?}");
    assert_eq!(after.ops_complete, before.ops_complete, "every operation it executed is back");
    assert_eq!(replica.acceptor().max_bal, max_bal, "its promise is back");
    assert_eq!(replica.proposer().max_ballot_sent_1a, sent_1a, "the ballot it started is back");
    assert_eq!(replica.app().get(b"k9"), Some(&b"v9"[..]), "its application state is back");
    let node: &'static MixedNode = Box::leak(Box::new(Node::new(eps[0], replica)));
    let stop = Arc::new(AtomicBool::new(false));
    let embassy = run_embassy(switch, Some(port), inside_ip, p0, node, p, stop.clone());

    // It catches up with what it missed, and the cluster serves with it.
    wait_for("the restarted replica to catch up", || node.with(|s| s.host.app().get(b"k12").is_some()));
    for i in 13..16 {
        client.put(format!("k{i}").as_bytes(), format!("v{i}").as_bytes(), t).expect("put after the restart");
    }
    wait_for("the restarted replica to execute the new puts", || node.with(|s| s.host.app().get(b"k15").is_some()));
    assert_eq!(node.with(|s| s.host.app().len()), 16, "k0..k15: {:?}", node.with(|s| s.host.status()));
    let status = node.with(|s| s.host.status());
    eprintln!("restarted from flash: {before:?} -> {status:?}");

    stop.store(true, Ordering::Relaxed);
    embassy.join().unwrap();
    drop(bridge);
    std1.stop().unwrap();
    std2.stop().unwrap();
}
