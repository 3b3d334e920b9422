//! RSL rules checked through a replica's sans-IO entry points, one rule per test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fleet_engine::rsl::msg::Resume;
use fleet_engine::rsl::snapshot::{SnapshotId, SnapshotPos};
use fleet_engine::rsl::{Ballot, RslMsg};
use fleet_engine::wire::{self, Bytes, Protocol};
use fleet_engine::{Endpoint, Instant};
use fleet_tests::rng::Rng;
use fleet_tests::rsl_sim::{RslSim, SimOptions, SimReplica};

mod rules_common;
use rules_common::*;

#[test]
fn peer_messages_naming_another_cluster_are_refused_and_reported() {
    let mut r = fresh(1);
    let mut store = Out::new();
    let mut out = store.outbox();
    let msg = RslMsg::TwoA { bal: Ballot::INITIAL, opn: 0, batch: Bytes(b"") };
    let mut buf = vec![0u8; 256];
    // The same addresses in another order: another cluster.
    let mut swapped = eps();
    swapped.swap(0, 1);
    let theirs = fleet_engine::rsl::RslConfig::<7>::new(&swapped).unwrap().identity();
    assert_ne!(theirs, r.cluster());
    let n = wire::encode_rsl(theirs, &msg, &mut buf).unwrap();
    let _ = r.handle(Instant::ZERO, eps()[0], &buf[..n], &mut out);
    assert_eq!(r.stats().foreign_cluster, 1);
    assert_eq!(r.acceptor().vote_count(), 0, "refused");
    assert_eq!(r.last_foreign(), Some((eps()[0], theirs)));
    // A peer message without an identity is refused too; a client request without one is
    // served (clients need not know it), one naming another cluster is not.
    let n = wire::encode(Protocol::Rsl, &msg, &mut buf).unwrap();
    let _ = r.handle(Instant::ZERO, eps()[0], &buf[..n], &mut out);
    assert_eq!((r.stats().foreign_cluster, r.acceptor().vote_count()), (2, 0));
    let client = Endpoint::v4([10, 0, 9, 9], 5000);
    let request = RslMsg::Request { seqno: 1, request: Bytes(b"x") };
    let n = wire::encode_rsl(theirs, &request, &mut buf).unwrap();
    let _ = r.handle(Instant::ZERO, client, &buf[..n], &mut out);
    assert_eq!(r.stats().foreign_cluster, 3);
    let n = wire::encode(Protocol::Rsl, &request, &mut buf).unwrap();
    let _ = r.handle(Instant::ZERO, client, &buf[..n], &mut out);
    assert_eq!(r.stats().foreign_cluster, 3, "served");
    // The right identity: accepted.
    let _ = r.handle(Instant::ZERO, eps()[0], &encode(&msg), &mut out);
    assert_eq!(r.acceptor().vote_count(), 1);
    for (_, bytes) in out.iter() {
        assert_eq!(wire::decode_rsl::<RslMsg<'_>>(bytes).unwrap().0, r.cluster(), "every datagram names the cluster");
    }
}

#[test]
fn two_a_from_a_replica_that_does_not_lead_the_ballot_is_refused() {
    let mut r = fresh(1);
    let mut store = Out::new();
    let mut out = store.outbox();
    let msg = encode(&RslMsg::TwoA { bal: Ballot::INITIAL, opn: 0, batch: Bytes(b"") });
    let before = r.acceptor().clone();
    let _ = r.handle(Instant::ZERO, eps()[2], &msg, &mut out);
    assert_eq!(r.stats().invalid_messages, 1);
    assert_eq!(r.acceptor(), &before);
    let _ = r.handle(Instant::ZERO, eps()[0], &msg, &mut out);
    assert_eq!(r.acceptor().vote_count(), 1, "the leader of (1, 0) is replica 0");
}

#[test]
fn a_vote_is_broadcast_as_2b_to_every_learner() {
    let mut r = fresh(1);
    let mut store = Out::new();
    let mut out = store.outbox();
    let msg = encode(&RslMsg::TwoA { bal: Ballot::INITIAL, opn: 0, batch: Bytes(b"") });
    let step = r.handle(Instant::ZERO, eps()[0], &msg, &mut out);
    assert!(step.durable_state_changed, "a vote must be persisted before the 2b leaves");
    let twob: Vec<_> = sent(&out).into_iter().filter(|(_, b)| matches!(decode(b), RslMsg::TwoB { .. })).collect();
    assert_eq!(twob.iter().map(|(d, _)| *d).collect::<Vec<_>>(), eps());
}

#[test]
fn one_b_is_sent_as_one_datagram_per_vote() {
    let mut r = fresh(1);
    let mut store = Out::new();
    let mut out = store.outbox();
    for opn in 0..3 {
        let msg = encode(&RslMsg::TwoA { bal: Ballot::INITIAL, opn, batch: Bytes(b"") });
        let _ = r.handle(Instant::ZERO, eps()[0], &msg, &mut out);
    }
    out.clear();
    let bal = Ballot { seqno: 1, proposer: 2 };
    let _ = r.handle(Instant::ZERO, eps()[2], &encode(&RslMsg::OneA { bal }), &mut out);
    let chunks: Vec<(u8, u8, u64)> = sent(&out)
        .iter()
        .filter_map(|(d, b)| match decode(b) {
            RslMsg::OneB { chunk, chunks, vote: Some(v), .. } if *d == eps()[2] => Some((chunk, chunks, v.opn)),
            _ => None,
        })
        .collect();
    assert_eq!(chunks, vec![(0, 3, 0), (1, 3, 1), (2, 3, 2)]);
    assert_eq!(r.acceptor().max_bal, bal);
}

#[test]
fn a_lower_ballot_1a_gets_no_promise() {
    let mut r = fresh(1);
    let mut store = Out::new();
    let mut out = store.outbox();
    let high = Ballot { seqno: 3, proposer: 0 };
    let _ = r.handle(Instant::ZERO, eps()[0], &encode(&RslMsg::OneA { bal: high }), &mut out);
    out.clear();
    let _ =
        r.handle(Instant::ZERO, eps()[2], &encode(&RslMsg::OneA { bal: Ballot { seqno: 2, proposer: 2 } }), &mut out);
    assert!(out.is_empty());
    assert_eq!(r.acceptor().max_bal, high);
}

#[test]
fn a_repeated_1a_for_the_promised_ballot_is_answered_again() {
    // A proposer whose 1b chunks were lost asks again with the same ballot.
    let mut r = fresh(1);
    let mut store = Out::new();
    let mut out = store.outbox();
    let one_a = encode(&RslMsg::OneA { bal: Ballot::INITIAL });
    for attempt in 1..=2u64 {
        out.clear();
        let _ = r.handle(Instant::ZERO, eps()[0], &one_a, &mut out);
        let ids: Vec<u64> = sent(&out)
            .into_iter()
            .filter_map(|(_, b)| match decode(&b) {
                RslMsg::OneB { reply_id, .. } => Some(reply_id),
                _ => None,
            })
            .collect();
        assert_eq!(ids, vec![attempt], "attempt {attempt}: one 1b, with a fresh reply id");
    }
}

#[test]
fn a_2a_for_the_last_operation_number_is_refused_and_changes_nothing() {
    // u64::MAX is never a real operation number: accepting it would overflow `opn + 1`.
    let mut r = fresh(1);
    let mut store = Out::new();
    let mut out = store.outbox();
    let before = r.acceptor().clone();
    let msg = encode(&RslMsg::TwoA { bal: Ballot::INITIAL, opn: u64::MAX, batch: Bytes(b"") });
    let _ = r.handle(Instant::ZERO, eps()[0], &msg, &mut out);
    assert_eq!(r.acceptor(), &before);
    assert_eq!(r.stats().ignored_messages, 1);
    assert!(sent(&out).iter().all(|(_, b)| !matches!(decode(b), RslMsg::TwoB { .. })));
}

#[test]
fn peer_messages_from_unknown_endpoints_are_counted_and_dropped() {
    let mut r = fresh(0);
    let mut store = Out::new();
    let mut out = store.outbox();
    let stranger = Endpoint::v4([192, 0, 2, 1], 7000);
    let before = r.acceptor().clone();
    let msg = encode(&RslMsg::OneA { bal: Ballot { seqno: 9, proposer: 1 } });
    let _ = r.handle(Instant::ZERO, stranger, &msg, &mut out);
    assert_eq!(r.stats().unknown_sender, 1);
    assert_eq!(r.acceptor(), &before);
}

/// Replica 1 votes for and executes operations 0..5 (2b from replica 0 and from itself).
fn executed_five() -> SimReplica {
    let mut r = fresh(1);
    let mut store = Out::new();
    let mut out = store.outbox();
    for opn in 0..5 {
        let batch = Bytes(b"");
        let _ =
            r.handle(Instant::ZERO, eps()[0], &encode(&RslMsg::TwoA { bal: Ballot::INITIAL, opn, batch }), &mut out);
        let two_b = encode(&RslMsg::TwoB { bal: Ballot::INITIAL, opn, batch, opn_ckpt: 0 });
        let _ = r.handle(Instant::ZERO, eps()[0], &two_b, &mut out);
        let _ = r.handle(Instant::ZERO, eps()[1], &two_b, &mut out);
        out.clear();
    }
    assert_eq!(r.status().ops_complete, 5);
    r
}

fn heartbeat(ckpt: u64) -> Vec<u8> {
    encode(&RslMsg::Heartbeat { bal: Ballot::INITIAL, suspicious: false, opn_ckpt: ckpt })
}

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

/// Replica 0 leads view (1, 0) (promises from itself and replica 1) and executes five
/// one-request batches (2b from itself and replica 1, each reporting checkpoint 0).
fn leader_executed_five() -> SimReplica {
    let mut r = leader();
    let client = Endpoint::v4([10, 0, 1, 1], 9000);
    for seqno in 1..=5 {
        propose_and_decide(&mut r, client, &encode(&RslMsg::Request { seqno, request: Bytes(b"put") }));
    }
    assert_eq!(r.status().ops_complete, 5);
    r
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
fn a_request_seen_executed_is_no_longer_a_reason_to_suspect_the_view() {
    let client = Endpoint::v4([10, 0, 1, 1], 9000);
    let epoch_ms = fleet_engine::rsl::Params::default().baseline_view_timeout_ms;
    let run = |execute: bool| {
        let mut r = fresh(1);
        let mut store = Out::new();
        let mut out = store.outbox();
        let request = encode(&RslMsg::Request { seqno: 1, request: Bytes(b"put") });
        let _ = r.handle(Instant::ZERO, client, &request, &mut out);
        assert_eq!(r.election().tracked().count(), 1, "a follower tracks the request");
        if execute {
            let entry = fleet_engine::rsl::batch::BatchEntry {
                client,
                seqno: 1,
                request: Bytes(b"put"),
                kind: fleet_engine::rsl::batch::EntryKind::Single,
            };
            let batch = postcard::to_allocvec(&entry).unwrap();
            let two_a = encode(&RslMsg::TwoA { bal: Ballot::INITIAL, opn: 0, batch: Bytes(&batch) });
            let _ = r.handle(Instant::ZERO, eps()[0], &two_a, &mut out);
            let two_b = encode(&RslMsg::TwoB { bal: Ballot::INITIAL, opn: 0, batch: Bytes(&batch), opn_ckpt: 0 });
            let _ = r.handle(Instant::ZERO, eps()[0], &two_b, &mut out);
            let _ = r.handle(Instant::ZERO, eps()[1], &two_b, &mut out);
            assert_eq!(r.status().ops_complete, 1);
        }
        let _ = r.tick(Instant::from_micros((epoch_ms + 1) * 1000), &mut out);
        r.election().suspects(1)
    };
    assert!(run(false), "control: an unexecuted request makes the replica suspect after an epoch");
    assert!(!run(true), "an executed request does not");
}

#[test]
fn a_retried_request_is_answered_from_the_reply_cache_by_any_replica() {
    let mut sim = RslSim::new(11, SimOptions { clients: 1, ops_per_client: 5, ..SimOptions::default() });
    assert!(sim.run_until(10_000_000, RslSim::all_done));
    sim.run_for(1_000_000);
    let client = sim.clients[0].ep;
    let follower = (sim.leader().unwrap() + 1) % 3;
    let r = sim.replicas[follower].as_mut().unwrap();
    let cached = r.executor().reply_cache.get(client).unwrap().clone();
    let mut store = Out::new();
    let mut out = store.outbox();
    let retry = encode(&RslMsg::Request { seqno: cached.seqno, request: Bytes(b"ignored: cached") });
    let ops = r.executor().ops_complete;
    let _ = r.handle(Instant::from_micros(sim.now), client, &retry, &mut out);
    let replies = sent(&out);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].0, client);
    match decode(&replies[0].1) {
        RslMsg::Reply { seqno, reply } => {
            assert_eq!(seqno, cached.seqno);
            assert_eq!(reply.0, &cached.reply[..]);
        }
        other => panic!("expected a reply, got {other:?}"),
    }
    assert_eq!(r.executor().ops_complete, ops, "nothing re-executed");
    out.clear();
    let old = encode(&RslMsg::Request { seqno: cached.seqno - 1, request: Bytes(b"x") });
    let _ = r.handle(Instant::from_micros(sim.now), client, &old, &mut out);
    assert!(out.is_empty(), "an older seqno is never answered with another request's reply");
}

/// Malformed, truncated, mutated and misaddressed datagrams: whatever is refused (counted as
/// a decode error, invalid, or from an unknown sender) leaves every role's state unchanged.
#[test]
fn refused_datagrams_change_nothing() {
    let mut sim = RslSim::new(5, SimOptions { ops_per_client: 20, ..SimOptions::default() });
    assert!(sim.run_until(20_000_000, RslSim::all_done));
    // Collect real datagrams in flight to mutate.
    sim.clients.iter_mut().for_each(|c| c.remaining = 3);
    let mut samples: Vec<(Endpoint, Vec<u8>)> = Vec::new();
    for _ in 0..2000 {
        if !sim.step() {
            break;
        }
        samples.extend(sim.net.iter().map(|d| (d.from, d.bytes.clone())));
        samples.truncate(500);
    }
    assert!(!samples.is_empty());
    let mut rng = Rng::new(99);
    let mut store = Out::new();
    let now = Instant::from_micros(sim.now);
    let stranger = Endpoint::v4([192, 0, 2, 1], 1);
    let r = sim.replicas[1].as_mut().unwrap();
    let mut refused = 0;
    for i in 0..20_000u32 {
        let (mut from, mut bytes) = samples[rng.below(samples.len() as u64) as usize].clone();
        match i % 4 {
            0 => bytes = (0..rng.below(64)).map(|_| rng.next_u64() as u8).collect(),
            1 => bytes.truncate(rng.below(bytes.len() as u64) as usize),
            2 => {
                for _ in 0..=rng.below(3) {
                    let at = rng.below(bytes.len() as u64) as usize;
                    bytes[at] ^= 1 << rng.below(8);
                }
            }
            _ => from = stranger,
        }
        let before = (r.acceptor().clone(), r.learner().clone(), r.executor().clone(), r.proposer().clone());
        let s0 = *r.stats();
        let mut out = store.outbox();
        let _ = r.handle(now, from, &bytes, &mut out);
        let s1 = *r.stats();
        if s1.decode_errors + s1.invalid_messages + s1.unknown_sender
            > s0.decode_errors + s0.invalid_messages + s0.unknown_sender
        {
            refused += 1;
            let after = (r.acceptor().clone(), r.learner().clone(), r.executor().clone(), r.proposer().clone());
            assert!(before == after, "refused datagram {i} changed state: {bytes:?}");
            assert!(out.is_empty(), "refused datagram {i} produced output");
        }
        assert_eq!(r.check_invariants(), Ok(()));
    }
    assert!(refused > 10_000, "most hostile datagrams are refused ({refused})");
}

#[test]
fn messages_outside_the_protocol_bounds_are_refused() {
    let mut r = fresh(1);
    let mut store = Out::new();
    let mut out = store.outbox();
    let before = r.acceptor().clone();
    // Proposer index 3 is the first outside a 3-replica cluster.
    let stranger_ballot = Ballot { seqno: 5, proposer: 3 };
    let too_many: Vec<u8> = {
        let mut v = Vec::new();
        for s in 0..33u64 {
            let e = fleet_engine::rsl::batch::BatchEntry {
                client: eps()[0],
                seqno: s,
                request: Bytes(b""),
                kind: fleet_engine::rsl::batch::EntryKind::Single,
            };
            v.extend_from_slice(&postcard::to_allocvec(&e).unwrap());
        }
        v
    };
    let cases = [
        encode(&RslMsg::OneA { bal: stranger_ballot }),
        encode(&RslMsg::TwoA { bal: Ballot::INITIAL, opn: 0, batch: Bytes(&[0xff, 0xff, 0xff]) }),
        encode(&RslMsg::TwoA { bal: Ballot::INITIAL, opn: 0, batch: Bytes(&too_many) }),
        encode(&RslMsg::OneB {
            bal: Ballot::INITIAL,
            log_truncation_point: 0,
            reply_id: 1,
            chunk: 2,
            chunks: 2,
            vote: None,
        }),
        encode(&RslMsg::Heartbeat { bal: stranger_ballot, suspicious: true, opn_ckpt: 0 }),
    ];
    for (i, c) in cases.iter().enumerate() {
        let _ = r.handle(Instant::ZERO, eps()[0], c, &mut out);
        assert_eq!(r.stats().invalid_messages, i as u64 + 1, "case {i} refused");
    }
    assert_eq!(r.acceptor(), &before);
    assert_eq!(r.election().current_view, Ballot::INITIAL);
}

#[test]
fn a_2b_unlike_the_vote_for_its_operation_is_checked_in_full() {
    let mut r = fresh(1);
    let mut store = Out::new();
    let mut out = store.outbox();
    let voted = Bytes(b"");
    let two_a = encode(&RslMsg::TwoA { bal: Ballot::INITIAL, opn: 0, batch: voted });
    let _ = r.handle(Instant::ZERO, eps()[0], &two_a, &mut out);
    assert_eq!(r.acceptor().vote_count(), 1);
    // Malformed bytes for the operation voted for, and for one not voted for: refused.
    for opn in [0, 1] {
        let bad = encode(&RslMsg::TwoB { bal: Ballot::INITIAL, opn, batch: Bytes(&[0xff, 0xff]), opn_ckpt: 0 });
        let before = r.stats().invalid_messages;
        let _ = r.handle(Instant::ZERO, eps()[2], &bad, &mut out);
        assert_eq!(r.stats().invalid_messages, before + 1, "opn {opn}: malformed 2b refused");
    }
    // The batch voted for (taken without parsing) counts towards the decision.
    let same = encode(&RslMsg::TwoB { bal: Ballot::INITIAL, opn: 0, batch: voted, opn_ckpt: 0 });
    let _ = r.handle(Instant::ZERO, eps()[0], &same, &mut out);
    let _ = r.handle(Instant::ZERO, eps()[2], &same, &mut out);
    assert_eq!(r.stats().invalid_messages, 2);
    assert_eq!(r.status().ops_complete, 1, "two 2b's of the vote's batch decide it");
}

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
        let two_b = encode(&RslMsg::TwoB { bal: Ballot::INITIAL, opn, batch, opn_ckpt: 0 });
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
    check("learner", after(0, 0, RslMsg::TwoB { bal: Ballot::INITIAL, opn: 0, batch: Bytes(b""), opn_ckpt: 0 }));
    check("executor", executed_five());
    check("election", after(0, 0, RslMsg::Heartbeat { bal: Ballot::INITIAL, suspicious: true, opn_ckpt: 0 }));
    check("transfer", after(0, 0, RslMsg::StartingPhase2 { bal: Ballot::INITIAL, log_truncation_point: 100 }));
    check("timers", ticked);
    check("leader", leader_executed_five());
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
fn a_request_at_the_size_bound_is_proposed_and_one_byte_more_is_refused() {
    let mut r = leader_executed_five();
    let mut store = Out::new();
    let mut out = store.outbox();
    let client = Endpoint::v4([10, 0, 1, 2], 9000);
    let max = r.max_request_bytes();
    let big = vec![7u8; max + 1];
    let before = r.stats().invalid_messages;
    let _ = r.handle(Instant::ZERO, client, &encode(&RslMsg::Request { seqno: 1, request: Bytes(&big) }), &mut out);
    assert_eq!(r.stats().invalid_messages, before + 1, "one byte over the bound");
    assert!(out.is_empty());
    let _ =
        r.handle(Instant::ZERO, client, &encode(&RslMsg::Request { seqno: 1, request: Bytes(&big[..max]) }), &mut out);
    assert_eq!(r.stats().invalid_messages, before + 1);
    assert!(sent(&out).iter().any(|(_, b)| matches!(decode(b), RslMsg::TwoA { .. })), "proposed at once");
}

#[test]
fn an_older_request_than_the_cached_one_is_ignored_and_not_tracked() {
    let client = Endpoint::v4([10, 0, 1, 1], 9000);
    let mut r = executed_five();
    let mut store = Out::new();
    let mut out = store.outbox();
    let entry = fleet_engine::rsl::batch::BatchEntry {
        client,
        seqno: 5,
        request: Bytes(b"put"),
        kind: fleet_engine::rsl::batch::EntryKind::Single,
    };
    let batch = postcard::to_allocvec(&entry).unwrap();
    let _ = r.handle(
        Instant::ZERO,
        eps()[0],
        &encode(&RslMsg::TwoA { bal: Ballot::INITIAL, opn: 5, batch: Bytes(&batch) }),
        &mut out,
    );
    let two_b = encode(&RslMsg::TwoB { bal: Ballot::INITIAL, opn: 5, batch: Bytes(&batch), opn_ckpt: 0 });
    let _ = r.handle(Instant::ZERO, eps()[0], &two_b, &mut out);
    let _ = r.handle(Instant::ZERO, eps()[1], &two_b, &mut out);
    assert_eq!(r.status().ops_complete, 6);
    out.clear();
    let ignored = r.stats().ignored_messages;
    let _ = r.handle(Instant::ZERO, client, &encode(&RslMsg::Request { seqno: 4, request: Bytes(b"put") }), &mut out);
    assert!(out.is_empty());
    assert_eq!(r.stats().ignored_messages, ignored + 1);
    assert!(r.election().tracked().next().is_none(), "an old request is no reason to suspect the view");
}

#[test]
fn stale_1b_and_2b_are_counted_as_ignored() {
    let mut r = leader_executed_five();
    let mut store = Out::new();
    let mut out = store.outbox();
    let ignored = r.stats().ignored_messages;
    let old = Ballot { seqno: 0, proposer: 2 };
    let one_b = RslMsg::OneB { bal: old, log_truncation_point: 0, reply_id: 1, chunk: 0, chunks: 1, vote: None };
    let _ = r.handle(Instant::ZERO, eps()[2], &encode(&one_b), &mut out);
    assert_eq!(r.stats().ignored_messages, ignored + 1, "a 1b for a ballot this proposer did not send");
    let two_b = RslMsg::TwoB { bal: old, opn: 9, batch: Bytes(b""), opn_ckpt: 0 };
    let _ = r.handle(Instant::ZERO, eps()[2], &encode(&two_b), &mut out);
    assert_eq!(r.stats().ignored_messages, ignored + 2, "a 2b below the learner's ballot");
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

/// Adaptive batching: with nothing in flight a request is proposed at once; with a batch in
/// flight a partial batch waits for the batch timer, and a full one goes at once.
#[test]
fn a_partial_batch_waits_for_the_timer_while_a_batch_is_in_flight_and_a_full_one_goes_at_once() {
    let mut r = leader();
    let p = fleet_engine::rsl::Params::default();
    let mut store = Out::new();
    let mut out = store.outbox();
    let request =
        |port: u16| (Endpoint::v4([10, 0, 2, 1], port), encode(&RslMsg::Request { seqno: 1, request: Bytes(b"x") }));
    let proposed = |out: &fleet_engine::Outbox<'_>| -> Vec<(u64, usize)> {
        let mut v: Vec<(u64, usize)> = sent(out)
            .into_iter()
            .filter_map(|(_, b)| match decode(&b) {
                RslMsg::TwoA { opn, batch, .. } => Some((opn, fleet_engine::rsl::batch::entries(batch.0).count())),
                _ => None,
            })
            .collect();
        v.dedup();
        v
    };
    let (from, bytes) = request(1);
    let _ = r.handle(Instant::ZERO, from, &bytes, &mut out);
    assert_eq!(proposed(&out), vec![(0, 1)], "nothing in flight: proposed at once");
    out.clear();
    let (from, bytes) = request(2);
    let _ = r.handle(Instant::ZERO, from, &bytes, &mut out);
    assert_eq!(proposed(&out), vec![], "opn 0 in flight: a partial batch waits");
    let _ = r.tick(Instant::from_millis(p.max_batch_delay_ms - 1), &mut out);
    assert_eq!(proposed(&out), vec![]);
    let _ = r.tick(Instant::from_millis(p.max_batch_delay_ms), &mut out);
    assert_eq!(proposed(&out), vec![(1, 1)], "the batch timer expired");
    out.clear();
    let now = Instant::from_millis(p.max_batch_delay_ms);
    for port in 100..100 + p.max_batch_size as u16 {
        let (from, bytes) = request(port);
        let _ = r.handle(now, from, &bytes, &mut out);
        let full = port + 1 == 100 + p.max_batch_size as u16;
        assert_eq!(proposed(&out), if full { vec![(2, p.max_batch_size)] } else { vec![] }, "after port {port}");
    }
    assert_eq!(r.proposer().batch_deadline, None, "nothing left queued, no timer");
}

#[test]
fn a_leader_that_sees_a_higher_view_steps_down_and_stops_queueing() {
    let mut r = leader();
    assert_eq!((r.id(), fresh(2).id()), (0, 2));
    let mut store = Out::new();
    let mut out = store.outbox();
    let request = encode(&RslMsg::Request { seqno: 1, request: Bytes(b"x") });
    let client = |port: u16| Endpoint::v4([10, 0, 3, 1], port);
    let _ = r.handle(Instant::ZERO, client(1), &request, &mut out);
    let _ = r.handle(Instant::ZERO, client(2), &request, &mut out);
    assert_eq!(r.proposer().queued(), 1, "opn 0 in flight, the second request waits");
    let higher = encode(&RslMsg::Heartbeat { bal: Ballot { seqno: 1, proposer: 1 }, suspicious: false, opn_ckpt: 0 });
    let _ = r.handle(Instant::ZERO, eps()[1], &higher, &mut out);
    assert!(!r.status().is_leader);
    assert_eq!(r.proposer().queued(), 0, "a replica that no longer leads drops its queue");
    let _ = r.handle(Instant::ZERO, client(3), &request, &mut out);
    assert_eq!(r.proposer().queued(), 0, "and queues nothing more");
}

#[test]
fn a_full_request_queue_is_counted_and_refuses_the_request() {
    let mut r = leader();
    let mut store = Out::new();
    let mut out = store.outbox();
    let payload = vec![7u8; r.max_request_bytes()];
    let mut queued = 0;
    for port in 1..=64u16 {
        let msg = encode(&RslMsg::Request { seqno: 1, request: Bytes(&payload) });
        let _ = r.handle(Instant::ZERO, Endpoint::v4([10, 0, 4, 1], port), &msg, &mut out);
        out.clear();
        if r.stats().queue_full > 0 {
            assert!(queued > 1, "only a queue holding requests can be full ({queued})");
            assert_eq!(r.stats().queue_full, 1);
            assert_eq!(r.proposer().queued(), queued, "the refused request was not queued");
            return;
        }
        queued = r.proposer().queued();
    }
    panic!("64 requests of {} bytes never filled the queue", payload.len());
}

#[test]
fn one_b_votes_must_be_below_the_reply_ballot_and_chunks_within_the_log() {
    let mut r = leader();
    let mut store = Out::new();
    let mut out = store.outbox();
    let max_chunks = fleet_engine::rsl::Params::default().max_log_length as u8 + 1;
    let one_b = |chunks: u8, vote_bal: Option<Ballot>| {
        let vote = vote_bal.map(|bal| fleet_engine::rsl::msg::Vote { opn: 0, bal, batch: Bytes(b"") });
        encode(&RslMsg::OneB { bal: Ballot::INITIAL, log_truncation_point: 0, reply_id: 7, chunk: 0, chunks, vote })
    };
    let invalid = r.stats().invalid_messages;
    let _ = r.handle(Instant::ZERO, eps()[2], &one_b(max_chunks + 1, None), &mut out);
    let _ = r.handle(Instant::ZERO, eps()[2], &one_b(1, Some(Ballot::INITIAL)), &mut out);
    let _ = r.handle(Instant::ZERO, eps()[2], &one_b(1, Some(Ballot { seqno: 0, proposer: 3 })), &mut out);
    assert_eq!(
        r.stats().invalid_messages,
        invalid + 3,
        "too many chunks, a vote at the reply's ballot, a stranger's vote"
    );
    let _ = r.handle(Instant::ZERO, eps()[2], &one_b(max_chunks, Some(Ballot { seqno: 0, proposer: 2 })), &mut out);
    assert_eq!(r.stats().invalid_messages, invalid + 3, "control: within bounds");
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

#[test]
fn only_the_leader_of_the_executed_ballot_answers_the_client() {
    let client = Endpoint::v4([10, 0, 1, 1], 9000);
    let entry = fleet_engine::rsl::batch::BatchEntry {
        client,
        seqno: 1,
        request: Bytes(b"put"),
        kind: fleet_engine::rsl::batch::EntryKind::Single,
    };
    let batch = postcard::to_allocvec(&entry).unwrap();
    let replies = |me: usize| {
        let mut r = fresh(me);
        let mut store = Out::new();
        let mut out = store.outbox();
        let two_b = encode(&RslMsg::TwoB { bal: Ballot::INITIAL, opn: 0, batch: Bytes(&batch), opn_ckpt: 0 });
        let _ = r.handle(Instant::ZERO, eps()[1], &two_b, &mut out);
        let _ = r.handle(Instant::ZERO, eps()[2], &two_b, &mut out);
        assert_eq!(r.status().ops_complete, 1);
        sent(&out).into_iter().filter(|(d, b)| *d == client && matches!(decode(b), RslMsg::Reply { .. })).count()
    };
    assert_eq!(replies(0), 1, "replica 0 proposed in (1, 0)");
    assert_eq!(replies(1), 0, "followers only update their reply caches");
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
            let two_b = RslMsg::TwoB { bal: Ballot::INITIAL, opn, batch: Bytes(batch), opn_ckpt: 0 };
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
            let two_b = RslMsg::TwoB { bal: Ballot::INITIAL, opn, batch: Bytes(batch), opn_ckpt: 0 };
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
