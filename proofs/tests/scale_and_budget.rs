//! Generated histories at benchmark scale, agreement of partitioned and whole checks, and the
//! work budget.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use fleet_proofs::linearizability::{check, check_partitioned, CheckError};
use fleet_proofs::spec::kv::{KvOp, KvRet, KvSpec};
use fleet_proofs::spec::KeyedOp;
use fleet_proofs::Budget;

#[test]
fn fifty_clients_thousands_of_ops_per_key() {
    // 50 clients x 1000 sequential ops over 20 keys: about 2,500 operations per key, about
    // 2 in flight per key at a time; 5% of writes time out.
    let h = generate(1, 50, 20, 1000, 5);
    let started = Instant::now();
    let out = check_partitioned(&KvSpec::default(), &h, &Budget::default()).unwrap();
    assert!(out.is_linearizable(), "{out:?}");
    assert_eq!(out.linearized.len(), 20);
    for (key, lin) in &out.linearized {
        // Witness indices refer to the full history; replay them on the key's sub-history.
        let indices: Vec<usize> = (0..h.len()).filter(|&i| h[i].op.key() == *key).collect();
        let sub: Vec<KvOperation> = indices.iter().map(|&i| h[i].clone()).collect();
        let local: Vec<usize> = lin.order.iter().map(|i| indices.binary_search(i).unwrap()).collect();
        verify_witness(&KvSpec::default(), &sub, &local);
    }
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
}

#[test]
fn moderate_concurrency_per_key() {
    // 50 clients over 8 keys: about 6 operations in flight per key.
    let h = generate(2, 50, 8, 100, 5);
    let out = check_partitioned(&KvSpec::default(), &h, &Budget::default()).unwrap();
    assert!(out.is_linearizable(), "{out:?}");
}

#[test]
fn partitioned_and_whole_checks_agree() {
    for seed in 1..=20 {
        let mut h = generate(seed, 6, 3, 15, 20);
        let whole = check(&KvSpec::default(), &h, &Budget::default());
        let parts = check_partitioned(&KvSpec::default(), &h, &Budget::default()).unwrap();
        let lin = whole.unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        verify_witness(&KvSpec::default(), &h, &lin.order);
        assert!(parts.is_linearizable(), "seed {seed}");

        // Corrupt one completed read to a value never written: both must reject.
        let Some(i) = h.iter().position(|o| matches!(o.op, KvOp::Get(_)) && o.complete.is_some()) else {
            continue;
        };
        if let Some((_, ret)) = &mut h[i].complete {
            *ret = KvRet::Value(Some(vec![0xEE; 9]));
        }
        assert!(matches!(check(&KvSpec::default(), &h, &Budget::default()), Err(CheckError::Violation(_))));
        let parts = check_partitioned(&KvSpec::default(), &h, &Budget::default()).unwrap();
        assert_eq!(parts.violations.len(), 1, "seed {seed}");
        let v = parts.violations.values().next().unwrap();
        assert_eq!(v.stuck_op, Some(i), "seed {seed}: {}", v.explanation);
    }
}

/// Many fully concurrent writes followed by an impossible read: exponential for this search.
fn pathological() -> Vec<KvOperation> {
    let mut h: Vec<KvOperation> = (0..24).map(|c| set(c, 0, c as u8, 0, 100)).collect();
    h.push(get(99, 0, Some(200), 200, 300));
    h
}

#[test]
fn step_budget_yields_unknown() {
    match check(&KvSpec::default(), &pathological(), &Budget::steps(50_000)) {
        Err(CheckError::Unknown(u)) => assert_eq!(u.exhausted.steps, 50_000),
        other => panic!("expected unknown, got {other:?}"),
    }
}

#[test]
fn time_budget_yields_unknown() {
    let started = Instant::now();
    let out = check(&KvSpec::default(), &pathological(), &Budget::time(Duration::from_millis(200)));
    assert!(matches!(out, Err(CheckError::Unknown(_))), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[test]
fn exhausted_budget_marks_remaining_keys_unknown() {
    let mut h = pathological();
    h.push(set(1, 5, 1, 0, 10));
    let out = check_partitioned(&KvSpec::default(), &h, &Budget::steps(10_000)).unwrap();
    assert!(!out.is_linearizable());
    assert!(out.violations.is_empty());
    assert!(out.unknown.contains_key(&0) && out.unknown.contains_key(&5));
}
