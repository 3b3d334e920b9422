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
//!   is the channel's first (`seqno == base`); a larger `base` from a known client
//!   ([`PeerKind::Client`]) means that peer restarted with fresh seqnos
//!   ([`Verdict::Restarted`]): accepting it resets both directions of the channel (the
//!   unacked messages for the dead incarnation are dropped, and the reply channel restarts
//!   at a fresh base). A smaller `base` is a stale datagram of an older incarnation. Fixed
//!   peers (the hosts of a cluster) never restart: another base from them is invalid.
//! * **Eviction** (not in IronKV, whose tables are unbounded; see [`evict`]). With the table
//!   full, a new client evicts the settled client (nothing unacknowledged) that was active
//!   least recently; a client that acknowledges nothing for `give_up_after` retransmission
//!   rounds is given up on and evicted with its replies. Per endpoint, the bases of the
//!   channels this side accepts strictly increase over time, evictions included: an evicted
//!   channel's seqnos raise a per-bucket floor that a new channel's base must exceed
//!   ([`Reliable::classify_unknown`]), so no message of an evicted channel, however late,
//!   is accepted again, and a request is executed at most once.

use serde::Serialize;

use crate::config::ConfigError;
use crate::emit;
use crate::endpoint::Endpoint;
use crate::outbox::Outbox;
use crate::stats::Stats;
use crate::time::{earliest, Instant};
use crate::wire::{Bytes, Protocol};

pub mod evict;
mod frame;
mod image;
mod index;
mod invariant;
mod params;
mod peer;
mod pending;

use evict::Closed;
pub use frame::{Frame, Refusal, FRAME_OVERHEAD_BYTES};
use index::PeerIndex;
pub use params::{AckOutcome, ReliableParams, SendError, Verdict, MAX_CHANNEL_BASE};
pub use peer::{Peer, PeerKind};
use pending::{Pool, PushError};

/// Reliable channels to at most `P` peers, with at most `U` unacked bodies of `D` bytes, and
/// `P` buckets of closed-channel floors ([`evict`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reliable<const P: usize, const U: usize, const D: usize> {
    protocol: Protocol,
    /// The cluster identity this side's datagrams carry (KV; `ANY_CLUSTER` until set).
    cluster: u32,
    max_datagram_bytes: usize,
    params: ReliableParams,
    first_seqno: u64,
    peers: heapless::Vec<Peer, P>,
    /// The peers by endpoint (derived from `peers`, kept in step).
    index: PeerIndex<P>,
    pending: Pool<D, U>,
    /// Per endpoint bucket: the floors of the channels evicted from it.
    closed: [Closed; P],
    /// Every seqno this side sent on an evicted channel is below this: a new channel to a
    /// client starts here, so it never looks like an old one to that client.
    send_floor: u64,
    retransmits: u64,
}

/// How this side's datagrams are wrapped: with the cluster identity where the protocol
/// carries one.
fn envelope_of(protocol: Protocol, cluster: u32) -> crate::emit::Envelope {
    match protocol {
        Protocol::Kv => crate::emit::Envelope::Kv(cluster),
        Protocol::Rsl => crate::emit::Envelope::Rsl(cluster),
        p => crate::emit::Envelope::Plain(p),
    }
}

impl<const P: usize, const U: usize, const D: usize> Reliable<P, U, D> {
    /// Channels for `protocol` whose own seqnos start at `first_seqno` (0 is taken as 1).
    pub fn new(
        protocol: Protocol,
        max_datagram_bytes: usize,
        params: ReliableParams,
        first_seqno: u64,
    ) -> Result<Self, ConfigError> {
        params.validate(U)?;
        if max_datagram_bytes <= FRAME_OVERHEAD_BYTES {
            return Err(ConfigError::Invalid("max_datagram_bytes"));
        }
        if P == 0 || P > u32::MAX as usize {
            return Err(ConfigError::Invalid("peer capacity (P)"));
        }
        if first_seqno > MAX_CHANNEL_BASE {
            return Err(ConfigError::Invalid("first_seqno"));
        }
        Ok(Reliable {
            protocol,
            cluster: crate::wire::ANY_CLUSTER,
            max_datagram_bytes,
            params,
            first_seqno: first_seqno.max(1),
            peers: heapless::Vec::new(),
            index: PeerIndex::default(),
            pending: Pool::new(),
            closed: [Closed::NONE; P],
            send_floor: 0,
            retransmits: 0,
        })
    }

    /// Names the cluster this side's datagrams carry (see `KvConfig::identity`).
    pub fn set_cluster(&mut self, cluster: u32) {
        self.cluster = cluster;
    }

    /// Largest body [`Reliable::send`] accepts.
    pub fn max_body_bytes(&self) -> usize {
        (self.max_datagram_bytes - FRAME_OVERHEAD_BYTES).min(D)
    }

    /// Registers a peer of `kind` if the table has room (it never evicts; clients are
    /// admitted with [`Reliable::admit`]), and returns its index. A peer keeps its index
    /// until it is evicted; only clients are ever evicted, and a peer registered before any
    /// client (the hosts of a cluster) keeps its index for good.
    pub fn add_peer(&mut self, ep: Endpoint, kind: PeerKind) -> Option<usize> {
        if let Some(i) = self.index_of(ep) {
            return Some(i);
        }
        let b = self.first_seqno.max(self.send_floor);
        let recv = match kind {
            PeerKind::Fixed { base } => Some((base.max(1), base.max(1) - 1)),
            PeerKind::Server | PeerKind::Client => None,
        };
        let peer = Peer {
            ep,
            kind,
            recv,
            send_base: b,
            next: b,
            acked: b - 1,
            unacked: 0,
            retransmit_at: None,
            backoff_ms: self.params.retransmit_ms,
            ack_due: None,
            last_active: Instant::ZERO,
            rounds: 0,
        };
        self.peers.push(peer).ok()?;
        let i = self.peers.len() - 1;
        self.index.insert(ep, i);
        Some(i)
    }

    /// The index of the peer at `ep`. O(log P): every received datagram asks.
    pub fn index_of(&self, ep: Endpoint) -> Option<usize> {
        self.index.get(ep)
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
        if base == 0 || seqno < base || base > MAX_CHANNEL_BASE {
            return Verdict::Invalid;
        }
        match p.recv {
            None if seqno == base => Verdict::New,
            None => Verdict::Ahead,
            Some((b, _)) if base != b && matches!(p.kind, PeerKind::Fixed { .. }) => Verdict::Invalid,
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
    /// is ignored) at `now`. A client's restart also drops the unacked messages of its dead
    /// incarnation and starts a fresh outgoing channel; a server's new channel restarts only
    /// the receive side (it was opened in answer to our current channel).
    pub fn accept(&mut self, now: Instant, i: usize, base: u64, seqno: u64) {
        let verdict = self.classify(i, base, seqno);
        let client = self.peers.get(i).is_some_and(|p| p.kind == PeerKind::Client);
        if verdict == Verdict::Restarted && client {
            self.reset_send(i, self.peers[i].next);
        }
        if matches!(verdict, Verdict::New | Verdict::Restarted) {
            if let Some(p) = self.peers.get_mut(i) {
                p.recv = Some((base, seqno));
                p.last_active = now;
                p.rounds = 0;
            }
        }
    }

    /// Drops every unacked message to peer `i` and starts its outgoing channel afresh at
    /// `base` (at least the next seqno, so seqnos never repeat).
    fn reset_send(&mut self, i: usize, base: u64) {
        self.drop_pending_of(i);
        if let Some(p) = self.peers.get_mut(i) {
            let base = base.max(p.next);
            p.send_base = base;
            p.next = base;
            p.acked = base - 1;
            p.unacked = 0;
            p.retransmit_at = None;
            p.backoff_ms = self.params.retransmit_ms;
            p.rounds = 0;
        }
    }

    fn drop_pending_of(&mut self, i: usize) {
        let mut k = self.pending.len();
        while k > 0 {
            k -= 1;
            if self.pending[k].peer as usize == i {
                self.remove_pending(k);
            }
        }
    }

    /// A fixed peer `i` (a KV host) started a new incarnation whose channel to us has
    /// `their_base`: everything of its old channel is forgotten (it will never send on it
    /// again, and a stale message of it is refused: its base is smaller), our unacked
    /// messages to it are dropped (its new incarnation holds nothing of them), and our
    /// channel to it restarts above every seqno we sent. Returns our channel's new base.
    pub fn restart_fixed(&mut self, i: usize, their_base: u64) -> Option<u64> {
        let p = self.peers.get_mut(i)?;
        if !matches!(p.kind, PeerKind::Fixed { .. }) || their_base == 0 || their_base > MAX_CHANNEL_BASE {
            return None;
        }
        p.kind = PeerKind::Fixed { base: their_base };
        p.recv = Some((their_base, their_base - 1));
        p.ack_due = None;
        let next = p.next;
        self.reset_send(i, next);
        self.peers.get(i).map(|p| p.send_base)
    }

    /// The base of fixed peer `i`'s channel to us ([`PeerKind::Fixed`]).
    pub fn fixed_base(&self, i: usize) -> Option<u64> {
        match self.peers.get(i)?.kind {
            PeerKind::Fixed { base } => Some(base),
            _ => None,
        }
    }

    /// Learns that fixed peer `i`'s channel to us has base `base` (a host that answered a
    /// joining host); nothing was accepted from it yet.
    pub fn set_fixed_base(&mut self, i: usize, base: u64) {
        if base == 0 || base > MAX_CHANNEL_BASE {
            return;
        }
        if let Some(p) = self.peers.get_mut(i).filter(|p| matches!(p.kind, PeerKind::Fixed { .. })) {
            p.kind = PeerKind::Fixed { base };
            p.recv = Some((base, base - 1));
            p.ack_due = None;
        }
    }

    /// Raises every bucket's closed-channel floors to at least `above` and `lost`: a host
    /// that starts without its state refuses every client channel it may have served before.
    pub fn close_all_below(&mut self, above: u64, lost: u64) {
        for c in self.closed.iter_mut() {
            c.above = c.above.max(above);
            c.lost = c.lost.max(lost);
        }
    }

    /// Restarts our outgoing channel to peer `i` after it refused it as closed
    /// ([`Refusal::ChannelClosed`]): its unacked messages are dropped (the peer will never
    /// accept them) and the new channel's base is above `above` and above every seqno sent.
    pub fn restart_send(&mut self, i: usize, above: u64) {
        let base = above.min(MAX_CHANNEL_BASE).saturating_add(1);
        self.reset_send(i, base);
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
        // Encode straight into a reused queue slot (no zero-fill, no copy).
        let encode = |slot: &mut [u8]| crate::wire::to_slice(body, slot).ok();
        match self.pending.push_with(i as u32, seqno, max, encode) {
            Ok(_) => {}
            Err(PushError::Full) => return Err(SendError::QueueFull),
            Err(PushError::Refused) => return Err(SendError::TooLarge),
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
            if emit::send(out, stats, envelope_of(self.protocol, self.cluster), self.max_datagram_bytes, ep, &frame) {
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
            if emit::send(
                out,
                stats,
                envelope_of(self.protocol, self.cluster),
                self.max_datagram_bytes,
                p.ep,
                &Frame::Ack { seqno: last },
            ) {
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
        self.send_unreliable(dst, &Frame::Refused { seqno, reason }, out, stats);
    }

    /// Emits a frame outside any channel (a refusal, a KV join exchange): not queued, not
    /// retransmitted.
    pub fn send_unreliable(&self, dst: Endpoint, frame: &Frame<'_>, out: &mut Outbox<'_>, stats: &mut Stats) {
        emit::send(out, stats, envelope_of(self.protocol, self.cluster), self.max_datagram_bytes, dst, frame);
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
        p.last_active = now;
        p.rounds = 0;
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
        self.pending.swap_remove(k);
    }

    /// Retransmits, in seqno order, every unacked message of every peer whose timer is due,
    /// and doubles that peer's delay (up to the maximum). A client whose timer is due after
    /// `give_up_after` rounds without progress is given up on instead (evicted with its
    /// unacked messages, [`evict`]); returns how many were.
    pub fn tick(&mut self, now: Instant, out: &mut Outbox<'_>, stats: &mut Stats) -> usize {
        let abandoned = self.give_up(now);
        let max = self.params.max_retransmit_ms;
        for (i, p) in self.peers.iter_mut().enumerate() {
            if p.retransmit_at.is_none_or(|t| now < t) {
                continue;
            }
            for seqno in p.acked + 1..p.next {
                let found = self.pending.iter().find(|m| m.peer as usize == i && m.seqno == seqno);
                if let Some(m) = found {
                    let frame = Frame::Single { base: p.send_base, seqno, ack: p.ack(), body: Bytes(m.body()) };
                    if emit::send(
                        out,
                        stats,
                        envelope_of(self.protocol, self.cluster),
                        self.max_datagram_bytes,
                        p.ep,
                        &frame,
                    ) {
                        p.ack_due = None;
                    }
                    self.retransmits = self.retransmits.saturating_add(1);
                }
            }
            p.backoff_ms = p.backoff_ms.saturating_mul(2).min(max);
            p.retransmit_at = Some(now.plus_ms(p.backoff_ms));
            p.rounds = p.rounds.saturating_add(1);
        }
        self.flush_acks(now, out, stats);
        abandoned
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
}

#[cfg(test)]
mod tests;
