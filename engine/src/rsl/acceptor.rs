//! The acceptor (IronRSL `Acceptor.i.dfy`): promises, votes, the sliding log window,
//! checkpoints and the truncation point.

use super::ballot::Ballot;

/// A vote the acceptor holds: it voted for `batch` at operation `opn` in ballot `bal`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StoredVote<const D: usize> {
    /// Operation number.
    pub opn: u64,
    /// Ballot of the vote.
    pub bal: Ballot,
    /// Encoded batch.
    pub batch: heapless::Vec<u8, D>,
}

/// What a 2a did to the acceptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// The acceptor voted (or re-voted the same value): broadcast a 2b.
    Voted,
    /// Lower ballot than promised, or below the truncation point: ignored.
    Stale,
    /// A different batch for an operation this acceptor already voted on in the same
    /// ballot: one leader proposes one batch per operation and ballot (IronRSL's
    /// `lemma_2aMessagesFromSameBallotAndOperationMatch`), so a second one comes from a
    /// second leader of the ballot (a misconfigured cluster): refused, nothing changes.
    Conflict,
}

/// Acceptor state for a cluster of at most `R` replicas, a window of `W` votes and
/// batches of at most `D` bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Acceptor<const R: usize, const W: usize, const D: usize> {
    /// The highest ballot promised or voted in.
    pub max_bal: Ballot,
    /// Vote slots, indexed by `opn % W`: every vote held is at an operation number in
    /// `[log_truncation_point, log_truncation_point + max_log_length)`, a run of at most `W`
    /// consecutive numbers, so no two share a slot. Votes are written in place and never
    /// moved (a batch buffer is up to 64 KiB on servers).
    slots: [StoredVote<D>; W],
    /// Bit `i` set when `slots[i]` holds a vote.
    used: u64,
    /// Highest executed-operation count each replica has reported (IronRSL's
    /// `last_checkpointed_operation`).
    last_checkpointed: heapless::Vec<u64, R>,
    /// Votes below this operation number have been discarded.
    pub log_truncation_point: u64,
    /// Counts 1b replies so the proposer can tell chunks of different replies apart.
    replies_sent: u64,
}

impl<const D: usize> StoredVote<D> {
    /// An empty slot.
    pub const EMPTY: StoredVote<D> =
        StoredVote { opn: 0, bal: Ballot { seqno: 0, proposer: 0 }, batch: heapless::Vec::new() };
}

impl<const R: usize, const W: usize, const D: usize> Acceptor<R, W, D> {
    /// A fresh acceptor in a cluster of `n` replicas (`n <= R`, checked by config validation).
    pub fn new(n: usize) -> Self {
        let mut last_checkpointed = heapless::Vec::new();
        // `n <= R` is a validated configuration invariant; extra entries are simply absent.
        let _ = last_checkpointed.resize(n.min(R), 0);
        Acceptor {
            max_bal: Ballot::default(),
            slots: [const { StoredVote::EMPTY }; W],
            used: 0,
            last_checkpointed,
            log_truncation_point: 0,
            replies_sent: 0,
        }
    }

    /// Phase 1: promise `bal` if it is at least the highest ballot seen. Equal ballots are
    /// re-promised so a proposer whose 1b chunks were lost can ask again.
    pub fn promise(&mut self, bal: Ballot) -> bool {
        if bal < self.max_bal {
            return false;
        }
        self.max_bal = bal;
        true
    }

    /// A fresh identifier for the 1b reply about to be sent.
    pub fn next_reply_id(&mut self) -> u64 {
        self.replies_sent = self.replies_sent.wrapping_add(1);
        self.replies_sent
    }

    /// Phase 2: vote for `batch` at `opn` in `bal`, then slide the window so that the
    /// truncation point is at least `opn - max_log_length + 1`.
    pub fn accept(&mut self, bal: Ballot, opn: u64, batch: &[u8], max_log_length: u64) -> Accepted {
        // u64::MAX is never a real operation number; refusing it keeps `opn + 1` exact.
        if bal < self.max_bal || opn < self.log_truncation_point || opn == u64::MAX || batch.len() > D || W == 0 {
            return Accepted::Stale;
        }
        if let Some(v) = self.vote_at(opn) {
            if v.bal == bal && v.batch.as_slice() != batch {
                return Accepted::Conflict;
            }
        }
        self.max_bal = bal;
        let floor = (opn + 1).saturating_sub(max_log_length);
        self.truncate(floor);
        // After the slide every held vote is in [truncation point, opn], fewer than
        // max_log_length <= W numbers: the slot of `opn` is free or already holds `opn`.
        let i = (opn % W as u64) as usize;
        debug_assert!(self.used & (1 << i) == 0 || self.slots[i].opn == opn, "acceptor slot collision");
        let slot = &mut self.slots[i];
        slot.opn = opn;
        slot.bal = bal;
        slot.batch.clear();
        // Cannot fail: batch.len() <= D was checked above.
        let _ = slot.batch.extend_from_slice(batch);
        self.used |= 1 << i;
        Accepted::Voted
    }

    /// The last 1b reply id used (durable: see `rsl::durable`).
    pub fn replies_sent(&self) -> u64 {
        self.replies_sent
    }

    /// Recovery: puts back a vote read from durable storage. Unlike [`Acceptor::accept`] it
    /// does not compare with the promise (a compacted log restores the promise first), but
    /// it refuses what no sequence of `accept`s could have produced.
    pub(crate) fn restore_vote(
        &mut self,
        bal: Ballot,
        opn: u64,
        batch: &[u8],
        max_log_length: u64,
    ) -> Result<(), &'static str> {
        if opn < self.log_truncation_point || opn == u64::MAX || batch.len() > D || W == 0 {
            return Err("vote below the truncation point or out of bounds");
        }
        if self.vote_at(opn).is_some_and(|held| held.bal > bal) {
            return Err("a later vote has a lower ballot than an earlier one");
        }
        let promise = self.max_bal.max(bal);
        self.max_bal = Ballot::default();
        let accepted = self.accept(bal, opn, batch, max_log_length);
        self.max_bal = promise;
        match accepted {
            Accepted::Voted => Ok(()),
            Accepted::Stale => Err("vote refused by the acceptor"),
            Accepted::Conflict => Err("two different votes in one ballot for one operation"),
        }
    }

    /// Recovery: raises the promise, truncation point and reply counter to a durable
    /// record's; a record never lowers them (records are written in step order).
    pub(crate) fn restore_header(
        &mut self,
        max_bal: Ballot,
        truncation: u64,
        replies_sent: u64,
    ) -> Result<(), &'static str> {
        if max_bal < self.max_bal || truncation < self.log_truncation_point || replies_sent < self.replies_sent {
            return Err("promise, truncation point or reply counter went down");
        }
        self.max_bal = max_bal;
        self.truncate(truncation);
        self.replies_sent = replies_sent;
        Ok(())
    }

    /// Records a replica's reported checkpoint; checkpoints only move forward.
    pub fn record_checkpoint(&mut self, replica: usize, opn: u64) {
        if let Some(c) = self.last_checkpointed.get_mut(replica) {
            *c = (*c).max(opn);
        }
    }

    /// The checkpoint reported by `replica`.
    pub fn checkpoint_of(&self, replica: usize) -> u64 {
        self.last_checkpointed.get(replica).copied().unwrap_or(0)
    }

    /// The smallest checkpoint any replica has reported.
    pub fn min_checkpoint(&self) -> u64 {
        self.last_checkpointed.iter().copied().min().unwrap_or(0)
    }

    /// The largest checkpoint any replica has reported.
    pub fn max_checkpoint(&self) -> u64 {
        self.last_checkpointed.iter().copied().max().unwrap_or(0)
    }

    /// The quorum-th highest checkpoint: a quorum has executed at least this many
    /// operations, so votes below it are no longer needed by anyone in that quorum.
    pub fn quorum_checkpoint(&self, quorum: usize) -> u64 {
        // The highest checkpoint that `quorum` replicas have reached: no copy and no sort
        // (`R` is small, and `core`'s sort costs a firmware 4.4 KiB of flash); this is asked
        // on every step.
        let reached_by = |c: u64| self.last_checkpointed.iter().filter(|&&d| d >= c).count();
        self.last_checkpointed.iter().copied().filter(|&c| reached_by(c) >= quorum).max().unwrap_or(0)
    }

    /// Raises the truncation point to `opn` (never lowers it) and drops older votes.
    pub fn truncate(&mut self, opn: u64) {
        if opn <= self.log_truncation_point {
            return;
        }
        self.log_truncation_point = opn;
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.opn < opn {
                self.used &= !(1 << i);
            }
        }
    }

    /// The votes held, by increasing operation number.
    pub fn votes(&self) -> impl Iterator<Item = &StoredVote<D>> + Clone + '_ {
        let from = self.log_truncation_point;
        (from..from.saturating_add(W as u64)).filter_map(move |opn| self.vote_at(opn))
    }

    /// Number of votes held.
    pub fn vote_count(&self) -> usize {
        self.used.count_ones() as usize
    }

    /// The vote in slot `i` (`opn % W`), if one is held there.
    pub fn vote_in_slot(&self, i: usize) -> Option<&StoredVote<D>> {
        (i < W && self.used & (1 << i) != 0).then(|| &self.slots[i])
    }

    /// The slot of operation `opn`'s vote.
    pub fn slot_of(opn: u64) -> usize {
        if W == 0 {
            return 0;
        }
        (opn % W as u64) as usize
    }

    /// The vote at `opn`, if held.
    pub fn vote_at(&self, opn: u64) -> Option<&StoredVote<D>> {
        if W == 0 {
            return None;
        }
        let i = (opn % W as u64) as usize;
        (self.used & (1 << i) != 0 && self.slots[i].opn == opn).then(|| &self.slots[i])
    }

    /// Local invariants (checked after every step in debug builds and by the checkers):
    /// votes sorted and unique, none below the truncation point or above `max_bal`, and
    /// all inside one window `[log_truncation_point, log_truncation_point + max_log_length)`.
    /// The truncation point and `max_bal` only grow: see `replica::Monotone`.
    pub fn invariant(&self, max_log_length: u64) -> Result<(), &'static str> {
        for (i, v) in self.slots.iter().enumerate() {
            if self.used & (1 << i) == 0 {
                continue;
            }
            if (v.opn % W as u64) as usize != i {
                return Err("acceptor vote in the wrong slot");
            }
            if v.opn >= self.log_truncation_point.saturating_add(max_log_length) {
                return Err("acceptor holds a vote beyond its window");
            }
            if v.opn < self.log_truncation_point {
                return Err("acceptor holds a vote below its truncation point");
            }
            if v.bal > self.max_bal {
                return Err("acceptor voted above its max ballot");
            }
        }
        if self.vote_count() as u64 > max_log_length {
            return Err("acceptor holds more votes than the log window");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type A = Acceptor<3, 8, 64>;
    const B1: Ballot = Ballot { seqno: 1, proposer: 0 };
    const B2: Ballot = Ballot { seqno: 2, proposer: 1 };

    #[test]
    fn acceptor_rejects_a_lower_ballot() {
        let mut a = A::new(3);
        assert!(a.promise(B2));
        assert!(!a.promise(B1), "1a below the promise");
        assert_eq!(a.accept(B1, 0, b"x", 7), Accepted::Stale, "2a below the promise");
        assert_eq!(a.votes().count(), 0);
        assert_eq!(a.max_bal, B2);
    }

    #[test]
    fn acceptor_refuses_a_second_batch_for_one_operation_in_one_ballot() {
        let mut a = A::new(3);
        assert_eq!(a.accept(B1, 0, b"x", 7), Accepted::Voted);
        assert_eq!(a.accept(B1, 0, b"x", 7), Accepted::Voted, "the same 2a again: re-vote");
        assert_eq!(a.accept(B1, 0, b"y", 7), Accepted::Conflict, "a second leader of B1");
        assert_eq!(&a.vote_at(0).unwrap().batch[..], b"x", "nothing changed");
        assert_eq!(a.accept(B2, 0, b"y", 7), Accepted::Voted, "a higher ballot may propose another");
    }

    #[test]
    fn acceptor_repromises_an_equal_ballot() {
        let mut a = A::new(3);
        assert!(a.promise(B1));
        assert!(a.promise(B1));
    }

    #[test]
    fn accepting_raises_max_bal_and_replaces_the_vote() {
        let mut a = A::new(3);
        assert_eq!(a.accept(B1, 3, b"old", 7), Accepted::Voted);
        assert_eq!(a.accept(B2, 3, b"new", 7), Accepted::Voted);
        assert_eq!(a.max_bal, B2);
        assert_eq!(a.vote_count(), 1);
        assert_eq!(&a.vote_at(3).unwrap().batch[..], b"new");
        assert!(a.invariant(7).is_ok());
    }

    #[test]
    fn accepting_slides_the_window_to_max_log_length() {
        let mut a = A::new(3);
        for opn in 0..10 {
            assert_eq!(a.accept(B1, opn, b"v", 4), Accepted::Voted);
        }
        assert_eq!(a.log_truncation_point, 6, "10 - 4");
        assert_eq!(a.votes().map(|v| v.opn).min(), Some(6));
        assert_eq!(a.votes().map(|v| v.opn).max(), Some(9));
        assert_eq!(a.accept(B1, 5, b"v", 4), Accepted::Stale, "below the truncation point");
        assert!(a.invariant(4).is_ok());
    }

    #[test]
    fn truncation_uses_the_quorum_th_highest_checkpoint() {
        let mut a = A::new(3);
        a.record_checkpoint(0, 9);
        a.record_checkpoint(1, 4);
        a.record_checkpoint(2, 6);
        assert_eq!(a.quorum_checkpoint(2), 6, "two replicas have executed at least 6");
        a.record_checkpoint(1, 2);
        assert_eq!(a.checkpoint_of(1), 4, "checkpoints never move back");
        assert_eq!(a.min_checkpoint(), 4);
    }

    #[test]
    fn the_quorum_checkpoint_is_the_quorum_th_highest_with_ties() {
        let mut rng = crate::test_rng::TestRng(0x0123_4567_89ab_cdef);
        for _ in 0..2_000 {
            let n = 1 + rng.below(5) as usize;
            let mut a: Acceptor<5, 8, 64> = Acceptor::new(n);
            let mut reported = [0u64; 5];
            for (r, c) in reported.iter_mut().enumerate().take(n) {
                *c = rng.below(4);
                a.record_checkpoint(r, *c);
            }
            let mut sorted = reported;
            sorted[..n].sort_unstable_by(|x, y| y.cmp(x));
            for quorum in 0..=n + 1 {
                let expected = sorted[..n].get(quorum.saturating_sub(1)).copied().unwrap_or(0);
                assert_eq!(a.quorum_checkpoint(quorum), expected, "{:?}, quorum {quorum}", &reported[..n]);
            }
        }
    }

    #[test]
    fn truncation_point_is_monotone_and_drops_old_votes() {
        let mut a = A::new(3);
        for opn in 0..4 {
            a.accept(B1, opn, b"v", 7);
        }
        a.truncate(2);
        assert_eq!(a.votes().map(|v| v.opn).collect::<heapless::Vec<u64, 8>>()[..], [2, 3]);
        a.truncate(1);
        assert_eq!(a.log_truncation_point, 2);
    }

    #[test]
    fn the_largest_operation_number_does_not_overflow() {
        let mut a = A::new(3);
        assert_eq!(a.accept(B1, u64::MAX, b"v", 7), Accepted::Stale);
        assert_eq!(a.accept(B1, u64::MAX - 1, b"v", 7), Accepted::Voted);
        assert_eq!(a.log_truncation_point, u64::MAX - 7);
        assert!(a.invariant(7).is_ok());
    }

    #[test]
    fn a_batch_larger_than_the_slot_is_refused_and_one_that_fits_exactly_is_kept() {
        let mut a = A::new(3);
        assert_eq!(a.accept(B1, 0, &[7u8; 65], 7), Accepted::Stale, "65 > D = 64");
        assert_eq!(a.vote_count(), 0);
        assert_eq!(a.max_bal, Ballot::default(), "a refused vote raises nothing");
        assert_eq!(a.accept(B1, 0, &[7u8; 64], 7), Accepted::Voted);
        assert_eq!(a.vote_at(0).map(|v| v.batch.len()), Some(64));
    }

    #[test]
    fn invariant_catches_a_vote_above_max_bal() {
        let mut a = A::new(3);
        a.accept(B2, 0, b"v", 7);
        a.max_bal = B1;
        assert!(a.invariant(7).is_err());
    }

    #[test]
    fn invariant_rejects_each_broken_clause() {
        let mut ok = A::new(3);
        for opn in 0..3 {
            ok.accept(B1, opn, b"v", 4);
        }
        assert_eq!(ok.invariant(4), Ok(()));
        assert!(ok.invariant(2).is_err(), "opn 2 is past a window of 2");
        let mut misplaced = ok.clone();
        misplaced.slots[2].opn = 11;
        assert!(misplaced.invariant(16).is_err(), "opn 11 in slot 2");
        let mut below = ok.clone();
        below.log_truncation_point = 2;
        assert!(below.invariant(4).is_err(), "votes 0 and 1 below the truncation point");
        let mut above = ok.clone();
        above.slots[1].bal = B2;
        assert!(above.invariant(4).is_err(), "slot 1 voted above max_bal");
    }
}
