//! Rejoining after a start without state (the rule is in [`crate::rsl::rejoin`]): asking
//! every other replica, answering such requests, and taking part again once caught up.

use super::Replica;
use crate::config::ConfigError;
use crate::emit::{self, Envelope};
use crate::outbox::Outbox;
use crate::rsl::app::App;
use crate::rsl::ballot::Ballot;
use crate::rsl::config::RslConfig;
use crate::rsl::msg::RslMsg;
use crate::rsl::rejoin::{Answer, Outcome, Rejoin, Stage};
use crate::time::Instant;

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
    /// Replica number `me` started without its state: an in-memory replica (re)started, a
    /// replica whose disk was wiped or replaced, a device without flash. It promises and
    /// votes only once every other replica has answered and it has caught up (see
    /// [`crate::rsl::rejoin`]); if every other replica has no state either, the cluster is
    /// new and it starts at once. `nonce` names this incarnation and is where its 1b reply
    /// ids start: it must be larger than every nonce and reply id of an earlier
    /// incarnation (a wall clock in microseconds is), or random over 64 bits (a collision
    /// is then negligible); 0 is taken as 1.
    pub fn new_rejoining(
        config: RslConfig<R>,
        me: usize,
        app: A,
        now: Instant,
        nonce: u64,
    ) -> Result<Self, ConfigError> {
        let mut replica = Replica::new(config, me, app, now)?;
        replica.rejoin = Some(Rejoin::new(nonce.max(1), now));
        Ok(replica)
    }

    /// Where rejoining stands, or `None` once this replica takes part.
    pub fn rejoining(&self) -> Option<&Rejoin<R>> {
        self.rejoin.as_ref()
    }

    /// When to ask again (every other replica while asking; the leader while catching up).
    pub(super) fn rejoin_retry_at(&self) -> Option<Instant> {
        self.rejoin.as_ref().map(|r| r.retry_at)
    }

    pub(super) fn ask_to_rejoin(&mut self, now: Instant, out: &mut Outbox<'_>) {
        // A cluster of one: there is nobody to ask, and nothing anybody else could know.
        if self.config.n() == 1 && self.rejoin.is_some() {
            self.born();
            return;
        }
        let Some(rejoin) = self.rejoin.as_mut() else { return };
        rejoin.retry_at = now.plus_ms(self.config.params.retransmit_period_ms);
        let catching_up = rejoin.stage != Stage::Asking;
        let msg = RslMsg::RecoverRequest { nonce: rejoin.nonce, catching_up };
        let max = self.config.params.max_datagram_bytes;
        let leader = usize::from(self.election.current_view.proposer);
        let first = out.len();
        // Catching up, it asks its view's leader to propose (see `propose_for_rejoin`); if
        // that leader is itself, which cannot lead before it has rejoined, it asks everyone,
        // and they leave the view (`Election::reflect_leader_rejoining`).
        let everyone = !catching_up || leader == self.me;
        for (r, &dst) in self.config.replicas.iter().enumerate() {
            if r != self.me && (everyone || r == leader) {
                emit::send(out, &mut self.stats, Envelope::Rsl(self.cluster), max, dst, &msg);
            }
        }
        // The nonce goes out only once the incarnation record is durable.
        if self.journal.durable {
            out.mark_after_sync(first);
        }
    }

    /// A replica catching up after a start without state waits for every operation below
    /// the highest its answers reported to be decided. One proposed but lost on every path
    /// (the leader's own copy included) is filled only by a later view, and views change on
    /// waiting work: an empty batch above it gives the others votes that wait (see
    /// `Election::reflect_undecided`). At most one per request, only with nothing queued.
    pub(super) fn propose_for_rejoin(&mut self, out: &mut Outbox<'_>) {
        let opn = self.proposer.next_opn;
        if !self.leading() || self.proposer.queued() > 0 || self.proposer.has_old_values() || !self.window_open() {
            return;
        }
        let bal = self.proposer.max_ballot_sent_1a;
        let msg = RslMsg::TwoA { bal, opn, batch: crate::wire::Bytes(&[]) };
        let max = self.config.params.max_datagram_bytes;
        emit::broadcast(out, &mut self.stats, Envelope::Rsl(self.cluster), max, &self.config.replicas, &msg);
        self.proposer.next_opn = opn + 1;
    }

    /// True while this replica holds no protocol state at all (nor executed anything).
    fn fresh(&self) -> bool {
        self.acceptor.max_bal == Ballot::default()
            && self.acceptor.vote_count() == 0
            && self.acceptor.log_truncation_point == 0
            && self.proposer.max_ballot_sent_1a == Ballot::default()
            && self.proposer.next_opn == 0
            && self.executor.ops_complete == 0
    }

    /// Answers replica `sender`'s request. From memory, unsynced: what a durable binding has
    /// not synced yet is at least what it has, so the asker only waits longer.
    pub(super) fn answer_rejoin(&mut self, sender: usize, nonce: u64, out: &mut Outbox<'_>) {
        if sender == self.me {
            return;
        }
        let a = &self.acceptor;
        let highest_vote = a.votes().map(|v| v.opn.saturating_add(1)).max().unwrap_or(0);
        let next_opn = [self.proposer.next_opn, highest_vote, self.executor.ops_complete, a.log_truncation_point]
            .into_iter()
            .fold(0, u64::max);
        let ballot = a.max_bal.max(self.proposer.max_ballot_sent_1a).max(self.election.current_view);
        // A rejoining replica has never promised or voted in this incarnation (what it
        // executed was decided by others). An incarnation seen without state when this
        // replica was born never acted since: to it, this replica is as new as a replica
        // of a new cluster.
        let fresh = self.rejoin.is_some() || self.fresh() || self.born_with.get(sender).is_some_and(|&b| b == nonce);
        let msg = RslMsg::RecoverReply {
            nonce,
            incarnation: self.rejoin.as_ref().map_or(0, |r| r.nonce),
            rejoining: self.rejoin.is_some(),
            fresh,
            ballot,
            next_opn,
        };
        let max = self.config.params.max_datagram_bytes;
        let first = out.len();
        emit::send(out, &mut self.stats, Envelope::Rsl(self.cluster), max, self.config.replicas[sender], &msg);
        // A rejoining replica's answer carries its nonce (which the asker may be born
        // with); a member's may say it is fresh. Either must survive a restart.
        if self.journal.durable {
            out.mark_after_sync(first);
        }
    }

    pub(super) fn on_rejoin_answer(&mut self, now: Instant, sender: usize, nonce: u64, answer: Answer) {
        let (me, n) = (self.me, self.config.n());
        let Some(rejoin) = self.rejoin.as_mut() else { return };
        match rejoin.answer(me, n, sender, nonce, answer) {
            Outcome::Waiting => {}
            // After a membership change the epoch's state lives with its replicas: one
            // whose peers all have none waits for one that has (a new cluster is born only
            // in epoch 0).
            Outcome::Born if self.config.epoch > 0 => {}
            Outcome::Born => self.born(),
            Outcome::CatchUp { ballot, next_opn } => {
                // Follow the cluster's view (for forwarding), and fetch what it executed.
                self.election.current_view = self.election.current_view.max(ballot);
                self.note_target(next_opn, now);
            }
        }
    }

    /// Every other replica has no state (or there is none): start as a member of a new
    /// cluster.
    fn born(&mut self) {
        let Some(rejoin) = self.rejoin.take() else { return };
        self.born_with = rejoin.fresh_incarnations();
        if self.journal.durable {
            self.journal.born_pending = self.born_with_entries().fold(0, |m, (r, _)| m | 1 << r);
        }
        self.start_reply_ids_at(rejoin.nonce);
        // Durable from now on: a restart recovers a member, not a rejoining replica.
        self.acceptor_changed();
    }

    /// 1b reply ids go on from the nonce: an earlier incarnation's 1b chunks still in flight
    /// must never complete a reply of this one (the nonce is larger than every id an
    /// earlier incarnation used, or random).
    fn start_reply_ids_at(&mut self, nonce: u64) {
        let (max_bal, point) = (self.acceptor.max_bal, self.acceptor.log_truncation_point);
        let replies = self.acceptor.replies_sent().max(nonce);
        let raised = self.acceptor.restore_header(max_bal, point, replies);
        debug_assert!(raised.is_ok(), "only the reply counter moves, and only up");
    }

    /// Takes part again once executed (durably) up to the operation every answer is below:
    /// promise the highest ballot reported, truncate at the checkpoint.
    pub(super) fn resume_if_caught_up(&mut self, now: Instant) -> bool {
        let Some(Stage::CatchingUp { ballot, next_opn }) = self.rejoin.as_ref().map(|r| r.stage) else {
            return false;
        };
        let point = self.checkpoint();
        if point < next_opn {
            return false;
        }
        let nonce = self.rejoin.take().map_or(0, |r| r.nonce);
        let promise = ballot.max(self.acceptor.max_bal);
        let replies = self.acceptor.replies_sent().max(nonce);
        let raised = self.acceptor.restore_header(promise, point.max(self.acceptor.log_truncation_point), replies);
        debug_assert!(raised.is_ok(), "resuming only raises the acceptor's header");
        if usize::from(ballot.proposer) == self.me {
            // Its old incarnation may have started this ballot: never start it again.
            self.proposer.max_ballot_sent_1a = self.proposer.max_ballot_sent_1a.max(ballot);
        }
        self.election.current_view = self.election.current_view.max(ballot);
        self.election.reflect_progress(now);
        self.acceptor.record_checkpoint(self.me, point);
        self.acceptor_changed();
        true
    }
}

#[cfg(test)]
mod tests;
