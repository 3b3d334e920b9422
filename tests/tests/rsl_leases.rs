//! Leader leases (`fleet_engine::rsl::lease`), one rule per test, through a replica's
//! sans-IO entry points: the acceptor's hold after it acknowledges a round, the hold of a
//! replica that starts, the leader answering under its lease without a round per query,
//! and the lease ending.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fleet_engine::rsl::apps::kv::{KvOp, KvReply};
mod rules_common;

use fleet_engine::rsl::{Ballot, RslConfig, RslMsg};
use fleet_engine::wire::{self, Bytes};
use fleet_engine::{Endpoint, Instant};
use fleet_tests::rsl_sim::{SimApp, SimReplica};
use rules_common::{config, encode_in, eps, leader_of, Out};

const LEASE_MS: u64 = 500;
/// 5 %: the leader's lease is 500 · 0.95 / 1.05 = 452.38 ms.
const DRIFT_PPM: u32 = 50_000;
const LEADER_LEASE_US: u64 = 452_380;

fn client(port: u16) -> Endpoint {
    Endpoint::v4([10, 0, 5, 1], port)
}

fn leased() -> RslConfig<7> {
    let mut c = config();
    c.params.lease_ms = LEASE_MS;
    c.params.clock_drift_ppm = DRIFT_PPM;
    c
}

fn ms(t: u64) -> Instant {
    Instant::from_millis(t)
}

fn encode(msg: &RslMsg<'_>) -> Vec<u8> {
    encode_in(&leased(), msg)
}

fn get(seqno: u64) -> Vec<u8> {
    let mut buf = [0u8; 64];
    let n = KvOp::Get(Bytes(b"k")).encode(&mut buf).unwrap();
    encode(&RslMsg::Request { seqno, request: Bytes(&buf[..n]) })
}

/// What one call sent: (destination, kind).
fn step(r: &mut SimReplica, now: Instant, from: Option<Endpoint>, datagram: &[u8]) -> Vec<(Endpoint, String)> {
    let mut store = Out::new();
    let mut out = store.outbox();
    let _ = match from {
        Some(from) => r.handle(now, from, datagram, &mut out),
        None => r.tick(now, &mut out),
    };
    out.iter()
        .map(|(d, b)| {
            let kind = match wire::decode::<RslMsg<'_>>(wire::Protocol::Rsl, b).unwrap() {
                RslMsg::ReadConfirm { round, .. } => format!("confirm {round}"),
                RslMsg::ReadAck { round, .. } => format!("ack {round}"),
                RslMsg::OneA { .. } => "1a".to_string(),
                RslMsg::OneB { .. } => "1b".to_string(),
                RslMsg::Heartbeat { .. } => "heartbeat".to_string(),
                RslMsg::Reply { seqno, reply } => format!("reply {seqno} {:?}", KvReply::decode(reply.0).is_some()),
                other => format!("{other:?}"),
            };
            (d, kind)
        })
        .collect()
}

fn fresh(me: usize, now: Instant) -> SimReplica {
    SimReplica::new(leased(), me, SimApp::new(), now).unwrap()
}

/// Replica 0 leading (1, 0) from 600 ms (after its start-up hold), promised by 0 and 1.
fn leader() -> SimReplica {
    leader_of(leased(), ms(0), ms(600))
}

fn ack(round: u64) -> Vec<u8> {
    encode(&RslMsg::ReadAck { bal: Ballot::INITIAL, round })
}

#[test]
fn a_replica_that_starts_promises_nothing_for_the_lease() {
    let mut r = fresh(1, ms(0));
    let one_a = encode(&RslMsg::OneA { bal: Ballot::INITIAL });
    assert!(step(&mut r, ms(499), Some(eps()[0]), &one_a).is_empty(), "it may have acknowledged a round and forgotten");
    assert_eq!(step(&mut r, ms(500), Some(eps()[0]), &one_a), vec![(eps()[0], "1b".to_string())]);
}

#[test]
fn an_acceptor_that_acknowledged_a_round_promises_no_higher_ballot_until_its_hold_ends() {
    let mut r = fresh(1, ms(0));
    let _ = step(&mut r, ms(600), Some(eps()[0]), &encode(&RslMsg::OneA { bal: Ballot::INITIAL }));
    let confirm = encode(&RslMsg::ReadConfirm { bal: Ballot::INITIAL, round: 1 });
    assert_eq!(step(&mut r, ms(1000), Some(eps()[0]), &confirm), vec![(eps()[0], "ack 1".to_string())]);
    let higher = encode(&RslMsg::OneA { bal: Ballot { seqno: 1, proposer: 2 } });
    assert!(step(&mut r, ms(1499), Some(eps()[2]), &higher).is_empty(), "held for (1, 0) until 1500 ms");
    assert_eq!(r.acceptor().max_bal, Ballot::INITIAL);
    // The leased ballot itself is still served (a 1a of it repeated, say).
    let same = encode(&RslMsg::OneA { bal: Ballot::INITIAL });
    assert_eq!(step(&mut r, ms(1499), Some(eps()[0]), &same), vec![(eps()[0], "1b".to_string())]);
    assert_eq!(step(&mut r, ms(1500), Some(eps()[2]), &higher), vec![(eps()[2], "1b".to_string())]);
}

#[test]
fn a_leased_leader_answers_queries_without_a_round_each() {
    let mut r = leader();
    // The next heartbeat (700 ms) starts a round: the lease counts from its sending.
    let sent = step(&mut r, ms(700), None, &[]);
    assert!(sent.contains(&(eps()[1], "confirm 1".to_string())), "{sent:?}");
    assert!(step(&mut r, ms(720), Some(eps()[1]), &ack(1)).is_empty());
    // Until 700 ms + 452.38 ms a query is answered at once, with no round of its own.
    for (seqno, at) in [(1, 800), (2, 1152)] {
        let sent = step(&mut r, ms(at), Some(client(seqno as u16)), &get(seqno));
        assert_eq!(sent, vec![(client(seqno as u16), format!("reply {seqno} true"))], "at {at} ms");
    }
    assert_eq!(r.stats().queries_answered, 2);
    assert_eq!(r.status().ops_complete, 0, "no log write");
}

#[test]
fn once_the_lease_ends_queries_wait_for_a_confirmation_round_again() {
    let mut r = leader();
    let _ = step(&mut r, ms(700), None, &[]);
    let _ = step(&mut r, ms(720), Some(eps()[1]), &ack(1));
    let end = ms(700).plus_us(LEADER_LEASE_US);
    let sent = step(&mut r, end, Some(client(1)), &get(1));
    assert!(!sent.iter().any(|(d, _)| *d == client(1)), "the lease is over at {end:?}: {sent:?}");
    assert!(sent.contains(&(eps()[1], "confirm 2".to_string())), "a round for the query: {sent:?}");
    assert_eq!(step(&mut r, end, Some(eps()[2]), &ack(2)), vec![(client(1), "reply 1 true".to_string())]);
}

#[test]
fn a_leader_whose_round_is_not_acknowledged_holds_no_lease() {
    let mut r = leader();
    let _ = step(&mut r, ms(700), None, &[]);
    // Round 1 went out, nobody answered: a query waits.
    let sent = step(&mut r, ms(800), Some(client(1)), &get(1));
    assert!(!sent.iter().any(|(d, _)| *d == client(1)), "{sent:?}");
    assert_eq!(r.reads().pending(), 1);
}

#[test]
fn the_leaders_own_acceptor_holds_for_the_rounds_it_sends() {
    let mut r = leader();
    let _ = step(&mut r, ms(700), None, &[]);
    let higher = encode(&RslMsg::OneA { bal: Ballot { seqno: 1, proposer: 2 } });
    assert!(step(&mut r, ms(1199), Some(eps()[2]), &higher).is_empty(), "held until 1200 ms");
    assert!(r.status().is_leader);
}
