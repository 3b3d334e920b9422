//! What checking a replica relies on: `Eq` and `Hash` see every role, the step check catches
//! each monotone value going down, and a step asks for a write only when durable state
//! changed.

use fleet_engine::rsl::{Ballot, RslMsg};
use fleet_engine::Instant;
use fleet_tests::rsl_sim::SimReplica;

use super::{executed_five, heartbeat, leader_executed_five};
use crate::rules_common::*;

fn hash_of(r: &SimReplica) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    r.hash(&mut h);
    h.finish()
}

/// The model checker tells states apart by `Eq` and `Hash`: a role they skipped would merge
/// distinct states and hide behaviours. One protocol step per role, each compared with the
/// replica before it.
#[test]
fn replica_equality_and_hash_see_every_role() {
    // Nine replicas of a few hundred KiB each live in this frame in debug builds.
    let body = std::thread::Builder::new().stack_size(64 << 20).spawn(equality_and_hash_see_every_role).unwrap();
    body.join().unwrap();
}

fn equality_and_hash_see_every_role() {
    let base = fresh(1);
    assert!(base.clone() == base);
    assert_eq!(hash_of(&base.clone()), hash_of(&base));
    let after = |at_ms: u64, from: usize, msg: RslMsg<'_>| {
        let mut r = base.clone();
        let mut store = Out::new();
        let mut out = store.outbox();
        let _ = r.handle(Instant::from_millis(at_ms), eps()[from], &encode(&msg), &mut out);
        r
    };
    let ticked = {
        let mut r = base.clone();
        let mut store = Out::new();
        let _ = r.tick(Instant::from_millis(10_000), &mut store.outbox());
        r
    };
    let check = |what: &str, v: SimReplica| {
        assert!(v != base, "{what}");
        assert_ne!(hash_of(&v), hash_of(&base), "{what}");
    };
    check("me", fresh(2));
    check("acceptor", after(0, 2, RslMsg::OneA { bal: Ballot { seqno: 2, proposer: 2 } }));
    check("learner", after(0, 0, RslMsg::TwoB { bal: Ballot::INITIAL, opn: 0, opn_ckpt: 0 }));
    check("executor", executed_five());
    check("election", after(0, 0, RslMsg::Heartbeat { bal: Ballot::INITIAL, suspicious: true, opn_ckpt: 0 }));
    check("transfer", after(0, 0, RslMsg::StartingPhase2 { bal: Ballot::INITIAL, log_truncation_point: 100 }));
    check("timers", ticked);
    check("leader", leader_executed_five());
}

/// Lowers one monotone value.
type BreakStep = fn(&mut fleet_engine::rsl::Monotone<7>);

#[test]
fn the_step_check_rejects_each_value_going_down() {
    // Every value above its lowest, so that each can go down.
    let mut before = leader_executed_five().monotone();
    let bal = Ballot { seqno: 2, proposer: 1 };
    (before.max_bal, before.max_bal_reflected, before.max_ballot_seen, before.view) = (bal, bal, bal, bal);
    before.max_ballot_sent_1a = Ballot::INITIAL;
    before.log_truncation_point = 1;
    before.checkpoints[0] = 5;
    assert!(before.ops_complete > 0 && before.epoch_length_ms > 0);
    assert_eq!(before.check_step(&before.clone()), Ok(()));
    let cases: [(&str, BreakStep); 12] = [
        ("acceptor max_bal went down", |m| m.max_bal = Ballot::default()),
        ("truncation point went down", |m| m.log_truncation_point = 0),
        ("a recorded checkpoint went down", |m| m.checkpoints[0] -= 1),
        ("a recorded checkpoint went down", |m| {
            m.checkpoints.pop();
        }),
        ("ops_complete went down", |m| m.ops_complete -= 1),
        ("executed digest changed without executing", |m| m.executed_digest ^= 1),
        ("executor max_bal_reflected went down", |m| m.max_bal_reflected = Ballot::default()),
        ("learner ballot went down", |m| m.max_ballot_seen = Ballot::default()),
        ("proposer ballot went down", |m| m.max_ballot_sent_1a = Ballot::default()),
        ("view went down", |m| m.view = Ballot::default()),
        ("epoch length went down at a view change", |m| {
            m.epoch_length_ms -= 1;
            m.view = Ballot { seqno: 3, proposer: 0 };
        }),
        ("ops_complete went down", |m| m.ops_complete = 0),
    ];
    for (why, break_it) in cases {
        let mut next = before.clone();
        break_it(&mut next);
        assert_eq!(before.check_step(&next), Err(why));
    }
    let mut calm = before.clone();
    calm.epoch_length_ms -= 1;
    assert_eq!(before.check_step(&calm), Ok(()), "a stable view brings the epoch back down");
    let mut executed = before.clone();
    executed.ops_complete += 1;
    executed.executed_digest ^= 1;
    assert_eq!(before.check_step(&executed), Ok(()), "a new digest with a new operation");
}

#[test]
fn a_step_that_changes_no_durable_state_does_not_ask_for_a_write() {
    let mut r = executed_five();
    let mut store = Out::new();
    let mut out = store.outbox();
    let step = r.handle(Instant::ZERO, eps()[0], &heartbeat(4), &mut out);
    assert!(step.durable_state_changed, "control: truncation moved to 4");
    let step = r.handle(Instant::ZERO, eps()[0], &heartbeat(4), &mut out);
    assert!(!step.durable_state_changed, "the same checkpoint again moves nothing");
    let step = r.tick(Instant::ZERO, &mut out);
    assert!(!step.durable_state_changed);
}
