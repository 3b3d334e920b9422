//! Learners across a membership change (`fleet_engine::rsl::Replica::new_learner`,
//! `engine/src/rsl/replica/learning.rs`): the membership scope of [`super::members`] whose
//! new machine starts as a learner of epoch 0 (it follows epoch 0's log from its members,
//! in no quorum), moves into epoch 1 when the change adds it (executing the stop-sign, or
//! told by a member), and takes part there only once it rejoined; then it crashes once and
//! comes back without state as a learner of epoch 0 again (as `fleet rsl serve --join`
//! starts one when the membership it finds does not name it yet), learns again and re-enters
//! epoch 1.
//!
//! The rule under check: a learner never promises or votes, and it becomes a voter only by
//! rejoining (it may be an address that took part before, as a wiped machine's
//! reincarnation is). On top of the cross-epoch properties (a learner's state is the log's
//! too) and linearizability: no 1b or 2b leaves a learner; and every replica taking part in
//! an epoch (not learning, rejoining or retired) keeps the promises it revealed there (its
//! promise is at least every ballot of a 1b or 2b it sent in that epoch's envelope).

use fleet_engine::rsl::apps::counter::Counter;
use fleet_engine::rsl::durable::{AcceptorRecord, DurableRecord};
use fleet_engine::rsl::{Ballot, RslConfig, RslMsg};
use fleet_engine::wire::{self, Protocol};
use fleet_engine::Instant;
use stateright::Expectation;

use super::members::{Membership, RuleJudge};
use super::{bal, config, endpoint, replicas, MReplica, Planted, ReplicaNode, RslModel, RslState, Scope};

/// States the CI runs of [`Scope::LEARNERS`] check at most (archived walks): the control
/// (the real learner) checks this many without a violation and reaches the progress
/// properties below; the planted [`Planted::LearnerTakesPartAtOnce`] is found within it.
pub const LEARNERS_CI_STATES: usize = 150_000;

/// Nonce of a learner's first incarnation (above every 1b reply id the model reaches); a
/// restart's is this times its restarts plus one.
const LEARNER_NONCE: u64 = 1_000_000;

impl Scope {
    /// [`Scope::MEMBERS`] whose new machine (actor 3) starts as a learner of epoch 0 and,
    /// once it took part in epoch 1 (sent a 1b or 2b there), crashes once and comes back
    /// without state as a learner of epoch 0 again ([`may_restart`]). Three firings for
    /// the new machine (its rejoin retransmissions, twice). Searched by archived random
    /// walks; measured in `proofs/README.md`.
    pub const LEARNERS: Scope = Scope {
        restarts: 1,
        restartable: 0b1000,
        change: Some(Membership {
            next: [0, 1, 3],
            joiner_ticks: 3,
            clients_only: false,
            rule_judge: RuleJudge::Full,
            learners: true,
        }),
        total_ticks: 6,
        ..Scope::MEMBERS
    };
}

/// Whether `scope`'s new machines start as learners.
pub fn applies(scope: &Scope) -> bool {
    scope.change.is_some_and(|c| c.learners)
}

/// A learner of epoch 0 at new machine actor `me`'s address, incarnation `nonce`.
pub fn start_learner(scope: &Scope, me: usize, now: Instant, nonce: u64) -> MReplica {
    let own = endpoint(me, scope.hosts());
    MReplica::new_learner(config(scope), own, Counter::default(), now, nonce, false)
        .expect("a new machine is not one of epoch 0's replicas")
}

/// The first learner of new machine actor `me`.
pub fn first_learner(scope: &Scope, me: usize) -> MReplica {
    start_learner(scope, me, Instant::ZERO, LEARNER_NONCE)
}

/// The learner a restart (its `restarts`-th) brings back without state.
pub fn restarted_learner(scope: &Scope, me: usize, now: Instant, restarts: u8) -> MReplica {
    start_learner(scope, me, now, LEARNER_NONCE * (u64::from(restarts) + 1))
}

/// Whether new machine actor `actor` may crash now: its one restart not spent, and it took
/// part in the next epoch (revealed a promise or vote there), so its reincarnation must not
/// take part again before it rejoined.
pub fn may_restart(scope: &Scope, actor: usize, node: &ReplicaNode) -> bool {
    actor >= scope.replicas
        && node.restarts < scope.restarts
        && scope.restartable & (1 << actor) != 0
        && node.revealed.is_some_and(|(e, _)| e > 0)
}

/// Whether `r` takes part in its epoch: neither learning, rejoining nor retired.
pub fn taking_part(r: &MReplica) -> bool {
    r.retired().is_none() && r.rejoining().is_none() && r.learning().is_none()
}

/// [`Planted::LearnerTakesPartAtOnce`]: a learner that moved into the epoch that adds it in
/// this step (it is rejoining now) is replaced by one that takes part at once: rebuilt by
/// `Replica::recover` from its state and a log that says it entered the epoch with an
/// acceptor that never promised nor voted (an acceptor record makes it a member, not a
/// rejoining one). It then starts as a binding starts one (a `tick`).
pub fn take_part_at_once(before: &MReplica, node: &mut ReplicaNode, out: &mut fleet_engine::Outbox<'_>) {
    let r = &node.replica;
    if before.learning().is_none() || r.learning().is_some() || r.rejoining().is_none() {
        return;
    }
    let snapshot = super::snapshot_now(r);
    let mut buf = vec![0u8; 2048];
    let mut list = [0u8; 128];
    let used = fleet_engine::rsl::membership::encode_replicas(&r.config().replicas, &mut list).expect("three fit");
    let start = r.epoch_start();
    let ops = r.executor().ops_complete;
    let epoch = DurableRecord::Epoch { epoch: r.config().epoch, start, replicas: wire::Bytes(&list[..used]) };
    let acceptor = DurableRecord::Acceptor(AcceptorRecord {
        max_bal: Ballot::default(),
        max_ballot_sent_1a: Ballot::default(),
        log_truncation_point: ops,
        replies_sent: 0,
        vote: None,
    });
    let log: Vec<Vec<u8>> = [epoch, acceptor]
        .iter()
        .map(|x| {
            let len = wire::encode(Protocol::Durable, x, &mut buf).expect("a record fits");
            buf[..len].to_vec()
        })
        .collect();
    let config: RslConfig<3> = r.config().clone();
    let me = r.id();
    let replica = MReplica::recover(
        config,
        me,
        Counter::default(),
        node.now,
        1,
        snapshot.iter().map(Vec::as_slice),
        log.iter().map(Vec::as_slice),
    );
    node.replica = replica.expect("a member's state and an empty acceptor recover");
    let _ = node.replica.tick(node.now, out);
}

/// The first broken learner rule of a state: a learner sent a 1b or 2b (in epoch 0's
/// envelope: it is none of its replicas); or a replica taking part in the epoch it
/// revealed promises or votes in promises less than the highest ballot it revealed there.
pub fn check(m: &RslModel, s: &RslState) -> Result<(), String> {
    let scope = &m.cfg.scope;
    let first = m.cfg.config.identity();
    let promises_only = scope.change.is_some_and(|c| c.rule_judge == RuleJudge::Promises);
    for env in s.network.iter_all().filter(|_| !promises_only) {
        let actor = usize::from(env.src);
        if actor < scope.replicas || actor >= scope.hosts() {
            continue;
        }
        if let Ok((c, RslMsg::OneB { bal: b, .. } | RslMsg::TwoB { bal: b, .. })) =
            wire::decode_rsl::<RslMsg<'_>>(&env.msg.0)
        {
            if c == first {
                return Err(format!("learner actor {actor} sent a 1b or 2b of {} in epoch 0", bal(b)));
            }
        }
    }
    for (actor, r) in replicas(s).iter().enumerate() {
        let x = &r.replica;
        if let Some((e, b)) = r.revealed {
            if e == x.config().epoch && taking_part(x) && x.acceptor().max_bal < b {
                return Err(format!(
                    "replica actor {actor} promised {} in epoch {e}, it sent a 1b or 2b of {} there",
                    bal(x.acceptor().max_bal),
                    bal(b)
                ));
            }
        }
    }
    Ok(())
}

/// Property: [`check`] holds.
pub fn learner_rules(m: &RslModel, s: &RslState) -> bool {
    check(m, s).is_ok()
}

/// The name of the [`learner_rules`] property.
pub const SAFETY: &str =
    "a learner never promises or votes, and a replica taking part keeps the promises it revealed in its epoch";

/// Progress: a learner executed an operation of epoch 0 while learning.
pub fn learner_follows(m: &RslModel, s: &RslState) -> bool {
    new_machines(m, s).any(|r| r.replica.learning().is_some() && r.replica.executor().ops_complete > 0)
}

/// Progress: the new machine, a learner first, took part in epoch 1 (it sent a 1b or 2b
/// there).
pub fn learner_took_part(m: &RslModel, s: &RslState) -> bool {
    new_machines(m, s).any(|r| r.revealed.is_some_and(|(e, _)| e > 0))
}

/// Progress: the new machine, restarted without state as a learner, took part in epoch 1
/// again.
pub fn reincarnation_took_part(m: &RslModel, s: &RslState) -> bool {
    new_machines(m, s).any(|r| r.restarts > 0 && r.revealed_since_restart.is_some_and(|e| e > 0))
}

fn new_machines<'s>(m: &RslModel, s: &'s RslState) -> impl Iterator<Item = &'s ReplicaNode> {
    replicas(s).into_iter().skip(m.cfg.scope.replicas)
}

/// The names of the progress properties.
pub const PROGRESS: [&str; 3] = [
    "a learner executes an operation of epoch 0",
    "the learner takes part in the next epoch",
    "the learner, restarted without state, takes part in the next epoch again",
];

/// Adds the learner properties to `m` (with `progress`, the `sometimes` ones).
/// The learner rules are judged as [`Membership::rule_judge`] says (not at all with
/// [`Membership::clients_only`]).
pub fn properties(m: RslModel, progress: bool) -> RslModel {
    let judged = m.cfg.scope.change.is_some_and(|c| !c.clients_only && c.rule_judge != RuleJudge::Off);
    let m = if judged { m.property(Expectation::Always, SAFETY, learner_rules) } else { m };
    if !progress {
        return m;
    }
    m.property(Expectation::Sometimes, PROGRESS[0], learner_follows)
        .property(Expectation::Sometimes, PROGRESS[1], learner_took_part)
        .property(Expectation::Sometimes, PROGRESS[2], reincarnation_took_part)
}

/// The planted bug this scope finds (for the planted test's reports).
pub const PLANT: Planted = Planted::LearnerTakesPartAtOnce;
