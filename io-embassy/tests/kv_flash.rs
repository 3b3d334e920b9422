//! Three IronKV hosts durable on flash through the embassy binding: each runs
//! `Node::run_durable` with a `KvFlash` over its own `RamFlash` region, on its own
//! embassy-net stack over the in-memory switch. A client sets keys and moves a range from
//! host 0 to host 1; then every host is reset (its run loop and stack go, its flash stays)
//! and rebuilt from its region alone. Each rebuilt host equals the one that ran (store,
//! delegation map, channels, unacknowledged messages): the run loop persisted every step
//! before its datagrams left.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use embassy_futures::join::{join, join_array};
use embassy_futures::select::{select, Either};
use embassy_net::udp::UdpSocket;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_time::{Duration, Timer};
use fleet_engine::kv::{
    HeaplessStore, KeyBound, KeyRange, KvClient, KvConfig, KvHost, KvParams, Request, KV_RECORD_OVERHEAD_BYTES,
};
use fleet_engine::{Endpoint, OutboxBuf};
use fleet_flash::{FlashLog, KvFlash, RamFlash, FRAME_BYTES};
use fleet_io_embassy::{AsyncKvClient, KvAnswer, Node};

type Store = HeaplessStore<64, 64>;
type Host = KvHost<Store, 3, 16, 8, 32, 1472>;
type KvNode = Node<CriticalSectionRawMutex, Host>;
type Client = AsyncKvClient<3, 8, 1472, 8192>;
type Persister = KvFlash<'static, RamFlash<'static, PAGE>>;
const KV_PORT: u16 = 7200;
const PAGE: usize = 4096;
const REGION: usize = 16 * PAGE;
/// An image every 2 KiB of logged inputs: the run writes several.
const COMPACT_AFTER_BYTES: u64 = 2048;

fn params() -> KvParams {
    KvParams { max_value_bytes: 64, ..KvParams::default() }
}

fn config(eps: &[Endpoint; 3]) -> KvConfig<3> {
    let mut config = KvConfig::<3>::new(eps).unwrap();
    config.params = params();
    config
}

/// A persister over `region` (erased bytes for a first start).
fn persister(region: &'static mut [u8]) -> Persister {
    let buf = Box::leak(vec![0u8; 1472 + KV_RECORD_OVERHEAD_BYTES + FRAME_BYTES].into_boxed_slice());
    let log = embassy_futures::block_on(FlashLog::open(RamFlash::new(region), 0..REGION as u32, buf)).unwrap();
    KvFlash::new(log, buf, COMPACT_AFTER_BYTES)
}

/// Host `me` recovered from `persister`'s region (a first start joins as a new host).
fn recover(persister: &mut Persister, eps: &[Endpoint; 3], me: usize) -> Host {
    let mut out: Box<OutboxBuf<32, 32768>> = Box::new(OutboxBuf::new());
    let nonce = 1000 + me as u64;
    let mut outbox = out.outbox();
    let recovered = persister.recover(config(eps), me, Store::new(), nonce, fleet_io_embassy::now(), &mut outbox);
    embassy_futures::block_on(recovered).expect("the host recovers from its flash")
}

#[test]
fn kv_hosts_on_flash_recover_exactly_what_they_ran() {
    with_big_stack(body);
}

fn body() {
    let switch = switch(21);
    let eps: [Endpoint; 3] = std::array::from_fn(|i| Endpoint::v4([10, 0, 1, 1 + i as u8], KV_PORT));
    let mut persisters: Vec<Persister> =
        (0..3).map(|_| persister(Box::leak(vec![0xFF; REGION].into_boxed_slice()))).collect();
    let nodes: Vec<&'static KvNode> = persisters
        .iter_mut()
        .enumerate()
        .map(|(i, p)| &*Box::leak(Box::new(Node::new(eps[i], recover(p, &eps, i)))))
        .collect();
    let mut runners = Vec::new();
    let mut sockets = Vec::new();
    for i in 0..3 {
        let (stack, runner, _) = stack(switch, [10, 0, 1, 1 + i as u8], 24);
        runners.push(runner);
        sockets.push(Box::leak(Box::new(TestSocket::new())).bind(stack, KV_PORT).unwrap());
    }
    let (client_stack, client_runner, _) = stack(switch, [10, 0, 1, 9], 24);
    runners.push(client_runner);
    let client_socket = Box::leak(Box::new(TestSocket::new())).bind(client_stack, 5557).unwrap();
    let runners: [_; 4] = runners.try_into().unwrap_or_else(|_| unreachable!());

    let runs = nodes
        .iter()
        .zip(&sockets)
        .zip(persisters.iter_mut())
        .map(|((node, socket), p)| node.run_durable(socket, Box::leak(Box::new(TestBuffers::new())), p));
    let runs: [_; 3] = runs.collect::<Vec<_>>().try_into().unwrap_or_else(|_| unreachable!());
    let background = join(join_array(runners.map(|mut r| async move { r.run().await })), join_array(runs));
    let load = load(&client_socket, &eps, &nodes);
    let finished = embassy_futures::block_on(async {
        match select(background, select(load, Timer::after(Duration::from_secs(60)))).await {
            Either::Second(Either::First(())) => true,
            Either::Second(Either::Second(())) => false,
            Either::First(_) => unreachable!("the cluster stopped"),
        }
    });
    assert!(finished, "the load did not finish within 60 s");

    // The reset: every run loop is gone; each host is rebuilt from its flash alone.
    for (i, p) in persisters.into_iter().enumerate() {
        assert!(nodes[i].with(|s| s.halted.is_none()), "host {i} halted");
        let images = p.images();
        let region = p.into_log().into_flash().into_bytes();
        let recovered = recover(&mut persister(region), &eps, i);
        nodes[i].with(|s| {
            assert!(s.host == recovered, "host {i} rebuilt from flash differs from the host that ran");
            assert_eq!(recovered.check_invariants(), Ok(()));
        });
        eprintln!("host {i}: {images} images written; rebuilt equal to the host that ran");
        if i == 0 {
            assert!(images > 0, "host 0 compacted its log at least once");
        }
    }
    let (owns_0, owns_1) = (nodes[0].with(|s| s.host.owns(3)), nodes[1].with(|s| s.host.owns(3)));
    assert!(owns_1 && !owns_0, "key 3 moved to host 1");
}

/// Sets keys 0..40, moves [0, 5) from host 0 to host 1, and reads every key back.
async fn load(socket: &UdpSocket<'_>, eps: &[Endpoint; 3], nodes: &[&'static KvNode]) {
    let mut client: Box<Client> = Box::new(AsyncKvClient::new(KvClient::new(eps, 1, params()).unwrap()));
    let t = Duration::from_secs(10);
    for k in 0..40u64 {
        let r = client.call(socket, Request::Set(k, format!("value {k}").as_bytes()), None, &mut [], t).await;
        assert_eq!(r.unwrap(), KvAnswer::Written, "set {k}");
    }
    let range = KeyRange { lo: KeyBound::Key(0), hi: KeyBound::Key(5) };
    let r = client.call(socket, Request::Shard(range, eps[1]), Some(eps[0]), &mut [], t).await;
    assert_eq!(r.unwrap(), KvAnswer::Sharded);
    for k in 0..40u64 {
        let mut buf = [0u8; 64];
        match client.call(socket, Request::Get(k), None, &mut buf, t).await.unwrap() {
            KvAnswer::Value(Some(n)) => assert_eq!(&buf[..n], format!("value {k}").as_bytes(), "key {k}"),
            other => panic!("get {k}: {other:?}"),
        }
    }
    // Let the hosts acknowledge what is in flight, so the run stops between steps.
    Timer::after(Duration::from_millis(200)).await;
    assert!(nodes[1].with(|s| s.host.owns(3)));
}
