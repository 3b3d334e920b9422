//! What a replica shows of itself: the [`Status`] summary operators and stats lines read,
//! and read-only access to each role for checkers and tests.

use super::Replica;
use crate::endpoint::Endpoint;
use crate::rsl::acceptor::Acceptor;
use crate::rsl::app::App;
use crate::rsl::ballot::Ballot;
use crate::rsl::config::RslConfig;
use crate::rsl::election::Election;
use crate::rsl::executor::Executor;
use crate::rsl::journal::Journal;
use crate::rsl::learner::Learner;
use crate::rsl::proposer::{Phase, Proposer};
use crate::rsl::reads::Reads;
use crate::rsl::retained::Retained;
use crate::rsl::snapshot::Frozen;
use crate::rsl::state_transfer::Transfer;
use crate::stats::Stats;

/// A summary of a replica's state for logs, stats lines, tests, and operators: a replica
/// sends it in answer to [`RslMsg::StatusRequest`](crate::rsl::RslMsg::StatusRequest) (`fleet rsl status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Status {
    /// The view the replica is in.
    pub view: Ballot,
    /// The proposer's phase.
    pub phase: Phase,
    /// True if this replica leads the current view and is in phase 2.
    pub is_leader: bool,
    /// Operations executed.
    pub ops_complete: u64,
    /// Next operation number the proposer will use.
    pub next_opn: u64,
    /// The acceptor's truncation point.
    pub log_truncation_point: u64,
    /// Requests queued at the proposer.
    pub queued: usize,
    /// The acceptor's highest promised ballot.
    pub max_bal: Ballot,
    /// Rejoining after a start without state: not promising or voting yet.
    pub rejoining: bool,
    /// Queries waiting to be answered without a log write (leader only).
    pub pending_queries: usize,
    /// Durable mode: promises, votes and executed state are persisted before they count.
    pub durable: bool,
    /// The membership epoch the replica is in ([`crate::rsl::membership`]).
    pub epoch: u64,
    /// The replica's epoch ended without it: it only redirects.
    pub retired: bool,
    /// The most replicas this build holds (`R`, at most 255): a membership of more is
    /// refused by it ([`crate::rsl::membership::Refusal::Size`]) while larger builds accept,
    /// so a cluster of mixed builds must not grow past its smallest member's bound.
    pub max_replicas: u8,
    /// A learner: following its epoch's log before it is a member (not in any quorum).
    pub learning: bool,
}

impl<
        A: App,
        const R: usize,
        const W: usize,
        const D: usize,
        const QB: usize,
        const C: usize,
        const RB: usize,
        const TB: usize,
    > Replica<A, R, W, D, QB, C, RB, TB>
{
    /// The learner's slots in use as it decides from them: operation, senders and batch,
    /// wherever the batch is held (a copy, or this replica's vote; `None` while that vote is
    /// not there). Equality and hashing use this, so that what slots no longer in use still
    /// hold (the senders of an operation executed, say), and whether a batch is a copy or
    /// the vote, do not make states differ.
    pub(super) fn learned(&self) -> impl Iterator<Item = (u64, u64, Option<&[u8]>)> + '_ {
        let bal = self.learner.max_ballot_seen;
        self.learner.slots().map(move |s| (s.opn, s.senders, s.batch_with(self.acceptor.vote_at(s.opn), bal)))
    }

    /// Counters of what this replica received, sent and refused.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// A summary of the replica's state.
    pub fn status(&self) -> Status {
        Status {
            view: self.election.current_view,
            phase: self.proposer.phase,
            is_leader: self.leading(),
            ops_complete: self.executor.ops_complete,
            next_opn: self.proposer.next_opn,
            log_truncation_point: self.acceptor.log_truncation_point,
            queued: self.proposer.queued(),
            max_bal: self.acceptor.max_bal,
            rejoining: self.rejoin.is_some(),
            pending_queries: self.reads.pending(),
            durable: self.journal.durable,
            epoch: self.config.epoch,
            retired: self.retired.is_some(),
            max_replicas: u8::try_from(R).unwrap_or(u8::MAX),
            learning: self.learning.is_some(),
        }
    }

    /// The application (read-only: it changes only by executing decided batches).
    pub fn app(&self) -> &A {
        &self.executor.app
    }

    /// The configuration.
    pub fn config(&self) -> &RslConfig<R> {
        &self.config
    }

    /// This replica's index.
    pub fn id(&self) -> usize {
        self.me
    }

    /// The acceptor role (for checkers and tests).
    pub fn acceptor(&self) -> &Acceptor<R, W, D> {
        &self.acceptor
    }

    /// The learner role (for checkers and tests).
    pub fn learner(&self) -> &Learner<W, D> {
        &self.learner
    }

    /// The executor role (for checkers and tests).
    pub fn executor(&self) -> &Executor<A, C, RB> {
        &self.executor
    }

    /// The proposer role (for checkers and tests).
    pub fn proposer(&self) -> &Proposer<R, W, D, QB, C> {
        &self.proposer
    }

    /// The election role (for checkers and tests).
    pub fn election(&self) -> &Election<C> {
        &self.election
    }

    /// The state-transfer role (for checkers and tests).
    pub fn transfer(&self) -> &Transfer<A, C, RB> {
        &self.transfer
    }

    /// The frozen point-in-time snapshot: what this replica supplies to lagging replicas,
    /// and what a durable binding persists (clone it to write it elsewhere).
    pub fn frozen(&self) -> &Frozen<A, C, RB> {
        &self.frozen
    }

    /// The retained tail of executed batches (for checkers and tests).
    pub fn retained(&self) -> &Retained<TB> {
        &self.retained
    }

    /// The leader's pending queries and confirmation rounds (for checkers and tests).
    pub fn reads(&self) -> &Reads<R, C> {
        &self.reads
    }

    /// The durable bookkeeping (for checkers and tests).
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The checkpoint this replica reports: operations executed, or in durable mode those
    /// whose effects are durable.
    pub fn checkpoint(&self) -> u64 {
        self.journal.checkpoint(self.executor.ops_complete)
    }

    /// This cluster's identity, carried in every datagram this replica sends.
    pub fn cluster(&self) -> u32 {
        self.cluster
    }

    /// The last peer message refused because it named another cluster: its sender and
    /// that cluster's identity (for a binding to report: the config files differ).
    pub fn last_foreign(&self) -> Option<(Endpoint, u32)> {
        self.last_foreign
    }
}
