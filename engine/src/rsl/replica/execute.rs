//! Executing one decided batch, whether the learner decided it or a supplier sent it:
//! retain it (freezing a new snapshot when the retained tail must let go of what is still
//! needed), apply it, answer its clients when this replica proposed it, and let the
//! election forget its requests.

use super::epoch::Decision;
use super::Replica;
use crate::emit::{self, Envelope};
use crate::outbox::Outbox;
use crate::rsl::acceptor::Acceptor;
use crate::rsl::app::App;
use crate::rsl::ballot::Ballot;
use crate::rsl::election::Election;
use crate::rsl::executor::Executor;
use crate::rsl::journal::Journal;
use crate::rsl::learner::Learner;
use crate::rsl::retained::{PushError, Retained};
use crate::rsl::snapshot::Frozen;
use crate::stats::Stats;
use crate::time::Instant;

/// Where a batch's replies go: the outbox and the datagram bound.
pub(super) struct Replies<'o, 'b> {
    pub(super) out: &'o mut Outbox<'b>,
    pub(super) max_datagram_bytes: usize,
    /// This replica's cluster identity, for the replies' envelope.
    pub(super) cluster: u32,
}

/// The parts of a replica that executing a batch touches (borrowed apart from the learner,
/// which may hold the batch).
pub(super) struct Execution<'r, A: App, const C: usize, const RB: usize, const TB: usize> {
    executor: &'r mut Executor<A, C, RB>,
    retained: &'r mut Retained<TB>,
    frozen: &'r mut Frozen<A, C, RB>,
    journal: &'r mut Journal,
    election: &'r mut Election<C>,
    stats: &'r mut Stats,
    /// Room for a group's reply (`group::reply_room`), from the cluster's datagram bound.
    group_reply_bytes: usize,
}

impl<A: App, const C: usize, const RB: usize, const TB: usize> Execution<'_, A, C, RB, TB> {
    /// Executes `batch`, decided in `bal`, as operation `ops_complete`; `replies` when this
    /// replica answers its clients. A membership change in it is decided by `decision`;
    /// returns true if it ended the epoch (its stop-sign: see [`crate::rsl::membership`]).
    pub(super) fn run<const R: usize>(
        &mut self,
        bal: Ballot,
        batch: &[u8],
        replies: Option<Replies<'_, '_>>,
        decision: &mut Decision<R>,
    ) -> bool {
        self.retain(bal, batch);
        let stats = &mut *self.stats;
        let election = &mut *self.election;
        let room = self.group_reply_bytes;
        let opn = self.executor.ops_complete;
        let on_entry = |client, seqno| election.reflect_executed(client, seqno);
        let on_change = |request: &[u8], reply: &mut [u8]| decision.decide(opn, request, reply);
        match replies {
            Some(Replies { out, max_datagram_bytes, cluster }) => self.executor.execute(
                bal,
                batch,
                room,
                on_entry,
                |r| {
                    let msg = super::receive::reply_msg(r.seqno, r.reply, r.group);
                    emit::send(out, stats, Envelope::Rsl(cluster), max_datagram_bytes, r.client, &msg);
                },
                on_change,
            ),
            None => self.executor.execute(bal, batch, room, on_entry, |_| {}, on_change),
        }
    }

    /// Keeps the batch about to execute in the retained tail. If the tail would have to
    /// drop entries still needed (at or above the frozen snapshot, which lagging replicas
    /// are served from, or not yet handed to a durable binding), a snapshot of the state
    /// before this batch is frozen first; batches a durable binding never got are then
    /// covered by that snapshot, which it must persist.
    fn retain(&mut self, bal: Ballot, batch: &[u8]) {
        let opn = self.executor.ops_complete;
        if self.retained.next_opn() != opn {
            self.retained.reset(opn);
        }
        let keep = match self.journal.durable {
            true => self.frozen.id.opn.min(self.journal.handed_out),
            false => self.frozen.id.opn,
        };
        match self.retained.push(opn, bal, batch, keep) {
            Ok(()) => return,
            // Larger than the whole tail: ruled out by `Replica::new` (TB holds a batch).
            Err(PushError::Invalid) => {}
            Err(PushError::Full) => {}
        }
        self.frozen.take(self.executor);
        self.journal.skip_to(opn);
        if self.retained.push(opn, bal, batch, opn).is_err() {
            self.retained.reset(opn + 1);
        }
    }
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
    /// The learner, and apart from it what executing a batch touches.
    pub(super) fn execution(&mut self) -> (&Learner<W, D>, Execution<'_, A, C, RB, TB>) {
        let (learner, _, exec) = self.execution_parts();
        (learner, exec)
    }

    /// The learner and the acceptor (whose votes recovery executes), and apart from them
    /// what executing a batch touches.
    pub(super) fn execution_parts(&mut self) -> (&Learner<W, D>, &Acceptor<R, W, D>, Execution<'_, A, C, RB, TB>) {
        let exec = Execution {
            executor: &mut self.executor,
            retained: &mut self.retained,
            frozen: &mut self.frozen,
            journal: &mut self.journal,
            election: &mut self.election,
            stats: &mut self.stats,
            group_reply_bytes: crate::rsl::group::reply_room(RB, self.config.params.max_datagram_bytes),
        };
        (&self.learner, &self.acceptor, exec)
    }

    /// Executes the batches the learner decided, in order (IronRSL actions 5 and 6), up to
    /// this epoch's stop-sign; executing it enters the next epoch.
    pub(super) fn execute_decided(&mut self, now: Instant, out: &mut Outbox<'_>) -> bool {
        // Retired: operations decided in its epoch after the stop-sign are void.
        if self.retired.is_some() {
            return false;
        }
        let quorum = self.config.quorum();
        let max_datagram_bytes = self.config.params.max_datagram_bytes;
        let cluster = self.cluster;
        let me = self.me;
        // Most steps execute nothing: the decision (a copy of the member list) is built only
        // when the next operation is decided.
        if self.learner.decided(self.executor.ops_complete, quorum).is_none() {
            self.clear_change_proposed();
            return false;
        }
        let mut decision = self.decision();
        let mut progress = false;
        for _ in 0..W {
            let opn = self.executor.ops_complete;
            let (learner, acceptor, mut exec) = self.execution_parts();
            let Some(slot) = learner.decided(opn, quorum) else { break };
            let bal = learner.max_ballot_seen;
            // A slot that refers to this replica's vote needs the vote still there. The vote
            // is copied into the slot before a 2a drops it, so this is a guard: a vote gone
            // anyway leaves the operation to catch-up (`watch_lag` fetches it).
            let Some(batch) = slot.batch_with(acceptor.vote_at(opn), bal) else { break };
            // The leader that proposed the batch answers; the others only update their
            // caches (a client that retries elsewhere is answered from the cache).
            let replies =
                (usize::from(bal.proposer) == me).then_some(Replies { out: &mut *out, max_datagram_bytes, cluster });
            let stopped = exec.run(bal, batch, replies, &mut decision);
            self.learner.forget_below(self.executor.ops_complete);
            progress = true;
            if let (true, Some(next)) = (stopped, decision.next.take()) {
                let next = self.config.next_epoch(next);
                self.end_epoch(now, next, self.executor.ops_complete, out);
                break;
            }
        }
        self.clear_change_proposed();
        progress
    }
}
