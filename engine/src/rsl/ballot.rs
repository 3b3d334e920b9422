//! Ballots (views): `(seqno, proposer)`, ordered lexicographically.

use serde::{Deserialize, Serialize};

/// A Paxos ballot, which IronRSL also uses as the view: the replica with index `proposer`
/// leads it. Field order gives the lexicographic order of IronRSL's `BalLt`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Ballot {
    /// The round number.
    pub seqno: u64,
    /// Index of the replica that leads this ballot.
    pub proposer: u8,
}

impl Ballot {
    /// IronRSL's initial view, `(1, 0)`: replica 0 leads first.
    pub const INITIAL: Ballot = Ballot { seqno: 1, proposer: 0 };

    /// The next view in round-robin order: the next proposer, or the next round when the
    /// proposer index wraps past `replicas - 1`. Saturates at the top round.
    pub fn successor(self, replicas: usize) -> Ballot {
        let next = usize::from(self.proposer) + 1;
        if next < replicas {
            Ballot { seqno: self.seqno, proposer: self.proposer + 1 }
        } else {
            Ballot { seqno: self.seqno.saturating_add(1), proposer: 0 }
        }
    }

    /// True when this ballot names a proposer inside a cluster of `replicas`.
    pub fn is_valid_for(self, replicas: usize) -> bool {
        usize::from(self.proposer) < replicas
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ballots_order_by_round_then_proposer() {
        let a = Ballot { seqno: 1, proposer: 2 };
        let b = Ballot { seqno: 2, proposer: 0 };
        assert!(a < b);
        assert!(Ballot { seqno: 2, proposer: 1 } > b);
    }

    #[test]
    fn successor_rotates_proposers_then_rounds() {
        assert_eq!(Ballot::INITIAL.successor(3), Ballot { seqno: 1, proposer: 1 });
        assert_eq!(Ballot { seqno: 1, proposer: 2 }.successor(3), Ballot { seqno: 2, proposer: 0 });
        assert_eq!(Ballot { seqno: u64::MAX, proposer: 2 }.successor(3).seqno, u64::MAX);
    }
}
