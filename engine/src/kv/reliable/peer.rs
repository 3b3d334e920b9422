//! One peer's channel state, both directions: what was accepted from it, and what was sent
//! to it and not yet acknowledged, with the retransmission timer and any ack owed.

use crate::endpoint::Endpoint;
use crate::time::Instant;

/// One peer's channel state, both directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Peer {
    pub(super) ep: Endpoint,
    pub(super) fixed: bool,
    pub(super) recv: Option<(u64, u64)>,
    pub(super) send_base: u64,
    pub(super) next: u64,
    pub(super) acked: u64,
    pub(super) unacked: usize,
    pub(super) retransmit_at: Option<Instant>,
    pub(super) backoff_ms: u64,
    /// An ack is owed to the peer, to go alone at this instant unless a message carries it.
    pub(super) ack_due: Option<Instant>,
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
    pub(super) fn ack(&self) -> u64 {
        self.last_accepted().unwrap_or(0)
    }
}
