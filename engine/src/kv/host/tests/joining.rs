//! Hosts that start without state (`kv::join`), one test per rule.

use super::*;
use crate::kv::delegation::{DelegationMap, LOST};
use crate::kv::join::JoinProgress;
use std::vec::Vec;

const EPS: [Endpoint; 3] = [H0, H1, H2];

fn joining(me: usize, nonce: u64) -> Host {
    let mut config = KvConfig::new(&EPS).unwrap();
    config.params = params();
    Host::new_joining(config, me, Store::new(), nonce, T0).unwrap()
}

/// Runs the hosts (`None`: down) at `ms` until no datagram between them is left: ticks
/// first, then every datagram to a host is handled; datagrams to others are returned.
fn settle(hosts: &mut [Option<Host>], ms: u64) -> Vec<Sent> {
    let now = Instant::from_millis(ms);
    let mut queue: Vec<(Endpoint, Sent)> = Vec::new();
    let mut elsewhere = Vec::new();
    let mut buf = Buf::new();
    for (i, h) in hosts.iter_mut().enumerate() {
        let Some(h) = h else { continue };
        let mut out = buf.outbox();
        let _ = h.tick(now, &mut out);
        queue.extend(out.iter().map(|(dst, b)| (EPS[i], Sent { dst, bytes: heapless::Vec::from_slice(b).unwrap() })));
    }
    for _ in 0..10_000 {
        let Some((from, s)) = queue.pop() else { return elsewhere };
        let Some(i) = EPS.iter().position(|e| *e == s.dst) else {
            elsewhere.push(s);
            continue;
        };
        let Some(h) = hosts[i].as_mut() else { continue };
        let mut out = buf.outbox();
        let _ = h.handle(now, from, &s.bytes, &mut out);
        assert_eq!(h.check_invariants(), Ok(()));
        queue.extend(out.iter().map(|(dst, b)| (EPS[i], Sent { dst, bytes: heapless::Vec::from_slice(b).unwrap() })));
    }
    panic!("the hosts never went quiet");
}

fn join_all(hosts: &mut [Option<Host>]) {
    for ms in 0..5 {
        let _ = settle(hosts, ms * 10);
    }
}

/// A client's Set to `h`, its reply acknowledged.
fn set_acked(h: &mut Host, seqno: u64, key: u64, value: &[u8]) {
    let _ = set(h, seqno, key, value);
    let _ = run(h, C, &frame(&Frame::Ack { seqno }));
}

/// A client's Shard to `h`, the reply acknowledged; returns what `h` sent.
fn shard_acked(h: &mut Host, seqno: u64, range: KeyRange, to: Endpoint) -> Vec<Sent> {
    let sent = shard(h, seqno, range, to);
    let _ = run(h, C, &frame(&Frame::Ack { seqno }));
    sent
}

/// A client request to `h` and its answer bodies.
fn ask(h: &mut Host, base: u64, seqno: u64, body: &Body<'_>) -> Vec<Body<'static>> {
    let sent = run(h, C, &single(base, seqno, body));
    let owned: Vec<Sent> = sent;
    owned
        .iter()
        .filter_map(|s| s.body())
        .map(|b| match b {
            Body::Reply { req, key, value } => Body::Reply {
                req,
                key,
                value: value.map(|v| Bytes(std::boxed::Box::leak(v.0.to_vec().into_boxed_slice()))),
            },
            Body::Redirect { req, key, owner } => Body::Redirect { req, key, owner },
            Body::Error { req, error } => Body::Error { req, error },
            other => panic!("unexpected answer {other:?}"),
        })
        .collect()
}

#[test]
fn hosts_that_all_start_without_state_form_a_new_cluster() {
    let mut hosts = [Some(joining(0, 100)), Some(joining(1, 200)), Some(joining(2, 300))];
    assert!(hosts.iter().flatten().all(|h| h.joining().is_some() && !h.owns(5)));
    join_all(&mut hosts);
    let [Some(h0), Some(h1), Some(h2)] = &mut hosts else { unreachable!() };
    assert!(h0.joining().is_none() && h1.joining().is_none() && h2.joining().is_none(), "{:?}", h0.joining());
    assert!(h0.owns(0) && h0.owns(u64::MAX) && !h1.owns(5) && !h2.owns(5), "host 0 is born the root");
    // Clients that may have talked to an earlier incarnation restart their channels above
    // the nonce; a channel above it is served.
    let refused = run(h0, C, &single(7, 7, &Body::GetRequest { key: 5 }));
    assert!(matches!(
        refused[0].frame(),
        Frame::Refused { reason: Refusal::ChannelClosed { above: 100, lost: 0 }, .. }
    ));
    assert_eq!(
        ask(h0, 101, 101, &Body::SetRequest { key: 5, value: Some(Bytes(b"v")) }),
        [Body::Reply { req: 101, key: 5, value: None }]
    );
}

#[test]
fn a_joining_host_takes_no_message_of_any_channel() {
    let mut h = joining(0, 100);
    let before = h.clone();
    let sent = run(&mut h, C, &single(200, 200, &Body::SetRequest { key: 5, value: Some(Bytes(b"v")) }));
    assert!(sent.is_empty());
    let _ = run(&mut h, H1, &single(1, 1, &Body::GetRequest { key: 5 }));
    assert!(h == before, "nothing accepted while joining");
    assert_eq!(h.stats().ignored_messages, 2);
}

/// Host 0 holds keys 50 and 60, host 1 holds 3 and 7 (sharded there); host 0 then restarts
/// without state.
fn cluster_after_host_0_lost_its_state() -> [Option<Host>; 3] {
    let (mut h0, mut h1, h2) = (host(0), host(1), host(2));
    for (i, k) in [3u64, 7, 50, 60].into_iter().enumerate() {
        set_acked(&mut h0, i as u64 + 1, k, b"v");
    }
    let sent = shard_acked(&mut h0, 5, KeyRange::keys(0, 10), H1);
    let acks = deliver(&sent, H0, &mut h1);
    for a in &acks {
        let _ = run(&mut h0, H1, &a.bytes);
    }
    assert!(h1.owns(3) && h0.owns(50) && h0.outgoing().is_empty());
    let mut hosts = [Some(joining(0, 1_000)), Some(h1), Some(h2)];
    join_all(&mut hosts);
    hosts
}

#[test]
fn a_host_restarted_without_state_owns_nothing_and_reports_its_keys_lost() {
    let mut hosts = cluster_after_host_0_lost_its_state();
    let [Some(h0), Some(h1), _] = &mut hosts else { unreachable!() };
    assert!(h0.joining().is_none(), "it concluded");
    assert!((0..100).all(|k| !h0.owns(k)), "no second owner: it owns nothing");
    assert_eq!(h0.map().owner(3), 1, "host 1's ranges point to host 1");
    assert_eq!(h0.map().owner(50), LOST);
    assert_eq!(
        ask(h0, 2_000, 2_000, &Body::GetRequest { key: 50 }),
        [Body::Error { req: 2_000, error: KvError::Lost }]
    );
    assert_eq!(
        ask(h0, 2_000, 2_001, &Body::SetRequest { key: 60, value: Some(Bytes(b"w")) }),
        [Body::Error { req: 2_001, error: KvError::Lost }]
    );
    assert_eq!(ask(h0, 2_000, 2_002, &Body::GetRequest { key: 3 }), [Body::Redirect { req: 2_002, key: 3, owner: H1 }]);
    // Old clients' requests may have run on the lost incarnation: refused, possibly executed.
    let refused = run(h0, C2, &single(5, 9, &Body::GetRequest { key: 3 }));
    assert!(matches!(
        refused[0].frame(),
        Frame::Refused { reason: Refusal::ChannelClosed { above: 1_000, lost: 1_000 }, .. }
    ));
    // Host 1 still serves its keys.
    assert!(h1.owns(3) && h1.owns(7));
}

#[test]
fn hosts_talk_again_on_new_channels_after_a_restart_without_state() {
    let mut hosts = cluster_after_host_0_lost_its_state();
    // Host 1 moves [0, 5) to the new host 0, which then serves it.
    {
        let [Some(h0), Some(h1), _] = &mut hosts else { unreachable!() };
        let sent = run(h1, C, &single(10, 10, &Body::Shard { range: KeyRange::keys(0, 5), recipient: H0 }));
        for a in deliver(&sent, H1, h0) {
            let _ = run(h1, H0, &a.bytes);
        }
        assert!(h0.owns(3) && !h1.owns(3) && h1.outgoing().is_empty());
        assert_eq!(h0.storage().get(3), Some(&b"v"[..]));
    }
}

#[test]
fn a_new_incarnation_ends_what_its_peers_had_in_flight_with_the_old_one() {
    let mut h0 = host(0);
    set_acked(&mut h0, 1, 3, b"v");
    // A Delegate to host 1 that host 1 never acknowledges.
    let _ = shard_acked(&mut h0, 2, KeyRange::keys(0, 10), H1);
    assert_eq!(h0.outgoing().len(), 1);
    let mut hosts = [Some(h0), Some(joining(1, 5_000)), Some(host(2))];
    join_all(&mut hosts);
    let [Some(h0), Some(h1), _] = &mut hosts else { unreachable!() };
    assert!(h0.outgoing().is_empty(), "the transfer to the dead incarnation is dropped");
    assert_eq!(h0.reliable().peer(1).unwrap().unacked(), 0);
    assert_eq!(h1.map().owner(3), LOST, "its range had no owner but the transfer: lost");
    assert!(!h0.owns(3) && !h1.owns(3));
}

#[test]
fn a_transfer_from_a_dead_incarnation_is_dropped_with_its_pairs() {
    let (mut h0, mut h1) = (host(0), host(1));
    for k in 0..12u64 {
        set_acked(&mut h0, k + 1, k, &[b'x'; 60]);
    }
    let sent = shard_acked(&mut h0, 13, KeyRange::keys(0, 12), H1);
    let delegates: Vec<&Sent> = sent.iter().filter(|s| matches!(s.body(), Some(Body::Delegate { .. }))).collect();
    assert!(delegates.len() > 1, "a transfer of several parts");
    let _ = run(&mut h1, H0, &delegates[0].bytes);
    assert!(h1.incoming(0).is_some() && !h1.storage().is_empty() && h1.reserved_pairs() > 0);
    let mut hosts = [Some(joining(0, 5_000)), Some(h1), Some(host(2))];
    join_all(&mut hosts);
    let [_, Some(h1), _] = &mut hosts else { unreachable!() };
    assert!(h1.incoming(0).is_none() && h1.storage().is_empty() && h1.reserved_pairs() == 0);
}

#[test]
fn a_host_that_answered_an_earlier_incarnation_makes_the_new_one_wait() {
    // Host 0 (first incarnation) asked host 1; both joining. Host 0 restarts before host 1
    // is born: its new incarnation must not be born from host 1's answer alone.
    let mut first = [Some(joining(0, 100)), Some(joining(1, 200)), None];
    let _ = settle(&mut first, 0);
    let [_, Some(h1), _] = first else { unreachable!() };
    let mut hosts = [Some(joining(0, 150)), Some(h1), None];
    let _ = settle(&mut hosts, 10);
    let h0 = hosts[0].as_ref().unwrap();
    assert!(h0.joining().is_some());
    assert_eq!(h0.joining().unwrap().hosts[1], JoinProgress { cursor: None, joining: true, seen_other: true });
}

#[test]
fn an_earlier_incarnations_question_is_ignored_and_a_repeated_one_changes_nothing() {
    let mut h1 = host(1);
    let ask0 = |nonce| frame(&Frame::Join { nonce, from_key: 0 });
    assert_eq!(run(&mut h1, H0, &ask0(500)).len(), 1);
    let before = h1.clone();
    let mut buf = Buf::new();
    let step = h1.handle(T0, H0, &ask0(500), &mut buf.outbox());
    assert!(!step.log_input && h1 == before, "a repeated question changes nothing");
    assert!(run(&mut h1, H0, &ask0(400)).is_empty(), "an older incarnation's question");
    assert!(h1 == before);
}

#[test]
fn answers_are_paged_to_fit_datagrams() {
    // Host 1 owns two runs and moves a third: a page with room for one run at a time still
    // carries them all.
    let (mut h0, mut h1) = (host(0), host(1));
    for (i, k) in [0u64, 10, 20].into_iter().enumerate() {
        set_acked(&mut h0, i as u64 + 1, k, b"v");
    }
    for (seq, lo) in [(4, 0u64), (5, 20)] {
        let sent = shard_acked(&mut h0, seq, KeyRange::keys(lo, lo + 5), H1);
        for a in deliver(&sent, H0, &mut h1) {
            let _ = run(&mut h0, H1, &a.bytes);
        }
    }
    let _ = shard_acked(&mut h1, 1, KeyRange::keys(0, 5), H2);
    let mut buf = [0u8; 8];
    let (len, next) = h1.page_of_runs(0, &mut buf);
    let first: Vec<_> = crate::kv::join::runs(&buf[..len]).collect();
    assert_eq!(first, [Ok((KeyRange::keys(0, 5), 2))], "the moving range first");
    assert_eq!(next, Some(20));
    let (len, next) = h1.page_of_runs(20, &mut buf);
    assert_eq!(crate::kv::join::runs(&buf[..len]).collect::<Vec<_>>(), [Ok((KeyRange::keys(20, 25), 1))]);
    assert_eq!(next, None);
    let mut hosts = [Some(joining(0, 9_000)), Some(h1), Some(host(2))];
    join_all(&mut hosts);
    let h0 = hosts[0].as_ref().unwrap();
    assert!(h0.joining().is_none());
    assert_eq!((h0.map().owner(3), h0.map().owner(22), h0.map().owner(12)), (2, 1, LOST));
}

#[test]
fn a_cluster_of_one_host_is_born_at_once() {
    let mut config = KvConfig::new(&[H0]).unwrap();
    config.params = params();
    let h = Host::new_joining(config, 0, Store::new(), 100, T0).unwrap();
    assert!(h.joining().is_none() && h.owns(0) && h.owns(u64::MAX));
}

fn join_reply(nonce: u64, base: u64, joining: bool, runs: &[u8]) -> heapless::Vec<u8, 512> {
    frame(&Frame::JoinReply { nonce, base, joining, seen_other: false, from_key: 0, next: None, runs: Bytes(runs) })
}

#[test]
fn a_malformed_or_stale_answer_changes_nothing() {
    let mut h = joining(0, 100);
    let mut buf = Buf::new();
    let _ = h.tick(T0, &mut buf.outbox());
    let mut run = [0u8; 32];
    let good_run = crate::kv::join::push_run(&mut run, 0, KeyRange::keys(0, 5), 1).unwrap();
    let bad_owner = crate::kv::join::push_run(&mut run, good_run, KeyRange::keys(5, 9), 7).unwrap();
    let cases: [(&str, heapless::Vec<u8, 512>, Endpoint); 6] = [
        ("base 0", join_reply(100, 0, false, &[]), H1),
        ("base beyond the largest", join_reply(100, crate::kv::reliable::MAX_CHANNEL_BASE + 1, false, &[]), H1),
        ("an owner that is no host", join_reply(100, 5, false, &run[good_run..bad_owner]), H1),
        ("a joining host with ranges", join_reply(100, 5, true, &run[..good_run]), H1),
        ("another incarnation's nonce", join_reply(99, 5, false, &[]), H1),
        ("from no host", join_reply(100, 5, false, &[]), C),
    ];
    for (what, d, from) in cases {
        let before = h.clone();
        let step = h.handle(T0, from, &d, &mut buf.outbox());
        assert!(!step.log_input && h == before, "{what}: nothing changes");
    }
    assert_eq!(h.stats().invalid_messages, 4);
    assert_eq!(h.stats().ignored_messages, 1);
    assert_eq!(h.stats().unknown_sender, 1);
    // A good answer from host 1 with that run is taken; the largest base is a base.
    let step = h.handle(T0, H1, &join_reply(100, 5, false, &run[..good_run]), &mut buf.outbox());
    assert!(step.log_input && h.joining().unwrap().hosts[1].cursor.is_none());
    assert_eq!(h.map().owner(3), 1);
    assert_eq!(h.reliable().fixed_base(1), Some(5));
    let largest = crate::kv::reliable::MAX_CHANNEL_BASE;
    let step = h.handle(T0, H2, &join_reply(100, largest, false, &[]), &mut buf.outbox());
    assert!(step.log_input && h.joining().is_none(), "host 2's answer ends the join");
    assert_eq!(h.reliable().fixed_base(2), Some(largest));
}

#[test]
fn a_question_from_the_hosts_own_address_is_refused() {
    let mut h = host(1);
    let before = h.clone();
    assert!(run(&mut h, H1, &frame(&Frame::Join { nonce: 500, from_key: 0 })).is_empty());
    assert!(h == before && h.stats().invalid_messages == 1);
}

#[test]
fn forgetting_one_hosts_transfer_keeps_the_reservations_of_anothers() {
    // Host 1 receives part 0 of a two-part transfer from host 0 and from host 2.
    let mut h1 = host(1);
    for (src_ep, src) in [(H0, 0usize), (H2, 2)] {
        let mut sender = host(src);
        if src == 2 {
            // Host 2 needs a range first: host 0 gives it [100, 200).
            let mut h0 = host(0);
            for k in 0..7u64 {
                set_acked(&mut h0, k + 1, 100 + k, &[b'y'; 64]);
            }
            let sent = shard_acked(&mut h0, 8, KeyRange::keys(100, 200), H2);
            for a in deliver(&sent, H0, &mut sender) {
                let _ = run(&mut h0, H2, &a.bytes);
            }
        } else {
            for k in 0..7u64 {
                set_acked(&mut sender, k + 1, k, &[b'x'; 64]);
            }
        }
        let range = if src == 2 { KeyRange::keys(100, 200) } else { KeyRange::keys(0, 12) };
        let seqno = if src == 2 { 1 } else { 8 };
        let sent = shard_acked(&mut sender, seqno, range, H1);
        let first = sent.iter().find(|s| matches!(s.body(), Some(Body::Delegate { .. }))).unwrap();
        let _ = run(&mut h1, src_ep, &first.bytes);
        assert!(h1.incoming(src).is_some());
    }
    let from_2 = h1.incoming(2).map(|i| (i.total_pairs - i.applied) as usize).unwrap();
    assert!(from_2 > 0);
    let _ = run(&mut h1, H0, &frame(&Frame::Join { nonce: 700, from_key: 0 }));
    assert!(h1.incoming(0).is_none() && h1.incoming(2).is_some());
    assert_eq!(h1.reserved_pairs(), from_2, "host 2's reservation stays");
}

#[test]
fn the_host_invariant_rejects_each_broken_clause_of_a_joining_host() {
    let good = joining(0, 100);
    assert_eq!(good.check_invariants(), Ok(()));
    let expect = "a joining host holds or owns something";
    let mut h = good.clone();
    h.store.set(5, b"v").unwrap();
    assert_eq!(h.check_invariants(), Err(expect), "a stored pair");
    let mut h = good.clone();
    h.outgoing
        .push(Outgoing { transfer: 1, recipient: 1, range: KeyRange::keys(0, 5), last_seqno: 101, pairs: 0 })
        .unwrap();
    assert_eq!(h.check_invariants(), Err(expect), "an outgoing transfer");
    let mut h = good.clone();
    h.incoming[1] =
        Some(Incoming { transfer: 1, range: KeyRange::keys(0, 5), parts: 2, next_part: 1, total_pairs: 0, applied: 0 });
    assert_eq!(h.check_invariants(), Err(expect), "an incoming transfer");
    let mut h = good.clone();
    h.map = DelegationMap::new(0);
    assert_eq!(h.check_invariants(), Err(expect), "a key owned");
}
