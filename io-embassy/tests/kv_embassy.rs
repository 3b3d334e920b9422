//! Three IronKV hosts, each on its own embassy-net stack over the in-memory switch, and an
//! async KV client: the real binding over the real smoltcp stack, including a Shard.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::future::Future;

use common::*;
use embassy_futures::join::{join, join_array};
use embassy_futures::select::{select, Either};
use embassy_net::udp::UdpSocket;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_time::{Duration, Timer};
use fleet_engine::kv::{HeaplessStore, KeyBound, KeyRange, KvClient, KvConfig, KvHost, KvParams, Request};
use fleet_engine::Endpoint;
use fleet_io_embassy::switch::{Faults, PortId};
use fleet_io_embassy::{AsyncKvClient, KvAnswer, Node};

type Host = KvHost<HeaplessStore<64, 64>, 3, 16, 8, 32, 1472>;
type KvNode = Node<CriticalSectionRawMutex, Host>;
type Client = AsyncKvClient<3, 8, 1472, 8192>;
const KV_PORT: u16 = 7100;

struct Cluster {
    switch: &'static TestSwitch,
    nodes: [&'static KvNode; 3],
    ports: [PortId; 3],
    eps: [Endpoint; 3],
    socket: UdpSocket<'static>,
}

fn cluster(seed: u64) -> (Cluster, impl Future<Output = ()>) {
    let switch = switch(seed);
    let eps: [Endpoint; 3] = std::array::from_fn(|i| Endpoint::v4([10, 0, 1, 1 + i as u8], KV_PORT));
    let mut config = KvConfig::<3>::new(&eps).unwrap();
    config.params = params();
    let (mut runners, mut runs, mut nodes, mut ports) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, ep) in eps.iter().enumerate() {
        let (stack, runner, port) = stack(switch, [10, 0, 1, 1 + i as u8], 24);
        runners.push(runner);
        ports.push(port);
        let host = Host::new(config.clone(), i, HeaplessStore::new()).unwrap();
        let node: &'static KvNode = Box::leak(Box::new(Node::new(*ep, host)));
        nodes.push(node);
        let socket = Box::leak(Box::new(TestSocket::new())).bind(stack, KV_PORT).unwrap();
        let socket: &'static UdpSocket<'static> = Box::leak(Box::new(socket));
        runs.push(node.run(socket, Box::leak(Box::new(TestBuffers::new()))));
    }
    let (client_stack, client_runner, _) = stack(switch, [10, 0, 1, 9], 24);
    runners.push(client_runner);
    let socket = Box::leak(Box::new(TestSocket::new())).bind(client_stack, 5556).unwrap();
    let runners: [_; 4] = runners.try_into().unwrap_or_else(|_| unreachable!());
    let runs: [_; 3] = runs.try_into().unwrap_or_else(|_| unreachable!());
    let background = async move {
        join(join_array(runners.map(|mut r| async move { r.run().await })), join_array(runs)).await;
    };
    let c = Cluster {
        switch,
        nodes: nodes.try_into().unwrap_or_else(|_| unreachable!()),
        ports: ports.try_into().unwrap_or_else(|_| unreachable!()),
        eps,
        socket,
    };
    (c, background)
}

fn run<F: Future<Output = ()>>(background: impl Future<Output = ()>, body: F) {
    block_on(async {
        match select(background, select(body, Timer::after(Duration::from_secs(60)))).await {
            Either::Second(Either::First(())) => {}
            Either::Second(Either::Second(())) => panic!("the test did not finish within 60 s"),
            Either::First(()) => unreachable!("the cluster stopped"),
        }
    });
}

/// Values up to 64 bytes (the firmware-sized store).
fn params() -> KvParams {
    KvParams { max_value_bytes: 64, ..KvParams::default() }
}

fn new_client(eps: &[Endpoint]) -> Box<Client> {
    Box::new(AsyncKvClient::new(KvClient::new(eps, 1, params()).unwrap()))
}

async fn set(c: &Cluster, client: &mut Client, key: u64, value: &[u8]) {
    let r = client.call(&c.socket, Request::Set(key, value), None, &mut [], Duration::from_secs(10)).await;
    assert_eq!(r.unwrap(), KvAnswer::Written, "set {key}");
}

async fn get(c: &Cluster, client: &mut Client, key: u64) -> Option<Vec<u8>> {
    let mut buf = [0u8; 64];
    match client.call(&c.socket, Request::Get(key), None, &mut buf, Duration::from_secs(10)).await.unwrap() {
        KvAnswer::Value(v) => v.map(|n| buf[..n].to_vec()),
        other => panic!("get {key}: {other:?}"),
    }
}

fn check_and_shard(seed: u64, faults: Faults) {
    let (c, background) = cluster(seed);
    c.switch.set_faults(faults);
    run(background, async {
        let mut client = new_client(&c.eps);
        for k in 0..10u64 {
            set(&c, &mut client, k, format!("v{k}").as_bytes()).await;
        }
        // Move [0, 5) from the root (host 0) to host 1, through host 0.
        let range = KeyRange { lo: KeyBound::Key(0), hi: KeyBound::Key(5) };
        let shard = Request::Shard(range, c.eps[1]);
        let r = client.call(&c.socket, shard, Some(c.eps[0]), &mut [], Duration::from_secs(10)).await;
        assert_eq!(r.unwrap(), KvAnswer::Sharded);
        for k in 0..10u64 {
            assert_eq!(get(&c, &mut client, k).await.as_deref(), Some(format!("v{k}").as_bytes()), "key {k}");
        }
        set(&c, &mut client, 3, b"moved").await;
        assert_eq!(get(&c, &mut client, 3).await.as_deref(), Some(&b"moved"[..]));
        // Ownership really moved: host 1 holds [0, 5), host 0 the rest.
        let (owns_1, owns_0) = (c.nodes[1].with(|s| s.host.owns(3)), c.nodes[0].with(|s| s.host.owns(3)));
        assert!(owns_1 && !owns_0, "key 3 owned by host 1 only");
        assert!(c.nodes[0].with(|s| s.host.owns(7)));
        for i in 0..3 {
            c.nodes[i].with(|s| assert_eq!(s.host.check_invariants(), Ok(())));
        }
        let _ = c.ports;
    });
}

#[test]
fn kv_hosts_serve_and_shard_on_embassy_stacks() {
    with_big_stack(|| check_and_shard(11, Faults::default()));
}

#[test]
fn kv_hosts_serve_and_shard_with_ten_percent_loss() {
    with_big_stack(|| check_and_shard(12, Faults { loss_permille: 100, reorder_permille: 50 }));
}
