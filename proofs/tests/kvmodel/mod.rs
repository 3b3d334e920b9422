//! A stateright model of a Fleet IronKV cluster whose actors *are* the engine: each host
//! actor holds a real `fleet_engine::kv::KvHost` and each client actor a real `KvClient`,
//! exchanging the real wire bytes, in the style of the RSL model (`tests/model`).
//!
//! * **Network**: stateright's unordered duplicating network: any datagram may be delivered
//!   any number of times, in any order, or never (loss, duplication and reordering, which
//!   reliable single delivery must mask).
//! * **Time**: each host and client has its own clock; its timer may fire at any moment
//!   (jumping the clock to its `next_deadline()` and calling `tick`), within a budget.
//! * **Workload**: each client runs a fixed script of Gets and Sets, one after the other,
//!   starting at host 0 (the initial owner of every key) or at a chosen host; an admin
//!   client sends one Shard to the range's owner at start.
//! * **History**: a client announces each invocation and each completion with a note it
//!   sends to itself (never delivered: a no-op), which `record_msg_out` turns into the
//!   history (an auxiliary variable, as in TLA+), so the history is exactly what the real
//!   client reported.
//! * **Planted bugs** ([`KvPlanted`]) are actor wrappers, never engine code.
#![allow(dead_code)]

use std::borrow::Cow;

use fleet_engine::kv::{Event, HeaplessStore, KvClient, KvConfig, KvParams, Outcome, ReliableParams, Request};
use fleet_engine::{Endpoint, Instant, OutboxBuf};
use fleet_proofs::spec::kv::{KvOp, KvRet};
use stateright::actor::{model_timeout, Actor, ActorModel, ActorModelState, Id, Out};
use stateright::Expectation;

#[path = "../walk/mod.rs"]
pub mod walk;
pub use walk::SimOpts;

pub mod check;
pub mod host;
pub mod msg;
pub mod props;
pub mod scope;
pub use check::{describe_state, run, run_with, simulate, KvOutcome};
pub use host::AnyHost;
pub use msg::{Msg, Note, NoteRet};
pub use props::*;
pub use scope::{KvPlanted, KvScope};

/// The store of a model host: 8 keys of at most 16 bytes.
pub type MStore = HeaplessStore<8, 16>;
/// The client under check.
pub type MClient = KvClient<3, 4, 128>;
type Buf = OutboxBuf<16, 4096>;

thread_local! {
    static BUF: std::cell::RefCell<Box<Buf>> = std::cell::RefCell::new(Box::new(Buf::new()));
}

fn with_outbox<T>(f: impl FnOnce(&mut fleet_engine::Outbox<'_>) -> T) -> T {
    BUF.with(|b| {
        let mut b = b.borrow_mut();
        let mut out = b.outbox();
        f(&mut out)
    })
}

/// The parameters of every model host and client: small values and datagrams.
pub fn params() -> KvParams {
    KvParams {
        max_value_bytes: 16,
        max_datagram_bytes: 128,
        reliable: ReliableParams { retransmit_ms: 5, max_retransmit_ms: 20, max_unacked_per_peer: 4, give_up_after: 2 },
    }
}

/// Endpoint of actor `id` (hosts first, then clients, then the admin).
pub fn endpoint(id: usize, hosts: usize) -> Endpoint {
    if id < hosts {
        Endpoint::v4([10, 0, 0, id as u8 + 1], 7000)
    } else {
        Endpoint::v4([10, 0, 1, (id - hosts) as u8 + 1], 9000)
    }
}

fn actor_of(ep: Endpoint, scope: &KvScope) -> Option<usize> {
    (0..scope.actors()).find(|&i| endpoint(i, scope.hosts) == ep)
}

/// The cluster configuration of a scope.
pub fn config(scope: &KvScope) -> KvConfig<3> {
    let eps: Vec<Endpoint> = (0..scope.hosts).map(|i| endpoint(i, scope.hosts)).collect();
    let mut c = KvConfig::new(&eps).expect("at most 3 hosts");
    c.params = params();
    c
}

/// A host actor's state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostNode {
    /// The real engine host.
    pub host: AnyHost,
    /// This host's clock.
    pub now: Instant,
    /// Timer firings used.
    pub ticks: u8,
    /// The first local invariant found broken.
    pub broken: Option<&'static str>,
    /// Planted `ServesAfterDelegating`: the stale copy serving clients.
    pub ghost: Option<Box<AnyHost>>,
    /// The host restarted without its state (at most once).
    pub restarted: bool,
}

/// The model's timers: a host's or client's clock-driven step, or a host's restart without
/// its state.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// `tick` at the next deadline.
    Tick,
    /// Restart without state.
    Restart,
}

/// The nonce of a host restarted without state: above every seqno a model client uses.
const RESTART_NONCE: u64 = 1_000_000;

/// A client actor's state (workload clients and the admin).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientNode {
    /// The real engine client.
    pub client: MClient,
    /// This client's clock.
    pub now: Instant,
    /// Timer firings used.
    pub ticks: u8,
    /// Script operations submitted.
    pub submitted: usize,
    /// Script operations completed.
    pub completed: usize,
}

/// An actor's state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NodeState {
    /// A host.
    Host(Box<HostNode>),
    /// A client.
    Client(Box<ClientNode>),
}

/// The model's actors.
#[derive(Clone)]
pub enum Node {
    /// A host.
    Host {
        /// The scope.
        scope: KvScope,
        /// The cluster.
        config: KvConfig<3>,
    },
    /// A workload client (`index` among the workload clients) or the admin (`None`).
    Client {
        /// The scope.
        scope: KvScope,
        /// Which client.
        index: Option<usize>,
    },
}

/// The client history: one entry per submitted operation.
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
    /// Client index.
    pub client: usize,
    /// Script index.
    pub index: usize,
    /// The operation.
    pub op: KvOp,
    /// Logical invocation time.
    pub invoke: u32,
    /// Logical return time and result (`Some((t, None))`: refused).
    pub ret: Option<(u32, Option<KvRet>)>,
}

fn emit(o: &mut Out<Node>, scope: &KvScope, out: &fleet_engine::Outbox<'_>, to_hosts: bool, to_clients: bool) {
    for (dst, bytes) in out.iter() {
        if let Some(id) = actor_of(dst, scope) {
            if (id < scope.hosts && to_hosts) || (id >= scope.hosts && to_clients) {
                let planted = match scope.planted {
                    Some(KvPlanted::ForgetsGivingUp) => host::forget_lost(bytes),
                    _ => None,
                };
                o.send(Id::from(id), Msg::Wire(planted.map_or_else(|| bytes.into(), Into::into)));
            }
        }
    }
}

impl Node {
    fn scope(&self) -> &KvScope {
        match self {
            Node::Host { scope, .. } | Node::Client { scope, .. } => scope,
        }
    }

    fn arm(&self, o: &mut Out<Node>, ticks: u8, budget: u8, deadline: Instant) {
        if ticks < budget && deadline != Instant::NEVER {
            o.set_timer(Timer::Tick, model_timeout());
        } else {
            o.cancel_timer(Timer::Tick);
        }
    }

    /// One host step: `step` runs on the real host (and, under the planted bug, on the stale
    /// copy for workload-client datagrams). `base` is the state before the step (for the
    /// no-op test); `node` may already carry the step's clock and budget changes (`force`:
    /// the step happened even if it changed nothing, as a timer firing does).
    fn host_step(
        &self,
        base: &HostNode,
        mut next: HostNode,
        o: &mut Out<Node>,
        from_client: bool,
        force: bool,
        step: impl Fn(&mut AnyHost, Instant, &mut fleet_engine::Outbox<'_>),
    ) -> Option<HostNode> {
        let scope = *self.scope();
        let changed = with_outbox(|out| {
            step(&mut next.host, next.now, out);
            if next.broken.is_none() {
                next.broken = next.host.check_invariants().err();
            }
            let shard_started = next.host.outgoing().len() > base.host.outgoing().len();
            let emitted = !out.is_empty();
            let ghost_active = next.ghost.is_some();
            // Under the planted bug the stale copy answers the clients; the real host still
            // talks to hosts.
            emit(o, &scope, out, true, !ghost_active);
            if let (Some(ghost), true) = (&mut next.ghost, from_client) {
                out.clear();
                step(ghost, next.now, out);
                emit(o, &scope, out, false, true);
            }
            if shard_started && scope.planted == Some(KvPlanted::ServesAfterDelegating) && !ghost_active {
                next.ghost = Some(Box::new(base.host.clone()));
            }
            force || emitted || next != *base
        });
        if !changed {
            return None;
        }
        self.arm(o, next.ticks, scope.host_ticks, next.host.next_deadline());
        Some(next)
    }

    fn client_step(
        &self,
        node: &ClientNode,
        o: &mut Out<Node>,
        id: Id,
        step: impl FnOnce(&mut ClientNode, &mut fleet_engine::Outbox<'_>, &mut Vec<Note>),
    ) -> Option<ClientNode> {
        let scope = *self.scope();
        let mut next = node.clone();
        let mut notes = Vec::new();
        let changed = with_outbox(|out| {
            step(&mut next, out, &mut notes);
            if next == *node && out.is_empty() && notes.is_empty() {
                return false;
            }
            emit(o, &scope, out, true, true);
            true
        });
        if !changed {
            return None;
        }
        for n in notes {
            o.send(id, Msg::Note(n));
        }
        self.arm(o, next.ticks, scope.client_ticks, next.client.next_deadline());
        Some(next)
    }
}

/// Submits the next script operation of workload client `index`, if any.
fn submit_next(
    scope: &KvScope,
    index: usize,
    c: &mut ClientNode,
    out: &mut fleet_engine::Outbox<'_>,
    notes: &mut Vec<Note>,
) {
    let script = &scope.clients[index];
    let Some(op) = script.ops.get(c.submitted) else { return };
    let started = match script.start_at {
        Some(h) => c.client.submit_to(c.now, endpoint(h, scope.hosts), op.request(), out),
        None => c.client.submit(c.now, op.request(), out),
    };
    if started.is_ok() {
        notes.push(Note::Invoke { client: index, index: c.submitted });
        c.submitted += 1;
    }
}

impl Actor for Node {
    type Msg = Msg;
    type State = NodeState;
    type Timer = Timer;
    type Random = ();
    type Storage = ();

    fn on_start(&self, id: Id, _storage: &Option<()>, o: &mut Out<Self>) -> NodeState {
        let me = usize::from(id);
        let scope = *self.scope();
        match self {
            Node::Host { config, .. } => {
                let host = AnyHost::new(config.clone(), me, scope.narrow_table);
                if scope.restart_host == Some(me) {
                    o.set_timer(Timer::Restart, model_timeout());
                }
                NodeState::Host(Box::new(HostNode {
                    host,
                    now: Instant::ZERO,
                    ticks: 0,
                    broken: None,
                    ghost: None,
                    restarted: false,
                }))
            }
            Node::Client { index, .. } => {
                let eps: Vec<Endpoint> = (0..scope.hosts).map(|i| endpoint(i, scope.hosts)).collect();
                let client = MClient::new(&eps, 1, params()).expect("valid model client");
                let node = ClientNode { client, now: Instant::ZERO, ticks: 0, submitted: 0, completed: 0 };
                let index = *index;
                let next = self
                    .client_step(&node, o, id, |c, out, notes| match index {
                        Some(i) => submit_next(&scope, i, c, out, notes),
                        None => {
                            if let Some(cmd) = scope.shard {
                                let dst = endpoint(cmd.from, scope.hosts);
                                let req = Request::Shard(cmd.range, endpoint(cmd.to, scope.hosts));
                                if c.client.submit_to(c.now, dst, req, out).is_ok() {
                                    c.submitted += 1;
                                }
                            }
                        }
                    })
                    .unwrap_or(node);
                NodeState::Client(Box::new(next))
            }
        }
    }

    fn on_msg(&self, id: Id, state: &mut Cow<NodeState>, src: Id, msg: Msg, o: &mut Out<Self>) {
        let Msg::Wire(bytes) = msg else { return };
        let scope = *self.scope();
        let from = endpoint(usize::from(src), scope.hosts);
        let from_client = usize::from(src) >= scope.hosts && usize::from(src) != scope.admin();
        let next = match &**state {
            NodeState::Host(node) => {
                let planted = match scope.planted {
                    Some(KvPlanted::AcceptsStaleChannel) => host::forget_closed_channels(&node.host, from, &bytes),
                    _ => None,
                };
                let bytes: std::sync::Arc<[u8]> = planted.map_or(bytes, Into::into);
                self.host_step(node, (**node).clone(), o, from_client, false, |h, now, out| {
                    h.handle(now, from, &bytes, out);
                })
                .map(|n| NodeState::Host(Box::new(n)))
            }
            NodeState::Client(node) => {
                let Node::Client { index, .. } = self else { return };
                let index = *index;
                self.client_step(node, o, id, |c, out, notes| {
                    let ret = match c.client.handle(c.now, from, &bytes, out) {
                        Some(Event::Completed(done)) => match done.outcome {
                            Outcome::Value(v) => Some(Some(NoteRet::Value(v.map(<[u8]>::to_vec)))),
                            Outcome::Written => Some(Some(NoteRet::Written)),
                            Outcome::Sharded | Outcome::Failed(_) => Some(Some(NoteRet::Refused)),
                        },
                        // Over with an unknown outcome: no return in the history (pending).
                        Some(Event::Lost { .. }) => Some(None),
                        _ => None,
                    };
                    if let Some(ret) = ret {
                        c.completed += 1;
                        if let Some(i) = index {
                            if let Some(ret) = ret {
                                notes.push(Note::Return { client: i, index: c.completed - 1, ret });
                            }
                            submit_next(&scope, i, c, out, notes);
                            if scope.flush_when_done && c.client.pending().is_none() {
                                c.client.flush_acks(out);
                            }
                        }
                    }
                })
                .map(|n| NodeState::Client(Box::new(n)))
            }
        };
        if let Some(next) = next {
            *state = Cow::Owned(next);
        }
    }

    fn on_timeout(&self, _id: Id, state: &mut Cow<NodeState>, timer: &Timer, o: &mut Out<Self>) {
        let scope = *self.scope();
        let next = match &**state {
            NodeState::Host(node) if *timer == Timer::Restart => {
                let Node::Host { config, .. } = self else { return };
                o.cancel_timer(Timer::Restart);
                let mut n = (**node).clone();
                let planted = scope.planted == Some(KvPlanted::ClaimsInitialRanges);
                n.host = n.host.restart_without_state(config.clone(), RESTART_NONCE, planted, n.now);
                n.restarted = true;
                n.ghost = None;
                self.arm(o, n.ticks, scope.host_ticks, n.host.next_deadline());
                Some(NodeState::Host(Box::new(n)))
            }
            NodeState::Host(node) => {
                let mut n = (**node).clone();
                n.ticks += 1;
                n.now = n.now.max(n.host.next_deadline());
                self.host_step(node, n, o, false, true, |h, now, out| {
                    h.tick(now, out);
                })
                .map(|n| NodeState::Host(Box::new(n)))
            }
            NodeState::Client(node) => {
                let mut n = (**node).clone();
                n.ticks += 1;
                n.now = n.now.max(n.client.next_deadline());
                with_outbox(|out| {
                    n.client.tick(n.now, out);
                    emit(o, &scope, out, true, true);
                });
                self.arm(o, n.ticks, scope.client_ticks, n.client.next_deadline());
                Some(NodeState::Client(Box::new(n)))
            }
        };
        if let Some(next) = next {
            *state = Cow::Owned(next);
        }
    }
}

/// The model type.
pub type KvModel = ActorModel<Node, KvScope, History>;
/// A state of the model.
pub type KvState = ActorModelState<Node, History>;

fn record_out(scope: &KvScope, h: &History, env: stateright::actor::Envelope<&Msg>) -> Option<History> {
    let Msg::Note(note) = env.msg else { return None };
    let mut h = h.clone();
    match note {
        Note::Invoke { client, index } => {
            let op = scope.clients[*client].ops[*index].spec();
            h.ops.push(HistOp { client: *client, index: *index, op, invoke: h.clock, ret: None });
        }
        Note::Return { client, index, ret } => {
            let e = h.ops.iter_mut().find(|e| e.client == *client && e.index == *index)?;
            let ret = match ret {
                NoteRet::Refused => None,
                NoteRet::Written => Some(KvRet::Ok),
                NoteRet::Value(v) => Some(KvRet::Value(v.clone())),
            };
            e.ret = Some((h.clock, ret));
        }
    }
    h.clock += 1;
    Some(h)
}

/// Names of the safety properties.
pub const SAFETY: [&str; 3] = [
    "local invariants (KvHost::check_invariants)",
    "ownership (each key held by one host or one in-flight Delegate)",
    "linearizable per key (history vs spec::kv)",
];

/// Builds the model of `scope`, with or without the progress (`sometimes`) properties.
pub fn model(scope: KvScope, progress: bool) -> KvModel {
    let config = config(&scope);
    let mut m = ActorModel::new(scope, History::default())
        .actors((0..scope.hosts).map(|_| Node::Host { scope, config: config.clone() }))
        .actors((0..scope.clients.len()).map(|i| Node::Client { scope, index: Some(i) }))
        .actor(Node::Client { scope, index: None })
        .property(Expectation::Always, SAFETY[0], local_invariants)
        .property(Expectation::Always, SAFETY[1], ownership_holds)
        .property(Expectation::Always, SAFETY[2], linearizable)
        .record_msg_out(record_out);
    if progress {
        m = m
            .property(Expectation::Sometimes, "a Get or Set completes", op_completed)
            .property(Expectation::Sometimes, "a Shard completes", shard_completed)
            .property(Expectation::Sometimes, "a Get reads a written value", read_after_move)
            .property(Expectation::Sometimes, "a client's channel is evicted", channel_closed)
            .property(Expectation::Sometimes, "a host restarted without state", host_restarted)
            .property(Expectation::Sometimes, "a restarted host ended its join", restarted_host_joined);
    }
    m
}
