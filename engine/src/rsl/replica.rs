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

mod actions;
mod catch_up;
mod checks;
mod epoch;
pub use epoch::Retired;
mod execute;
mod inspect;
pub use inspect::Status;
mod journal;
mod learning;
pub use learning::Learning;
mod queries;
mod receive;
mod recovery;
pub use recovery::Recovery;
mod rejoining;
mod traits;

pub use checks::Monotone;

use super::acceptor::Acceptor;
use super::app::App;
use super::batch::EntryKind;
use super::config::RslConfig;
use super::election::Election;
use super::executor::Executor;
use super::journal::Journal;
use super::learner::Learner;
use super::lease::Hold;
use super::membership::EarlierEpochs;
use super::msg::RslMsg;
use super::proposer::{ClientRequest, Phase, Proposer};
use super::reads::Reads;
use super::rejoin::Rejoin;
use super::retained::{Retained, ENTRY_HEADER_BYTES};
use super::snapshot::Frozen;
use super::state_transfer::{Transfer, SUPPLY_OVERHEAD_BYTES};
use crate::config::ConfigError;
use crate::endpoint::Endpoint;
use crate::outbox::Outbox;
use crate::stats::Stats;
use crate::time::{earliest, Instant};
use crate::wire;

/// Bytes an encoded batch entry adds around the request itself (endpoint, seqno, length).
pub const ENTRY_OVERHEAD_BYTES: usize = 40;
/// Most rounds of spontaneous actions after one event; each round makes progress or stops.
const MAX_ACTION_ROUNDS: usize = 8;

/// What one step asks of the binding besides sending the outbox.
#[must_use = "a durable binding must sync before sending the datagrams that wait for it"]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// The acceptor's durable state changed in this step (the promise, a vote, the
    /// truncation point, or the ballot the proposer started). A durable binding appends
    /// every record of [`Replica::next_record`] and syncs them before any datagram marked
    /// [`Outbox::waits_for_sync`] leaves; see [`crate::rsl::durable`].
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
    /// A partial batch may wait no longer (leader with queued requests). Set to the
    /// arrival time when requests reach an idle leader: a partial batch goes from `tick`.
    Batch,
    /// Re-send 1a in phase 1, or 2a for operations some replica has not executed.
    Retransmit,
    /// Ask (again) for a state snapshot.
    StateTransfer,
    /// Ask every other replica (again) where the protocol stands, while rejoining.
    Rejoin,
}

/// An IronRSL replica running application `A`.
///
/// Capacities are compile-time (no heap): `R` replicas at most, a log window of `W`
/// operations, `D`-byte datagram and batch buffers, a `QB`-byte request queue, a reply
/// cache (and per-epoch request tracking) of `C` clients, replies of `RB` bytes, and a
/// retained tail of executed batches of `TB` bytes (for lagging replicas and the durable
/// log; at least one full batch). Runtime parameters ([`RslConfig`]) must fit inside
/// them; [`Replica::new`] checks.
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
    const TB: usize = 16384,
> {
    config: RslConfig<R>,
    me: usize,
    acceptor: Acceptor<R, W, D>,
    proposer: Proposer<R, W, D, QB, C>,
    learner: Learner<W, D>,
    executor: Executor<A, C, RB>,
    election: Election<C>,
    transfer: Transfer<A, C, RB>,
    /// The point-in-time snapshot this replica supplies and a durable binding persists.
    frozen: Frozen<A, C, RB>,
    /// Executed batches from (at most) the frozen snapshot on.
    retained: Retained<TB>,
    /// What was handed to a durable binding, and what it confirmed.
    journal: Journal,
    stats: Stats,
    heartbeat_at: Instant,
    retransmit_at: Instant,
    /// When each other replica's latest heartbeat arrived (`Instant::ZERO` before the first):
    /// a replica heard within two heartbeat periods is live, and truncation waits for it.
    /// A time, not a bit per period: a duplicate heartbeat at the same instant changes
    /// nothing, which keeps model-checker states that behave alike identical.
    heard_at: [Instant; R],
    durable_changed: bool,
    batch_scratch: heapless::Vec<u8, D>,
    /// This cluster's identity ([`RslConfig::identity`]), sent in every datagram.
    cluster: u32,
    /// The last peer message refused for naming another cluster: sender and its identity.
    last_foreign: Option<(Endpoint, u32)>,
    /// Rejoining after a start without state: no promise or vote until this is `None`.
    rejoin: Option<Rejoin<R>>,
    /// The incarnation nonce of each replica seen without state when this one was born
    /// (0: none): those incarnations never acted, so this replica is new to them.
    born_with: [u64; R],
    /// Queries waiting for a confirmation round and for execution (leader only).
    reads: Reads<R, C>,
    /// The highest checkpoint this replica has sent (in a 2b or a heartbeat).
    ckpt_reported: u64,
    /// With leases: what this acceptor may not promise, and until when
    /// ([`crate::rsl::lease`]).
    hold: Hold,
    /// The first operation of this replica's epoch ([`crate::rsl::membership`]).
    epoch_start: u64,
    /// The identities of the epochs before this one (none in epoch 0): their replicas and
    /// clients are told where the cluster went.
    earlier_epochs: EarlierEpochs,
    /// This replica's epoch ended and the next one does not include it.
    retired: Option<Retired<R>>,
    /// The highest operation this leader proposed a membership change in, until executed.
    change_proposed: Option<u64>,
    /// A learner of its epoch, not yet a member (`replica/learning.rs`).
    learning: Option<learning::Learning>,
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
    /// Replica number `me` of `config`, running `app`, starting at `now`.
    pub fn new(config: RslConfig<R>, me: usize, app: A, now: Instant) -> Result<Self, ConfigError> {
        config.validate(W, D)?;
        if me >= config.n() {
            return Err(ConfigError::BadIndex);
        }
        if RB + SUPPLY_OVERHEAD_BYTES + 32 > config.params.max_datagram_bytes || C == 0 || C > u32::MAX as usize {
            return Err(ConfigError::Invalid("reply capacity (RB) for max_datagram_bytes"));
        }
        if TB < ENTRY_HEADER_BYTES + config.max_batch_bytes() {
            return Err(ConfigError::Invalid("retained tail capacity (TB) for one batch"));
        }
        let n = config.n();
        let baseline = config.params.baseline_view_timeout_ms;
        let executor = Executor::new(app);
        Ok(Replica {
            me,
            acceptor: Acceptor::new(n),
            proposer: Proposer::new(n),
            learner: Learner::default(),
            frozen: Frozen::of(&executor),
            retained: Retained::new(0),
            journal: Journal::in_memory(),
            executor,
            election: Election::new(baseline),
            transfer: Transfer::new(),
            stats: Stats::default(),
            heartbeat_at: now,
            retransmit_at: now.plus_ms(config.params.retransmit_period_ms),
            heard_at: [Instant::ZERO; R],
            durable_changed: false,
            batch_scratch: heapless::Vec::new(),
            cluster: config.identity(),
            last_foreign: None,
            rejoin: None,
            born_with: [0; R],
            reads: Reads::default(),
            ckpt_reported: 0,
            hold: Hold::at_start(now, config.params.lease_ms),
            // A replica of a later epoch starts without its state (it rejoins).
            epoch_start: if config.epoch == 0 { 0 } else { crate::rsl::membership::EPOCH_START_UNKNOWN },
            earlier_epochs: EarlierEpochs::default(),
            retired: None,
            change_proposed: None,
            learning: None,
            config,
        })
    }

    /// Handles one received datagram (IronRSL action 0), then runs the spontaneous actions.
    ///
    /// Anything malformed, from an unknown replica, or out of the protocol's bounds is
    /// counted in [`Replica::stats`] and changes nothing else.
    pub fn handle(&mut self, now: Instant, from: Endpoint, datagram: &[u8], out: &mut Outbox<'_>) -> Step {
        self.durable_changed = false;
        Stats::bump(&mut self.stats.datagrams_in);
        if self.retired.is_some() {
            self.handle_retired(from, datagram, out);
            return Step::default();
        }
        if self.learning.is_some() {
            self.handle_learning(now, from, datagram, out);
            return Step { durable_state_changed: self.durable_changed };
        }
        let before = self.monotone_snapshot();
        let ops_before = self.executor.ops_complete;
        match crate::rsl::msg_codec::decode_rsl(datagram) {
            Err(_) => Stats::bump(&mut self.stats.decode_errors),
            // A client may not know the identity; one that names another cluster was
            // configured for it.
            Ok((cluster, RslMsg::Request { seqno, request })) => {
                let req = ClientRequest { seqno, request: request.0, kind: EntryKind::Single };
                self.on_client_request(now, from, cluster, req, out);
            }
            Ok((cluster, RslMsg::Requests { seqno, requests })) => {
                let req = ClientRequest { seqno, request: requests.0, kind: EntryKind::Group };
                self.on_client_request(now, from, cluster, req, out);
            }
            Ok((cluster, RslMsg::StatusRequest { nonce })) => {
                if cluster == wire::ANY_CLUSTER || cluster == self.cluster {
                    self.answer_status(from, nonce, out);
                } else {
                    self.refuse_foreign(from, cluster);
                }
            }
            Ok((cluster, RslMsg::Change { seqno, change })) => {
                let req = ClientRequest { seqno, request: change.0, kind: EntryKind::Change };
                self.on_client_request(now, from, cluster, req, out);
            }
            Ok((cluster, RslMsg::MembersRequest { nonce })) => {
                if cluster == wire::ANY_CLUSTER || cluster == self.cluster || self.earlier_epochs.contains(cluster) {
                    self.send_members(from, nonce, cluster, out);
                } else {
                    self.refuse_foreign(from, cluster);
                }
            }
            Ok((_, RslMsg::Reply { .. } | RslMsg::Replies { .. } | RslMsg::StatusReply { .. })) => {
                Stats::bump(&mut self.stats.ignored_messages)
            }
            // A replica of an epoch before this one has not moved on: tell it where to, if
            // this replica holds the state the epoch starts from (it can then fetch it
            // here; one told by a replica without it would abandon the old epoch's votes
            // with nobody to fetch from). Never in answer to a membership, which would echo.
            Ok((cluster, msg)) if self.earlier_epochs.contains(cluster) => match msg {
                RslMsg::Members { .. } => Stats::bump(&mut self.stats.ignored_messages),
                _ if self.executor.ops_complete < self.epoch_start => Stats::bump(&mut self.stats.ignored_messages),
                _ => self.send_members(from, 0, cluster, out),
            },
            Ok((cluster, _)) if cluster != self.cluster => self.refuse_foreign(from, cluster),
            Ok((_, msg)) => match self.config.index_of(from) {
                // A learner (`learning`) asks for decisions: supplied as to a laggard.
                None => match msg {
                    RslMsg::AppStateRequest { have, resume, .. } if self.executor.ops_complete > have => {
                        if self.executor.ops_complete < self.epoch_start {
                            Stats::bump(&mut self.stats.ignored_messages);
                        } else {
                            self.supply_state(from, have, resume, out);
                        }
                    }
                    _ => Stats::bump(&mut self.stats.unknown_sender),
                },
                Some(sender) => {
                    if self.valid(&msg) {
                        self.on_peer(now, sender, msg, out);
                    } else {
                        Stats::bump(&mut self.stats.invalid_messages);
                    }
                }
            },
        }
        if self.retired.is_some() {
            return Step { durable_state_changed: self.durable_changed };
        }
        self.run_actions(now, false, out);
        self.answer_queries(now, out);
        self.report_drained_window(out);
        if self.executor.ops_complete > ops_before {
            self.election.reflect_progress(now);
        }
        self.note_undecided(now);
        self.debug_check(before);
        Step { durable_state_changed: self.durable_changed }
    }

    /// Runs the clock-driven actions due at `now`, then the spontaneous ones.
    pub fn tick(&mut self, now: Instant, out: &mut Outbox<'_>) -> Step {
        self.durable_changed = false;
        if self.retired.is_some() {
            return Step::default();
        }
        if self.learning.is_some() {
            self.tick_learning(now, out);
            return Step { durable_state_changed: self.durable_changed };
        }
        let before = self.monotone_snapshot();
        let ops_before = self.executor.ops_complete;
        let p = self.config.params;
        if now >= self.heartbeat_at {
            self.heartbeat_at = now.plus_ms(p.heartbeat_period_ms);
            self.send_heartbeat(out);
            self.renew_lease(now, out);
        }
        if now >= self.retransmit_at {
            self.retransmit_at = now.plus_ms(p.retransmit_period_ms);
            self.retransmit(out);
            self.resend_read_round(out);
        }
        if self.transfer.needed(self.executor.ops_complete) && now >= self.transfer.retry_at {
            self.request_state(now, out);
        }
        if self.rejoin_retry_at().is_some_and(|at| now >= at) {
            self.ask_to_rejoin(now, out);
        }
        if self.retired.is_some() {
            return Step { durable_state_changed: self.durable_changed };
        }
        self.run_actions(now, true, out);
        self.answer_queries(now, out);
        self.report_drained_window(out);
        if self.executor.ops_complete > ops_before {
            self.election.reflect_progress(now);
        }
        self.note_undecided(now);
        self.debug_check(before);
        Step { durable_state_changed: self.durable_changed }
    }

    /// When [`Replica::tick`] must next be called. Calling it earlier is harmless.
    pub fn next_deadline(&self) -> Instant {
        if self.retired.is_some() {
            return Instant::NEVER;
        }
        if let Some(l) = &self.learning {
            return l.ask_at;
        }
        let timers = [
            Timer::Heartbeat,
            Timer::ViewTimeout,
            Timer::Batch,
            Timer::Retransmit,
            Timer::StateTransfer,
            Timer::Rejoin,
        ];
        timers.iter().fold(Instant::NEVER, |acc, t| earliest(acc, self.timer(*t)))
    }

    /// The deadline of one timer, or `None` if it is not armed.
    pub fn timer(&self, t: Timer) -> Option<Instant> {
        match t {
            Timer::Heartbeat => Some(self.heartbeat_at),
            // A rejoining replica takes no part in elections (see `run_actions`).
            Timer::ViewTimeout => match self.election.suspects(self.me) || self.rejoin.is_some() {
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
            Timer::Rejoin => self.rejoin_retry_at(),
        }
    }

    /// A client's request naming `cluster`: served if it names this epoch or none; a
    /// client of an earlier epoch is served and told where the cluster went; another
    /// cluster's is refused.
    fn on_client_request(
        &mut self,
        now: Instant,
        from: Endpoint,
        cluster: u32,
        req: ClientRequest<'_>,
        out: &mut Outbox<'_>,
    ) {
        if self.earlier_epochs.contains(cluster) {
            self.send_members(from, 0, cluster, out);
        } else if cluster != wire::ANY_CLUSTER && cluster != self.cluster {
            self.refuse_foreign(from, cluster);
            return;
        }
        self.on_request(now, from, req, false, out);
    }

    fn refuse_foreign(&mut self, from: Endpoint, cluster: u32) {
        Stats::bump(&mut self.stats.foreign_cluster);
        self.last_foreign = Some((from, cluster));
    }

    /// The largest request a client may send: it must fit one batch.
    pub fn max_request_bytes(&self) -> usize {
        self.config.max_batch_bytes().saturating_sub(ENTRY_OVERHEAD_BYTES)
    }

    /// The acceptor's durable state changed in this step: persist before sending.
    fn acceptor_changed(&mut self) {
        debug_assert!(self.rejoin.is_none(), "a rejoining replica changed its acceptor");
        self.durable_changed = true;
        self.journal.acceptor_dirty |= self.journal.durable;
    }

    /// Tells the election whether this replica holds a vote it has not executed.
    fn note_undecided(&mut self, now: Instant) {
        let ops = self.executor.ops_complete;
        let undecided = self.rejoin.is_none() && self.acceptor.votes().any(|v| v.opn >= ops);
        self.election.reflect_undecided(now, undecided);
    }

    fn leading(&self) -> bool {
        self.proposer.phase == Phase::Two && self.election.current_view == self.proposer.max_ballot_sent_1a
    }

    fn window_open(&self) -> bool {
        self.proposer.next_opn < self.acceptor.log_truncation_point.saturating_add(self.config.params.max_log_length)
    }
}
