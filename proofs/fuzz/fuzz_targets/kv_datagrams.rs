//! Datagram sequences and clock steps into `KvHost::handle` / `tick` and
//! `KvClient::handle` / `tick`: never a panic, invariants hold after every step, outputs stay
//! bounded and decode.
//!
//! One host of a 3-host cluster (which one: the first byte) and one client with a request
//! outstanding. Input: records `[op, a, b, c, ...]`:
//! * `op % 4 == 0`: the clock advances `a` ms, then host and client tick;
//! * `op % 4 == 1`: a raw datagram of `a` bytes (with the KV header prepended if `op & 4`)
//!   to the host (`op & 8 == 0`) or the client, from the sender `op >> 4`;
//! * `op % 4 == 2`: a well-formed `Single` to the host from the sender `op >> 4`, on a small
//!   channel window (base, seqno and piggybacked ack from `b` and `c`) with a body chosen by
//!   `a` (requests, replies, Shard, Delegate with real pairs): deep states without a corpus;
//! * `op % 4 == 3`: a well-formed `Ack` or `Refused` to the host or the client.
//!
//! After each record, up to 16 datagrams flow between host and client (a lossless link), so
//! real replies, acks and redirects reach the client.
//!
//! Sealed, as a keyed cluster runs: every datagram the input makes, but the raw ones, is
//! sealed by its (claimed) sender and opened by its receiver's guard (the harness holds the
//! keys); raw bytes must be refused by the guard, then also go straight to `handle` as an
//! unsealed cluster's would. (What host and client send each other skips the guards: for
//! two key holders sealing then opening is the identity, and it would only cost time.) The host checks its own invariants after every step (debug assertions).
#![no_main]

use std::collections::VecDeque;

use fleet_engine::kv::{
    Body, Frame, HeaplessStore, KeyRange, KvClient, KvConfig, KvHost, KvParams, Refusal, ReliableParams, Request,
};
use fleet_engine::wire::{self, Bytes, Protocol, MAGIC, WIRE_VERSION};
use fleet_engine::{Endpoint, Instant, OutboxBuf};
use libfuzzer_sys::fuzz_target;

type Host = KvHost<HeaplessStore<8, 32>, 4, 8, 8, 16, 256>;
type Client = KvClient<4, 4, 256>;
type Buf = OutboxBuf<64, { 64 * 256 }>;
const DATAGRAM: usize = 256;
/// Most datagrams one step may emit: every unacked message of every peer (retransmission),
/// a Shard's Delegates and reply, and the owed acks.
const MAX_OUT: usize = 16 + 8 + 4 + 4;

const fn host_ep(i: usize) -> Endpoint {
    Endpoint::v4([10, 0, 0, i as u8 + 1], 7000)
}

static HOSTS: [Endpoint; 3] = [host_ep(0), host_ep(1), host_ep(2)];

const CLIENT: Endpoint = Endpoint::v4([10, 0, 1, 1], 9000);
const OTHER_CLIENT: Endpoint = Endpoint::v4([10, 0, 1, 2], 9000);
const STRANGER: Endpoint = Endpoint::v4([192, 0, 2, 1], 1);

fn params() -> KvParams {
    KvParams {
        max_value_bytes: 32,
        max_datagram_bytes: DATAGRAM,
        reliable: ReliableParams {
            retransmit_ms: 20,
            max_retransmit_ms: 160,
            max_unacked_per_peer: 4,
            give_up_after: 4,
        },
    }
}

fn sender(code: u8) -> Endpoint {
    match code % 6 {
        s @ 0..=2 => host_ep(usize::from(s)),
        3 => CLIENT,
        4 => OTHER_CLIENT,
        _ => STRANGER,
    }
}

/// A datagram from a member of the fuzzed cluster (hosts 0-2 with `params()`).
fn encode(frame: &Frame<'_>) -> Vec<u8> {
    let hosts: Vec<Endpoint> = (0..3).map(host_ep).collect();
    let cluster = fleet_engine::kv::config::identity_of(&hosts, &params());
    let mut buf = vec![0u8; 2 * DATAGRAM];
    let n = wire::encode_in_cluster(Protocol::Kv, cluster, frame, &mut buf).unwrap_or(0);
    buf.truncate(n);
    buf
}

/// A well-formed body chosen by `kind`, its numbers taken from `x`.
fn body(kind: u8, x: &[u8]) -> Vec<u8> {
    let k = |i: usize| u64::from(x.get(i).copied().unwrap_or(0)) * 1000;
    let value = [x.get(2).copied().unwrap_or(7); 8];
    let len = usize::from(x.get(3).copied().unwrap_or(0)) % 40; // sometimes too large
    let big = [1u8; 40];
    let mut pairs = [0u8; 128];
    let mut used = 0;
    for i in 0..usize::from(x.get(4).copied().unwrap_or(0) % 4) {
        if let Ok(w) = postcard::to_slice(&(k(i), Bytes(&value[..i + 1])), &mut pairs[used..]) {
            used += w.len();
        }
    }
    let pairs = &pairs[..used];
    let range = KeyRange::keys(k(0), k(1));
    let b = match kind % 8 {
        0 => Body::GetRequest { key: k(0) },
        1 => Body::SetRequest { key: k(0), value: Some(Bytes(&big[..len])) },
        2 => Body::SetRequest { key: k(0), value: None },
        3 => Body::Shard { range, recipient: host_ep(usize::from(x.get(5).copied().unwrap_or(0) % 4)) },
        4 => Body::Delegate {
            transfer: u64::from(x.get(6).copied().unwrap_or(1) % 3),
            range,
            part: u16::from(x.get(7).copied().unwrap_or(0) % 2),
            parts: u16::from(x.get(7).copied().unwrap_or(0) % 3),
            total_pairs: u32::from(x.get(4).copied().unwrap_or(0) % 5),
            pairs: Bytes(pairs),
        },
        5 => Body::Reply { req: k(0) / 1000, key: k(1), value: Some(Bytes(&value)) },
        6 => Body::Redirect { req: k(0) / 1000, key: k(1), owner: host_ep(1) },
        _ => Body::Sharded { req: k(0) / 1000 },
    };
    let mut buf = vec![0u8; DATAGRAM];
    let n = postcard::to_slice(&b, &mut buf).map(|w| w.len()).unwrap_or(0);
    buf.truncate(n);
    buf
}

/// With `FLEET_FUZZ_TRACE` set (when replaying a crash), each delivery is printed.
fn trace(from: Endpoint, to: &str, d: &[u8]) {
    if std::env::var_os("FLEET_FUZZ_TRACE").is_some() {
        match wire::decode::<Frame<'_>>(Protocol::Kv, d) {
            Ok(Frame::Single { base, seqno, ack, body }) => {
                let b = postcard::from_bytes::<Body<'_>>(body.0);
                eprintln!("{from:?} -> {to}: Single {base}/{seqno} ack {ack} {b:?}");
            }
            f => eprintln!("{from:?} -> {to}: {f:?}"),
        }
    }
}

struct World {
    host: Host,
    client: Client,
    now: Instant,
    link: VecDeque<(Endpoint, Endpoint, Vec<u8>)>,
    cluster: u32,
}

fn check(host: &Host, client: &Client, out: &fleet_engine::Outbox<'_>) {
    // The host's own invariants ran at the end of its step (debug assertions are on).
    if let Err(e) = client.reliable().invariant() {
        panic!("client channel invariant broken: {e}");
    }
    if out.len() > MAX_OUT {
        panic!("one step emitted {} datagrams (bound {MAX_OUT})", out.len());
    }
    if host.stats().oversize_messages > 0 || client.stats().oversize_messages > 0 {
        panic!("a message larger than a datagram was built");
    }
    for (_, d) in out.iter() {
        if d.len() > DATAGRAM || wire::decode::<Frame<'_>>(Protocol::Kv, d).is_err() {
            panic!("emitted a datagram that does not fit or decode: {d:02x?}");
        }
    }
}

impl World {
    /// Queues what `from` sent to `to` on the host-client link (bounded).
    fn forward(&mut self, from: Endpoint, to: Endpoint, out: &fleet_engine::Outbox<'_>) {
        for (dst, b) in out.iter() {
            if dst == to && self.link.len() < 64 {
                self.link.push_back((from, dst, b.to_vec()));
            }
        }
    }

    /// `d` sealed by `from` and opened by `to`'s guard: what `to` hands its engine.
    fn through_guards(&self, from: Endpoint, to: Endpoint, d: &[u8]) -> Vec<u8> {
        let wire = fleet_fuzz::seal(self.cluster, &HOSTS, from, to, d);
        match fleet_fuzz::open(self.cluster, &HOSTS, from, to, &wire, true) {
            Some(inner) => inner.to_vec(),
            None => panic!("a sealed datagram did not open"),
        }
    }

    fn host_receives(&mut self, buf: &mut Buf, from: Endpoint, d: &[u8]) {
        let d = &self.through_guards(from, host_ep(self.host.id()), d);
        self.host_receives_unsealed(buf, from, d);
    }

    fn host_receives_unsealed(&mut self, buf: &mut Buf, from: Endpoint, d: &[u8]) {
        trace(from, "host", d);
        let mut out = buf.outbox();
        let _ = self.host.handle(self.now, from, d, &mut out);
        check(&self.host, &self.client, &out);
        self.forward(host_ep(self.host.id()), CLIENT, &out);
    }

    fn client_receives(&mut self, buf: &mut Buf, from: Endpoint, d: &[u8]) {
        let d = &self.through_guards(from, CLIENT, d);
        self.client_receives_unsealed(buf, from, d);
    }

    fn client_receives_unsealed(&mut self, buf: &mut Buf, from: Endpoint, d: &[u8]) {
        trace(from, "client", d);
        let mut out = buf.outbox();
        let _ = self.client.handle(self.now, from, d, &mut out);
        check(&self.host, &self.client, &out);
        self.forward(CLIENT, host_ep(self.host.id()), &out);
    }

    fn tick(&mut self, buf: &mut Buf) {
        let mut out = buf.outbox();
        let _ = self.host.tick(self.now, &mut out);
        check(&self.host, &self.client, &out);
        self.forward(host_ep(self.host.id()), CLIENT, &out);
        let mut out = buf.outbox();
        self.client.tick(self.now, &mut out);
        // Keep the client busy: a new operation whenever the last one ended.
        if self.client.pending().is_none() {
            let key = self.now.as_micros() % 5 * 1000;
            let _ = self.client.submit(self.now, Request::Set(key, b"v"), &mut out);
        }
        check(&self.host, &self.client, &out);
        self.forward(CLIENT, host_ep(self.host.id()), &out);
    }

    /// The host and the client talk: both hold the keys, so sealing what they send and
    /// opening it is the identity (the fuzzer's own datagrams go through the guards).
    fn pump(&mut self, buf: &mut Buf) {
        for _ in 0..16 {
            let Some((from, to, d)) = self.link.pop_front() else { return };
            if to == CLIENT {
                self.client_receives_unsealed(buf, from, &d);
            } else {
                self.host_receives_unsealed(buf, from, &d);
            }
        }
    }
}

thread_local! {
    /// One outbox for every input (allocating and zeroing it per input costs throughput).
    static BUF: std::cell::Cell<Option<Box<Buf>>> = const { std::cell::Cell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    let me = usize::from(data.first().copied().unwrap_or(0)) % 3;
    let hosts: Vec<Endpoint> = (0..3).map(host_ep).collect();
    let Ok(mut config) = KvConfig::new(&hosts) else { return };
    config.params = params();
    let cluster = config.identity();
    let Ok(host) = Host::new(config, me, HeaplessStore::new()) else { panic!("host") };
    let Ok(client) = Client::new(&hosts, 1, params()) else { panic!("client") };
    let mut w = World { host, client, now: Instant::ZERO, link: VecDeque::new(), cluster };
    let mut boxed = BUF.with(|b| b.take()).unwrap_or_else(|| Box::new(Buf::new()));
    let buf = &mut *boxed;
    w.tick(buf);
    let mut rest = data.get(1..).unwrap_or(&[]);
    let mut steps = 0;
    while let [op, a, tail @ ..] = rest {
        steps += 1;
        if steps > 256 {
            break;
        }
        let from = sender(op >> 4);
        match op % 4 {
            0 => {
                w.now = w.now.plus_ms(u64::from(*a));
                w.tick(buf);
                rest = tail;
            }
            1 => {
                let take = usize::from(*a).min(tail.len());
                let (raw, next) = tail.split_at(take);
                let mut d = Vec::new();
                if op & 4 != 0 {
                    d.extend_from_slice(&[MAGIC, WIRE_VERSION, b'K']);
                }
                d.extend_from_slice(raw);
                let to = if op & 8 == 0 { host_ep(me) } else { CLIENT };
                let _ = fleet_fuzz::open(cluster, &HOSTS, from, to, &d, false);
                if op & 8 == 0 {
                    w.host_receives_unsealed(buf, from, &d);
                } else {
                    w.client_receives_unsealed(buf, from, &d);
                }
                rest = next;
            }
            2 => {
                let x = tail.get(..10).unwrap_or(tail);
                let (b, c) = (x.first().copied().unwrap_or(0), x.get(1).copied().unwrap_or(0));
                let base = 1 + u64::from(b >> 6);
                let seqno = base + u64::from(b & 7);
                let inner = body(*a, x.get(2..).unwrap_or(&[]));
                let d = encode(&Frame::Single { base, seqno, ack: u64::from(c & 7), body: Bytes(&inner) });
                w.host_receives(buf, from, &d);
                rest = tail.get(10..).unwrap_or(&[]);
            }
            _ => {
                let seqno = u64::from(a & 15);
                // Join frames (a host restarted without state asking, and answers) and an
                // operator's status requests.
                let nonce = 2 + u64::from(a & 7);
                let frame = match a >> 6 {
                    0 => Frame::Ack { seqno },
                    1 => Frame::Refused { seqno, reason: Refusal::QueueFull },
                    2 if a & 4 == 0 => Frame::Join { nonce, from_key: u64::from(a & 3) },
                    2 => Frame::StatusRequest { nonce, from_key: u64::from(a & 3) << 40 },
                    _ => Frame::JoinReply {
                        nonce,
                        base: 1 + seqno,
                        joining: a & 1 == 0,
                        seen_other: a & 2 == 0,
                        from_key: 0,
                        next: None,
                        runs: Bytes(tail.get(..8).unwrap_or(tail)),
                    },
                };
                let d = encode(&frame);
                if op & 8 == 0 {
                    w.host_receives(buf, from, &d);
                } else {
                    w.client_receives(buf, from, &d);
                }
                rest = tail;
            }
        }
        w.pump(buf);
    }
    BUF.with(|b| b.set(Some(boxed)));
});
