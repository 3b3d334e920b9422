//! `Clone`, `PartialEq`, `Eq`, `Hash` and `Debug` of a replica, for model checkers: equality
//! is protocol-state equality (counters, scratch buffers and per-step flags are left out).

use super::Replica;
use crate::rsl::app::App;

impl<A, const R: usize, const W: usize, const D: usize, const QB: usize, const C: usize, const RB: usize> Clone
    for Replica<A, R, W, D, QB, C, RB>
where
    A: App + Clone,
    A::Staging: Clone,
{
    fn clone(&self) -> Self {
        Replica {
            config: self.config.clone(),
            me: self.me,
            acceptor: self.acceptor.clone(),
            proposer: self.proposer.clone(),
            learner: self.learner.clone(),
            executor: self.executor.clone(),
            election: self.election.clone(),
            transfer: self.transfer.clone(),
            stats: self.stats,
            heartbeat_at: self.heartbeat_at,
            retransmit_at: self.retransmit_at,
            heard_at: self.heard_at,
            durable_changed: self.durable_changed,
            durable_vote: self.durable_vote,
            batch_scratch: self.batch_scratch.clone(),
        }
    }
}

impl<A, const R: usize, const W: usize, const D: usize, const QB: usize, const C: usize, const RB: usize> PartialEq
    for Replica<A, R, W, D, QB, C, RB>
where
    A: App + PartialEq,
    A::Staging: PartialEq,
{
    fn eq(&self, other: &Self) -> bool {
        self.me == other.me
            && self.config == other.config
            && self.acceptor == other.acceptor
            && self.proposer == other.proposer
            && self.learner == other.learner
            && self.executor == other.executor
            && self.election == other.election
            && self.transfer == other.transfer
            && self.heartbeat_at == other.heartbeat_at
            && self.retransmit_at == other.retransmit_at
            && self.heard_at == other.heard_at
    }
}

impl<A, const R: usize, const W: usize, const D: usize, const QB: usize, const C: usize, const RB: usize> Eq
    for Replica<A, R, W, D, QB, C, RB>
where
    A: App + Eq,
    A::Staging: Eq,
{
}

impl<A, const R: usize, const W: usize, const D: usize, const QB: usize, const C: usize, const RB: usize>
    core::hash::Hash for Replica<A, R, W, D, QB, C, RB>
where
    A: App + core::hash::Hash,
    A::Staging: core::hash::Hash,
{
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.me.hash(state);
        self.config.hash(state);
        self.acceptor.hash(state);
        self.proposer.hash(state);
        self.learner.hash(state);
        self.executor.hash(state);
        self.election.hash(state);
        self.transfer.hash(state);
        self.heartbeat_at.hash(state);
        self.retransmit_at.hash(state);
        self.heard_at.hash(state);
    }
}

impl<A, const R: usize, const W: usize, const D: usize, const QB: usize, const C: usize, const RB: usize>
    core::fmt::Debug for Replica<A, R, W, D, QB, C, RB>
where
    A: App + core::fmt::Debug,
    A::Staging: core::fmt::Debug,
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Replica")
            .field("me", &self.me)
            .field("acceptor", &self.acceptor)
            .field("proposer", &self.proposer)
            .field("learner", &self.learner)
            .field("executor", &self.executor)
            .field("election", &self.election)
            .field("transfer", &self.transfer)
            .field("heartbeat_at", &self.heartbeat_at)
            .field("retransmit_at", &self.retransmit_at)
            .field("heard_at", &self.heard_at)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}
