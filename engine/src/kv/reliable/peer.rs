//! One peer's channel state, both directions: what was accepted from it, and what was sent
//! to it and not yet acknowledged, with the retransmission timer, any ack owed, and what
//! eviction looks at (its kind, its last activity, its retransmission rounds without progress).

use serde::{Deserialize, Serialize};

use crate::endpoint::Endpoint;
use crate::time::Instant;

/// What a peer is to this side of the channel, which decides how a new channel from it is
/// taken ([`Reliable::classify`](super::Reliable::classify)) and whether it may be evicted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PeerKind {
    /// Never restarts: its channel to us has this base forever, and it is never evicted
    /// (the hosts of a KV cluster, seen by a host). Another base from it is invalid.
    Fixed {
        /// The base of its channel to us.
        base: u64,
    },
    /// Serves us, is never evicted here, and may open a new channel to us (a larger base)
    /// after it evicted us: that restarts only our receive side, because it opens the new
    /// channel in answer to our current one (the hosts of a KV cluster, seen by a client).
    Server,
    /// A client of ours: a larger base is a new incarnation (both directions restart); it may
    /// be evicted when the table is full and it is settled, and is given up on when it
    /// acknowledges nothing for `give_up_after` retransmission rounds.
    Client,
}

/// One peer's channel state, both directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Peer {
    pub(super) ep: Endpoint,
    pub(super) kind: PeerKind,
    pub(super) recv: Option<(u64, u64)>,
    pub(super) send_base: u64,
    pub(super) next: u64,
    pub(super) acked: u64,
    pub(super) unacked: usize,
    pub(super) retransmit_at: Option<Instant>,
    pub(super) backoff_ms: u64,
    /// An ack is owed to the peer, to go alone at this instant unless a message carries it.
    pub(super) ack_due: Option<Instant>,
    /// When a message from it was last accepted, or its ack last made progress.
    pub(super) last_active: Instant,
    /// Retransmission rounds since its ack last made progress.
    pub(super) rounds: u32,
}

impl Peer {
    /// The peer's endpoint.
    pub fn endpoint(&self) -> Endpoint {
        self.ep
    }

    /// What the peer is to us.
    pub fn kind(&self) -> PeerKind {
        self.kind
    }

    /// The last seqno accepted from the peer, if any.
    pub fn last_accepted(&self) -> Option<u64> {
        self.recv.map(|r| r.1)
    }

    /// The base of the peer's channel to us, once something was accepted from it.
    pub fn recv_base(&self) -> Option<u64> {
        self.recv.map(|r| r.0)
    }

    /// The base of our channel to the peer (its first seqno).
    pub fn send_base(&self) -> u64 {
        self.send_base
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

    /// When a message from the peer was last accepted or its ack last made progress.
    pub fn last_active(&self) -> Instant {
        self.last_active
    }

    /// Retransmission rounds since the peer's ack last made progress.
    pub fn rounds_without_progress(&self) -> u32 {
        self.rounds
    }

    /// Whether the peer may be evicted now: a client with nothing unacknowledged and no ack
    /// owed (fully settled: every reply it was sent, it acknowledged).
    pub fn settled_client(&self) -> bool {
        self.kind == PeerKind::Client && self.unacked == 0 && self.ack_due.is_none()
    }

    /// The cumulative ack a message to the peer carries.
    pub(super) fn ack(&self) -> u64 {
        self.last_accepted().unwrap_or(0)
    }
}
