//! The IronRSL replica: proposer, acceptor, learner, executor, election and state transfer
//! behind the sans-IO entry points `handle`, `tick` and `next_deadline`.
//!
//! IronRSL's scheduler runs ten actions round-robin, one per step. Here `handle` is action 0
//! (process one packet) and `tick` runs the clock-driven actions (heartbeat, view timeout,
//! suspicion quorum, batch timer, retransmission); both then run the spontaneous actions
//! (new view / 1a, phase 2, nominate, truncate, decide, execute) until none applies. A
//! sequence of actions of one host with no receive in between is a valid interleaving of
//! IronRSL steps, so this is the same protocol with fewer wake-ups. Every step reads the
//! clock once: the `now` the caller passes.

use super::acceptor::{Accepted, Acceptor};
use super::app::App;
use super::ballot::Ballot;
use super::batch;
use super::config::RslConfig;
use super::election::Election;
use super::executor::Executor;
use super::learner::Learner;
use super::msg::{RslMsg, SupplyPart, Vote};
use super::proposer::{Phase, Proposer, Queued};
use super::state_transfer::{self, Progress, SnapshotId, Transfer, STATE_CHUNK_BYTES, SUPPLY_OVERHEAD_BYTES};
use crate::config::ConfigError;
use crate::emit;
use crate::endpoint::Endpoint;
use crate::outbox::Outbox;
use crate::stats::Stats;
use crate::time::{earliest, Instant};
use crate::wire::{self, Bytes, Protocol};

/// Bytes an encoded batch entry adds around the request itself (endpoint, seqno, length).
pub const ENTRY_OVERHEAD_BYTES: usize = 40;
/// Most rounds of spontaneous actions after one event; each round makes progress or stops.
const MAX_ACTION_ROUNDS: usize = 8;

/// What one step asks of the binding besides sending the outbox.
#[must_use = "a durable binding must persist before sending when `durable_state_changed` is set"]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// The durable state changed in this step (the acceptor's promise, a vote, the
    /// truncation point, or the ballot the proposer started). A durable binding persists
    /// [`Replica::durable_record`] before any datagram of this step leaves; see
    /// [`crate::rsl::durable`].
    pub durable_state_changed: bool,
}

/// The replica's timers; [`Replica::next_deadline`] is the earliest armed one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Timer {
    /// Next heartbeat broadcast.
    Heartbeat,
    /// A tracked request will have waited a whole epoch unexecuted.
    ViewTimeout,
    /// A partial batch may wait no longer (leader with queued requests).
    Batch,
    /// Re-send 1a in phase 1, or 2a for operations some replica has not executed.
    Retransmit,
    /// Ask (again) for a state snapshot.
    StateTransfer,
}

/// A summary of a replica's state for logs, stats lines and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Status {
    /// The view the replica is in.
    pub view: Ballot,
    /// The proposer's phase.
    pub phase: Phase,
    /// True if this replica leads the current view and is in phase 2.
    pub is_leader: bool,
    /// Operations executed.
    pub ops_complete: u64,
    /// Next operation number the proposer will use.
    pub next_opn: u64,
    /// The acceptor's truncation point.
    pub log_truncation_point: u64,
    /// Requests queued at the proposer.
    pub queued: usize,
    /// The acceptor's highest promised ballot.
    pub max_bal: Ballot,
}

/// An IronRSL replica running application `A`.
///
/// Capacities are compile-time (no heap): `R` replicas at most, a log window of `W`
/// operations, `D`-byte datagram and batch buffers, a `QB`-byte request queue, a reply
/// cache (and per-epoch request tracking) of `C` clients, and replies of `RB` bytes.
/// Runtime parameters ([`RslConfig`]) must fit inside them; [`Replica::new`] checks.
///
/// `Clone`, `PartialEq`, `Eq`, `Hash` and `Debug` (implemented when the application and its
/// staging area have them) exist for model checkers, which store and deduplicate whole
/// replica states. Equality is *protocol-state* equality: the [`Stats`] counters, the
/// batch scratch buffer and the per-step durability flag are left out, as none of them
/// influences what the replica does next.
pub struct Replica<
    A: App,
    const R: usize = 7,
    const W: usize = 8,
    const D: usize = 1472,
    const QB: usize = 16384,
    const C: usize = 256,
    const RB: usize = 256,
> {
    config: RslConfig<R>,
    me: usize,
    acceptor: Acceptor<R, W, D>,
    proposer: Proposer<R, W, D, QB, C>,
    learner: Learner<W, D>,
    executor: Executor<A, C, RB>,
    election: Election<C>,
    transfer: Transfer<A, C, RB>,
    stats: Stats,
    heartbeat_at: Instant,
    retransmit_at: Instant,
    /// When each other replica's latest heartbeat arrived (`Instant::ZERO` before the first):
    /// a replica heard within two heartbeat periods is live, and truncation waits for it.
    /// A time, not a bit per period: a duplicate heartbeat at the same instant changes
    /// nothing, which keeps model-checker states that behave alike identical.
    heard_at: [Instant; R],
    durable_changed: bool,
    /// The operation this step voted on (at most one: a step handles one 2a).
    durable_vote: Option<u64>,
    batch_scratch: heapless::Vec<u8, D>,
}

impl<A: App, const R: usize, const W: usize, const D: usize, const QB: usize, const C: usize, const RB: usize>
    Replica<A, R, W, D, QB, C, RB>
{
    /// Replica number `me` of `config`, running `app`, starting at `now`.
    pub fn new(config: RslConfig<R>, me: usize, app: A, now: Instant) -> Result<Self, ConfigError> {
        config.validate(W, D)?;
        if me >= config.n() {
            return Err(ConfigError::BadIndex);
        }
        if RB + SUPPLY_OVERHEAD_BYTES + 32 > config.params.max_datagram_bytes || C == 0 || C > u32::MAX as usize {
            return Err(ConfigError::Invalid("reply capacity (RB) for max_datagram_bytes"));
        }
        let n = config.n();
        let baseline = config.params.baseline_view_timeout_ms;
        Ok(Replica {
            me,
            acceptor: Acceptor::new(n),
            proposer: Proposer::new(n),
            learner: Learner::default(),
            executor: Executor::new(app),
            election: Election::new(baseline),
            transfer: Transfer::new(),
            stats: Stats::default(),
            heartbeat_at: now,
            retransmit_at: now.plus_ms(config.params.retransmit_period_ms),
            heard_at: [Instant::ZERO; R],
            durable_changed: false,
            durable_vote: None,
            batch_scratch: heapless::Vec::new(),
            config,
        })
    }

    /// Handles one received datagram (IronRSL action 0), then runs the spontaneous actions.
    ///
    /// Anything malformed, from an unknown replica, or out of the protocol's bounds is
    /// counted in [`Replica::stats`] and changes nothing else.
    pub fn handle(&mut self, now: Instant, from: Endpoint, datagram: &[u8], out: &mut Outbox<'_>) -> Step {
        self.durable_changed = false;
        self.durable_vote = None;
        Stats::bump(&mut self.stats.datagrams_in);
        let before = self.monotone_snapshot();
        match wire::decode::<RslMsg<'_>>(Protocol::Rsl, datagram) {
            Err(_) => Stats::bump(&mut self.stats.decode_errors),
            Ok(RslMsg::Request { seqno, request }) => self.on_request(now, from, seqno, request.0, out),
            Ok(RslMsg::Reply { .. }) => Stats::bump(&mut self.stats.ignored_messages),
            Ok(msg) => match self.config.index_of(from) {
                None => Stats::bump(&mut self.stats.unknown_sender),
                Some(sender) => {
                    if self.valid(&msg) {
                        self.on_peer(now, sender, msg, out);
                    } else {
                        Stats::bump(&mut self.stats.invalid_messages);
                    }
                }
            },
        }
        self.run_actions(now, out);
        self.debug_check(before);
        Step { durable_state_changed: self.durable_changed }
    }

    /// Runs the clock-driven actions due at `now`, then the spontaneous ones.
    pub fn tick(&mut self, now: Instant, out: &mut Outbox<'_>) -> Step {
        self.durable_changed = false;
        self.durable_vote = None;
        let before = self.monotone_snapshot();
        let p = self.config.params;
        if now >= self.heartbeat_at {
            self.heartbeat_at = now.plus_ms(p.heartbeat_period_ms);
            self.send_heartbeat(out);
        }
        if now >= self.retransmit_at {
            self.retransmit_at = now.plus_ms(p.retransmit_period_ms);
            self.retransmit(out);
        }
        if self.transfer.needed(self.executor.ops_complete) && now >= self.transfer.retry_at {
            self.request_state(now, out);
        }
        self.run_actions(now, out);
        self.debug_check(before);
        Step { durable_state_changed: self.durable_changed }
    }

    /// When [`Replica::tick`] must next be called. Calling it earlier is harmless.
    pub fn next_deadline(&self) -> Instant {
        let timers = [Timer::Heartbeat, Timer::ViewTimeout, Timer::Batch, Timer::Retransmit, Timer::StateTransfer];
        timers.iter().fold(Instant::NEVER, |acc, t| earliest(acc, self.timer(*t)))
    }

    /// The deadline of one timer, or `None` if it is not armed.
    pub fn timer(&self, t: Timer) -> Option<Instant> {
        match t {
            Timer::Heartbeat => Some(self.heartbeat_at),
            Timer::ViewTimeout => match self.election.suspects(self.me) {
                true => None,
                false => self.election.deadline(),
            },
            // Armed only while a batch could be proposed: with the window full, the batch
            // waits for the window to slide (a message), not for time.
            Timer::Batch => match self.leading() && self.proposer.queued() > 0 && self.window_open() {
                true => self.proposer.batch_deadline,
                false => None,
            },
            Timer::Retransmit => Some(self.retransmit_at),
            Timer::StateTransfer => {
                let retry = self.transfer.needed(self.executor.ops_complete).then_some(self.transfer.retry_at);
                let lag = self.transfer.behind.map(|(_, since)| since.plus_ms(self.lag_grace_ms()));
                [retry, lag].into_iter().flatten().min()
            }
        }
    }

    /// Counters of what this replica received, sent and refused.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// A summary of the replica's state.
    pub fn status(&self) -> Status {
        Status {
            view: self.election.current_view,
            phase: self.proposer.phase,
            is_leader: self.leading(),
            ops_complete: self.executor.ops_complete,
            next_opn: self.proposer.next_opn,
            log_truncation_point: self.acceptor.log_truncation_point,
            queued: self.proposer.queued(),
            max_bal: self.acceptor.max_bal,
        }
    }

    /// The application (read-only: it changes only by executing decided batches).
    pub fn app(&self) -> &A {
        &self.executor.app
    }

    /// The configuration.
    pub fn config(&self) -> &RslConfig<R> {
        &self.config
    }

    /// This replica's index.
    pub fn id(&self) -> usize {
        self.me
    }

    /// The acceptor role (for checkers and tests).
    pub fn acceptor(&self) -> &Acceptor<R, W, D> {
        &self.acceptor
    }

    /// The learner role (for checkers and tests).
    pub fn learner(&self) -> &Learner<W, D> {
        &self.learner
    }

    /// The executor role (for checkers and tests).
    pub fn executor(&self) -> &Executor<A, C, RB> {
        &self.executor
    }

    /// The proposer role (for checkers and tests).
    pub fn proposer(&self) -> &Proposer<R, W, D, QB, C> {
        &self.proposer
    }

    /// The election role (for checkers and tests).
    pub fn election(&self) -> &Election<C> {
        &self.election
    }

    /// The state-transfer role (for checkers and tests).
    pub fn transfer(&self) -> &Transfer<A, C, RB> {
        &self.transfer
    }

    /// The largest request a client may send: it must fit one batch.
    pub fn max_request_bytes(&self) -> usize {
        self.config.max_batch_bytes().saturating_sub(ENTRY_OVERHEAD_BYTES)
    }

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
        if self.proposer.phase != Phase::Idle && usize::from(self.proposer.max_ballot_sent_1a.proposer) != self.me {
            return Err("proposer active for another replica's ballot");
        }
        if self.proposer.max_ballot_sent_1a > self.election.current_view {
            return Err("proposer started a ballot above the replica's view");
        }
        // Truncation never lags behind every checkpoint: each term of `truncation_target` is
        // at or above the lowest one, and checkpoints are recorded before it runs.
        if self.acceptor.log_truncation_point < self.acceptor.min_checkpoint() {
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
            max_bal: self.acceptor.max_bal,
            log_truncation_point: self.acceptor.log_truncation_point,
            checkpoints,
            ops_complete: self.executor.ops_complete,
            executed_digest: self.executor.executed_digest,
            max_bal_reflected: self.executor.max_bal_reflected,
            max_ballot_seen: self.learner.max_ballot_seen,
            max_ballot_sent_1a: self.proposer.max_ballot_sent_1a,
            view: self.election.current_view,
            epoch_length_ms: self.election.epoch_length_ms,
        }
    }

    /// The operation the last step voted on (see `rsl::durable`).
    pub(crate) fn step_vote(&self) -> Option<u64> {
        self.durable_vote
    }

    /// Recovery: one durable record's vote.
    pub(crate) fn restore_vote(&mut self, bal: Ballot, opn: u64, batch: &[u8]) -> Result<(), &'static str> {
        self.acceptor.restore_vote(bal, opn, batch, self.config.params.max_log_length)
    }

    /// Recovery: one durable record's promise, truncation point and ballots.
    pub(crate) fn restore_header(&mut self, r: &super::durable::DurableRecord<'_>) -> Result<(), &'static str> {
        self.acceptor.restore_header(r.max_bal, r.log_truncation_point, r.replies_sent)?;
        if r.max_ballot_sent_1a < self.proposer.max_ballot_sent_1a {
            return Err("proposer ballot went down");
        }
        self.proposer.max_ballot_sent_1a = r.max_ballot_sent_1a;
        // The view is at least every ballot this replica promised or started, so that the
        // proposer never re-starts a ballot it already used (action 1 needs view > sent).
        let view = self.election.current_view.max(r.max_bal).max(r.max_ballot_sent_1a);
        self.election.current_view = view;
        Ok(())
    }

    /// Recovery done: behind by everything below the truncation point, fetch it.
    pub(crate) fn rejoin(&mut self, now: Instant) {
        self.note_target(self.acceptor.log_truncation_point, now);
    }

    fn leading(&self) -> bool {
        self.proposer.phase == Phase::Two && self.election.current_view == self.proposer.max_ballot_sent_1a
    }

    fn window_open(&self) -> bool {
        self.proposer.next_opn < self.acceptor.log_truncation_point.saturating_add(self.config.params.max_log_length)
    }

    fn monotone_snapshot(&self) -> Option<Monotone<R>> {
        cfg!(debug_assertions).then(|| self.monotone())
    }

    /// Pairs of assertions around every step (debug builds): what only grows, and what must
    /// always hold.
    fn debug_check(&self, before: Option<Monotone<R>>) {
        if let Some(before) = before {
            debug_assert_eq!(before.check_step(&self.monotone()), Ok(()));
            debug_assert_eq!(self.check_invariants(), Ok(()));
        }
    }

    /// Protocol bounds of a decoded peer message, checked before any state is touched.
    fn valid(&self, msg: &RslMsg<'_>) -> bool {
        let n = self.config.n();
        let max_entries = self.config.params.max_batch_size;
        let max_bytes = self.config.max_batch_bytes();
        let batch_ok = |b: &Bytes<'_>| b.0.len() <= max_bytes && batch::validate(b.0, max_entries).is_ok();
        match msg {
            RslMsg::OneA { bal } | RslMsg::StartingPhase2 { bal, .. } | RslMsg::Heartbeat { bal, .. } => {
                bal.is_valid_for(n)
            }
            RslMsg::AppStateRequest { bal, .. } | RslMsg::AppStateSupply { bal, .. } => bal.is_valid_for(n),
            RslMsg::OneB { bal, chunk, chunks, vote, .. } => {
                bal.is_valid_for(n)
                    && chunk < chunks
                    && usize::from(*chunks) <= self.config.params.max_log_length as usize + 1
                    && vote.as_ref().is_none_or(|v| v.bal.is_valid_for(n) && v.bal < *bal && batch_ok(&v.batch))
            }
            RslMsg::TwoA { bal, batch, .. } | RslMsg::TwoB { bal, batch, .. } => bal.is_valid_for(n) && batch_ok(batch),
            RslMsg::Request { .. } | RslMsg::Reply { .. } => true,
        }
    }

    fn on_request(&mut self, now: Instant, from: Endpoint, seqno: u64, request: &[u8], out: &mut Outbox<'_>) {
        if request.len() > self.max_request_bytes() {
            Stats::bump(&mut self.stats.invalid_messages);
            return;
        }
        let max = self.config.params.max_datagram_bytes;
        if let Some(cached) = self.executor.reply_cache.get(from) {
            if seqno == cached.seqno {
                let msg = RslMsg::Reply { seqno, reply: Bytes(&cached.reply) };
                emit::send(out, &mut self.stats, Protocol::Rsl, max, from, &msg);
                return;
            }
            if seqno < cached.seqno {
                Stats::bump(&mut self.stats.ignored_messages);
                return;
            }
        }
        self.election.reflect_received(now, from, seqno);
        // IronRSL queues whenever the proposer is active (phase 1 or 2) in the current view.
        if self.proposer.phase != Phase::Idle && self.election.current_view == self.proposer.max_ballot_sent_1a {
            let delay = self.config.params.max_batch_delay_ms;
            if self.proposer.queue_request(from, seqno, request, now, delay) == Queued::Full {
                Stats::bump(&mut self.stats.queue_full);
            }
        }
    }

    fn on_peer(&mut self, now: Instant, sender: usize, msg: RslMsg<'_>, out: &mut Outbox<'_>) {
        let max = self.config.params.max_datagram_bytes;
        match msg {
            RslMsg::OneA { bal } => {
                if !self.acceptor.promise(bal) {
                    Stats::bump(&mut self.stats.ignored_messages);
                    return;
                }
                self.durable_changed = true;
                let reply_id = self.acceptor.next_reply_id();
                let mut votes = self.acceptor.votes();
                let chunks = self.acceptor.vote_count().max(1) as u8;
                let dst = self.config.replicas[sender];
                for chunk in 0..chunks {
                    let vote = votes.next().map(|v| Vote { opn: v.opn, bal: v.bal, batch: Bytes(&v.batch) });
                    let log_truncation_point = self.acceptor.log_truncation_point;
                    let msg = RslMsg::OneB { bal, log_truncation_point, reply_id, chunk, chunks, vote };
                    emit::send(out, &mut self.stats, Protocol::Rsl, max, dst, &msg);
                }
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
                match self.acceptor.accept(bal, opn, batch.0, len) {
                    Accepted::Stale => Stats::bump(&mut self.stats.ignored_messages),
                    Accepted::Voted => {
                        self.durable_changed = true;
                        self.durable_vote = Some(opn);
                        let opn_ckpt = self.executor.ops_complete;
                        let msg = RslMsg::TwoB { bal, opn, batch, opn_ckpt };
                        emit::broadcast(out, &mut self.stats, Protocol::Rsl, max, &self.config.replicas, &msg);
                    }
                }
            }
            RslMsg::TwoB { bal, opn, batch, opn_ckpt } => {
                self.acceptor.record_checkpoint(sender, opn_ckpt);
                let ops = self.executor.ops_complete;
                if self.learner.process_2b(sender, bal, opn, batch.0, ops) == super::learner::Learned::Ignored {
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
            RslMsg::AppStateRequest { opn, app_offset, cache_index, resume_digest, .. } => {
                if self.executor.ops_complete < opn.max(1) || sender == self.me {
                    Stats::bump(&mut self.stats.ignored_messages);
                    return;
                }
                self.supply_state(self.config.replicas[sender], app_offset, cache_index, resume_digest, out);
            }
            RslMsg::AppStateSupply { bal, opn, digest, app_len, cache_entries, executed_digest, part } => {
                let id = SnapshotId { bal, opn, digest, app_len, cache_entries, executed_digest };
                match self.transfer.receive(sender, id, part, self.executor.ops_complete) {
                    Progress::Ignored => Stats::bump(&mut self.stats.ignored_messages),
                    Progress::Corrupt => Stats::bump(&mut self.stats.invalid_messages),
                    Progress::Staged => {}
                    Progress::Complete => self.install_state(),
                }
            }
            RslMsg::Request { .. } | RslMsg::Reply { .. } => {}
        }
    }

    /// A truncation point past our execution means the decisions we miss are gone: fetch state.
    fn note_target(&mut self, opn: u64, now: Instant) {
        if opn > self.transfer.target_opn {
            self.transfer.target_opn = opn;
            if self.transfer.needed(self.executor.ops_complete) && self.transfer.incoming.is_none() {
                self.transfer.retry_at = now;
            }
        }
    }

    /// How long the log may take to bring a replica up to a point another replica reached.
    fn lag_grace_ms(&self) -> u64 {
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
    fn watch_lag(&mut self, now: Instant) {
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

    fn install_state(&mut self) {
        match self.transfer.install(&mut self.executor) {
            Ok(id) => {
                self.learner.forget_below(id.opn);
                self.acceptor.record_checkpoint(self.me, id.opn);
                if self.proposer.phase == Phase::Two && self.proposer.next_opn < id.opn {
                    self.proposer.next_opn = id.opn;
                }
            }
            Err(_) => Stats::bump(&mut self.stats.invalid_messages),
        }
    }

    fn request_state(&mut self, now: Instant, out: &mut Outbox<'_>) {
        let target = self.transfer.target_opn;
        let n = self.config.n();
        self.transfer.retry_at = now.plus_ms(self.config.params.retransmit_period_ms);
        // Keep asking the replica that is answering; on a stall rotate among replicas known
        // to have executed far enough (any other replica if none is known).
        let supplier = match self.transfer.on_request(2 * n as u32) {
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
        let (app_offset, cache_index, resume_digest) = self.transfer.resume_point();
        let msg = RslMsg::AppStateRequest {
            bal: self.election.current_view,
            opn: target.max(self.executor.ops_complete + 1),
            app_offset,
            cache_index,
            resume_digest,
        };
        let dst = self.config.replicas[supplier];
        emit::send(out, &mut self.stats, Protocol::Rsl, self.config.params.max_datagram_bytes, dst, &msg);
    }

    /// Emits this replica's snapshot to `dst` from the requested offsets, all in this step.
    fn supply_state(
        &mut self,
        dst: Endpoint,
        app_offset: u64,
        cache_index: u32,
        resume_digest: u64,
        out: &mut Outbox<'_>,
    ) {
        let id = state_transfer::snapshot_id(&self.executor);
        let (mut offset, mut index) = match resume_digest == id.resume_token() {
            true => (app_offset.min(id.app_len), cache_index.min(id.cache_entries)),
            false => (0, 0),
        };
        let max = self.config.params.max_datagram_bytes;
        let room = max - SUPPLY_OVERHEAD_BYTES;
        let mut budget = self.config.params.state_chunks_per_step;
        let mut chunk = [0u8; STATE_CHUNK_BYTES];
        while offset < id.app_len && budget > 0 {
            let take = room.min(STATE_CHUNK_BYTES);
            let n = self.executor.app.snapshot_read(offset, &mut chunk[..take]);
            if n == 0 {
                return;
            }
            let msg = supply_msg(&id, SupplyPart::App { offset, bytes: Bytes(&chunk[..n]) });
            if !emit::send(out, &mut self.stats, Protocol::Rsl, max, dst, &msg) {
                return;
            }
            offset += n as u64;
            budget -= 1;
        }
        let mut entries: heapless::Vec<u8, D> = heapless::Vec::new();
        while index < id.cache_entries && budget > 0 {
            entries.clear();
            let first = index;
            while let Some(e) = self.executor.reply_cache.wire(index as usize) {
                let before = entries.len();
                if wire::append(&mut entries, &e).is_err() || entries.len() > room {
                    entries.truncate(before);
                    break;
                }
                index += 1;
            }
            if index == first {
                return; // An entry larger than a datagram: ruled out by `new`'s RB check.
            }
            let msg = supply_msg(&id, SupplyPart::Cache { index: first, entries: Bytes(&entries) });
            if !emit::send(out, &mut self.stats, Protocol::Rsl, max, dst, &msg) {
                return;
            }
            budget -= 1;
        }
    }

    fn send_heartbeat(&mut self, out: &mut Outbox<'_>) {
        let msg = RslMsg::Heartbeat {
            bal: self.election.current_view,
            suspicious: self.election.suspects(self.me),
            opn_ckpt: self.executor.ops_complete,
        };
        let max = self.config.params.max_datagram_bytes;
        emit::broadcast(out, &mut self.stats, Protocol::Rsl, max, &self.config.replicas, &msg);
    }

    /// Recovers lost 1a/1b and 2a/2b without waiting for a view change: in phase 1 the 1a
    /// is re-sent; in phase 2 every proposal some replica has not executed yet (and that
    /// this replica's acceptor still holds) is re-sent. Bounded by the log window.
    fn retransmit(&mut self, out: &mut Outbox<'_>) {
        let max = self.config.params.max_datagram_bytes;
        let bal = self.proposer.max_ballot_sent_1a;
        if self.election.current_view != bal {
            return;
        }
        match self.proposer.phase {
            Phase::Idle => {}
            Phase::One => {
                emit::broadcast(out, &mut self.stats, Protocol::Rsl, max, &self.config.replicas, &RslMsg::OneA { bal });
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
                        emit::send(out, &mut self.stats, Protocol::Rsl, max, self.config.replicas[r], &start);
                    }
                }
                // Every held vote is at or above the truncation point, hence at or above the
                // lowest checkpoint (`check_invariants`): some replica has not executed it.
                let next = self.proposer.next_opn;
                for v in self.acceptor.votes() {
                    if v.bal == bal && v.opn < next {
                        let msg = RslMsg::TwoA { bal, opn: v.opn, batch: Bytes(&v.batch) };
                        emit::broadcast(out, &mut self.stats, Protocol::Rsl, max, &self.config.replicas, &msg);
                    }
                }
            }
        }
    }

    /// IronRSL actions 1-8 minus the receive, repeated while they make progress.
    fn run_actions(&mut self, now: Instant, out: &mut Outbox<'_>) {
        let quorum = self.config.quorum();
        let n = self.config.n();
        let p = self.config.params;
        let max = p.max_datagram_bytes;
        // Action 7 and 8: view timeout and quorum of suspicions.
        self.election.check_timeout(now, self.me);
        self.election.check_quorum(now, quorum, n, p.max_view_timeout_ms);
        for _ in 0..MAX_ACTION_ROUNDS {
            let mut progress = false;
            // Action 1: a view this replica leads that it has not started: send 1a.
            let view = self.election.current_view;
            if usize::from(view.proposer) == self.me && view > self.proposer.max_ballot_sent_1a {
                self.proposer.start_phase1(view);
                // Durable: a restarted leader must not start this ballot again.
                self.durable_changed = true;
                emit::broadcast(
                    out,
                    &mut self.stats,
                    Protocol::Rsl,
                    max,
                    &self.config.replicas,
                    &RslMsg::OneA { bal: view },
                );
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
                emit::broadcast(out, &mut self.stats, Protocol::Rsl, max, &self.config.replicas, &msg);
                progress = true;
            }
            // Action 3: nominate old values, then new batches, inside the window.
            progress |= self.nominate(now, out);
            // Action 4: truncate the log (at most at the quorum-th highest checkpoint).
            self.acceptor.record_checkpoint(self.me, self.executor.ops_complete);
            let point = self.truncation_target(quorum, now);
            if point > self.acceptor.log_truncation_point {
                self.acceptor.truncate(point);
                self.durable_changed = true;
                progress = true;
            }
            self.note_target(self.acceptor.log_truncation_point, now);
            // Actions 5 and 6: decide and execute, in order.
            progress |= self.execute_decided(out);
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
    fn truncation_target(&self, quorum: usize, now: Instant) -> u64 {
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

    fn nominate(&mut self, now: Instant, out: &mut Outbox<'_>) -> bool {
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
                emit::broadcast(out, &mut self.stats, Protocol::Rsl, max, &self.config.replicas, &msg);
            } else {
                let queued = self.proposer.queued();
                if queued == 0 {
                    self.proposer.batch_deadline = None;
                    break;
                }
                // Adaptive batching: with nothing in flight a partial batch goes at once;
                // otherwise it waits to fill or for the batch timer.
                let idle = self.executor.ops_complete >= opn;
                let expired = self.proposer.batch_deadline.is_some_and(|d| now >= d);
                if queued < p.max_batch_size && !idle && !expired {
                    break;
                }
                let taken =
                    self.proposer.take_batch(p.max_batch_size, self.config.max_batch_bytes(), &mut self.batch_scratch);
                if taken == 0 {
                    continue;
                }
                self.proposer.batch_deadline = (self.proposer.queued() > 0).then(|| now.plus_ms(p.max_batch_delay_ms));
                let msg = RslMsg::TwoA { bal, opn, batch: Bytes(&self.batch_scratch) };
                emit::broadcast(out, &mut self.stats, Protocol::Rsl, max, &self.config.replicas, &msg);
            }
            self.proposer.next_opn = opn + 1;
            progress = true;
        }
        progress
    }

    fn execute_decided(&mut self, out: &mut Outbox<'_>) -> bool {
        let quorum = self.config.quorum();
        let max = self.config.params.max_datagram_bytes;
        let mut progress = false;
        for _ in 0..W {
            let opn = self.executor.ops_complete;
            let Some(slot) = self.learner.decided(opn, quorum) else { break };
            let bal = self.learner.max_ballot_seen;
            // The leader that proposed the batch answers; the others only update their
            // caches (a client that retries elsewhere is answered from the cache).
            let answer = usize::from(bal.proposer) == self.me;
            let stats = &mut self.stats;
            self.executor.execute(bal, &slot.batch, |r| {
                if answer {
                    let msg = RslMsg::Reply { seqno: r.seqno, reply: Bytes(r.reply) };
                    emit::send(out, stats, Protocol::Rsl, max, r.client, &msg);
                }
            });
            for e in batch::entries(&slot.batch) {
                self.election.reflect_executed(e.client, e.seqno);
            }
            self.learner.forget_below(self.executor.ops_complete);
            progress = true;
        }
        progress
    }
}

/// The values of one replica that never decrease (IronRSL's monotonicity lemmas over one
/// host step): [`Monotone::check_step`] compares a state with its successor.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Monotone<const R: usize> {
    /// The acceptor's promise.
    pub max_bal: Ballot,
    /// The acceptor's truncation point.
    pub log_truncation_point: u64,
    /// The checkpoint each replica has reported.
    pub checkpoints: heapless::Vec<u64, R>,
    /// Operations executed.
    pub ops_complete: u64,
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
    /// The view-change epoch length (doubles, capped).
    pub epoch_length_ms: u64,
}

impl<const R: usize> Monotone<R> {
    /// Checks that `next` (the state after one `handle` or `tick`) lost nothing of `self`.
    pub fn check_step(&self, next: &Monotone<R>) -> Result<(), &'static str> {
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
        if next.epoch_length_ms < self.epoch_length_ms {
            return Err("epoch length went down");
        }
        Ok(())
    }
}

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

fn supply_msg<'a>(id: &SnapshotId, part: SupplyPart<'a>) -> RslMsg<'a> {
    RslMsg::AppStateSupply {
        bal: id.bal,
        opn: id.opn,
        digest: id.digest,
        app_len: id.app_len,
        cache_entries: id.cache_entries,
        executed_digest: id.executed_digest,
        part,
    }
}
