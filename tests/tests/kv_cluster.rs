//! In-process IronKV cluster tests (deterministic, no sockets), by protocol behaviour.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fleet_io_std::kv::StdStore;
use fleet_proofs::spec::kv::KvRet;
use fleet_tests::kv_sim::{run_kv_hot_seed, run_kv_seed, run_kv_seed_with, KvSim, KvSimOptions, SIM_MAX_VALUE};
use fleet_tests::net::NetFaults;

const SECOND_US: u64 = 1_000_000;

fn assert_clean(sim: &KvSim<impl fleet_engine::kv::Storage>) {
    assert!(sim.violations.is_empty(), "violations: {:#?}", sim.violations);
}

/// Also durable hosts: two seeds in three crash hosts, which lose their unsynced inputs and
/// are rebuilt from their disks (the simulator checks each rebuild is exact when nothing was
/// lost); and one in three restarts a host without its state (`kv::join`): keys it held are
/// lost (answered "lost", never a value or "not found") and no key ever has two owners.
#[test]
fn many_seeds_with_faults_partitions_shards_and_restarts_have_no_violations() {
    let (mut ops, mut shards, mut transfers, mut lost, mut partitioned) = (0, 0, 0, 0, 0);
    let (mut crashes, mut lost_inputs, mut seeds_with_crashes, mut wipes, mut lost_answers) = (0, 0, 0, 0, 0);
    for seed in 0..200 {
        let r = run_kv_seed(seed, 5000);
        assert!(r.violations.is_empty(), "seed {seed}: {:#?}", r.violations);
        ops += r.ops_completed;
        shards += r.shards_ok;
        transfers += r.transfers_completed;
        lost += r.lost;
        partitioned += r.partitioned;
        crashes += r.crashes;
        lost_inputs += r.lost_inputs;
        seeds_with_crashes += u64::from(r.crashes > 0);
        wipes += r.wipes;
        lost_answers += r.lost_key_answers;
    }
    eprintln!(
        "200 seeds x 5000 steps: {ops} ops completed, {shards} shards, {transfers} transfers, \
         {lost} datagrams lost, {partitioned} cut by partitions; {crashes} host crashes on \
         {seeds_with_crashes} seeds ({lost_inputs} unsynced inputs lost), {wipes} hosts restarted \
         without state ({lost_answers} operations answered key lost)"
    );
    assert!(ops > 10_000 && shards > 500 && transfers > 500 && lost > 0 && partitioned > 0);
    assert!(seeds_with_crashes > 100 && crashes > 1000 && lost_inputs > 0);
    assert!(wipes > 50 && lost_answers > 100);
}

/// The planted binding bug (datagrams leave before the inputs they reveal are synced) loses
/// what clients and peers were told at a crash: caught.
#[test]
fn sending_before_the_sync_is_caught() {
    let caught = (0..40)
        .filter(|&seed| {
            let r = run_kv_seed_with(seed, 5000, |o| {
                o.send_before_sync = true;
                o.crash_every_us = o.crash_every_us.clamp(1, 50_000);
            });
            !r.violations.is_empty()
        })
        .count();
    assert!(caught >= 10, "caught on {caught} of 40 seeds");
}

/// A host restarted without its state while the others serve: once the network heals every
/// join ends, and the history is linearizable.
#[test]
fn every_join_ends_once_the_network_heals() {
    let options = KvSimOptions { wipe_every_us: 100_000, crash_every_us: 150_000, ..KvSimOptions::default() };
    let mut sim = KvSim::new(3, options);
    sim.run_steps(20_000);
    assert!(sim.wipes > 0);
    assert!(sim.drain(10 * SECOND_US), "drained");
    assert!(sim.hosts.iter().all(|h| h.joining().is_none()), "every join ended");
    sim.check_linearizable();
    assert_clean(&sim);
}

/// The planted bug: a host restarted without state takes up its initial ranges: caught.
#[test]
fn a_host_claiming_its_initial_ranges_after_losing_its_state_is_caught() {
    let caught = (0..40)
        .filter(|&seed| {
            let r = run_kv_seed_with(seed, 5000, |o| {
                o.claims_at_once = true;
                o.wipe_every_us = o.wipe_every_us.clamp(1, 200_000);
            });
            !r.violations.is_empty()
        })
        .count();
    assert!(caught >= 5, "caught on {caught} of 40 seeds");
}

/// The multi-process shard test's shape: up to 8 clients on 4 adjacent keys whose range is
/// sharded back and forth (redirect ping-pong while it is in flight), long reordering,
/// duplicated datagrams, and clients restarting on their endpoints with larger seqnos.
#[test]
fn hot_keys_with_many_clients_moving_ranges_and_client_restarts_have_no_violations() {
    let (mut ops, mut shards, mut transfers, mut redirects, mut restarts) = (0, 0, 0, 0, 0);
    for seed in 0..200 {
        let r = run_kv_hot_seed(seed, 5000);
        assert!(r.violations.is_empty(), "hot seed {seed}: {:#?}", r.violations);
        ops += r.ops_completed;
        shards += r.shards_ok;
        transfers += r.transfers_completed;
        redirects += r.redirects;
        restarts += r.restarts;
    }
    eprintln!(
        "200 hot seeds x 5000 steps: {ops} ops, {shards} shards, {transfers} transfers, {redirects} redirects, \
         {restarts} client restarts"
    );
    assert!(ops > 10_000 && shards > 500 && transfers > 500 && redirects > 1000 && restarts > 20);
}

#[test]
fn a_calm_cluster_serves_every_operation_while_ranges_move() {
    let mut sim = KvSim::new(1, KvSimOptions::default());
    sim.run_steps(30_000);
    assert!(sim.drain(10 * SECOND_US), "cluster did not go idle");
    sim.check_linearizable();
    assert_clean(&sim);
    let (done, pending) = sim.ops();
    assert_eq!(pending, 0);
    assert!(done > 1000, "{done} operations");
    assert!(sim.shards_ok > 20, "{} shards", sim.shards_ok);
    let owners: usize = (0..sim.hosts.len()).filter(|&h| sim.hosts[h].owns(5000) || sim.hosts[h].owns(0)).count();
    assert!(owners >= 1);
}

#[test]
fn a_faulty_cluster_drains_once_the_network_heals() {
    let faults = NetFaults { loss_ppm: 100_000, dup_ppm: 100_000, min_delay_us: 100, max_delay_us: 20_000 };
    let options = KvSimOptions { faults, partition_every_us: 100_000, hosts: 4, ..KvSimOptions::default() };
    let mut sim = KvSim::new(9, options);
    sim.run_steps(40_000);
    assert!(sim.net.counts.partitioned > 0 && sim.net.counts.lost > 0 && sim.net.counts.duplicated > 0);
    assert!(sim.drain(30 * SECOND_US), "cluster did not go idle after healing");
    sim.check_linearizable();
    assert_clean(&sim);
    assert_eq!(sim.ops().1, 0, "every operation completed after healing");
    assert!(sim.hosts.iter().map(|h| h.reliable().retransmits()).sum::<u64>() > 0);
}

#[test]
fn ranges_larger_than_a_datagram_move_in_several_delegates() {
    let mut sim = KvSim::new(3, KvSimOptions::default());
    sim.run_steps(30_000);
    assert!(sim.drain(10 * SECOND_US));
    let parts: u64 = sim.hosts.iter().map(|h| h.counters().delegate_parts).sum();
    let transfers: u64 = sim.hosts.iter().map(|h| h.counters().transfers_in).sum();
    assert!(parts > transfers, "{parts} Delegate datagrams for {transfers} transfers");
    sim.check_linearizable();
    assert_clean(&sim);
}

#[test]
fn a_std_btreemap_store_plugs_in_without_protocol_changes() {
    let mut sim = KvSim::with_stores(5, KvSimOptions::default(), || StdStore::new(1 << 20, SIM_MAX_VALUE));
    sim.run_steps(20_000);
    assert!(sim.drain(10 * SECOND_US));
    sim.check_linearizable();
    assert_clean(&sim);
    assert!(sim.shards_ok > 10 && sim.ops().0 > 500);
}

#[test]
fn the_linearizability_check_catches_a_stale_read() {
    let mut sim = KvSim::new(1, KvSimOptions::default());
    sim.run_steps(5_000);
    // Plant a bug: a completed Get that saw a value no Set ever wrote.
    let get = sim
        .history
        .iter_mut()
        .find(|o| matches!(o.op, fleet_proofs::spec::kv::KvOp::Get(_)) && o.complete.is_some())
        .expect("some Get completed");
    let done = get.complete.as_ref().unwrap().0;
    get.complete = Some((done, KvRet::Value(Some(b"never written".to_vec()))));
    sim.check_linearizable();
    assert_eq!(sim.violations.len(), 1, "{:?}", sim.violations);
}

#[test]
fn a_seed_replays_identically() {
    let a = run_kv_seed(42, 3000);
    let b = run_kv_seed(42, 3000);
    assert_eq!((a.steps, a.sim_us, a.ops_completed, a.shards_ok), (b.steps, b.sim_us, b.ops_completed, b.shards_ok));
}

/// Peer-table churn: a stream of short-lived clients (new endpoints, or departed ones'
/// endpoints restarted), some vanishing mid-request or leaving without acknowledging, fills
/// the hosts' tables under loss, duplication, delays and partitions. Hosts evict settled
/// clients and give up on silent ones, refuse closed channels, and nothing is executed
/// twice (every history linearizable).
#[test]
fn short_lived_and_vanishing_clients_are_evicted_and_no_request_runs_twice() {
    let (mut evicted, mut abandoned, mut closed, mut lost, mut ops) = (0, 0, 0, 0, 0);
    for seed in 0..200 {
        let mut rng = fleet_tests::rng::Rng::new(seed);
        let mut options = if seed % 2 == 0 { KvSimOptions::random(&mut rng) } else { KvSimOptions::hot(&mut rng) };
        options.ephemeral_every_us = rng.range(300, 3_000);
        options.params.reliable.give_up_after = rng.range(3, 8) as u32;
        let mut sim = KvSim::new(seed, options);
        sim.run_steps(5000);
        sim.check_linearizable();
        let r = sim.report(seed);
        assert!(r.violations.is_empty(), "churn seed {seed}: {:#?}", r.violations);
        (evicted, abandoned, closed, lost, ops) = (
            evicted + r.evicted,
            abandoned + r.abandoned,
            closed + r.closed_refused,
            lost + r.lost_ops,
            ops + r.ops_completed,
        );
    }
    eprintln!(
        "200 churn seeds x 5000 steps: {ops} ops, {evicted} evicted, {abandoned} given up, {closed} closed-channel \
         refusals, {lost} lost"
    );
    assert!(evicted > 1000 && abandoned > 100 && closed > 1000 && lost > 0 && ops > 10_000);
}

/// With churn, a cluster still drains once the network heals: hosts give up on the clients
/// that vanished, and every live client's operation completes or ends lost.
#[test]
fn a_cluster_with_vanished_clients_drains_by_giving_up_on_them() {
    let options = KvSimOptions { ephemeral_every_us: 1_000, ..KvSimOptions::default() };
    let mut sim = KvSim::new(11, options);
    sim.run_steps(30_000);
    assert!(sim.vanished > 0);
    assert!(sim.drain(30 * SECOND_US), "cluster did not go idle");
    sim.check_linearizable();
    assert_clean(&sim);
    let r = sim.report(11);
    assert!(r.evicted > 0 && r.abandoned > 0, "{r:?}");
    assert!(sim.hosts.iter().all(|h| h.reliable().pending() == 0));
}
