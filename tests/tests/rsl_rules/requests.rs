//! Client requests and replies: the reply cache, the request size bound and queue, who
//! answers a client, and which requests are a reason to suspect the view.

use fleet_engine::rsl::{Ballot, RslMsg};
use fleet_engine::wire::Bytes;
use fleet_engine::{Endpoint, Instant};
use fleet_tests::rsl_sim::{RslSim, SimOptions};

use super::{executed_five, leader_executed_five};
use crate::rules_common::*;

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
            let two_b = encode(&RslMsg::TwoB { bal: Ballot::INITIAL, opn: 0, opn_ckpt: 0 });
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
    let at_bound = encode(&RslMsg::Request { seqno: 1, request: Bytes(&big[..max]) });
    handle_then_due(&mut r, Instant::ZERO, client, &at_bound, &mut out);
    assert_eq!(r.stats().invalid_messages, before + 1);
    assert!(sent(&out).iter().any(|(_, b)| matches!(decode(b), RslMsg::TwoA { .. })), "proposed");
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
    let two_b = encode(&RslMsg::TwoB { bal: Ballot::INITIAL, opn: 5, opn_ckpt: 0 });
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
        let two_a = encode(&RslMsg::TwoA { bal: Ballot::INITIAL, opn: 0, batch: Bytes(&batch) });
        let _ = r.handle(Instant::ZERO, eps()[0], &two_a, &mut out);
        let two_b = encode(&RslMsg::TwoB { bal: Ballot::INITIAL, opn: 0, opn_ckpt: 0 });
        let _ = r.handle(Instant::ZERO, eps()[1], &two_b, &mut out);
        let _ = r.handle(Instant::ZERO, eps()[2], &two_b, &mut out);
        assert_eq!(r.status().ops_complete, 1);
        sent(&out).into_iter().filter(|(d, b)| *d == client && matches!(decode(b), RslMsg::Reply { .. })).count()
    };
    assert_eq!(replies(0), 1, "replica 0 proposed in (1, 0)");
    assert_eq!(replies(1), 0, "followers only update their reply caches");
}
