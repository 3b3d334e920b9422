//! Membership change in the model (`fleet_engine::rsl::membership`): a scope in which an
//! operator's client asks for one change (epoch 0's replicas to the next epoch's, new
//! machines started without state for it), and the properties that state the stop-sign's
//! rule across the two epochs.
//!
//! The engine's cross-host invariants (`fleet_proofs::rsl_invariants`) hold within one
//! cluster; across a change they are stated here per epoch: each epoch's 2a and 2b are the
//! datagrams in its own envelope (its `RslConfig::identity`), counted against its own
//! replicas and quorum. The **log** is epoch 0's decisions up to its stop-sign `k` (the first
//! decided change its replicas accept) and epoch 1's from `k + 1`: epoch 0's decisions
//! after `k` are void, and epoch 1 must decide nothing at or below `k`. Every replica's
//! execution, every reply and every acknowledged write is judged against that log.

use fleet_engine::rsl::apps::counter::Counter;
use fleet_engine::rsl::batch::{self, EntryKind};
use fleet_engine::rsl::membership::{self, Outcome};
use fleet_engine::rsl::{Ballot, RslConfig, RslMsg};
use fleet_engine::{Endpoint, Instant};
use fleet_proofs::rsl_invariants::{self as inv, Chosen, Sent, Violation};
use fleet_proofs::spec::rsl::{AppRequest, CounterApp, RslSpec};
use stateright::Expectation;

use super::{
    bal, config, endpoint, own_endpoint, replicas, ClientNode, History, MReplica, ModelCfg, Planted, ReplicaNode,
    RslModel, RslState, Scope,
};

/// A membership change a scope makes: the next epoch's replicas by replica actor, in list
/// order. Actors below [`Scope::replicas`] are epoch 0's replicas (kept); the others are new
/// machines, the actors `replicas..hosts()`, started at once for the next epoch without
/// state (`Replica::new_rejoining`), as an operator starts them before asking. The last
/// client is the operator: it asks for this change (`Client::submit_change`) and nothing
/// else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Membership {
    /// The next epoch's replicas, as replica actors.
    pub next: [usize; 3],
    /// Timer firings each new machine may use (its rejoin retransmissions).
    pub joiner_ticks: u8,
    /// Judge by what clients see only: linearizability of the client history, without the
    /// engine's or the cross-epoch invariants (to show a planted bug is visible to clients,
    /// not only to the checks that name its mechanism).
    pub clients_only: bool,
    /// How much of the scope's own rule is checked: the epoch-record property in a durable
    /// scope ([`super::durable_members::check`]), the learner rules in a learner scope
    /// ([`super::learners::check`]); the other properties as usual.
    pub rule_judge: RuleJudge,
    /// New machines start as learners of epoch 0 (`Replica::new_learner`, see
    /// [`super::learners`]) instead of rejoining the next epoch from the start.
    pub learners: bool,
}

/// How much of its own rule a durable or learner membership scope checks (see
/// [`super::durable_members::check`], [`super::learners::check`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleJudge {
    /// All of it: durable, each replica in the epoch its log names, never below one it
    /// revealed a promise or vote in, keeping the promises it revealed; learners, no 1b or
    /// 2b from a learner, and the promises kept.
    Full,
    /// The hazard only: a replica taking part keeps the promises it revealed in its epoch.
    Promises,
    /// None of it: Paxos per epoch, the cross-epoch properties and linearizability judge.
    Off,
}

impl Membership {
    /// How many of the next epoch's replicas are new machines.
    pub fn joiners(&self, scope: &Scope) -> usize {
        self.next.iter().filter(|&&a| a >= scope.replicas).count()
    }
}

/// States the CI runs of [`Scope::MEMBERS`] check at most (archived walks): the control
/// (the real stop-sign) checks this many without a violation and reaches every membership
/// progress property; the planted [`Planted::FreshEpoch`] is found within it.
pub const MEMBERS_CI_STATES: usize = 150_000;

impl Scope {
    /// Replica actors: the replicas of epoch 0, then the new machines of a change.
    pub fn hosts(&self) -> usize {
        self.replicas + self.change.map_or(0, |c| c.joiners(self))
    }

    /// The timer firings replica actor `actor` may use: [`Scope::replica_ticks`] by index,
    /// a new machine's [`Membership::joiner_ticks`].
    pub fn tick_budget(&self, actor: usize) -> u8 {
        match (actor < self.replicas, self.change) {
            (false, Some(c)) => c.joiner_ticks,
            _ => self.replica_ticks[actor % 3],
        }
    }

    /// One membership change and one view change: three replicas, replica 2 replaced by a
    /// new machine (actor 3: epoch 1 is replicas 0, 1 and 3); a writer client that
    /// increments and then queries, and the operator's client that asks for the change;
    /// views up to 1.1 (replica 1 may take over, in either epoch), two firings per replica
    /// and the new machine, five in all, one client retransmission each (a write decided
    /// after the stop-sign is void, and its client retries in the next epoch). Searched by
    /// archived random walks; measured in `proofs/README.md`.
    pub const MEMBERS: Scope = Scope {
        replicas: 3,
        clients: 2,
        requests: 2,
        max_view: Ballot { seqno: 1, proposer: 1 },
        replica_ticks: [2, 2, 2],
        total_ticks: 5,
        client_ticks: 1,
        one_a: 0,
        lazy_timers: false,
        self_loop: false,
        rotate_clients: false,
        max_log_length: 2,
        restarts: 0,
        restartable: 0,
        durable: false,
        lazy_sync: false,
        compaction: false,
        queries: true,
        change: Some(Membership {
            next: [0, 1, 3],
            joiner_ticks: 2,
            clients_only: false,
            rule_judge: RuleJudge::Full,
            learners: false,
        }),
        planted: None,
    };
}

/// The next epoch's configuration (epoch 0's when the scope changes nothing).
pub fn next_config(scope: &Scope) -> RslConfig<3> {
    let now = config(scope);
    match scope.change {
        None => now,
        Some(c) => {
            let eps = c.next.iter().map(|&a| endpoint(a, scope.hosts())).collect();
            now.next_epoch(eps)
        }
    }
}

/// A new machine (actor `me`) of the next epoch, `config`: without state, rejoining (with
/// [`Planted::FreshEpoch`], an ordinary replica of a new cluster); in a durable scope with
/// nothing stored (`Replica::new_durable`: its first records are its incarnation and the
/// epoch it was started for).
pub fn start_joiner(scope: &Scope, config: &RslConfig<3>, me: usize) -> Result<MReplica, fleet_engine::ConfigError> {
    let index = config.index_of(endpoint(me, scope.hosts())).expect("a new machine is in the next epoch");
    if super::learners::applies(scope) {
        return Ok(super::learners::first_learner(scope, me));
    }
    match scope.planted {
        Some(Planted::FreshEpoch) => MReplica::new(config.clone(), index, Counter::default(), Instant::ZERO),
        // Nonces above every 1b reply id, like epoch 0's durable replicas.
        _ if scope.durable => {
            MReplica::new_durable(config.clone(), index, Counter::default(), Instant::ZERO, 100 + me as u64)
        }
        // Above every 1b reply id the model reaches, like a restart's.
        _ => MReplica::new_rejoining(config.clone(), index, Counter::default(), Instant::ZERO, 1_000_000),
    }
}

/// Whether client actor `actor` is the operator, which asks for the scope's change.
pub fn is_operator(scope: &Scope, actor: usize) -> bool {
    scope.change.is_some() && actor + 1 == scope.hosts() + scope.clients
}

/// The operator's request: the scope's change, ending epoch 0.
pub fn change_request(scope: &Scope) -> Vec<u8> {
    let next = next_config(scope);
    let mut buf = [0u8; 256];
    membership::encode_change(0, &next.replicas, &mut buf).expect("a small change").to_vec()
}

/// The operator asks for the change.
pub fn submit_change(scope: &Scope, c: &mut ClientNode, out: &mut fleet_engine::Outbox<'_>) {
    if c.client.submit_change(c.now, &change_request(scope), out).is_ok() {
        c.submitted += 1;
    }
}

/// [`Planted::FreshEpoch`]: a replica that entered the next epoch in this step (it was in
/// epoch `epoch_before`) is replaced by a replica of that epoch's configuration alone,
/// which starts as a binding starts one (a `tick`).
pub fn fresh_epoch(node: &mut ReplicaNode, epoch_before: u64, out: &mut fleet_engine::Outbox<'_>) {
    let r = &node.replica;
    if r.config().epoch == epoch_before || r.retired().is_some() {
        return;
    }
    let fresh = MReplica::new(r.config().clone(), r.id(), Counter::default(), node.now);
    node.replica = fresh.expect("the next epoch's configuration is valid");
    let _ = node.replica.tick(node.now, out);
}

/// Every datagram ever sent between replica actors and clients, decoded, with the cluster
/// its envelope names.
fn sent_in_clusters<'s>(cfg: &ModelCfg, s: &'s RslState) -> Vec<(u32, Sent<'s>)> {
    let n = cfg.scope.hosts();
    s.network
        .iter_all()
        .filter_map(|env| {
            let (cluster, msg) = fleet_engine::wire::decode_rsl::<RslMsg<'_>>(&env.msg.0).ok()?;
            let (src, dst) = (endpoint(usize::from(env.src), n), endpoint(usize::from(env.dst), n));
            Some((cluster, Sent { src, dst, msg }))
        })
        .collect()
}

/// Replays `log` from operation 0 as far as it is decided without a gap, with the
/// executor's exactly-once rule (a request at or below its client's last executed seqno is
/// skipped; a change counts as its client's request but is not applied to the app), calling
/// `on_change(opn, change)` for every change executed. Returns the service spec and the app
/// state after each operation (the initial one first).
fn replay(log: &Chosen, mut on_change: impl FnMut(u64, &[u8]) -> bool) -> (RslSpec<CounterApp>, Vec<CounterApp>) {
    let mut spec = RslSpec::new(CounterApp(0));
    let mut states = vec![spec.app];
    let mut last: std::collections::BTreeMap<u64, u64> = std::collections::BTreeMap::new();
    let mut opn = 0;
    while let Some(value) = log.value(opn) {
        let mut reqs = Vec::new();
        let mut stopped = false;
        for e in batch::entries(value) {
            let client = inv::client_id(e.client);
            if last.get(&client).is_some_and(|s| e.seqno <= *s) {
                continue;
            }
            last.insert(client, e.seqno);
            match e.kind {
                EntryKind::Change => stopped |= on_change(opn, e.request.0),
                _ => reqs.push(AppRequest { client, seqno: e.seqno, request: e.request.0.to_vec() }),
            }
        }
        spec.execute_batch(&reqs);
        states.push(spec.app);
        if stopped {
            break;
        }
        opn += 1;
    }
    (spec, states)
}

/// What the two epochs decided.
pub struct Epochs {
    /// Epoch 0's decisions.
    pub first: Chosen,
    /// The stop-sign: its operation and the next epoch's configuration, once decided.
    pub stop: Option<(u64, RslConfig<3>)>,
    /// The next epoch's decisions (none without a stop-sign).
    pub next: Chosen,
    /// The log: epoch 0's decisions up to the stop-sign, the next epoch's after it.
    pub log: Chosen,
}

fn violation(lemma: &'static str, detail: String) -> Violation {
    Violation { lemma, detail }
}

/// The checks of one epoch within its own envelope: agreement and 2a consistency
/// (`fleet_proofs::rsl_invariants`, per epoch). Returns what it chose.
fn epoch_checks(config: &RslConfig<3>, sent: &[(u32, Sent<'_>)]) -> Result<Chosen, Violation> {
    let id = config.identity();
    let mine: Vec<Sent<'_>> = sent.iter().filter(|(c, _)| *c == id).map(|(_, s)| *s).collect();
    let chosen = inv::chosen(config, config.quorum(), &mine);
    chosen.check_agreement()?;
    inv::check_2a_unique(config, &mine)?;
    inv::check_2a_after_chosen(&chosen, &mine)?;
    Ok(chosen)
}

/// What the epochs decided, after checking each in its own envelope, and that the next
/// epoch decides nothing at or below its stop-sign nor before the stop-sign is decided.
pub fn epochs(cfg: &ModelCfg, sent: &[(u32, Sent<'_>)]) -> Result<Epochs, Violation> {
    let first = epoch_checks(&cfg.config, sent)?;
    let now = &cfg.config;
    let mut stop = None;
    replay(&first, |opn, change| match membership::evaluate::<3>(change, now.epoch, &now.replicas) {
        Ok(next) if stop.is_none() => {
            stop = Some((opn, now.next_epoch(next)));
            true
        }
        _ => false,
    });
    let mut log = Chosen::default();
    let bound = stop.as_ref().map_or(u64::MAX, |(k, _)| *k);
    log.by_opn.extend(first.by_opn.iter().filter(|(o, _)| **o <= bound).map(|(o, v)| (*o, v.clone())));
    let next = match &stop {
        Some((k, config)) => {
            let next = epoch_checks(config, sent)?;
            if let Some(o) = next.by_opn.keys().find(|o| **o <= *k) {
                return Err(violation(
                    "stop-sign overlap (the next epoch starts at the stop-sign + 1)",
                    format!("epoch {} chose operation {o}, at or below its stop-sign at operation {k}", config.epoch),
                ));
            }
            log.by_opn.extend(next.by_opn.iter().map(|(o, v)| (*o, v.clone())));
            next
        }
        None => {
            let id = next_config(&cfg.scope).identity();
            if let Some((_, s)) = sent.iter().find(|(c, s)| *c == id && matches!(s.msg, RslMsg::TwoB { .. })) {
                return Err(violation(
                    "stop-sign overlap (the next epoch starts once its stop-sign is decided)",
                    format!("{} voted in the next epoch before epoch 0 decided its stop-sign", s.src),
                ));
            }
            Chosen::default()
        }
    };
    Ok(Epochs { first, stop, next, log })
}

/// The cross-epoch invariants of a state: [`epochs`]; every replica executed the log
/// (`lemma_ExecutedOperationAndAllBeforeItWereChosen` over the log) and holds the app
/// state the spec has there; a replica that entered the next epoch did so at the
/// stop-sign's operation plus one, and only once the stop-sign was decided; every reply is
/// one the spec produced on the log (or a query's answer in a state it passed through);
/// the operator is told the epoch started where it did.
pub fn check(cfg: &ModelCfg, s: &RslState) -> Result<(), Violation> {
    let sent = sent_in_clusters(cfg, s);
    let e = epochs(cfg, &sent)?;
    let (spec, states) = replay(&e.log, |_, _| false);
    let nodes = replicas(s);
    for (actor, r) in nodes.iter().enumerate() {
        let r = &r.replica;
        inv::check_executed_chosen(r, &e.log)?;
        let ops = r.executor().ops_complete;
        if let Some(st) = states.get(ops as usize).filter(|st| st.0 != r.app().value) {
            return Err(violation(
                "the state at every operation is the log's (stop-sign: the next epoch starts from its state)",
                format!(
                    "replica actor {actor} executed {ops} operations with counter {}, the log gives {}",
                    r.app().value,
                    st.0
                ),
            ));
        }
        let entered = actor < cfg.scope.replicas && r.config().epoch > cfg.config.epoch && r.retired().is_none();
        match (&e.stop, entered) {
            (None, true) => {
                return Err(violation(
                    "stop-sign overlap (the next epoch starts once its stop-sign is decided)",
                    format!(
                        "replica actor {actor} entered epoch {} before its stop-sign was decided",
                        r.config().epoch
                    ),
                ))
            }
            (Some((k, _)), true) if r.epoch_start() != k + 1 => {
                return Err(violation(
                    "stop-sign overlap (the next epoch starts at the stop-sign + 1)",
                    format!(
                        "replica actor {actor} started epoch 1 at operation {}, the stop-sign is {k}",
                        r.epoch_start()
                    ),
                ))
            }
            _ => {}
        }
    }
    let operator = endpoint(cfg.scope.hosts() + cfg.scope.clients - 1, cfg.scope.hosts());
    for (_, x) in sent.iter().filter(|(_, x)| x.dst == operator) {
        let RslMsg::Reply { reply, .. } = x.msg else { continue };
        if let Ok(Outcome::Started { epoch, start }) = postcard::from_bytes::<Outcome>(reply.0) {
            if e.stop.as_ref().is_none_or(|(k, c)| c.epoch != epoch || k + 1 != start) {
                return Err(violation(
                    "the change's answer is its stop-sign",
                    format!(
                        "the operator was told epoch {epoch} starts at {start}; the log's stop-sign is {:?}",
                        e.stop.as_ref().map(|(k, _)| k)
                    ),
                ));
            }
        }
    }
    let served: Vec<Sent<'_>> = sent.iter().map(|(_, x)| *x).filter(|x| x.dst != operator).collect();
    let states_of = || states.clone();
    inv::check_replies_justified(&cfg.config, &spec, states_of, &served)?;
    inv::check_replies_justified(&next_config(&cfg.scope), &spec, states_of, &served)
}

/// Property: [`check`] holds.
pub fn cross_epoch_invariants(m: &RslModel, s: &RslState) -> bool {
    check(&m.cfg, s).is_ok()
}

/// The client endpoint of history client `client`.
fn client_endpoint(scope: &Scope, client: usize) -> Endpoint {
    endpoint(scope.hosts() + client, scope.hosts())
}

/// Property: every write a client got an answer for is in the log (epoch 0's decisions up
/// to the stop-sign, the next epoch's after it), so every replica that executes that far
/// applies it: no acknowledged write is lost across the change.
pub fn acknowledged_writes_kept(m: &RslModel, s: &RslState) -> bool {
    let sent = sent_in_clusters(&m.cfg, s);
    let Ok(e) = epochs(&m.cfg, &sent) else { return true }; // Reported by `check`.
    let (spec, _) = replay(&e.log, |_, _| false);
    acked_writes(&s.history).all(|(client, seqno)| {
        let id = inv::client_id(client_endpoint(&m.cfg.scope, client));
        spec.requests.iter().any(|r| r.client == id && r.seqno == seqno)
    })
}

fn acked_writes(h: &History) -> impl Iterator<Item = (usize, u64)> + '_ {
    h.ops.iter().filter(|op| op.ret.is_some() && op.request != Counter::QUERY).map(|op| (op.client, op.seqno))
}

/// Progress: a replica of epoch 0 entered the next epoch (the change was decided and
/// accepted).
pub fn next_epoch_entered(m: &RslModel, s: &RslState) -> bool {
    replicas(s)
        .iter()
        .take(m.cfg.scope.replicas)
        .any(|r| r.replica.config().epoch > m.cfg.config.epoch && r.replica.retired().is_none())
}

/// Progress: the replaced replica retired.
pub fn replica_retired(_: &RslModel, s: &RslState) -> bool {
    replicas(s).iter().any(|r| r.replica.retired().is_some())
}

/// Progress: a new machine takes part (it rejoined the next epoch, caught up).
pub fn joiner_takes_part(m: &RslModel, s: &RslState) -> bool {
    replicas(s).iter().skip(m.cfg.scope.replicas).any(|r| super::learners::taking_part(&r.replica))
}

/// Progress: the next epoch executed a client's write (an operation after the stop-sign).
pub fn write_in_next_epoch(m: &RslModel, s: &RslState) -> bool {
    replicas(s).iter().any(|r| {
        let x = &r.replica;
        x.config().epoch > m.cfg.config.epoch && x.executor().ops_complete > x.epoch_start().max(1) && x.app().value > 0
    })
}

/// Progress: the writer's query was answered after the change was decided (by a replica
/// of the next epoch).
pub fn query_in_next_epoch(m: &RslModel, s: &RslState) -> bool {
    let next = next_config(&m.cfg.scope).identity();
    sent_in_clusters(&m.cfg, s).iter().any(|(c, x)| {
        *c == next && matches!(x.msg, RslMsg::Reply { .. }) && {
            let seqno = match x.msg {
                RslMsg::Reply { seqno, .. } => seqno,
                _ => 0,
            };
            s.history.ops.iter().any(|op| op.seqno == seqno && op.request == Counter::QUERY)
        }
    })
}

/// Progress: the change and a view change in one run: a replica of epoch 0 is in the next
/// epoch, and some leader (of either epoch) completed phase 1 of a view after the first.
pub fn change_and_view_change(m: &RslModel, s: &RslState) -> bool {
    next_epoch_entered(m, s)
        && s.network.iter_all().any(|env| {
            matches!(fleet_engine::wire::decode_rsl::<RslMsg<'_>>(&env.msg.0),
                Ok((_, RslMsg::StartingPhase2 { bal, .. })) if bal > Ballot::INITIAL)
        })
}

/// Names of the membership safety properties.
pub const SAFETY: [&str; 2] = [
    "cross-epoch invariants (per-epoch agreement and 2a consistency, the next epoch from the stop-sign + 1 with its state, executed = log, replies justified)",
    "an acknowledged write is never lost across the change",
];

/// The names of the membership progress properties.
pub const PROGRESS: [&str; 6] = [
    "a replica enters the next epoch",
    "the replaced replica retires",
    "the new machine takes part",
    "the next epoch executes a write",
    "a query is answered in the next epoch",
    "a view change completes in a run with the change",
];

/// Adds the membership properties to `m` (with `progress`, the `sometimes` ones too).
pub fn properties(m: RslModel, progress: bool) -> RslModel {
    let m = m.property(Expectation::Always, SAFETY[0], cross_epoch_invariants).property(
        Expectation::Always,
        SAFETY[1],
        acknowledged_writes_kept,
    );
    if !progress {
        return m;
    }
    m.property(Expectation::Sometimes, PROGRESS[0], next_epoch_entered)
        .property(Expectation::Sometimes, PROGRESS[1], replica_retired)
        .property(Expectation::Sometimes, PROGRESS[2], joiner_takes_part)
        .property(Expectation::Sometimes, PROGRESS[3], write_in_next_epoch)
        .property(Expectation::Sometimes, PROGRESS[4], query_in_next_epoch)
        .property(Expectation::Sometimes, PROGRESS[5], change_and_view_change)
}

/// A readable end state of a membership scope: each epoch's decisions, the replicas with
/// their epochs, the history.
pub fn describe_state(m: &RslModel, last: &RslState) -> String {
    let mut s = String::new();
    if let Err(v) = check(&m.cfg, last) {
        s.push_str(&format!("cross-epoch violation: {v}\n"));
    }
    if let (true, Err(v)) =
        (super::durable_members::judged(&m.cfg.scope), super::durable_members::check(&m.cfg.scope, last))
    {
        s.push_str(&format!("epoch-record violation: {v}\n"));
    }
    if let (true, Err(v)) = (super::learners::applies(&m.cfg.scope), super::learners::check(m, last)) {
        s.push_str(&format!("learner violation: {v}\n"));
    }
    let sent = sent_in_clusters(&m.cfg, last);
    let configs = [m.cfg.config.clone(), next_config(&m.cfg.scope)];
    for c in &configs {
        let mine: Vec<Sent<'_>> = sent.iter().filter(|(x, _)| *x == c.identity()).map(|(_, x)| *x).collect();
        for (opn, qs) in inv::chosen(c, c.quorum(), &mine).by_opn {
            for q in qs {
                let change = batch::entries(&q.batch).any(|e| e.kind == EntryKind::Change);
                s.push_str(&format!(
                    "epoch {} chose op{opn} in {} = {}{} by {:?}\n",
                    c.epoch,
                    bal(q.bal),
                    inv::describe_batch(&q.batch),
                    if change { " (a change)" } else { "" },
                    q.senders
                ));
            }
        }
    }
    for (actor, r) in replicas(last).iter().enumerate() {
        let x = &r.replica;
        let st = x.status();
        s.push_str(&format!(
            "replica actor {actor} ({:?}): epoch {} from op{} index {} view {} leader {} executed {} counter {}{}{} broken {:?}\n",
            own_endpoint(x).ip,
            x.config().epoch,
            x.epoch_start(),
            x.id(),
            bal(st.view),
            st.is_leader,
            st.ops_complete,
            x.app().value,
            if x.retired().is_some() { " retired" } else { "" },
            x.rejoining().map(|j| format!(" rejoining ({:?})", j.stage)).unwrap_or_default()
                + if x.learning().is_some() { " learning" } else { "" },
            r.broken
        ));
        if m.cfg.scope.durable {
            s.push_str(&format!(
                "  log: {} records ({} synced), names epoch {}; restarts {}{}; revealed a promise or vote up to (epoch, ballot) {:?}\n",
                r.log.len(),
                r.synced,
                super::log_epoch(&r.log),
                r.restarts,
                r.recovered.map(|(d, e)| format!(" ({d:?}; recovered into epoch {e})")).unwrap_or_default(),
                r.revealed.map(|(e, b)| (e, bal(b)))
            ));
        }
    }
    s.push_str(&format!("history: {:?}\n", last.history.ops));
    s
}
