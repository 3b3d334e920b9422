//! What the model explores: the [`Scope`] and its named scopes, the replicas' parameters
//! and configuration, and how many states CI checks of each scope.

use fleet_engine::rsl::{Ballot, Params, RslConfig};
use fleet_engine::Endpoint;

use super::{endpoint, Membership, Planted};

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
    ///
    /// [`ModelTimer::Crash`]: super::ModelTimer::Crash
    pub lazy_sync: bool,
    /// [`Scope::durable`]: a restart may also follow a compaction ([`ModelTimer::Compact`]):
    /// the binding froze and persisted a snapshot and replaced its log with the replica's
    /// compacted image (`Replica::durable_image_record`), then crashed; the replica is
    /// rebuilt from that snapshot and image.
    ///
    /// [`ModelTimer::Compact`]: super::ModelTimer::Compact
    pub compaction: bool,
    /// Each client's last request is the counter's query (`Counter::QUERY`), which the
    /// leader answers without a log write (`fleet_engine::rsl::reads`); the others
    /// increment.
    pub queries: bool,
    /// A membership change ([`members`]): the next epoch's replicas, new machines among
    /// them started without state for it, and a client that asks for the change.
    ///
    /// [`members`]: super::members
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
    ///
    /// [`SimOpts::archived`]: super::SimOpts::archived
    /// [`cell`]: super::cell
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

/// States the CI simulation runs check at most: the planted bugs need 1,000-100,000
/// (seeds 1-11), and the unplanted control checks this many without a violation.
pub const SIM_CI_STATES: usize = 500_000;

/// States the CI runs of [`Scope::COMPETING_LEADERS`] check at most (archived walks,
/// [`SimOpts::archived`]): the unplanted control checks this many without a violation and
/// reaches [`CONFLICTING_VOTES`]; the planted `merge_vote` mutants are found within it.
///
/// [`SimOpts::archived`]: super::SimOpts::archived
/// [`CONFLICTING_VOTES`]: super::CONFLICTING_VOTES
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
