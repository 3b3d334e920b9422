//! State transfer: when a replica behind asks for state, whom it asks, and how a supplier
//! answers.

use fleet_engine::rsl::msg::Resume;
use fleet_engine::rsl::snapshot::{SnapshotId, SnapshotPos};
use fleet_engine::rsl::{Ballot, RslMsg};
use fleet_engine::wire::{self, Bytes};
use fleet_engine::{Endpoint, Instant};
use fleet_tests::rsl_sim::{RslSim, SimOptions, SimReplica};

use super::{executed_five, heartbeat};
use crate::rules_common::*;

fn state_requests(out: &fleet_engine::Outbox<'_>) -> Vec<(Endpoint, u64)> {
    sent(out)
        .into_iter()
        .filter_map(|(dst, b)| match decode(&b) {
            RslMsg::AppStateRequest { have, .. } => Some((dst, have)),
            _ => None,
        })
        .collect()
}

/// Acceptors truncate what a quorum executed, followers without waiting for anyone, so a
/// replica left below a point others reached may never get it from the log (the catch-up
/// check found leaders and followers stuck that way). After a grace period of two
/// retransmission periods it fetches the state from a replica known to have it.
#[test]
fn a_point_others_reached_a_grace_period_ago_is_fetched_by_state_transfer() {
    let grace_ms = 2 * fleet_engine::rsl::Params::default().retransmit_period_ms;
    let mut r = fresh(1);
    let mut store = Out::new();
    let mut out = store.outbox();
    let _ = r.handle(Instant::ZERO, eps()[0], &heartbeat(5), &mut out);
    assert!(r.next_deadline() <= Instant::from_millis(grace_ms), "a timer wakes the replica at the end of the grace");
    let _ = r.tick(Instant::from_millis(grace_ms - 1), &mut out);
    assert_eq!(state_requests(&out), vec![], "within the grace period the log may still bring it");
    out.clear();
    // The tick at the end of the grace notes the target and arms the request at once; the
    // binding calls `tick` again at that deadline, which sends it.
    let end = Instant::from_millis(grace_ms);
    let _ = r.tick(end, &mut out);
    assert!(r.next_deadline() <= end, "the state request is due at once");
    let _ = r.tick(end, &mut out);
    let asked = state_requests(&out);
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0].0, eps()[0], "asks the replica known to have executed that far");
    assert_eq!(asked[0].1, 0, "for the decisions from what it has: {asked:?}");
}

#[test]
fn a_replica_the_log_brings_up_within_the_grace_period_asks_for_no_state() {
    let grace_ms = 2 * fleet_engine::rsl::Params::default().retransmit_period_ms;
    let mut r = fresh(1);
    let mut store = Out::new();
    let mut out = store.outbox();
    let _ = r.handle(Instant::ZERO, eps()[0], &heartbeat(5), &mut out);
    let now = Instant::from_millis(1);
    for opn in 0..5 {
        let batch = Bytes(b"");
        let _ = r.handle(now, eps()[0], &encode(&RslMsg::TwoA { bal: Ballot::INITIAL, opn, batch }), &mut out);
        let two_b = encode(&RslMsg::TwoB { bal: Ballot::INITIAL, opn, opn_ckpt: 0 });
        let _ = r.handle(now, eps()[0], &two_b, &mut out);
        let _ = r.handle(now, eps()[1], &two_b, &mut out);
    }
    assert_eq!(r.status().ops_complete, 5);
    out.clear();
    for ms in [grace_ms, 2 * grace_ms] {
        let _ = r.tick(Instant::from_millis(ms), &mut out);
    }
    assert_eq!(state_requests(&out), vec![]);
}

#[derive(Debug, PartialEq)]
enum Part {
    /// Application bytes: offset, length.
    App(u64, u64),
    /// Reply-cache entries: first index, count.
    Cache(u32, u32),
    /// An executed batch: its operation.
    Executed(u64),
}

/// The supply parts `r` sends to replica `asker` for one AppStateRequest from `have` (each
/// snapshot piece naming `r`'s frozen snapshot), and whether the last part says it is last.
fn supply(r: &mut SimReplica, asker: Endpoint, have: u64, resume: Option<Resume>) -> (Vec<Part>, bool) {
    use fleet_engine::rsl::msg::SupplyPart;
    use fleet_engine::rsl::reply_cache::CacheEntryWire;
    let id = r.frozen().id;
    let bal = r.election().current_view;
    let mut buf = vec![0u8; 4096];
    let n = wire::encode_rsl(r.cluster(), &RslMsg::AppStateRequest { bal, have, resume }, &mut buf).unwrap();
    let ask = buf[..n].to_vec();
    let mut store = Out::new();
    let mut out = store.outbox();
    let _ = r.handle(Instant::ZERO, asker, &ask, &mut out);
    let mut parts = Vec::new();
    let mut lasts = Vec::new();
    for (dst, bytes) in sent(&out) {
        assert_eq!(dst, asker);
        let RslMsg::AppStateSupply { last, part } = decode(&bytes) else {
            panic!("only supply parts answer a state request");
        };
        lasts.push(last);
        parts.push(match part {
            SupplyPart::App { id: got, offset, bytes } => {
                assert_eq!(got, id);
                Part::App(offset, bytes.0.len() as u64)
            }
            SupplyPart::Cache { id: got, index, entries } => {
                assert_eq!(got, id);
                let (mut rest, mut count) = (entries.0, 0);
                while !rest.is_empty() {
                    rest = postcard::take_from_bytes::<CacheEntryWire<'_>>(rest).unwrap().1;
                    count += 1;
                }
                Part::Cache(index, count)
            }
            SupplyPart::Executed { opn, .. } => Part::Executed(opn),
        });
    }
    let marked_last = lasts.last() == Some(&true) && lasts.iter().filter(|l| **l).count() == 1;
    (parts, marked_last)
}

/// A state request from a point the retained tail no longer reaches is answered in the same
/// step with the frozen snapshot's pieces, contiguous from the point asked for (application
/// bytes first), then the executed batches after the snapshot; at most
/// `state_chunks_per_step` parts, the last one marked. A request naming the same snapshot
/// resumes it; one naming another starts from zero. A request from a point the tail still
/// holds gets the batches alone.
#[test]
fn a_state_request_is_answered_with_contiguous_parts_up_to_the_step_budget() {
    let params = fleet_engine::rsl::Params { state_chunks_per_step: 2, max_datagram_bytes: 300, ..Default::default() };
    let mut sim = RslSim::new(3, SimOptions { ops_per_client: 120, keys: 60, params, ..SimOptions::default() });
    assert!(sim.run_until(60_000_000, RslSim::all_done));
    let asker = sim.replica_eps[1];
    let r = sim.replicas[0].as_mut().unwrap();
    let ops = r.status().ops_complete;
    let id = r.frozen().id;
    let first = r.retained().first_opn();
    assert!(first > 0 && id.opn >= first, "the tail was cut and a snapshot frozen: {first}, {id:?}");
    assert!(id.app_len > 300 && id.cache_entries > 0, "a snapshot of several rounds: {id:?}");
    let (mut pos, mut executed, mut rounds) = (SnapshotPos::default(), id.opn, 0);
    let mut resume = None;
    while executed < ops {
        rounds += 1;
        let (parts, marked) = supply(r, asker, 0, resume);
        assert!(!parts.is_empty() && parts.len() <= 2 && marked, "round {rounds}: {parts:?}");
        for p in parts {
            match p {
                Part::App(o, n) => {
                    assert_eq!(o, pos.app_offset, "round {rounds}: application bytes are contiguous");
                    pos.app_offset += n;
                }
                Part::Cache(i, k) => {
                    assert_eq!(pos.app_offset, id.app_len, "cache entries come after every application byte");
                    assert_eq!(i, pos.cache_index, "round {rounds}: cache entries are contiguous");
                    pos.cache_index += k;
                }
                Part::Executed(opn) => {
                    assert_eq!((pos.app_offset, pos.cache_index), (id.app_len, id.cache_entries), "after the snapshot");
                    assert_eq!(opn, executed, "batches follow on from the snapshot");
                    executed += 1;
                }
            }
        }
        if pos.app_offset == id.app_len && pos.cache_index == id.cache_entries {
            break; // The rest is batches; asking again means asking from the snapshot's point.
        }
        resume = Some(Resume { id, pos });
        assert!(rounds < 100);
    }
    assert!(rounds >= 2, "the budget split the snapshot");
    let other = SnapshotId { opn: id.opn - 1, ..id };
    let (restart, _) =
        supply(r, asker, 0, Some(Resume { id: other, pos: SnapshotPos { app_offset: 300, cache_index: 0 } }));
    assert!(matches!(restart.first(), Some(Part::App(0, _))), "another snapshot restarts from zero: {restart:?}");
    let (resumed, _) = supply(r, asker, 0, Some(Resume { id, pos: SnapshotPos { app_offset: 300, cache_index: 0 } }));
    assert!(matches!(resumed.first(), Some(Part::App(300, _))), "the same snapshot resumes: {resumed:?}");
    let (batches, marked) = supply(r, asker, ops - 1, None);
    assert_eq!(batches, vec![Part::Executed(ops - 1)], "the tail still holds the last batch");
    assert!(marked);
}

#[test]
fn a_state_request_beyond_what_this_replica_executed_or_from_itself_is_ignored() {
    let mut r = executed_five();
    let mut store = Out::new();
    let mut out = store.outbox();
    let ask = |have| encode(&RslMsg::AppStateRequest { bal: Ballot::INITIAL, have, resume: None });
    let ignored = r.stats().ignored_messages;
    let _ = r.handle(Instant::ZERO, eps()[0], &ask(5), &mut out);
    assert!(out.is_empty(), "replica 1 executed 5 operations: nothing past 5 to give");
    let _ = r.handle(Instant::ZERO, eps()[1], &ask(4), &mut out);
    assert!(out.is_empty(), "a replica does not supply itself");
    assert_eq!(r.stats().ignored_messages, ignored + 2);
    let _ = r.handle(Instant::ZERO, eps()[0], &ask(4), &mut out);
    assert!(!out.is_empty(), "control: replica 0 is supplied");
}

/// Which replicas a replica behind truncation point 8 asks for state on successive retries,
/// given the checkpoints replicas 0 and 2 reported.
fn state_suppliers(ckpt0: u64, ckpt2: u64) -> Vec<usize> {
    let mut r = fresh(1);
    let mut store = Out::new();
    let mut out = store.outbox();
    let beat = |ckpt| encode(&RslMsg::Heartbeat { bal: Ballot::INITIAL, suspicious: false, opn_ckpt: ckpt });
    let _ = r.handle(Instant::ZERO, eps()[0], &beat(ckpt0), &mut out);
    let _ = r.handle(Instant::ZERO, eps()[2], &beat(ckpt2), &mut out);
    let start = encode(&RslMsg::StartingPhase2 { bal: Ballot::INITIAL, log_truncation_point: 8 });
    let _ = r.handle(Instant::ZERO, eps()[0], &start, &mut out);
    let period_ms = fleet_engine::rsl::Params::default().retransmit_period_ms;
    let mut asked = Vec::new();
    for k in 0..6 {
        out.clear();
        let _ = r.tick(Instant::from_millis(k * period_ms), &mut out);
        for (dst, b) in sent(&out) {
            if let RslMsg::AppStateRequest { have, .. } = decode(&b) {
                assert_eq!(have, 0, "it asks for the decisions from what it has");
                asked.push(eps().iter().position(|e| *e == dst).unwrap());
            }
        }
    }
    asked
}

#[test]
fn a_replica_behind_asks_those_known_to_have_the_state_in_turn_and_otherwise_every_other_replica() {
    assert_eq!(state_suppliers(10, 0), vec![0; 6], "only replica 0 reported executing past 8");
    assert_eq!(state_suppliers(0, 9), vec![2; 6], "only replica 2 did");
    for (ckpt0, ckpt2) in [(10, 9), (0, 0)] {
        let asked = state_suppliers(ckpt0, ckpt2);
        assert_eq!(asked.len(), 6, "one request per retry: {asked:?}");
        assert!(asked.contains(&0) && asked.contains(&2) && !asked.contains(&1), "{ckpt0}/{ckpt2}: {asked:?}");
    }
}
