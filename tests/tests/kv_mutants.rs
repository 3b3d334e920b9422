//! The KV simulator suite of the mutation run (`docs/simulator.md`, "Mutation testing"):
//! small enough to run per mutant (a few seconds in a debug build). Spread and hot seeds with
//! crashes, restarts without state, eviction and moving ranges; every seed must be clean,
//! and every seed's operations must mostly complete (a mutant that stalls the protocol is
//! caught here, not only one that breaks safety).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fleet_tests::kv_sim::{run_kv_hot_seed, run_kv_seed, KvSim, KvSimOptions};

#[test]
fn forty_spread_and_forty_hot_seeds_are_clean_and_make_progress() {
    let (mut ops, mut invoked, mut transfers, mut crashes, mut wipes) = (0, 0, 0, 0, 0);
    for seed in 0..40 {
        for r in [run_kv_seed(seed, 3000), run_kv_hot_seed(seed, 3000)] {
            assert!(r.violations.is_empty(), "seed {seed}: {:#?}", r.violations);
            ops += r.ops_completed;
            invoked += r.ops_completed + r.ops_pending;
            transfers += r.transfers_completed;
            crashes += r.crashes;
            wipes += r.wipes;
        }
    }
    assert!(ops * 10 > invoked * 7, "{ops} of {invoked} operations completed");
    assert!(transfers > 100 && crashes > 100 && wipes > 5, "{transfers} transfers, {crashes} crashes, {wipes} wipes");
}

#[test]
fn a_faulty_cluster_drains_once_the_network_heals() {
    let options = KvSimOptions {
        wipe_every_us: 100_000,
        crash_every_us: 80_000,
        ephemeral_every_us: 2_000,
        ..KvSimOptions::default()
    };
    let mut sim = KvSim::new(11, options);
    sim.run_steps(8_000);
    assert!(sim.drain(10_000_000), "drained: every operation and transfer finished");
    sim.check_linearizable();
    assert!(sim.violations.is_empty(), "{:#?}", sim.violations);
}
