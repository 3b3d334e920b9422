//! Learners: a new machine that follows an epoch's log before it is a member, so that a
//! membership change adding it lets it vote at once instead of counting in the quorum size
//! while it fetches the state (see [`crate::rsl::membership`]).
//!
//! A learner is not one of its epoch's replicas: it promises nothing, votes for nothing and
//! is in no quorum. It asks the members, in turn, for the decisions past what it executed
//! (`AppStateRequest`, every retransmission period), and executes what they supply:
//! retained batches while it keeps up, the frozen snapshot when it fell behind their tails.
//! Members answer such requests from any address (bounded by `state_chunks_per_step` pieces
//! per request, as for their own laggards). When the learner executes its epoch's
//! stop-sign, or a member says the cluster moved on ([`RslMsg::Members`]), it moves to the
//! next epoch: as a member if the next epoch names its address, else still a learner.
//!
//! A learner that becomes a member **rejoins** ([`crate::rsl::rejoin`]) before it votes,
//! like any replica started without state: it cannot know that no earlier process at its
//! address acted in that epoch and lost its memory (a learner restarted after a crash
//! learns the old epoch's log again and reaches the same stop-sign). Having followed the
//! log, it rejoins with the state at the epoch's start and catches up in one round.

use super::Replica;
use crate::config::ConfigError;
use crate::emit::{self, Envelope};
use crate::endpoint::Endpoint;
use crate::outbox::Outbox;
use crate::rsl::app::App;
use crate::rsl::ballot::Ballot;
use crate::rsl::config::RslConfig;
use crate::rsl::journal::Journal;
use crate::rsl::msg::RslMsg;
use crate::stats::Stats;
use crate::time::Instant;

/// What a learner keeps besides the replica's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Learning {
    /// Its own address (not one of its epoch's replicas).
    pub own: Endpoint,
    /// The incarnation it rejoins as once it is a member.
    pub nonce: u64,
    /// Becomes a durable replica once a member.
    pub durable: bool,
    /// When it next asks a member for decisions.
    pub ask_at: Instant,
    /// Requests sent (which member is asked next).
    pub asked: u64,
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
    /// A learner at `own` of the epoch `config` describes (`own` is not one of its
    /// replicas): it follows the epoch's log from its members and becomes a member when a
    /// change adds it, then rejoining as incarnation `nonce`, durable if `durable` (its
    /// binding then persists what [`Replica::next_record`] hands out from that moment on).
    pub fn new_learner(
        config: RslConfig<R>,
        own: Endpoint,
        app: A,
        now: Instant,
        nonce: u64,
        durable: bool,
    ) -> Result<Self, ConfigError> {
        if config.index_of(own).is_some() {
            return Err(ConfigError::Invalid("a learner is not one of its epoch's replicas"));
        }
        // Index 0 is a placeholder: a learner takes no part, and nothing of its epoch's
        // Paxos runs here until it is a member (then at its own index).
        let mut replica = Replica::new(config, 0, app, now)?;
        replica.learning = Some(Learning { own, nonce: nonce.max(1), durable, ask_at: now, asked: 0 });
        Ok(replica)
    }

    /// The learner's state while it follows an epoch it is not a member of.
    pub fn learning(&self) -> Option<&Learning> {
        self.learning.as_ref()
    }

    /// This replica's own address.
    pub fn own_endpoint(&self) -> Endpoint {
        match &self.learning {
            Some(l) => l.own,
            None => self.config.replicas.get(self.me).copied().unwrap_or(Endpoint::v4([0; 4], 0)),
        }
    }

    /// A learner's whole step: supplies from its epoch's members are executed or installed,
    /// a membership from a later epoch is followed, status and membership questions are
    /// answered; nothing else changes.
    pub(super) fn handle_learning(&mut self, now: Instant, from: Endpoint, datagram: &[u8], out: &mut Outbox<'_>) {
        match crate::rsl::msg_codec::decode_rsl(datagram) {
            Err(_) => Stats::bump(&mut self.stats.decode_errors),
            Ok((_, RslMsg::StatusRequest { nonce })) => self.answer_status(from, nonce, out),
            Ok((cluster, RslMsg::MembersRequest { nonce })) => self.send_members(from, nonce, cluster, out),
            Ok((cluster, RslMsg::AppStateSupply { last, part })) if cluster == self.cluster => {
                let Some(sender) = self.config.index_of(from) else {
                    return Stats::bump(&mut self.stats.unknown_sender);
                };
                let before = (self.executor.ops_complete, self.transfer.resume());
                self.take_supply(now, sender, part, out);
                // One answer is bounded: ask for the rest at once, if it moved this learner
                // on (else at the timer: an answer it cannot use must not echo).
                let moved = (self.executor.ops_complete, self.transfer.resume()) != before;
                if last && moved && self.learning.is_some() {
                    self.ask_for_decisions(now, out);
                }
            }
            Ok((_, RslMsg::Members { epoch, start, replicas, .. })) if self.config.index_of(from).is_some() => {
                self.on_members(now, epoch, start, replicas.0, out)
            }
            Ok(_) => Stats::bump(&mut self.stats.ignored_messages),
        }
    }

    /// A learner's tick: ask a member for the decisions past what it executed.
    pub(super) fn tick_learning(&mut self, now: Instant, out: &mut Outbox<'_>) {
        if self.learning.is_some_and(|l| now >= l.ask_at) {
            self.ask_for_decisions(now, out);
        }
    }

    /// Asks the next member, in turn, for what it executed past this learner.
    fn ask_for_decisions(&mut self, now: Instant, out: &mut Outbox<'_>) {
        let period = self.config.params.retransmit_period_ms;
        let n = self.config.n() as u64;
        let Some(l) = self.learning.as_mut() else { return };
        l.ask_at = now.plus_ms(period);
        // Keep asking the member that answered last; rotate when it does not.
        let member = match self.transfer.supplier {
            Some(s) if l.asked % 4 != 3 => s,
            _ => (l.asked % n.max(1)) as usize,
        };
        l.asked = l.asked.wrapping_add(1);
        let Some(&dst) = self.config.replicas.get(member) else { return };
        let msg = RslMsg::AppStateRequest {
            bal: Ballot::default(),
            have: self.executor.ops_complete,
            resume: self.transfer.resume(),
        };
        emit::send(out, &mut self.stats, Envelope::Rsl(self.cluster), self.config.params.max_datagram_bytes, dst, &msg);
    }

    /// The epoch ended and the learner is not in the next one: it learns that epoch,
    /// asking its members from now on. Called by [`Replica::move_to_epoch`]; false (not a
    /// member).
    pub(super) fn learn_next_epoch(&mut self, now: Instant, next: RslConfig<R>, start: u64) -> bool {
        self.earlier_epochs.push(self.cluster);
        self.cluster = next.identity();
        self.config = next;
        self.epoch_start = start;
        self.transfer = crate::rsl::state_transfer::Transfer::new();
        if self.executor.ops_complete == start {
            self.frozen.take(&self.executor);
            self.retained.reset(start);
        }
        if let Some(l) = self.learning.as_mut() {
            l.ask_at = now;
        }
        Stats::bump(&mut self.stats.epochs_entered);
        false
    }

    /// The epoch ended and the next one adds this learner: it stops learning and rejoins
    /// as its incarnation, becoming durable if it was built so (its incarnation and epoch
    /// first, then the state it holds as a required snapshot: its batches were never handed
    /// out). [`Replica::move_to_epoch`] then enters the epoch as for any rejoining replica.
    pub(super) fn learner_becomes_member(&mut self, now: Instant) {
        let Some(l) = self.learning.take() else { return };
        self.rejoin = Some(crate::rsl::rejoin::Rejoin::new(l.nonce, now));
        if l.durable {
            let ops = self.executor.ops_complete;
            self.journal = Journal::durable_at(0);
            self.journal.incarnation_pending = Some(l.nonce);
            if ops > 0 {
                self.frozen.take(&self.executor);
                self.retained.reset(ops);
                self.journal.skip_to(ops);
            }
        }
    }
}
