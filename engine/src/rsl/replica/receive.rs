//! Action 0, the receive: protocol bounds of a decoded message, client requests, and each
//! peer message dispatched to the role it concerns.

use super::Replica;
use crate::emit::{self, Envelope};
use crate::endpoint::Endpoint;
use crate::outbox::Outbox;
use crate::rsl::acceptor::{Accepted, Acceptor};
use crate::rsl::app::App;
use crate::rsl::ballot::Ballot;
use crate::rsl::batch::{self, EntryKind};
use crate::rsl::election::Tracking;
use crate::rsl::learner::Learned;
use crate::rsl::membership;
use crate::rsl::msg::{RslMsg, SupplyPart, Vote};
use crate::rsl::proposer::{ClientRequest, Phase, Queued};
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
    /// The learner copies the votes the acceptor is about to drop: those below `floor`, and
    /// the one for `opn` unless it is in ballot `bal` ([`Learner::keep_vote`]).
    ///
    /// [`Learner::keep_vote`]: crate::rsl::learner::Learner::keep_vote
    // Kept out of line: inlined into the 2a's handling it grew the firmware by 124 bytes.
    #[inline(never)]
    fn keep_votes(&mut self, floor: u64, opn: u64, bal: Ballot) {
        for v in self.acceptor.votes() {
            if v.opn < floor || (v.opn == opn && v.bal != bal) {
                self.learner.keep_vote(v.opn, v.bal, &v.batch);
            }
        }
    }

    /// Protocol bounds of a decoded peer message, checked before any state is touched: a
    /// batch is well formed and within the configured bounds.
    pub(super) fn valid(&self, msg: &RslMsg<'_>) -> bool {
        let n = self.config.n();
        let batch_ok = |b: &Bytes<'_>| {
            b.0.len() <= self.config.max_batch_bytes()
                && batch::validate(b.0, self.config.params.max_batch_size).is_ok()
        };
        match msg {
            RslMsg::OneA { bal } | RslMsg::StartingPhase2 { bal, .. } | RslMsg::Heartbeat { bal, .. } => {
                bal.is_valid_for(n)
            }
            RslMsg::AppStateRequest { bal, .. } | RslMsg::ReadConfirm { bal, .. } | RslMsg::ReadAck { bal, .. } => {
                bal.is_valid_for(n)
            }
            RslMsg::AppStateSupply { part, .. } => match part {
                SupplyPart::App { id, .. } | SupplyPart::Cache { id, .. } => {
                    id.bal.is_valid_for(n) || id.bal == Ballot::default()
                }
                SupplyPart::Executed { bal, batch, .. } => bal.is_valid_for(n) && batch_ok(batch),
            },
            RslMsg::OneB { bal, chunk, chunks, vote, .. } => {
                bal.is_valid_for(n)
                    && chunk < chunks
                    && usize::from(*chunks) <= self.config.params.max_log_length as usize + 1
                    && vote.as_ref().is_none_or(|v| v.bal.is_valid_for(n) && v.bal < *bal && batch_ok(&v.batch))
            }
            RslMsg::TwoA { bal, batch, .. } => bal.is_valid_for(n) && batch_ok(batch),
            RslMsg::TwoB { bal, .. } => bal.is_valid_for(n),
            RslMsg::RecoverReply { ballot, .. } => ballot.is_valid_for(n) || *ballot == Ballot::default(),
            RslMsg::Members { replicas, .. } => membership::replicas_of::<R>(replicas.0).is_ok(),
            RslMsg::Request { .. }
            | RslMsg::Reply { .. }
            | RslMsg::Requests { .. }
            | RslMsg::Replies { .. }
            | RslMsg::StatusRequest { .. }
            | RslMsg::StatusReply { .. }
            | RslMsg::ForwardedRequest { .. }
            | RslMsg::RecoverRequest { .. }
            | RslMsg::Change { .. }
            | RslMsg::MembersRequest { .. } => true,
        }
    }

    /// A client's request, received from the client (`forwarded` false) or passed on by a
    /// replica (true).
    pub(super) fn on_request(
        &mut self,
        now: Instant,
        from: Endpoint,
        req: ClientRequest<'_>,
        forwarded: bool,
        out: &mut Outbox<'_>,
    ) {
        let ClientRequest { seqno, request, kind } = req;
        let group = kind == EntryKind::Group;
        let well_formed = match kind {
            EntryKind::Single => true,
            EntryKind::Group => crate::rsl::group::validate(request).is_ok(),
            EntryKind::Change => crate::rsl::membership::well_formed(request),
        };
        if request.len() > self.max_request_bytes() || !well_formed {
            Stats::bump(&mut self.stats.invalid_messages);
            return;
        }
        let max = self.config.params.max_datagram_bytes;
        if let Some(cached) = self.executor.reply_cache.get(from) {
            if seqno == cached.seqno {
                let msg = reply_msg(seqno, &cached.reply, group);
                emit::send(out, &mut self.stats, Envelope::Rsl(self.cluster), max, from, &msg);
                return;
            }
            if seqno < cached.seqno {
                Stats::bump(&mut self.stats.ignored_messages);
                return;
            }
        }
        // A query straight from a client to the leader is answered without a log write; one
        // passed on by a follower goes through the log, as that follower tracks it. Groups
        // always take the log.
        if !forwarded && kind == EntryKind::Single && self.admit_query(now, from, seqno, request, out) {
            return;
        }
        let tracking = self.election.reflect_received(now, from, seqno);
        // A request new to this replica goes on to the leader of its view, once: a request
        // sent only to followers is then executed instead of making them suspect a live
        // leader. Forwarded requests are not forwarded again.
        let leader = usize::from(self.election.current_view.proposer);
        if !forwarded && tracking != Tracking::Known && leader != self.me {
            if let Some(dst) = self.config.replicas.get(leader).copied() {
                let msg = RslMsg::ForwardedRequest { client: from, seqno, request: Bytes(request), kind };
                emit::send(out, &mut self.stats, Envelope::Rsl(self.cluster), max, dst, &msg);
            }
        }
        // IronRSL queues whenever the proposer is active (phase 1 or 2) in the current view.
        if self.proposer.phase != Phase::Idle && self.election.current_view == self.proposer.max_ballot_sent_1a {
            let delay = self.config.params.max_batch_delay_ms;
            if self.proposer.queue_request(from, req, now, delay) == Queued::Full {
                Stats::bump(&mut self.stats.queue_full);
            }
        }
    }

    /// Answers a status request (from anyone: `handle` takes it before peer dispatch) with this replica's
    /// [`Status`](super::Status). Changes nothing.
    pub(super) fn answer_status(&mut self, to: Endpoint, nonce: u64, out: &mut Outbox<'_>) {
        // A learner has no index in its epoch.
        let replica = if self.learning.is_some() { u8::MAX } else { self.me as u8 };
        let msg = RslMsg::StatusReply { nonce, replica, status: self.status() };
        let max = self.config.params.max_datagram_bytes;
        emit::send(out, &mut self.stats, Envelope::Rsl(self.cluster), max, to, &msg);
    }

    pub(super) fn on_peer(&mut self, now: Instant, sender: usize, msg: RslMsg<'_>, out: &mut Outbox<'_>) {
        let max = self.config.params.max_datagram_bytes;
        match msg {
            RslMsg::ForwardedRequest { client, seqno, request, kind } => {
                self.on_request(now, client, ClientRequest { seqno, request: request.0, kind }, true, out);
            }
            // A rejoining replica neither promises nor votes (see `crate::rsl::rejoin`); the
            // 2a is below.
            RslMsg::OneA { .. } if self.rejoin.is_some() => {
                Stats::bump(&mut self.stats.ignored_messages);
            }
            RslMsg::RecoverRequest { nonce, catching_up } => {
                self.answer_rejoin(sender, nonce, out);
                if catching_up {
                    self.propose_for_rejoin(out);
                    // The leader of this replica's view is rejoining: it cannot lead until
                    // operations it waits for are decided, which takes another leader.
                    if sender == usize::from(self.election.current_view.proposer) && self.rejoin.is_none() {
                        self.election.reflect_leader_rejoining(now);
                    }
                }
            }
            RslMsg::RecoverReply { nonce, incarnation, rejoining, fresh, ballot, next_opn } => {
                let answer = crate::rsl::rejoin::Answer { rejoining, fresh, incarnation, ballot, next_opn };
                self.on_rejoin_answer(now, sender, nonce, answer);
            }
            // An acceptor holding for a leader's lease promises nothing higher until the
            // hold ends (`crate::rsl::lease`); the candidate re-sends its 1a.
            RslMsg::OneA { bal } if self.hold.refuses(now, bal) => {
                Stats::bump(&mut self.stats.ignored_messages);
            }
            RslMsg::OneA { bal } => {
                if !self.acceptor.promise(bal) {
                    Stats::bump(&mut self.stats.ignored_messages);
                    return;
                }
                self.acceptor_changed();
                let reply_id = self.acceptor.next_reply_id();
                let mut votes = self.acceptor.votes();
                let chunks = self.acceptor.vote_count().max(1) as u8;
                let dst = self.config.replicas[sender];
                let first = out.len();
                for chunk in 0..chunks {
                    let vote = votes.next().map(|v| Vote { opn: v.opn, bal: v.bal, batch: Bytes(&v.batch) });
                    let log_truncation_point = self.acceptor.log_truncation_point;
                    let msg = RslMsg::OneB { bal, log_truncation_point, reply_id, chunk, chunks, vote };
                    emit::send(out, &mut self.stats, Envelope::Rsl(self.cluster), max, dst, &msg);
                }
                out.mark_after_sync(first);
            }
            RslMsg::OneB { bal, log_truncation_point, reply_id, chunk, chunks, vote } => {
                if !self.proposer.process_1b(sender, bal, log_truncation_point, reply_id, chunk, chunks, vote) {
                    Stats::bump(&mut self.stats.ignored_messages);
                }
            }
            RslMsg::TwoA { bal, opn, batch } => {
                if usize::from(bal.proposer) != sender {
                    Stats::bump(&mut self.stats.invalid_messages);
                    return;
                }
                let len = self.config.params.max_log_length;
                // A rejoining replica does not vote (see `crate::rsl::rejoin`).
                let votes = self.rejoin.is_none();
                // The votes this one would slide out of the window or replace (a 2a below
                // the promise changes nothing).
                if votes && bal >= self.acceptor.max_bal {
                    self.keep_votes(opn.saturating_add(1).saturating_sub(len), opn, bal);
                }
                let accepted = if votes { self.acceptor.accept(bal, opn, batch.0, len) } else { Accepted::Stale };
                match accepted {
                    Accepted::Stale => {
                        // No vote (below the promise, or rejoining): the learner still needs
                        // the batch should 2b decide it.
                        self.learner.keep_proposal(bal, opn, batch.0, self.executor.ops_complete);
                        Stats::bump(&mut self.stats.ignored_messages);
                    }
                    Accepted::Conflict => Stats::bump(&mut self.stats.invalid_messages),
                    Accepted::Voted => {
                        self.acceptor_changed();
                        self.journal.note_vote(Acceptor::<R, W, D>::slot_of(opn));
                        let opn_ckpt = self.checkpoint();
                        self.ckpt_reported = self.ckpt_reported.max(opn_ckpt);
                        let msg = RslMsg::TwoB { bal, opn, opn_ckpt };
                        let first = out.len();
                        emit::broadcast(
                            out,
                            &mut self.stats,
                            Envelope::Rsl(self.cluster),
                            max,
                            &self.config.replicas,
                            &msg,
                        );
                        out.mark_after_sync(first);
                    }
                }
            }
            RslMsg::TwoB { bal, opn, opn_ckpt } => {
                self.acceptor.record_checkpoint(sender, opn_ckpt);
                let ops = self.executor.ops_complete;
                if self.learner.process_2b(sender, bal, opn, ops) == Learned::Ignored {
                    Stats::bump(&mut self.stats.ignored_messages);
                }
            }
            RslMsg::Heartbeat { bal, suspicious, opn_ckpt } => {
                self.election.process_heartbeat(now, sender, bal, suspicious);
                self.acceptor.record_checkpoint(sender, opn_ckpt);
                // Liveness for truncation comes from heartbeats alone (one per period from
                // every live replica is enough), and only a leader keeps it: flow control is
                // about its window. A follower's own checkpoint holds its log.
                if sender != self.me && self.leading() {
                    if let Some(at) = self.heard_at.get_mut(sender) {
                        *at = now.max(*at);
                    }
                }
            }
            RslMsg::StartingPhase2 { log_truncation_point, .. } => {
                self.note_target(log_truncation_point, now);
            }
            RslMsg::AppStateRequest { have, resume, .. } => {
                // A replica behind its epoch's start has nothing of this epoch to supply.
                let ops = self.executor.ops_complete;
                if ops <= have || sender == self.me || ops < self.epoch_start {
                    Stats::bump(&mut self.stats.ignored_messages);
                    return;
                }
                self.supply_state(self.config.replicas[sender], have, resume, out);
            }
            RslMsg::AppStateSupply { last, part } => {
                self.take_supply(now, sender, part, out);
                // One answer is bounded: ask for the rest at once instead of at the timer.
                if last && self.transfer.needed(self.executor.ops_complete) {
                    self.request_state(now, out);
                }
            }
            RslMsg::ReadConfirm { bal, round } => self.on_read_confirm(now, sender, bal, round, out),
            RslMsg::ReadAck { bal, round } => self.on_read_ack(sender, bal, round),
            RslMsg::Members { epoch, start, replicas, .. } => self.on_members(now, epoch, start, replicas.0, out),
            RslMsg::Request { .. }
            | RslMsg::Change { .. }
            | RslMsg::MembersRequest { .. }
            | RslMsg::Reply { .. }
            | RslMsg::Requests { .. }
            | RslMsg::Replies { .. }
            | RslMsg::StatusRequest { .. }
            | RslMsg::StatusReply { .. } => {}
        }
    }
}

/// The reply to a client's request: a group's reply goes back as one.
pub(super) fn reply_msg(seqno: u64, reply: &[u8], group: bool) -> RslMsg<'_> {
    match group {
        true => RslMsg::Replies { seqno, replies: Bytes(reply) },
        false => RslMsg::Reply { seqno, reply: Bytes(reply) },
    }
}
