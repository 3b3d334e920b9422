//! Catching up: noticing that decisions this replica misses are gone from the log, asking
//! another replica for them, supplying them (retained batches, or the frozen snapshot and
//! the batches after it) in bounded answers, and executing or installing what arrives.

use super::Replica;
use crate::emit::{self, Envelope};
use crate::endpoint::Endpoint;
use crate::outbox::Outbox;
use crate::rsl::app::App;
use crate::rsl::ballot::Ballot;
use crate::rsl::msg::{Resume, RslMsg, SupplyPart};
use crate::rsl::proposer::Phase;
use crate::rsl::snapshot::SnapshotPos;
use crate::rsl::state_transfer::{Progress, SUPPLY_OVERHEAD_BYTES};
use crate::stats::Stats;
use crate::time::Instant;
use crate::wire::Bytes;

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
    /// A truncation point past our execution means the decisions we miss are gone: fetch state.
    pub(super) fn note_target(&mut self, opn: u64, now: Instant) {
        if opn > self.transfer.target_opn {
            self.transfer.target_opn = opn;
            if self.transfer.needed(self.executor.ops_complete) && self.transfer.incoming.is_none() {
                self.transfer.retry_at = now;
            }
        }
    }

    /// How long the log may take to bring a replica up to a point another replica reached.
    pub(super) fn lag_grace_ms(&self) -> u64 {
        self.config.params.retransmit_period_ms.saturating_mul(2)
    }

    /// Another replica has executed past this one. The log may never bring this replica
    /// there: acceptors truncate up to the quorum-th highest checkpoint, followers without
    /// waiting for anyone, and a leader re-sends 2a only for votes its own acceptor holds.
    /// Found by the simulator's catch-up check: a leader whose 2bs were lost stayed behind
    /// its truncating followers for good, as did a follower behind a quorum's truncation, and
    /// in 5-replica clusters with crashes, replicas whose missing votes only the executing
    /// replicas held. The log gets [`Replica::lag_grace_ms`] to close the gap, plenty for a
    /// replica a round trip behind; a point someone reached longer ago than that is fetched
    /// by state transfer (from a replica known to have it).
    pub(super) fn watch_lag(&mut self, now: Instant) {
        let ops = self.executor.ops_complete;
        if let Some((opn, since)) = self.transfer.behind {
            if ops >= opn {
                self.transfer.behind = None;
            } else if now >= since.plus_ms(self.lag_grace_ms()) {
                self.transfer.behind = None;
                self.note_target(opn, now);
            }
        }
        // This replica's own checkpoint never exceeds its `ops_complete`: a larger maximum
        // is another replica's.
        let ahead = self.acceptor.max_checkpoint();
        if self.transfer.behind.is_none() && ahead > ops && !self.transfer.needed(ops) {
            self.transfer.behind = Some((ahead, now));
        }
    }

    /// A complete snapshot arrived: install it, freeze it (it is now what this replica
    /// supplies), and restart the retained tail there; a durable binding must persist it.
    pub(super) fn install_state(&mut self) {
        match self.transfer.install(&mut self.executor) {
            Ok(id) => {
                self.learner.forget_below(id.opn);
                // State of this epoch (suppliers supply their own epoch's): the epoch began
                // at or before it, so this replica now holds state of its epoch to supply.
                if self.epoch_start == crate::rsl::membership::EPOCH_START_UNKNOWN {
                    self.epoch_start = id.opn;
                }
                self.frozen.take(&self.executor);
                self.retained.reset(id.opn);
                self.journal.skip_to(id.opn);
                self.acceptor.record_checkpoint(self.me, self.checkpoint());
                if self.proposer.phase == Phase::Two && self.proposer.next_opn < id.opn {
                    self.proposer.next_opn = id.opn;
                }
            }
            Err(_) => Stats::bump(&mut self.stats.invalid_messages),
        }
    }

    /// One supplied piece from replica `sender` (to a laggard or a learner): an executed
    /// batch (the next one is executed; a stop-sign moves this replica on) or a snapshot
    /// piece.
    pub(super) fn take_supply(&mut self, now: Instant, sender: usize, part: SupplyPart<'_>, out: &mut Outbox<'_>) {
        let ops = self.executor.ops_complete;
        match part {
            SupplyPart::Executed { opn, bal, batch } => {
                if !bal.is_valid_for(self.config.n()) || !self.on_executed(now, sender, opn, bal, batch.0, out) {
                    Stats::bump(&mut self.stats.ignored_messages);
                }
            }
            _ => match self.transfer.receive(sender, part, ops) {
                Progress::Ignored => Stats::bump(&mut self.stats.ignored_messages),
                Progress::Corrupt => Stats::bump(&mut self.stats.invalid_messages),
                Progress::Staged => {}
                Progress::Complete => self.install_state(),
            },
        }
    }

    /// A supplier's executed batch: executed if it is the next operation, else ignored.
    /// Executing this epoch's stop-sign enters the next epoch.
    pub(super) fn on_executed(
        &mut self,
        now: Instant,
        sender: usize,
        opn: u64,
        bal: Ballot,
        batch: &[u8],
        out: &mut Outbox<'_>,
    ) -> bool {
        if opn != self.executor.ops_complete {
            return false;
        }
        let mut decision = self.decision();
        let (_, mut exec) = self.execution();
        if exec.run(bal, batch, None, &mut decision) {
            if let Some(next) = decision.next.take() {
                self.end_epoch(now, self.config.next_epoch(next), self.executor.ops_complete, out);
                return true;
            }
        }
        let ops = self.executor.ops_complete;
        self.learner.forget_below(ops);
        self.transfer.supplier = Some(sender);
        if self.transfer.incoming.is_some_and(|i| i.id.opn <= ops) {
            self.transfer.incoming = None; // The snapshot under way is older than this.
        }
        if self.proposer.phase == Phase::Two && self.proposer.next_opn < ops {
            self.proposer.next_opn = ops;
        }
        true
    }

    pub(super) fn request_state(&mut self, now: Instant, out: &mut Outbox<'_>) {
        let target = self.transfer.target_opn;
        let n = self.config.n();
        let ops = self.executor.ops_complete;
        self.transfer.retry_at = now.plus_ms(self.config.params.retransmit_period_ms);
        // Keep asking the replica that is answering; on a stall rotate among replicas known
        // to have executed far enough (any other replica if none is known).
        let supplier = match self.transfer.on_request(ops, 2 * n as u32) {
            Some(s) => s,
            None => {
                let attempt = self.transfer.attempts as usize;
                self.transfer.attempts = self.transfer.attempts.wrapping_add(1);
                let candidates = (0..n).filter(|&r| r != self.me && self.acceptor.checkpoint_of(r) >= target);
                match candidates.clone().count() {
                    0 => (self.me + 1 + attempt % (n - 1).max(1)) % n,
                    count => candidates.clone().nth(attempt % count).unwrap_or(self.me),
                }
            }
        };
        if supplier == self.me {
            return;
        }
        let msg =
            RslMsg::AppStateRequest { bal: self.election.current_view, have: ops, resume: self.transfer.resume() };
        let dst = self.config.replicas[supplier];
        emit::send(out, &mut self.stats, Envelope::Rsl(self.cluster), self.config.params.max_datagram_bytes, dst, &msg);
    }

    /// Answers a request for the decisions from `have` on, all in this step and bounded by
    /// `state_chunks_per_step` pieces: the retained batches from `have` when the tail still
    /// reaches back there; otherwise the frozen snapshot (resumed where the asker's partial
    /// copy of the same snapshot stops) and then the batches after it. The last piece says
    /// so, and the asker asks again at once if it still lacks decisions.
    pub(super) fn supply_state(&mut self, dst: Endpoint, have: u64, resume: Option<Resume>, out: &mut Outbox<'_>) {
        let ops = self.executor.ops_complete;
        let max = self.config.params.max_datagram_bytes;
        let room = max - SUPPLY_OVERHEAD_BYTES;
        let mut budget = self.config.params.state_chunks_per_step;
        let mut next = have;
        if have < self.retained.first_opn() {
            let mut pos = match resume {
                Some(r) if r.id.same_content(&self.frozen.id) => r.pos,
                _ => SnapshotPos::default(),
            };
            let id = self.frozen.id;
            let _ = self.batch_scratch.resize(room.min(D), 0);
            while budget > 0 {
                let Some((part, after)) = self.frozen.piece(pos, room, &mut self.batch_scratch) else { break };
                let done = after.app_offset >= id.app_len && after.cache_index >= id.cache_entries;
                let last = budget == 1 || (done && id.opn >= ops);
                let msg = RslMsg::AppStateSupply { last, part };
                if !emit::send(out, &mut self.stats, Envelope::Rsl(self.cluster), max, dst, &msg) {
                    return;
                }
                pos = after;
                budget -= 1;
                if done {
                    break;
                }
            }
            if pos.app_offset < id.app_len || pos.cache_index < id.cache_entries {
                return; // The snapshot continues in the next answer.
            }
            next = id.opn;
        }
        while budget > 0 && next < ops {
            let Some(e) = self.retained.get(next) else { return };
            let last = budget == 1 || next + 1 == ops;
            let part = SupplyPart::Executed { opn: e.opn, bal: e.bal, batch: Bytes(e.batch) };
            if !emit::send(
                out,
                &mut self.stats,
                Envelope::Rsl(self.cluster),
                max,
                dst,
                &RslMsg::AppStateSupply { last, part },
            ) {
                return;
            }
            next += 1;
            budget -= 1;
        }
    }
}
