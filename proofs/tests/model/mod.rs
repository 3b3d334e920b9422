//! A stateright model of a Fleet RSL cluster whose actors *are* the engine: each replica
//! actor holds a real `fleet_engine::rsl::Replica` and each client actor a real `Client`,
//! exchanging the real wire bytes.
//!
//! * **Network**: stateright's unordered duplicating network. Any sent datagram may be
//!   delivered any number of times, in any order, or never; the network is therefore the set
//!   of every datagram ever sent, IronFleet's `sentPackets`, which the cross-host invariants
//!   of `fleet_proofs::rsl_invariants` are stated over. Loss adds nothing for safety (a
//!   message never delivered is a lost one) and is left off.
//! * **Time**: each host has its own clock. A host's timer is one stateright timer that may
//!   fire at any moment; firing it jumps that host's clock to its `next_deadline()` and
//!   calls `tick`. So any timeout may fire between any two deliveries, which covers every
//!   real timing (clocks of different hosts are unrelated). `handle` runs at the host's
//!   current clock.
//! * **Scope**: bounded by [`Scope`]: ticks per host and in total, repeated 1a deliveries
//!   per replica (each re-promises under a fresh 1b reply id, so duplicates would otherwise
//!   be unbounded), and the highest view (`within_boundary`). A delivery or timer outside the budget is
//!   treated as never happening, which is a behaviour the real network and clocks allow:
//!   bounding only removes behaviours, so every violation found is real, and "no violation"
//!   means none within the scope.
//! * **Planted bugs** ([`Planted`]) live only here, as actor wrappers that mutate what a
//!   replica receives or sends; the engine is unchanged.
#![allow(dead_code)]

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, Instant as WallClock};

use fleet_engine::rsl::apps::counter::Counter;
use fleet_engine::rsl::msg::{SupplyPart, Vote};
use fleet_engine::rsl::proposer::Phase;
use fleet_engine::rsl::{Ballot, Client, DurableRecord, Params, Replica, RslConfig, RslMsg};
use fleet_engine::wire::{self, Bytes, Protocol};
use fleet_engine::{Endpoint, Instant, OutboxBuf};
use fleet_proofs::linearizability::{self, Operation};
use fleet_proofs::rsl_invariants::{self as inv, Sent};
use fleet_proofs::spec::rsl::{ClientOps, CounterApp};
use fleet_proofs::Budget;
use stateright::actor::{model_timeout, Actor, ActorModel, ActorModelState, Id, Out};
use stateright::{Checker, Expectation, Model};

#[path = "../walk/mod.rs"]
pub mod walk;
pub use walk::SimOpts;

pub mod members;
pub use members::{Membership, MEMBERS_CI_STATES};
pub mod durable_members;
pub use durable_members::DURABLE_MEMBERS_CI_STATES;
pub mod learners;
pub use learners::LEARNERS_CI_STATES;

/// The replica under check: the paper's counter app, 3 replicas at most, a window of 4,
/// 256-byte datagrams, a 512-byte request queue, 4 cached clients, 16-byte replies.
pub type MReplica = Replica<Counter, 3, 4, 256, 512, 4, 16, 1024>;
/// The client under check.
pub type MClient = Client<3, 256>;
type Buf = OutboxBuf<64, 16384>;

thread_local! {
    /// One outbox per checker thread, reused by every step (zeroing 16 KiB per step was
    /// a measurable share of the run time).
    static BUF: std::cell::RefCell<Box<Buf>> = std::cell::RefCell::new(Box::new(Buf::new()));
}

fn with_outbox<T>(f: impl FnOnce(&mut fleet_engine::Outbox<'_>) -> T) -> T {
    BUF.with(|b| {
        let mut b = b.borrow_mut();
        let mut out = b.outbox();
        f(&mut out)
    })
}

/// What the model explores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scope {
    /// Replicas (at most 3).
    pub replicas: usize,
    /// Clients.
    pub clients: usize,
    /// Requests each client submits, one after the other.
    pub requests: u32,
    /// No host goes beyond this view (or promises a higher ballot).
    pub max_view: Ballot,
    /// Timer firings per replica (by replica index).
    pub replica_ticks: [u8; 3],
    /// Timer firings of all replicas together.
    pub total_ticks: u8,
    /// Timer firings (retransmissions) per client.
    pub client_ticks: u8,
    /// Repeated 1a deliveries per replica (a 1a for the ballot the acceptor has already
    /// promised: it re-promises under a fresh reply id). A 1a for a higher ballot is always
    /// deliverable (ballots are bounded by `max_view`).
    pub one_a: u8,
    /// A replica's timer can fire only while it tracks an unexecuted request (the view
    /// timer's precondition). Narrows the schedules to those where timers matter, so a
    /// depth-first search reaches view changes early (used for planted bugs).
    pub lazy_timers: bool,
    /// A replica also feeds the datagrams it addresses to itself straight back to `handle`
    /// in the same step (a binding may, per the sans-IO contract); they still go on the
    /// network too, so they stay in the sent set. Fewer interleavings (used for planted
    /// bugs).
    pub self_loop: bool,
    /// Client `j` lists the replicas starting at replica `j` (so its first request goes
    /// there) instead of all clients starting at replica 0.
    pub rotate_clients: bool,
    /// The log window (`max_log_length`).
    pub max_log_length: u64,
    /// Amnesia: how many times in all (0 or 1) a replica may be replaced, at any moment, by
    /// a new incarnation without state (`Replica::new_rejoining`, fresh nonce), its clock and
    /// budgets carried over; every other replica is up (the model crashes nothing else).
    pub restarts: u8,
    /// Which replicas may restart (bit `i`: replica `i`).
    pub restartable: u8,
    /// Durable replicas: each starts without state as a new cluster (`Replica::new_durable`,
    /// born by the rejoin rule), keeps every record it hands out in its log (written within
    /// the step, so before the step's datagrams leave), and a restart rebuilds it from that
    /// log (`Replica::recover`: nothing is lost) instead of replacing it with an amnesiac.
    pub durable: bool,
    /// [`Scope::durable`] with lazy syncs: a step that sends no datagram waiting for the
    /// sync (`Outbox::any_waits_for_sync`) leaves the records it handed out unsynced until
    /// the replica's next step begins (the binding syncs then, as it may at any moment); a
    /// step that sends one syncs them before it leaves. A crash in between
    /// ([`ModelTimer::Crash`]) loses the unsynced records. Without it every step's records
    /// are synced within the step.
    pub lazy_sync: bool,
    /// [`Scope::durable`]: a restart may also follow a compaction ([`ModelTimer::Compact`]):
    /// the binding froze and persisted a snapshot and replaced its log with the replica's
    /// compacted image (`Replica::durable_image_record`), then crashed; the replica is
    /// rebuilt from that snapshot and image.
    pub compaction: bool,
    /// Each client's last request is the counter's query (`Counter::QUERY`), which the
    /// leader answers without a log write (`fleet_engine::rsl::reads`); the others
    /// increment.
    pub queries: bool,
    /// A membership change ([`members`]): the next epoch's replicas, new machines among
    /// them started without state for it, and a client that asks for the change.
    pub change: Option<Membership>,
    /// A deliberately wrong variant, to show the checker finds bugs.
    pub planted: Option<Planted>,
}

impl Scope {
    /// The configuration CI runs exhaustively: one request in the initial view, one timer
    /// firing (any replica, any moment). About 60 s in release on 2 threads.
    pub const CI: Scope = Scope::INITIAL_VIEW;

    /// [`Scope::CI`] under its descriptive name.
    pub const INITIAL_VIEW: Scope = Scope {
        replicas: 3,
        clients: 1,
        requests: 1,
        max_view: Ballot::INITIAL,
        replica_ticks: [1, 1, 1],
        total_ticks: 1,
        client_ticks: 0,
        one_a: 0,
        lazy_timers: false,
        self_loop: false,
        rotate_clients: false,
        max_log_length: 2,
        restarts: 0,
        restartable: 0b111,
        durable: false,
        lazy_sync: false,
        compaction: false,
        queries: false,
        change: None,
        planted: None,
    };

    /// Two clients and one view change (replica 1 may take over).
    pub const VIEW_CHANGE: Scope = Scope {
        replicas: 3,
        clients: 2,
        requests: 1,
        max_view: Ballot { seqno: 1, proposer: 1 },
        replica_ticks: [2, 2, 2],
        total_ticks: 3,
        client_ticks: 1,
        one_a: 0,
        lazy_timers: false,
        self_loop: false,
        rotate_clients: false,
        max_log_length: 2,
        restarts: 0,
        restartable: 0b111,
        durable: false,
        lazy_sync: false,
        compaction: false,
        queries: false,
        change: None,
        planted: None,
    };

    /// Amnesia: [`Scope::VIEW_CHANGE`] where one replica, once, at any moment, is replaced by
    /// an incarnation without state that must rejoin (`Replica::new_rejoining`) before it
    /// promises or votes again. The other replicas stay up, as the rejoin rule requires.
    pub const AMNESIA: Scope = Scope { restarts: 1, ..Scope::VIEW_CHANGE };

    /// Durable birth: [`Scope::VIEW_CHANGE`] where the three replicas start without state,
    /// are born by the rejoin rule, persist their records, and one of them, once, at any
    /// moment (during the birth too), restarts from its log: as the same incarnation if its
    /// log holds no acceptor record, vouched for by those born with it.
    pub const DURABLE: Scope = Scope { restarts: 1, durable: true, ..Scope::VIEW_CHANGE };

    /// Reads: [`Scope::VIEW_CHANGE`] where each client increments and then queries (two
    /// requests, client `j` first sending to replica `j`), so a query can reach the leader
    /// of the old view after the new view has executed an increment and answered it: the
    /// situation the confirmation round exists for.
    pub const READS: Scope = Scope { requests: 2, queries: true, rotate_clients: true, ..Scope::VIEW_CHANGE };

    /// Competing leaders: three ballots (views up to 1.2, so replicas 0, 1 and 2 may each
    /// lead one), two clients (client `j` first sends to replica `j`). The smallest scope in
    /// which a phase 1 can be told two different values voted at one operation in two
    /// earlier ballots (operation 0 proposed with one batch in view 1.0 and with another in
    /// 1.1, then both reported to the leader of 1.2), the situation the proposer's
    /// `merge_vote` must get right. Two view changes need about 7 firings (a replica that
    /// announces its suspicion fires twice, for its view timeout and then its heartbeat; the
    /// one that completes the quorum once); 9 in total, at most 4 per replica, each only
    /// while the replica tracks an unexecuted request, and 2 client retransmissions (a new
    /// view tracks nothing until a client retries) leave room for the interleavings that
    /// matter. Searched by archived random walks ([`SimOpts::archived`], [`cell`]); measured
    /// in `proofs/README.md`.
    pub const COMPETING_LEADERS: Scope = Scope {
        replicas: 3,
        clients: 2,
        requests: 1,
        max_view: Ballot { seqno: 1, proposer: 2 },
        replica_ticks: [4, 4, 4],
        total_ticks: 9,
        client_ticks: 2,
        one_a: 0,
        lazy_timers: true,
        self_loop: false,
        rotate_clients: true,
        max_log_length: 2,
        restarts: 0,
        restartable: 0b111,
        durable: false,
        lazy_sync: false,
        compaction: false,
        queries: false,
        change: None,
        planted: None,
    };
}

/// Bugs planted by wrapping actors (never in the engine).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Planted {
    /// The last replica's acceptor also votes for 2a packets below its promise: when the
    /// engine refuses such a 2a, the wrapper broadcasts the 2b a buggy acceptor would send.
    LowerBallotAccept,
    /// Every replica counts each 1b, 2b and heartbeat twice, as if the next replica had sent
    /// it too: a quorum of `n/2` real replicas (1 of 3) is enough for promises, decisions
    /// and view changes.
    HalfQuorum,
    /// Acceptors send their 1b without the votes they hold (an acceptor that forgot its
    /// votes, as a restart without durable state would).
    AmnesiacAcceptor,
    /// The proposer mutant `merge_vote`: `if v.bal > self.merged[i].bal` changed to `<`
    /// (engine `rsl/proposer.rs`): phase 1 keeps, at each operation, the *lowest*-ballot
    /// vote reported, in every replica. Emulated exactly, without touching the engine, by
    /// relabelling what each replica is shown: the vote of every 1b for ballot `B` reaches
    /// the engine with its ballot mirrored inside `[INITIAL, B)` ([`mirror_ballot`], an
    /// order-reversing bijection), so the real `>` replaces a merged vote exactly when the
    /// mutant's `<` would, and keeps the same batch. The mirrored ballot is read nowhere
    /// else: `merge_vote` compares it, `Proposer::invariant` checks it stays below `B` (it
    /// does), and re-proposals use only the batch.
    KeepsLowerBallotVote,
    /// The `merge_vote` mutant `>` changed to `==`: a vote at an operation that already has a
    /// merged vote replaces it only at an equal ballot, i.e. phase 1 keeps the *first* vote
    /// reported at each operation (a same-ballot vote carries the same batch, which
    /// `check_2a_unique` checks in every state). Emulated exactly: a 1b vote at an operation
    /// the replica's phase 1 has already merged is shown with the merged vote's ballot, so
    /// the real `>` keeps what it has.
    KeepsFirstVote,
    /// A replica restarted without state takes part at once: the amnesia restart
    /// ([`Scope::restarts`]) creates an ordinary `Replica::new` (an empty acceptor that
    /// promises and votes immediately) instead of `Replica::new_rejoining`.
    VotesAtOnce,
    /// In a [`Scope::DURABLE`] restart, the log keeps the replica's incarnation and
    /// born-with records but loses its acceptor records: it rejoins as the same incarnation,
    /// which its peers were born with and still vouch for as one that never acted, so it is
    /// born again with an empty acceptor, though it had promised and voted.
    KeepsIncarnationLosesAcceptor,
    /// A leader answers queries without confirming its ballot: every confirmation round a
    /// replica sends is acknowledged at once, within the step, by forged acknowledgements
    /// from every other replica (as if the leader counted a quorum it never heard from).
    UnconfirmedReads,
    /// The next epoch takes effect without the stop-sign's state: a replica that enters
    /// it (by executing the stop-sign, or told by a peer) is replaced, within that step, by
    /// a replica started from the next epoch's configuration alone (`Replica::new`: no
    /// state, operation 0), and a new machine starts the same way instead of rejoining, as
    /// an operator restarting every server with a new configuration file would. The
    /// overlap a stop-sign requires (the next epoch starts at the stop-sign's operation
    /// plus one, from the state there) is missing; the quorum overlap is not (every epoch
    /// keeps a majority).
    FreshEpoch,
    /// In [`Scope::DURABLE_MEMBERS`], recovery replays a replica's log only up to its first
    /// epoch record of a later epoch than the configuration it is recovered with, and
    /// ignores the rest, as a binding that takes a record it cannot place for the log's
    /// torn tail would: a replica that entered the next epoch comes back in epoch 0, with
    /// its state there (the disk keeps every record; only the replay stops). Unsafe: it
    /// may have promised and voted in the next epoch (its 1b and 2b there left after the
    /// epoch record and its acceptor records were synced), and it follows the cluster into
    /// that epoch again (told by a peer, or executing the stop-sign once more), entering it
    /// as a replica that never took part there: an empty acceptor, a proposer that never
    /// started a ballot. It is the next epoch's amnesiac acceptor: a leader of that epoch
    /// may count its empty 1b, or it may start again a ballot it already used, and a second
    /// value is proposed for an operation the epoch already chose.
    ReplayStopsAtEpoch,
    /// In [`Scope::LEARNERS`], a learner that moves into the epoch that adds it takes part
    /// at once instead of rejoining ([`learners::take_part_at_once`]). Harmless the first
    /// time (it never promised or voted there), unsafe for a reincarnation: the new machine
    /// took part in epoch 1, crashed, came back without state as a learner and re-enters
    /// epoch 1 with an acceptor that forgot its promises and votes there.
    LearnerTakesPartAtOnce,
}

/// A replica's own endpoint (its place in its epoch's list; a retired replica keeps the
/// list of the epoch it retired from).
pub fn own_endpoint(r: &MReplica) -> Endpoint {
    r.own_endpoint()
}

/// Endpoint of actor `id` in a cluster of `n` replicas (replicas first, then clients).
pub fn endpoint(id: usize, n: usize) -> Endpoint {
    if id < n {
        Endpoint::v4([10, 0, 0, id as u8 + 1], 7000)
    } else {
        Endpoint::v4([10, 0, 1, (id - n) as u8 + 1], 9000)
    }
}

/// Actor id of `ep`.
pub fn actor_of(ep: Endpoint, n: usize, actors: usize) -> Option<usize> {
    (0..actors).find(|&i| endpoint(i, n) == ep)
}

/// The parameters every model replica uses: few distinct timer deadlines.
pub fn params(scope: &Scope) -> Params {
    Params {
        heartbeat_period_ms: 1000,
        baseline_view_timeout_ms: 500,
        max_view_timeout_ms: 4000,
        max_batch_size: 4,
        max_batch_delay_ms: 10,
        max_log_length: scope.max_log_length,
        max_datagram_bytes: 256,
        retransmit_period_ms: 1000,
        state_chunks_per_step: 8,
        lease_ms: 0,
        clock_drift_ppm: 1_000,
    }
}

/// The cluster configuration of a scope.
pub fn config(scope: &Scope) -> RslConfig<3> {
    let eps: Vec<Endpoint> = (0..scope.replicas).map(|i| endpoint(i, scope.hosts())).collect();
    let mut c = RslConfig::new(&eps).expect("at most 3 replicas");
    c.params = params(scope);
    c
}

/// The model's timers. `Tick` hashes like `()` (nothing), the timer type before restarts
/// existed, so actions and states of scopes without restarts keep their fingerprints (and
/// the random walks their priorities).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ModelTimer {
    /// The host's timer: jump its clock to its next deadline and call `tick`.
    Tick,
    /// Amnesia: replace this replica by a new incarnation without state (durable: rebuild
    /// it from its log, every record synced first).
    Restart,
    /// [`Scope::lazy_sync`]: the replica crashes before its last records were synced and is
    /// rebuilt from its log without them (armed with `Restart`; the same budget).
    Crash,
    /// [`Scope::compaction`]: the binding compacts the replica's log and the replica
    /// crashes; it is rebuilt from the snapshot and the compacted image (armed with
    /// `Restart`; the same budget).
    Compact,
}

impl std::hash::Hash for ModelTimer {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        match self {
            ModelTimer::Tick => {}
            ModelTimer::Restart => 1u8.hash(h),
            ModelTimer::Crash => 2u8.hash(h),
            ModelTimer::Compact => 3u8.hash(h),
        }
    }
}

/// A datagram on the model's network: the engine's wire bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Datagram(pub Vec<u8>);

impl Datagram {
    fn decode(&self) -> Option<RslMsg<'_>> {
        wire::decode::<RslMsg<'_>>(Protocol::Rsl, &self.0).ok()
    }
}

fn bal(b: Ballot) -> String {
    format!("{}.{}", b.seqno, b.proposer)
}

/// A one-line description of a message, for counterexample traces.
pub fn describe(msg: &RslMsg<'_>) -> String {
    match msg {
        RslMsg::Request { seqno, request } if request.0 == Counter::QUERY => format!("Query#{seqno}"),
        RslMsg::Request { seqno, .. } => format!("Request#{seqno}"),
        RslMsg::Requests { seqno, .. } => format!("Requests#{seqno}"),
        RslMsg::Replies { seqno, .. } => format!("Replies#{seqno}"),
        RslMsg::StatusRequest { nonce } => format!("StatusRequest#{nonce}"),
        RslMsg::StatusReply { nonce, replica, .. } => format!("StatusReply#{nonce} from {replica}"),
        RslMsg::ReadConfirm { bal: b, round } => format!("ReadConfirm({}, round {round})", bal(*b)),
        RslMsg::ReadAck { bal: b, round } => format!("ReadAck({}, round {round})", bal(*b)),
        RslMsg::ForwardedRequest { client, seqno, .. } => format!("ForwardedRequest({client:?}#{seqno})"),
        RslMsg::RecoverRequest { nonce, catching_up } => format!("RecoverRequest#{nonce}(catching up {catching_up})"),
        RslMsg::RecoverReply { nonce, rejoining, fresh, ballot, next_opn, .. } => {
            format!("RecoverReply#{nonce}(rejoining {rejoining} fresh {fresh} {} op{next_opn})", bal(*ballot))
        }
        RslMsg::Reply { seqno, reply } => {
            let v = reply.0.get(..8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
            format!("Reply#{seqno}={v:?}")
        }
        RslMsg::OneA { bal: b } => format!("1a({})", bal(*b)),
        RslMsg::OneB { bal: b, log_truncation_point, chunk, chunks, vote, .. } => {
            let v = vote.map(|v| format!(" vote op{}@{}={}", v.opn, bal(v.bal), inv::describe_batch(v.batch.0)));
            format!("1b({}, ltp {log_truncation_point}, {}/{chunks}{})", bal(*b), chunk + 1, v.unwrap_or_default())
        }
        RslMsg::TwoA { bal: b, opn, batch } => format!("2a({}, op{opn}, {})", bal(*b), inv::describe_batch(batch.0)),
        RslMsg::TwoB { bal: b, opn, batch, opn_ckpt } => {
            format!("2b({}, op{opn}, {}, ckpt {opn_ckpt})", bal(*b), inv::describe_batch(batch.0))
        }
        RslMsg::Heartbeat { bal: b, suspicious, opn_ckpt } => {
            format!("Heartbeat({}{}, ckpt {opn_ckpt})", bal(*b), if *suspicious { ", suspicious" } else { "" })
        }
        RslMsg::StartingPhase2 { bal: b, log_truncation_point } => {
            format!("StartingPhase2({}, ltp {log_truncation_point})", bal(*b))
        }
        RslMsg::AppStateRequest { bal: b, have, .. } => format!("AppStateRequest({}, from op{have})", bal(*b)),
        RslMsg::AppStateSupply { part, .. } => match part {
            SupplyPart::App { id, offset, bytes } => {
                format!("AppStateSupply(op{}, app@{offset}+{})", id.opn, bytes.0.len())
            }
            SupplyPart::Cache { id, index, .. } => format!("AppStateSupply(op{}, cache@{index})", id.opn),
            SupplyPart::Executed { opn, bal: b, .. } => format!("AppStateSupply(executed op{opn} in {})", bal(*b)),
        },
        RslMsg::Change { seqno, .. } => format!("Change#{seqno}"),
        RslMsg::MembersRequest { nonce } => format!("MembersRequest#{nonce}"),
        RslMsg::Members { nonce, epoch, start, .. } => format!("Members#{nonce}(epoch {epoch} from op{start})"),
    }
}

impl fmt::Debug for Datagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.decode() {
            Some(m) => f.write_str(&describe(&m)),
            None => write!(f, "undecodable {:02x?}", self.0),
        }
    }
}

/// A replica actor's state: the engine replica plus the model's clock and budgets.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReplicaNode {
    /// The real engine replica.
    pub replica: MReplica,
    /// This host's clock.
    pub now: Instant,
    /// Timer firings used.
    pub ticks: u8,
    /// Repeated 1a deliveries used.
    pub one_a: u8,
    /// The first local invariant (or step invariant) found broken.
    pub broken: Option<&'static str>,
    /// Auxiliary (a history variable): this replica's phase 1 was once given a 1b vote at
    /// an operation for which it had already merged a vote with a different batch (so from
    /// another ballot): the case where `merge_vote` must keep the higher ballot.
    pub merged_conflicting_votes: bool,
    /// Times this replica was replaced by an incarnation without state ([`Scope::restarts`]).
    pub restarts: u8,
    /// Auxiliary: an incarnation replaced by a restart had promised a ballot (so it may have
    /// voted, and its 1b may count in some phase 1): the restart lost protocol state.
    pub lost_state: bool,
    /// [`Scope::durable`]: every record this replica handed out, in order (its disk).
    pub log: Vec<Vec<u8>>,
    /// [`Scope::durable`]: how many records of `log` are synced (all of them unless
    /// [`Scope::lazy_sync`]).
    pub synced: usize,
    /// Auxiliary, in a durable scope with a membership change: the highest epoch in whose
    /// envelope this replica sent a 1b or a 2b (revealed a promise or a vote), with the
    /// highest ballot of those in that epoch; `None` before it sent any.
    pub revealed: Option<(u64, Ballot)>,
    /// Auxiliary: the highest epoch of [`ReplicaNode::revealed`] since the latest restart.
    pub revealed_since_restart: Option<u64>,
    /// Auxiliary: how the latest restart from the disk went down, and the epoch it
    /// recovered this replica into.
    pub recovered: Option<(Down, u64)>,
    /// Auxiliary: a crash lost an epoch record that was handed out but not yet synced.
    pub lost_epoch_record: bool,
}

/// A client actor's state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientNode {
    /// The real engine client.
    pub client: MClient,
    /// This host's clock.
    pub now: Instant,
    /// Timer firings used.
    pub ticks: u8,
    /// Requests submitted so far.
    pub submitted: u32,
}

/// An actor's state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NodeState {
    /// A replica.
    Replica(Box<ReplicaNode>),
    /// A client.
    Client(Box<ClientNode>),
}

/// The model's actors.
#[derive(Clone)]
pub enum Node {
    /// Replica `id` of the configuration.
    Replica {
        /// The scope.
        scope: Scope,
        /// The cluster.
        config: RslConfig<3>,
    },
    /// A client of the replicas.
    Client {
        /// The scope.
        scope: Scope,
    },
}

/// The client history (auxiliary state, as TLA+ history variables): one entry per
/// request, with logical invocation and return times.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct History {
    /// Operations in invocation order.
    pub ops: Vec<HistOp>,
    /// Logical clock: events recorded so far.
    pub clock: u32,
}

/// One client operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HistOp {
    /// Client actor index (0-based among clients).
    pub client: usize,
    /// Its seqno.
    pub seqno: u64,
    /// The request bytes.
    pub request: Vec<u8>,
    /// Logical invocation time.
    pub invoke: u32,
    /// Logical return time and reply.
    pub ret: Option<(u32, Vec<u8>)>,
}

/// The model configuration visible to properties.
#[derive(Clone, Debug)]
pub struct ModelCfg {
    /// The scope.
    pub scope: Scope,
    /// The cluster.
    pub config: RslConfig<3>,
}

/// The request every client sends to increment (the counter ignores its bytes).
pub const REQUEST: &[u8] = b"inc";

/// The request a client sends as its `k`-th (0-based): [`REQUEST`], or with
/// [`Scope::queries`] the counter's query as the last one.
pub fn request_of(scope: &Scope, k: u32) -> &'static [u8] {
    match scope.queries && k + 1 == scope.requests {
        true => Counter::QUERY,
        false => REQUEST,
    }
}

fn emit(o: &mut Out<Node>, n: usize, actors: usize, out: &fleet_engine::Outbox<'_>, mutate: impl Fn(&[u8]) -> Vec<u8>) {
    for (dst, bytes) in out.iter() {
        if let Some(id) = actor_of(dst, n, actors) {
            o.send(Id::from(id), Datagram(mutate(bytes)));
        }
    }
}

/// A datagram from a member of cluster `cluster` (the planted bugs forge their messages as
/// a member would).
fn encode(cluster: u32, msg: &RslMsg<'_>) -> Vec<u8> {
    let mut buf = [0u8; 512];
    let len = wire::encode_rsl(cluster, msg, &mut buf).expect("model messages fit 512 bytes");
    buf[..len].to_vec()
}

/// AmnesiacAcceptor: a 1b that carries a vote is sent without it.
fn forget_votes(bytes: &[u8]) -> Vec<u8> {
    match wire::decode_rsl::<RslMsg<'_>>(bytes) {
        Ok((cluster, RslMsg::OneB { bal, log_truncation_point, reply_id, chunk, chunks, vote: Some(_) })) => {
            let forgotten = RslMsg::OneB { bal, log_truncation_point, reply_id, chunk, chunks, vote: None::<Vote<'_>> };
            encode(cluster, &forgotten)
        }
        _ => bytes.to_vec(),
    }
}

/// The position of ballot `b` in the total order of the ballots of `n` replicas.
fn ballot_index(b: Ballot, n: usize) -> u64 {
    b.seqno * n as u64 + u64::from(b.proposer)
}

/// The ballot at position `k` of that order.
fn ballot_at(k: u64, n: usize) -> Ballot {
    Ballot { seqno: k / n as u64, proposer: (k % n as u64) as u8 }
}

/// The order-reversing bijection of the ballots `[INITIAL, top)` of `n` replicas onto
/// themselves (the lowest goes to the highest and back); `None` outside that range.
pub fn mirror_ballot(b: Ballot, top: Ballot, n: usize) -> Option<Ballot> {
    if b < Ballot::INITIAL || b >= top {
        return None;
    }
    let (lo, hi) = (ballot_index(Ballot::INITIAL, n), ballot_index(top, n) - 1);
    Some(ballot_at(lo + hi - ballot_index(b, n), n))
}

/// The 1b vote a datagram carries to a replica in phase 1 of the 1b's ballot (the only
/// 1b votes its proposer merges), with the 1b's other fields.
fn phase1_vote<'b>(replica: &MReplica, bytes: &'b [u8]) -> Option<(u32, RslMsg<'b>, Vote<'b>)> {
    let (cluster, msg) = wire::decode_rsl::<RslMsg<'_>>(bytes).ok()?;
    let RslMsg::OneB { bal, vote: Some(v), .. } = msg else { return None };
    let p = replica.proposer();
    (p.phase == Phase::One && p.max_ballot_sent_1a == bal).then_some((cluster, msg, v))
}

/// Whether `bytes` is a 1b vote the replica's phase 1 merges at an operation where it has
/// already merged a vote for another batch (necessarily from another ballot).
fn conflicts_with_merged(replica: &MReplica, bytes: &[u8]) -> bool {
    phase1_vote(replica, bytes).is_some_and(|(_, _, v)| {
        replica.proposer().merged_votes().iter().any(|m| m.opn == v.opn && m.batch[..] != *v.batch.0)
    })
}

/// What the engine of `replica` is shown of `bytes` under a planted `merge_vote` mutant
/// ([`Planted::KeepsLowerBallotVote`], [`Planted::KeepsFirstVote`]): the same 1b with its
/// vote's ballot relabelled so that the correct `merge_vote` does what the mutant does.
/// `None`: shown unchanged.
fn merge_mutant(planted: Option<Planted>, replica: &MReplica, bytes: &[u8]) -> Option<Vec<u8>> {
    let (cluster, RslMsg::OneB { bal, log_truncation_point, reply_id, chunk, chunks, .. }, v) =
        phase1_vote(replica, bytes)?
    else {
        return None;
    };
    let shown = match planted? {
        Planted::KeepsLowerBallotVote => mirror_ballot(v.bal, bal, replica.config().n())?,
        Planted::KeepsFirstVote => replica.proposer().merged_votes().iter().find(|m| m.opn == v.opn)?.bal,
        _ => return None,
    };
    let vote = Some(Vote { bal: shown, ..v });
    Some(encode(cluster, &RslMsg::OneB { bal, log_truncation_point, reply_id, chunk, chunks, vote }))
}

/// [`Planted::UnconfirmedReads`]: each confirmation round the replica sent in this step is
/// acknowledged at once by every replica it went to (forged, handed straight back).
fn forge_read_acks(r: &mut ReplicaNode, n: usize, out: &mut fleet_engine::Outbox<'_>) {
    let rounds: Vec<(Endpoint, Ballot, u64)> = out
        .iter()
        .filter_map(|(dst, b)| match wire::decode_rsl::<RslMsg<'_>>(b) {
            Ok((_, RslMsg::ReadConfirm { bal, round })) => Some((dst, bal, round)),
            _ => None,
        })
        .collect();
    for (dst, bal, round) in rounds {
        let ack = encode(r.replica.cluster(), &RslMsg::ReadAck { bal, round });
        if (0..n).any(|i| endpoint(i, n) == dst) {
            let _ = r.replica.handle(r.now, dst, &ack, out);
        }
    }
}

/// Arms a replica's restart: [`ModelTimer::Restart`], with [`Scope::lazy_sync`]
/// [`ModelTimer::Crash`], with [`Scope::compaction`] [`ModelTimer::Compact`].
fn arm_restart(scope: &Scope, o: &mut Out<Node>) {
    o.set_timer(ModelTimer::Restart, model_timeout());
    if scope.lazy_sync {
        o.set_timer(ModelTimer::Crash, model_timeout());
    }
    if scope.compaction {
        o.set_timer(ModelTimer::Compact, model_timeout());
    }
}

/// Notes in `next.revealed` the promises and votes this step revealed: the epoch whose
/// envelope carries a 1b or 2b (`before`'s, or the one it entered) and its ballot.
fn note_revealed(before: &MReplica, next: &mut ReplicaNode, out: &fleet_engine::Outbox<'_>) {
    for (_, bytes) in out.iter() {
        let bal = match wire::decode_rsl::<RslMsg<'_>>(bytes) {
            Ok((cluster, RslMsg::OneB { bal, .. } | RslMsg::TwoB { bal, .. })) => (cluster, bal),
            _ => continue,
        };
        let epoch = match bal.0 {
            c if c == next.replica.cluster() => next.replica.config().epoch,
            c if c == before.cluster() => before.config().epoch,
            _ => continue,
        };
        next.revealed = next.revealed.max(Some((epoch, bal.1)));
        next.revealed_since_restart = next.revealed_since_restart.max(Some(epoch));
    }
}

/// Hands one datagram to a replica's engine: notes a conflicting phase-1 vote, applies a
/// planted `merge_vote` mutant, then `handle`.
fn deliver(
    planted: Option<Planted>,
    r: &mut ReplicaNode,
    from: Endpoint,
    bytes: &[u8],
    out: &mut fleet_engine::Outbox<'_>,
) {
    if conflicts_with_merged(&r.replica, bytes) {
        r.merged_conflicting_votes = true;
    }
    let shown = merge_mutant(planted, &r.replica, bytes);
    let _ = r.replica.handle(r.now, from, shown.as_deref().unwrap_or(bytes), out);
}

impl Node {
    fn scope(&self) -> &Scope {
        match self {
            Node::Replica { scope, .. } | Node::Client { scope } => scope,
        }
    }

    /// Actors in all: the replicas, a change's new machines, the clients.
    fn actors(&self) -> usize {
        self.scope().hosts() + self.scope().clients
    }

    fn replica_step(
        &self,
        node: &ReplicaNode,
        o: &mut Out<Node>,
        step: impl FnOnce(&mut ReplicaNode, &mut fleet_engine::Outbox<'_>),
    ) -> Option<ReplicaNode> {
        let scope = *self.scope();
        let n = scope.hosts();
        let mut next = node.clone();
        if scope.lazy_sync && next.synced < next.log.len() {
            // The binding's lazy sync, at the latest before the replica's next event.
            let mark = next.replica.durable_mark();
            next.replica.persisted(mark);
            next.synced = next.log.len();
        }
        let before = next.replica.monotone();
        let actors = self.actors();
        let changed = with_outbox(|out| {
            step(&mut next, out);
            if scope.self_loop {
                let me = own_endpoint(&next.replica);
                let mut done = 0;
                // Bounded: each round handles what the previous one addressed to itself.
                for _ in 0..8 {
                    let mine: Vec<Vec<u8>> =
                        out.iter().skip(done).filter(|(d, _)| *d == me).map(|(_, b)| b.to_vec()).collect();
                    done = out.len();
                    if mine.is_empty() {
                        break;
                    }
                    for d in mine {
                        deliver(scope.planted, &mut next, me, &d, out);
                    }
                }
            }
            if scope.planted == Some(Planted::UnconfirmedReads) {
                forge_read_acks(&mut next, n, out);
            }
            if scope.durable {
                // Written within the step, so before any of its datagrams leaves.
                let mut buf = vec![0u8; 2048];
                while let Some(record) = next.replica.next_record(&mut buf) {
                    match record {
                        Ok(r) => next.log.push(r.to_vec()),
                        Err(_) => next.broken = next.broken.or(Some("a durable record did not fit its buffer")),
                    }
                }
                // A datagram that waits for the sync leaves only after it.
                if !scope.lazy_sync || out.any_waits_for_sync() {
                    let mark = next.replica.durable_mark();
                    next.replica.persisted(mark);
                    next.synced = next.log.len();
                }
                if scope.change.is_some() {
                    note_revealed(&node.replica, &mut next, out);
                }
            } else if learners::applies(&scope) {
                note_revealed(&node.replica, &mut next, out);
            }
            if next.broken.is_none() {
                next.broken =
                    before.check_step(&next.replica.monotone()).err().or(next.replica.check_invariants().err());
            }
            if scope.planted == Some(Planted::FreshEpoch) {
                // After the step check: the replacement is the plant, not a step.
                members::fresh_epoch(&mut next, node.replica.config().epoch, out);
            }
            if scope.planted == Some(Planted::LearnerTakesPartAtOnce) {
                learners::take_part_at_once(&node.replica, &mut next, out);
            }
            if next == *node && out.is_empty() {
                return false;
            }
            let amnesiac = scope.planted == Some(Planted::AmnesiacAcceptor);
            emit(o, n, actors, out, |b| if amnesiac { forget_votes(b) } else { b.to_vec() });
            true
        });
        if !changed {
            return None;
        }
        // Lazy timers fire while a request waits, or while the replica rejoins.
        let wants = !scope.lazy_timers
            || next.replica.election().tracked().next().is_some()
            || next.replica.rejoining().is_some();
        let actor = actor_of(own_endpoint(&next.replica), n, actors).unwrap_or(0);
        if wants && next.ticks < scope.tick_budget(actor) {
            o.set_timer(ModelTimer::Tick, model_timeout());
        } else {
            o.cancel_timer(ModelTimer::Tick);
        }
        if durable_members::applies(&scope) && node.restarts == 0 && durable_members::may_restart(&scope, actor, &next)
        {
            arm_restart(&scope, o);
        }
        if learners::applies(&scope) && learners::may_restart(&scope, actor, &next) {
            arm_restart(&scope, o);
        }
        Some(next)
    }

    fn client_step(
        &self,
        node: &ClientNode,
        o: &mut Out<Node>,
        step: impl FnOnce(&mut ClientNode, &mut fleet_engine::Outbox<'_>),
    ) -> Option<ClientNode> {
        let scope = *self.scope();
        let mut next = node.clone();
        let actors = self.actors();
        let changed = with_outbox(|out| {
            step(&mut next, out);
            if next == *node && out.is_empty() {
                return false;
            }
            emit(o, scope.hosts(), actors, out, |b| b.to_vec());
            true
        });
        if !changed {
            return None;
        }
        if next.ticks < scope.client_ticks && next.client.next_deadline() != Instant::NEVER {
            o.set_timer(ModelTimer::Tick, model_timeout());
        } else {
            o.cancel_timer(ModelTimer::Tick);
        }
        Some(next)
    }
}

impl Actor for Node {
    type Msg = Datagram;
    type State = NodeState;
    type Timer = ModelTimer;
    type Random = ();
    type Storage = ();

    fn on_start(&self, id: Id, _storage: &Option<()>, o: &mut Out<Self>) -> NodeState {
        let me = usize::from(id);
        match self {
            Node::Replica { config, .. } => {
                let replica = match (self.scope().durable, me >= self.scope().replicas) {
                    // A new machine of the next epoch (its place in the next list).
                    (_, true) => members::start_joiner(self.scope(), config, me),
                    // Nonces above every 1b reply id a replica uses here.
                    (true, false) => {
                        MReplica::new_durable(config.clone(), me, Counter::default(), Instant::ZERO, 100 + me as u64)
                    }
                    (false, false) => MReplica::new(config.clone(), me, Counter::default(), Instant::ZERO),
                }
                .expect("valid model configuration");
                let node = ReplicaNode {
                    replica,
                    now: Instant::ZERO,
                    ticks: 0,
                    one_a: 0,
                    broken: None,
                    merged_conflicting_votes: false,
                    restarts: 0,
                    lost_state: false,
                    log: Vec::new(),
                    synced: 0,
                    revealed: None,
                    revealed_since_restart: None,
                    recovered: None,
                    lost_epoch_record: false,
                };
                // A binding's first call: `tick` at `next_deadline()`, which is now.
                let next = self
                    .replica_step(&node, o, |r, out| {
                        let _ = r.replica.tick(Instant::ZERO, out);
                    })
                    .unwrap_or(node);
                let scope = self.scope();
                let armed = match (durable_members::applies(scope), learners::applies(scope)) {
                    (true, _) => durable_members::may_restart(scope, me, &next),
                    (false, true) => learners::may_restart(scope, me, &next),
                    (false, false) => scope.restarts > 0 && scope.restartable & (1 << me) != 0,
                };
                if armed {
                    arm_restart(scope, o);
                }
                NodeState::Replica(Box::new(next))
            }
            Node::Client { scope } => {
                let first = if scope.rotate_clients { (me - scope.hosts()) % scope.replicas } else { 0 };
                let eps: Vec<Endpoint> =
                    (0..scope.replicas).map(|i| endpoint((first + i) % scope.replicas, scope.hosts())).collect();
                let client = MClient::new(&eps, 1, 1000, 256).expect("valid model client");
                let node = ClientNode { client, now: Instant::ZERO, ticks: 0, submitted: 0 };
                let requests = scope.requests;
                let operator = members::is_operator(scope, me);
                let next = self
                    .client_step(&node, o, |c, out| {
                        if operator {
                            members::submit_change(scope, c, out);
                        } else if requests > 0 && c.client.submit(c.now, request_of(scope, 0), out).is_ok() {
                            c.submitted += 1;
                        }
                    })
                    .unwrap_or(node);
                NodeState::Client(Box::new(next))
            }
        }
    }

    fn on_msg(&self, id: Id, state: &mut Cow<NodeState>, src: Id, msg: Datagram, o: &mut Out<Self>) {
        let scope = *self.scope();
        let n = scope.hosts();
        let from = endpoint(usize::from(src), n);
        let next = match &**state {
            NodeState::Replica(node) => {
                let decoded = msg.decode();
                let is_one_a = matches!(decoded, Some(RslMsg::OneA { bal }) if bal == node.replica.acceptor().max_bal);
                if is_one_a && node.one_a >= scope.one_a {
                    return; // Outside the scope: this delivery never happens.
                }
                let forged_2b = match (scope.planted, decoded) {
                    (Some(Planted::LowerBallotAccept), Some(RslMsg::TwoA { bal, opn, batch }))
                        if node.replica.id() == n - 1 && bal < node.replica.acceptor().max_bal =>
                    {
                        let opn_ckpt = node.replica.executor().ops_complete;
                        Some(encode(node.replica.cluster(), &RslMsg::TwoB { bal, opn, batch, opn_ckpt }))
                    }
                    _ => None,
                };
                let twice = scope.planted == Some(Planted::HalfQuorum)
                    && matches!(decoded, Some(RslMsg::OneB { .. } | RslMsg::TwoB { .. } | RslMsg::Heartbeat { .. }))
                    && usize::from(src) < n;
                let echo_from = endpoint((usize::from(src) + 1) % n, n);
                let stepped = self.replica_step(node, o, |r, out| {
                    if is_one_a {
                        r.one_a += 1;
                    }
                    deliver(scope.planted, r, from, &msg.0, out);
                    if twice {
                        deliver(scope.planted, r, echo_from, &msg.0, out);
                    }
                });
                if let Some(bytes) = forged_2b {
                    for i in 0..n {
                        o.send(Id::from(i), Datagram(bytes.clone()));
                    }
                }
                stepped.map(|s| NodeState::Replica(Box::new(s)))
            }
            NodeState::Client(node) => {
                // An operator asks for its change only.
                let requests = if members::is_operator(&scope, usize::from(id)) { 0 } else { scope.requests };
                self.client_step(node, o, |c, out| {
                    let done = c.client.handle(c.now, from, &msg.0).is_some();
                    let next = request_of(&scope, c.submitted);
                    if done && c.submitted < requests && c.client.submit(c.now, next, out).is_ok() {
                        c.submitted += 1;
                    }
                })
                .map(|s| NodeState::Client(Box::new(s)))
            }
        };
        if let Some(next) = next {
            *state = Cow::Owned(next);
        }
    }

    fn on_timeout(&self, id: Id, state: &mut Cow<NodeState>, timer: &ModelTimer, o: &mut Out<Self>) {
        let next = match (&**state, timer) {
            (NodeState::Replica(node), ModelTimer::Restart) => {
                Some(NodeState::Replica(Box::new(self.restart(usize::from(id), node, Down::Synced, o))))
            }
            (NodeState::Replica(node), ModelTimer::Compact) => {
                Some(NodeState::Replica(Box::new(self.restart(usize::from(id), node, Down::Compacted, o))))
            }
            // Only a crash that loses something differs from a restart (else a no-op: the
            // timer stays).
            (NodeState::Replica(node), ModelTimer::Crash) if node.synced < node.log.len() => {
                Some(NodeState::Replica(Box::new(self.restart(usize::from(id), node, Down::LosingUnsynced, o))))
            }
            (_, ModelTimer::Crash) => {
                o.set_timer(ModelTimer::Crash, model_timeout());
                None
            }
            (_, ModelTimer::Restart | ModelTimer::Compact) => None,
            (state, ModelTimer::Tick) => self.tick(state, o),
        };
        if let Some(next) = next {
            *state = Cow::Owned(next);
        }
    }
}

impl Node {
    /// A replica's or client's timer fires.
    fn tick(&self, state: &NodeState, o: &mut Out<Node>) -> Option<NodeState> {
        match state {
            NodeState::Replica(node) => self
                .replica_step(node, o, |r, out| {
                    r.ticks += 1;
                    r.now = r.now.max(r.replica.next_deadline());
                    let _ = r.replica.tick(r.now, out);
                })
                .map(|s| NodeState::Replica(Box::new(s))),
            NodeState::Client(node) => self
                .client_step(node, o, |c, out| {
                    c.ticks += 1;
                    c.now = c.now.max(c.client.next_deadline());
                    c.client.tick(c.now, out);
                })
                .map(|s| NodeState::Client(Box::new(s))),
        }
    }

    /// Amnesia: `node` is replaced by a new incarnation without state (with
    /// [`Planted::VotesAtOnce`], by an ordinary replica), which starts as a binding would: a
    /// `tick` at its clock. Its clock, budgets and history variables carry over; no step
    /// check spans the restart (the new incarnation's protocol state legitimately starts
    /// over).
    ///
    /// Durable: rebuilt from its disk with `Replica::recover`, given the configuration it
    /// was started with and its index there (as io-std does: the configuration file's, or
    /// for a new machine the epoch it joined); what the disk holds depends on how it went
    /// `down`.
    fn restart(&self, actor: usize, node: &ReplicaNode, down: Down, o: &mut Out<Node>) -> ReplicaNode {
        let Node::Replica { scope, config } = self else { unreachable!("replicas only") };
        let me = match scope.change {
            Some(_) => config.index_of(endpoint(actor, scope.hosts())).expect("started in its configuration"),
            None => node.replica.id(),
        };
        let restarts = node.restarts + 1;
        // Larger than every 1b reply id an earlier incarnation used (a handful here).
        let nonce = 1_000_000 * u64::from(restarts);
        if scope.lazy_sync || scope.compaction {
            // One restart each: the other ways of restarting are spent too.
            o.cancel_timer(ModelTimer::Restart);
            o.cancel_timer(ModelTimer::Crash);
            o.cancel_timer(ModelTimer::Compact);
        }
        if scope.durable {
            // Its disk: the snapshot, and the log (what was synced, after a crash that lost
            // the rest; after a compaction, the image).
            let (snapshot, disk) = match down {
                Down::Synced => (Vec::new(), node.log.clone()),
                Down::LosingUnsynced => (Vec::new(), node.log[..node.synced].to_vec()),
                Down::Compacted => compacted(&node.replica),
            };
            let lost_epoch_record = node.lost_epoch_record
                || (down == Down::LosingUnsynced
                    && node.log[node.synced..]
                        .iter()
                        .any(|r| matches!(durable_record(r), Some(DurableRecord::Epoch { .. }))));
            let disk = &disk[..];
            // What recovery reads of it: the same replica (or, planted, one that lost its
            // acceptor records but kept its incarnation, or whose replay stops at its first
            // epoch record past its configuration's epoch).
            let log: Vec<Vec<u8>> = match scope.planted {
                // Executed references go with the votes they name.
                Some(Planted::KeepsIncarnationLosesAcceptor) => disk
                    .iter()
                    .filter(|r| {
                        !is_acceptor_record(r) && !matches!(durable_record(r), Some(DurableRecord::ExecutedVote { .. }))
                    })
                    .cloned()
                    .collect(),
                Some(Planted::ReplayStopsAtEpoch) => disk
                    .iter()
                    .take_while(|r| !matches!(durable_record(r), Some(DurableRecord::Epoch { epoch, .. }) if epoch > config.epoch))
                    .cloned()
                    .collect(),
                _ => disk.to_vec(),
            };
            let recovered = MReplica::recover(
                config.clone(),
                me,
                Counter::default(),
                node.now,
                nonce,
                snapshot.iter().map(Vec::as_slice),
                log.iter().map(Vec::as_slice),
            );
            let replica = recovered.expect("a replica recovers from the log it wrote");
            let planted = scope.planted == Some(Planted::KeepsIncarnationLosesAcceptor);
            let lost_state = node.lost_state || (planted && node.replica.acceptor().max_bal != Ballot::default());
            // The disk keeps what it held (a planted replay ignores part of it).
            let log = match scope.planted {
                Some(Planted::KeepsIncarnationLosesAcceptor) => log,
                _ => disk.to_vec(),
            };
            let recovered = Some((down, epoch_of(&replica)));
            let synced = log.len();
            let restarted = ReplicaNode {
                replica,
                restarts,
                lost_state,
                log,
                synced,
                revealed_since_restart: None,
                recovered,
                lost_epoch_record,
                ..node.clone()
            };
            return self
                .replica_step(&restarted, o, |r, out| {
                    let _ = r.replica.tick(r.now, out);
                })
                .unwrap_or(restarted);
        }
        let replica = match scope.planted {
            // A new machine comes back as a learner of epoch 0, as `serve --join` starts one.
            _ if learners::applies(scope) && actor >= scope.replicas => {
                Ok(learners::restarted_learner(scope, actor, node.now, node.restarts))
            }
            Some(Planted::VotesAtOnce) => MReplica::new(config.clone(), me, Counter::default(), node.now),
            _ => MReplica::new_rejoining(config.clone(), me, Counter::default(), node.now, nonce),
        }
        .expect("valid model configuration");
        let lost_state = node.lost_state || node.replica.acceptor().max_bal != Ballot::default();
        let fresh = ReplicaNode { replica, restarts, lost_state, revealed_since_restart: None, ..node.clone() };
        self.replica_step(&fresh, o, |r, out| {
            let _ = r.replica.tick(r.now, out);
        })
        .unwrap_or(fresh)
    }
}

/// How a durable replica goes down before it restarts from its disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Down {
    /// After a sync: its log holds every record handed out.
    Synced,
    /// Before the records not yet synced reached the disk ([`Scope::lazy_sync`]).
    LosingUnsynced,
    /// Right after a compaction ([`Scope::compaction`]).
    Compacted,
}

/// What a compaction leaves on the disk of `replica` (as io-std's, every record synced
/// first): the pieces of a snapshot frozen now, persisted whole, and a log of the replica's
/// compacted image.
fn compacted(replica: &MReplica) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut buf = vec![0u8; 2048];
    let image = (0..replica.durable_image_len())
        .map(|i| replica.durable_image_record(i, &mut buf).expect("an image record fits its buffer").to_vec())
        .collect();
    (snapshot_now(replica), image)
}

/// The records of a snapshot of `replica` frozen now, as a binding persists them.
pub fn snapshot_now(replica: &MReplica) -> Vec<Vec<u8>> {
    let mut r = replica.clone();
    r.freeze_snapshot();
    let (mut scratch, mut buf) = (vec![0u8; 256], vec![0u8; 2048]);
    let mut pos = fleet_engine::rsl::snapshot::SnapshotPos::default();
    let mut snapshot = Vec::new();
    while let Some(piece) = fleet_engine::rsl::durable::snapshot_record(r.frozen(), pos, 128, &mut scratch, &mut buf) {
        let (len, next) = piece.expect("a snapshot piece fits its buffer");
        snapshot.push(buf[..len].to_vec());
        pos = next;
    }
    snapshot
}

fn durable_record(record: &[u8]) -> Option<DurableRecord<'_>> {
    wire::decode::<DurableRecord<'_>>(Protocol::Durable, record).ok()
}

fn is_acceptor_record(record: &[u8]) -> bool {
    matches!(durable_record(record), Some(DurableRecord::Acceptor(_)))
}

/// The epoch a replica is in, or retired into (what its latest epoch record names).
pub fn epoch_of(r: &MReplica) -> u64 {
    r.retired().map_or(r.config().epoch, |x| x.next.epoch)
}

/// The epoch the last epoch record of `log` names (0 without one).
pub fn log_epoch(log: &[Vec<u8>]) -> u64 {
    log.iter()
        .rev()
        .find_map(|r| match durable_record(r) {
            Some(DurableRecord::Epoch { epoch, .. }) => Some(epoch),
            _ => None,
        })
        .unwrap_or(0)
}

/// The model type.
pub type RslModel = ActorModel<Node, ModelCfg, History>;
/// A state of the model.
pub type RslState = ActorModelState<Node, History>;

fn record_out(cfg: &ModelCfg, h: &History, env: stateright::actor::Envelope<&Datagram>) -> Option<History> {
    let n = cfg.scope.hosts();
    let src = usize::from(env.src);
    if src < n {
        return None;
    }
    let Some(RslMsg::Request { seqno, request }) = env.msg.decode() else { return None };
    let client = src - n;
    if h.ops.iter().any(|op| op.client == client && op.seqno == seqno) {
        return None;
    }
    let mut h = h.clone();
    h.ops.push(HistOp { client, seqno, request: request.0.to_vec(), invoke: h.clock, ret: None });
    h.clock += 1;
    Some(h)
}

fn record_in(cfg: &ModelCfg, h: &History, env: stateright::actor::Envelope<&Datagram>) -> Option<History> {
    let n = cfg.scope.hosts();
    let (src, dst) = (usize::from(env.src), usize::from(env.dst));
    if dst < n || src >= n {
        return None;
    }
    let Some(RslMsg::Reply { seqno, reply }) = env.msg.decode() else { return None };
    let client = dst - n;
    let i = h.ops.iter().rposition(|op| op.client == client)?;
    if h.ops[i].seqno != seqno || h.ops[i].ret.is_some() {
        return None;
    }
    let mut h = h.clone();
    h.ops[i].ret = Some((h.clock, reply.0.to_vec()));
    h.clock += 1;
    Some(h)
}

/// The replicas of a state.
pub fn replicas(state: &RslState) -> Vec<&ReplicaNode> {
    state
        .actor_states
        .iter()
        .filter_map(|s| match &**s {
            NodeState::Replica(r) => Some(&**r),
            NodeState::Client(_) => None,
        })
        .collect()
}

/// Every datagram ever sent, decoded.
pub fn sent<'s>(cfg: &ModelCfg, state: &'s RslState) -> Vec<Sent<'s>> {
    let n = cfg.scope.hosts();
    state
        .network
        .iter_all()
        .filter_map(|env| {
            let msg = env.msg.decode()?;
            Some(Sent { src: endpoint(usize::from(env.src), n), dst: endpoint(usize::from(env.dst), n), msg })
        })
        .collect()
}

fn chosen(cfg: &ModelCfg, sent: &[Sent<'_>]) -> inv::Chosen {
    inv::chosen(&cfg.config, cfg.config.quorum(), sent)
}

/// Property: every replica's local and step invariants hold (the engine's `invariant()`s).
pub fn local_invariants(_: &RslModel, s: &RslState) -> bool {
    replicas(s).iter().all(|r| r.broken.is_none())
}

/// The cross-host invariants of a state, in order (one decoding pass over the network):
/// agreement (`lemma_ChosenQuorumsMatchValue`), 2a consistency
/// (`lemma_2aMessagesFromSameBallotAndOperationMatch`,
/// `lemma_ChosenQuorumAnd2aFromLaterBallotMatchValues`), executed = chosen
/// (`lemma_ExecutedOperationAndAllBeforeItWereChosen`) and replies justified
/// (`AbstractServiceRSL_s`). Returns the first violation.
pub fn cross_host(cfg: &ModelCfg, s: &RslState) -> Result<(), inv::Violation> {
    let sent = sent(cfg, s);
    let nodes = replicas(s);
    let rs: Vec<&MReplica> = nodes.iter().map(|r| &r.replica).collect();
    inv::check_all(&rs, &sent, &CounterApp(0))
}

/// Property: [`cross_host`] holds.
pub fn cross_host_invariants(m: &RslModel, s: &RslState) -> bool {
    cross_host(&m.cfg, s).is_ok()
}

/// The client history as the linearizability checker takes it.
pub fn operations(h: &History) -> Vec<Operation<Vec<u8>, Vec<u8>>> {
    h.ops
        .iter()
        .map(|op| Operation {
            client: op.client as u64,
            op: op.request.clone(),
            invoke_us: u64::from(op.invoke),
            complete: op.ret.as_ref().map(|(t, r)| (u64::from(*t), r.clone())),
        })
        .collect()
}

/// Property: the client history is linearizable against the counter spec.
pub fn linearizable(_: &RslModel, s: &RslState) -> bool {
    linearizability::check(&ClientOps(CounterApp(0)), &operations(&s.history), &Budget::steps(1_000_000)).is_ok()
}

/// Progress: some client got a reply.
pub fn reply_received(_: &RslModel, s: &RslState) -> bool {
    s.history.ops.iter().any(|op| op.ret.is_some())
}

/// Progress: a replica leads (phase 2) a view after the initial one.
pub fn view_changed(_: &RslModel, s: &RslState) -> bool {
    replicas(s).iter().any(|r| {
        let st = r.replica.status();
        st.is_leader && st.view > Ballot::INITIAL
    })
}

/// Reachability: some replica's phase 1 was given votes for two different batches at one
/// operation (from two ballots), where `merge_vote` must keep the higher ballot's.
pub fn merged_conflicting_votes(_: &RslModel, s: &RslState) -> bool {
    replicas(s).iter().any(|r| r.merged_conflicting_votes)
}

/// Progress: a replica restarted without the state it had (it had promised a ballot) takes
/// part again: it rejoined, and promises and votes from now on.
pub fn rejoined(_: &RslModel, s: &RslState) -> bool {
    replicas(s).iter().any(|r| r.lost_state && r.replica.rejoining().is_none())
}

/// The name of the [`rejoined`] progress property.
pub const REJOINED: &str = "a replica that lost its promises and votes takes part again";

/// The name of the [`merged_conflicting_votes`] reachability property.
pub const CONFLICTING_VOTES: &str = "a phase 1 merges different batches voted at one operation";

/// Progress: a leader answered a query without a log write.
pub fn query_answered(_: &RslModel, s: &RslState) -> bool {
    replicas(s).iter().any(|r| r.replica.stats().queries_answered > 0)
}

/// The name of the [`query_answered`] progress property.
pub const QUERY_ANSWERED: &str = "a leader answers a query without a log write";

/// Progress: a batch decided in a later view was executed somewhere.
pub fn executed_after_view_change(_: &RslModel, s: &RslState) -> bool {
    replicas(s).iter().any(|r| r.replica.executor().max_bal_reflected > Ballot::INITIAL)
}

fn within(cfg: &ModelCfg, s: &RslState) -> bool {
    let max = cfg.scope.max_view;
    let ticks: u32 = replicas(s).iter().map(|r| u32::from(r.ticks)).sum();
    let restarts: u32 = replicas(s).iter().map(|r| u32::from(r.restarts)).sum();
    ticks <= u32::from(cfg.scope.total_ticks)
        && restarts <= u32::from(cfg.scope.restarts)
        && replicas(s).iter().all(|r| r.replica.election().current_view <= max && r.replica.acceptor().max_bal <= max)
}

/// Names of the safety properties.
pub const SAFETY: [&str; 3] = [
    "local invariants (engine invariant() fns, Monotone::check_step)",
    "cross-host invariants (agreement, 2a consistency, executed = chosen, replies justified)",
    "linearizable (client history vs counter spec)",
];

/// Builds the model of `scope`, with or without the progress (`sometimes`) properties.
pub fn model(scope: Scope, progress: bool) -> RslModel {
    let config = config(&scope);
    let next = members::next_config(&scope);
    let mut m = ActorModel::new(ModelCfg { scope, config: config.clone() }, History::default())
        .actors((0..scope.replicas).map(|_| Node::Replica { scope, config: config.clone() }))
        .actors((scope.replicas..scope.hosts()).map(|_| Node::Replica { scope, config: next.clone() }))
        .actors((0..scope.clients).map(|_| Node::Client { scope }));
    // Across a membership change the cross-host invariants are stated per epoch.
    m = match scope.change {
        None => m.property(Expectation::Always, SAFETY[0], local_invariants).property(
            Expectation::Always,
            SAFETY[1],
            cross_host_invariants,
        ),
        Some(c) if c.clients_only => m,
        Some(_) => members::properties(m.property(Expectation::Always, SAFETY[0], local_invariants), progress),
    };
    if durable_members::applies(&scope) {
        m = durable_members::properties(m, progress);
    }
    if learners::applies(&scope) {
        m = learners::properties(m, progress);
    }
    m = m
        .property(Expectation::Always, SAFETY[2], linearizable)
        .record_msg_out(record_out)
        .record_msg_in(record_in)
        .within_boundary(within);
    if progress {
        m = m
            .property(Expectation::Sometimes, "a client gets a reply", reply_received)
            .property(Expectation::Sometimes, "a view change completes", view_changed)
            .property(Expectation::Sometimes, "a batch of a later view executes", executed_after_view_change)
            .property(Expectation::Sometimes, CONFLICTING_VOTES, merged_conflicting_votes)
            .property(Expectation::Sometimes, REJOINED, rejoined)
            .property(Expectation::Sometimes, QUERY_ANSWERED, query_answered);
    }
    m
}

/// What one exhaustive run found.
#[derive(Debug)]
pub struct Outcome {
    /// States generated (with repeats).
    pub states: usize,
    /// Distinct states.
    pub unique: usize,
    /// Random walks (simulation only; 0 for exhaustive runs).
    pub walks: usize,
    /// Deepest path.
    pub max_depth: usize,
    /// Wall-clock time.
    pub elapsed: Duration,
    /// Safety properties with a counterexample, with its trace.
    pub violations: Vec<(&'static str, String)>,
    /// Progress properties with a witness.
    pub reached: Vec<&'static str>,
    /// Random walks only: for each progress property reached, in how many walks.
    pub reached_walks: Vec<(&'static str, usize)>,
    /// Whether the run stopped at its state-count target rather than exhausting the scope.
    pub complete: bool,
}

/// Runs the model checker (DFS) on `scope`; stops early after `target` states if given.
pub fn run(scope: Scope, progress: bool, threads: usize, target: Option<usize>) -> Outcome {
    run_with(scope, progress, threads, target, false)
}

/// [`run`], optionally stopping at the first safety violation (for planted bugs).
pub fn run_with(scope: Scope, progress: bool, threads: usize, target: Option<usize>, stop_at_failure: bool) -> Outcome {
    let start = WallClock::now();
    let m = model(scope, progress);
    let mut builder = m.checker().threads(threads).symmetry_fn(walk::forget_last_msg);
    if stop_at_failure {
        builder = builder.finish_when(stateright::HasDiscoveries::AnyFailures);
    }
    if let Some(t) = target {
        builder = builder.target_state_count(t);
    }
    let checker = builder.spawn_dfs().join();
    let mut violations = Vec::new();
    let mut reached = Vec::new();
    for p in checker.model().properties() {
        if let Some(path) = checker.discovery(p.name) {
            match p.expectation {
                Expectation::Always => violations.push((p.name, trace(checker.model(), &path))),
                _ => reached.push(p.name),
            }
        }
    }
    let states = checker.state_count();
    Outcome {
        states,
        unique: checker.unique_state_count(),
        walks: 0,
        max_depth: checker.max_depth(),
        elapsed: start.elapsed(),
        violations,
        reached,
        reached_walks: Vec::new(),
        complete: target.is_none_or(|t| states < t),
    }
}

/// Random simulation of `scope` (see [`walk::simulate`]; a bounded random search, not
/// exhaustive). With `progress`, the `sometimes` properties are checked too.
pub fn simulate(scope: Scope, progress: bool, opts: SimOpts) -> Outcome {
    let start = WallClock::now();
    let m = model(scope, progress);
    // Archived walks start from states of a protocol-progress cell ([`cell`]).
    let cell: Option<walk::Cell<RslModel>> = (opts.from_archive_per_mille > 0).then_some(cell);
    let r = walk::simulate_archived(&m, &opts, walk::forget_last_msg, describe_state, cell);
    Outcome {
        states: r.states,
        unique: 0,
        walks: r.walks,
        max_depth: opts.max_depth,
        elapsed: start.elapsed(),
        violations: r.violations,
        reached: r.reached,
        reached_walks: r.reached_walks,
        complete: false,
    }
}

/// The abstraction archived random walks ([`walk::simulate_archived`]) build on, the
/// protocol's progress rather than the network's: per replica its view, its proposer's
/// phase and ballot, its promise, whether its phase 1 merged conflicting votes, its restarts
/// and rejoin stage; and the distinct votes held anywhere (operation, ballot, batch), not who holds them. States that
/// differ only in which datagrams are in flight, who voted, what executed or which timers
/// fired share a cell. (Finer cells, with vote holders, executed counts, suspicions, the 2b
/// sent, the chosen values or the timer firings, were measured too: they split the archive
/// into 4-8 times as many cells and reach the conflicting-votes situation 2-5 times less
/// often per state.)
pub fn cell(m: &RslModel, s: &RslState) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    if m.cfg.scope.change.is_some() {
        // Across a change, also each replica's epoch and whether it retired or rejoins.
        for r in replicas(s) {
            (r.replica.config().epoch, r.replica.retired().is_some(), r.replica.rejoining().is_some()).hash(&mut h);
        }
    }
    let mut votes: Vec<(u64, Ballot, &[u8])> = Vec::new();
    for r in replicas(s) {
        let (e, p, a) = (r.replica.election(), r.replica.proposer(), r.replica.acceptor());
        (e.current_view, p.phase, p.max_ballot_sent_1a, a.max_bal).hash(&mut h);
        votes.extend(a.votes().map(|v| (v.opn, v.bal, &v.batch[..])));
        r.merged_conflicting_votes.hash(&mut h);
        (r.restarts, r.replica.rejoining().map(|j| j.stage)).hash(&mut h);
    }
    votes.sort();
    votes.dedup();
    votes.hash(&mut h);
    h.finish()
}

/// States the CI simulation runs check at most: the planted bugs need 1,000-100,000
/// (seeds 1-11), and the unplanted control checks this many without a violation.
pub const SIM_CI_STATES: usize = 500_000;

/// States the CI runs of [`Scope::COMPETING_LEADERS`] check at most (archived walks,
/// [`SimOpts::archived`]): the unplanted control checks this many without a violation and
/// reaches [`CONFLICTING_VOTES`]; the planted `merge_vote` mutants are found within it.
pub const COMPETING_CI_STATES: usize = 400_000;

/// States the CI runs of [`Scope::AMNESIA`] check at most (archived walks): the control
/// (the real rejoin) checks this many without a violation; the planted
/// [`Planted::VotesAtOnce`] is found within it.
pub const AMNESIA_CI_STATES: usize = 150_000;

/// States the CI runs of [`Scope::DURABLE`] check at most (archived walks): the control
/// (the real records) checks this many without a violation; the planted
/// [`Planted::KeepsIncarnationLosesAcceptor`] is found within it (about 450,000 in since the
/// checkpoint report of session 28, 220,000 before).
pub const DURABLE_CI_STATES: usize = 600_000;

/// A readable counterexample: the actions of the path, one per line.
pub fn trace(m: &RslModel, path: &stateright::Path<RslState, <RslModel as Model>::Action>) -> String {
    let mut s = String::new();
    for (i, a) in path.clone().into_actions().iter().enumerate() {
        s.push_str(&format!("{i:3}: {}\n", m.format_action(a)));
    }
    if let Some(last) = path.clone().into_states().last() {
        s.push_str(&describe_state(m, last));
    }
    s
}

/// The violations, chosen quorums, replicas and history of a state, for traces.
pub fn describe_state(m: &RslModel, last: &RslState) -> String {
    if m.cfg.scope.change.is_some() {
        return members::describe_state(m, last);
    }
    let mut s = String::new();
    if let Err(v) = cross_host(&m.cfg, last) {
        s.push_str(&format!("cross-host violation: {v}\n"));
    }
    let c = chosen(&m.cfg, &sent(&m.cfg, last));
    for (opn, qs) in &c.by_opn {
        for q in qs {
            s.push_str(&format!(
                "chosen: op{opn} in {} = {} by {:?}\n",
                bal(q.bal),
                inv::describe_batch(&q.batch),
                q.senders
            ));
        }
    }
    for r in replicas(last) {
        let st = r.replica.status();
        s.push_str(&format!(
            "replica {}: view {} leader {} executed {} counter {} broken {:?}{}\n",
            r.replica.id(),
            bal(st.view),
            st.is_leader,
            st.ops_complete,
            r.replica.app().value,
            r.broken,
            match (r.restarts, r.replica.rejoining()) {
                (0, _) => String::new(),
                (k, None) => format!(" restarted {k}x, taking part"),
                (k, Some(j)) => format!(" restarted {k}x, rejoining ({:?})", j.stage),
            }
        ));
    }
    s.push_str(&format!("history: {:?}\n", last.history.ops));
    s
}

/// Keeps `Bytes` in scope for message construction in tests.
pub fn bytes(b: &[u8]) -> Bytes<'_> {
    Bytes(b)
}
