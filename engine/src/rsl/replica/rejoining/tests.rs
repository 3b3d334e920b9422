//! The rejoin rule, by what it promises: no promise or vote while rejoining; every other
//! replica asked, and asked again; answers that cover what the answerer promised and voted;
//! taking part only once caught up past every answer, durably; a new cluster born.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

extern crate std;

use std::vec::Vec;

use super::*;
use crate::outbox::{Outbox, OutboxBuf};
use crate::rsl::apps::counter::Counter;
use crate::rsl::replica::{Step, Timer};
use crate::wire::{self, Bytes, Protocol};
use crate::Endpoint;

type Rep = Replica<Counter, 3, 8, 1472, 4096, 16, 64, 2048>;
type Out = OutboxBuf<64, 65536>;

fn eps() -> [Endpoint; 3] {
    [Endpoint::v4([10, 0, 0, 1], 7000), Endpoint::v4([10, 0, 0, 2], 7000), Endpoint::v4([10, 0, 0, 3], 7000)]
}

fn config() -> RslConfig<3> {
    RslConfig::new(&eps()).unwrap()
}

fn encode(msg: &RslMsg<'_>) -> Vec<u8> {
    let mut buf = [0u8; 1472];
    let n = wire::encode_rsl(config().identity(), msg, &mut buf).unwrap();
    buf[..n].to_vec()
}

/// What a step sent, decoded: (destination, message tag).
fn sent<'a>(out: &'a Outbox<'_>) -> Vec<(Endpoint, RslMsg<'a>)> {
    out.iter().map(|(to, b)| (to, wire::decode(Protocol::Rsl, b).unwrap())).collect()
}

fn reply(nonce: u64, rejoining: bool, fresh: bool, incarnation: u64, ballot: Ballot, next_opn: u64) -> Vec<u8> {
    encode(&RslMsg::RecoverReply { nonce, incarnation, rejoining, fresh, ballot, next_opn })
}

const B31: Ballot = Ballot { seqno: 3, proposer: 1 };

/// Replica 0 rejoining with nonce 7, both others answered as members: ballot 3.1, every
/// operation below 2 settled.
fn caught_up_to_answers() -> Rep {
    let mut r = Rep::new_rejoining(config(), 0, Counter::default(), Instant::ZERO, 7).unwrap();
    let mut store = Out::new();
    let mut out = store.outbox();
    let _ = r.handle(Instant::ZERO, eps()[1], &reply(7, false, false, 0, B31, 2), &mut out);
    let _ = r.handle(Instant::ZERO, eps()[2], &reply(7, false, false, 0, Ballot::INITIAL, 1), &mut out);
    r
}

fn decide(r: &mut Rep, opn: u64) -> Step {
    let mut store = Out::new();
    let mut out = store.outbox();
    let mut step = Step::default();
    // The 2a first (a 2b names no batch), from the ballot's leader.
    let two_a = RslMsg::TwoA { bal: B31, opn, batch: Bytes(b"") };
    let _ = r.handle(Instant::ZERO, eps()[usize::from(B31.proposer)], &encode(&two_a), &mut out);
    for from in [1, 2] {
        let msg = RslMsg::TwoB { bal: B31, opn, opn_ckpt: 0 };
        step = r.handle(Instant::ZERO, eps()[from], &encode(&msg), &mut out);
    }
    step
}

#[test]
fn a_rejoining_replica_neither_promises_nor_votes() {
    let mut r = Rep::new_rejoining(config(), 1, Counter::default(), Instant::ZERO, 7).unwrap();
    let mut store = Out::new();
    let mut out = store.outbox();
    let one_a = encode(&RslMsg::OneA { bal: Ballot { seqno: 2, proposer: 0 } });
    let two_a = encode(&RslMsg::TwoA { bal: Ballot::INITIAL, opn: 0, batch: Bytes(b"") });
    for bytes in [one_a, two_a] {
        let step = r.handle(Instant::ZERO, eps()[0], &bytes, &mut out);
        assert!(!step.durable_state_changed);
    }
    assert!(sent(&out).iter().all(|(_, m)| !matches!(m, RslMsg::OneB { .. } | RslMsg::TwoB { .. })));
    assert_eq!(r.acceptor().max_bal, Ballot::default());
    assert_eq!(r.acceptor().vote_count(), 0);
    assert_eq!(r.stats().ignored_messages, 2);
    assert!(r.status().rejoining);
    assert_eq!(r.durable_image_len(), 1, "only its incarnation for a durable binding to keep");
}

#[test]
fn it_asks_every_other_replica_and_asks_again_until_answered() {
    let mut r = Rep::new_rejoining(config(), 1, Counter::default(), Instant::ZERO, 7).unwrap();
    let mut store = Out::new();
    let mut out = store.outbox();
    let _ = r.tick(Instant::ZERO, &mut out);
    let asked: Vec<Endpoint> = sent(&out)
        .into_iter()
        .filter_map(|(to, m)| matches!(m, RslMsg::RecoverRequest { nonce: 7, catching_up: false }).then_some(to))
        .collect();
    assert_eq!(asked, [eps()[0], eps()[2]], "every other replica, not itself; no heartbeat");
    let retry = r.timer(Timer::Rejoin).unwrap();
    assert_eq!(retry, Instant::ZERO.plus_ms(config().params.retransmit_period_ms));
    assert_eq!(r.timer(Timer::ViewTimeout), None, "no part in elections");
    out.clear();
    let _ = r.tick(retry, &mut out);
    assert_eq!(sent(&out).iter().filter(|(_, m)| matches!(m, RslMsg::RecoverRequest { .. })).count(), 2);
}

#[test]
fn an_answer_covers_every_ballot_and_operation_the_answerer_knows() {
    // Replica 1 promised 2.0 and voted at operation 5 in it; its proposer is idle.
    let mut r = Rep::new(config(), 1, Counter::default(), Instant::ZERO).unwrap();
    let mut store = Out::new();
    let mut out = store.outbox();
    let bal = Ballot { seqno: 2, proposer: 0 };
    let _ = r.handle(Instant::ZERO, eps()[0], &encode(&RslMsg::OneA { bal }), &mut out);
    let two_a = RslMsg::TwoA { bal, opn: 5, batch: Bytes(b"") };
    let _ = r.handle(Instant::ZERO, eps()[0], &encode(&two_a), &mut out);
    out.clear();
    let _ =
        r.handle(Instant::ZERO, eps()[2], &encode(&RslMsg::RecoverRequest { nonce: 9, catching_up: false }), &mut out);
    let answers = sent(&out);
    let [(to, RslMsg::RecoverReply { nonce, rejoining, fresh, ballot, next_opn, .. })] = answers.as_slice() else {
        panic!("one answer: {answers:?}")
    };
    assert_eq!(*to, eps()[2]);
    assert_eq!((*nonce, *rejoining, *fresh), (9, false, false));
    assert!(*ballot >= bal, "at least the promise");
    assert_eq!(*next_opn, 6, "above the vote");
}

#[test]
fn it_takes_part_only_once_executed_past_every_answer_with_the_highest_ballot() {
    let mut r = caught_up_to_answers();
    assert_eq!(r.rejoining().unwrap().stage, Stage::CatchingUp { ballot: B31, next_opn: 2 });
    assert_eq!(r.status().view, B31, "follows the cluster's view");
    let two_a = encode(&RslMsg::TwoA { bal: B31, opn: 0, batch: Bytes(b"") });
    let mut store = Out::new();
    let mut out = store.outbox();
    let _ = r.handle(Instant::ZERO, eps()[1], &two_a, &mut out);
    assert_eq!(r.acceptor().vote_count(), 0, "still silent while catching up");

    assert!(!decide(&mut r, 0).durable_state_changed);
    assert!(r.rejoining().is_some(), "one operation short");
    let step = decide(&mut r, 1);
    assert!(r.rejoining().is_none(), "executed past every answer");
    assert!(step.durable_state_changed, "the promise it takes part with is durable state");
    assert_eq!(r.acceptor().max_bal, B31);
    assert_eq!(r.acceptor().log_truncation_point, 2, "nothing below the answers is reopened");
    assert!(r.acceptor().replies_sent() >= 7, "1b ids go on from the nonce");
    assert_eq!(r.check_invariants(), Ok(()));

    out.clear();
    let two_a = encode(&RslMsg::TwoA { bal: B31, opn: 2, batch: Bytes(b"") });
    let _ = r.handle(Instant::ZERO, eps()[1], &two_a, &mut out);
    assert_eq!(r.acceptor().vote_count(), 1, "votes again");
    let stale = encode(&RslMsg::OneA { bal: Ballot { seqno: 2, proposer: 2 } });
    let _ = r.handle(Instant::ZERO, eps()[2], &stale, &mut out);
    assert_eq!(r.acceptor().max_bal, B31, "no promise below the ballot it took part with");
}

#[test]
fn a_durable_replica_takes_part_only_once_its_execution_is_durable() {
    let mut r = Rep::new_durable(config(), 0, Counter::default(), Instant::ZERO, 7).unwrap();
    let mut store = Out::new();
    let mut out = store.outbox();
    let _ = r.handle(Instant::ZERO, eps()[1], &reply(7, false, false, 0, B31, 2), &mut out);
    let _ = r.handle(Instant::ZERO, eps()[2], &reply(7, false, false, 0, B31, 2), &mut out);
    let _ = decide(&mut r, 0);
    let _ = decide(&mut r, 1);
    assert_eq!(r.status().ops_complete, 2);
    assert!(r.rejoining().is_some(), "executed, not yet durable");
    let mut buf = [0u8; 2048];
    while r.next_record(&mut buf).is_some() {}
    let mark = r.durable_mark();
    r.persisted(mark);
    let step = r.tick(Instant::ZERO, &mut out);
    assert!(r.rejoining().is_none(), "durable past every answer");
    assert!(step.durable_state_changed);
    assert_eq!(r.durable_image_len(), 1, "its acceptor header is durable state now");
}

#[test]
fn a_log_without_an_acceptor_record_recovers_to_a_rejoining_replica() {
    let nothing: [&[u8]; 0] = [];
    let r = Rep::recover(config(), 2, Counter::default(), Instant::ZERO, 5, nothing, nothing).unwrap();
    assert_eq!(r.rejoining().map(|j| j.nonce), Some(5));
}

#[test]
fn replicas_of_a_new_cluster_are_born_and_stay_new_to_incarnations_seen_at_birth() {
    let mut r = Rep::new_rejoining(config(), 0, Counter::default(), Instant::ZERO, 7).unwrap();
    let mut store = Out::new();
    let mut out = store.outbox();
    let _ = r.handle(Instant::ZERO, eps()[1], &reply(7, true, true, 11, Ballot::default(), 0), &mut out);
    assert!(r.rejoining().is_some());
    let _ = r.handle(Instant::ZERO, eps()[2], &reply(7, true, true, 12, Ballot::default(), 0), &mut out);
    assert!(r.rejoining().is_none(), "born");
    assert!(sent(&out).iter().any(|(_, m)| matches!(m, RslMsg::OneA { .. })), "replica 0 leads view 1.0");
    assert!(r.proposer().max_ballot_sent_1a > Ballot::default(), "it started its own ballot");

    // Replica 1's incarnation 11 never acted: to it, replica 0 is as new as before.
    out.clear();
    let _ =
        r.handle(Instant::ZERO, eps()[1], &encode(&RslMsg::RecoverRequest { nonce: 11, catching_up: false }), &mut out);
    let _ =
        r.handle(Instant::ZERO, eps()[1], &encode(&RslMsg::RecoverRequest { nonce: 13, catching_up: false }), &mut out);
    let fresh: Vec<bool> = sent(&out)
        .into_iter()
        .filter_map(|(_, m)| match m {
            RslMsg::RecoverReply { fresh, .. } => Some(fresh),
            _ => None,
        })
        .collect();
    assert_eq!(fresh, [true, false], "a later incarnation of replica 1 may have acted");
}

#[test]
fn another_replica_rejoining_holds_it_back() {
    let mut r = Rep::new_rejoining(config(), 0, Counter::default(), Instant::ZERO, 7).unwrap();
    let mut store = Out::new();
    let mut out = store.outbox();
    let _ = r.handle(Instant::ZERO, eps()[1], &reply(7, false, false, 0, B31, 2), &mut out);
    let _ = r.handle(Instant::ZERO, eps()[2], &reply(7, true, false, 12, Ballot::default(), 0), &mut out);
    assert_eq!(r.rejoining().unwrap().stage, Stage::Asking, "replica 2 knows no more than this one");
    let _ = r.handle(Instant::ZERO, eps()[2], &reply(6, false, false, 0, B31, 2), &mut out);
    assert_eq!(r.rejoining().unwrap().stage, Stage::Asking, "an answer to another incarnation");
}

#[test]
fn a_rejoining_replica_that_executed_decisions_still_answers_that_it_has_no_state() {
    // Two replicas started together learn decisions while they wait: neither ever promised
    // or voted, so each must let the other be born (else both wait for good).
    let mut r = Rep::new_rejoining(config(), 0, Counter::default(), Instant::ZERO, 7).unwrap();
    let _ = decide(&mut r, 0);
    assert_eq!(r.status().ops_complete, 1);
    let mut store = Out::new();
    let mut out = store.outbox();
    let _ =
        r.handle(Instant::ZERO, eps()[2], &encode(&RslMsg::RecoverRequest { nonce: 3, catching_up: false }), &mut out);
    let answers = sent(&out);
    let [(_, RslMsg::RecoverReply { rejoining: true, fresh: true, incarnation: 7, .. })] = answers.as_slice() else {
        panic!("a rejoining replica without acceptor state: {answers:?}")
    };
}

#[test]
fn an_idle_leader_proposes_an_empty_batch_for_a_replica_catching_up() {
    let mut r = Rep::new(config(), 0, Counter::default(), Instant::ZERO).unwrap();
    let mut store = Out::new();
    let mut out = store.outbox();
    let _ = r.tick(Instant::ZERO, &mut out);
    for from in [1, 2] {
        let one_b = RslMsg::OneB {
            bal: Ballot::INITIAL,
            log_truncation_point: 0,
            reply_id: 1,
            chunk: 0,
            chunks: 1,
            vote: None,
        };
        let _ = r.handle(Instant::ZERO, eps()[from], &encode(&one_b), &mut out);
    }
    assert!(r.status().is_leader);
    let two_a = |out: &Outbox<'_>| {
        sent(out)
            .iter()
            .filter(|(_, m)| matches!(m, RslMsg::TwoA { opn: 0, batch: Bytes(b), .. } if b.is_empty()))
            .count()
    };
    out.clear();
    let asking = encode(&RslMsg::RecoverRequest { nonce: 9, catching_up: false });
    let _ = r.handle(Instant::ZERO, eps()[2], &asking, &mut out);
    assert_eq!(two_a(&out), 0, "a replica still asking needs no operation");
    let waiting = encode(&RslMsg::RecoverRequest { nonce: 9, catching_up: true });
    let _ = r.handle(Instant::ZERO, eps()[2], &waiting, &mut out);
    assert_eq!(two_a(&out), 3, "an empty batch to every replica");
    assert_eq!(r.status().next_opn, 1);
}
