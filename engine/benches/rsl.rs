//! RSL throughput and per-datagram cost, in process, one thread, no sockets.
//!
//! `cluster/commit`: a 3-replica cluster of the KV app with 64 closed-loop clients sending
//! 128-byte Puts, batch size 32; one iteration = every client gets one reply. Throughput is
//! committed (executed and answered) operations per second.
//! `handle/*`: nanoseconds for one `handle` call on a representative datagram. The cluster
//! bench also prints how many `handle` calls a committed operation costs, so the mean cost
//! of a `handle` call is its time per op divided by that number.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fleet_engine::rsl::apps::kv::{KvApp, KvOp};
use fleet_engine::rsl::{Ballot, Client, Replica, RslConfig, RslMsg};
use fleet_engine::wire::{self, Bytes};
use fleet_engine::{Endpoint, Instant, OutboxBuf};

const D: usize = 8192;
type App = KvApp<1024, 16, 128>;
/// 256 KiB of retained batches: with the engine's default of 16 KiB a replica froze a
/// snapshot every third batch (3 % of the bench's instructions), where a std server
/// (`io-std`'s 8 MiB) freezes one about every two seconds under load.
type Rep = Replica<App, 3, 8, D, 65536, 256, 256, { 256 << 10 }>;
type Out = OutboxBuf<256, { 256 * 1024 }>;
const CLIENTS: usize = 64;

struct Cluster {
    replicas: Vec<Box<Rep>>,
    eps: Vec<Endpoint>,
    clients: Vec<Client<3, D>>,
    client_eps: Vec<Endpoint>,
    net: VecDeque<(Endpoint, Endpoint, Vec<u8>)>,
    /// Buffers of delivered datagrams, reused: the bench's network should cost little
    /// beside the engine it measures.
    spare: Vec<Vec<u8>>,
    out: Box<Out>,
    now: u64,
    handles: u64,
    committed: u64,
}

impl Cluster {
    fn new() -> Cluster {
        let eps: Vec<Endpoint> = (0..3).map(|i| Endpoint::v4([127, 0, 0, 1], 7000 + i)).collect();
        let mut config = RslConfig::<3>::new(&eps).unwrap();
        config.params.max_datagram_bytes = D;
        config.params.max_batch_size = 32;
        let replicas =
            (0..3).map(|i| Box::new(Rep::new(config.clone(), i, App::new(), Instant::ZERO).unwrap())).collect();
        let client_eps: Vec<Endpoint> = (0..CLIENTS).map(|i| Endpoint::v4([127, 0, 0, 2], 9000 + i as u16)).collect();
        let clients = (0..CLIENTS).map(|_| Client::new(&eps, 1, 1000, D).unwrap()).collect();
        let mut c = Cluster {
            replicas,
            eps,
            clients,
            client_eps,
            net: VecDeque::new(),
            spare: Vec::new(),
            out: Box::new(Out::new()),
            now: 0,
            handles: 0,
            committed: 0,
        };
        // Elect the first leader.
        c.tick_all();
        c.pump(|_| false);
        c
    }

    /// Queues a datagram in a reused buffer.
    fn send(
        net: &mut VecDeque<(Endpoint, Endpoint, Vec<u8>)>,
        spare: &mut Vec<Vec<u8>>,
        from: Endpoint,
        to: Endpoint,
        bytes: &[u8],
    ) {
        let mut buf = spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(bytes);
        net.push_back((from, to, buf));
    }

    /// The client at `ep`, if it is one (clients are 127.0.0.2:9000 and up).
    fn client_index(&self, ep: Endpoint) -> Option<usize> {
        let j = usize::from(ep.port.checked_sub(9000)?);
        (self.client_eps.get(j) == Some(&ep)).then_some(j)
    }

    fn tick_all(&mut self) {
        self.now += 1000;
        for i in 0..3 {
            let mut out = self.out.outbox();
            let _ = self.replicas[i].tick(Instant::from_micros(self.now), &mut out);
            for (to, b) in out.iter() {
                Self::send(&mut self.net, &mut self.spare, self.eps[i], to, b);
            }
        }
    }

    /// Delivers datagrams until the network is empty; `on_reply` sees client completions.
    fn pump(&mut self, mut on_reply: impl FnMut(usize) -> bool) {
        let now = Instant::from_micros(self.now);
        while let Some((from, to, bytes)) = self.net.pop_front() {
            if let Some(i) = self.eps.iter().position(|e| *e == to) {
                let mut out = self.out.outbox();
                let _ = self.replicas[i].handle(now, from, &bytes, &mut out);
                self.handles += 1;
                for (dst, b) in out.iter() {
                    Self::send(&mut self.net, &mut self.spare, to, dst, b);
                }
            } else if let Some(j) = self.client_index(to) {
                let done = self.clients[j].handle(now, from, &bytes).is_some() && on_reply(j);
                self.spare.push(bytes);
                if done {
                    return;
                }
                continue;
            }
            self.spare.push(bytes);
        }
    }

    /// Every client submits one Put and waits for its reply.
    fn round(&mut self, value: &[u8]) {
        let now = Instant::from_micros(self.now);
        for j in 0..CLIENTS {
            let key = [j as u8, 0, 0, 0];
            let mut req = [0u8; 256];
            let n = KvOp::Put(Bytes(&key), Bytes(value)).encode(&mut req).unwrap();
            let mut out = self.out.outbox();
            self.clients[j].submit(now, &req[..n], &mut out).unwrap();
            for (to, b) in out.iter() {
                Self::send(&mut self.net, &mut self.spare, self.client_eps[j], to, b);
            }
        }
        let mut left = CLIENTS;
        loop {
            self.pump(|_| {
                left -= 1;
                left == 0
            });
            if left == 0 {
                self.committed += CLIENTS as u64;
                return;
            }
            // Requests waiting for the batch timer: let time pass.
            self.now += 10_000;
            self.tick_all();
        }
    }
}

fn cluster(c: &mut Criterion) {
    let mut g = c.benchmark_group("cluster");
    g.throughput(Throughput::Elements(CLIENTS as u64));
    let mut cl = Cluster::new();
    let value = [7u8; 128];
    g.bench_function("commit_64_clients_128B_puts", |b| b.iter(|| cl.round(&value)));
    g.finish();
    let batches = cl.replicas[0].executor().ops_complete.max(1);
    eprintln!(
        "cluster: {} ops committed in {} batches ({:.1} per batch), {:.2} replica handle calls per committed op",
        cl.committed,
        batches,
        cl.committed as f64 / batches as f64,
        cl.handles as f64 / cl.committed.max(1) as f64
    );
}

fn encode(cluster: u32, msg: &RslMsg<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; D];
    let n = wire::encode_rsl(cluster, msg, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn handle(c: &mut Criterion) {
    let eps: Vec<Endpoint> = (0..3).map(|i| Endpoint::v4([127, 0, 0, 1], 7000 + i)).collect();
    let mut config = RslConfig::<3>::new(&eps).unwrap();
    config.params.max_datagram_bytes = D;
    let mut g = c.benchmark_group("handle");
    g.throughput(Throughput::Elements(1));

    // A follower accepting a full 2a (32 x 128-byte requests) and broadcasting its 2b.
    let mut batch = heapless::Vec::<u8, D>::new();
    for s in 0..32u64 {
        let e = fleet_engine::rsl::batch::BatchEntry {
            client: eps[0],
            seqno: s,
            request: Bytes(&[1u8; 128]),
            kind: fleet_engine::rsl::batch::EntryKind::Single,
        };
        let mut tmp = [0u8; 256];
        let n = postcard::to_slice(&e, &mut tmp).unwrap().len();
        batch.extend_from_slice(&tmp[..n]).unwrap();
    }
    let mut follower = Box::new(Rep::new(config.clone(), 1, App::new(), Instant::ZERO).unwrap());
    let mut out = Box::new(Out::new());
    let mut opn = 0u64;
    g.bench_function("2a_full_batch", |b| {
        b.iter(|| {
            let dgram = encode(config.identity(), &RslMsg::TwoA { bal: Ballot::INITIAL, opn, batch: Bytes(&batch) });
            opn += 1;
            let mut o = out.outbox();
            let _ = black_box(follower.handle(Instant::ZERO, eps[0], &dgram, &mut o));
        })
    });

    // A malformed datagram: decoded, refused, counted.
    let mut garbage = vec![0xF1, wire::WIRE_VERSION, b'R'];
    garbage.extend_from_slice(&config.identity().to_le_bytes());
    garbage.extend_from_slice(&[0xff, 0xff, 0xff]);
    g.bench_function("malformed", |b| {
        b.iter(|| {
            let mut o = out.outbox();
            let _ = black_box(follower.handle(Instant::ZERO, eps[0], &garbage, &mut o));
        })
    });

    g.finish();
}

criterion_group!(benches, cluster, handle);
criterion_main!(benches);
