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
//! the target host is full; a host that cannot queue its reply (or whose client table is
//! full of clients with replies in flight) refuses the request with a visible
//! [`Event::Refused`] and the client retransmits later with backoff.
//!
//! **Eviction.** A host may evict this client's channel while it is idle and settled (every
//! reply acknowledged), or give up on it after replies went unacknowledged for long. The
//! client's next message on that channel is refused with [`Refusal::ChannelClosed`]: the
//! client restarts its channel to that host above the host's floor and sends the
//! outstanding request again, which is safe because a request whose reply the client never
//! got was not executed on a channel evicted settled. If the request's seqno is at or below
//! the refusal's `lost` floor, the host may have executed it and dropped its reply: the
//! operation ends with [`Event::Lost`] (outcome unknown, as after [`KvClient::cancel`]). A
//! host opens its new channel to the client at a larger base, which the client accepts as
//! a server's new channel.

use super::config::KvParams;
use super::msg::Body;
use super::reliable::{Frame, PeerKind, Refusal, Reliable, SendError, Verdict};
use crate::config::ConfigError;
use crate::endpoint::Endpoint;
use crate::outbox::Outbox;
use crate::stats::Stats;
use crate::time::{earliest, Instant};
use crate::wire::{self, Bytes, Protocol};

mod operation;

pub use operation::{ClientError, Completed, Event, Outcome, Request};
use operation::{Kind, Op};

/// Redirects followed back to back before the client pauses one retransmission period.
pub const MAX_REDIRECT_STREAK: u32 = 4;
/// Key-to-owner hints the client remembers.
const HINTS: usize = 16;

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
        rel.set_cluster(super::config::identity_of(hosts, &params));
        for (i, h) in hosts.iter().enumerate() {
            if hosts[..i].contains(h) {
                return Err(ConfigError::DuplicateEndpoint);
            }
            rel.add_peer(*h, PeerKind::Server).ok_or(ConfigError::TooManyReplicas)?;
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
            Frame::Refused { seqno, reason: Refusal::ChannelClosed { above, lost } } => {
                self.on_channel_closed(now, host, seqno, above, lost, out)
            }
            // Between hosts, or for operators' tools (`fleet kv status`).
            Frame::Join { .. } | Frame::JoinReply { .. } | Frame::StatusRequest { .. } | Frame::StatusReply { .. } => {
                Stats::bump(&mut self.stats.ignored_messages);
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
                if matches!(verdict, Verdict::New | Verdict::Restarted | Verdict::Duplicate)
                    && !self.rel.ack_valid(host, ack)
                {
                    // Acks a request never sent: the whole datagram is refused.
                    Stats::bump(&mut self.stats.invalid_messages);
                    return None;
                }
                match verdict {
                    // A host that evicted this client opens a new channel to it at a larger
                    // base when it serves the client's new channel.
                    Verdict::New | Verdict::Restarted => {}
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
                    Verdict::Closed | Verdict::Invalid => {
                        Stats::bump(&mut self.stats.invalid_messages);
                        return None;
                    }
                }
                let Ok(msg) = wire::decode_exact::<Body<'d>>(body.0) else {
                    Stats::bump(&mut self.stats.decode_errors);
                    return None;
                };
                self.rel.accept(now, host, base, seqno);
                let _ = self.rel.on_ack(now, host, ack);
                self.rel.owe_ack(host, now.plus_ms(self.params.reliable.retransmit_ms / 4));
                self.on_body(now, host, msg, out)
            }
        }
    }

    /// The host closed this client's channel to it (it evicted it). A refusal of a message of
    /// the current channel restarts the channel above `above`; the outstanding request, if it
    /// went on that channel, is sent again on the new one, or, if its seqno is at or below
    /// `lost` (the host may have executed it and dropped the reply), ends as lost.
    fn on_channel_closed<'d>(
        &mut self,
        now: Instant,
        host: usize,
        seqno: u64,
        above: u64,
        lost: u64,
        out: &mut Outbox<'_>,
    ) -> Option<Event<'d>> {
        let p = self.rel.peer(host)?;
        let (base, next) = (p.send_base(), p.next_seqno());
        if seqno < base || seqno >= next {
            // About an older channel, or a seqno never sent: nothing to do.
            Stats::bump(&mut self.stats.ignored_messages);
            return None;
        }
        self.rel.restart_send(host, above);
        let op = self.op.as_mut()?;
        let attempt = match op.seqno {
            Some(s) if op.target == host && s >= base && s < next => s,
            _ => return None,
        };
        // A Get changes nothing: whether or not it ran, it is simply sent again.
        if attempt <= lost && op.kind != Kind::Get {
            let (id, ep) = (op.id, self.hosts[host]);
            self.op = None;
            return Some(Event::Lost { op: id, host: ep });
        }
        // Never executed (see the module docs): the same operation, on the new channel.
        if Self::send_attempt(&mut self.rel, &mut self.stats, now, op, out).is_err() {
            op.seqno = None;
            op.resend_at = Some(now.plus_ms(self.params.reliable.retransmit_ms));
        }
        None
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
mod tests;
