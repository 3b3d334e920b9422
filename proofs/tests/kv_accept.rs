//! Linearizable KV histories must be accepted, with a witness that really is a linearization.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

#[test]
fn empty_history() {
    assert!(assert_linearizable(&[]).order.is_empty());
}

#[test]
fn sequential_history() {
    let h = [
        get(1, 7, None, 0, 5),
        set(1, 7, 1, 10, 20),
        get(2, 7, Some(1), 30, 40),
        del(2, 7, 50, 60),
        get(1, 7, None, 70, 80),
    ];
    assert_eq!(assert_linearizable(&h).order, vec![0, 1, 2, 3, 4]);
}

#[test]
fn concurrent_writes_then_read_of_either() {
    // Two overlapping writes: a later read may see either, as each order is valid.
    for seen in [1, 2] {
        let h = [set(1, 0, 1, 0, 100), set(2, 0, 2, 10, 90), get(3, 0, Some(seen), 150, 160)];
        let lin = assert_linearizable(&h);
        assert_eq!(lin.order.last(), Some(&2));
    }
}

#[test]
fn read_concurrent_with_write_sees_old_or_new() {
    for seen in [1, 2] {
        let h = [set(1, 0, 1, 0, 10), set(1, 0, 2, 20, 60), get(2, 0, Some(seen), 30, 40)];
        assert_linearizable(&h);
    }
}

#[test]
fn three_concurrent_writes_observed_in_a_nonobvious_order() {
    // Only s2 < s3 < s1 explains both readers; it is not the invocation order.
    let h = [
        set(1, 0, 1, 0, 100),
        set(2, 0, 2, 0, 100),
        set(3, 0, 3, 0, 100),
        get(4, 0, Some(2), 10, 20),
        get(4, 0, Some(3), 30, 40),
        get(5, 0, Some(2), 15, 25),
        get(5, 0, Some(1), 50, 60),
    ];
    let order = assert_linearizable(&h).order;
    let pos = |i| order.iter().position(|&x| x == i).unwrap();
    assert!(pos(1) < pos(2) && pos(2) < pos(0));
}

#[test]
fn pending_write_that_took_effect() {
    let h = [pending_set(1, 0, 1, 0), get(2, 0, Some(1), 10, 20)];
    assert_eq!(assert_linearizable(&h).order, vec![0, 1]);
}

#[test]
fn pending_write_that_never_took_effect() {
    let h = [pending_set(1, 0, 1, 0), get(2, 0, None, 10, 20), get(2, 0, None, 30, 40)];
    assert_eq!(assert_linearizable(&h).order, vec![1, 2]);
}

#[test]
fn pending_write_taking_effect_long_after_invocation() {
    let h = [pending_set(1, 0, 1, 0), get(2, 0, None, 10, 20), get(2, 0, Some(1), 100, 110)];
    assert_eq!(assert_linearizable(&h).order, vec![1, 0, 2]);
}

#[test]
fn pending_delete_may_take_effect() {
    let h = [set(1, 0, 1, 0, 10), pending_del(1, 0, 20), get(2, 0, Some(1), 30, 40), get(2, 0, None, 50, 60)];
    assert_linearizable(&h);
}

#[test]
fn client_reuses_after_timeout_while_old_write_lands_late() {
    // Client 1 times out on a write of 1, then writes 2; the old write lands afterwards.
    let h = [pending_set(1, 0, 1, 0), set(1, 0, 2, 300, 310), get(2, 0, Some(1), 400, 410)];
    assert_eq!(assert_linearizable(&h).order, vec![1, 0, 2]);
}

#[test]
fn equal_timestamps_count_as_concurrent() {
    // A read invoked at the instant a write completes may be ordered before it.
    let h = [set(1, 0, 1, 0, 10), get(2, 0, None, 10, 20)];
    assert_eq!(assert_linearizable(&h).order, vec![1, 0]);
}

#[test]
fn keys_are_independent() {
    let h = [set(1, 1, 1, 0, 10), get(2, 2, None, 20, 30), set(2, 2, 2, 40, 50), get(1, 1, Some(1), 60, 70)];
    assert_linearizable(&h);
}
