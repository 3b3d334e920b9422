//! The learner (IronRSL `Learner.i.dfy`): counts 2b votes per operation and decides on a
//! quorum of votes in one ballot.

use super::acceptor::StoredVote;
use super::ballot::Ballot;

/// 2b votes gathered for one operation in the learner's current ballot.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Slot<const D: usize> {
    /// Operation number.
    pub opn: u64,
    /// Bitmask of replicas whose 2b was received.
    pub senders: u64,
    /// The batch voted for (identical in every 2b of one ballot and operation); empty when
    /// `from_vote`.
    pub batch: heapless::Vec<u8, D>,
    /// The batch is this replica's own vote for the operation in the learner's ballot, which
    /// holds it: the 2b that opened the slot matched that vote, so it was not copied. (A
    /// batch is up to 64 KiB on servers; copying it into every replica's learner and
    /// comparing it with every later 2b was a fifth of the engine bench's cache misses.)
    pub from_vote: bool,
}

/// How a 2b's batch compares with this replica's own vote for the same operation in the same
/// ballot (which the caller compares, once per 2b).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnVote {
    /// The acceptor voted for this very batch in this ballot.
    Same,
    /// The acceptor voted for another batch in this ballot: one of the two comes from a
    /// second leader of the ballot (see [`crate::rsl::acceptor::Accepted::Conflict`]).
    Differs,
    /// The acceptor holds no vote for the operation in this ballot.
    Absent,
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
    const EMPTY: Slot<D> = Slot { opn: 0, senders: 0, batch: heapless::Vec::new(), from_vote: false };

    /// The slot's batch: its copy, or, when it refers to the vote, `vote` (this replica's
    /// vote for the operation) if that is of the learner's ballot `bal`; `None` if the vote
    /// it refers to is gone.
    pub fn batch_with<'a>(&'a self, vote: Option<&'a StoredVote<D>>, bal: Ballot) -> Option<&'a [u8]> {
        match (self.from_vote, vote) {
            (false, _) => Some(self.batch.as_slice()),
            (true, Some(vote)) if vote.bal == bal => Some(vote.batch.as_slice()),
            (true, _) => None,
        }
    }
}

impl<const W: usize, const D: usize> Default for Learner<W, D> {
    fn default() -> Self {
        Learner { max_ballot_seen: Ballot::default(), slots: [const { Slot::EMPTY }; W], used: 0 }
    }
}

impl<const W: usize, const D: usize> Learner<W, D> {
    /// Counts a 2b from replica `sender` (an index `< 64`). `ops_complete` is the executor's
    /// position: operations before it are done, and at most `W` past it are buffered. `own`
    /// is how `batch` compares with this replica's own vote of the same ballot: a slot
    /// opened by a 2b that matches it refers to the vote instead of copying the batch, and
    /// later 2bs are checked against the vote through their own `own`.
    pub fn process_2b(
        &mut self,
        sender: usize,
        bal: Ballot,
        opn: u64,
        batch: &[u8],
        ops_complete: u64,
        own: OwnVote,
    ) -> Learned {
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
            let agrees = match (slot.from_vote, own) {
                (false, _) => slot.batch.as_slice() == batch,
                (true, OwnVote::Same) => true,
                (true, OwnVote::Differs) => false,
                // The vote the slot refers to was replaced or truncated: this 2b cannot be
                // compared with the slot's batch, so it is not counted.
                (true, OwnVote::Absent) => return Learned::Ignored,
            };
            if !agrees {
                return Learned::Conflict;
            }
            slot.senders |= bit;
        } else {
            // Free, or holding an operation below `ops_complete` (executed): reuse it.
            slot.batch.clear();
            match own {
                OwnVote::Differs => return Learned::Conflict,
                OwnVote::Same => slot.from_vote = true,
                OwnVote::Absent => {
                    slot.from_vote = false;
                    // Cannot fail: batch.len() <= D was checked above.
                    let _ = slot.batch.extend_from_slice(batch);
                }
            }
            slot.opn = opn;
            slot.senders = bit;
            self.used |= 1 << i;
        }
        Learned::Counted
    }

    /// The acceptor is about to drop or replace its vote `batch` for `opn` in `bal`: a slot
    /// that refers to it takes a copy first. (A 2a far ahead slides the acceptor's window
    /// past votes not yet executed, and one of a higher ballot replaces a vote; without the
    /// copy, the slot could no longer count the 2bs still arriving for it, and the replica
    /// waited for catch-up: found by the simulator. Truncation drops no such vote: it stops
    /// at the replica's own checkpoint.)
    pub fn keep_vote(&mut self, opn: u64, bal: Ballot, batch: &[u8]) {
        if W == 0 || bal != self.max_ballot_seen || batch.len() > D {
            return;
        }
        let i = (opn % W as u64) as usize;
        let slot = &mut self.slots[i];
        if self.used & (1 << i) != 0 && slot.opn == opn && slot.from_vote {
            slot.batch.clear();
            // Cannot fail: batch.len() <= D was checked above.
            let _ = slot.batch.extend_from_slice(batch);
            slot.from_vote = false;
        }
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
            if s.from_vote && !s.batch.is_empty() {
                return Err("learner slot both copies its batch and refers to the vote");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type L = Learner<4, 16>;
    const A: OwnVote = OwnVote::Absent;
    const B1: Ballot = Ballot { seqno: 1, proposer: 0 };
    const B2: Ballot = Ballot { seqno: 2, proposer: 1 };

    #[test]
    fn learner_decides_on_a_quorum_of_one_ballot() {
        let mut l = L::default();
        l.process_2b(0, B1, 0, b"v", 0, A);
        assert!(l.decided(0, 2).is_none());
        l.process_2b(0, B1, 0, b"v", 0, A);
        assert!(l.decided(0, 2).is_none(), "a duplicate 2b does not count twice");
        l.process_2b(2, B1, 0, b"v", 0, A);
        assert_eq!(&l.decided(0, 2).unwrap().batch[..], b"v");
    }

    #[test]
    fn learner_refuses_2b_whose_batch_differs_in_the_same_ballot() {
        let mut l = L::default();
        assert_eq!(l.process_2b(0, B1, 0, b"v", 0, A), Learned::Counted);
        assert_eq!(l.process_2b(1, B1, 0, b"w", 0, A), Learned::Conflict);
        assert!(l.decided(0, 2).is_none(), "the conflicting 2b was not counted");
        assert_eq!(l.process_2b(2, B1, 0, b"v", 0, A), Learned::Counted);
        assert_eq!(&l.decided(0, 2).unwrap().batch[..], b"v");
    }

    #[test]
    fn learner_resets_on_a_higher_ballot_and_ignores_lower_ones() {
        let mut l = L::default();
        l.process_2b(0, B1, 0, b"old", 0, A);
        l.process_2b(1, B2, 0, b"new", 0, A);
        assert_eq!(l.process_2b(2, B1, 0, b"old", 0, A), Learned::Ignored);
        l.process_2b(2, B2, 0, b"new", 0, A);
        assert_eq!(&l.decided(0, 2).unwrap().batch[..], b"new");
    }

    #[test]
    fn learner_ignores_operations_outside_its_window() {
        let mut l = L::default();
        assert_eq!(l.process_2b(0, B1, 4, b"v", 5, A), Learned::Ignored, "already executed");
        assert_eq!(l.process_2b(0, B1, 9, b"v", 5, A), Learned::Ignored, "beyond 5 + W");
        assert_eq!(l.process_2b(0, B1, 8, b"v", 5, A), Learned::Counted);
        l.forget_below(9);
        assert_eq!(l.slots().count(), 0);
    }

    #[test]
    fn a_batch_larger_than_the_slot_is_ignored_and_one_that_fits_exactly_is_counted() {
        let mut l = L::default();
        assert_eq!(l.process_2b(0, B1, 0, &[1u8; 17], 0, A), Learned::Ignored, "17 > D = 16");
        assert_eq!(l.max_ballot_seen, Ballot::default(), "an ignored 2b raises nothing");
        assert_eq!(l.process_2b(0, B1, 0, &[1u8; 16], 0, A), Learned::Counted);
    }

    #[test]
    fn lookups_see_only_held_operations_of_the_exact_number() {
        let mut l = L::default();
        for opn in 0..4 {
            l.process_2b(0, B1, opn, b"v", 0, A);
            l.process_2b(1, B1, opn, b"v", 0, A);
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
        ok.process_2b(0, B1, 1, b"v", 0, A);
        ok.process_2b(2, B1, 2, b"v", 0, A);
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

    #[test]
    fn a_2b_matching_the_own_vote_is_not_copied_and_later_ones_are_checked_against_the_vote() {
        let mut l = L::default();
        assert_eq!(l.process_2b(0, B1, 0, b"v", 0, OwnVote::Same), Learned::Counted);
        let slot = l.slots().next().unwrap();
        assert!(slot.from_vote && slot.batch.is_empty(), "refers to the vote, copies nothing");
        assert_eq!(l.process_2b(1, B1, 0, b"w", 0, OwnVote::Differs), Learned::Conflict);
        assert_eq!(l.process_2b(1, B1, 0, b"v", 0, OwnVote::Absent), Learned::Ignored, "the vote is gone");
        assert!(l.decided(0, 2).is_none(), "neither was counted");
        assert_eq!(l.process_2b(2, B1, 0, b"v", 0, OwnVote::Same), Learned::Counted);
        assert!(l.decided(0, 2).unwrap().from_vote);
        assert_eq!(l.invariant(0, 3), Ok(()));
    }

    #[test]
    fn a_first_2b_that_differs_from_the_own_vote_opens_nothing_and_a_copied_slot_compares_bytes() {
        let mut l = L::default();
        assert_eq!(l.process_2b(0, B1, 0, b"w", 0, OwnVote::Differs), Learned::Conflict);
        assert_eq!(l.slots().count(), 0);
        assert_eq!(l.process_2b(0, B1, 1, b"v", 0, A), Learned::Counted);
        assert_eq!(l.process_2b(1, B1, 1, b"v", 0, OwnVote::Same), Learned::Counted, "the copy is compared");
        let slot = l.decided(1, 2).unwrap();
        assert!(!slot.from_vote && &slot.batch[..] == b"v");
        let mut both = l.clone();
        both.slots[1].from_vote = true;
        assert!(both.invariant(0, 3).is_err(), "a slot that refers to the vote holds no copy");
    }

    #[test]
    fn a_vote_about_to_go_is_copied_into_the_slot_that_refers_to_it() {
        let mut l = L::default();
        l.process_2b(1, B1, 0, b"v", 0, OwnVote::Same);
        l.keep_vote(0, B2, b"x");
        l.keep_vote(1, B1, b"x");
        assert!(l.slots().next().unwrap().from_vote, "another ballot or operation: untouched");
        l.keep_vote(0, B1, b"v");
        let slot = l.slots().next().unwrap();
        assert!(!slot.from_vote && &slot.batch[..] == b"v");
        assert_eq!(l.process_2b(2, B1, 0, b"v", 0, OwnVote::Absent), Learned::Counted, "compared with the copy");
        assert_eq!(&l.decided(0, 2).unwrap().batch[..], b"v");
    }
}
