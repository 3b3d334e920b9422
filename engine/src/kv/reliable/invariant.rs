//! The channel table's local invariant, checked by the host's invariant after every step.

use super::{PeerKind, Reliable};

impl<const P: usize, const U: usize, const D: usize> Reliable<P, U, D> {
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
            if p.kind == PeerKind::Client && p.recv.is_none() {
                return Err("reliable: a client registered with nothing accepted from it");
            }
            if p.send_base == 0 || p.send_base > p.next {
                return Err("reliable: send base outside the channel");
            }
        }
        for m in &self.pending {
            let Some(p) = self.peers.get(m.peer as usize) else { return Err("reliable: message for no peer") };
            if m.seqno <= p.acked || m.seqno >= p.next {
                return Err("reliable: queued message outside the unacked window");
            }
        }
        self.index.check(self.peers.iter().map(|p| p.ep))
    }
}
