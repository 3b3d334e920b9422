//! The sans-IO KV client: one operation at a time, over reliable single delivery.
//!
//! Contract (same shape as the host's): `submit` queues the operation's first datagram;
//! feed every received datagram to `handle` (it acks replies and returns an [`Event`] when
//! the operation completes or a host pushes back); call `tick` at `next_deadline` to
//! retransmit. Requests travel on the client's reliable channel to each host, so a host
//! executes each request exactly once however often it is retransmitted; replies travel on
//! the host's channel to the client, which acks them (IronKV's clients do the same).
//!
//! **Redirects.** A host that does not own the key answers `Redirect(key, owner)`; the
//! client re-sends the operation to `owner` at once and remembers the owner for the key.
//! While a range is in transfer the old and new owner may redirect to each other: after
//! [`MAX_REDIRECT_STREAK`] redirects in a row the client waits one retransmission period
//! before following the next.
//!
//! **Seqnos.** The client's channels start at the caller-supplied `first_seqno`. Hosts
//! remember the last seqno per client endpoint, and a channel whose base is larger than
//! the one they know is taken as a restarted client. So a client restarting on the same
//! endpoint must start above every seqno it used before (seed it from a wall clock in
//! microseconds, or persist a high-water mark); one that reuses a smaller base is ignored
//! as a stale incarnation.
//!
//! **Back-pressure.** `submit` fails with [`ClientError::QueueFull`] when the channel to
//! the target host is full; a host that cannot queue its reply refuses the request with a
//! visible [`Event::Refused`] and the client retransmits later with backoff.

use super::config::KvParams;
use super::msg::{Body, KeyRange, KvError};
use super::reliable::{Frame, Refusal, Reliable, SendError, Verdict};
use crate::config::ConfigError;
use crate::endpoint::Endpoint;
use crate::outbox::Outbox;
use crate::stats::Stats;
use crate::time::{earliest, Instant};
use crate::wire::{self, Bytes, Protocol};

/// Redirects followed back to back before the client pauses one retransmission period.
pub const MAX_REDIRECT_STREAK: u32 = 4;
/// Key-to-owner hints the client remembers.
const HINTS: usize = 16;

/// An operation a client may submit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// Read a key.
    Get(u64),
    /// Write a key.
    Set(u64, &'a [u8]),
    /// Remove a key.
    Delete(u64),
    /// Admin: move `range` to the host at the endpoint.
    Shard(KeyRange, Endpoint),
}

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'d> {
    /// A Get's value (`None`: absent), borrowed from the datagram.
    Value(Option<&'d [u8]>),
    /// A Set or Delete took effect.
    Written,
    /// A Shard was carried out.
    Sharded,
    /// The host refused; nothing changed.
    Failed(KvError),
}

/// A completed operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completed<'d> {
    /// The operation's id ([`KvClient::submit`]'s return value).
    pub op: u64,
    /// Its outcome.
    pub outcome: Outcome<'d>,
    /// Redirects followed.
    pub redirects: u32,
    /// The host that answered.
    pub host: Endpoint,
}

/// What a received datagram meant to the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'d> {
    /// The outstanding operation completed.
    Completed(Completed<'d>),
    /// A host refused the outstanding operation's request for now (back-pressure); the
    /// client retransmits it with backoff. The operation stays outstanding.
    Refused {
        /// The operation.
        op: u64,
        /// The host that pushed back.
        host: Endpoint,
        /// Why.
        reason: Refusal,
    },
}

/// Why an operation was not submitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ClientError {
    /// An operation is already outstanding.
    Busy,
    /// The value is longer than `max_value_bytes`.
    TooLarge,
    /// The channel to the target host is full (back-pressure): retry later.
    QueueFull,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Get,
    Set,
    Delete,
    Shard(KeyRange, Endpoint),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Op<const D: usize> {
    id: u64,
    kind: Kind,
    key: u64,
    value: heapless::Vec<u8, D>,
    target: usize,
    /// Seqno of the request on the channel to `target`; `None` while waiting to send.
    seqno: Option<u64>,
    resend_at: Option<Instant>,
    redirects: u32,
    streak: u32,
}

/// A KV client of a cluster of at most `H` hosts, with `U` unacked requests in all and
/// `D`-byte datagrams.
///
/// `PartialEq`/`Eq`/`Hash` compare the protocol state and leave out the counters
/// ([`KvClient::stats`]), for model checkers.
#[derive(Clone, Debug)]
pub struct KvClient<const H: usize = 16, const U: usize = 8, const D: usize = 1472> {
    hosts: heapless::Vec<Endpoint, H>,
    params: KvParams,
    rel: Reliable<H, U, D>,
    op: Option<Op<D>>,
    next_op: u64,
    hints: heapless::Vec<(u64, u8), HINTS>,
    stats: Stats,
}

impl<const H: usize, const U: usize, const D: usize> PartialEq for KvClient<H, U, D> {
    fn eq(&self, other: &Self) -> bool {
        self.hosts == other.hosts
            && self.params == other.params
            && self.rel == other.rel
            && self.op == other.op
            && self.next_op == other.next_op
            && self.hints == other.hints
    }
}

impl<const H: usize, const U: usize, const D: usize> Eq for KvClient<H, U, D> {}

impl<const H: usize, const U: usize, const D: usize> core::hash::Hash for KvClient<H, U, D> {
    fn hash<Hs: core::hash::Hasher>(&self, state: &mut Hs) {
        self.hosts.hash(state);
        self.params.hash(state);
        self.rel.hash(state);
        self.op.hash(state);
        self.next_op.hash(state);
        self.hints.hash(state);
    }
}

impl<const H: usize, const U: usize, const D: usize> KvClient<H, U, D> {
    /// A client of `hosts` whose channels start at seqno `first_seqno` (see the module
    /// docs: it must exceed every seqno an earlier client at this endpoint used).
    pub fn new(hosts: &[Endpoint], first_seqno: u64, params: KvParams) -> Result<Self, ConfigError> {
        params.validate(D)?;
        if hosts.is_empty() {
            return Err(ConfigError::NoReplicas);
        }
        if params.reliable.max_unacked_per_peer > U {
            return Err(ConfigError::Invalid("max_unacked_per_peer above the unacked capacity (U)"));
        }
        let list = heapless::Vec::from_slice(hosts).map_err(|_| ConfigError::TooManyReplicas)?;
        let mut rel = Reliable::new(Protocol::Kv, params.max_datagram_bytes, params.reliable, first_seqno)?;
        for (i, h) in hosts.iter().enumerate() {
            if hosts[..i].contains(h) {
                return Err(ConfigError::DuplicateEndpoint);
            }
            rel.add_peer(*h, None).ok_or(ConfigError::TooManyReplicas)?;
        }
        Ok(KvClient {
            hosts: list,
            params,
            rel,
            op: None,
            next_op: 1,
            hints: heapless::Vec::new(),
            stats: Stats::default(),
        })
    }

    /// Starts `request` at the host the client believes owns its key (host 0 if it knows
    /// nothing); returns its operation id.
    pub fn submit(&mut self, now: Instant, request: Request<'_>, out: &mut Outbox<'_>) -> Result<u64, ClientError> {
        self.start(now, None, request, out)
    }

    /// Starts `request` at the host `host` (an admin sends Shard to the owner it chose);
    /// an endpoint that is not a host of the cluster falls back to [`KvClient::submit`].
    pub fn submit_to(
        &mut self,
        now: Instant,
        host: Endpoint,
        request: Request<'_>,
        out: &mut Outbox<'_>,
    ) -> Result<u64, ClientError> {
        self.start(now, self.rel.index_of(host), request, out)
    }

    fn start(
        &mut self,
        now: Instant,
        host: Option<usize>,
        request: Request<'_>,
        out: &mut Outbox<'_>,
    ) -> Result<u64, ClientError> {
        if self.op.is_some() {
            return Err(ClientError::Busy);
        }
        let (kind, key, value) = match request {
            Request::Get(k) => (Kind::Get, k, &[][..]),
            Request::Set(k, v) => (Kind::Set, k, v),
            Request::Delete(k) => (Kind::Delete, k, &[][..]),
            Request::Shard(r, to) => (Kind::Shard(r, to), r.first_key().unwrap_or(0), &[][..]),
        };
        if value.len() > self.params.max_value_bytes {
            return Err(ClientError::TooLarge);
        }
        if value.len() > D {
            return Err(ClientError::TooLarge);
        }
        let target = host.unwrap_or_else(|| self.hint(key));
        let id = self.next_op;
        // The operation is built in its slot and never moved: an `Op` holds a D-byte value
        // buffer, and every move of one is a D-byte copy.
        let value_buf = heapless::Vec::new();
        let op = Op { id, kind, key, value: value_buf, target, seqno: None, resend_at: None, redirects: 0, streak: 0 };
        let op = self.op.insert(op);
        // Cannot fail: `value.len() <= D` was checked above.
        let _ = op.value.extend_from_slice(value);
        match Self::send_attempt(&mut self.rel, &mut self.stats, now, op, out) {
            Ok(()) => {}
            Err(e) => {
                self.op = None;
                return Err(if e == SendError::QueueFull { ClientError::QueueFull } else { ClientError::TooLarge });
            }
        }
        self.next_op += 1;
        Ok(id)
    }

    /// Sends `op` (over the fields it needs, so the operation can stay in its slot).
    fn send_attempt(
        rel: &mut Reliable<H, U, D>,
        stats: &mut Stats,
        now: Instant,
        op: &mut Op<D>,
        out: &mut Outbox<'_>,
    ) -> Result<(), SendError> {
        let body = match op.kind {
            Kind::Get => Body::GetRequest { key: op.key },
            Kind::Set => Body::SetRequest { key: op.key, value: Some(Bytes(&op.value)) },
            Kind::Delete => Body::SetRequest { key: op.key, value: None },
            Kind::Shard(range, recipient) => Body::Shard { range, recipient },
        };
        let seqno = rel.send(now, op.target, &body, out, stats)?;
        op.seqno = Some(seqno);
        op.resend_at = None;
        Ok(())
    }

    /// Takes a received datagram: follows redirects and reports completion. A reply's ack
    /// is owed for a quarter of the retransmission delay: the next request to that host
    /// carries it, or it goes alone from `tick` (or [`KvClient::flush_acks`]).
    pub fn handle<'d>(
        &mut self,
        now: Instant,
        from: Endpoint,
        datagram: &'d [u8],
        out: &mut Outbox<'_>,
    ) -> Option<Event<'d>> {
        let event = self.handle_frame(now, from, datagram, out);
        // Re-acks of duplicates are due at once (the host is retransmitting).
        self.rel.flush_acks(now, out, &mut self.stats);
        event
    }

    /// Sends every owed ack now. A caller that may not call `tick` for a while (a blocking
    /// client between operations, a process about to exit) calls this after an operation
    /// completes, so that the host stops retransmitting the reply.
    pub fn flush_acks(&mut self, out: &mut Outbox<'_>) {
        self.rel.flush_acks(Instant::NEVER, out, &mut self.stats);
    }

    fn handle_frame<'d>(
        &mut self,
        now: Instant,
        from: Endpoint,
        datagram: &'d [u8],
        out: &mut Outbox<'_>,
    ) -> Option<Event<'d>> {
        Stats::bump(&mut self.stats.datagrams_in);
        let Ok(frame) = wire::decode::<Frame<'d>>(Protocol::Kv, datagram) else {
            Stats::bump(&mut self.stats.decode_errors);
            return None;
        };
        let Some(host) = self.rel.index_of(from) else {
            Stats::bump(&mut self.stats.unknown_sender);
            return None;
        };
        match frame {
            Frame::Ack { seqno } => {
                if self.rel.on_ack(now, host, seqno) == super::reliable::AckOutcome::Invalid {
                    Stats::bump(&mut self.stats.invalid_messages);
                }
                None
            }
            Frame::Refused { seqno, reason } => match &self.op {
                Some(op) if op.target == host && op.seqno == Some(seqno) => {
                    Stats::bump(&mut self.stats.queue_full);
                    Some(Event::Refused { op: op.id, host: from, reason })
                }
                _ => {
                    Stats::bump(&mut self.stats.ignored_messages);
                    None
                }
            },
            Frame::Single { base, seqno, ack, body } => {
                let verdict = self.rel.classify(host, base, seqno);
                if matches!(verdict, Verdict::New | Verdict::Duplicate) && !self.rel.ack_valid(host, ack) {
                    // Acks a request never sent: the whole datagram is refused.
                    Stats::bump(&mut self.stats.invalid_messages);
                    return None;
                }
                match verdict {
                    Verdict::New => {}
                    Verdict::Duplicate => {
                        let _ = self.rel.on_ack(now, host, ack);
                        self.rel.owe_ack(host, now);
                        Stats::bump(&mut self.stats.ignored_messages);
                        return None;
                    }
                    Verdict::Ahead | Verdict::Stale => {
                        Stats::bump(&mut self.stats.ignored_messages);
                        return None;
                    }
                    // Hosts never restart their channel to a live client incarnation.
                    Verdict::Restarted | Verdict::Invalid => {
                        Stats::bump(&mut self.stats.invalid_messages);
                        return None;
                    }
                }
                let Ok(msg) = wire::decode_exact::<Body<'d>>(body.0) else {
                    Stats::bump(&mut self.stats.decode_errors);
                    return None;
                };
                self.rel.accept(host, base, seqno);
                let _ = self.rel.on_ack(now, host, ack);
                self.rel.owe_ack(host, now.plus_ms(self.params.reliable.retransmit_ms / 4));
                self.on_body(now, host, msg, out)
            }
        }
    }

    fn on_body<'d>(&mut self, now: Instant, host: usize, msg: Body<'d>, out: &mut Outbox<'_>) -> Option<Event<'d>> {
        let req = match msg {
            Body::Reply { req, .. } | Body::Redirect { req, .. } | Body::Sharded { req } | Body::Error { req, .. } => {
                req
            }
            _ => {
                Stats::bump(&mut self.stats.ignored_messages);
                return None;
            }
        };
        // Worked on in its slot, not taken out: see `start`.
        let Some(op) = self.op.as_mut() else {
            Stats::bump(&mut self.stats.ignored_messages);
            return None;
        };
        if op.target != host || op.seqno != Some(req) {
            // The answer to an earlier operation or attempt.
            Stats::bump(&mut self.stats.ignored_messages);
            return None;
        }
        let outcome = match (msg, op.kind) {
            (Body::Reply { key, value, .. }, Kind::Get) if key == op.key => Outcome::Value(value.map(|v| v.0)),
            (Body::Reply { key, .. }, Kind::Set | Kind::Delete) if key == op.key => Outcome::Written,
            (Body::Sharded { .. }, Kind::Shard(..)) => Outcome::Sharded,
            (Body::Error { error, .. }, _) => Outcome::Failed(error),
            (Body::Redirect { key, owner, .. }, _) if key == op.key => {
                match self.rel.index_of(owner) {
                    Some(next) => {
                        remember(&mut self.hints, op.key, next);
                        op.target = next;
                    }
                    None => Stats::bump(&mut self.stats.invalid_messages),
                }
                op.redirects += 1;
                op.streak += 1;
                op.seqno = None;
                if op.streak >= MAX_REDIRECT_STREAK {
                    op.streak = 0;
                    op.resend_at = Some(now.plus_ms(self.params.reliable.retransmit_ms));
                } else if Self::send_attempt(&mut self.rel, &mut self.stats, now, op, out).is_err() {
                    op.resend_at = Some(now.plus_ms(self.params.reliable.retransmit_ms));
                }
                return None;
            }
            _ => {
                Stats::bump(&mut self.stats.invalid_messages);
                return None;
            }
        };
        let (id, key, redirects) = (op.id, op.key, op.redirects);
        self.op = None;
        remember(&mut self.hints, key, host);
        Some(Event::Completed(Completed { op: id, outcome, redirects, host: self.hosts[host] }))
    }

    /// Retransmits unacked requests and sends a delayed redirect attempt when due.
    pub fn tick(&mut self, now: Instant, out: &mut Outbox<'_>) {
        self.rel.tick(now, out, &mut self.stats);
        let Some(op) = self.op.as_mut() else { return };
        if op.resend_at.is_some_and(|t| now >= t)
            && Self::send_attempt(&mut self.rel, &mut self.stats, now, op, out).is_err()
        {
            op.resend_at = Some(now.plus_ms(self.params.reliable.retransmit_ms));
        }
    }

    /// When `tick` must next be called.
    pub fn next_deadline(&self) -> Instant {
        earliest(self.rel.next_deadline(), self.op.as_ref().and_then(|o| o.resend_at))
    }

    /// The outstanding operation's id.
    pub fn pending(&self) -> Option<u64> {
        self.op.as_ref().map(|o| o.id)
    }

    /// Gives up on the outstanding operation. Its request may still be in the channel and
    /// take effect later: its outcome is unknown, not "did not happen".
    pub fn cancel(&mut self) {
        self.op = None;
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The reliable channels (for tests and checkers).
    pub fn reliable(&self) -> &Reliable<H, U, D> {
        &self.rel
    }

    fn hint(&self, key: u64) -> usize {
        self.hints.iter().rev().find(|h| h.0 == key).map_or(0, |h| usize::from(h.1))
    }
}

/// Records that `host` owns `key`, forgetting the oldest hint when full.
fn remember(hints: &mut heapless::Vec<(u64, u8), HINTS>, key: u64, host: usize) {
    if let Some(i) = hints.iter().position(|h| h.0 == key) {
        hints.remove(i);
    }
    if hints.is_full() {
        hints.remove(0);
    }
    let _ = hints.push((key, host as u8));
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::collections::VecDeque;
    use std::vec::Vec;

    use super::*;
    use crate::kv::reliable::ReliableParams;
    use crate::kv::storage::HeaplessStore;
    use crate::kv::{KvConfig, KvHost};
    use crate::outbox::OutboxBuf;

    type Host = KvHost<HeaplessStore<16, 64>, 4, 8, 8, 16, 512>;
    type Client = KvClient<4, 4, 512>;
    const H0: Endpoint = Endpoint::v4([10, 0, 0, 1], 1);
    const H1: Endpoint = Endpoint::v4([10, 0, 0, 2], 1);
    const C: Endpoint = Endpoint::v4([10, 0, 1, 1], 9);

    fn params() -> KvParams {
        KvParams {
            max_value_bytes: 64,
            max_datagram_bytes: 512,
            reliable: ReliableParams { retransmit_ms: 10, max_retransmit_ms: 80, max_unacked_per_peer: 4 },
        }
    }

    /// Two real hosts and one client over a lossless FIFO network.
    struct Net {
        hosts: Vec<Host>,
        client: Client,
        queue: VecDeque<(Endpoint, Endpoint, Vec<u8>)>,
        done: Vec<(u64, Option<Vec<u8>>, &'static str)>,
        refused: u32,
        drop_to_client: bool,
    }

    impl Net {
        fn new(first_seqno: u64) -> Net {
            let mut config = KvConfig::new(&[H0, H1]).unwrap();
            config.params = params();
            let hosts = (0..2).map(|i| Host::new(config.clone(), i, HeaplessStore::new()).unwrap()).collect();
            let client = Client::new(&[H0, H1], first_seqno, params()).unwrap();
            Net { hosts, client, queue: VecDeque::new(), done: Vec::new(), refused: 0, drop_to_client: false }
        }

        fn take(&mut self, from: Endpoint, out: &crate::outbox::Outbox<'_>) {
            for (to, b) in out.iter() {
                self.queue.push_back((from, to, b.to_vec()));
            }
        }

        fn submit(&mut self, r: Request<'_>) -> Result<u64, ClientError> {
            let mut store = OutboxBuf::<16, 8192>::new();
            let mut out = store.outbox();
            let res = self.client.submit(Instant::ZERO, r, &mut out);
            self.take(C, &out);
            res
        }

        /// The client ticks at `ms`: retransmissions and owed acks due then.
        fn tick_client(&mut self, ms: u64) {
            let mut store = OutboxBuf::<16, 8192>::new();
            let mut out = store.outbox();
            self.client.tick(Instant::from_millis(ms), &mut out);
            self.take(C, &out);
        }

        fn pump(&mut self) {
            let mut store = OutboxBuf::<16, 8192>::new();
            for _ in 0..1000 {
                let Some((from, to, bytes)) = self.queue.pop_front() else { return };
                let mut out = store.outbox();
                if to == C {
                    let is_reply = matches!(wire::decode(Protocol::Kv, &bytes), Ok(Frame::Single { .. }));
                    if self.drop_to_client && is_reply {
                        continue;
                    }
                    match self.client.handle(Instant::ZERO, from, &bytes, &mut out) {
                        Some(Event::Completed(c)) => {
                            let (v, what) = match c.outcome {
                                Outcome::Value(v) => (v.map(|v| v.to_vec()), "value"),
                                Outcome::Written => (None, "written"),
                                Outcome::Sharded => (None, "sharded"),
                                Outcome::Failed(_) => (None, "failed"),
                            };
                            self.done.push((c.op, v, what));
                        }
                        Some(Event::Refused { .. }) => self.refused += 1,
                        None => {}
                    }
                } else {
                    let i = usize::from(to == H1);
                    let _ = self.hosts[i].handle(Instant::ZERO, from, &bytes, &mut out);
                }
                let out = out;
                let mut q = Vec::new();
                for (dst, b) in out.iter() {
                    q.push((to, dst, b.to_vec()));
                }
                self.queue.extend(q);
            }
            panic!("network did not go quiet");
        }
    }

    #[test]
    fn client_sets_and_gets_through_the_root() {
        let mut n = Net::new(1);
        n.submit(Request::Set(5, b"five")).unwrap();
        n.pump();
        n.submit(Request::Get(5)).unwrap();
        n.pump();
        assert_eq!(n.done, [(1, None, "written"), (2, Some(b"five".to_vec()), "value")]);
        assert_eq!(n.client.reliable().pending(), 0, "requests acked by the replies");
        assert_eq!(n.hosts[0].reliable().pending(), 1, "the Get carried the Set reply's ack; the last is owed");
        let mut store = OutboxBuf::<16, 8192>::new();
        let mut out = store.outbox();
        n.client.flush_acks(&mut out);
        assert_eq!(out.len(), 1);
        n.take(C, &out);
        n.pump();
        assert_eq!(n.hosts[0].reliable().pending(), 0, "replies acked by the client");
    }

    #[test]
    fn a_request_and_its_reply_ack_each_other_and_a_lone_ack_waits_a_quarter_retransmission() {
        let mut n = Net::new(1);
        n.submit(Request::Set(5, b"five")).unwrap();
        let (_, _, request) = n.queue.pop_front().unwrap();
        let mut store = OutboxBuf::<16, 8192>::new();
        let mut out = store.outbox();
        let _ = n.hosts[0].handle(Instant::ZERO, C, &request, &mut out);
        let frames: Vec<_> = out.iter().map(|(_, b)| wire::decode::<Frame<'_>>(Protocol::Kv, b).unwrap()).collect();
        assert!(matches!(frames[..], [Frame::Single { ack: 1, .. }]), "one datagram, the reply carrying the ack");
        let reply = out.iter().next().unwrap().1.to_vec();
        let mut out = store.outbox();
        assert!(n.client.handle(Instant::ZERO, H0, &reply, &mut out).is_some());
        assert!(out.is_empty(), "the reply's ack is owed, not sent");
        assert_eq!(n.client.reliable().pending(), 0, "the reply acked the request");
        assert_eq!(n.client.next_deadline(), Instant::from_millis(2), "10 ms / 4, in whole ms");
        n.submit(Request::Get(5)).unwrap();
        let (_, _, next) = n.queue.back().unwrap().clone();
        assert!(matches!(wire::decode(Protocol::Kv, &next), Ok(Frame::Single { seqno: 2, ack: 1, .. })));
        assert_eq!(n.client.next_deadline(), Instant::from_millis(10), "no ack owed: only the retransmission");
    }

    #[test]
    fn client_follows_a_redirect_to_the_new_owner() {
        let mut n = Net::new(1);
        n.submit(Request::Set(5, b"five")).unwrap();
        n.pump();
        n.submit(Request::Shard(KeyRange::keys(0, 10), H1)).unwrap();
        n.pump();
        assert!(n.hosts[1].owns(5));
        n.client.hints.clear(); // forget that H0 answered for key 5
        n.submit(Request::Get(5)).unwrap();
        n.pump();
        assert_eq!(n.done[2], (3, Some(b"five".to_vec()), "value"));
        n.submit(Request::Get(5)).unwrap();
        let first = n.queue.front().unwrap().1;
        assert_eq!(first, H1, "the redirect was remembered");
    }

    #[test]
    fn client_seqnos_start_at_the_caller_supplied_value() {
        let mut n = Net::new(5000);
        n.submit(Request::Get(1)).unwrap();
        let (_, _, bytes) = n.queue.front().unwrap().clone();
        let f: Frame<'_> = wire::decode(Protocol::Kv, &bytes).unwrap();
        assert!(matches!(f, Frame::Single { base: 5000, seqno: 5000, .. }));
        n.pump();
        assert_eq!(n.done.len(), 1);
    }

    #[test]
    fn a_restarted_client_on_the_same_endpoint_is_served() {
        let mut n = Net::new(1);
        n.submit(Request::Set(1, b"a")).unwrap();
        n.pump();
        n.client = Client::new(&[H0, H1], 1_000_000, params()).unwrap();
        n.done.clear();
        n.submit(Request::Get(1)).unwrap();
        n.pump();
        assert_eq!(n.done, [(1, Some(b"a".to_vec()), "value")]);
    }

    #[test]
    fn client_retransmits_an_unacked_request_until_it_is_answered() {
        let mut n = Net::new(1);
        n.submit(Request::Set(1, b"a")).unwrap();
        n.queue.clear(); // lost
        assert_eq!(n.client.next_deadline(), Instant::from_millis(10));
        let mut store = OutboxBuf::<16, 8192>::new();
        let mut out = store.outbox();
        n.client.tick(Instant::from_millis(10), &mut out);
        assert_eq!(out.len(), 1);
        n.take(C, &out);
        n.pump();
        assert_eq!(n.done, [(1, None, "written")]);
        assert_eq!(n.client.next_deadline(), Instant::from_millis(2), "the reply's ack, owed");
        n.tick_client(2);
        assert_eq!(n.queue.len(), 1, "the ack goes alone");
        assert_eq!(n.client.next_deadline(), Instant::NEVER);
    }

    #[test]
    fn client_acks_replies_and_reacks_duplicates() {
        let mut n = Net::new(1);
        n.submit(Request::Get(1)).unwrap();
        n.pump();
        // The host retransmits its (already acked) reply as if the ack were lost.
        let mut store = OutboxBuf::<16, 8192>::new();
        let mut out = store.outbox();
        let body = Body::Reply { req: 1, key: 1, value: None };
        let mut inner: heapless::Vec<u8, 64> = heapless::Vec::new();
        wire::append(&mut inner, &body).unwrap();
        let mut buf = [0u8; 128];
        let len =
            wire::encode(Protocol::Kv, &Frame::Single { base: 1, seqno: 1, ack: 0, body: Bytes(&inner) }, &mut buf)
                .unwrap();
        assert_eq!(n.client.handle(Instant::ZERO, H0, &buf[..len], &mut out), None, "not completed twice");
        let acks: Vec<_> = out.iter().map(|(_, b)| wire::decode::<Frame<'_>>(Protocol::Kv, b).unwrap()).collect();
        assert_eq!(acks, [Frame::Ack { seqno: 1 }]);
    }

    #[test]
    fn a_busy_host_refusal_is_reported_and_the_request_retried() {
        let mut n = Net::new(1);
        n.drop_to_client = true; // replies lost: the host's reply queue fills
        for k in 0..4u64 {
            n.submit(Request::Get(k)).unwrap();
            n.pump();
            // The request's ack went with the lost reply: the retransmission is a duplicate
            // the host acks alone.
            n.tick_client(1000 * (k + 1));
            n.pump();
            n.client.cancel();
        }
        n.drop_to_client = false;
        n.submit(Request::Get(9)).unwrap();
        n.pump();
        assert_eq!(n.refused, 1, "the host pushed back visibly");
        assert!(n.done.is_empty());
        assert!(n.client.pending().is_some(), "still outstanding");
    }

    #[test]
    fn busy_and_oversize_submissions_are_refused() {
        let mut n = Net::new(1);
        assert_eq!(n.submit(Request::Set(1, &[0u8; 65])), Err(ClientError::TooLarge));
        n.submit(Request::Get(1)).unwrap();
        assert_eq!(n.submit(Request::Get(2)), Err(ClientError::Busy));
    }

    #[test]
    fn a_full_channel_refuses_submission_with_queue_full() {
        let mut n = Net::new(1);
        for k in 0..4u64 {
            n.submit(Request::Get(k)).unwrap();
            n.client.cancel();
        }
        n.queue.clear();
        assert_eq!(n.submit(Request::Get(9)), Err(ClientError::QueueFull));
        assert_eq!(n.client.pending(), None);
    }

    #[test]
    fn a_redirect_loop_pauses_after_the_streak_limit() {
        let mut n = Net::new(1);
        n.submit(Request::Get(5)).unwrap();
        n.queue.clear();
        let mut store = OutboxBuf::<16, 8192>::new();
        for i in 0..MAX_REDIRECT_STREAK as u64 {
            let from = if i % 2 == 0 { H0 } else { H1 };
            let to = if i % 2 == 0 { H1 } else { H0 };
            let req = n.client.op.as_ref().unwrap().seqno.unwrap();
            let body = Body::Redirect { req, key: 5, owner: to };
            let mut inner: heapless::Vec<u8, 64> = heapless::Vec::new();
            wire::append(&mut inner, &body).unwrap();
            let mut buf = [0u8; 128];
            let seq = i / 2 + 1;
            let f = Frame::Single { base: 1, seqno: seq, ack: 0, body: Bytes(&inner) };
            let len = wire::encode(Protocol::Kv, &f, &mut buf).unwrap();
            let mut out = store.outbox();
            assert_eq!(n.client.handle(Instant::ZERO, from, &buf[..len], &mut out), None);
            let requests = out.len(); // the ack is owed, not sent
            let expect = usize::from(i + 1 < u64::from(MAX_REDIRECT_STREAK));
            assert_eq!(requests, expect, "redirect {i}");
        }
        assert_eq!(n.client.op.as_ref().and_then(|o| o.resend_at), Some(Instant::from_millis(10)), "paused");
        assert_eq!(n.client.next_deadline(), Instant::from_millis(2), "the redirects' acks are owed first");
    }
}
