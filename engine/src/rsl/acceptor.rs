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
}

/// Acceptor state for a cluster of at most `R` replicas, a window of `W` votes and
/// batches of at most `D` bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Acceptor<const R: usize, const W: usize, const D: usize> {
    /// The highest ballot promised or voted in.
    pub max_bal: Ballot,
    /// Votes at operation numbers `>= log_truncation_point`, sorted by `opn`.
    votes: heapless::Vec<StoredVote<D>, W>,
    /// Highest executed-operation count each replica has reported (IronRSL's
    /// `last_checkpointed_operation`).
    last_checkpointed: heapless::Vec<u64, R>,
    /// Votes below this operation number have been discarded.
    pub log_truncation_point: u64,
    /// Counts 1b replies so the proposer can tell chunks of different replies apart.
    replies_sent: u64,
}

impl<const R: usize, const W: usize, const D: usize> Acceptor<R, W, D> {
    /// A fresh acceptor in a cluster of `n` replicas (`n <= R`, checked by config validation).
    pub fn new(n: usize) -> Self {
        let mut last_checkpointed = heapless::Vec::new();
        // `n <= R` is a validated configuration invariant; extra entries are simply absent.
        let _ = last_checkpointed.resize(n.min(R), 0);
        Acceptor {
            max_bal: Ballot::default(),
            votes: heapless::Vec::new(),
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
        if bal < self.max_bal || opn < self.log_truncation_point {
            return Accepted::Stale;
        }
        let Ok(batch) = heapless::Vec::from_slice(batch) else { return Accepted::Stale };
        self.max_bal = bal;
        let floor = (opn + 1).saturating_sub(max_log_length);
        self.truncate(floor);
        match self.votes.binary_search_by_key(&opn, |v| v.opn) {
            Ok(i) => self.votes[i] = StoredVote { opn, bal, batch },
            Err(i) => {
                // Room is guaranteed: every vote lies in [truncation point, truncation
                // point + max_log_length) and max_log_length <= W (config validation).
                if self.votes.insert(i, StoredVote { opn, bal, batch }).is_err() {
                    debug_assert!(false, "acceptor window overflow");
                    return Accepted::Stale;
                }
            }
        }
        Accepted::Voted
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

    /// The quorum-th highest checkpoint: a quorum has executed at least this many
    /// operations, so votes below it are no longer needed by anyone in that quorum.
    pub fn quorum_checkpoint(&self, quorum: usize) -> u64 {
        let mut sorted = self.last_checkpointed.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        sorted.get(quorum.saturating_sub(1)).copied().unwrap_or(0)
    }

    /// Raises the truncation point to `opn` (never lowers it) and drops older votes.
    pub fn truncate(&mut self, opn: u64) {
        if opn <= self.log_truncation_point {
            return;
        }
        self.log_truncation_point = opn;
        let keep_from = self.votes.iter().position(|v| v.opn >= opn).unwrap_or(self.votes.len());
        if keep_from > 0 {
            let len = self.votes.len();
            self.votes.rotate_left(keep_from);
            self.votes.truncate(len - keep_from);
        }
    }

    /// The votes held, by increasing operation number.
    pub fn votes(&self) -> &[StoredVote<D>] {
        &self.votes
    }

    /// The vote at `opn`, if held.
    pub fn vote_at(&self, opn: u64) -> Option<&StoredVote<D>> {
        self.votes.binary_search_by_key(&opn, |v| v.opn).ok().map(|i| &self.votes[i])
    }

    /// Local invariants (checked after every step in debug builds and by the checkers):
    /// votes sorted and unique, none below the truncation point or above `max_bal`, and
    /// all inside one window `[log_truncation_point, log_truncation_point + max_log_length)`.
    /// The truncation point and `max_bal` only grow: see `replica::Monotone`.
    pub fn invariant(&self, max_log_length: u64) -> Result<(), &'static str> {
        for pair in self.votes.windows(2) {
            if pair[0].opn >= pair[1].opn {
                return Err("acceptor votes not strictly increasing");
            }
        }
        for v in &self.votes {
            if v.opn < self.log_truncation_point {
                return Err("acceptor holds a vote below its truncation point");
            }
            if v.bal > self.max_bal {
                return Err("acceptor voted above its max ballot");
            }
            if v.opn >= self.log_truncation_point.saturating_add(max_log_length) {
                return Err("acceptor holds a vote beyond its log window");
            }
        }
        if self.votes.len() as u64 > max_log_length {
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
        assert!(a.votes().is_empty());
        assert_eq!(a.max_bal, B2);
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
        assert_eq!(a.votes().len(), 1);
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
        assert_eq!(a.votes().iter().map(|v| v.opn).min(), Some(6));
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
    fn truncation_point_is_monotone_and_drops_old_votes() {
        let mut a = A::new(3);
        for opn in 0..4 {
            a.accept(B1, opn, b"v", 7);
        }
        a.truncate(2);
        assert_eq!(a.votes().iter().map(|v| v.opn).collect::<heapless::Vec<u64, 8>>()[..], [2, 3]);
        a.truncate(1);
        assert_eq!(a.log_truncation_point, 2);
    }

    #[test]
    fn invariant_catches_a_vote_above_max_bal() {
        let mut a = A::new(3);
        a.accept(B2, 0, b"v", 7);
        a.max_bal = B1;
        assert!(a.invariant(7).is_err());
    }
}
