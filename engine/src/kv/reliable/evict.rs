//! Eviction: how a full peer table makes room for a new client, how a client that never
//! acknowledges is given up on, and the bounded memory of evicted channels that keeps a
//! request from being executed twice.
//!
//! **Which peer.** Only clients ([`PeerKind::Client`]) are ever evicted; the hosts of a
//! cluster are fixed. When a new client's first message finds the table full, the *settled*
//! client (nothing unacknowledged, no ack owed: it acknowledged every reply it was sent)
//! whose last activity (a message accepted from it, or its ack making progress) is oldest is
//! evicted, the lowest index first among equals, so the choice is deterministic. With no
//! settled client the newcomer is refused ([`Refusal::TooManyPeers`]) and retransmits.
//!
//! **Giving up.** A client whose retransmission timer comes due after `give_up_after`
//! rounds without its ack making progress is evicted with its unacked messages (counted:
//! [`Reliable::tick`] returns how many), so a client that vanished cannot pin a slot or be
//! sent to forever.
//!
//! **Closed-channel floors.** An evicted channel must never be accepted again: a delayed
//! duplicate of its first message (`seqno == base`) would otherwise look like a new channel
//! from a new client and be executed a second time. The receiver keeps, for each of `P`
//! buckets of endpoints (a hash of the endpoint), two numbers:
//!
//! * `above`: the highest seqno accepted on any channel evicted from the bucket. A channel
//!   from an endpoint with no state here is accepted only if its base exceeds `above`
//!   ([`Reliable::classify_unknown`]); a message of a channel at or below it is refused with
//!   [`Refusal::ChannelClosed`], telling the sender to restart above it.
//! * `lost`: the same, over the channels evicted while replies to them were unacknowledged
//!   (given up on). A message at or below it may have been executed with its reply lost.
//!
//! **Why no message of an evicted channel is accepted again.** Every channel base an
//! endpoint ever had accepted here is at most the last seqno accepted on it. When its
//! channel is evicted, `above` of its bucket rises to at least that seqno, and floors never
//! go down. A later channel from that endpoint is accepted either as a new channel (base
//! above `above`: above every base it had) or as a restart of a live one (base above the
//! live one's). So the bases an endpoint has accepted strictly increase over time; an old
//! channel's messages carry an old base and are `Stale` (endpoint known) or `Closed`
//! (endpoint unknown), never `New`. Within a channel only `last + 1` is accepted. Hence
//! every `(endpoint, base, seqno)` is accepted at most once: a request is executed at most
//! once, evictions included. Buckets only make this coarser: an endpoint sharing a bucket
//! with an evicted one may have to restart its channel above a floor it never used (one
//! extra round trip), or see a possibly-lost verdict it did not need (its outcome reported
//! unknown): never a second execution.
//!
//! **What the client learns.** A refused message of a closed channel was never executed if
//! the client got no reply to it and its seqno is above `lost`: the receiver evicted the
//! channel settled, so it had acknowledged the reply of everything accepted on it, and a
//! client that still waits for a reply did not get it. The client restarts its channel above
//! `above` and sends the request again. At or below `lost` the request may have been
//! executed and its reply dropped: its outcome is unknown, as after a timeout.
//!
//! **Our new channel to a re-admitted client** starts at `send_floor`, above every seqno
//! sent on any evicted channel, so the client sees a larger base (a [`PeerKind::Server`]'s
//! new channel), never a stale duplicate of an old one.

use super::{PeerKind, Refusal, Reliable, Verdict, MAX_CHANNEL_BASE};
use crate::endpoint::{Endpoint, IpAddr};
use crate::time::Instant;

/// The floors of the channels evicted from one bucket of endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Closed {
    /// Highest seqno accepted on a channel evicted from the bucket (0: none).
    pub above: u64,
    /// Highest seqno accepted on a channel evicted with unacknowledged replies (0: none).
    pub lost: u64,
}

impl Closed {
    /// No channel evicted.
    pub const NONE: Closed = Closed { above: 0, lost: 0 };
}

/// FNV-1a of the endpoint's address and port: its bucket among `buckets`.
fn bucket(ep: Endpoint, buckets: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    match ep.ip {
        IpAddr::V4(o) => o.iter().for_each(|b| eat(*b)),
        IpAddr::V6(o) => o.iter().for_each(|b| eat(*b)),
    }
    ep.port.to_be_bytes().iter().for_each(|b| eat(*b));
    (h % buckets.max(1) as u64) as usize
}

/// Why a peer left the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Eviction {
    /// Evicted settled, to make room for a new client.
    Settled,
    /// Given up on, with unacknowledged messages dropped.
    GaveUp,
}

impl<const P: usize, const U: usize, const D: usize> Reliable<P, U, D> {
    /// The closed-channel floors of `ep`'s bucket.
    pub fn closed_floor(&self, ep: Endpoint) -> Closed {
        self.closed.get(bucket(ep, P)).copied().unwrap_or_default()
    }

    /// How `(base, seqno)` from an endpoint with no channel here relates to what this side
    /// accepts: `New` (a fresh channel's first message, its base above the bucket's floor),
    /// `Closed` (a channel at or below the floor: refuse with [`Reliable::closed_refusal`]),
    /// `Ahead` (a later message of a channel that may still start: ignore), or `Invalid`.
    /// Changes nothing.
    pub fn classify_unknown(&self, ep: Endpoint, base: u64, seqno: u64) -> Verdict {
        if base == 0 || seqno < base || base > MAX_CHANNEL_BASE {
            return Verdict::Invalid;
        }
        if base <= self.closed_floor(ep).above {
            return Verdict::Closed;
        }
        match seqno == base {
            true => Verdict::New,
            false => Verdict::Ahead,
        }
    }

    /// The refusal for a message of a closed channel from `ep`.
    pub fn closed_refusal(&self, ep: Endpoint) -> Refusal {
        let c = self.closed_floor(ep);
        Refusal::ChannelClosed { above: c.above, lost: c.lost }
    }

    /// Whether [`Reliable::admit`] would find a slot (free, or a settled client to evict).
    pub fn can_admit(&self) -> bool {
        !self.peers.is_full() || self.peers.iter().any(|p| p.settled_client())
    }

    /// Registers a new client at `ep` (its first message is being accepted at `now`),
    /// evicting the least recently active settled client if the table is full. Returns its
    /// index and whether a client was evicted; `TooManyPeers` if no client is settled.
    pub fn admit(&mut self, now: Instant, ep: Endpoint) -> Result<(usize, bool), Refusal> {
        if let Some(i) = self.index_of(ep) {
            return Ok((i, false));
        }
        let mut evicted = false;
        if self.peers.is_full() {
            let victim = self
                .peers
                .iter()
                .enumerate()
                .filter(|(_, p)| p.settled_client())
                .min_by_key(|(i, p)| (p.last_active, *i))
                .map(|(i, _)| i)
                .ok_or(Refusal::TooManyPeers)?;
            self.evict(victim);
            evicted = true;
        }
        let i = self.add_peer(ep, PeerKind::Client).ok_or(Refusal::TooManyPeers)?;
        self.peers[i].last_active = now;
        Ok((i, evicted))
    }

    /// Removes client `i` from the table, dropping its unacked messages, and raises its
    /// bucket's floors (`lost` too if messages were dropped). The last peer takes index `i`.
    /// Fixed and server peers are never evicted: `None`.
    pub fn evict(&mut self, i: usize) -> Option<Eviction> {
        let p = *self.peers.get(i)?;
        if p.kind != PeerKind::Client {
            return None;
        }
        let how = if p.unacked > 0 { Eviction::GaveUp } else { Eviction::Settled };
        self.drop_pending_of(i);
        let last = p.recv.map_or(0, |r| r.1);
        if let Some(c) = self.closed.get_mut(bucket(p.ep, P)) {
            c.above = c.above.max(last);
            if how == Eviction::GaveUp {
                c.lost = c.lost.max(last);
            }
        }
        self.send_floor = self.send_floor.max(p.next);
        let moved = self.peers.len() - 1;
        self.peers.swap_remove(i);
        self.index.remove(p.ep);
        if let Some(m) = self.peers.get(i) {
            self.index.renumber(m.ep, i);
        }
        if moved != i {
            for m in self.pending.iter_mut().filter(|m| m.peer as usize == moved) {
                m.peer = i as u32;
            }
        }
        Some(how)
    }

    /// Evicts every client whose retransmission timer is due at `now` after
    /// `give_up_after` rounds without progress; returns how many.
    pub(super) fn give_up(&mut self, now: Instant) -> usize {
        let limit = self.params.give_up_after;
        let mut abandoned = 0;
        // Downwards: an eviction moves the last peer (already looked at) into the slot.
        let mut k = self.peers.len();
        while k > 0 {
            k -= 1;
            let p = &self.peers[k];
            let due = p.retransmit_at.is_some_and(|t| now >= t);
            if due && p.kind == PeerKind::Client && p.rounds >= limit && self.evict(k).is_some() {
                abandoned += 1;
            }
        }
        abandoned
    }
}
