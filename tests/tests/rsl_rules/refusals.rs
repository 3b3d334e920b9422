//! Peers and the wire: the datagrams a replica refuses (another cluster's, an unknown
//! sender's, a 2a from a replica that does not lead its ballot, out of the protocol's bounds,
//! malformed, stale), and that refusing one changes nothing.

use fleet_engine::rsl::{Ballot, RslMsg};
use fleet_engine::wire::{self, Bytes, Protocol};
use fleet_engine::{Endpoint, Instant};
use fleet_tests::rng::Rng;
use fleet_tests::rsl_sim::{RslSim, SimOptions};

use super::leader_executed_five;
use crate::rules_common::*;

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
fn stale_1b_and_2b_are_counted_as_ignored() {
    let mut r = leader_executed_five();
    let mut store = Out::new();
    let mut out = store.outbox();
    let ignored = r.stats().ignored_messages;
    let old = Ballot { seqno: 0, proposer: 2 };
    let one_b = RslMsg::OneB { bal: old, log_truncation_point: 0, reply_id: 1, chunk: 0, chunks: 1, vote: None };
    let _ = r.handle(Instant::ZERO, eps()[2], &encode(&one_b), &mut out);
    assert_eq!(r.stats().ignored_messages, ignored + 1, "a 1b for a ballot this proposer did not send");
    let two_b = RslMsg::TwoB { bal: old, opn: 9, opn_ckpt: 0 };
    let _ = r.handle(Instant::ZERO, eps()[2], &encode(&two_b), &mut out);
    assert_eq!(r.stats().ignored_messages, ignored + 2, "a 2b below the learner's ballot");
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
