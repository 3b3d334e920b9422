//! Non-linearizable KV histories must be rejected with a violation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use fleet_proofs::linearizability::{check, CheckError, Operation};
use fleet_proofs::spec::kv::{KvOp, KvRet, KvSpec};
use fleet_proofs::Budget;

#[test]
fn stale_read_after_completed_write() {
    let h = [set(1, 0, 1, 0, 10), get(2, 0, None, 20, 30)];
    let v = assert_violation(&h);
    assert_eq!(v.stuck_op, Some(1));
    assert!(v.explanation.contains("would return"), "{}", v.explanation);
}

#[test]
fn two_readers_observe_writes_in_opposite_orders() {
    let h = [
        set(1, 0, 1, 0, 100),
        set(2, 0, 2, 0, 100),
        get(3, 0, Some(1), 10, 20),
        get(3, 0, Some(2), 30, 40),
        get(4, 0, Some(2), 10, 20),
        get(4, 0, Some(1), 30, 40),
    ];
    assert_violation(&h);
}

#[test]
fn read_of_a_value_never_written() {
    assert_violation(&[set(1, 0, 1, 0, 10), get(2, 0, Some(7), 0, 30)]);
}

#[test]
fn lost_acknowledged_write() {
    let h = [set(1, 0, 1, 0, 10), set(1, 0, 2, 20, 30), get(2, 0, Some(1), 40, 50)];
    assert_eq!(assert_violation(&h).stuck_op, Some(2));
}

#[test]
fn acknowledged_delete_lost() {
    assert_violation(&[set(1, 0, 1, 0, 10), del(1, 0, 20, 30), get(2, 0, Some(1), 40, 50)]);
}

#[test]
fn new_then_old_read_inversion_during_a_write() {
    // Both reads overlap the write of 2, but once 2 is seen, 1 cannot be seen again.
    let h = [set(1, 0, 1, 0, 10), set(1, 0, 2, 20, 60), get(2, 0, Some(2), 25, 30), get(2, 0, Some(1), 35, 40)];
    assert_violation(&h);
}

#[test]
fn pending_write_observed_then_unobserved() {
    let h = [pending_set(1, 0, 1, 0), get(2, 0, Some(1), 10, 20), get(2, 0, None, 30, 40)];
    assert_violation(&h);
}

#[test]
fn read_sees_pending_write_before_it_was_invoked() {
    assert_violation(&[get(2, 0, Some(1), 0, 10), pending_set(1, 0, 1, 20)]);
}

#[test]
fn write_with_wrong_result() {
    let bad = Operation { client: 1, op: KvOp::Set(0, vec![1]), invoke_us: 0, complete: Some((5, KvRet::Value(None))) };
    assert_violation(&[bad]);
}

#[test]
fn violation_on_one_key_among_good_ones() {
    let mut h = generate(11, 5, 3, 40, 0);
    h.push(set(99, 1000, 1, 1_000_000, 1_000_010));
    h.push(get(99, 1000, None, 1_000_020, 1_000_030));
    assert_violation(&h);
}

#[test]
fn completion_before_invocation_is_invalid() {
    let h = [set(1, 0, 1, 10, 5)];
    match check(&KvSpec::default(), &h, &Budget::default()) {
        Err(CheckError::InvalidHistory(e)) => assert_eq!(e.index, 0),
        other => panic!("expected invalid history, got {other:?}"),
    }
}
