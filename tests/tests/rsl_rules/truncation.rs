//! Checkpoints and log truncation: whose checkpoints hold a log, how a follower reports its
//! own, and who is told where the leader's log starts.

use fleet_engine::rsl::{Ballot, RslMsg};
use fleet_engine::wire::Bytes;
use fleet_engine::{Endpoint, Instant};
use fleet_tests::rsl_sim::{RslSim, SimOptions, SimReplica};

use super::{executed_five, heartbeat, leader_executed_five};
use crate::rules_common::*;

#[test]
fn truncation_is_at_most_the_quorum_th_highest_checkpoint_and_ignores_silent_replicas() {
    let mut r = executed_five();
    let mut store = Out::new();
    let mut out = store.outbox();
    assert_eq!(r.acceptor().log_truncation_point, 0, "replica 0 reported 0: one replica at 5 is not a quorum");
    let _ = r.handle(Instant::ZERO, eps()[0], &heartbeat(4), &mut out);
    // Checkpoints 4 (r0), 5 (r1), 0 (r2, never heard from): the quorum-th highest is 4.
    assert_eq!(r.acceptor().log_truncation_point, 4);
    assert_eq!(r.acceptor().votes().next().map(|v| v.opn), Some(4), "votes below 4 are gone");
}

#[test]
fn the_leaders_truncation_waits_for_a_live_replica_inside_the_log_until_it_falls_silent() {
    let mut r = leader_executed_five();
    let mut store = Out::new();
    let mut out = store.outbox();
    let _ = r.handle(Instant::ZERO, eps()[2], &heartbeat(4), &mut out);
    let _ = r.handle(Instant::ZERO, eps()[1], &heartbeat(5), &mut out);
    // IronRSL would truncate at 5 (replicas 0 and 1); replica 2 is live and at 4.
    assert_eq!(r.acceptor().log_truncation_point, 4, "a live replica inside the log holds truncation");
    // Two heartbeat periods without a word from replica 2 (replica 1 keeps talking).
    let period = fleet_engine::rsl::Params::default().heartbeat_period_ms;
    for k in 1..=3 {
        let now = Instant::from_micros(k * period * 1000);
        let _ = r.tick(now, &mut out);
        let _ = r.handle(now, eps()[1], &heartbeat(5), &mut out);
        out.clear();
        let expected = if k <= 2 { 4 } else { 5 };
        assert_eq!(r.acceptor().log_truncation_point, expected, "after {k} heartbeat periods");
    }
}

#[test]
fn a_followers_own_checkpoint_holds_its_log_so_a_short_lag_needs_no_state_transfer() {
    let mut r = fresh(1);
    let mut store = Out::new();
    let mut out = store.outbox();
    let _ = r.handle(Instant::ZERO, eps()[0], &heartbeat(5), &mut out);
    let _ = r.handle(Instant::ZERO, eps()[2], &heartbeat(5), &mut out);
    assert_eq!(r.acceptor().log_truncation_point, 0, "the others at 5 do not cut this replica's log");
    out.clear();
    let _ = r.tick(Instant::ZERO, &mut out);
    assert!(!sent(&out).iter().any(|(_, b)| matches!(decode(b), RslMsg::AppStateRequest { .. })));
}

#[test]
fn the_leader_tells_a_replica_below_its_truncation_point_where_the_log_starts() {
    let mut sim = RslSim::new(5, SimOptions { ops_per_client: 30, ..SimOptions::default() });
    assert!(sim.run_until(10_000_000, |s| s.completed() >= 5));
    let leader = sim.leader().unwrap();
    let (behind, level) = ((leader + 1) % 3, (leader + 2) % 3);
    sim.isolate(behind);
    assert!(sim.run_until(60_000_000, RslSim::all_done));
    sim.run_for(2_000_000);
    let r = sim.replicas[leader].as_mut().unwrap();
    let point = r.acceptor().log_truncation_point;
    assert!(r.acceptor().checkpoint_of(behind) < point && r.acceptor().checkpoint_of(level) >= point);
    let mut store = Out::new();
    let mut out = store.outbox();
    let later = Instant::from_micros(sim.now).plus_ms(r.config().params.retransmit_period_ms);
    let _ = r.tick(later, &mut out);
    let starts: Vec<_> = sent(&out)
        .into_iter()
        .filter_map(|(d, b)| match decode(&b) {
            RslMsg::StartingPhase2 { log_truncation_point, .. } => Some((d, log_truncation_point)),
            _ => None,
        })
        .collect();
    assert_eq!(starts, vec![(sim.replica_eps[behind], point)], "only the replica below the truncation point");
}

#[test]
fn a_replica_that_keeps_sending_heartbeats_holds_the_leaders_truncation() {
    let mut r = leader_executed_five();
    let mut store = Out::new();
    let mut out = store.outbox();
    let period = fleet_engine::rsl::Params::default().heartbeat_period_ms;
    for k in 0..=4 {
        let now = Instant::from_micros(k * period * 1000);
        let _ = r.tick(now, &mut out);
        let _ = r.handle(now, eps()[2], &heartbeat(4), &mut out);
        let _ = r.handle(now, eps()[1], &heartbeat(5), &mut out);
        out.clear();
        assert_eq!(r.acceptor().log_truncation_point, 4, "replica 2 is live at 4 ({k} periods)");
    }
}

/// Replica 1 votes for operations `0..n` of view (1, 0) and learns each decided (2b from
/// replicas 0 and 1); returns what its last step sent.
fn follower_voting_and_executing(r: &mut SimReplica, n: u64) -> Vec<(Endpoint, Vec<u8>)> {
    let mut store = Out::new();
    let mut out = store.outbox();
    let mut last = Vec::new();
    for opn in 0..n {
        let batch: &[u8] = b"";
        let _ = r.handle(
            Instant::ZERO,
            eps()[0],
            &encode(&RslMsg::TwoA { bal: Ballot::INITIAL, opn, batch: Bytes(batch) }),
            &mut out,
        );
        for from in [0, 1] {
            out.clear();
            let two_b = RslMsg::TwoB { bal: Ballot::INITIAL, opn, opn_ckpt: 0 };
            let _ = r.handle(Instant::ZERO, eps()[from], &encode(&two_b), &mut out);
        }
        last = sent(&out);
    }
    last
}

#[test]
fn a_follower_that_drained_a_whole_window_reports_its_checkpoint_to_the_leader_alone() {
    let window = fleet_engine::rsl::Params::default().max_log_length;
    let mut r = fresh(1);
    // Each 2b it sends carries a checkpoint one behind: fewer than a window executed since.
    let last = follower_voting_and_executing(&mut r, window - 1);
    assert!(!last.iter().any(|(_, b)| matches!(decode(b), RslMsg::Heartbeat { .. })), "no report yet");
    // Its votes all go out before any is decided (the leader's window fills), then the
    // decisions arrive: a window executed since its last 2b, and no 2a to answer.
    let mut r = fresh(1);
    let mut store = Out::new();
    let mut out = store.outbox();
    let batch: &[u8] = b"";
    for opn in 0..window {
        let _ = r.handle(
            Instant::ZERO,
            eps()[0],
            &encode(&RslMsg::TwoA { bal: Ballot::INITIAL, opn, batch: Bytes(batch) }),
            &mut out,
        );
    }
    let mut reports = Vec::new();
    for opn in 0..window {
        for from in [0, 1] {
            out.clear();
            let two_b = RslMsg::TwoB { bal: Ballot::INITIAL, opn, opn_ckpt: 0 };
            let _ = r.handle(Instant::ZERO, eps()[from], &encode(&two_b), &mut out);
            for (dst, b) in sent(&out) {
                if let RslMsg::Heartbeat { opn_ckpt, .. } = decode(&b) {
                    reports.push((dst, opn_ckpt));
                }
            }
        }
    }
    assert_eq!(r.status().ops_complete, window);
    assert_eq!(reports, vec![(eps()[0], window)], "one report, to the leader, once all is executed");
}
