//! The tests, written against fleet-engine's public API only.

use fleet_engine::rsl::acceptor::{Accepted, Acceptor};
use fleet_engine::rsl::app::App;
use fleet_engine::rsl::apps::counter::Counter;
use fleet_engine::rsl::apps::kv::{KvApp, KvOp, KvReply};
use fleet_engine::rsl::learner::Learner;
use fleet_engine::rsl::{batch, Ballot, Client, RslConfig, RslMsg};
use fleet_engine::wire::{self, Bytes, DecodeError, Protocol};
use fleet_engine::{Endpoint, Instant, OutboxBuf};

use crate::check;
use crate::sim::{config, eps, Rep, Sim, CLIENT, D};
use crate::TestResult;

/// A named test.
pub type Test = (&'static str, fn() -> TestResult);

/// Every test, in order.
pub static ALL: &[Test] = &[
    ("wire_round_trips_rsl_messages", wire_round_trips_rsl_messages),
    ("wire_refuses_foreign_and_truncated_datagrams", wire_refuses_foreign_and_truncated_datagrams),
    ("ballots_order_and_rotate", ballots_order_and_rotate),
    ("acceptor_votes_only_at_or_above_its_promise", acceptor_votes_only_at_or_above_its_promise),
    ("acceptor_truncates_at_the_quorum_checkpoint", acceptor_truncates_at_the_quorum_checkpoint),
    ("learner_decides_on_a_quorum_of_2b", learner_decides_on_a_quorum_of_2b),
    ("batch_validation_refuses_garbage", batch_validation_refuses_garbage),
    ("replica_refuses_peers_it_does_not_know", replica_refuses_peers_it_does_not_know),
    ("replica_refuses_2a_from_a_non_leader", replica_refuses_2a_from_a_non_leader),
    ("proposer_of_view_1_0_leads_after_a_quorum_of_1b", proposer_of_view_1_0_leads_after_a_quorum_of_1b),
    ("full_outbox_is_counted_not_a_panic", full_outbox_is_counted_not_a_panic),
    ("client_matches_replies_and_retransmits", client_matches_replies_and_retransmits),
    ("counter_and_kv_snapshots_round_trip", counter_and_kv_snapshots_round_trip),
    ("three_replicas_agree", three_replicas_agree),
    ("three_replicas_agree_with_loss", three_replicas_agree_with_loss),
    ("a_new_leader_after_the_leader_crashes", a_new_leader_after_the_leader_crashes),
    ("sealing_gives_the_known_answer_and_refuses_tampering", sealing_gives_the_known_answer_and_refuses_tampering),
];

/// The engine's known-answer vector (`engine/src/auth/tests.rs`): the same bytes on x86-64.
fn sealing_gives_the_known_answer_and_refuses_tampering() -> TestResult {
    use fleet_engine::auth::{Guard, Key, KeySet, Keyring, Role};
    const KNOWN: [u8; 15] = [0xf1, 0x04, 0x41, 0x01, b'a', b'b', b'c', 0xd1, 0x3a, 0x28, 0xc5, 0x2f, 0xb9, 0xdb, 0x24];
    let a = Endpoint::v4([10, 0, 0, 1], 7000);
    let b = Endpoint::v4([10, 0, 0, 2], 7000);
    let members = [a, b];
    let ring = Keyring {
        cluster: 0x5eed_0001,
        member: Some(KeySet::single(Key::new(1, [0x11; 16]))),
        client: KeySet::single(Key::new(2, [0x22; 16])),
    };
    let mut sender = Guard::new(ring.clone(), a, Role::Member(&members));
    let mut buf = [0u8; 64];
    let n = sender.seal(b, b"abc", &mut buf).map_err(|_| "seal failed")?;
    check!(buf[..n] == KNOWN, "the seal differs from the x86-64 known answer");
    let receiver = Guard::new(ring, b, Role::Member(&members));
    check!(receiver.check(a, &buf[..n]) == Ok(&b"abc"[..]), "the receiver does not open it");
    buf[8] ^= 1;
    check!(receiver.check(a, &buf[..n]).is_err(), "a flipped bit opens");
    Ok(())
}

/// A datagram from a member of `config`'s cluster.
fn encode<'b>(config: &RslConfig<3>, msg: &RslMsg<'_>, buf: &'b mut [u8]) -> Result<&'b [u8], &'static str> {
    let n = wire::encode_rsl(config.identity(), msg, buf).map_err(|_| "encode failed")?;
    Ok(&buf[..n])
}

fn wire_round_trips_rsl_messages() -> TestResult {
    let bal = Ballot { seqno: 7, proposer: 2 };
    let msgs = [
        RslMsg::Request { seqno: 42, request: Bytes(b"inc") },
        RslMsg::OneA { bal },
        RslMsg::TwoA { bal, opn: 9, batch: Bytes(&[1, 2, 3]) },
        RslMsg::TwoB { bal, opn: 9, opn_ckpt: 5 },
        RslMsg::Heartbeat { bal, suspicious: true, opn_ckpt: u64::MAX },
        RslMsg::Reply { seqno: 42, reply: Bytes(&[0xff; 40]) },
        RslMsg::StartingPhase2 { bal, log_truncation_point: 3 },
    ];
    let mut buf = [0u8; 256];
    for m in msgs.iter() {
        let n = wire::encode(Protocol::Rsl, m, &mut buf).map_err(|_| "encode failed")?;
        let back: RslMsg<'_> = wire::decode(Protocol::Rsl, &buf[..n]).map_err(|_| "decode failed")?;
        check!(back == *m, "decoded message differs");
    }
    Ok(())
}

fn wire_refuses_foreign_and_truncated_datagrams() -> TestResult {
    let mut buf = [0u8; 64];
    let n = wire::encode(Protocol::Rsl, &RslMsg::OneA { bal: Ballot::INITIAL }, &mut buf).map_err(|_| "encode")?;
    check!(wire::decode::<RslMsg<'_>>(Protocol::Rsl, &[]) == Err(DecodeError::TooShort), "empty datagram");
    check!(wire::decode::<RslMsg<'_>>(Protocol::Kv, &buf[..n]).is_err(), "RSL datagram read as KV");
    check!(wire::decode::<RslMsg<'_>>(Protocol::Rsl, &buf[..n - 1]).is_err(), "truncated body");
    buf[0] ^= 0xff;
    check!(wire::decode::<RslMsg<'_>>(Protocol::Rsl, &buf[..n]).is_err(), "wrong magic");
    let mut tiny = [0u8; 4];
    check!(
        wire::encode(Protocol::Rsl, &RslMsg::Request { seqno: 1, request: Bytes(&[0; 8]) }, &mut tiny).is_err(),
        "overflow"
    );
    Ok(())
}

fn ballots_order_and_rotate() -> TestResult {
    check!(Ballot { seqno: 1, proposer: 2 } < Ballot { seqno: 2, proposer: 0 }, "round first");
    check!(Ballot::INITIAL.successor(3) == Ballot { seqno: 1, proposer: 1 }, "next proposer");
    check!(Ballot { seqno: 1, proposer: 2 }.successor(3) == Ballot { seqno: 2, proposer: 0 }, "wraps to next round");
    check!(!Ballot { seqno: 1, proposer: 3 }.is_valid_for(3), "proposer out of range");
    Ok(())
}

fn acceptor_votes_only_at_or_above_its_promise() -> TestResult {
    let mut a: Acceptor<3, 4, 64> = Acceptor::new(3);
    let b1 = Ballot::INITIAL;
    let b2 = Ballot { seqno: 1, proposer: 1 };
    check!(a.promise(b2), "promise to a higher ballot");
    check!(!a.promise(b1), "no promise to a lower ballot");
    check!(a.accept(b1, 0, b"x", 4) == Accepted::Stale, "vote below the promise");
    check!(a.vote_count() == 0, "stale 2a left no vote");
    check!(a.accept(b2, 0, b"x", 4) == Accepted::Voted, "vote at the promise");
    check!(a.vote_at(0).map(|v| v.bal) == Some(b2), "vote recorded");
    check!(a.invariant(4).is_ok(), "acceptor invariant");
    Ok(())
}

fn acceptor_truncates_at_the_quorum_checkpoint() -> TestResult {
    let mut a: Acceptor<3, 4, 64> = Acceptor::new(3);
    for opn in 0..4 {
        check!(a.accept(Ballot::INITIAL, opn, b"v", 4) == Accepted::Voted, "vote");
    }
    a.record_checkpoint(0, 3);
    a.record_checkpoint(1, 2);
    a.record_checkpoint(2, 0);
    let point = a.quorum_checkpoint(2);
    check!(point == 2, "quorum-th highest checkpoint");
    a.truncate(point);
    check!(a.votes().all(|v| v.opn >= 2), "votes below the truncation point are gone");
    check!(a.accept(Ballot::INITIAL, 1, b"v", 4) == Accepted::Stale, "no vote below the truncation point");
    check!(a.invariant(4).is_ok(), "acceptor invariant");
    Ok(())
}

fn learner_decides_on_a_quorum_of_2b() -> TestResult {
    let mut l: Learner<4, 64> = Learner::default();
    let b = Ballot::INITIAL;
    l.keep_proposal(b, 0, b"batch", 0);
    l.process_2b(0, b, 0, 0);
    check!(l.decided(0, 2).is_none(), "one vote is not a quorum");
    l.process_2b(0, b, 0, 0);
    check!(l.decided(0, 2).is_none(), "a duplicate 2b does not count twice");
    l.process_2b(2, b, 0, 0);
    check!(l.decided(0, 2).and_then(|s| s.batch_with(None, b)) == Some(&b"batch"[..]), "two distinct senders decide");
    let higher = Ballot { seqno: 2, proposer: 0 };
    l.process_2b(1, higher, 1, 0);
    check!(l.max_ballot_seen == higher, "a higher ballot is tracked");
    Ok(())
}

fn batch_validation_refuses_garbage() -> TestResult {
    check!(batch::validate(&[0xff, 0xff, 0xff], 32).is_err(), "garbage batch");
    check!(batch::validate(&[], 32) == Ok(0), "the empty batch");
    Ok(())
}

fn fresh(me: usize) -> Result<Rep, &'static str> {
    Rep::new(config(), me, Counter::default(), Instant::ZERO).map_err(|_| "replica config")
}

fn replica_refuses_peers_it_does_not_know() -> TestResult {
    let mut r = fresh(1)?;
    let mut store = OutboxBuf::<16, 4096>::new();
    let mut out = store.outbox();
    let mut buf = [0u8; 64];
    let msg = encode(&config(), &RslMsg::OneA { bal: Ballot { seqno: 5, proposer: 2 } }, &mut buf)?;
    let before = r.status();
    let _ = r.handle(Instant::ZERO, Endpoint::v4([6, 6, 6, 6], 7000), msg, &mut out);
    check!(r.stats().unknown_sender == 1, "counted as unknown sender");
    check!(r.status().max_bal == before.max_bal, "no promise to a stranger");
    let _ = r.handle(Instant::ZERO, eps()[0], &[1, 2, 3], &mut out);
    check!(r.stats().decode_errors == 1, "garbage counted, not a panic");
    Ok(())
}

fn replica_refuses_2a_from_a_non_leader() -> TestResult {
    let mut r = fresh(1)?;
    let mut store = OutboxBuf::<16, 4096>::new();
    let mut out = store.outbox();
    let mut buf = [0u8; 64];
    let msg = encode(&config(), &RslMsg::TwoA { bal: Ballot::INITIAL, opn: 0, batch: Bytes(b"") }, &mut buf)?;
    let _ = r.handle(Instant::ZERO, eps()[2], msg, &mut out);
    check!(r.stats().invalid_messages == 1, "2a from a replica that does not lead the ballot");
    check!(r.acceptor().vote_count() == 0, "no vote");
    let step = r.handle(Instant::ZERO, eps()[0], msg, &mut out);
    check!(r.acceptor().vote_count() == 1, "2a from the leader of (1, 0) is accepted");
    check!(step.durable_state_changed, "a vote is durable state");
    let twob = out.iter().filter(|(_, b)| matches!(wire::decode(Protocol::Rsl, b), Ok(RslMsg::TwoB { .. }))).count();
    check!(twob == 3, "2b broadcast to every learner");
    Ok(())
}

fn proposer_of_view_1_0_leads_after_a_quorum_of_1b() -> TestResult {
    let mut sim = Sim::new();
    check!(sim.run_until(500, |s| s.reps[0].status().is_leader), "replica 0 leads view (1,0)");
    check!(!sim.reps[1].status().is_leader && !sim.reps[2].status().is_leader, "only one leader");
    Ok(())
}

fn full_outbox_is_counted_not_a_panic() -> TestResult {
    let mut r = fresh(0)?;
    let mut store = OutboxBuf::<1, 512>::new();
    let mut out = store.outbox();
    let _ = r.tick(Instant::ZERO, &mut out);
    check!(out.len() == 1, "one datagram fits");
    check!(r.stats().outbox_full > 0, "the rest is counted as outbox_full");
    Ok(())
}

fn client_matches_replies_and_retransmits() -> TestResult {
    let mut c: Client<3, D> = Client::new(&eps(), 10, 100, D).map_err(|_| "client")?;
    let mut store = OutboxBuf::<8, 4096>::new();
    let mut out = store.outbox();
    let seqno = c.submit(Instant::ZERO, b"inc", &mut out).map_err(|_| "submit")?;
    check!(seqno == 10 && out.len() == 1, "first try goes to one replica");
    out.clear();
    c.tick(Instant::from_millis(100), &mut out);
    check!(out.len() == 3, "a retry goes to every replica");
    let mut buf = [0u8; 64];
    let stale = encode(&config(), &RslMsg::Reply { seqno: 9, reply: Bytes(b"old") }, &mut buf)?;
    check!(c.handle(Instant::ZERO, eps()[0], stale).is_none(), "wrong seqno ignored");
    let mut buf2 = [0u8; 64];
    let good = encode(&config(), &RslMsg::Reply { seqno: 10, reply: Bytes(b"ok") }, &mut buf2)?;
    check!(c.handle(Instant::ZERO, CLIENT, good).is_none(), "reply from a non-replica ignored");
    check!(c.handle(Instant::ZERO, eps()[1], good).map(|d| d.reply) == Some(&b"ok"[..]), "matching reply");
    check!(c.pending().is_none(), "nothing outstanding");
    Ok(())
}

fn counter_and_kv_snapshots_round_trip() -> TestResult {
    let mut reply = [0u8; 64];
    let mut src: KvApp<4, 8, 16> = KvApp::new();
    let mut req = [0u8; 64];
    for (k, v) in [(&b"b"[..], &b"two"[..]), (b"a", b"one"), (b"c", b"")] {
        let n = KvOp::Put(Bytes(k), Bytes(v)).encode(&mut req).map_err(|_| "encode op")?;
        let m = src.apply(&req[..n], &mut reply);
        check!(KvReply::decode(&reply[..m]) == Some(KvReply::Done), "put done");
    }
    let mut snap = KvApp::<4, 8, 16>::new_snapshot();
    src.snapshot(&mut snap);
    let mut staging = KvApp::<4, 8, 16>::new_staging();
    let (mut off, total) = (0, KvApp::<4, 8, 16>::snapshot_len(&snap));
    let mut chunk = [0u8; 7];
    while off < total {
        let n = KvApp::<4, 8, 16>::snapshot_read(&snap, off, &mut chunk);
        KvApp::<4, 8, 16>::stage(&mut staging, off, &chunk[..n]).map_err(|_| "stage")?;
        off += n as u64;
    }
    let mut dst = KvApp::<4, 8, 16>::new();
    check!(dst.install(&mut staging, total - 1).is_err(), "wrong length refused");
    dst.install(&mut staging, total).map_err(|_| "install")?;
    check!(dst == src, "installed snapshot equals the source");

    let mut c = Counter::default();
    c.apply(b"", &mut reply);
    c.apply(b"", &mut reply);
    let mut cs = Counter::new_staging();
    let mut bytes = [0u8; 8];
    let mut csnap = Counter::new_snapshot();
    c.snapshot(&mut csnap);
    Counter::snapshot_read(&csnap, 0, &mut bytes);
    Counter::stage(&mut cs, 0, &bytes).map_err(|_| "stage counter")?;
    let mut c2 = Counter::default();
    c2.install(&mut cs, 8).map_err(|_| "install counter")?;
    check!(c2.value == 2, "counter snapshot");
    Ok(())
}

fn agreed(sim: &Sim) -> Result<(), &'static str> {
    let live: heapless::Vec<usize, 3> = (0..3).filter(|&i| sim.up[i]).collect();
    let first = &sim.reps[live[0]];
    for &i in &live[1..] {
        let r = &sim.reps[i];
        check!(r.status().ops_complete == first.status().ops_complete, "same number of operations executed");
        check!(r.executor().executed_digest == first.executor().executed_digest, "same executed batches (digest)");
        check!(r.app() == first.app(), "same application state");
    }
    for &i in &live {
        check!(sim.reps[i].check_invariants().is_ok(), "replica invariants");
    }
    Ok(())
}

fn settle(sim: &mut Sim) {
    let ops = (0..3).filter(|&i| sim.up[i]).map(|i| sim.reps[i].status().ops_complete).max().unwrap_or(0);
    sim.run_until(2000, |s| (0..3).filter(|&i| s.up[i]).all(|i| s.reps[i].status().ops_complete >= ops));
}

fn three_replicas_agree() -> TestResult {
    let mut sim = Sim::new();
    sim.increments(20, 2000)?;
    settle(&mut sim);
    agreed(&sim)?;
    check!(sim.reps[0].app().value == 20, "exactly 20 increments executed");
    Ok(())
}

fn three_replicas_agree_with_loss() -> TestResult {
    let mut sim = Sim::new();
    sim.loss_every = 10;
    sim.increments(20, 5000)?;
    check!(sim.lost > 0, "datagrams were lost");
    sim.loss_every = 0;
    settle(&mut sim);
    agreed(&sim)?;
    check!(sim.reps[0].app().value == 20, "exactly-once despite retransmissions");
    Ok(())
}

fn a_new_leader_after_the_leader_crashes() -> TestResult {
    let mut sim = Sim::new();
    sim.increments(5, 2000)?;
    let old = sim.leader().ok_or("a leader")?;
    let view = sim.reps[old].status().view;
    sim.up[old] = false;
    sim.increments(5, 5000)?;
    let new = sim.leader().ok_or("a new leader")?;
    check!(new != old, "the crashed replica does not lead");
    check!(sim.reps[new].status().view > view, "a later view");
    settle(&mut sim);
    agreed(&sim)?;
    Ok(())
}
