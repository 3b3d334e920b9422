//! In-process RSL cluster tests (deterministic, no sockets), by protocol behaviour.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fleet_tests::net::NetFaults;
use fleet_tests::rsl_sim::{RslSim, SimOptions};

const SECOND_US: u64 = 1_000_000;

fn assert_replicas_agree(sim: &RslSim) {
    assert!(sim.violations.is_empty(), "violations: {:?}", sim.violations);
    let live: Vec<_> = sim.replicas.iter().flatten().collect();
    let first = live[0];
    for r in &live[1..] {
        assert_eq!(r.executor().ops_complete, first.executor().ops_complete, "same number of batches executed");
        assert_eq!(r.executor().executed_digest, first.executor().executed_digest, "same batches in the same order");
        assert_eq!(r.app(), first.app(), "same application state");
    }
}

#[test]
fn replicas_execute_the_same_batches_in_the_same_order() {
    let mut sim = RslSim::new(1, SimOptions::default());
    assert!(sim.run_until(60 * SECOND_US, RslSim::all_done), "completed {} of 150", sim.completed());
    // Let the last decisions reach every replica.
    sim.run_for(SECOND_US);
    assert_replicas_agree(&sim);
    assert!(sim.replicas[0].as_ref().unwrap().executor().ops_complete > 0);
}

#[test]
fn replicas_agree_under_loss_duplication_and_reordering() {
    let faults = NetFaults { loss_ppm: 50_000, dup_ppm: 50_000, min_delay_us: 50, max_delay_us: 5_000 };
    let mut sim = RslSim::new(7, SimOptions { faults, ..SimOptions::default() });
    assert!(sim.run_until(120 * SECOND_US, RslSim::all_done), "completed {} of 150", sim.completed());
    sim.net.faults = NetFaults::CALM;
    sim.run_for(2 * SECOND_US);
    assert_replicas_agree(&sim);
}

#[test]
fn killing_the_leader_leads_to_a_view_change_and_progress_resumes() {
    let mut sim = RslSim::new(2, SimOptions { ops_per_client: 60, ..SimOptions::default() });
    assert!(sim.run_until(30 * SECOND_US, |s| s.completed() >= 30));
    let old = sim.leader().expect("a leader while serving");
    let view_before = sim.replicas[old].as_ref().unwrap().status().view;
    sim.crash(old);
    let done_at_crash = sim.completed();
    assert!(
        sim.run_until(60 * SECOND_US, RslSim::all_done),
        "completed {} after the crash",
        sim.completed() - done_at_crash
    );
    let new = sim.leader().expect("a new leader");
    assert_ne!(new, old);
    assert!(sim.replicas[new].as_ref().unwrap().status().view > view_before);
    sim.run_for(SECOND_US);
    assert_replicas_agree(&sim);
}

#[test]
fn an_isolated_replica_catches_up_by_chunked_state_transfer() {
    // Small datagrams: the snapshot of a few dozen keys takes several.
    let params = fleet_engine::rsl::Params { max_datagram_bytes: 300, ..Default::default() };
    let options = SimOptions { ops_per_client: 120, keys: 60, params, ..SimOptions::default() };
    let mut sim = RslSim::new(3, options);
    assert!(sim.run_until(30 * SECOND_US, |s| s.completed() >= 10));
    let lagging = (sim.leader().unwrap() + 1) % 3;
    sim.isolate(lagging);
    assert!(sim.run_until(120 * SECOND_US, RslSim::all_done), "completed {}", sim.completed());
    let leader = sim.leader().unwrap();
    let behind = sim.replicas[lagging].as_ref().unwrap().executor().ops_complete;
    let trunc = sim.replicas[leader].as_ref().unwrap().acceptor().log_truncation_point;
    assert!(behind < trunc, "the isolated replica ({behind}) fell behind the truncation point ({trunc})");
    sim.heal();
    let target = sim.replicas[leader].as_ref().unwrap().executor().ops_complete;
    assert!(sim.run_until(30 * SECOND_US, |s| s.replicas[lagging].as_ref().unwrap().executor().ops_complete >= target));
    let r = sim.replicas[lagging].as_ref().unwrap();
    assert!(r.transfer().installed >= 1, "caught up through state transfer, not the log");
    let snapshot = r.frozen().id.app_len;
    assert!(snapshot > 300, "the snapshot ({snapshot} bytes) needed more than one 300-byte datagram");
    sim.run_for(SECOND_US);
    assert_replicas_agree(&sim);
}

/// The leader is cut off, the others elect a new leader and truncate past it, then the cut
/// heals when no client sends anything more. The old leader adopts the new view from
/// heartbeats; it missed `StartingPhase2` (the only place IronRSL tells a replica where the
/// log now starts), so nothing but the new leader's retransmission can tell it to fetch state.
#[test]
fn a_leader_cut_off_past_the_truncation_point_catches_up_after_healing_with_no_new_traffic() {
    // Enough writes after the cut that the others' retained batches no longer reach back to
    // the old leader (Gets take no log slot: they are answered without a log write).
    let options = SimOptions { ops_per_client: 150, keys: 20, ..SimOptions::default() };
    let mut sim = RslSim::new(4, options);
    assert!(sim.run_until(30 * SECOND_US, |s| s.completed() >= 20));
    // Cut the leader off while it has nothing pending: it then has no reason to time out
    // and start a view of its own, which would make the others run phase 1 with it.
    sim.stop_submitting = true;
    assert!(sim.run_until(30 * SECOND_US, |s| s.clients.iter().all(|c| c.current.is_empty())));
    sim.run_for(SECOND_US);
    let old = sim.leader().expect("a leader while serving");
    sim.isolate(old);
    sim.stop_submitting = false;
    assert!(sim.run_until(120 * SECOND_US, RslSim::all_done), "completed {}", sim.completed());
    // Heartbeats spread the last checkpoints: the log is truncated up to the last operation,
    // so the new leader has no vote left to re-send.
    sim.run_for(2 * SECOND_US);
    // The old leader still believes it leads: look among the others.
    let new = (0..3).find(|&r| r != old && sim.replicas[r].as_ref().unwrap().status().is_leader).expect("a new leader");
    let trunc = sim.replicas[new].as_ref().unwrap().acceptor().log_truncation_point;
    let behind = sim.replicas[old].as_ref().unwrap().executor().ops_complete;
    assert!(behind < trunc, "the old leader ({behind}) fell behind the truncation point ({trunc})");
    sim.heal();
    let target = sim.replicas[new].as_ref().unwrap().executor().ops_complete;
    assert!(
        sim.run_until(30 * SECOND_US, |s| s.replicas[old].as_ref().unwrap().executor().ops_complete >= target),
        "the old leader is still at {} of {target}: {:?}",
        sim.replicas[old].as_ref().unwrap().executor().ops_complete,
        sim.replicas[old].as_ref().unwrap().status()
    );
    assert!(sim.replicas[old].as_ref().unwrap().transfer().installed >= 1);
    sim.run_for(SECOND_US);
    assert_replicas_agree(&sim);
}
