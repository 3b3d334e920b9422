//! The peer table's index by endpoint: every received datagram looks its sender up, so the
//! lookup is a binary search (O(log P)) rather than a scan of up to `P` peers (a host with a
//! thousand clients compared a thousand endpoints per request). Kept in step with the table
//! on every insertion and removal; [`PeerIndex::check`] pairs it with the table.

use crate::endpoint::{search_sorted, Endpoint};

/// `(endpoint, peer index)` for every peer, sorted by endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(super) struct PeerIndex<const P: usize> {
    sorted: heapless::Vec<(Endpoint, u32), P>,
}

impl<const P: usize> PeerIndex<P> {
    /// The index of the peer at `ep`. O(log P).
    pub fn get(&self, ep: Endpoint) -> Option<usize> {
        let at = search_sorted(&self.sorted, ep, |(e, _)| *e).ok()?;
        Some(self.sorted[at].1 as usize)
    }

    /// Records that peer `i` is at `ep` (a new peer: `ep` is not in the index). O(P) moves,
    /// once per new peer.
    pub fn insert(&mut self, ep: Endpoint, i: usize) {
        if let Err(at) = search_sorted(&self.sorted, ep, |(e, _)| *e) {
            // Cannot overflow: the index holds one entry per peer and the table at most P.
            let _ = self.sorted.insert(at, (ep, i as u32));
        }
    }

    /// Forgets the peer at `ep`. O(P) moves, once per evicted peer.
    pub fn remove(&mut self, ep: Endpoint) {
        if let Ok(at) = search_sorted(&self.sorted, ep, |(e, _)| *e) {
            self.sorted.remove(at);
        }
    }

    /// The peer at `ep` moved to index `i` (the table's last peer filling a removed slot).
    pub fn renumber(&mut self, ep: Endpoint, i: usize) {
        if let Ok(at) = search_sorted(&self.sorted, ep, |(e, _)| *e) {
            self.sorted[at].1 = i as u32;
        }
    }

    /// The index describes exactly the table `endpoints` (peer `i` at `endpoints[i]`).
    pub fn check(&self, endpoints: impl ExactSizeIterator<Item = Endpoint>) -> Result<(), &'static str> {
        if self.sorted.len() != endpoints.len() {
            return Err("reliable: the peer index and the table differ in size");
        }
        if self.sorted.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err("reliable: the peer index is not sorted");
        }
        for (i, ep) in endpoints.enumerate() {
            if self.get(ep) != Some(i) {
                return Err("reliable: the peer index points elsewhere");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(port: u16) -> Endpoint {
        Endpoint::v4([10, 0, 0, 1], port)
    }

    #[test]
    fn lookups_follow_insertions_removals_and_moves() {
        let mut index = PeerIndex::<4>::default();
        for (i, port) in [30, 10, 20].into_iter().enumerate() {
            index.insert(ep(port), i);
        }
        assert_eq!((index.get(ep(30)), index.get(ep(10)), index.get(ep(20))), (Some(0), Some(1), Some(2)));
        assert_eq!(index.get(ep(99)), None);
        // Peer 0 (port 30) leaves; the last peer (port 20) takes its slot.
        index.remove(ep(30));
        index.renumber(ep(20), 0);
        assert_eq!(index.check([ep(20), ep(10)].into_iter()), Ok(()));
        assert_eq!(index.check([ep(10), ep(20)].into_iter()), Err("reliable: the peer index points elsewhere"));
        assert!(index.check([ep(20)].into_iter()).is_err());
    }
}
