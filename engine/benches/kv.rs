//! IronKV Get/Set throughput through `KvHost::handle`, in process, one thread, no sockets.
//!
//! One host owning every key, 64 clients, 128-byte values. A round = each client sends one
//! request (one `handle`), then each client's ack of the reply arrives (one `handle`): the
//! full reliable-delivery cost of an operation. Datagrams are encoded before timing; the
//! host is rebuilt (untimed) every 64 rounds so seqnos can be replayed.
//! `kv/get` and `kv/set`: time per operation (request + ack). The summary lines split that
//! into nanoseconds per request `handle` and per ack `handle`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant as StdInstant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fleet_engine::kv::{Body, Frame, HeaplessStore, KvConfig, KvHost, ReliableParams};
use fleet_engine::wire::{self, Bytes, Protocol};
use fleet_engine::{Endpoint, Instant, OutboxBuf};

type Host = KvHost<HeaplessStore<1024, 1024>, 4, 8, 80, 128, 1472>;
type Out = OutboxBuf<8, 8192>;
const CLIENTS: usize = 64;
const ROUNDS: usize = 64;
const VALUE: [u8; 128] = [0x5A; 128];

fn client(i: usize) -> Endpoint {
    Endpoint::v4([127, 0, 1, (i / 200) as u8], 9000 + i as u16)
}

fn datagram(f: &Frame<'_>) -> Vec<u8> {
    let mut buf = [0u8; 1472];
    let n = wire::encode(Protocol::Kv, f, &mut buf).unwrap();
    buf[..n].to_vec()
}

fn single(seqno: u64, body: &Body<'_>) -> Vec<u8> {
    let mut inner = [0u8; 1472];
    let n = postcard::to_slice(body, &mut inner).unwrap().len();
    datagram(&Frame::Single { base: 1, seqno, ack: 0, body: Bytes(&inner[..n]) })
}

fn key(c: usize, r: usize) -> u64 {
    ((c * ROUNDS + r) % 1024) as u64
}

/// Datagrams with their senders, in delivery order.
type Datagrams = Vec<(Endpoint, Vec<u8>)>;

/// Request and ack datagrams for every (round, client), in delivery order.
struct Script {
    rounds: Vec<(Datagrams, Datagrams)>,
    preload: Datagrams,
}

fn script(get: bool) -> Script {
    let loader = Endpoint::v4([127, 0, 2, 1], 1);
    // The loader writes every key once (seqnos 1..=1024) and acks as it goes.
    let mut preload = Vec::new();
    for k in 0..1024u64 {
        preload.push((loader, single(k + 1, &Body::SetRequest { key: k, value: Some(Bytes(&VALUE)) })));
        preload.push((loader, datagram(&Frame::Ack { seqno: k + 1 })));
    }
    let rounds = (0..ROUNDS)
        .map(|r| {
            let seqno = r as u64 + 1;
            let reqs = (0..CLIENTS)
                .map(|c| {
                    let body = match get {
                        true => Body::GetRequest { key: key(c, r) },
                        false => Body::SetRequest { key: key(c, r), value: Some(Bytes(&VALUE)) },
                    };
                    (client(c), single(seqno, &body))
                })
                .collect();
            let acks = (0..CLIENTS).map(|c| (client(c), datagram(&Frame::Ack { seqno }))).collect();
            (reqs, acks)
        })
        .collect();
    Script { rounds, preload }
}

fn fresh_host(s: &Script, out: &mut Out) -> Box<Host> {
    let hosts = [Endpoint::v4([127, 0, 0, 1], 7000), Endpoint::v4([127, 0, 0, 1], 7001)];
    let mut config = KvConfig::<4>::new(&hosts).unwrap();
    config.params.reliable =
        ReliableParams { retransmit_ms: 1000, max_retransmit_ms: 8000, max_unacked_per_peer: 8, give_up_after: 12 };
    let mut h = Box::new(Host::new(config, 0, HeaplessStore::new()).unwrap());
    for (from, d) in &s.preload {
        let mut o = out.outbox();
        let _ = h.handle(Instant::ZERO, *from, d, &mut o);
    }
    h
}

/// Runs `ops` operations; returns (time in request handles, time in ack handles).
fn run(s: &Script, ops: u64, out: &mut Out) -> (Duration, Duration) {
    let (mut req_t, mut ack_t) = (Duration::ZERO, Duration::ZERO);
    let mut done = 0u64;
    let now = Instant::from_millis(1);
    while done < ops {
        let mut h = fresh_host(s, out);
        for (reqs, acks) in &s.rounds {
            let t0 = StdInstant::now();
            for (from, d) in reqs {
                let mut o = out.outbox();
                let _ = black_box(h.handle(now, *from, d, &mut o));
                black_box(o.len());
            }
            let t1 = StdInstant::now();
            for (from, d) in acks {
                let mut o = out.outbox();
                let _ = black_box(h.handle(now, *from, d, &mut o));
            }
            req_t += t1 - t0;
            ack_t += t1.elapsed();
            done += CLIENTS as u64;
            if done >= ops {
                break;
            }
        }
        assert_eq!(h.stats().queue_full, 0);
        assert_eq!(h.stats().outbox_full + h.stats().invalid_messages + h.stats().ignored_messages, 0);
    }
    (req_t, ack_t)
}

fn bench(c: &mut Criterion) {
    let mut out = Box::new(Out::new());
    let mut group = c.benchmark_group("kv");
    group.throughput(Throughput::Elements(1));
    for (name, get) in [("get", true), ("set", false)] {
        let s = script(get);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let (r, a) = run(&s, iters, &mut out);
                r + a
            })
        });
        let ops = 200_000u64;
        let (r, a) = run(&s, ops, &mut out);
        let per_req = r.as_nanos() as f64 / ops as f64;
        let per_ack = a.as_nanos() as f64 / ops as f64;
        eprintln!(
            "kv/{name}: {:.0} ns per request handle, {:.0} ns per ack handle, {:.0} ops/s (request+ack), \
             {:.0} requests/s (request handle only)",
            per_req,
            per_ack,
            1e9 / (per_req + per_ack),
            1e9 / per_req
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
