//! Rejoining without state: what a replica that lost (or never had) its durable state must
//! learn before it may promise or vote again.
//!
//! A replica restarted without its acceptor state has forgotten what it promised and voted.
//! Taking part at once could break Paxos: it might vote below a ballot it promised (a 1b it
//! sent before the crash is still counted by that ballot's leader), or answer a 1a without
//! a vote that made a value chosen. So it first asks every other replica, with a nonce of
//! its own incarnation ([`RslMsg::RecoverRequest`](super::msg::RslMsg::RecoverRequest)),
//! for the highest ballot each promised, started or knows, and for an operation number
//! above everything each voted on, proposed, executed or truncated. With every answer in:
//!
//! * if every other replica has no state at all, this is a new cluster: the replica starts
//!   as a new one ([`Outcome::Born`]);
//! * if so many others are rejoining too that a quorum could consist of rejoining replicas
//!   only (in three replicas, any other), keep asking: those replicas know no more than
//!   this one, and losing a quorum's state at once may have lost chosen values, where
//!   waiting is the only safe answer. Otherwise every quorum holds a replica that kept its
//!   state (more than `n - quorum` others answered as members), and the maxima below are
//!   taken over their answers: every value chosen and every phase 1 completed had a
//!   quorum, so one of them saw it. (Two replicas joining a grown cluster at once, in
//!   [`crate::rsl::membership`], rejoin this way side by side.)
//! * otherwise promise the highest ballot `B` reported, and stay silent (no promise, no
//!   vote) until this replica has executed, durably, up to the highest operation number
//!   `J` reported ([`Outcome::CatchUp`]). It then takes part with truncation point
//!   `>= J`: every ballot its old incarnation promised is at most `B`, and every operation
//!   it voted on is below `J`, which a phase 1 never reopens.
//!
//! Why every other replica and not a quorum: a proposer whose ballot the old incarnation
//! promised knows that ballot, but a quorum's answers may not include that proposer, which
//! may then complete phase 1 on the old promise and propose while this replica votes in a
//! lower ballot. See docs/ARCHITECTURE.md for the designs weighed and the liveness
//! condition.

use super::ballot::Ballot;
use crate::time::Instant;

/// One replica's answer to this incarnation's request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Answer {
    /// The answering replica is rejoining itself.
    pub rejoining: bool,
    /// The answering replica has no state (or is new to this incarnation).
    pub fresh: bool,
    /// The answering replica's own nonce while it rejoins, else 0.
    pub incarnation: u64,
    /// The highest ballot it reported.
    pub ballot: Ballot,
    /// The operation number it reported.
    pub next_opn: u64,
}

/// Where rejoining stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Stage {
    /// Asking every other replica.
    Asking,
    /// Every answer is in: promise `ballot`, take part once executed up to `next_opn`.
    CatchingUp {
        /// The highest ballot any replica reported.
        ballot: Ballot,
        /// The highest operation number any replica reported.
        next_opn: u64,
    },
}

/// What an answer changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Still waiting (for answers, or for a replica that rejoins too).
    Waiting,
    /// Every other replica has no state: start as a replica of a new cluster.
    Born,
    /// Every other replica answered and none is rejoining: catch up to `next_opn`.
    CatchUp {
        /// The highest ballot any replica reported.
        ballot: Ballot,
        /// The highest operation number any replica reported.
        next_opn: u64,
    },
}

/// The rejoin state of a replica of at most `R` replicas.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rejoin<const R: usize> {
    /// This incarnation's nonce.
    pub nonce: u64,
    /// Where rejoining stands.
    pub stage: Stage,
    /// The latest answer from each replica to this nonce.
    answers: [Option<Answer>; R],
    /// When to ask again.
    pub retry_at: Instant,
}

impl<const R: usize> Rejoin<R> {
    /// Rejoining with `nonce`, asking first at `now`.
    pub fn new(nonce: u64, now: Instant) -> Self {
        Rejoin { nonce, stage: Stage::Asking, answers: [None; R], retry_at: now }
    }

    /// Replica `from`'s answer to `nonce`, in a cluster of `n` where this replica is `me`.
    /// Answers to another nonce, from this replica itself, or after every answer is in
    /// change nothing.
    pub fn answer(&mut self, me: usize, n: usize, from: usize, nonce: u64, answer: Answer) -> Outcome {
        if nonce != self.nonce || from == me || from >= n.min(R) || self.stage != Stage::Asking {
            return Outcome::Waiting;
        }
        self.answers[from] = Some(answer);
        let others = || (0..n.min(R)).filter(move |&r| r != me);
        if others().all(|r| self.answers[r].is_some_and(|a| a.fresh)) {
            return Outcome::Born;
        }
        let mut ballot = Ballot::default();
        let mut next_opn = 0;
        let mut members = 0;
        for r in others() {
            match self.answers[r] {
                Some(a) if !a.rejoining => {
                    ballot = ballot.max(a.ballot);
                    next_opn = next_opn.max(a.next_opn);
                    members += 1;
                }
                Some(_) => {}
                None => return Outcome::Waiting,
            }
        }
        // Every quorum must include a replica that kept its state: with at most
        // `quorum - 1` replicas rejoining (this one included), every value chosen and every
        // phase 1 completed was seen by one that answered as a member.
        let n = n.min(R);
        if members < n - (n / 2 + 1) + 1 {
            return Outcome::Waiting;
        }
        self.stage = Stage::CatchingUp { ballot, next_opn };
        Outcome::CatchUp { ballot, next_opn }
    }

    /// The answers received so far (for tests and status).
    pub fn answers(&self) -> &[Option<Answer>; R] {
        &self.answers
    }

    /// The incarnation nonce of each replica whose latest answer said it has no state
    /// (0 for none, or for one that was not rejoining).
    pub fn fresh_incarnations(&self) -> [u64; R] {
        self.answers.map(|a| a.filter(|a| a.fresh).map_or(0, |a| a.incarnation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(rejoining: bool, seqno: u64, next_opn: u64) -> Answer {
        Answer { rejoining, fresh: false, incarnation: 0, ballot: Ballot { seqno, proposer: 1 }, next_opn }
    }

    fn fresh(incarnation: u64) -> Answer {
        Answer { rejoining: true, fresh: true, incarnation, ballot: Ballot::default(), next_opn: 0 }
    }

    #[test]
    fn every_other_replica_must_answer_and_the_maxima_are_taken() {
        let mut r = Rejoin::<3>::new(7, Instant::ZERO);
        assert_eq!(r.answer(0, 3, 1, 7, a(false, 4, 10)), Outcome::Waiting, "one of two answers");
        assert_eq!(r.answer(0, 3, 1, 7, a(false, 5, 12)), Outcome::Waiting, "a repeat is not another");
        let done = r.answer(0, 3, 2, 7, a(false, 3, 20));
        assert_eq!(done, Outcome::CatchUp { ballot: Ballot { seqno: 5, proposer: 1 }, next_opn: 20 });
        assert_eq!(r.stage, Stage::CatchingUp { ballot: Ballot { seqno: 5, proposer: 1 }, next_opn: 20 });
        assert_eq!(r.answer(0, 3, 2, 7, a(false, 9, 99)), Outcome::Waiting, "answers after completion");
    }

    #[test]
    fn answers_to_another_nonce_or_from_itself_are_not_taken() {
        let mut r = Rejoin::<3>::new(7, Instant::ZERO);
        assert_eq!(r.answer(0, 3, 1, 6, a(false, 4, 10)), Outcome::Waiting);
        assert_eq!(r.answer(0, 3, 0, 7, a(false, 4, 10)), Outcome::Waiting);
        assert_eq!(r.answer(0, 3, 2, 7, a(false, 4, 10)), Outcome::Waiting, "replica 1 never answered 7");
        assert_eq!(r.answers()[1], None);
        assert_eq!(r.answer(0, 3, 5, 7, a(false, 4, 10)), Outcome::Waiting, "not a replica");
    }

    #[test]
    fn another_rejoining_replica_holds_completion_until_it_answers_as_a_member() {
        let mut r = Rejoin::<3>::new(1, Instant::ZERO);
        assert_eq!(r.answer(2, 3, 0, 1, a(false, 2, 5)), Outcome::Waiting);
        assert_eq!(r.answer(2, 3, 1, 1, a(true, 0, 0)), Outcome::Waiting, "replica 1 rejoins too");
        let done = r.answer(2, 3, 1, 1, a(false, 3, 9));
        assert_eq!(done, Outcome::CatchUp { ballot: Ballot { seqno: 3, proposer: 1 }, next_opn: 9 });
    }

    #[test]
    fn in_five_two_rejoining_at_once_go_on_with_the_three_members_but_three_wait() {
        let mut r = Rejoin::<5>::new(1, Instant::ZERO);
        assert_eq!(r.answer(0, 5, 1, 1, a(true, 0, 0)), Outcome::Waiting);
        assert_eq!(r.answer(0, 5, 2, 1, a(false, 2, 5)), Outcome::Waiting);
        assert_eq!(r.answer(0, 5, 3, 1, a(false, 4, 7)), Outcome::Waiting);
        let done = r.answer(0, 5, 4, 1, a(false, 3, 9));
        assert_eq!(done, Outcome::CatchUp { ballot: Ballot { seqno: 4, proposer: 1 }, next_opn: 9 });
        let mut three = Rejoin::<5>::new(1, Instant::ZERO);
        for (from, rejoining) in [(1, true), (2, true), (3, false), (4, false)] {
            let answer = if rejoining { a(true, 0, 0) } else { a(false, 2, 5) };
            assert_eq!(three.answer(0, 5, from, 1, answer), Outcome::Waiting, "a quorum of three may have none");
        }
    }

    #[test]
    fn a_cluster_of_replicas_without_state_is_born_and_remembers_their_incarnations() {
        let mut r = Rejoin::<3>::new(1, Instant::ZERO);
        assert_eq!(r.answer(0, 3, 1, 1, fresh(11)), Outcome::Waiting);
        assert_eq!(r.answer(0, 3, 2, 1, fresh(12)), Outcome::Born);
        assert_eq!(r.fresh_incarnations(), [0, 11, 12]);
    }

    #[test]
    fn freshness_is_the_latest_answer_not_an_earlier_one() {
        let mut r = Rejoin::<3>::new(1, Instant::ZERO);
        assert_eq!(r.answer(0, 3, 1, 1, fresh(11)), Outcome::Waiting);
        // Replica 1 has state now (it was born, or rejoined from replica 2 meanwhile).
        assert_eq!(r.answer(0, 3, 1, 1, a(false, 1, 1)), Outcome::Waiting);
        assert_eq!(r.answer(0, 3, 2, 1, fresh(12)), Outcome::Waiting, "replica 2 rejoins: wait");
    }
}
