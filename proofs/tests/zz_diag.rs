#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
mod common;
use common::*;
use fleet_proofs::linearizability::check_partitioned;
use fleet_proofs::spec::kv::KvSpec;
use fleet_proofs::Budget;
use std::time::{Duration, Instant};

#[test]
fn diag() {
    for (clients, keys, per, pend) in [(50, 4, 40, 0), (50, 4, 200, 0), (50, 4, 40, 5), (10, 4, 200, 5), (50, 20, 200, 5)] {
        let h = generate(1, clients, keys, per, pend);
        let t = Instant::now();
        let out = check_partitioned(&KvSpec::default(), &h, &Budget::time(Duration::from_secs(10))).unwrap();
        eprintln!("c={clients} k={keys} per={per} pend={pend}: n={} lin={} unk={} viol={} {:?} {:?}", h.len(), out.linearized.len(), out.unknown.len(), out.violations.len(), t.elapsed(), out.unknown.values().next().map(|u| u.exhausted.steps));
    }
}
