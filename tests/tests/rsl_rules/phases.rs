//! Phase 1 and phase 2: promises and votes, the 1b and 2b that carry them, and the leader's
//! proposals (adaptive batching, stepping down on a higher view).

use fleet_engine::rsl::{Ballot, RslMsg, Timer};
use fleet_engine::wire::Bytes;
use fleet_engine::{Endpoint, Instant};

use crate::rules_common::*;

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

/// Adaptive batching: with nothing in flight the requests of one receive burst go in one
/// batch, from the tick that ends it (the handling of a datagram arms the batch timer at
/// once); with a batch in flight a partial batch waits for the batch timer, and a full one
/// goes at once.
#[test]
fn a_burst_at_an_idle_leader_is_one_batch_and_a_partial_batch_in_flight_waits_for_the_timer() {
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
    for port in [1, 2, 3] {
        let (from, bytes) = request(port);
        let _ = r.handle(Instant::ZERO, from, &bytes, &mut out);
        assert_eq!(proposed(&out), vec![], "request {port} of the burst: nothing proposed yet");
        assert_eq!(r.timer(Timer::Batch), Some(Instant::ZERO), "nothing in flight: the batch is due at once");
    }
    let _ = r.tick(Instant::ZERO, &mut out);
    assert_eq!(proposed(&out), vec![(0, 3)], "the burst's three requests in one batch");
    out.clear();
    let (from, bytes) = request(4);
    let _ = r.handle(Instant::ZERO, from, &bytes, &mut out);
    let _ = r.tick(Instant::ZERO, &mut out);
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
    handle_then_due(&mut r, Instant::ZERO, client(1), &request, &mut out);
    let _ = r.handle(Instant::ZERO, client(2), &request, &mut out);
    assert_eq!(r.proposer().queued(), 1, "opn 0 in flight, the second request waits");
    let higher = encode(&RslMsg::Heartbeat { bal: Ballot { seqno: 1, proposer: 1 }, suspicious: false, opn_ckpt: 0 });
    let _ = r.handle(Instant::ZERO, eps()[1], &higher, &mut out);
    assert!(!r.status().is_leader);
    assert_eq!(r.proposer().queued(), 0, "a replica that no longer leads drops its queue");
    let _ = r.handle(Instant::ZERO, client(3), &request, &mut out);
    assert_eq!(r.proposer().queued(), 0, "and queues nothing more");
}

/// A batch of one request from `client`.
fn one_request(client: Endpoint, seqno: u64) -> Vec<u8> {
    let entry = fleet_engine::rsl::batch::BatchEntry {
        client,
        seqno,
        request: Bytes(b"put"),
        kind: fleet_engine::rsl::batch::EntryKind::Single,
    };
    postcard::to_allocvec(&entry).unwrap()
}

#[test]
fn a_2b_matching_the_own_vote_refers_to_it_and_execution_reads_the_vote() {
    let client = Endpoint::v4([10, 0, 1, 1], 9000);
    let batch = one_request(client, 7);
    let mut r = fresh(1);
    let mut store = Out::new();
    let mut out = store.outbox();
    let two_a = encode(&RslMsg::TwoA { bal: Ballot::INITIAL, opn: 0, batch: Bytes(&batch) });
    let _ = r.handle(Instant::ZERO, eps()[0], &two_a, &mut out);
    let two_b = encode(&RslMsg::TwoB { bal: Ballot::INITIAL, opn: 0, opn_ckpt: 0 });
    let _ = r.handle(Instant::ZERO, eps()[1], &two_b, &mut out);
    let slot = r.learner().slots().next().expect("the own 2b opened a slot");
    assert!(slot.from_vote && slot.batch.is_empty(), "it refers to the vote and copies nothing");
    assert_eq!(r.executor().ops_complete, 0, "one 2b of three is no quorum");
    let _ = r.handle(Instant::ZERO, eps()[2], &two_b, &mut out);
    assert_eq!(r.executor().ops_complete, 1, "decided");
    assert_eq!(r.executor().reply_cache.get(client).map(|e| e.seqno), Some(7), "the vote's request was executed");
}

/// The model checker's states compare the learner by what it decides from: the slots an
/// executed operation left behind (which 2b were counted before it ran) do not make two
/// replicas differ; the batch a slot in use decides does.
#[test]
fn executed_slots_left_behind_do_not_make_states_differ_and_another_batch_does() {
    let batch = one_request(Endpoint::v4([10, 0, 1, 1], 9000), 7);
    let two_a = encode(&RslMsg::TwoA { bal: Ballot::INITIAL, opn: 0, batch: Bytes(&batch) });
    let two_b = encode(&RslMsg::TwoB { bal: Ballot::INITIAL, opn: 0, opn_ckpt: 0 });
    let mut store = Out::new();
    let mut out = store.outbox();
    // Both execute operation 0; the third 2b comes after, and is ignored. Which replicas'
    // 2b decided it differs, and stays behind in the freed slot.
    let mut decided_by = |first: usize, then: usize| {
        let mut r = fresh(1);
        let _ = r.handle(Instant::ZERO, eps()[0], &two_a, &mut out);
        for from in [first, then, 3 - first - then] {
            let _ = r.handle(Instant::ZERO, eps()[from], &two_b, &mut out);
        }
        assert_eq!(r.executor().ops_complete, 1);
        r
    };
    let (a, b) = (decided_by(0, 2), decided_by(0, 1));
    assert!(a == b, "the model checker's states are equal");
    let hash = |r: &fleet_tests::rsl_sim::SimReplica| {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        r.hash(&mut h);
        h.finish()
    };
    assert_eq!(hash(&a), hash(&b));
    // A slot in use deciding another batch: another state.
    let other = one_request(Endpoint::v4([10, 0, 1, 1], 9000), 8);
    let mut undecided = |batch: &[u8]| {
        let mut r = fresh(1);
        let _ = r.handle(
            Instant::ZERO,
            eps()[0],
            &encode(&RslMsg::TwoA { bal: Ballot::INITIAL, opn: 0, batch: Bytes(batch) }),
            &mut out,
        );
        let _ = r.handle(Instant::ZERO, eps()[0], &two_b, &mut out);
        r
    };
    assert!(undecided(&batch) == undecided(&batch));
    assert!(undecided(&other) != undecided(&batch), "a learner deciding another batch is another state");
}

#[test]
fn a_quorum_of_2b_waits_for_the_batch_and_a_2a_below_the_promise_still_supplies_it() {
    let client = Endpoint::v4([10, 0, 1, 1], 9000);
    let batch = one_request(client, 7);
    let two_a = encode(&RslMsg::TwoA { bal: Ballot::INITIAL, opn: 0, batch: Bytes(&batch) });
    let two_b = encode(&RslMsg::TwoB { bal: Ballot::INITIAL, opn: 0, opn_ckpt: 0 });
    let mut store = Out::new();
    let mut out = store.outbox();
    // The 2a lost: a quorum of 2b decides, but there is nothing to execute yet.
    let mut r = fresh(1);
    let _ = r.handle(Instant::ZERO, eps()[0], &two_b, &mut out);
    let _ = r.handle(Instant::ZERO, eps()[2], &two_b, &mut out);
    assert!(r.learner().decided(0, 2).is_some());
    assert_eq!(r.executor().ops_complete, 0, "decided, but the batch is not here");
    // The leader's retransmission: voted for, executed.
    let _ = r.handle(Instant::ZERO, eps()[0], &two_a, &mut out);
    assert_eq!(r.executor().ops_complete, 1);
    assert_eq!(r.executor().reply_cache.get(client).map(|e| e.seqno), Some(7));
    // A replica that promised a higher ballot does not vote for the 2a, but keeps its batch.
    let mut promised = fresh(1);
    let higher = Ballot { seqno: 2, proposer: 2 };
    let _ = promised.handle(Instant::ZERO, eps()[2], &encode(&RslMsg::OneA { bal: higher }), &mut out);
    let _ = promised.handle(Instant::ZERO, eps()[0], &two_a, &mut out);
    assert_eq!(promised.acceptor().vote_count(), 0, "no vote below the promise");
    let _ = promised.handle(Instant::ZERO, eps()[0], &two_b, &mut out);
    let _ = promised.handle(Instant::ZERO, eps()[2], &two_b, &mut out);
    assert_eq!(promised.executor().ops_complete, 1, "decided by the others, executed from the kept batch");
}

#[test]
fn a_2a_that_slides_the_window_past_a_referred_vote_copies_it_first_and_a_stale_one_does_not() {
    let mut r = fresh(1);
    let mut store = Out::new();
    let mut out = store.outbox();
    let bal = Ballot { seqno: 2, proposer: 2 };
    let _ = r.handle(Instant::ZERO, eps()[2], &encode(&RslMsg::OneA { bal }), &mut out);
    let _ = r.handle(Instant::ZERO, eps()[2], &encode(&RslMsg::TwoA { bal, opn: 0, batch: Bytes(b"") }), &mut out);
    let own = encode(&RslMsg::TwoB { bal, opn: 0, opn_ckpt: 0 });
    let _ = r.handle(Instant::ZERO, eps()[1], &own, &mut out);
    assert!(r.learner().slots().next().unwrap().from_vote);
    let far = fleet_engine::rsl::Params::default().max_log_length + 5;
    // Below the promise: refused, and nothing copied.
    let stale = encode(&RslMsg::TwoA { bal: Ballot::INITIAL, opn: far, batch: Bytes(b"") });
    let _ = r.handle(Instant::ZERO, eps()[0], &stale, &mut out);
    assert!(r.learner().slots().next().unwrap().from_vote, "a stale 2a drops no vote");
    // In the promised ballot, far ahead: the vote for operation 0 leaves the window.
    let _ = r.handle(Instant::ZERO, eps()[2], &encode(&RslMsg::TwoA { bal, opn: far, batch: Bytes(b"") }), &mut out);
    assert!(r.acceptor().vote_at(0).is_none(), "the window slid past operation 0");
    let slot = r.learner().slots().find(|s| s.opn == 0).expect("the slot for operation 0 stays");
    assert!(!slot.from_vote, "it took a copy before the vote went");
    let _ = r.handle(Instant::ZERO, eps()[0], &own, &mut out);
    let other = encode(&RslMsg::TwoB { bal, opn: 0, opn_ckpt: 0 });
    let _ = r.handle(Instant::ZERO, eps()[2], &other, &mut out);
    assert_eq!(r.executor().ops_complete, 1, "the copy still decides and executes");
}
