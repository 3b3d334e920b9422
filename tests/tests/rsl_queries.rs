//! Queries answered without a log write (`fleet_engine::rsl::reads`), one rule per test,
//! through a replica's sans-IO entry points.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod rules_common;

use fleet_engine::rsl::apps::kv::{KvOp, KvReply};
use fleet_engine::rsl::{Ballot, RslMsg};
use fleet_engine::wire::Bytes;
use fleet_engine::{Endpoint, Instant, Outbox};
use rules_common::*;

fn client(port: u16) -> Endpoint {
    Endpoint::v4([10, 0, 5, 1], port)
}

fn request(seqno: u64, op: KvOp<'_>) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let n = op.encode(&mut buf).unwrap();
    encode(&RslMsg::Request { seqno, request: Bytes(&buf[..n]) })
}

fn get(seqno: u64) -> Vec<u8> {
    request(seqno, KvOp::Get(Bytes(b"k")))
}

fn put(seqno: u64, value: &'static [u8]) -> Vec<u8> {
    request(seqno, KvOp::Put(Bytes(b"k"), Bytes(value)))
}

/// What a step sent, decoded: (destination, message kind, detail).
fn kinds(out: &Outbox<'_>) -> Vec<(Endpoint, String)> {
    sent(out)
        .iter()
        .map(|(d, b)| {
            let kind = match decode(b) {
                RslMsg::ReadConfirm { round, .. } => format!("confirm {round}"),
                RslMsg::ReadAck { round, .. } => format!("ack {round}"),
                RslMsg::TwoA { opn, .. } => format!("2a {opn}"),
                RslMsg::Reply { seqno, reply } => match KvReply::decode(reply.0) {
                    Some(KvReply::Value(v)) => format!("reply {seqno} {:?}", v.map(|b| b.0.to_vec())),
                    other => format!("reply {seqno} {other:?}"),
                },
                other => format!("{other:?}"),
            };
            (*d, kind)
        })
        .collect()
}

fn ack(round: u64) -> Vec<u8> {
    encode(&RslMsg::ReadAck { bal: Ballot::INITIAL, round })
}

#[test]
fn a_query_at_the_leader_is_answered_once_a_quorum_confirms_and_proposes_nothing() {
    let mut r = leader();
    propose_and_decide(&mut r, client(1), &put(1, b"v1"));
    let ops = r.status().ops_complete;
    let mut store = Out::new();
    let mut out = store.outbox();
    let _ = r.handle(Instant::ZERO, client(2), &get(1), &mut out);
    assert_eq!(
        kinds(&out),
        vec![(eps()[1], "confirm 1".to_string()), (eps()[2], "confirm 1".to_string())],
        "one round to the others, no proposal, no answer yet"
    );
    out.clear();
    let _ = r.handle(Instant::ZERO, eps()[2], &ack(1), &mut out);
    assert_eq!(kinds(&out), vec![(client(2), "reply 1 Some([118, 49])".to_string())]);
    assert_eq!(r.status().ops_complete, ops, "no log write");
    assert_eq!((r.stats().queries_answered, r.reads().pending()), (1, 0));
    // A later acknowledgement of the same round answers nothing more.
    out.clear();
    let _ = r.handle(Instant::ZERO, eps()[1], &ack(1), &mut out);
    assert!(out.is_empty());
}

#[test]
fn a_query_waits_for_the_operations_proposed_before_it_arrived() {
    let mut r = leader();
    let mut store = Out::new();
    let mut out = store.outbox();
    handle_then_due(&mut r, Instant::ZERO, client(1), &put(1, b"v1"), &mut out);
    let two_a =
        sent(&out).into_iter().find_map(|(_, b)| matches!(decode(&b), RslMsg::TwoA { .. }).then_some(b)).unwrap();
    let _ = r.handle(Instant::ZERO, client(2), &get(1), &mut out);
    let _ = r.handle(Instant::ZERO, eps()[1], &ack(1), &mut out);
    assert!(!kinds(&out).iter().any(|(d, _)| *d == client(2)), "confirmed, but operation 0 is not executed");
    out.clear();
    let _ = r.handle(Instant::ZERO, eps()[0], &two_a, &mut out);
    let two_b = encode(&RslMsg::TwoB { bal: Ballot::INITIAL, opn: 0, opn_ckpt: 0 });
    let _ = r.handle(Instant::ZERO, eps()[0], &two_b, &mut out);
    let _ = r.handle(Instant::ZERO, eps()[1], &two_b, &mut out);
    let replies: Vec<_> = kinds(&out).into_iter().filter(|(d, _)| *d == client(2)).collect();
    assert_eq!(replies, vec![(client(2), "reply 1 Some([118, 49])".to_string())], "the Put is seen");
}

#[test]
fn a_query_arriving_while_a_round_is_in_flight_waits_for_the_next_round() {
    let mut r = leader();
    let mut store = Out::new();
    let mut out = store.outbox();
    let _ = r.handle(Instant::ZERO, client(2), &get(1), &mut out);
    let _ = r.handle(Instant::ZERO, client(3), &get(1), &mut out);
    assert_eq!(kinds(&out).len(), 2, "the second query sends no round of its own");
    out.clear();
    let _ = r.handle(Instant::ZERO, eps()[1], &ack(1), &mut out);
    let k = kinds(&out);
    assert!(k.contains(&(client(2), "reply 1 None".to_string())), "{k:?}");
    assert!(!k.iter().any(|(d, _)| *d == client(3)), "round 1 went out before the second query arrived: {k:?}");
    assert!(k.contains(&(eps()[1], "confirm 2".to_string())), "{k:?}");
    out.clear();
    let _ = r.handle(Instant::ZERO, eps()[2], &ack(2), &mut out);
    assert_eq!(kinds(&out), vec![(client(3), "reply 1 None".to_string())]);
}

#[test]
fn an_acceptor_acknowledges_only_the_ballot_it_promised_and_only_to_its_leader() {
    let mut r = fresh(1);
    let mut store = Out::new();
    let mut out = store.outbox();
    let confirm = |bal: Ballot| encode(&RslMsg::ReadConfirm { bal, round: 1 });
    let _ = r.handle(Instant::ZERO, eps()[0], &confirm(Ballot::INITIAL), &mut out);
    assert_eq!(kinds(&out), vec![(eps()[0], "ack 1".to_string())], "nothing higher promised");
    out.clear();
    let _ = r.handle(Instant::ZERO, eps()[0], &encode(&RslMsg::OneA { bal: Ballot::INITIAL }), &mut out);
    out.clear();
    let _ = r.handle(Instant::ZERO, eps()[2], &confirm(Ballot::INITIAL), &mut out);
    assert!(out.is_empty(), "replica 2 does not lead (1, 0)");
    let _ = r.handle(Instant::ZERO, eps()[0], &confirm(Ballot::INITIAL), &mut out);
    assert_eq!(kinds(&out), vec![(eps()[0], "ack 1".to_string())]);
    out.clear();
    let higher = Ballot { seqno: 1, proposer: 2 };
    let _ = r.handle(Instant::ZERO, eps()[2], &encode(&RslMsg::OneA { bal: higher }), &mut out);
    out.clear();
    let ignored = r.stats().ignored_messages;
    let _ = r.handle(Instant::ZERO, eps()[0], &confirm(Ballot::INITIAL), &mut out);
    assert!(out.is_empty(), "a higher promise: (1, 0) may no longer decide");
    assert_eq!(r.stats().ignored_messages, ignored + 1);
}

#[test]
fn a_leader_that_sees_a_higher_view_drops_its_queries_unanswered() {
    let mut r = leader();
    let mut store = Out::new();
    let mut out = store.outbox();
    let _ = r.handle(Instant::ZERO, client(2), &get(1), &mut out);
    assert_eq!(r.reads().pending(), 1);
    let higher = encode(&RslMsg::Heartbeat { bal: Ballot { seqno: 1, proposer: 1 }, suspicious: false, opn_ckpt: 0 });
    let _ = r.handle(Instant::ZERO, eps()[1], &higher, &mut out);
    assert_eq!(r.reads().pending(), 0);
    out.clear();
    let _ = r.handle(Instant::ZERO, eps()[1], &ack(1), &mut out);
    assert!(out.is_empty(), "no answer after the ballot is gone");
    assert_eq!(r.stats().queries_answered, 0);
}

#[test]
fn a_query_passed_on_by_a_follower_or_sent_to_a_follower_goes_through_the_log() {
    let mut r = leader();
    let mut store = Out::new();
    let mut out = store.outbox();
    let mut buf = [0u8; 64];
    let n = KvOp::Get(Bytes(b"k")).encode(&mut buf).unwrap();
    let fwd = encode(&RslMsg::ForwardedRequest {
        client: client(2),
        seqno: 1,
        request: Bytes(&buf[..n]),
        kind: fleet_engine::rsl::batch::EntryKind::Single,
    });
    handle_then_due(&mut r, Instant::ZERO, eps()[1], &fwd, &mut out);
    let k = kinds(&out);
    assert!(k.iter().any(|(_, m)| m == "2a 0"), "{k:?}");
    assert_eq!(r.reads().pending(), 0);
    // A follower forwards a query it receives and tracks it like any request.
    let mut f = fresh(1);
    out.clear();
    let _ = f.handle(Instant::ZERO, client(3), &get(1), &mut out);
    assert!(sent(&out).iter().any(|(d, b)| *d == eps()[0] && matches!(decode(b), RslMsg::ForwardedRequest { .. })));
    assert_eq!(f.election().tracked().count(), 1);
}

#[test]
fn a_lost_round_is_sent_again_at_the_retransmission_timer() {
    let mut r = leader();
    let mut store = Out::new();
    let mut out = store.outbox();
    let _ = r.handle(Instant::ZERO, client(2), &get(1), &mut out);
    out.clear();
    let at = r.timer(fleet_engine::rsl::Timer::Retransmit).unwrap();
    let _ = r.tick(at, &mut out);
    let k = kinds(&out);
    assert!(
        k.contains(&(eps()[1], "confirm 1".to_string())) && k.contains(&(eps()[2], "confirm 1".to_string())),
        "{k:?}"
    );
    out.clear();
    let _ = r.handle(at, eps()[2], &ack(1), &mut out);
    assert_eq!(r.stats().queries_answered, 1);
}

#[test]
fn a_leader_whose_own_acceptor_promised_a_higher_ballot_answers_no_query() {
    let mut r = leader();
    let mut store = Out::new();
    let mut out = store.outbox();
    let _ = r.handle(Instant::ZERO, client(2), &get(1), &mut out);
    assert_eq!(r.reads().pending(), 1);
    // Replica 2 prepares (1, 2): the leader's acceptor promises it before its election
    // hears of the view, so the leader still leads (1, 0) but may no longer count itself.
    let higher = Ballot { seqno: 1, proposer: 2 };
    let _ = r.handle(Instant::ZERO, eps()[2], &encode(&RslMsg::OneA { bal: higher }), &mut out);
    assert_eq!(r.acceptor().max_bal, higher);
    assert!(r.status().is_leader, "the view has not changed for this replica yet");
    assert_eq!(r.reads().pending(), 0, "the pending query is dropped");
    out.clear();
    let _ = r.handle(Instant::ZERO, eps()[1], &ack(1), &mut out);
    let _ = r.handle(Instant::ZERO, client(3), &get(1), &mut out);
    assert_eq!(r.reads().pending(), 0, "and a new one is not taken on the fast path");
    assert_eq!(r.stats().queries_answered, 0);
    assert!(!kinds(&out).iter().any(|(_, m)| m.starts_with("confirm")));
}
