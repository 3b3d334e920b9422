//! The spontaneous and clock-driven actions: heartbeat, retransmission, new view / 1a,
//! phase 2, nominate, truncate, decide and execute, repeated while they make progress.

use super::Replica;
use super::MAX_ACTION_ROUNDS;
use crate::emit::{self, Envelope};
use crate::outbox::Outbox;
use crate::rsl::app::App;
use crate::rsl::batch::{self, EntryKind};
use crate::rsl::msg::RslMsg;
use crate::rsl::proposer::Phase;
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
    pub(super) fn send_heartbeat(&mut self, out: &mut Outbox<'_>) {
        // A rejoining replica stays out of elections, and its checkpoint must not hold the
        // leader's log while it waits for answers.
        if self.rejoin.is_some() {
            return;
        }
        let msg = self.heartbeat();
        self.ckpt_reported = self.ckpt_reported.max(self.checkpoint());
        let max = self.config.params.max_datagram_bytes;
        emit::broadcast(out, &mut self.stats, Envelope::Rsl(self.cluster), max, &self.config.replicas, &msg);
    }

    /// This replica's heartbeat: its view, whether it suspects it, its checkpoint.
    pub(super) fn heartbeat(&self) -> RslMsg<'static> {
        RslMsg::Heartbeat {
            bal: self.election.current_view,
            suspicious: self.election.suspects(self.me),
            opn_ckpt: self.checkpoint(),
        }
    }

    /// A follower that has executed (in durable mode: made durable) everything it voted for,
    /// a whole log window past the checkpoint it last reported, tells the leader its
    /// checkpoint at once, in a heartbeat to the leader alone. The leader proposes nothing
    /// past its window until it truncates, and it truncates on checkpoints, which otherwise
    /// reach it with the next 2b (there is none while the window is full) or the next
    /// periodic heartbeat: under a load that fills the window, every window waited for a
    /// heartbeat period (1,024 clients: 9.6k ops/s with 100 ms heartbeats, 47.6k with 10
    /// ms). The follower cannot see the leader's truncation point (its own differs), hence
    /// the lag since its last report as the trigger: a window's worth executed without a 2b
    /// or heartbeat to carry it is what a full window looks like from here; with fewer
    /// batches in flight the 2b carry the checkpoint and nothing more is sent.
    pub(super) fn report_drained_window(&mut self, out: &mut Outbox<'_>) {
        let ckpt = self.checkpoint();
        if self.rejoin.is_some() || self.leading() || ckpt <= self.ckpt_reported {
            return;
        }
        let Some(top_vote) = self.acceptor.votes().map(|v| v.opn).max() else { return };
        if ckpt <= top_vote || ckpt - self.ckpt_reported < self.config.params.max_log_length {
            return;
        }
        let leader = usize::from(self.election.current_view.proposer);
        let Some(dst) = self.config.replicas.get(leader).copied().filter(|_| leader != self.me) else { return };
        let msg = RslMsg::Heartbeat {
            bal: self.election.current_view,
            suspicious: self.election.suspects(self.me),
            opn_ckpt: ckpt,
        };
        self.ckpt_reported = ckpt;
        let max = self.config.params.max_datagram_bytes;
        emit::send(out, &mut self.stats, Envelope::Rsl(self.cluster), max, dst, &msg);
    }

    /// Recovers lost 1a/1b and 2a/2b without waiting for a view change: in phase 1 the 1a
    /// is re-sent; in phase 2 every proposal some replica has not executed yet (and that
    /// this replica's acceptor still holds) is re-sent. Bounded by the log window.
    pub(super) fn retransmit(&mut self, out: &mut Outbox<'_>) {
        let max = self.config.params.max_datagram_bytes;
        let bal = self.proposer.max_ballot_sent_1a;
        if self.election.current_view != bal {
            return;
        }
        match self.proposer.phase {
            Phase::Idle => {}
            Phase::One => {
                let first = out.len();
                emit::broadcast(
                    out,
                    &mut self.stats,
                    Envelope::Rsl(self.cluster),
                    max,
                    &self.config.replicas,
                    &RslMsg::OneA { bal },
                );
                out.mark_after_sync(first);
            }
            Phase::Two => {
                // A replica whose checkpoint is below the truncation point can no longer
                // learn the dropped operations from 2a. IronRSL tells it where the log starts
                // only once, in StartingPhase2: a replica cut off at that moment, healed when
                // no new 2a comes past its window, would stay behind for good.
                let point = self.acceptor.log_truncation_point;
                let start = RslMsg::StartingPhase2 { bal, log_truncation_point: point };
                for r in 0..self.config.n() {
                    if r != self.me && self.acceptor.checkpoint_of(r) < point {
                        emit::send(
                            out,
                            &mut self.stats,
                            Envelope::Rsl(self.cluster),
                            max,
                            self.config.replicas[r],
                            &start,
                        );
                    }
                }
                // Every held vote is at or above the truncation point, hence at or above the
                // lowest checkpoint (`check_invariants`): some replica has not executed it.
                let next = self.proposer.next_opn;
                for v in self.acceptor.votes() {
                    if v.bal == bal && v.opn < next {
                        let msg = RslMsg::TwoA { bal, opn: v.opn, batch: Bytes(&v.batch) };
                        emit::broadcast(
                            out,
                            &mut self.stats,
                            Envelope::Rsl(self.cluster),
                            max,
                            &self.config.replicas,
                            &msg,
                        );
                    }
                }
            }
        }
    }

    /// IronRSL actions 1-8 minus the receive, repeated while they make progress. `on_clock`:
    /// called from [`Replica::tick`], the only step that proposes a partial batch.
    pub(super) fn run_actions(&mut self, now: Instant, on_clock: bool, out: &mut Outbox<'_>) {
        // A replica that retired in this step takes no further action in its ended epoch.
        if self.retired.is_some() {
            return;
        }
        let quorum = self.config.quorum();
        let n = self.config.n();
        let p = self.config.params;
        let max = p.max_datagram_bytes;
        // Action 7 and 8: view timeout and quorum of suspicions. A rejoining replica
        // follows the views others announce, and does none of actions 1-4.
        if self.rejoin.is_none() {
            self.election.check_timeout(now, self.me);
            self.election.check_quorum(now, quorum, n, p.max_view_timeout_ms);
        }
        for _ in 0..MAX_ACTION_ROUNDS {
            let mut progress = false;
            if self.rejoin.is_some() {
                progress |= self.execute_decided(now, out);
                progress |= self.resume_if_caught_up(now);
                if !progress {
                    break;
                }
                continue;
            }
            // Action 1: a view this replica leads that it has not started: send 1a.
            let view = self.election.current_view;
            if usize::from(view.proposer) == self.me && view > self.proposer.max_ballot_sent_1a {
                self.proposer.start_phase1(view);
                // Durable: a restarted leader must not start this ballot again.
                self.acceptor_changed();
                let first = out.len();
                emit::broadcast(
                    out,
                    &mut self.stats,
                    Envelope::Rsl(self.cluster),
                    max,
                    &self.config.replicas,
                    &RslMsg::OneA { bal: view },
                );
                out.mark_after_sync(first);
                progress = true;
            } else if self.proposer.phase != Phase::Idle && view != self.proposer.max_ballot_sent_1a {
                self.proposer.step_down();
            }
            // Action 2: a quorum of promises: enter phase 2.
            if self.proposer.phase == Phase::One
                && self.proposer.promised() >= quorum
                && view == self.proposer.max_ballot_sent_1a
            {
                let log_truncation_point = self.proposer.enter_phase2(self.acceptor.log_truncation_point);
                let msg = RslMsg::StartingPhase2 { bal: view, log_truncation_point };
                emit::broadcast(out, &mut self.stats, Envelope::Rsl(self.cluster), max, &self.config.replicas, &msg);
                progress = true;
            }
            // Action 3: nominate old values, then new batches, inside the window.
            progress |= self.nominate(now, on_clock, out);
            // Action 4: truncate the log (at most at the quorum-th highest checkpoint).
            self.acceptor.record_checkpoint(self.me, self.checkpoint());
            let point = self.truncation_target(quorum, now);
            if point > self.acceptor.log_truncation_point {
                self.acceptor.truncate(point);
                self.acceptor_changed();
                progress = true;
            }
            self.note_target(self.acceptor.log_truncation_point, now);
            // Actions 5 and 6: decide and execute, in order.
            progress |= self.execute_decided(now, out);
            if !progress {
                break;
            }
        }
        // Once per step, after executing: a replica the step brought up is not behind.
        self.watch_lag(now);
    }

    /// Where the log may be truncated. IronRSL truncates at the quorum-th highest checkpoint,
    /// cutting off every slower replica: it then needs a state transfer, and under load
    /// (the state changing faster than a transfer completes) it may never catch up, while
    /// each of its requests makes the supplier hash its whole state. Fleet also waits for
    /// every replica heard from in the last two heartbeat periods whose checkpoint is still
    /// inside the log: the leader's window (`truncation + max_log_length`) then throttles
    /// proposals to what live replicas keep up with. Silent replicas, and replicas already
    /// below the truncation point, do not hold it back. Truncating lower than IronRSL is
    /// always safe: what matters is that nothing above the quorum-th checkpoint is dropped.
    /// This replica's own checkpoint holds it too, so a follower a little behind catches up
    /// from retransmitted 2a rather than by a state transfer; one that fell below the
    /// leader's truncation point learns so from the leader (see `retransmit`).
    pub(super) fn truncation_target(&self, quorum: usize, now: Instant) -> u64 {
        let floor = self.acceptor.log_truncation_point;
        let silent_after_ms = self.config.params.heartbeat_period_ms.saturating_mul(2);
        let leading = self.leading();
        let live = |r: usize| r == self.me || (leading && now <= self.heard_at[r].plus_ms(silent_after_ms));
        (0..self.config.n())
            .filter(|&r| live(r))
            .map(|r| self.acceptor.checkpoint_of(r))
            .filter(|&c| c >= floor)
            .fold(self.acceptor.quorum_checkpoint(quorum), u64::min)
    }

    /// Action 3. A full batch goes at once. A partial one goes only from a clock step: at
    /// once when nothing is in flight, else when the batch timer expires. A datagram that
    /// leaves a partial batch at an idle leader arms the batch timer at `now` instead, so
    /// that the requests of one receive burst go in one batch: the binding handles the
    /// whole burst, then ticks because [`Replica::next_deadline`] has passed. Proposing at
    /// the burst's first request sent a batch of one and left the rest to wait for it.
    pub(super) fn nominate(&mut self, now: Instant, on_clock: bool, out: &mut Outbox<'_>) -> bool {
        let p = self.config.params;
        let max = p.max_datagram_bytes;
        let mut progress = false;
        for _ in 0..W {
            if !self.leading() {
                break;
            }
            let opn = self.proposer.next_opn;
            if opn >= self.acceptor.log_truncation_point.saturating_add(p.max_log_length) {
                break;
            }
            let bal = self.proposer.max_ballot_sent_1a;
            if self.proposer.has_old_values() {
                let msg = RslMsg::TwoA { bal, opn, batch: Bytes(self.proposer.old_value()) };
                emit::broadcast(out, &mut self.stats, Envelope::Rsl(self.cluster), max, &self.config.replicas, &msg);
                let has_change = batch::entries(self.proposer.old_value()).any(|e| e.kind == EntryKind::Change);
                if has_change {
                    self.change_proposed = Some(opn);
                }
            } else {
                let queued = self.proposer.queued();
                if queued == 0 {
                    self.proposer.batch_deadline = None;
                    break;
                }
                let idle = self.executor.ops_complete >= opn;
                if queued < p.max_batch_size {
                    if !on_clock {
                        if idle {
                            // Due at once: the next tick proposes it whatever the deadline.
                            self.proposer.batch_deadline = Some(now);
                        }
                        break;
                    }
                    if !idle && self.proposer.batch_deadline.is_none_or(|d| now < d) {
                        break;
                    }
                }
                let taken =
                    self.proposer.take_batch(p.max_batch_size, self.config.max_batch_bytes(), &mut self.batch_scratch);
                if taken.entries == 0 {
                    continue;
                }
                self.proposer.batch_deadline = (self.proposer.queued() > 0).then(|| now.plus_ms(p.max_batch_delay_ms));
                let msg = RslMsg::TwoA { bal, opn, batch: Bytes(&self.batch_scratch) };
                emit::broadcast(out, &mut self.stats, Envelope::Rsl(self.cluster), max, &self.config.replicas, &msg);
                self.note_proposed(opn, taken.has_change);
            }
            self.proposer.next_opn = opn + 1;
            progress = true;
        }
        progress
    }
}
