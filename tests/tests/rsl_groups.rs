//! Request groups of pipelined sessions (`fleet_engine::rsl::group`), one rule per test,
//! through a replica's sans-IO entry points.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod rules_common;

use fleet_engine::rsl::apps::kv::{KvOp, KvReply};
use fleet_engine::rsl::{group, RslMsg};
use fleet_engine::wire::Bytes;
use fleet_engine::{Endpoint, Instant};
use rules_common::*;

fn client(port: u16) -> Endpoint {
    Endpoint::v4([10, 0, 6, 1], port)
}

fn op(kv: KvOp<'_>) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let n = kv.encode(&mut buf).unwrap();
    buf[..n].to_vec()
}

/// A group datagram of `ops` under `seqno`.
fn group_of(seqno: u64, ops: &[Vec<u8>]) -> Vec<u8> {
    let requests: Vec<&[u8]> = ops.iter().map(Vec::as_slice).collect();
    let mut buf = [0u8; 1024];
    let (len, count) = group::encode(&requests, &mut buf);
    assert_eq!(count, ops.len());
    encode(&RslMsg::Requests { seqno, requests: Bytes(&buf[..len]) })
}

fn put(key: &'static [u8], value: &'static [u8]) -> Vec<u8> {
    op(KvOp::Put(Bytes(key), Bytes(value)))
}

fn get(key: &'static [u8]) -> Vec<u8> {
    op(KvOp::Get(Bytes(key)))
}

/// The group replies a step sent to `to`: (seqno, each sub-reply decoded).
fn group_replies(out: &fleet_engine::Outbox<'_>, to: Endpoint) -> Vec<(u64, Vec<String>)> {
    sent(out)
        .iter()
        .filter(|(d, _)| *d == to)
        .filter_map(|(_, b)| match decode(b) {
            RslMsg::Replies { seqno, replies } => {
                let each = group::replies(replies.0)
                    .map(|r| match r.map(KvReply::decode) {
                        Some(Some(KvReply::Value(v))) => {
                            format!("{:?}", v.map(|b| String::from_utf8_lossy(b.0).into_owned()))
                        }
                        Some(Some(KvReply::Done)) => "done".to_string(),
                        other => format!("{other:?}"),
                    })
                    .collect();
                Some((seqno, each))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_group_is_one_batch_entry_applied_in_order_and_answered_in_one_datagram() {
    let mut r = leader();
    let ops = [put(b"a", b"1"), get(b"a"), put(b"a", b"2"), get(b"a")];
    let mut store = Out::new();
    let mut out = store.outbox();
    handle_then_due(&mut r, Instant::ZERO, client(1), &group_of(7, &ops), &mut out);
    let batches: Vec<Vec<u8>> = sent(&out)
        .iter()
        .filter_map(|(_, b)| match decode(b) {
            RslMsg::TwoA { batch, .. } => Some(batch.0.to_vec()),
            _ => None,
        })
        .collect();
    assert_eq!(batches.len(), 3, "one 2a to every replica, itself included");
    let entries: Vec<_> = fleet_engine::rsl::batch::entries(&batches[0]).collect();
    assert_eq!(entries.len(), 1, "the whole group is one entry");
    assert!(entries[0].kind == fleet_engine::rsl::batch::EntryKind::Group && entries[0].seqno == 7);
    out.clear();
    propose_and_decide_sent(&mut r, &batches[0], &mut out);
    assert_eq!(
        group_replies(&out, client(1)),
        vec![(7, vec!["done".into(), "Some(\"1\")".into(), "done".into(), "Some(\"2\")".into()])],
        "each read sees the writes before it in the group, and only those"
    );
    assert_eq!(r.app().get(b"a"), Some(&b"2"[..]));
}

/// Decides `batch` (already proposed as the next operation): the leader's own acceptor
/// votes for it, then 2b from replicas 0 and 1.
fn propose_and_decide_sent(r: &mut fleet_tests::rsl_sim::SimReplica, batch: &[u8], out: &mut fleet_engine::Outbox<'_>) {
    let bal = fleet_engine::rsl::Ballot::INITIAL;
    let opn = r.status().ops_complete;
    let _ = r.handle(Instant::ZERO, eps()[0], &encode(&RslMsg::TwoA { bal, opn, batch: Bytes(batch) }), out);
    let two_b = encode(&RslMsg::TwoB { bal, opn, opn_ckpt: 0 });
    for from in [0, 1] {
        let _ = r.handle(Instant::ZERO, eps()[from], &two_b, out);
    }
}

#[test]
fn a_retried_group_is_answered_from_the_cache_and_not_applied_again() {
    let mut r = leader();
    let ops = [put(b"n", b"x"), get(b"n")];
    propose_and_decide(&mut r, client(2), &group_of(3, &ops));
    // The key's value is overwritten by another client, then the group is retried.
    propose_and_decide(&mut r, client(3), &encode(&RslMsg::Request { seqno: 1, request: Bytes(&put(b"n", b"y")) }));
    let ops_before = r.status().ops_complete;
    let mut store = Out::new();
    let mut out = store.outbox();
    let _ = r.handle(Instant::ZERO, client(2), &group_of(3, &ops), &mut out);
    assert_eq!(group_replies(&out, client(2)), vec![(3, vec!["done".into(), "Some(\"x\")".into()])]);
    assert_eq!(r.status().ops_complete, ops_before, "nothing proposed");
    assert_eq!(r.app().get(b"n"), Some(&b"y"[..]), "the retried write was not applied again");
}

#[test]
fn a_follower_forwards_a_group_as_a_group() {
    let mut f = fresh(1);
    let mut store = Out::new();
    let mut out = store.outbox();
    let _ = f.handle(Instant::ZERO, client(4), &group_of(9, &[get(b"k"), get(b"j")]), &mut out);
    let forwarded: Vec<_> = sent(&out)
        .iter()
        .filter_map(|(d, b)| match decode(b) {
            RslMsg::ForwardedRequest { client: c, seqno, kind, request } => Some((
                *d,
                c,
                seqno,
                kind == fleet_engine::rsl::batch::EntryKind::Group,
                group::requests(request.0).count(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(forwarded, vec![(eps()[0], client(4), 9, true, 2)]);
}

#[test]
fn a_malformed_group_is_counted_and_changes_nothing() {
    let mut r = leader();
    let before = r.clone();
    let mut store = Out::new();
    let mut out = store.outbox();
    for bad in [&[][..], &[9, b'x'][..], &[0u8; group::MAX_GROUP_REQUESTS + 1][..]] {
        let _ =
            r.handle(Instant::ZERO, client(5), &encode(&RslMsg::Requests { seqno: 1, requests: Bytes(bad) }), &mut out);
    }
    assert!(out.is_empty(), "nothing proposed, nothing answered");
    assert_eq!(r.stats().invalid_messages, before.stats().invalid_messages + 3);
    assert_eq!(r.proposer().queued(), 0);
}

#[test]
fn a_group_of_queries_takes_the_log_not_the_read_path() {
    let mut r = leader();
    let mut store = Out::new();
    let mut out = store.outbox();
    handle_then_due(&mut r, Instant::ZERO, client(6), &group_of(1, &[get(b"a"), get(b"b")]), &mut out);
    let kinds: Vec<bool> = sent(&out).iter().map(|(_, b)| matches!(decode(b), RslMsg::TwoA { .. })).collect();
    assert_eq!(kinds, vec![true; 3], "proposed to every replica, no confirmation round");
    assert_eq!(r.reads().pending(), 0);
}
