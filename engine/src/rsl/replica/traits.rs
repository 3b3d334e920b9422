//! `Clone`, `PartialEq`, `Eq`, `Hash` and `Debug` of a replica, for model checkers: equality
//! is protocol-state equality (counters, scratch buffers and per-step flags are left out).

use super::Replica;
use crate::rsl::app::App;

impl<
        A,
        const R: usize,
        const W: usize,
        const D: usize,
        const QB: usize,
        const C: usize,
        const RB: usize,
        const TB: usize,
    > Clone for Replica<A, R, W, D, QB, C, RB, TB>
where
    A: App + Clone,
    A::Staging: Clone,
    A::Snapshot: Clone,
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
            frozen: self.frozen.clone(),
            retained: self.retained.clone(),
            journal: self.journal.clone(),
            stats: self.stats,
            heartbeat_at: self.heartbeat_at,
            retransmit_at: self.retransmit_at,
            heard_at: self.heard_at,
            durable_changed: self.durable_changed,
            batch_scratch: self.batch_scratch.clone(),
            cluster: self.cluster,
            last_foreign: self.last_foreign,
            rejoin: self.rejoin.clone(),
            born_with: self.born_with,
            reads: self.reads.clone(),
            ckpt_reported: self.ckpt_reported,
            hold: self.hold,
            epoch_start: self.epoch_start,
            earlier_epochs: self.earlier_epochs,
            retired: self.retired.clone(),
            change_proposed: self.change_proposed,
            learning: self.learning,
        }
    }
}

impl<
        A,
        const R: usize,
        const W: usize,
        const D: usize,
        const QB: usize,
        const C: usize,
        const RB: usize,
        const TB: usize,
    > PartialEq for Replica<A, R, W, D, QB, C, RB, TB>
where
    A: App + PartialEq,
    A::Staging: PartialEq,
    A::Snapshot: PartialEq,
{
    fn eq(&self, other: &Self) -> bool {
        self.me == other.me
            && self.config == other.config
            && self.acceptor == other.acceptor
            && self.proposer == other.proposer
            && self.learner.max_ballot_seen == other.learner.max_ballot_seen
            && self.learned().eq(other.learned())
            && self.executor == other.executor
            && self.election == other.election
            && self.transfer == other.transfer
            && self.frozen == other.frozen
            && self.retained == other.retained
            && self.journal == other.journal
            && self.heartbeat_at == other.heartbeat_at
            && self.retransmit_at == other.retransmit_at
            && self.heard_at == other.heard_at
            && self.rejoin == other.rejoin
            && self.born_with == other.born_with
            && self.reads == other.reads
            && self.ckpt_reported == other.ckpt_reported
            && self.hold == other.hold
            && self.epoch_start == other.epoch_start
            && self.earlier_epochs == other.earlier_epochs
            && self.retired == other.retired
            && self.change_proposed == other.change_proposed
            && self.learning == other.learning
    }
}

impl<
        A,
        const R: usize,
        const W: usize,
        const D: usize,
        const QB: usize,
        const C: usize,
        const RB: usize,
        const TB: usize,
    > Eq for Replica<A, R, W, D, QB, C, RB, TB>
where
    A: App + Eq,
    A::Staging: Eq,
    A::Snapshot: Eq,
{
}

impl<
        A,
        const R: usize,
        const W: usize,
        const D: usize,
        const QB: usize,
        const C: usize,
        const RB: usize,
        const TB: usize,
    > core::hash::Hash for Replica<A, R, W, D, QB, C, RB, TB>
where
    A: App + core::hash::Hash,
    A::Staging: core::hash::Hash,
    A::Snapshot: core::hash::Hash,
{
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.me.hash(state);
        self.config.hash(state);
        self.acceptor.hash(state);
        self.proposer.hash(state);
        self.learner.max_ballot_seen.hash(state);
        self.learned().for_each(|slot| slot.hash(state));
        self.executor.hash(state);
        self.election.hash(state);
        self.transfer.hash(state);
        self.frozen.hash(state);
        self.retained.hash(state);
        self.journal.hash(state);
        self.heartbeat_at.hash(state);
        self.retransmit_at.hash(state);
        self.heard_at.hash(state);
        self.rejoin.hash(state);
        self.born_with.hash(state);
        self.reads.hash(state);
        self.ckpt_reported.hash(state);
        self.hold.hash(state);
        self.epoch_start.hash(state);
        self.earlier_epochs.hash(state);
        self.retired.hash(state);
        self.change_proposed.hash(state);
        self.learning.hash(state);
    }
}

impl<
        A,
        const R: usize,
        const W: usize,
        const D: usize,
        const QB: usize,
        const C: usize,
        const RB: usize,
        const TB: usize,
    > core::fmt::Debug for Replica<A, R, W, D, QB, C, RB, TB>
where
    A: App + core::fmt::Debug,
    A::Staging: core::fmt::Debug,
    A::Snapshot: core::fmt::Debug,
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
            .field("frozen", &self.frozen)
            .field("retained", &(self.retained.first_opn()..self.retained.next_opn()))
            .field("journal", &self.journal)
            .field("heartbeat_at", &self.heartbeat_at)
            .field("retransmit_at", &self.retransmit_at)
            .field("heard_at", &self.heard_at)
            .field("rejoin", &self.rejoin)
            .field("born_with", &self.born_with)
            .field("reads", &self.reads)
            .field("ckpt_reported", &self.ckpt_reported)
            .field("hold", &self.hold)
            .field("epoch", &(self.config.epoch, self.epoch_start))
            .field("retired", &self.retired)
            .field("learning", &self.learning)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}
