//! The learner (IronRSL `Learner.i.dfy`): counts 2b votes per operation and decides on a
//! quorum of votes in one ballot.
//!
//! A 2b names a ballot and an operation, not the batch (IronRSL's carries the batch). The
//! batch of ballot `b` and operation `n` is the one 2a of `b` for `n`: `b`'s leader proposes
//! one batch per operation, and an acceptor refuses a second, different 2a for the same pair
//! ([`crate::rsl::acceptor::Accepted::Conflict`]). This replica's acceptor votes for that 2a
//! when it arrives, so a decided slot takes its batch from the own vote of the learner's
//! ballot ([`Slot::batch_with`]); until that vote is there (a 2a lost or late: the leader's
//! retransmission re-sends it), the slot is decided but waits. When the acceptor is about to
//! drop or replace that vote, the slot copies it ([`Learner::keep_vote`]); a 2a the acceptor
//! does not vote for is kept as a copy too ([`Learner::keep_proposal`]).

use super::acceptor::StoredVote;
use super::ballot::Ballot;

/// 2b votes gathered for one operation in the learner's current ballot.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Slot<const D: usize> {
    /// Operation number.
    pub opn: u64,
    /// Bitmask of replicas whose 2b was received.
    pub senders: u64,
    /// A copy of the batch, taken when the acceptor did not vote for the 2a
    /// ([`Learner::keep_proposal`]) or was about to drop or replace the vote
    /// ([`Learner::keep_vote`]); empty when `from_vote`.
    pub batch: heapless::Vec<u8, D>,
    /// The batch is this replica's own vote for the operation in the learner's ballot (held
    /// by the acceptor, or not yet there), not a copy.
    pub from_vote: bool,
}

/// What the learner made of a 2b.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// Counted.
    Counted,
    /// From an older ballot, or for an operation outside the window: ignored.
    Ignored,
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

    /// Holds a copy of `batch` (at most `D` bytes, checked by the caller).
    fn copy(&mut self, batch: &[u8]) {
        self.batch.clear();
        // Cannot fail: the callers check batch.len() <= D.
        let _ = self.batch.extend_from_slice(batch);
        self.from_vote = false;
    }

    /// The slot's batch: its copy, or, when it refers to the vote, `vote` (this replica's
    /// vote for the operation) if that is of the learner's ballot `bal`; `None` while that
    /// vote is not there.
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
    /// Counts a 2b from replica `sender` (an index `< 64`) for `opn` in ballot `bal`.
    /// `ops_complete` is the executor's position: operations before it are done, and at most
    /// `W` past it are buffered. A slot opened here refers to the own vote of `bal`.
    pub fn process_2b(&mut self, sender: usize, bal: Ballot, opn: u64, ops_complete: u64) -> Learned {
        if bal < self.max_ballot_seen || opn < ops_complete || opn >= ops_complete.saturating_add(W as u64) {
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
            slot.senders |= bit;
        } else {
            // Free, or holding an operation below `ops_complete` (executed): reuse it.
            slot.batch.clear();
            slot.from_vote = true;
            slot.opn = opn;
            slot.senders = bit;
            self.used |= 1 << i;
        }
        Learned::Counted
    }

    /// A 2a of `bal` for `opn` that this replica's acceptor did not vote for (it is
    /// rejoining, or promised a higher ballot): the learner keeps a copy of its batch, so
    /// that it can still execute the operation once 2b from a quorum decide it. Opens the
    /// slot (counting no sender yet) if need be; ignored under the same rules as a 2b.
    pub fn keep_proposal(&mut self, bal: Ballot, opn: u64, batch: &[u8], ops_complete: u64) {
        if bal < self.max_ballot_seen
            || opn < ops_complete
            || opn >= ops_complete.saturating_add(W as u64)
            || batch.len() > D
        {
            return;
        }
        if bal > self.max_ballot_seen {
            self.max_ballot_seen = bal;
            self.used = 0;
        }
        let i = (opn % W as u64) as usize;
        let slot = &mut self.slots[i];
        if self.used & (1 << i) == 0 || slot.opn != opn {
            slot.opn = opn;
            slot.senders = 0;
            self.used |= 1 << i;
        }
        slot.copy(batch);
    }

    /// The acceptor is about to drop or replace its vote `batch` for `opn` in `bal`: a slot
    /// that refers to it takes a copy first. (A 2a far ahead slides the acceptor's window
    /// past votes not yet executed, and one of a higher ballot replaces a vote; without the
    /// copy, the slot would wait for a vote that never comes back, and the replica waited for
    /// catch-up: found by the simulator. Truncation drops no such vote: it stops at the
    /// replica's own checkpoint.)
    pub fn keep_vote(&mut self, opn: u64, bal: Ballot, batch: &[u8]) {
        if W == 0 || bal != self.max_ballot_seen || batch.len() > D {
            return;
        }
        let i = (opn % W as u64) as usize;
        let slot = &mut self.slots[i];
        if self.used & (1 << i) != 0 && slot.opn == opn && slot.from_vote {
            slot.copy(batch);
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
            if (s.senders == 0 && s.from_vote) || s.senders & !known != 0 {
                return Err("learner slot counts no sender (and holds no batch) or an unknown one");
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
    const B1: Ballot = Ballot { seqno: 1, proposer: 0 };
    const B2: Ballot = Ballot { seqno: 2, proposer: 1 };

    fn vote(bal: Ballot, batch: &[u8]) -> StoredVote<16> {
        StoredVote { opn: 0, bal, batch: heapless::Vec::from_slice(batch).unwrap() }
    }

    #[test]
    fn learner_decides_on_a_quorum_of_one_ballot() {
        let mut l = L::default();
        l.process_2b(0, B1, 0, 0);
        assert!(l.decided(0, 2).is_none());
        l.process_2b(0, B1, 0, 0);
        assert!(l.decided(0, 2).is_none(), "a duplicate 2b does not count twice");
        l.process_2b(2, B1, 0, 0);
        assert!(l.decided(0, 2).unwrap().from_vote);
    }

    #[test]
    fn learner_resets_on_a_higher_ballot_and_ignores_lower_ones() {
        let mut l = L::default();
        l.process_2b(0, B1, 0, 0);
        l.process_2b(1, B2, 0, 0);
        assert_eq!(l.max_ballot_seen, B2);
        assert_eq!(l.process_2b(2, B1, 0, 0), Learned::Ignored);
        assert!(l.decided(0, 2).is_none(), "the vote of B1 no longer counts");
        l.process_2b(2, B2, 0, 0);
        assert_eq!(l.decided(0, 2).unwrap().senders, 0b110);
    }

    #[test]
    fn learner_ignores_operations_outside_its_window() {
        let mut l = L::default();
        assert_eq!(l.process_2b(0, B1, 4, 5), Learned::Ignored, "already executed");
        assert_eq!(l.process_2b(0, B1, 9, 5), Learned::Ignored, "beyond 5 + W");
        assert_eq!(l.process_2b(0, B1, 8, 5), Learned::Counted);
        l.forget_below(9);
        assert_eq!(l.slots().count(), 0);
    }

    #[test]
    fn lookups_see_only_held_operations_of_the_exact_number() {
        let mut l = L::default();
        for opn in 0..4 {
            l.process_2b(0, B1, opn, 0);
            l.process_2b(1, B1, opn, 0);
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
        ok.process_2b(0, B1, 1, 0);
        ok.process_2b(2, B1, 2, 0);
        assert_eq!(ok.invariant(0, 3), Ok(()));
        assert!(ok.invariant(2, 3).is_err(), "holds opn 1, executed already");
        assert!(ok.invariant(0, 2).is_err(), "replica 2 is not in a cluster of 2");
        let mut silent = ok.clone();
        silent.slots[1].senders = 0;
        assert!(silent.invariant(0, 3).is_err(), "a held slot counts no sender and holds no batch");
        let mut misplaced = ok.clone();
        misplaced.slots[2].opn = 3;
        assert!(misplaced.invariant(0, 3).is_err(), "opn 3 in slot 2");
        let mut beyond = ok.clone();
        beyond.slots[1].opn = 5;
        assert!(beyond.invariant(0, 3).is_err(), "opn 5 is past the window of 4");
        let mut both = ok.clone();
        let _ = both.slots[1].batch.push(1);
        assert!(both.invariant(0, 3).is_err(), "a slot that refers to the vote holds no copy");
    }

    #[test]
    fn a_decided_slot_takes_the_own_vote_of_its_ballot_and_waits_without_it() {
        let mut l = L::default();
        l.process_2b(1, B2, 0, 0);
        l.process_2b(2, B2, 0, 0);
        let slot = l.decided(0, 2).unwrap();
        assert_eq!(slot.batch_with(None, B2), None, "no vote yet: the slot waits");
        assert_eq!(slot.batch_with(Some(&vote(B1, b"old")), B2), None, "a vote of another ballot is not it");
        assert_eq!(slot.batch_with(Some(&vote(B2, b"v")), B2), Some(&b"v"[..]));
    }

    #[test]
    fn a_proposal_not_voted_for_is_kept_and_decided_by_later_2bs() {
        let mut l = L::default();
        l.keep_proposal(B1, 1, b"v", 0);
        let slot = l.slots().next().unwrap();
        assert!(slot.senders == 0 && !slot.from_vote && &slot.batch[..] == b"v");
        assert_eq!(l.invariant(0, 3), Ok(()), "a kept proposal counts no sender yet");
        assert!(l.decided(1, 2).is_none());
        l.process_2b(0, B1, 1, 0);
        l.process_2b(2, B1, 1, 0);
        assert_eq!(l.decided(1, 2).unwrap().batch_with(None, B1), Some(&b"v"[..]), "the copy, not a vote");
        // 2bs first, then the proposal: the slot opened by the 2b takes the copy.
        l.process_2b(0, B1, 2, 0);
        l.keep_proposal(B1, 2, b"w", 0);
        assert_eq!(&l.decided(2, 1).unwrap().batch[..], b"w");
        // Outside the window, from an older ballot, or too large: ignored.
        l.keep_proposal(B1, 4, b"x", 0);
        l.keep_proposal(B1, 3, &[1u8; 17], 0);
        assert_eq!(l.slots().count(), 2);
        l.keep_proposal(B2, 3, b"y", 0);
        assert_eq!((l.max_ballot_seen, l.slots().count()), (B2, 1), "a higher ballot resets, as a 2b does");
        l.keep_proposal(B1, 0, b"z", 0);
        assert_eq!(l.slots().count(), 1, "an older ballot is ignored");
    }

    #[test]
    fn a_vote_about_to_go_is_copied_into_the_slot_that_refers_to_it() {
        let mut l = L::default();
        l.process_2b(1, B1, 0, 0);
        l.keep_vote(0, B2, b"x");
        l.keep_vote(1, B1, b"x");
        assert!(l.slots().next().unwrap().from_vote, "another ballot or operation: untouched");
        l.keep_vote(0, B1, &[1u8; 17]);
        assert!(l.slots().next().unwrap().from_vote, "larger than a slot: untouched");
        l.keep_vote(0, B1, b"v");
        let slot = l.slots().next().unwrap();
        assert!(!slot.from_vote && &slot.batch[..] == b"v");
        assert_eq!(slot.batch_with(None, B1), Some(&b"v"[..]), "the copy outlives the vote");
        assert_eq!(l.process_2b(2, B1, 0, 0), Learned::Counted, "later 2bs still count");
        assert_eq!(&l.decided(0, 2).unwrap().batch[..], b"v");
        assert_eq!(l.invariant(0, 3), Ok(()));
    }
}
