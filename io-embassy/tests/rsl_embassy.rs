//! Three RSL replicas, each on its own embassy-net stack over the in-memory switch, and a
//! client on a fourth stack: the real binding code over the real smoltcp stack, in one
//! process.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// The nodes' run loops never return.
#![allow(unreachable_code)]

mod common;

use std::future::Future;
use std::pin::Pin;

use common::*;
use embassy_futures::join::{join, join_array};
use embassy_futures::select::{select, Either};
use embassy_net::udp::UdpSocket;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_time::{Duration, Instant as EInstant, Timer};
use fleet_engine::auth::{Guard, Key, KeySet, Keyring, Role, AUTH_OVERHEAD_BYTES};
use fleet_engine::rsl::Client;
use fleet_engine::rsl::Status;
use fleet_engine::Endpoint;
use fleet_io_embassy::durable::InMemory;
use fleet_io_embassy::switch::{Faults, PortId};
use fleet_io_embassy::Node;
use fleet_io_embassy::RslClient;

type TestNode = Node<CriticalSectionRawMutex, TestReplica>;
const RSL_PORT: u16 = 7000;

struct Cluster {
    switch: &'static TestSwitch,
    nodes: [&'static TestNode; 3],
    ports: [PortId; 3],
    eps: [Endpoint; 3],
    client_socket: UdpSocket<'static>,
}

impl Cluster {
    fn status(&self, i: usize) -> Status {
        self.nodes[i].with(|s| s.host.status())
    }

    /// The replica leading the highest view (a cut-off leader may still believe it leads).
    fn leader(&self) -> Option<usize> {
        (0..3).filter(|&i| self.status(i).is_leader).max_by_key(|&i| self.status(i).view)
    }
}

/// Builds the cluster; returns it and the future that runs every stack and node.
fn cluster(seed: u64) -> (Cluster, impl Future<Output = ()>) {
    cluster_with(seed, None)
}

/// The keys of a sealed test cluster (clients hold only the client key).
fn keyring(cluster: u32, member: bool, client_fill: u8) -> Keyring {
    Keyring {
        cluster,
        member: member.then(|| KeySet::single(Key::new(1, [0x4d; 16]))),
        client: KeySet::single(Key::new(2, [client_fill; 16])),
    }
}

/// The wire bound stays the stacks' 1472; the engine's leaves room for the seal.
fn sealed_params() -> fleet_engine::rsl::Params {
    fleet_engine::rsl::Params { max_datagram_bytes: 1472 - AUTH_OVERHEAD_BYTES, ..fast_params() }
}

/// Three nodes, sealed with member keys when `sealed` names the cluster's keys.
fn cluster_with(seed: u64, sealed: Option<fn(u32) -> Keyring>) -> (Cluster, impl Future<Output = ()>) {
    let switch = switch(seed);
    let eps: [Endpoint; 3] = std::array::from_fn(|i| Endpoint::v4([10, 0, 0, 1 + i as u8], RSL_PORT));
    let members: &'static [Endpoint] = Box::leak(Box::new(eps));
    let params = if sealed.is_some() { sealed_params() } else { fast_params() };
    let config = rsl_config::<3>(&eps, params);
    let mut runners = Vec::new();
    let mut runs = Vec::new();
    let mut nodes = Vec::new();
    let mut ports = Vec::new();
    for (i, ep) in eps.iter().enumerate() {
        let (stack, runner, port) = stack(switch, [10, 0, 0, 1 + i as u8], 24);
        runners.push(runner);
        ports.push(port);
        let replica = TestReplica::new(config.clone(), i, TestApp::new(), fleet_io_embassy::now()).unwrap();
        let node: &'static TestNode = Box::leak(Box::new(Node::new(*ep, replica)));
        nodes.push(node);
        let socket = Box::leak(Box::new(TestSocket::new())).bind(stack, RSL_PORT).unwrap();
        let socket: &'static UdpSocket<'static> = Box::leak(Box::new(socket));
        let bufs: &'static mut TestBuffers = Box::leak(Box::new(TestBuffers::new()));
        let run: Pin<Box<dyn Future<Output = ()>>> = match sealed {
            None => Box::pin(async move {
                let _ = node.run(socket, bufs).await;
            }),
            Some(keys) => {
                let guard = Box::leak(Box::new(Guard::new(keys(config.identity()), *ep, Role::Member(members))));
                let persist = Box::leak(Box::new(InMemory));
                Box::pin(async move {
                    let _ = node.run_sealed(socket, bufs, persist, guard).await;
                })
            }
        };
        runs.push(run);
    }
    let (client_stack, client_runner, _) = stack(switch, [10, 0, 0, 9], 24);
    runners.push(client_runner);
    let client_socket = Box::leak(Box::new(TestSocket::new())).bind(client_stack, 5555).unwrap();
    let runners: [_; 4] = runners.try_into().unwrap_or_else(|_| unreachable!());
    let runs: [_; 3] = runs.try_into().unwrap_or_else(|_| unreachable!());
    let background = async move {
        let stacks = join_array(runners.map(|mut r| async move { r.run().await }));
        join(stacks, join_array(runs)).await;
    };
    let cluster = Cluster {
        switch,
        nodes: nodes.try_into().unwrap_or_else(|_| unreachable!()),
        ports: ports.try_into().unwrap_or_else(|_| unreachable!()),
        eps,
        client_socket,
    };
    (cluster, background)
}

/// Runs `body` while the cluster runs; fails if it takes longer than `limit`.
fn run<F: Future<Output = ()>>(background: impl Future<Output = ()>, limit: Duration, body: F) {
    block_on(async {
        match select(background, select(body, Timer::after(limit))).await {
            Either::Second(Either::First(())) => {}
            Either::Second(Either::Second(())) => panic!("the test did not finish within {limit:?}"),
            Either::First(()) => unreachable!("the cluster stopped"),
        }
    });
}

async fn put_and_read_back(c: &Cluster, client: &mut TestClient, from: usize, count: usize) {
    for i in from..from + count {
        let key = format!("k{i}");
        let value = format!("v{i}");
        kv(client, &c.client_socket, put(key.as_bytes(), value.as_bytes())).await.expect("put committed");
        let got = kv(client, &c.client_socket, get(key.as_bytes())).await.expect("get committed");
        assert_eq!(got.as_deref(), Some(value.as_bytes()), "read back {key}");
    }
}

/// Waits until every listed replica has executed at least `ops` operations.
async fn converge(c: &Cluster, replicas: &[usize], ops: u64) {
    let end = EInstant::now() + Duration::from_secs(5);
    while replicas.iter().any(|&i| c.status(i).ops_complete < ops) {
        assert!(
            EInstant::now() < end,
            "replicas did not catch up: {:?}",
            replicas.iter().map(|&i| c.status(i)).collect::<Vec<_>>()
        );
        Timer::after_millis(10).await;
    }
}

#[test]
fn operations_commit_on_three_embassy_stacks() {
    with_big_stack(operations_commit_on_three_embassy_stacks_body);
}

fn operations_commit_on_three_embassy_stacks_body() {
    let (c, background) = cluster(1);
    run(background, Duration::from_secs(30), async {
        let mut client = client(&c.eps, 1);
        put_and_read_back(&c, &mut client, 0, 20).await;
        let leader = c.leader().expect("a leader");
        let done = c.status(leader).ops_complete;
        // 20 puts through the log; the 20 Gets are queries the leader answers without one.
        assert!(done >= 20, "20 operations executed, got {done}");
        let queries = c.nodes[leader].with(|s| s.host.stats().queries_answered);
        assert!(queries >= 1, "the embassy leader answered no Get without a log write");
        converge(&c, &[0, 1, 2], done).await;
        for i in 0..3 {
            let app_len = c.nodes[i].with(|s| s.host.app().len());
            assert_eq!(app_len, 20, "replica {i} holds every key");
            let link = c.nodes[i].with(|s| s.link);
            assert_eq!(link.send_errors + link.truncated + link.loopback_dropped, 0, "replica {i}: {link:?}");
            assert!(link.looped_back > 0, "broadcasts to itself are fed back without the stack");
            let stats = c.nodes[i].with(|s| *s.host.stats());
            assert_eq!(stats.outbox_full + stats.oversize_messages + stats.decode_errors, 0, "{stats:?}");
        }
    });
}

#[test]
fn operations_commit_with_ten_percent_loss_and_reordering() {
    with_big_stack(operations_commit_with_ten_percent_loss_and_reordering_body);
}

fn operations_commit_with_ten_percent_loss_and_reordering_body() {
    let (c, background) = cluster(2);
    c.switch.set_faults(Faults { loss_permille: 100, reorder_permille: 50 });
    run(background, Duration::from_secs(60), async {
        let mut client = client(&c.eps, 1);
        put_and_read_back(&c, &mut client, 0, 15).await;
        let lost: u64 = (0..3).map(|i| c.switch.stats(c.ports[i]).lost).sum();
        let reordered: u64 = (0..3).map(|i| c.switch.stats(c.ports[i]).reordered).sum();
        assert!(lost > 0 && reordered > 0, "the faults were active: lost {lost}, reordered {reordered}");
        assert!(client.inner().stats().datagrams_in >= 30);
        c.switch.set_faults(Faults::default());
        let done = (0..3).map(|i| c.status(i).ops_complete).max().unwrap();
        converge(&c, &[0, 1, 2], done).await;
    });
}

#[test]
fn a_new_leader_takes_over_when_the_leaders_stack_is_cut_off() {
    with_big_stack(a_new_leader_takes_over_when_the_leaders_stack_is_cut_off_body);
}

fn a_new_leader_takes_over_when_the_leaders_stack_is_cut_off_body() {
    let (c, background) = cluster(3);
    run(background, Duration::from_secs(60), async {
        let mut client = client(&c.eps, 1);
        put_and_read_back(&c, &mut client, 0, 5).await;
        let old = c.leader().expect("a leader");
        let old_view = c.status(old).view;
        c.switch.set_connected(c.ports[old], false);
        // The client keeps going: its retries reach the others, they suspect the silent
        // leader, elect a new one, and the operations commit.
        put_and_read_back(&c, &mut client, 5, 10).await;
        let new = c.leader().expect("a new leader");
        assert_ne!(new, old, "the cut-off replica cannot lead");
        assert!(c.status(new).view > old_view, "a later view");
        let survivors: Vec<usize> = (0..3).filter(|&i| i != old).collect();
        let done = c.status(new).ops_complete;
        // 15 puts through the log (the Gets are queries).
        assert!(done >= 15, "{done}");
        converge(&c, &survivors, done).await;
        assert!(c.switch.stats(c.ports[old]).cut > 0);
        // Reconnected, the old leader catches up (by 2a retransmission or state transfer).
        c.switch.set_connected(c.ports[old], true);
        converge(&c, &[0, 1, 2], done).await;
    });
}

#[test]
fn sealed_embassy_nodes_serve_sealed_embassy_clients_and_refuse_another_key() {
    with_big_stack(|| {
        let (c, background) = cluster_with(4, Some(|cluster| keyring(cluster, true, 0x43)));
        let identity = rsl_config::<3>(&c.eps, sealed_params()).identity();
        let me = Endpoint::v4([10, 0, 0, 9], 5555);
        let sealed_client = |fill: u8| {
            let guard = Guard::new(keyring(identity, false, fill), me, Role::Client);
            Box::new(RslClient::sealed(Client::new(&c.eps, 1, 100, 1472 - AUTH_OVERHEAD_BYTES).unwrap(), guard))
        };
        run(background, Duration::from_secs(30), async {
            let mut client = sealed_client(0x43);
            put_and_read_back(&c, &mut client, 0, 5).await;
            assert_eq!((0..3).map(|i| c.nodes[i].with(|s| s.link.auth_refused)).sum::<u64>(), 0);
            // Another client key: every datagram refused and counted, nothing answered.
            let mut impostor = sealed_client(0x99);
            let mut req = [0u8; 64];
            let n = put(b"k1", b"forged").encode(&mut req).unwrap();
            let mut reply = [0u8; 64];
            let got = impostor.call(&c.client_socket, &req[..n], &mut reply, Duration::from_millis(600)).await;
            assert_eq!(got, Err(fleet_io_embassy::CallError::Timeout));
            let refused: u64 = (0..3).map(|i| c.nodes[i].with(|s| s.link.auth_refused)).sum();
            assert!(refused >= 1, "the nodes counted the impostor's datagrams");
            let got = kv(&mut client, &c.client_socket, get(b"k1")).await.expect("get committed");
            assert_eq!(got.as_deref(), Some(&b"v1"[..]), "unchanged");
        });
    });
}
