//! The model and what it checks: the client history it records, the safety and progress
//! properties, and [`model`], which builds it for a scope.

use fleet_engine::rsl::{Ballot, RslConfig, RslMsg};
use fleet_proofs::linearizability::{self, Operation};
use fleet_proofs::rsl_invariants::{self as inv, Sent};
use fleet_proofs::spec::rsl::{ClientOps, CounterApp};
use fleet_proofs::Budget;
use stateright::actor::{ActorModel, ActorModelState};
use stateright::Expectation;

use super::{
    config, durable_members, endpoint, learners, members, Datagram, MReplica, Node, NodeState, ReplicaNode, Scope,
};

/// The model type.
pub type RslModel = ActorModel<Node, ModelCfg, History>;
/// A state of the model.
pub type RslState = ActorModelState<Node, History>;

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

pub(super) fn chosen(cfg: &ModelCfg, sent: &[Sent<'_>]) -> inv::Chosen {
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
