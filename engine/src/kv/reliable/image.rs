//! The channel table's part of a host's durable image ([`crate::kv::durable`]): every field
//! read out in pieces, and put back in the same order, so that a restored table equals the
//! one imaged (the unacked pool's order included: it decides retransmission order).

use super::evict::Closed;
use super::pending::PushError;
use super::{Peer, PeerKind, Reliable, MAX_CHANNEL_BASE};

impl<const P: usize, const U: usize, const D: usize> Reliable<P, U, D> {
    /// Unacked message `k` of the pool: its peer index, seqno and body.
    pub(crate) fn pending_at(&self, k: usize) -> Option<(u32, u64, &[u8])> {
        self.pending.get(k).map(|m| (m.peer, m.seqno, m.body()))
    }

    /// The floors of bucket `b`.
    pub(crate) fn closed_at(&self, b: usize) -> Option<Closed> {
        self.closed.get(b).copied()
    }

    /// The send floor, the retransmission count and the first seqno.
    pub(crate) fn floors(&self) -> (u64, u64, u64) {
        (self.send_floor, self.retransmits, self.first_seqno)
    }

    /// Puts back the send floor, retransmission count and first seqno.
    pub(crate) fn restore_floors(&mut self, send_floor: u64, retransmits: u64, first_seqno: u64) {
        self.send_floor = send_floor;
        self.retransmits = retransmits;
        self.first_seqno = first_seqno.clamp(1, MAX_CHANNEL_BASE);
    }

    /// Puts back peer `i`: a configured host in its place (same endpoint, fixed), or the
    /// next client.
    pub(crate) fn restore_peer(&mut self, i: usize, peer: Peer) -> Result<(), &'static str> {
        if peer.send_base == 0 || peer.send_base > MAX_CHANNEL_BASE.saturating_add(1) {
            return Err("a peer's send base is out of range");
        }
        let len = self.peers.len();
        let known = self.index_of(peer.ep).is_some();
        match self.peers.get_mut(i) {
            Some(slot) => {
                if slot.ep != peer.ep || !matches!(peer.kind, PeerKind::Fixed { .. }) {
                    return Err("a host peer does not match the configuration");
                }
                *slot = peer;
                Ok(())
            }
            None if i == len && peer.kind == PeerKind::Client => {
                if known {
                    return Err("a client peer appears twice");
                }
                self.peers.push(peer).map_err(|_| "more peers than the table holds")?;
                self.index.insert(peer.ep, i);
                Ok(())
            }
            None => Err("a peer out of order"),
        }
    }

    /// Appends an unacked message to the pool.
    pub(crate) fn restore_pending(&mut self, peer: u32, seqno: u64, body: &[u8]) -> Result<(), &'static str> {
        let copy = |slot: &mut [u8]| {
            slot.get_mut(..body.len())?.copy_from_slice(body);
            Some(body.len())
        };
        match self.pending.push_with(peer, seqno, D, copy) {
            Ok(_) => Ok(()),
            Err(PushError::Full) => Err("more unacked messages than the pool holds"),
            Err(PushError::Refused) => Err("an unacked message longer than a datagram"),
        }
    }

    /// Puts back the floors of bucket `b`.
    pub(crate) fn restore_closed(&mut self, b: usize, floors: Closed) -> Result<(), &'static str> {
        *self.closed.get_mut(b).ok_or("a closed-channel bucket out of range")? = floors;
        Ok(())
    }
}
