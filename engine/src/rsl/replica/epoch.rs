//! Membership change at the replica (the rule is in [`crate::rsl::membership`]): deciding
//! a change when it executes, entering the next epoch, retiring when left out of it, and
//! telling replicas and clients of an ended epoch where the cluster went.

use super::Replica;
use crate::emit::{self, Envelope};
use crate::endpoint::Endpoint;
use crate::outbox::Outbox;
use crate::rsl::acceptor::Acceptor;
use crate::rsl::app::App;
use crate::rsl::ballot::Ballot;
use crate::rsl::config::RslConfig;
use crate::rsl::election::Election;
use crate::rsl::learner::Learner;
use crate::rsl::lease::Hold;
use crate::rsl::membership::{self, Outcome, MAX_ENDPOINT_BYTES};
use crate::rsl::msg::RslMsg;
use crate::rsl::proposer::Proposer;
use crate::rsl::reads::Reads;
use crate::rsl::state_transfer::Transfer;
use crate::stats::Stats;
use crate::time::Instant;
use crate::wire::{self, Bytes};

/// Where a replica that is not in the next epoch tells everyone to go.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Retired<const R: usize> {
    /// The next epoch's configuration.
    pub next: RslConfig<R>,
    /// Its first operation.
    pub start: u64,
}

/// The decision a stop-sign entry asks for, made when it executes.
pub(super) struct Decision<const R: usize> {
    /// The epoch being ended and its replicas.
    pub(super) epoch: u64,
    pub(super) current: heapless::Vec<Endpoint, R>,
    /// The next epoch's replicas, once a change was accepted.
    pub(super) next: Option<heapless::Vec<Endpoint, R>>,
}

impl<const R: usize> Decision<R> {
    /// Decides the change `request` executed as operation `opn`: writes the outcome into
    /// `reply` and returns its length and whether the epoch ends here.
    pub(super) fn decide(&mut self, opn: u64, request: &[u8], reply: &mut [u8]) -> (usize, bool) {
        let outcome = match membership::evaluate::<R>(request, self.epoch, &self.current) {
            // A second change in the stop-sign's batch names an epoch that has ended.
            Ok(_) if self.next.is_some() => {
                Outcome::Refused(membership::Refusal::WrongEpoch { current: self.epoch.saturating_add(1) })
            }
            Ok(next) => {
                self.next = Some(next);
                Outcome::Started { epoch: self.epoch.saturating_add(1), start: opn.saturating_add(1) }
            }
            Err(refusal) => Outcome::Refused(refusal),
        };
        (crate::wire::append_slice(reply, &outcome).unwrap_or(0), self.next.is_some())
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
    /// A decision for a stop-sign in this epoch, to hand to the executor.
    pub(super) fn decision(&self) -> Decision<R> {
        Decision { epoch: self.config.epoch, current: self.config.replicas.clone(), next: None }
    }

    /// The first operation of this replica's epoch (0 in epoch 0), or
    /// [`membership::EPOCH_START_UNKNOWN`] for a replica started for a later epoch without
    /// state until it installed state of that epoch (then where that state was: at or past
    /// the epoch's start).
    pub fn epoch_start(&self) -> u64 {
        self.epoch_start
    }

    /// The epochs this replica passed through before its own, newest first (at most
    /// [`membership::MAX_EARLIER_EPOCHS`]): their replicas and clients are told where the
    /// cluster went.
    pub fn earlier_epochs(&self) -> &membership::EarlierEpochs {
        &self.earlier_epochs
    }

    /// Where this replica's epoch went when it is not in the next one: it then takes no
    /// part, tells clients of its epoch the next one's replicas ([`RslMsg::Members`]), and
    /// supplies its epoch's state to that epoch's replicas that ask.
    pub fn retired(&self) -> Option<&Retired<R>> {
        self.retired.as_ref()
    }

    /// Ends this epoch at operation `start` (its stop-sign executed, or a replica of this
    /// epoch said where the cluster went, perhaps several epochs on): this replica enters
    /// epoch `next` if it is one of its replicas, else retires. Entering starts the next epoch's Paxos
    /// afresh at `start`: no promise, no vote, no view, truncation point `start`. A replica
    /// that executed the stop-sign holds the state at `start`; one told by a peer fetches it
    /// from the next epoch's replicas, like any replica that is behind.
    pub(super) fn end_epoch(&mut self, now: Instant, next: RslConfig<R>, start: u64, out: &mut Outbox<'_>) {
        // Paired with the callers: the stop-sign's executor passes what it executed through
        // it, a peer's membership is refused unless it starts past what was executed.
        debug_assert!(self.executor.ops_complete <= start, "an epoch starts at or after what was executed");
        debug_assert!(next.epoch > self.config.epoch, "epochs only go forward");
        if !self.move_to_epoch(now, next, start) && self.retired.is_some() {
            // One last heartbeat tells its epoch's replicas how far it executed: one that
            // missed the stop-sign fetches it from here instead of waiting for a client.
            self.send_heartbeat(out);
        }
    }

    /// Moves this replica to epoch `next` starting at `start`, as a member or retired;
    /// true when it entered. Shared by [`Replica::end_epoch`] and recovery, which replays an
    /// epoch record after the state it restored (then possibly past `start`).
    pub(super) fn move_to_epoch(&mut self, now: Instant, next: RslConfig<R>, start: u64) -> bool {
        let me = self.own_endpoint();
        let ops = self.executor.ops_complete;
        let index = next.index_of(me);
        if self.learning.is_some() {
            match index {
                None => return self.learn_next_epoch(now, next, start),
                Some(_) => self.learner_becomes_member(now),
            }
        }
        let Some(index) = index else {
            // What is decided after the stop-sign is void: forget it, so that nothing of it
            // is ever executed or supplied from here.
            self.retired = Some(super::epoch::Retired { next, start });
            self.reads = Reads::default();
            self.learner = Learner::default();
            self.proposer = Proposer::new(self.config.n());
            self.change_proposed = None;
            self.journal.enter_epoch(start, false, false);
            self.durable_changed |= self.journal.durable;
            return false;
        };
        let n = next.n();
        let replies_sent = self.acceptor.replies_sent();
        self.acceptor = Acceptor::new(n);
        let fresh = self.acceptor.restore_header(Ballot::default(), start, replies_sent);
        debug_assert!(fresh.is_ok(), "a fresh acceptor's header only goes up");
        self.proposer = Proposer::new(n);
        self.proposer.next_opn = start.max(ops);
        self.learner = Learner::default();
        self.election = Election::new(next.params.baseline_view_timeout_ms);
        self.election.reflect_progress(now);
        self.transfer = Transfer::new();
        self.reads = Reads::default();
        self.hold = Hold::default();
        self.heard_at = [Instant::ZERO; R];
        self.born_with = [0; R];
        self.change_proposed = None;
        // A replica rejoining without its state may have acted in the next epoch before it
        // lost its memory: it rejoins there too, asking the next epoch's replicas.
        if let Some(rejoin) = self.rejoin.as_mut() {
            *rejoin = crate::rsl::rejoin::Rejoin::new(rejoin.nonce, now);
        }
        let state_at_start = ops == start;
        if state_at_start {
            // The stop-sign executed here: its state starts the epoch, and is what this
            // replica supplies (batches of the epoch before are not the next epoch's).
            self.executor.max_bal_reflected = Ballot::default();
            self.frozen.take(&self.executor);
            self.retained.reset(start);
        }
        self.journal.enter_epoch(start, self.rejoin.is_none(), state_at_start);
        self.durable_changed |= self.journal.durable;
        self.me = index;
        self.earlier_epochs.push(self.cluster);
        self.cluster = next.identity();
        self.config = next;
        self.epoch_start = start;
        self.ckpt_reported = 0;
        self.acceptor.record_checkpoint(self.me, self.checkpoint());
        if ops < start {
            self.note_target(start, now);
        }
        Stats::bump(&mut self.stats.epochs_entered);
        true
    }

    /// A peer of this epoch says the cluster moved on: follow if it names a later epoch (the
    /// next one, or one further on when this replica missed changes: any replica of its
    /// epoch that moved on and remembers it says so; the state there it fetches as any
    /// replica that is behind). A learner follows the same way.
    pub(super) fn on_members(&mut self, now: Instant, epoch: u64, start: u64, replicas: &[u8], out: &mut Outbox<'_>) {
        let known = self.epoch_start != membership::EPOCH_START_UNKNOWN;
        // The next epoch begins after this one's stop-sign, which this replica has not
        // executed (it would have entered): a start at or below what it executed is false.
        let stale = start == membership::EPOCH_START_UNKNOWN
            || (known && start < self.epoch_start)
            || start <= self.executor.ops_complete;
        if epoch <= self.config.epoch || stale || self.retired.is_some() {
            Stats::bump(&mut self.stats.ignored_messages);
            return;
        }
        match membership::replicas_of::<R>(replicas) {
            Ok(replicas) => self.end_epoch(now, self.config.at_epoch(epoch, replicas), start, out),
            Err(_) => Stats::bump(&mut self.stats.invalid_messages),
        }
    }

    /// The current membership as a [`RslMsg::Members`] answer (the next epoch's when
    /// retired), encoded into `list`.
    fn members_msg<'l>(&self, nonce: u64, list: &'l mut [u8]) -> RslMsg<'l> {
        let (config, start) = self.epoch_config();
        let used = membership::encode_replicas(&config.replicas, list).unwrap_or(0);
        RslMsg::Members {
            nonce,
            epoch: config.epoch,
            cluster: config.identity(),
            start,
            replicas: Bytes(&list[..used]),
        }
    }

    /// Sends the current membership to `to`, in the envelope of cluster `cluster` (the
    /// asker's, so that a replica of an ended epoch takes it).
    pub(super) fn send_members(&mut self, to: Endpoint, nonce: u64, cluster: u32, out: &mut Outbox<'_>) {
        if self.config.replicas.get(self.me) == Some(&to) && self.retired.is_none() {
            return; // Its own datagram of the epoch before, still in flight.
        }
        let mut list = [0u8; 64 * MAX_ENDPOINT_BYTES];
        let msg = self.members_msg(nonce, &mut list[..R * MAX_ENDPOINT_BYTES]);
        let max = self.config.params.max_datagram_bytes;
        emit::send(out, &mut self.stats, Envelope::Rsl(cluster), max, to, &msg);
        if nonce == 0 {
            Stats::bump(&mut self.stats.redirects); // Unasked: a redirect, not an answer.
        }
    }

    /// A retired replica's whole step: a status or membership request is answered, a
    /// client of its epoch is told where the cluster went, and a replica of its epoch that
    /// asks for state is supplied. Nothing else changes.
    pub(super) fn handle_retired(&mut self, from: Endpoint, datagram: &[u8], out: &mut Outbox<'_>) {
        match crate::rsl::msg_codec::decode_rsl(datagram) {
            Err(_) => Stats::bump(&mut self.stats.decode_errors),
            Ok((_, RslMsg::MembersRequest { nonce })) => self.send_members(from, nonce, wire::ANY_CLUSTER, out),
            Ok((_, RslMsg::StatusRequest { nonce })) => self.answer_status(from, nonce, out),
            Ok((
                _,
                RslMsg::Reply { .. } | RslMsg::Replies { .. } | RslMsg::StatusReply { .. } | RslMsg::Members { .. },
            )) => Stats::bump(&mut self.stats.ignored_messages),
            // A replica of its epoch learns the stop-sign from the log or from state, which
            // this replica supplies (it may be the only one that executed it): told to move
            // on without it, it would abandon votes nobody else holds.
            Ok((cluster, msg)) if cluster == self.cluster && self.config.index_of(from).is_some() => match msg {
                RslMsg::AppStateRequest { have, resume, .. } if self.executor.ops_complete > have => {
                    self.supply_state(from, have, resume, out)
                }
                // Its heartbeat says it has not executed the stop-sign: tell it how far this
                // replica did, so that it asks (the last heartbeat at retiring may have been
                // lost, and the others of its epoch may be too few to decide anything).
                RslMsg::Heartbeat { opn_ckpt, .. } if opn_ckpt < self.checkpoint() => {
                    let max = self.config.params.max_datagram_bytes;
                    let msg = self.heartbeat();
                    emit::send(out, &mut self.stats, Envelope::Rsl(self.cluster), max, from, &msg);
                }
                _ => Stats::bump(&mut self.stats.ignored_messages),
            },
            Ok((cluster, _))
                if cluster == self.cluster || cluster == wire::ANY_CLUSTER || self.earlier_epochs.contains(cluster) =>
            {
                self.send_members(from, 0, cluster, out)
            }
            Ok((cluster, _)) => self.refuse_foreign(from, cluster),
        }
    }

    /// Notes that the leader proposed a batch as operation `opn`: with a membership change
    /// in it (`has_change`), the leader answers no more queries without the log until it
    /// executed past it (see [`crate::rsl::membership`]: after the stop-sign, its state is
    /// stale).
    pub(super) fn note_proposed(&mut self, opn: u64, has_change: bool) {
        if has_change {
            self.change_proposed = Some(self.change_proposed.map_or(opn, |o| o.max(opn)));
        }
    }

    /// A proposed change executed without ending the epoch (refused): queries may go
    /// without the log again.
    pub(super) fn clear_change_proposed(&mut self) {
        if self.change_proposed.is_some_and(|opn| self.executor.ops_complete > opn) {
            self.change_proposed = None;
        }
    }
}
