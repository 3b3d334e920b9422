//! Membership change ([`fleet_engine::rsl::membership`]) on embassy replicas: each replica
//! a `Node` on its own embassy-net stack over the in-memory switch, the clients on one
//! more stack. A client submits a change; the replicas that execute it enter the next
//! epoch, a new embassy replica started for that epoch without state rejoins by state
//! transfer and then votes, a replica left out retires and redirects a client still
//! pointed at the old membership, and every acknowledged write reads back from the new
//! membership.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;

use common::*;
use embassy_futures::select::{select, select_slice, Either};
use embassy_net::udp::UdpSocket;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::signal::Signal;
use embassy_time::{Duration, Instant as EInstant, Timer};
use fleet_engine::rsl::membership::{self, Outcome};
use fleet_engine::rsl::{Client, Replica, RslConfig, Status};
use fleet_engine::{Endpoint, OutboxBuf};
use fleet_io_embassy::net::{to_endpoint, to_ip_endpoint};
use fleet_io_embassy::switch::{PortId, Switch};
use fleet_io_embassy::{Node, RslClient};

/// Up to five replica stacks and the clients' stack.
type LabSwitch = Switch<6, QUEUE>;
/// The pure-embassy tests' replica (`TestReplica`) with replica bound `R`: 3 is what the
/// firmware builds (it can replace a replica, not grow), 5 lets a cluster grow to five.
type Rep<const R: usize> = Replica<TestApp, R, 8, 1472, 8192, 16, 128>;
type RepNode<const R: usize> = Node<CriticalSectionRawMutex, Rep<R>>;
/// Clients of up to five replicas (a retry goes to every one: 5 × 1472 outbox bytes).
type LabClient = RslClient<5, 1472, 7360>;
/// What starts a new machine: its epoch's configuration and its index there.
type Boot<const R: usize> = Signal<CriticalSectionRawMutex, (RslConfig<R>, usize)>;

/// One replica's machine: a stack on the switch, and a node once started.
struct Machine<const R: usize> {
    ep: Endpoint,
    port: PortId,
    node: &'static OnceLock<&'static RepNode<R>>,
    boot: &'static Boot<R>,
}

impl<const R: usize> Machine<R> {
    /// Its replica's status, once started.
    fn status(&self) -> Option<Status> {
        self.node.get().map(|n| n.with(|s| s.host.status()))
    }

    fn with<T>(&self, f: impl FnOnce(&Rep<R>) -> T) -> T {
        self.node.get().expect("started").with(|s| f(&s.host))
    }
}

/// The machines, the switch, and the clients' sockets (one per client: a replica
/// remembers the last seqno per client endpoint).
struct Lab<const R: usize> {
    switch: &'static LabSwitch,
    machines: Vec<Machine<R>>,
    /// The writer's, the operator's, a client of the old membership's, a reader's.
    sockets: [&'static UdpSocket<'static>; 4],
}

impl<const R: usize> Lab<R> {
    fn eps(&self, ids: &[usize]) -> Vec<Endpoint> {
        ids.iter().map(|&i| self.machines[i].ep).collect()
    }

    fn status(&self, i: usize) -> Status {
        self.machines[i].status().expect("started")
    }

    /// Starts machine `i` without state, as replica `index` of `config`.
    fn boot(&self, i: usize, config: RslConfig<R>, index: usize) {
        assert_eq!(config.replicas[index], self.machines[i].ep);
        self.machines[i].boot.signal((config, index));
    }

    fn cut(&self, i: usize) {
        self.switch.set_connected(self.machines[i].port, false);
    }
}

/// `machines` stacks at 10.0.0.1…; the first `founders` run epoch 0 of the founders at
/// once, the others wait to be booted. Returns the lab and the future that runs it all.
fn lab<const R: usize>(seed: u64, machines: usize, founders: usize) -> (Lab<R>, impl Future<Output = ()>) {
    let switch: &'static LabSwitch = Box::leak(Box::new(LabSwitch::new(seed)));
    let ip = |i: usize| [10, 0, 0, 1 + i as u8];
    let eps: Vec<Endpoint> = (0..machines).map(|i| Endpoint::v4(ip(i), 7000)).collect();
    let epoch0 = rsl_config::<R>(&eps[..founders], fast_params());
    let mut futures: Vec<Pin<Box<dyn Future<Output = ()>>>> = Vec::new();
    let mut lab = Vec::new();
    for (i, &ep) in eps.iter().enumerate() {
        let (stack, mut runner, port) = stack(switch, ip(i), 24);
        futures.push(Box::pin(async move { runner.run().await }));
        let socket = Box::leak(Box::new(TestSocket::new())).bind(stack, 7000).unwrap();
        let socket: &'static UdpSocket<'static> = Box::leak(Box::new(socket));
        let bufs: &'static mut TestBuffers = Box::leak(Box::new(TestBuffers::new()));
        let slot: &'static OnceLock<&'static RepNode<R>> = Box::leak(Box::new(OnceLock::new()));
        let boot: &'static Boot<R> = Box::leak(Box::new(Signal::new()));
        if i < founders {
            let replica = Rep::<R>::new(epoch0.clone(), i, TestApp::new(), fleet_io_embassy::now()).unwrap();
            let _ = slot.set(Box::leak(Box::new(Node::new(ep, replica))));
        }
        futures.push(Box::pin(async move {
            if slot.get().is_none() {
                let (config, index) = boot.wait().await;
                let now = fleet_io_embassy::now();
                let nonce = now.as_micros().max(1);
                let replica = Rep::<R>::new_rejoining(config, index, TestApp::new(), now, nonce).unwrap();
                let _ = slot.set(Box::leak(Box::new(Node::new(ep, replica))));
            }
            let node: &'static RepNode<R> = slot.get().unwrap();
            let _ = node.run(socket, bufs).await;
        }));
        lab.push(Machine { ep, port, node: slot, boot });
    }
    let (client_stack, mut client_runner, _) = stack(switch, [10, 0, 0, 9], 24);
    futures.push(Box::pin(async move { client_runner.run().await }));
    let sockets = std::array::from_fn(|k| {
        let socket = Box::leak(Box::new(TestSocket::new())).bind(client_stack, 5555 + k as u16).unwrap();
        &*Box::leak(Box::new(socket))
    });
    let background = async move {
        // Every future here runs forever: selecting over them runs them all.
        let _ = select_slice(Pin::new(&mut futures[..])).await;
    };
    (Lab { switch, machines: lab, sockets }, background)
}

/// Runs `body` while the lab runs; fails if it takes longer than `limit`.
fn run<F: Future<Output = ()>>(background: impl Future<Output = ()>, limit: Duration, body: F) {
    block_on(async {
        match select(background, select(body, Timer::after(limit))).await {
            Either::Second(Either::First(())) => {}
            Either::Second(Either::Second(())) => panic!("the test did not finish within {limit:?}"),
            Either::First(()) => unreachable!("the lab stopped"),
        }
    });
}

/// A client of `eps` that names no cluster (the default): it learns a new membership from
/// a replica that left the cluster, or by asking once its requests go unanswered.
fn lab_client(eps: &[Endpoint]) -> Box<LabClient> {
    Box::new(RslClient::new(Client::new(eps, 1, 100, 1472).unwrap()))
}

/// Waits (at most `limit`) until `done`; panics with `what` and `why()` otherwise.
async fn wait_until<W: std::fmt::Debug>(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> bool,
    why: impl Fn() -> W,
) {
    let end = EInstant::now() + limit;
    while !done() {
        assert!(EInstant::now() < end, "{what} within {limit:?}: {:?}", why());
        Timer::after_millis(10).await;
    }
}

/// Writes keys `keys` through `client` on `socket`, recording each acknowledged write.
async fn write(
    client: &mut LabClient,
    socket: &UdpSocket<'_>,
    keys: std::ops::Range<usize>,
    acked: &mut BTreeMap<String, String>,
) {
    for i in keys {
        let (key, value) = (format!("k{i}"), format!("v{i}"));
        kv(client, socket, put(key.as_bytes(), value.as_bytes())).await.expect("put acknowledged");
        acked.insert(key, value);
    }
}

/// Reads every acknowledged write back through `client`.
async fn read_back(client: &mut LabClient, socket: &UdpSocket<'_>, acked: &BTreeMap<String, String>) {
    for (key, value) in acked {
        let got = kv(client, socket, get(key.as_bytes())).await.expect("get answered");
        assert_eq!(got.as_deref(), Some(value.as_bytes()), "read back {key}");
    }
}

/// An operator's change ending `epoch` with `next`, sent to `members` by the engine's
/// `Client` driven here (the async `RslClient` sends requests, not changes); its outcome.
async fn change(socket: &UdpSocket<'_>, members: &[Endpoint], epoch: u64, next: &[Endpoint]) -> Outcome {
    let mut op: Client<5, 1472> = Client::new(members, 1, 100, 1472).unwrap();
    let mut buf = [0u8; 512];
    let bytes = membership::encode_change(epoch, next, &mut buf).expect("a small change");
    let mut store: Box<OutboxBuf<5, 7360>> = Box::new(OutboxBuf::new());
    let mut out = store.outbox();
    op.submit_change(fleet_io_embassy::now(), bytes, &mut out).unwrap();
    let end = EInstant::now() + Duration::from_secs(10);
    let mut rx = [0u8; 1472];
    loop {
        for (dst, datagram) in out.iter() {
            let _ = socket.send_to(datagram, to_ip_endpoint(dst).unwrap()).await;
        }
        out.clear();
        let now = EInstant::now();
        assert!(now < end, "the change was not answered within 10 s");
        let wait = Duration::from_micros(op.next_deadline().as_micros().saturating_sub(now.as_micros()));
        match select(socket.recv_from(&mut rx), Timer::after(wait.min(end - now))).await {
            Either::First(Ok((n, meta))) => {
                let Some(from) = to_endpoint(meta.endpoint) else { continue };
                if let Some(done) = op.handle(fleet_io_embassy::now(), from, &rx[..n]) {
                    return postcard::from_bytes(done.reply).expect("an outcome");
                }
            }
            Either::First(Err(_)) => {}
            Either::Second(()) => op.tick(fleet_io_embassy::now(), &mut out),
        }
    }
}

/// Waits until machine `i` votes in epoch `epoch`, has executed as far as `of` and holds
/// every acknowledged write.
async fn caught_up<const R: usize>(lab: &Lab<R>, i: usize, of: &[usize], epoch: u64, acked: &BTreeMap<String, String>) {
    let target = of.iter().map(|&j| lab.status(j).ops_complete).max().unwrap();
    wait_until(
        &format!("replica {i} catches up to operation {target} and votes"),
        Duration::from_secs(8),
        || lab.machines[i].status().is_some_and(|s| s.epoch == epoch && !s.rejoining && s.ops_complete >= target),
        || lab.machines[i].status(),
    )
    .await;
    lab.machines[i].with(|r| {
        for (key, value) in acked {
            assert_eq!(r.app().get(key.as_bytes()), Some(value.as_bytes()), "replica {i} holds {key}");
        }
    });
}

#[test]
fn a_new_embassy_replica_replaces_one_and_the_removed_one_redirects() {
    with_big_stack(replace_body);
}

fn replace_body() {
    // Replicas 0, 1, 2 in epoch 0; machine 3 replaces replica 2. R = 3, as the firmware.
    let (lab, background) = lab::<3>(21, 4, 3);
    let [writer, operator, old_socket, reader] = lab.sockets;
    run(background, Duration::from_secs(20), async {
        let (old, new) = (lab.eps(&[0, 1, 2]), lab.eps(&[0, 1, 3]));
        let epoch0 = rsl_config::<3>(&old, fast_params());
        let mut acked = BTreeMap::new();
        let mut client = lab_client(&epoch0.replicas);
        write(&mut client, writer, 0..10, &mut acked).await;

        let outcome = change(operator, &old, 0, &new).await;
        let Outcome::Started { epoch: 1, start } = outcome else { panic!("{outcome:?}") };
        assert!(start > 10, "the change executed after the writes: epoch 1 starts at {start}");
        wait_until(
            "replicas 0 and 1 enter epoch 1, replica 2 retires",
            Duration::from_secs(3),
            || lab.status(0).epoch == 1 && lab.status(1).epoch == 1 && lab.status(2).retired,
            || [lab.status(0), lab.status(1), lab.status(2)],
        )
        .await;
        for i in [0, 1] {
            lab.machines[i].with(|r| assert_eq!((r.epoch_start(), r.config().n()), (start, 3), "replica {i}"));
        }
        let retired = lab.machines[2].with(|r| r.retired().cloned()).expect("replica 2 retired");
        assert_eq!((retired.next.epoch, retired.start, &retired.next.replicas[..]), (1, start, &new[..]));

        // The new machine, for epoch 1, without state: it rejoins by state transfer.
        let epoch1 = epoch0.next_epoch(heapless::Vec::from_slice(&new).unwrap());
        lab.boot(3, epoch1, 2);
        write(&mut client, writer, 10..20, &mut acked).await;

        // A client still pointed at the old membership, its first try to the removed
        // replica: told where the cluster went, it follows and is served.
        let mut stale = lab_client(&lab.eps(&[2, 0, 1]));
        let got = kv(&mut stale, old_socket, get(b"k0")).await.expect("served after the redirect");
        assert_eq!(got.as_deref(), Some(&b"v0"[..]));
        assert_eq!(stale.inner().membership(), (1, &new[..]), "the old client followed the redirect");
        assert!(lab.machines[2].with(|r| r.stats().redirects) >= 1, "the retired replica redirected");
        assert!(lab.status(2).retired, "the removed replica's status says retired");

        caught_up(&lab, 3, &[0, 1], 1, &acked).await;

        // Without replica 0 (epoch 1's first leader) and the retired one, replicas 1 and 3
        // elect a leader and decide: the new replica votes.
        let view = lab.status(1).view;
        lab.cut(0);
        lab.cut(2);
        // The writer names no cluster and knows only epoch 0's replicas: unanswered, it
        // asks them for the membership and follows, so the new replica hears its requests
        // and suspects the dead leader too.
        write(&mut client, writer, 20..25, &mut acked).await;
        assert_eq!(client.inner().membership(), (1, &new[..]), "the writer followed");
        let leader = [1, 3].into_iter().find(|&i| lab.status(i).is_leader).expect("replica 1 or 3 leads");
        assert!(lab.status(leader).view > view, "a later view of epoch 1");
        read_back(&mut lab_client(&new), reader, &acked).await;
    });
}

#[test]
fn three_embassy_replicas_grow_to_five() {
    with_big_stack(grow_body);
}

fn grow_body() {
    // Replicas 0, 1, 2 in epoch 0; machines 3 and 4 join. R = 5: with the firmware's R = 3
    // every replica refuses a five-replica epoch (`Refusal::Size`).
    let (lab, background) = lab::<5>(22, 5, 3);
    let [writer, operator, _, reader] = lab.sockets;
    run(background, Duration::from_secs(20), async {
        let (old, new) = (lab.eps(&[0, 1, 2]), lab.eps(&[0, 1, 2, 3, 4]));
        let epoch0 = rsl_config::<5>(&old, fast_params());
        let mut acked = BTreeMap::new();
        let mut client = lab_client(&epoch0.replicas);
        write(&mut client, writer, 0..10, &mut acked).await;

        // The new machines start first, for the epoch the change will create; they wait
        // for a replica of that epoch with state.
        let epoch1 = epoch0.next_epoch(heapless::Vec::from_slice(&new).unwrap());
        lab.boot(3, epoch1.clone(), 3);
        lab.boot(4, epoch1, 4);
        let outcome = change(operator, &old, 0, &new).await;
        let Outcome::Started { epoch: 1, start } = outcome else { panic!("{outcome:?}") };
        assert!(start > 10, "epoch 1 starts at {start}");
        write(&mut client, writer, 10..20, &mut acked).await;
        for i in [3, 4] {
            caught_up(&lab, i, &[0, 1, 2], 1, &acked).await;
        }
        for i in 0..5 {
            lab.machines[i].with(|r| assert_eq!((r.config().epoch, r.config().n()), (1, 5), "replica {i}"));
        }

        // Without replicas 0 and 2, three of five remain, two of them new: they decide.
        lab.cut(0);
        lab.cut(2);
        write(&mut client, writer, 20..25, &mut acked).await;
        assert_eq!(client.inner().membership(), (1, &new[..]), "the writer followed");
        assert!([1, 3, 4].into_iter().any(|i| lab.status(i).is_leader), "a survivor leads");
        read_back(&mut lab_client(&new), reader, &acked).await;
    });
}
