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
use std::fmt;
use std::time::{Duration, Instant as WallClock};

use fleet_engine::kv::{
    Body, Event, Frame, HeaplessStore, KeyBound, KeyRange, KvClient, KvConfig, KvParams, Outcome, ReliableParams,
    Request,
};
use fleet_engine::wire::{self, Protocol};
use fleet_engine::{Endpoint, Instant, OutboxBuf};
use fleet_proofs::linearizability::{check_partitioned, Operation};
use fleet_proofs::spec::kv::{KvOp, KvRet, KvSpec};
use fleet_proofs::Budget;
use stateright::actor::{model_timeout, Actor, ActorModel, ActorModelState, Id, Out};
use stateright::{Checker, Expectation, Model};

#[path = "../walk/mod.rs"]
pub mod walk;
pub use walk::SimOpts;

pub mod host;
pub use host::AnyHost;

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

/// One scripted client operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScriptOp {
    /// Read a key.
    Get(u64),
    /// Write a key.
    Set(u64, &'static [u8]),
}

impl ScriptOp {
    fn spec(self) -> KvOp {
        match self {
            ScriptOp::Get(k) => KvOp::Get(k),
            ScriptOp::Set(k, v) => KvOp::Set(k, v.to_vec()),
        }
    }

    fn request(self) -> Request<'static> {
        match self {
            ScriptOp::Get(k) => Request::Get(k),
            ScriptOp::Set(k, v) => Request::Set(k, v),
        }
    }
}

/// A workload client: where it sends its first request and what it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Script {
    /// The host it starts each operation at (`None`: the host it believes owns the key,
    /// host 0 while it knows nothing).
    pub start_at: Option<usize>,
    /// Its operations, one after the other.
    pub ops: &'static [ScriptOp],
}

/// A Shard the admin sends at start: `range` from host `from` (its owner) to host `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardCmd {
    /// The range.
    pub range: KeyRange,
    /// Its owner (the host the admin sends the command to).
    pub from: usize,
    /// The recipient.
    pub to: usize,
}

/// What the model explores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvScope {
    /// Hosts (at most 3).
    pub hosts: usize,
    /// Workload clients.
    pub clients: &'static [Script],
    /// The admin's Shard, if any.
    pub shard: Option<ShardCmd>,
    /// Timer firings per host.
    pub host_ticks: u8,
    /// Timer firings per client (the admin included).
    pub client_ticks: u8,
    /// Keys the ownership invariant samples (workload keys and range bounds).
    pub sample_keys: &'static [u64],
    /// A deliberately wrong variant.
    pub planted: Option<KvPlanted>,
    /// Hosts with room for two clients only ([`host::MHostNarrow`]), so clients are evicted.
    pub narrow_table: bool,
    /// A workload client acknowledges its last reply at once when its script is done (as
    /// the blocking client does), instead of on a timer firing.
    pub flush_when_done: bool,
}

/// Bugs planted by wrapping actors (never in the engine).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvPlanted {
    /// After carrying out a Shard, the old owner keeps answering clients from a copy of its
    /// state before the Shard (split brain): its Delegate still goes out and the recipient
    /// takes the range over, but workload clients are served by the stale copy, which
    /// still believes it owns the range.
    ServesAfterDelegating,
    /// The host forgets the channels it evicted: a delayed copy of an evicted client's first
    /// request is taken as a new client's first message and executed a second time
    /// ([`host::forget_closed_channels`]).
    AcceptsStaleChannel,
}

const K_STAY: u64 = 5;
const K_MOVE: u64 = 15;
const MOVED: KeyRange = KeyRange { lo: KeyBound::Key(10), hi: KeyBound::Inf };

impl KvScope {
    /// CI: two hosts; host 0 moves `[10, ∞)` to host 1 while client 0 (starting at host 0)
    /// writes key 15 and client 1 (starting at host 1) reads it.
    pub const CI: KvScope = KvScope {
        hosts: 2,
        clients: &[
            Script { start_at: None, ops: &[ScriptOp::Set(K_MOVE, b"a")] },
            Script { start_at: Some(1), ops: &[ScriptOp::Get(K_MOVE)] },
        ],
        shard: Some(ShardCmd { range: MOVED, from: 0, to: 1 }),
        host_ticks: 0,
        client_ticks: 0,
        sample_keys: &[0, K_STAY, 9, 10, K_MOVE, u64::MAX],
        planted: None,
        narrow_table: false,
        flush_when_done: false,
    };

    /// The planted-bug workload: client 0 (at host 0) reads key 5, then key 15; client 1
    /// (at host 1) writes key 15. With the range moved to host 1, a read of key 15 at a
    /// stale old owner, invoked after client 1's write completed, is not linearizable.
    pub const READ_AFTER_WRITE: KvScope = KvScope {
        hosts: 2,
        clients: &[
            Script { start_at: None, ops: &[ScriptOp::Get(K_STAY), ScriptOp::Get(K_MOVE)] },
            Script { start_at: Some(1), ops: &[ScriptOp::Set(K_MOVE, b"b")] },
        ],
        shard: Some(ShardCmd { range: MOVED, from: 0, to: 1 }),
        host_ticks: 0,
        client_ticks: 0,
        sample_keys: &[0, K_STAY, 9, 10, K_MOVE, u64::MAX],
        planted: None,
        narrow_table: false,
        flush_when_done: false,
    };

    /// The smallest: host 0 moves `[10, ∞)` to host 1 while one client writes key 15.
    pub const TINY: KvScope = KvScope {
        hosts: 2,
        clients: &[Script { start_at: None, ops: &[ScriptOp::Set(K_MOVE, b"a")] }],
        shard: Some(ShardCmd { range: MOVED, from: 0, to: 1 }),
        host_ticks: 0,
        client_ticks: 0,
        sample_keys: &[0, K_STAY, 9, 10, K_MOVE, u64::MAX],
        planted: None,
        narrow_table: false,
        flush_when_done: false,
    };

    /// Longer: client 0 writes key 15 twice, then reads key 5; client 1 reads key 15 and
    /// then writes it; one timer firing per host and per client.
    pub const LONG: KvScope = KvScope {
        hosts: 2,
        clients: &[
            Script {
                start_at: None,
                ops: &[ScriptOp::Set(K_MOVE, b"a"), ScriptOp::Set(K_MOVE, b"b"), ScriptOp::Get(K_STAY)],
            },
            Script { start_at: Some(1), ops: &[ScriptOp::Get(K_MOVE), ScriptOp::Set(K_MOVE, b"c")] },
        ],
        shard: Some(ShardCmd { range: MOVED, from: 0, to: 1 }),
        host_ticks: 1,
        client_ticks: 1,
        sample_keys: &[0, K_STAY, 9, 10, K_MOVE, u64::MAX],
        planted: None,
        narrow_table: false,
        flush_when_done: false,
    };

    /// Eviction: one host with room for two clients; client 0 writes `a` to key 15,
    /// client 1 writes `b` to it, client 2 reads key 5, then key 15 twice. Each acks its
    /// last reply when done, so it is settled and may be evicted; client 2's first request
    /// finds the table full and evicts one. Every request stays in the network and may be
    /// delivered again later: a second execution of a write between client 2's two reads
    /// of key 15 (`b` then `a`, both writes completed before the first read) is not
    /// linearizable.
    pub const EVICTION: KvScope = KvScope {
        hosts: 1,
        clients: &[
            Script { start_at: None, ops: &[ScriptOp::Set(K_MOVE, b"a")] },
            Script { start_at: None, ops: &[ScriptOp::Set(K_MOVE, b"b")] },
            Script { start_at: None, ops: &[ScriptOp::Get(K_STAY), ScriptOp::Get(K_MOVE), ScriptOp::Get(K_MOVE)] },
        ],
        shard: None,
        host_ticks: 0,
        client_ticks: 0,
        sample_keys: &[0, K_STAY, K_MOVE, u64::MAX],
        planted: None,
        narrow_table: true,
        flush_when_done: true,
    };

    fn actors(&self) -> usize {
        self.hosts + self.clients.len() + 1
    }

    fn admin(&self) -> usize {
        self.hosts + self.clients.len()
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

/// How a client operation ended, as a note carries it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NoteRet {
    /// Refused by the host: no effect.
    Refused,
    /// A Set took effect.
    Written,
    /// A Get's value.
    Value(Option<Vec<u8>>),
}

/// A history note a client sends itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Note {
    /// Operation `index` of the client's script was submitted.
    Invoke {
        /// Client index (among workload clients).
        client: usize,
        /// Script index.
        index: usize,
    },
    /// Operation `index` completed with `ret`.
    Return {
        /// Client index.
        client: usize,
        /// Script index.
        index: usize,
        /// The result.
        ret: NoteRet,
    },
}

/// A message on the model's network.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Msg {
    /// The engine's wire bytes.
    Wire(Vec<u8>),
    /// A history note (auxiliary; never changes an actor).
    Note(Note),
}

/// A one-line description of a KV datagram.
pub fn describe(bytes: &[u8]) -> String {
    match wire::decode::<Frame<'_>>(Protocol::Kv, bytes) {
        Ok(Frame::Ack { seqno }) => format!("Ack#{seqno}"),
        Ok(Frame::Refused { seqno, reason }) => format!("Refused#{seqno}({reason:?})"),
        Ok(Frame::Single { base, seqno, ack, body }) => {
            let b = match postcard::from_bytes::<Body<'_>>(body.0) {
                Ok(Body::GetRequest { key }) => format!("Get({key})"),
                Ok(Body::SetRequest { key, value }) => {
                    format!("Set({key}, {:?})", value.map(|v| String::from_utf8_lossy(v.0).into_owned()))
                }
                Ok(Body::Reply { req, key, value }) => {
                    format!("Reply(req {req}, {key}, {:?})", value.map(|v| String::from_utf8_lossy(v.0).into_owned()))
                }
                Ok(Body::Redirect { req, key, owner }) => format!("Redirect(req {req}, {key} -> {owner:?})"),
                Ok(Body::Shard { range, recipient }) => format!("Shard({range:?} -> {recipient:?})"),
                Ok(Body::Delegate { transfer, range, part, parts, total_pairs, .. }) => {
                    format!("Delegate(#{transfer} {range:?} {}/{parts}, {total_pairs} pairs)", part + 1)
                }
                Ok(Body::Sharded { req }) => format!("Sharded(req {req})"),
                Ok(Body::Error { req, error }) => format!("Error(req {req}, {error:?})"),
                Err(_) => "undecodable body".to_string(),
            };
            format!("#{seqno}(base {base}, ack {ack}) {b}")
        }
        Err(_) => format!("undecodable {bytes:02x?}"),
    }
}

impl fmt::Debug for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Msg::Wire(b) => f.write_str(&describe(b)),
            Msg::Note(n) => write!(f, "note {n:?}"),
        }
    }
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
}

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
                o.send(Id::from(id), Msg::Wire(bytes.to_vec()));
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
            o.set_timer((), model_timeout());
        } else {
            o.cancel_timer(());
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
    type Timer = ();
    type Random = ();
    type Storage = ();

    fn on_start(&self, id: Id, _storage: &Option<()>, o: &mut Out<Self>) -> NodeState {
        let me = usize::from(id);
        let scope = *self.scope();
        match self {
            Node::Host { config, .. } => {
                let host = AnyHost::new(config.clone(), me, scope.narrow_table);
                NodeState::Host(Box::new(HostNode { host, now: Instant::ZERO, ticks: 0, broken: None, ghost: None }))
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
                let bytes = planted.unwrap_or(bytes);
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

    fn on_timeout(&self, _id: Id, state: &mut Cow<NodeState>, _timer: &(), o: &mut Out<Self>) {
        let scope = *self.scope();
        let next = match &**state {
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

/// The hosts of a state.
pub fn hosts(s: &KvState) -> Vec<&HostNode> {
    s.actor_states
        .iter()
        .filter_map(|a| match &**a {
            NodeState::Host(h) => Some(&**h),
            NodeState::Client(_) => None,
        })
        .collect()
}

/// Property: every host's local invariants hold (`KvHost::check_invariants`).
pub fn local_invariants(_: &KvModel, s: &KvState) -> bool {
    hosts(s).iter().all(|h| h.broken.is_none())
}

/// The ownership invariant (the KV simulator's `check_ownership`): every sampled key is
/// owned by exactly one host or by exactly one in-flight Delegate transfer (sent by its old
/// owner and not yet completed by its recipient).
pub fn ownership(scope: &KvScope, s: &KvState) -> Result<(), String> {
    let hs = hosts(s);
    for &k in scope.sample_keys {
        let owners: Vec<usize> = (0..hs.len()).filter(|&h| hs[h].host.owns(k)).collect();
        let mut in_flight = 0;
        for (a, h) in hs.iter().enumerate() {
            for t in h.host.outgoing() {
                let b = usize::from(t.recipient);
                if t.range.contains(k) && t.transfer > hs[b].host.completed_from(a) {
                    in_flight += 1;
                }
            }
        }
        if owners.len() + in_flight != 1 {
            return Err(format!("key {k}: owned by hosts {owners:?} and {in_flight} in-flight transfers"));
        }
    }
    Ok(())
}

/// Property: [`ownership`] holds.
pub fn ownership_holds(m: &KvModel, s: &KvState) -> bool {
    ownership(&m.cfg, s).is_ok()
}

/// The history as the linearizability checker takes it (refused operations had no effect
/// and are left out).
pub fn operations(h: &History) -> Vec<Operation<KvOp, KvRet>> {
    h.ops
        .iter()
        .filter(|e| !matches!(e.ret, Some((_, None))))
        .map(|e| Operation {
            client: e.client as u64,
            op: e.op.clone(),
            invoke_us: u64::from(e.invoke),
            complete: e.ret.as_ref().and_then(|(t, r)| r.clone().map(|r| (u64::from(*t), r))),
        })
        .collect()
}

/// Property: the history is linearizable key by key against IronKV's spec.
pub fn linearizable(_: &KvModel, s: &KvState) -> bool {
    check_partitioned(&KvSpec::default(), &operations(&s.history), &Budget::steps(1_000_000))
        .is_ok_and(|o| o.is_linearizable())
}

/// Progress: a Get or Set completed.
pub fn op_completed(_: &KvModel, s: &KvState) -> bool {
    s.history.ops.iter().any(|e| matches!(e.ret, Some((_, Some(_)))))
}

/// Progress: a Shard completed (the recipient took over a transfer).
pub fn shard_completed(_: &KvModel, s: &KvState) -> bool {
    let hs = hosts(s);
    (0..hs.len()).any(|b| (0..hs.len()).any(|a| hs[b].host.completed_from(a) > 0))
}

/// Progress: a Get read the value a Set wrote after the key moved (client 1's read at the
/// new owner returns client 0's write).
pub fn read_after_move(_: &KvModel, s: &KvState) -> bool {
    s.history.ops.iter().any(|e| matches!(&e.ret, Some((_, Some(KvRet::Value(Some(_)))))))
}

/// Progress: some host closed a client's channel (evicted it: its endpoint has a floor).
pub fn channel_closed(m: &KvModel, s: &KvState) -> bool {
    let scope = &m.cfg;
    hosts(s).iter().any(|h| {
        (scope.hosts..scope.actors())
            .any(|a| h.host.closed_floor(endpoint(a, scope.hosts)).is_some_and(|c| c.above > 0))
    })
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
            .property(Expectation::Sometimes, "a client's channel is evicted", channel_closed);
    }
    m
}

/// What one run found.
#[derive(Debug)]
pub struct KvOutcome {
    /// States generated (with repeats) or, for simulation, checked.
    pub states: usize,
    /// Distinct states (exhaustive runs).
    pub unique: usize,
    /// Walks (simulation).
    pub walks: usize,
    /// Deepest path.
    pub max_depth: usize,
    /// Wall-clock time.
    pub elapsed: Duration,
    /// Safety properties with a counterexample, with its trace.
    pub violations: Vec<(&'static str, String)>,
    /// Progress properties with a witness.
    pub reached: Vec<&'static str>,
    /// Whether an exhaustive run finished (did not stop at its target).
    pub complete: bool,
}

/// Exhaustive depth-first check of `scope` (stops after `target` states if given, or at
/// the first safety violation if `stop_at_failure`).
pub fn run(scope: KvScope, progress: bool, threads: usize, target: Option<usize>, stop_at_failure: bool) -> KvOutcome {
    run_with(scope, progress, threads, target, stop_at_failure, false)
}

/// [`run`], breadth-first (`bfs`: the shortest counterexample first) or depth-first.
pub fn run_with(
    scope: KvScope,
    progress: bool,
    threads: usize,
    target: Option<usize>,
    stop_at_failure: bool,
    bfs: bool,
) -> KvOutcome {
    let start = WallClock::now();
    let mut b = model(scope, progress).checker().threads(threads).symmetry_fn(walk::forget_last_msg);
    if let Some(t) = target {
        b = b.target_state_count(t);
    }
    if stop_at_failure {
        b = b.finish_when(stateright::HasDiscoveries::AnyFailures);
    }
    match bfs {
        true => outcome(b.spawn_bfs().join(), start, target),
        false => outcome(b.spawn_dfs().join(), start, target),
    }
}

fn outcome(c: impl Checker<KvModel>, start: WallClock, target: Option<usize>) -> KvOutcome {
    let mut violations = Vec::new();
    let mut reached = Vec::new();
    for p in c.model().properties() {
        if let Some(path) = c.discovery(p.name) {
            match p.expectation {
                Expectation::Always => {
                    let actions = path.clone().into_actions();
                    violations.push((p.name, walk::trace(c.model(), &actions, describe_state)));
                }
                _ => reached.push(p.name),
            }
        }
    }
    let states = c.state_count();
    KvOutcome {
        states,
        unique: c.unique_state_count(),
        walks: 0,
        max_depth: c.max_depth(),
        elapsed: start.elapsed(),
        violations,
        reached,
        complete: target.is_none_or(|t| states < t),
    }
}

/// Random simulation of `scope` (see the RSL model's `simulate`).
pub fn simulate(scope: KvScope, progress: bool, opts: SimOpts) -> KvOutcome {
    let start = WallClock::now();
    let m = model(scope, progress);
    let r = walk::simulate(&m, &opts, walk::forget_last_msg, describe_state);
    KvOutcome {
        states: r.states,
        unique: 0,
        walks: r.walks,
        max_depth: opts.max_depth,
        elapsed: start.elapsed(),
        violations: r.violations,
        reached: r.reached,
        complete: false,
    }
}

/// The violations, ownership, stores and history of a state, for traces.
pub fn describe_state(m: &KvModel, s: &KvState) -> String {
    let mut out = String::new();
    if let Err(e) = ownership(&m.cfg, s) {
        out.push_str(&format!("ownership violation: {e}\n"));
    }
    for h in hosts(s) {
        let keys: Vec<u64> = m.cfg.sample_keys.iter().copied().filter(|&k| h.host.owns(k)).collect();
        out.push_str(&format!(
            "host {}: owns sampled keys {keys:?}, stores {} keys, outgoing {:?}, broken {:?}, ghost {}\n",
            h.host.id(),
            fleet_engine::kv::Storage::len(h.host.storage()),
            h.host.outgoing().iter().map(|t| (t.transfer, t.range)).collect::<Vec<_>>(),
            h.broken,
            h.ghost.is_some()
        ));
    }
    for e in &s.history.ops {
        out.push_str(&format!("history: client {} {:?} invoked {} returned {:?}\n", e.client, e.op, e.invoke, e.ret));
    }
    out
}
