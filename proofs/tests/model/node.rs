//! The actors: a replica actor holding a real engine `Replica`, a client actor holding a
//! real `Client`, and how each step runs the engine and sends what it hands out.

use std::borrow::Cow;

use fleet_engine::rsl::apps::counter::Counter;
use fleet_engine::rsl::{Ballot, Client, Replica, RslConfig, RslMsg};
use fleet_engine::wire;
use fleet_engine::{Endpoint, Instant, OutboxBuf};
use stateright::actor::{model_timeout, Actor, Id, Out};

use super::{
    actor_of, conflicts_with_merged, durable_members, encode, endpoint, forge_read_acks, forget_votes, learners,
    members, merge_mutant, own_endpoint, own_vote_mutant, Datagram, Down, Planted, Scope,
};

/// The replica under check: the paper's counter app, 3 replicas at most, a window of 4,
/// 256-byte datagrams, a 512-byte request queue, 4 cached clients, 16-byte replies.
pub type MReplica = Replica<Counter, 3, 4, 256, 512, 4, 16, 1024>;
/// A durable record on a model replica's disk: shared bytes, as every step clones the
/// replica's whole log (a copy of each record per step was a quarter of a durable scope's
/// time). Hashes as the bytes do.
pub type Record = std::sync::Arc<[u8]>;
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
    pub log: Vec<Record>,
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
            o.send(Id::from(id), Datagram(mutate(bytes).into()));
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
    let shown = merge_mutant(planted, &r.replica, bytes).or_else(|| own_vote_mutant(planted, &r.replica, bytes));
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

    pub(super) fn replica_step(
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
                        Ok(r) => next.log.push(r.into()),
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
                    (Some(Planted::LowerBallotAccept), Some(RslMsg::TwoA { bal, opn, .. }))
                        if node.replica.id() == n - 1 && bal < node.replica.acceptor().max_bal =>
                    {
                        let opn_ckpt = node.replica.executor().ops_complete;
                        Some(encode(node.replica.cluster(), &RslMsg::TwoB { bal, opn, opn_ckpt }))
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
                    // As a binding does after a receive burst (here of one datagram): what
                    // the step left due now (a partial batch at an idle leader) runs with
                    // it, outside the tick budget, which bounds the clock's own firings.
                    if r.replica.next_deadline() <= r.now {
                        let _ = r.replica.tick(r.now, out);
                    }
                });
                if let Some(bytes) = forged_2b {
                    for i in 0..n {
                        o.send(Id::from(i), Datagram(bytes.as_slice().into()));
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
}
