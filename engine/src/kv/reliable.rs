//! Reliable single delivery over a lossy, duplicating, reordering datagram network
//! (IronKV's `SingleDelivery`), written to be reused by any protocol: it moves opaque,
//! already-encoded bodies and knows nothing about KV.
//!
//! * **Sender.** Per peer, seqnos start at the channel's `base` (1 between hosts, a
//!   caller-supplied value for a client) and grow by one per message. Every message stays
//!   in the unacked queue until a cumulative [`Frame::Ack`] covers it, and is retransmitted
//!   on a per-peer timer that doubles on every expiry without progress (from
//!   `retransmit_ms` up to `max_retransmit_ms`) and resets when an ack makes progress.
//! * **Receiver.** Per peer, the last seqno accepted. Only `last + 1` is accepted (no
//!   buffering of out-of-order messages, as in IronKV); a duplicate (`<= last`) is re-acked
//!   with the cumulative ack; acks are never acked.
//! * **Piggybacked acks** (not in IronKV, which sends every ack alone). Every `Single`
//!   carries the sender's cumulative ack of the reverse channel, so a request and its reply
//!   ack each other: an ack the receiver owes ([`Reliable::owe_ack`]) goes alone only if no
//!   message to that peer leaves before it is due ([`Reliable::flush_acks`]). A host owes
//!   its acks until the end of the step (its reply carries them); a client may owe a reply's
//!   ack for a moment, until its next request carries it. Half the datagrams of a
//!   request-reply exchange.
//! * **Bounds.** At most `max_unacked_per_peer` messages per peer and `U` in all. A full
//!   queue refuses new messages ([`SendError::QueueFull`]): the caller turns that into
//!   back-pressure the other side can see ([`Frame::Refused`]), never a silent drop.
//! * **Channel incarnations** (not in IronKV, which has no restarts). Every message carries
//!   its channel's `base`. A receiver with no state for a peer accepts a message only if it
//!   is the channel's first (`seqno == base`); a larger `base` from a known, non-fixed peer
//!   means that peer restarted with fresh seqnos ([`Verdict::Restarted`]): accepting it
//!   resets both directions of the channel (the unacked messages for the dead incarnation
//!   are dropped, and the reply channel restarts at a fresh base). A smaller `base` is a
//!   stale datagram of an older incarnation. Fixed peers (the hosts of a cluster) never
//!   restart: another base from them is invalid.

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::emit;
use crate::endpoint::Endpoint;
use crate::outbox::Outbox;
use crate::stats::Stats;
use crate::time::{earliest, Instant};
#[cfg(test)]
use crate::wire;
use crate::wire::{Bytes, Protocol};

/// Largest encoding of a [`Frame::Single`] around its body, envelope included (header 3,
/// tag 1, base, seqno and ack 10 each, body length prefix 3).
pub const FRAME_OVERHEAD_BYTES: usize = 37;

/// Why a receiver did not accept a message it could have accepted otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Refusal {
    /// The receiver's unacked queue towards the sender is full (it could not queue its answer).
    QueueFull,
    /// The receiver tracks as many peers as it can.
    TooManyPeers,
    /// The receiver has no room to apply the message now (storage or map reservations).
    NoRoom,
}

/// What travels in a datagram. Variant order is the wire tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Frame<'a> {
    /// 0: a message of a reliable channel.
    Single {
        /// The channel's first seqno (identifies the sender's incarnation).
        base: u64,
        /// This message's seqno, `>= base`.
        seqno: u64,
        /// Cumulative ack of the reverse channel (the receiver's messages to the sender):
        /// the highest seqno the sender accepted from the receiver, 0 for none.
        ack: u64,
        /// The encoded protocol message.
        #[serde(borrow)]
        body: Bytes<'a>,
    },
    /// 1: cumulative acknowledgement: every seqno up to this one arrived.
    Ack {
        /// The highest seqno accepted in order.
        seqno: u64,
    },
    /// 2: back-pressure: the message `seqno` was **not** accepted; the sender keeps it and
    /// retransmits (with backoff). Not reliable itself (a lost refusal looks like loss).
    Refused {
        /// The seqno refused.
        seqno: u64,
        /// Why.
        reason: Refusal,
    },
}

/// Retransmission and queue parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ReliableParams {
    /// First retransmission delay, and the delay after an ack makes progress.
    pub retransmit_ms: u64,
    /// The delay doubles on every expiry without progress, up to this.
    pub max_retransmit_ms: u64,
    /// Most unacked messages towards one peer.
    pub max_unacked_per_peer: usize,
}

impl Default for ReliableParams {
    fn default() -> Self {
        ReliableParams { retransmit_ms: 50, max_retransmit_ms: 1600, max_unacked_per_peer: 8 }
    }
}

/// How a received message relates to the channel's state ([`Reliable::classify`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Verdict {
    /// The next message in order: accept it.
    New,
    /// The first message of a restarted peer's new incarnation: accepting it resets the channel.
    Restarted,
    /// Already accepted: re-ack, do nothing else.
    Duplicate,
    /// Beyond the next expected seqno: ignore (the sender retransmits in order).
    Ahead,
    /// From an older incarnation of the peer: ignore.
    Stale,
    /// Impossible for this peer (seqno below base, or another base from a fixed peer).
    Invalid,
}

/// What an incoming ack did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AckOutcome {
    /// Messages were removed from the unacked queue.
    Progress,
    /// Nothing new was acknowledged.
    Stale,
    /// Acknowledges a seqno never sent.
    Invalid,
}

/// Why [`Reliable::send`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SendError {
    /// The unacked queue (per peer or overall) is full: back-pressure.
    QueueFull,
    /// The body does not fit one datagram.
    TooLarge,
    /// No such peer.
    UnknownPeer,
}

/// One peer's channel state, both directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Peer {
    ep: Endpoint,
    fixed: bool,
    recv: Option<(u64, u64)>,
    send_base: u64,
    next: u64,
    acked: u64,
    unacked: usize,
    retransmit_at: Option<Instant>,
    backoff_ms: u64,
    /// An ack is owed to the peer, to go alone at this instant unless a message carries it.
    ack_due: Option<Instant>,
}

impl Peer {
    /// The peer's endpoint.
    pub fn endpoint(&self) -> Endpoint {
        self.ep
    }

    /// The last seqno accepted from the peer, if any.
    pub fn last_accepted(&self) -> Option<u64> {
        self.recv.map(|r| r.1)
    }

    /// The highest seqno the peer acknowledged.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// The seqno the next message to the peer will get.
    pub fn next_seqno(&self) -> u64 {
        self.next
    }

    /// Messages to the peer not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.unacked
    }

    /// The current retransmission delay.
    pub fn backoff_ms(&self) -> u64 {
        self.backoff_ms
    }

    /// When an ack owed to the peer goes alone, if one is owed.
    pub fn ack_due(&self) -> Option<Instant> {
        self.ack_due
    }

    /// The cumulative ack a message to the peer carries.
    fn ack(&self) -> u64 {
        self.last_accepted().unwrap_or(0)
    }
}

/// An unacked message. Only `body[..len]` is the message: equality and hashing look at
/// nothing past it, because [`Reliable::remove_pending`] moves only the message bytes.
#[derive(Clone, Debug)]
struct Pending<const D: usize> {
    peer: u32,
    seqno: u64,
    len: usize,
    body: [u8; D],
}

impl<const D: usize> Pending<D> {
    fn body(&self) -> &[u8] {
        &self.body[..self.len]
    }
}

impl<const D: usize> PartialEq for Pending<D> {
    fn eq(&self, other: &Self) -> bool {
        self.peer == other.peer && self.seqno == other.seqno && self.body() == other.body()
    }
}

impl<const D: usize> Eq for Pending<D> {}

impl<const D: usize> core::hash::Hash for Pending<D> {
    fn hash<Hs: core::hash::Hasher>(&self, state: &mut Hs) {
        self.peer.hash(state);
        self.seqno.hash(state);
        self.body().hash(state);
    }
}

/// Reliable channels to at most `P` peers, with at most `U` unacked bodies of `D` bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reliable<const P: usize, const U: usize, const D: usize> {
    protocol: Protocol,
    max_datagram_bytes: usize,
    params: ReliableParams,
    first_seqno: u64,
    peers: heapless::Vec<Peer, P>,
    pending: heapless::Vec<Pending<D>, U>,
    retransmits: u64,
}

impl<const P: usize, const U: usize, const D: usize> Reliable<P, U, D> {
    /// Channels for `protocol` whose own seqnos start at `first_seqno` (0 is taken as 1).
    pub fn new(
        protocol: Protocol,
        max_datagram_bytes: usize,
        params: ReliableParams,
        first_seqno: u64,
    ) -> Result<Self, ConfigError> {
        if params.retransmit_ms == 0 {
            return Err(ConfigError::Invalid("retransmit_ms"));
        }
        if params.max_retransmit_ms < params.retransmit_ms {
            return Err(ConfigError::Invalid("max_retransmit_ms"));
        }
        if params.max_unacked_per_peer == 0 || params.max_unacked_per_peer > U {
            return Err(ConfigError::Invalid("max_unacked_per_peer"));
        }
        if max_datagram_bytes <= FRAME_OVERHEAD_BYTES || P > u32::MAX as usize {
            return Err(ConfigError::Invalid("max_datagram_bytes"));
        }
        Ok(Reliable {
            protocol,
            max_datagram_bytes,
            params,
            first_seqno: first_seqno.max(1),
            peers: heapless::Vec::new(),
            pending: heapless::Vec::new(),
            retransmits: 0,
        })
    }

    /// Largest body [`Reliable::send`] accepts.
    pub fn max_body_bytes(&self) -> usize {
        (self.max_datagram_bytes - FRAME_OVERHEAD_BYTES).min(D)
    }

    /// Registers a peer. A fixed peer never restarts: its channel to us has base
    /// `expected_base` forever. Returns its index (indices are never reused).
    pub fn add_peer(&mut self, ep: Endpoint, fixed_base: Option<u64>) -> Option<usize> {
        if let Some(i) = self.index_of(ep) {
            return Some(i);
        }
        let b = self.first_seqno;
        let peer = Peer {
            ep,
            fixed: fixed_base.is_some(),
            recv: fixed_base.map(|base| (base.max(1), base.max(1) - 1)),
            send_base: b,
            next: b,
            acked: b - 1,
            unacked: 0,
            retransmit_at: None,
            backoff_ms: self.params.retransmit_ms,
            ack_due: None,
        };
        self.peers.push(peer).ok()?;
        Some(self.peers.len() - 1)
    }

    /// The index of the peer at `ep`.
    pub fn index_of(&self, ep: Endpoint) -> Option<usize> {
        self.peers.iter().position(|p| p.ep == ep)
    }

    /// A peer's state.
    pub fn peer(&self, i: usize) -> Option<&Peer> {
        self.peers.get(i)
    }

    /// Every peer, by index.
    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// How `(base, seqno)` from peer `i` relates to the channel. Changes nothing.
    pub fn classify(&self, i: usize, base: u64, seqno: u64) -> Verdict {
        let Some(p) = self.peers.get(i) else { return Verdict::Invalid };
        if base == 0 || seqno < base {
            return Verdict::Invalid;
        }
        match p.recv {
            None if seqno == base => Verdict::New,
            None => Verdict::Ahead,
            Some((b, _)) if base != b && p.fixed => Verdict::Invalid,
            Some((b, _)) if base < b => Verdict::Stale,
            Some((b, _)) if base > b => match seqno == base {
                true => Verdict::Restarted,
                false => Verdict::Ahead,
            },
            Some((_, last)) if seqno <= last => Verdict::Duplicate,
            Some((_, last)) if seqno == last + 1 => Verdict::New,
            Some(_) => Verdict::Ahead,
        }
    }

    /// Accepts a message [`Reliable::classify`] called `New` or `Restarted` (anything else
    /// is ignored). A restart also drops the unacked messages of the dead incarnation and
    /// starts a fresh outgoing channel.
    pub fn accept(&mut self, i: usize, base: u64, seqno: u64) {
        let verdict = self.classify(i, base, seqno);
        if verdict == Verdict::Restarted {
            self.reset_send(i);
        }
        if matches!(verdict, Verdict::New | Verdict::Restarted) {
            if let Some(p) = self.peers.get_mut(i) {
                p.recv = Some((base, seqno));
            }
        }
    }

    fn reset_send(&mut self, i: usize) {
        let mut k = self.pending.len();
        while k > 0 {
            k -= 1;
            if self.pending[k].peer as usize == i {
                self.remove_pending(k);
            }
        }
        if let Some(p) = self.peers.get_mut(i) {
            p.send_base = p.next;
            p.acked = p.next - 1;
            p.unacked = 0;
            p.retransmit_at = None;
            p.backoff_ms = self.params.retransmit_ms;
        }
    }

    /// Messages that may be sent to peer `i` now.
    pub fn room(&self, i: usize) -> usize {
        let Some(p) = self.peers.get(i) else { return 0 };
        let per_peer = self.params.max_unacked_per_peer.saturating_sub(p.unacked);
        per_peer.min(U - self.pending.len())
    }

    /// [`Reliable::room`] as it will be after accepting a message with `verdict`.
    pub fn room_after(&self, i: usize, verdict: Verdict) -> usize {
        match (verdict, self.peers.get(i)) {
            (Verdict::Restarted, Some(p)) => self.params.max_unacked_per_peer.min(U - self.pending.len() + p.unacked),
            _ => self.room(i),
        }
    }

    /// Most messages a peer's queue can ever hold.
    pub fn max_unacked_per_peer(&self) -> usize {
        self.params.max_unacked_per_peer
    }

    /// Queues `body` for peer `i` and emits its first transmission; returns its seqno.
    /// A full outbox only delays it (it is retransmitted); a full queue refuses it.
    pub fn send<T: Serialize>(
        &mut self,
        now: Instant,
        i: usize,
        body: &T,
        out: &mut Outbox<'_>,
        stats: &mut Stats,
    ) -> Result<u64, SendError> {
        if i >= self.peers.len() {
            return Err(SendError::UnknownPeer);
        }
        if self.room(i) == 0 {
            return Err(SendError::QueueFull);
        }
        let max = self.max_body_bytes();
        let seqno = self.peers[i].next;
        // Encode straight into the queue slot (a memcpy-sized move, no per-byte copies).
        if self.pending.push(Pending { peer: i as u32, seqno, len: 0, body: [0; D] }).is_err() {
            return Err(SendError::QueueFull);
        }
        let encoded = match self.pending.last_mut() {
            Some(slot) => postcard::to_slice(body, &mut slot.body[..max]).map(|w| w.len()).ok(),
            None => None,
        };
        match (encoded, self.pending.last_mut()) {
            (Some(len), Some(slot)) => slot.len = len,
            _ => {
                self.pending.pop();
                return Err(SendError::TooLarge);
            }
        }
        let p = &mut self.peers[i];
        p.next = p.next.saturating_add(1);
        p.unacked += 1;
        if p.retransmit_at.is_none() {
            p.retransmit_at = Some(now.plus_ms(p.backoff_ms));
        }
        let (ep, base, ack) = (p.ep, p.send_base, p.ack());
        if let Some(m) = self.pending.last() {
            let frame = Frame::Single { base, seqno, ack, body: Bytes(m.body()) };
            if emit::send(out, stats, self.protocol, self.max_datagram_bytes, ep, &frame) {
                p.ack_due = None;
            }
        }
        Ok(seqno)
    }

    /// Emits the cumulative ack for peer `i` at once (nothing if nothing was accepted from
    /// it), settling any ack owed.
    pub fn send_ack(&mut self, i: usize, out: &mut Outbox<'_>, stats: &mut Stats) {
        let Some(p) = self.peers.get_mut(i) else { return };
        if let Some(last) = p.last_accepted() {
            if emit::send(out, stats, self.protocol, self.max_datagram_bytes, p.ep, &Frame::Ack { seqno: last }) {
                p.ack_due = None;
            }
        }
    }

    /// Peer `i` is owed an ack: it goes with the next message to the peer, or alone at
    /// `due` ([`Reliable::flush_acks`], [`Reliable::tick`]), whichever comes first.
    pub fn owe_ack(&mut self, i: usize, due: Instant) {
        if let Some(p) = self.peers.get_mut(i) {
            p.ack_due = Some(p.ack_due.map_or(due, |d| d.min(due)));
        }
    }

    /// Sends alone every owed ack due at `now` (`Instant::NEVER`: every owed ack).
    pub fn flush_acks(&mut self, now: Instant, out: &mut Outbox<'_>, stats: &mut Stats) {
        for i in 0..self.peers.len() {
            if self.peers[i].ack_due.is_some_and(|d| d <= now) {
                self.send_ack(i, out, stats);
            }
        }
    }

    /// Whether a piggybacked ack from peer `i` is one [`Reliable::on_ack`] would not call
    /// invalid (it acknowledges nothing never sent). Changes nothing.
    pub fn ack_valid(&self, i: usize, seqno: u64) -> bool {
        self.peers.get(i).is_some_and(|p| seqno < p.next)
    }

    /// Emits a refusal of message `seqno` to `dst` (back-pressure the sender can see).
    pub fn send_refusal(&self, dst: Endpoint, seqno: u64, reason: Refusal, out: &mut Outbox<'_>, stats: &mut Stats) {
        emit::send(out, stats, self.protocol, self.max_datagram_bytes, dst, &Frame::Refused { seqno, reason });
    }

    /// Applies a cumulative ack from peer `i`.
    pub fn on_ack(&mut self, now: Instant, i: usize, seqno: u64) -> AckOutcome {
        let Some(p) = self.peers.get_mut(i) else { return AckOutcome::Invalid };
        if seqno >= p.next {
            return AckOutcome::Invalid;
        }
        if seqno <= p.acked {
            return AckOutcome::Stale;
        }
        p.acked = seqno;
        p.unacked = (p.next - 1 - p.acked) as usize;
        p.backoff_ms = self.params.retransmit_ms;
        p.retransmit_at = (p.unacked > 0).then(|| now.plus_ms(p.backoff_ms));
        let mut k = self.pending.len();
        while k > 0 {
            k -= 1;
            let m = &self.pending[k];
            if m.peer as usize == i && m.seqno <= seqno {
                self.remove_pending(k);
            }
        }
        AckOutcome::Progress
    }

    /// Removes unacked message `k` as `swap_remove` would (the last one takes its place), but
    /// copies only the last message's bytes, not its whole D-byte slot: a removal per ack
    /// otherwise cost a D-byte copy (8 KiB on std hosts), a few percent of a host's CPU.
    fn remove_pending(&mut self, k: usize) {
        let Some(last) = self.pending.len().checked_sub(1) else { return };
        if k < last {
            let (head, tail) = self.pending.split_at_mut(last);
            let (slot, moved) = (&mut head[k], &tail[0]);
            slot.peer = moved.peer;
            slot.seqno = moved.seqno;
            slot.len = moved.len;
            slot.body[..moved.len].copy_from_slice(moved.body());
        }
        if k <= last {
            self.pending.truncate(last);
        }
    }

    /// Retransmits, in seqno order, every unacked message of every peer whose timer is due,
    /// and doubles that peer's delay (up to the maximum).
    pub fn tick(&mut self, now: Instant, out: &mut Outbox<'_>, stats: &mut Stats) {
        let max = self.params.max_retransmit_ms;
        for (i, p) in self.peers.iter_mut().enumerate() {
            if p.retransmit_at.is_none_or(|t| now < t) {
                continue;
            }
            for seqno in p.acked + 1..p.next {
                let found = self.pending.iter().find(|m| m.peer as usize == i && m.seqno == seqno);
                if let Some(m) = found {
                    let frame = Frame::Single { base: p.send_base, seqno, ack: p.ack(), body: Bytes(m.body()) };
                    if emit::send(out, stats, self.protocol, self.max_datagram_bytes, p.ep, &frame) {
                        p.ack_due = None;
                    }
                    self.retransmits = self.retransmits.saturating_add(1);
                }
            }
            p.backoff_ms = p.backoff_ms.saturating_mul(2).min(max);
            p.retransmit_at = Some(now.plus_ms(p.backoff_ms));
        }
        self.flush_acks(now, out, stats);
    }

    /// The earliest retransmission or owed-ack deadline, or [`Instant::NEVER`].
    pub fn next_deadline(&self) -> Instant {
        self.peers.iter().fold(Instant::NEVER, |acc, p| earliest(earliest(acc, p.retransmit_at), p.ack_due))
    }

    /// Retransmitted datagrams so far.
    pub fn retransmits(&self) -> u64 {
        self.retransmits
    }

    /// Unacked messages in all.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The unacked bodies for peer `i`, in no particular order, with their seqnos.
    pub fn unacked_bodies(&self, i: usize) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        self.pending.iter().filter(move |m| m.peer as usize == i).map(|m| (m.seqno, m.body()))
    }

    /// Queue counts agree with the queued messages; every queued seqno is unacked.
    pub fn invariant(&self) -> Result<(), &'static str> {
        for (i, p) in self.peers.iter().enumerate() {
            if p.acked + 1 < p.send_base || p.next <= p.acked {
                return Err("reliable: acked outside the channel");
            }
            if p.unacked as u64 != p.next - 1 - p.acked {
                return Err("reliable: unacked count disagrees with seqnos");
            }
            if p.unacked > self.params.max_unacked_per_peer {
                return Err("reliable: per-peer queue over its bound");
            }
            let queued = self.pending.iter().filter(|m| m.peer as usize == i).count();
            if queued != p.unacked {
                return Err("reliable: queued messages disagree with the unacked count");
            }
            if (p.unacked > 0) != p.retransmit_at.is_some() {
                return Err("reliable: retransmit timer armed iff messages are unacked");
            }
            if let Some((b, last)) = p.recv {
                if last + 1 < b {
                    return Err("reliable: last accepted below the channel base");
                }
            }
            if p.ack_due.is_some() && p.recv.is_none() {
                return Err("reliable: an ack owed for nothing accepted");
            }
        }
        for m in &self.pending {
            let Some(p) = self.peers.get(m.peer as usize) else { return Err("reliable: message for no peer") };
            if m.seqno <= p.acked || m.seqno >= p.next {
                return Err("reliable: queued message outside the unacked window");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::OutboxBuf;

    type Rel = Reliable<4, 8, 256>;
    const A: Endpoint = Endpoint::v4([10, 0, 0, 1], 1);
    const B: Endpoint = Endpoint::v4([10, 0, 0, 2], 1);

    fn params() -> ReliableParams {
        ReliableParams { retransmit_ms: 10, max_retransmit_ms: 40, max_unacked_per_peer: 3 }
    }

    fn frames(out: &Outbox<'_>) -> heapless::Vec<Frame<'static>, 16> {
        // Re-decode into 'static by leaking nothing: only the header fields are compared.
        out.iter()
            .map(|(_, d)| match wire::decode::<Frame<'_>>(Protocol::Kv, d).unwrap() {
                Frame::Single { base, seqno, ack, .. } => Frame::Single { base, seqno, ack, body: Bytes(&[]) },
                Frame::Ack { seqno } => Frame::Ack { seqno },
                Frame::Refused { seqno, reason } => Frame::Refused { seqno, reason },
            })
            .collect()
    }

    #[test]
    fn seqnos_start_at_the_base_and_grow_by_one() {
        let mut store = OutboxBuf::<8, 2048>::new();
        let mut out = store.outbox();
        let mut stats = Stats::default();
        let mut r = Rel::new(Protocol::Kv, 256, params(), 1).unwrap();
        let b = r.add_peer(B, Some(1)).unwrap();
        assert_eq!(r.send(Instant::ZERO, b, &7u32, &mut out, &mut stats), Ok(1));
        assert_eq!(r.send(Instant::ZERO, b, &8u32, &mut out, &mut stats), Ok(2));
        let f = frames(&out);
        assert_eq!(f[0], Frame::Single { base: 1, seqno: 1, ack: 0, body: Bytes(&[]) });
        assert_eq!(f[1], Frame::Single { base: 1, seqno: 2, ack: 0, body: Bytes(&[]) });
        assert_eq!(r.invariant(), Ok(()));
    }

    #[test]
    fn out_of_order_message_is_not_accepted() {
        let mut r = Rel::new(Protocol::Kv, 256, params(), 1).unwrap();
        let a = r.add_peer(A, Some(1)).unwrap();
        assert_eq!(r.classify(a, 1, 2), Verdict::Ahead);
        r.accept(a, 1, 2);
        assert_eq!(r.peer(a).unwrap().last_accepted(), Some(0), "ahead message changed nothing");
        assert_eq!(r.classify(a, 1, 1), Verdict::New);
        r.accept(a, 1, 1);
        assert_eq!(r.classify(a, 1, 2), Verdict::New);
    }

    #[test]
    fn duplicate_is_reacked_with_the_cumulative_ack() {
        let mut store = OutboxBuf::<8, 2048>::new();
        let mut out = store.outbox();
        let mut stats = Stats::default();
        let mut r = Rel::new(Protocol::Kv, 256, params(), 1).unwrap();
        let a = r.add_peer(A, Some(1)).unwrap();
        r.accept(a, 1, 1);
        r.accept(a, 1, 2);
        assert_eq!(r.classify(a, 1, 1), Verdict::Duplicate);
        r.send_ack(a, &mut out, &mut stats);
        assert_eq!(frames(&out)[0], Frame::Ack { seqno: 2 });
    }

    #[test]
    fn cumulative_ack_clears_the_queue_and_stale_or_future_acks_do_not() {
        let mut store = OutboxBuf::<8, 2048>::new();
        let mut out = store.outbox();
        let mut stats = Stats::default();
        let mut r = Rel::new(Protocol::Kv, 256, params(), 1).unwrap();
        let b = r.add_peer(B, Some(1)).unwrap();
        for v in 0..3u32 {
            r.send(Instant::ZERO, b, &v, &mut out, &mut stats).unwrap();
        }
        assert_eq!(r.on_ack(Instant::ZERO, b, 4), AckOutcome::Invalid, "acks a seqno never sent");
        assert_eq!(r.on_ack(Instant::ZERO, b, 2), AckOutcome::Progress);
        assert_eq!(r.peer(b).unwrap().unacked(), 1);
        assert_eq!(r.on_ack(Instant::ZERO, b, 1), AckOutcome::Stale);
        assert_eq!(r.pending(), 1);
        assert_eq!(r.invariant(), Ok(()));
    }

    #[test]
    fn an_ack_keeps_every_other_peers_messages_whole() {
        let mut store = OutboxBuf::<8, 2048>::new();
        let mut out = store.outbox();
        let mut stats = Stats::default();
        let mut r = Rel::new(Protocol::Kv, 256, params(), 1).unwrap();
        let (a, b) = (r.add_peer(A, Some(1)).unwrap(), r.add_peer(B, Some(1)).unwrap());
        let long = [7u8; 100];
        r.send(Instant::ZERO, a, &&long[..], &mut out, &mut stats).unwrap();
        r.send(Instant::ZERO, b, &&[1u8, 2][..], &mut out, &mut stats).unwrap();
        r.send(Instant::ZERO, b, &&[3u8; 40][..], &mut out, &mut stats).unwrap();
        // Acking A's message frees the first slot; the last message (B's) moves into it.
        assert_eq!(r.on_ack(Instant::ZERO, a, 1), AckOutcome::Progress);
        let mut left: heapless::Vec<(u64, heapless::Vec<u8, 64>), 4> =
            r.unacked_bodies(b).map(|(s, m)| (s, heapless::Vec::from_slice(m).unwrap())).collect();
        left.sort_unstable_by_key(|m| m.0);
        let want = |v: &[u8]| {
            let mut buf = [0u8; 64];
            heapless::Vec::<u8, 64>::from_slice(postcard::to_slice(v, &mut buf).unwrap()).unwrap()
        };
        assert_eq!(left.len(), 2);
        assert_eq!(left[0], (1, want(&[1, 2])));
        assert_eq!(left[1], (2, want(&[3; 40])));
        assert_eq!(r.unacked_bodies(a).count(), 0);
        assert_eq!(r.invariant(), Ok(()));
    }

    #[test]
    fn equality_ignores_the_bytes_past_a_message() {
        let mut store = OutboxBuf::<8, 2048>::new();
        let mut out = store.outbox();
        let mut stats = Stats::default();
        let new = || Rel::new(Protocol::Kv, 256, params(), 1).unwrap();
        let (mut moved, mut fresh) = (new(), new());
        for r in [&mut moved, &mut fresh] {
            r.add_peer(A, Some(1)).unwrap();
            r.add_peer(B, Some(1)).unwrap();
        }
        // `moved`: B's short message is copied into the slot A's long one used, whose tail
        // bytes stay behind. `fresh`: the same messages sent and acked in an order that
        // leaves B's message in a never-used slot.
        moved.send(Instant::ZERO, 0, &&[9u8; 100][..], &mut out, &mut stats).unwrap();
        moved.send(Instant::ZERO, 1, &&[1u8][..], &mut out, &mut stats).unwrap();
        moved.on_ack(Instant::ZERO, 0, 1);
        fresh.send(Instant::ZERO, 0, &&[9u8; 100][..], &mut out, &mut stats).unwrap();
        fresh.on_ack(Instant::ZERO, 0, 1);
        fresh.send(Instant::ZERO, 1, &&[1u8][..], &mut out, &mut stats).unwrap();
        assert_eq!(moved, fresh);
        let hash = crate::rsl::app::hash_of::<Rel>;
        assert_eq!(hash(&moved), hash(&fresh));
    }

    #[test]
    fn full_queue_refuses_new_messages() {
        let mut store = OutboxBuf::<8, 2048>::new();
        let mut out = store.outbox();
        let mut stats = Stats::default();
        let mut r = Rel::new(Protocol::Kv, 256, params(), 1).unwrap();
        let b = r.add_peer(B, Some(1)).unwrap();
        for v in 0..3u32 {
            r.send(Instant::ZERO, b, &v, &mut out, &mut stats).unwrap();
        }
        assert_eq!(r.room(b), 0);
        assert_eq!(r.send(Instant::ZERO, b, &9u32, &mut out, &mut stats), Err(SendError::QueueFull));
        assert_eq!(r.peer(b).unwrap().next_seqno(), 4, "refused message took no seqno");
        assert_eq!(r.send(Instant::ZERO, 3, &9u32, &mut out, &mut stats), Err(SendError::UnknownPeer));
        let big = [0u8; 300];
        r.on_ack(Instant::ZERO, b, 3);
        assert_eq!(r.send(Instant::ZERO, b, &Bytes(&big), &mut out, &mut stats), Err(SendError::TooLarge));
    }

    #[test]
    fn unacked_messages_are_retransmitted_in_order_with_backoff() {
        let mut store = OutboxBuf::<8, 2048>::new();
        let mut out = store.outbox();
        let mut stats = Stats::default();
        let mut r = Rel::new(Protocol::Kv, 256, params(), 5).unwrap();
        let b = r.add_peer(B, None).unwrap();
        r.send(Instant::ZERO, b, &1u32, &mut out, &mut stats).unwrap();
        r.send(Instant::ZERO, b, &2u32, &mut out, &mut stats).unwrap();
        out.clear();
        assert_eq!(r.next_deadline(), Instant::from_millis(10));
        r.tick(Instant::from_millis(9), &mut out, &mut stats);
        assert!(out.is_empty());
        r.tick(Instant::from_millis(10), &mut out, &mut stats);
        let f = frames(&out);
        assert_eq!(
            &f[..],
            &[
                Frame::Single { base: 5, seqno: 5, ack: 0, body: Bytes(&[]) },
                Frame::Single { base: 5, seqno: 6, ack: 0, body: Bytes(&[]) }
            ]
        );
        assert_eq!(r.next_deadline(), Instant::from_millis(30), "delay doubled to 20 ms");
        r.tick(Instant::from_millis(30), &mut out, &mut stats);
        r.tick(Instant::from_millis(70), &mut out, &mut stats);
        assert_eq!(r.next_deadline(), Instant::from_millis(110), "capped at 40 ms");
        r.on_ack(Instant::from_millis(70), b, 5);
        assert_eq!(r.next_deadline(), Instant::from_millis(80), "progress resets the delay");
        r.on_ack(Instant::from_millis(70), b, 6);
        assert_eq!(r.next_deadline(), Instant::NEVER);
        assert_eq!(r.retransmits(), 6);
    }

    #[test]
    fn a_restarted_peer_resets_the_channel_and_stale_incarnations_are_ignored() {
        let mut store = OutboxBuf::<8, 2048>::new();
        let mut out = store.outbox();
        let mut stats = Stats::default();
        let mut r = Rel::new(Protocol::Kv, 256, params(), 1).unwrap();
        let c = r.add_peer(A, None).unwrap();
        assert_eq!(r.classify(c, 100, 101), Verdict::Ahead, "first contact must be the channel's first message");
        r.accept(c, 100, 100);
        r.send(Instant::ZERO, c, &1u32, &mut out, &mut stats).unwrap();
        assert_eq!(r.classify(c, 50, 50), Verdict::Stale);
        assert_eq!(r.classify(c, 200, 201), Verdict::Ahead);
        assert_eq!(r.classify(c, 200, 200), Verdict::Restarted);
        assert_eq!(r.room_after(c, Verdict::Restarted), 3);
        r.accept(c, 200, 200);
        assert_eq!(r.pending(), 0, "messages for the dead incarnation dropped");
        out.clear();
        r.send(Instant::ZERO, c, &2u32, &mut out, &mut stats).unwrap();
        assert_eq!(
            frames(&out)[0],
            Frame::Single { base: 2, seqno: 2, ack: 200, body: Bytes(&[]) },
            "carries the new incarnation's ack"
        );
        assert_eq!(r.on_ack(Instant::ZERO, c, 1), AckOutcome::Stale, "old incarnation's ack acks nothing new");
        assert_eq!(r.invariant(), Ok(()));
    }

    #[test]
    fn a_fixed_peer_cannot_restart() {
        let mut r = Rel::new(Protocol::Kv, 256, params(), 1).unwrap();
        let a = r.add_peer(A, Some(1)).unwrap();
        assert_eq!(r.classify(a, 9, 9), Verdict::Invalid);
        assert_eq!(r.classify(a, 1, 0), Verdict::Invalid);
    }
}
