//! The learner (IronRSL `Learner.i.dfy`): counts 2b votes per operation and decides on a
//! quorum of votes in one ballot.

use super::ballot::Ballot;

/// 2b votes gathered for one operation in the learner's current ballot.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Slot<const D: usize> {
    /// Operation number.
    pub opn: u64,
    /// Bitmask of replicas whose 2b was received.
    pub senders: u64,
    /// The batch voted for (identical in every 2b of one ballot and operation).
    pub batch: heapless::Vec<u8, D>,
}

/// What the learner made of a 2b.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// Counted.
    Counted,
    /// From an older ballot, or for an operation outside the window: ignored.
    Ignored,
    /// A different batch than the other 2b for this operation in this ballot carried:
    /// refused (not counted), as IronRSL's invariants rule it out.
    Conflict,
}

/// Learner state: `W` operations ahead of execution, batches of at most `D` bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Learner<const W: usize, const D: usize> {
    /// The highest ballot any counted 2b carried; votes of lower ballots are discarded.
    pub max_ballot_seen: Ballot,
    /// Slots indexed by `opn % W`; only operations in `[ops_complete, ops_complete + W)`
    /// are held, so no two share a slot. Batches are written in place, never moved.
    slots: [Slot<D>; W],
    /// Bit `i` set when `slots[i]` is in use.
    used: u64,
}

impl<const D: usize> Slot<D> {
    const EMPTY: Slot<D> = Slot { opn: 0, senders: 0, batch: heapless::Vec::new() };
}

impl<const W: usize, const D: usize> Default for Learner<W, D> {
    fn default() -> Self {
        Learner { max_ballot_seen: Ballot::default(), slots: [const { Slot::EMPTY }; W], used: 0 }
    }
}

impl<const W: usize, const D: usize> Learner<W, D> {
    /// Counts a 2b from replica `sender` (an index `< 64`). `ops_complete` is the executor's
    /// position: operations before it are done, and at most `W` past it are buffered.
    pub fn process_2b(&mut self, sender: usize, bal: Ballot, opn: u64, batch: &[u8], ops_complete: u64) -> Learned {
        if bal < self.max_ballot_seen || opn < ops_complete || opn >= ops_complete.saturating_add(W as u64) {
            return Learned::Ignored;
        }
        if batch.len() > D {
            return Learned::Ignored;
        }
        if bal > self.max_ballot_seen {
            // IronRSL: a higher ballot resets what was learned but not yet decided.
            self.max_ballot_seen = bal;
            self.used = 0;
        }
        let bit = 1u64 << (sender % 64);
        let i = (opn % W as u64) as usize;
        let slot = &mut self.slots[i];
        if self.used & (1 << i) != 0 && slot.opn == opn {
            if slot.batch.as_slice() != batch {
                return Learned::Conflict;
            }
            slot.senders |= bit;
        } else {
            // Free, or holding an operation below `ops_complete` (executed): reuse it.
            slot.opn = opn;
            slot.senders = bit;
            slot.batch.clear();
            // Cannot fail: batch.len() <= D was checked above.
            let _ = slot.batch.extend_from_slice(batch);
            self.used |= 1 << i;
        }
        Learned::Counted
    }

    /// The decided batch for `opn`, if a quorum of 2b for it was counted.
    pub fn decided(&self, opn: u64, quorum: usize) -> Option<&Slot<D>> {
        let slot = self.slot(opn)?;
        (slot.senders.count_ones() as usize >= quorum).then_some(slot)
    }

    fn slot(&self, opn: u64) -> Option<&Slot<D>> {
        if W == 0 {
            return None;
        }
        let i = (opn % W as u64) as usize;
        (self.used & (1 << i) != 0 && self.slots[i].opn == opn).then(|| &self.slots[i])
    }

    /// Forgets every operation below `opn` (they have been executed).
    pub fn forget_below(&mut self, opn: u64) {
        for (i, s) in self.slots.iter().enumerate() {
            if s.opn < opn {
                self.used &= !(1 << i);
            }
        }
    }

    /// Operations with at least one counted vote (in slot order).
    pub fn slots(&self) -> impl Iterator<Item = &Slot<D>> + '_ {
        self.slots.iter().enumerate().filter(|(i, _)| self.used & (1 << i) != 0).map(|(_, s)| s)
    }

    /// Local invariants, given the executor's `ops_complete` and the replica count `n`:
    /// slots strictly increasing, none executed already nor beyond the learner's window,
    /// and each counting at least one and only known senders.
    pub fn invariant(&self, ops_complete: u64, n: usize) -> Result<(), &'static str> {
        let known = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
        for (i, s) in self.slots.iter().enumerate() {
            if self.used & (1 << i) == 0 {
                continue;
            }
            if (s.opn % W as u64) as usize != i {
                return Err("learner slot in the wrong ring position");
            }
            if s.opn < ops_complete {
                return Err("learner holds an executed operation");
            }
            if s.opn >= ops_complete.saturating_add(W as u64) {
                return Err("learner holds an operation beyond its window");
            }
            if s.senders == 0 || s.senders & !known != 0 {
                return Err("learner slot counts no sender or an unknown one");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type L = Learner<4, 16>;
    const B1: Ballot = Ballot { seqno: 1, proposer: 0 };
    const B2: Ballot = Ballot { seqno: 2, proposer: 1 };

    #[test]
    fn learner_decides_on_a_quorum_of_one_ballot() {
        let mut l = L::default();
        l.process_2b(0, B1, 0, b"v", 0);
        assert!(l.decided(0, 2).is_none());
        l.process_2b(0, B1, 0, b"v", 0);
        assert!(l.decided(0, 2).is_none(), "a duplicate 2b does not count twice");
        l.process_2b(2, B1, 0, b"v", 0);
        assert_eq!(&l.decided(0, 2).unwrap().batch[..], b"v");
    }

    #[test]
    fn learner_refuses_2b_whose_batch_differs_in_the_same_ballot() {
        let mut l = L::default();
        assert_eq!(l.process_2b(0, B1, 0, b"v", 0), Learned::Counted);
        assert_eq!(l.process_2b(1, B1, 0, b"w", 0), Learned::Conflict);
        assert!(l.decided(0, 2).is_none(), "the conflicting 2b was not counted");
        assert_eq!(l.process_2b(2, B1, 0, b"v", 0), Learned::Counted);
        assert_eq!(&l.decided(0, 2).unwrap().batch[..], b"v");
    }

    #[test]
    fn learner_resets_on_a_higher_ballot_and_ignores_lower_ones() {
        let mut l = L::default();
        l.process_2b(0, B1, 0, b"old", 0);
        l.process_2b(1, B2, 0, b"new", 0);
        assert_eq!(l.process_2b(2, B1, 0, b"old", 0), Learned::Ignored);
        l.process_2b(2, B2, 0, b"new", 0);
        assert_eq!(&l.decided(0, 2).unwrap().batch[..], b"new");
    }

    #[test]
    fn learner_ignores_operations_outside_its_window() {
        let mut l = L::default();
        assert_eq!(l.process_2b(0, B1, 4, b"v", 5), Learned::Ignored, "already executed");
        assert_eq!(l.process_2b(0, B1, 9, b"v", 5), Learned::Ignored, "beyond 5 + W");
        assert_eq!(l.process_2b(0, B1, 8, b"v", 5), Learned::Counted);
        l.forget_below(9);
        assert_eq!(l.slots().count(), 0);
    }

    #[test]
    fn a_batch_larger_than_the_slot_is_ignored_and_one_that_fits_exactly_is_counted() {
        let mut l = L::default();
        assert_eq!(l.process_2b(0, B1, 0, &[1u8; 17], 0), Learned::Ignored, "17 > D = 16");
        assert_eq!(l.max_ballot_seen, Ballot::default(), "an ignored 2b raises nothing");
        assert_eq!(l.process_2b(0, B1, 0, &[1u8; 16], 0), Learned::Counted);
    }

    #[test]
    fn lookups_see_only_held_operations_of_the_exact_number() {
        let mut l = L::default();
        for opn in 0..4 {
            l.process_2b(0, B1, opn, b"v", 0);
            l.process_2b(1, B1, opn, b"v", 0);
        }
        assert_eq!(l.slots().count(), 4, "every held slot is listed");
        assert!(l.decided(4, 2).is_none(), "opn 4 shares opn 0's slot but is not held");
        l.forget_below(2);
        assert!(l.decided(1, 2).is_none(), "forgotten");
        assert!(l.decided(2, 2).is_some(), "forget_below(2) keeps opn 2");
        assert_eq!(l.slots().map(|s| s.opn).collect::<heapless::Vec<u64, 4>>()[..], [2, 3]);
    }

    #[test]
    fn invariant_rejects_each_broken_clause() {
        let mut ok = L::default();
        ok.process_2b(0, B1, 1, b"v", 0);
        ok.process_2b(2, B1, 2, b"v", 0);
        assert_eq!(ok.invariant(0, 3), Ok(()));
        assert!(ok.invariant(2, 3).is_err(), "holds opn 1, executed already");
        assert!(ok.invariant(0, 2).is_err(), "replica 2 is not in a cluster of 2");
        let mut silent = ok.clone();
        silent.slots[1].senders = 0;
        assert!(silent.invariant(0, 3).is_err(), "a held slot counts no sender");
        let mut misplaced = ok.clone();
        misplaced.slots[2].opn = 3;
        assert!(misplaced.invariant(0, 3).is_err(), "opn 3 in slot 2");
        let mut beyond = ok.clone();
        beyond.slots[1].opn = 5;
        assert!(beyond.invariant(0, 3).is_err(), "opn 5 is past the window of 4");
    }
}
