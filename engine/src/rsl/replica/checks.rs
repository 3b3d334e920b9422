//! What must always hold of one replica (its roles' invariants and the ones that relate
//! them) and what must only grow across a step ([`Monotone`]); both asserted after every
//! step in debug builds and checked by the simulator and the model checker.

use super::Replica;
use crate::rsl::app::App;
use crate::rsl::ballot::Ballot;
use crate::rsl::proposer::Phase;

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
    /// Checks every local invariant of every role, then the invariants that relate roles of
    /// this replica; asserted after every step in debug builds, and called by the checkers.
    pub fn check_invariants(&self) -> Result<(), &'static str> {
        let n = self.config.n();
        let p = &self.config.params;
        self.acceptor.invariant(p.max_log_length)?;
        self.proposer.invariant(n)?;
        self.learner.invariant(self.executor.ops_complete, n)?;
        self.executor.invariant()?;
        self.election.invariant(n, p.baseline_view_timeout_ms, p.max_view_timeout_ms)?;
        self.transfer.invariant()?;
        self.retained.invariant()?;
        self.reads.invariant()?;
        if self.reads.pending() > 0 && !(self.leads_reads() && self.reads.ballot() == self.proposer.max_ballot_sent_1a)
        {
            return Err("queries pending at a replica that does not lead their ballot");
        }
        if self.reads.iter().any(|r| r.opn > self.proposer.next_opn) {
            return Err("a query waits for an operation the leader has not proposed");
        }
        let ops = self.executor.ops_complete;
        self.journal.invariant(ops)?;
        if self.frozen.id.opn > ops || self.retained.first_opn() > self.frozen.id.opn {
            return Err("frozen snapshot not between the oldest retained batch and the present");
        }
        if self.retained.next_opn() != ops {
            return Err("retained tail does not end at the executed count");
        }
        if self.journal.durable && self.retained.first_opn() > self.journal.handed_out {
            return Err("an executed batch was dropped before the durable binding got it");
        }
        if self.proposer.phase != Phase::Idle && usize::from(self.proposer.max_ballot_sent_1a.proposer) != self.me {
            return Err("proposer active for another replica's ballot");
        }
        if self.proposer.max_ballot_sent_1a > self.election.current_view {
            return Err("proposer started a ballot above the replica's view");
        }
        // Truncation never lags behind every checkpoint: each term of `truncation_target` is
        // at or above the lowest one, and checkpoints are recorded before it runs. A
        // rejoining replica does not truncate (its acceptor takes no part yet).
        if self.rejoin.is_none() && self.acceptor.log_truncation_point < self.acceptor.min_checkpoint() {
            return Err("log truncated below every replica's checkpoint");
        }
        Ok(())
    }

    /// The replica's values that only ever grow, for step (two-state) invariants.
    pub fn monotone(&self) -> Monotone<R> {
        let mut checkpoints = heapless::Vec::new();
        for r in 0..self.config.n() {
            // n <= R: validated at construction.
            let _ = checkpoints.push(self.acceptor.checkpoint_of(r));
        }
        Monotone {
            // Retiring ends the epoch too (its Paxos state is dropped): it counts as the next.
            epoch: self.config.epoch + u64::from(self.retired.is_some()),
            max_bal: self.acceptor.max_bal,
            log_truncation_point: self.acceptor.log_truncation_point,
            checkpoints,
            ops_complete: self.executor.ops_complete,
            durable_ops: self.checkpoint(),
            executed_digest: self.executor.executed_digest,
            max_bal_reflected: self.executor.max_bal_reflected,
            max_ballot_seen: self.learner.max_ballot_seen,
            max_ballot_sent_1a: self.proposer.max_ballot_sent_1a,
            view: self.election.current_view,
            epoch_length_ms: self.election.epoch_length_ms,
        }
    }

    pub(super) fn monotone_snapshot(&self) -> Option<Monotone<R>> {
        cfg!(debug_assertions).then(|| self.monotone())
    }

    /// Pairs of assertions around every step (debug builds): what only grows, and what must
    /// always hold.
    pub(super) fn debug_check(&self, before: Option<Monotone<R>>) {
        if let Some(before) = before {
            debug_assert_eq!(before.check_step(&self.monotone()), Ok(()));
            debug_assert_eq!(self.check_invariants(), Ok(()));
        }
    }
}

/// The values of one replica that never decrease (IronRSL's monotonicity lemmas over one
/// host step): [`Monotone::check_step`] compares a state with its successor.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Monotone<const R: usize> {
    /// The membership epoch: Paxos state (ballots, promises, views, checkpoints) starts
    /// afresh in each, so it is compared only within one.
    pub epoch: u64,
    /// The acceptor's promise.
    pub max_bal: Ballot,
    /// The acceptor's truncation point.
    pub log_truncation_point: u64,
    /// The checkpoint each replica has reported.
    pub checkpoints: heapless::Vec<u64, R>,
    /// Operations executed.
    pub ops_complete: u64,
    /// Operations whose effects are durable (the checkpoint reported).
    pub durable_ops: u64,
    /// Digest of everything executed: may change only when `ops_complete` grows.
    pub executed_digest: u64,
    /// The highest ballot of an executed batch.
    pub max_bal_reflected: Ballot,
    /// The learner's ballot.
    pub max_ballot_seen: Ballot,
    /// The proposer's last ballot.
    pub max_ballot_sent_1a: Ballot,
    /// The election's view.
    pub view: Ballot,
    /// The view-change epoch length (doubles at a view change, capped; back to the
    /// baseline in a stable view).
    pub epoch_length_ms: u64,
}

impl<const R: usize> Monotone<R> {
    /// Checks that `next` (the state after one `handle` or `tick`) lost nothing of `self`.
    pub fn check_step(&self, next: &Monotone<R>) -> Result<(), &'static str> {
        if next.epoch < self.epoch {
            return Err("membership epoch went down");
        }
        if next.ops_complete < self.ops_complete {
            return Err("ops_complete went down");
        }
        if next.ops_complete == self.ops_complete && next.executed_digest != self.executed_digest {
            return Err("executed digest changed without executing");
        }
        if next.epoch > self.epoch {
            return Ok(()); // A new epoch's Paxos state starts afresh.
        }
        if next.max_bal < self.max_bal {
            return Err("acceptor max_bal went down");
        }
        if next.log_truncation_point < self.log_truncation_point {
            return Err("truncation point went down");
        }
        if next.checkpoints.len() != self.checkpoints.len()
            || next.checkpoints.iter().zip(&self.checkpoints).any(|(n, b)| n < b)
        {
            return Err("a recorded checkpoint went down");
        }
        if next.ops_complete < self.ops_complete {
            return Err("ops_complete went down");
        }
        if next.durable_ops < self.durable_ops {
            return Err("durable operations went down");
        }
        if next.ops_complete == self.ops_complete && next.executed_digest != self.executed_digest {
            return Err("executed digest changed without executing");
        }
        if next.max_bal_reflected < self.max_bal_reflected {
            return Err("executor max_bal_reflected went down");
        }
        if next.max_ballot_seen < self.max_ballot_seen {
            return Err("learner ballot went down");
        }
        if next.max_ballot_sent_1a < self.max_ballot_sent_1a {
            return Err("proposer ballot went down");
        }
        if next.view < self.view {
            return Err("view went down");
        }
        // The epoch doubles at a view change; it comes back down only within a view that
        // lasted a whole epoch (to the baseline, which the invariant bounds).
        if next.view > self.view && next.epoch_length_ms < self.epoch_length_ms {
            return Err("epoch length went down at a view change");
        }
        Ok(())
    }
}
