//! Channel rules, one test each, named after the rule.

use super::pending::Pending;
use super::*;
use crate::outbox::OutboxBuf;
use crate::wire;

type Rel = Reliable<4, 8, 256>;
const A: Endpoint = Endpoint::v4([10, 0, 0, 1], 1);
const B: Endpoint = Endpoint::v4([10, 0, 0, 2], 1);

fn params() -> ReliableParams {
    ReliableParams { retransmit_ms: 10, max_retransmit_ms: 40, max_unacked_per_peer: 3, give_up_after: 3 }
}

fn frames(out: &Outbox<'_>) -> heapless::Vec<Frame<'static>, 16> {
    // Re-decode into 'static by leaking nothing: only the header fields are compared.
    out.iter()
        .map(|(_, d)| match wire::decode::<Frame<'_>>(Protocol::Kv, d).unwrap() {
            Frame::Single { base, seqno, ack, .. } => Frame::Single { base, seqno, ack, body: Bytes(&[]) },
            Frame::Ack { seqno } => Frame::Ack { seqno },
            Frame::Refused { seqno, reason } => Frame::Refused { seqno, reason },
            Frame::Join { nonce, from_key } => Frame::Join { nonce, from_key },
            Frame::JoinReply { .. } | Frame::StatusRequest { .. } | Frame::StatusReply { .. } => {
                panic!("the reliable layer never sends a join answer or a status frame")
            }
        })
        .collect()
}

#[test]
fn seqnos_start_at_the_base_and_grow_by_one() {
    let mut store = OutboxBuf::<8, 2048>::new();
    let mut out = store.outbox();
    let mut stats = Stats::default();
    let mut r = Rel::new(Protocol::Kv, 256, params(), 1).unwrap();
    let b = r.add_peer(B, PeerKind::Fixed { base: 1 }).unwrap();
    assert_eq!(r.send(Instant::ZERO, b, &7u32, &mut out, &mut stats), Ok(1));
    assert_eq!(r.send(Instant::ZERO, b, &8u32, &mut out, &mut stats), Ok(2));
    let f = frames(&out);
    assert_eq!(f[0], Frame::Single { base: 1, seqno: 1, ack: 0, body: Bytes(&[]) });
    assert_eq!(f[1], Frame::Single { base: 1, seqno: 2, ack: 0, body: Bytes(&[]) });
    assert_eq!(r.invariant(), Ok(()));
}

#[test]
fn out_of_order_message_is_not_accepted() {
    let mut r = Rel::new(Protocol::Kv, 256, params(), 1).unwrap();
    let a = r.add_peer(A, PeerKind::Fixed { base: 1 }).unwrap();
    assert_eq!(r.classify(a, 1, 2), Verdict::Ahead);
    r.accept(Instant::ZERO, a, 1, 2);
    assert_eq!(r.peer(a).unwrap().last_accepted(), Some(0), "ahead message changed nothing");
    assert_eq!(r.classify(a, 1, 1), Verdict::New);
    r.accept(Instant::ZERO, a, 1, 1);
    assert_eq!(r.classify(a, 1, 2), Verdict::New);
}

#[test]
fn duplicate_is_reacked_with_the_cumulative_ack() {
    let mut store = OutboxBuf::<8, 2048>::new();
    let mut out = store.outbox();
    let mut stats = Stats::default();
    let mut r = Rel::new(Protocol::Kv, 256, params(), 1).unwrap();
    let a = r.add_peer(A, PeerKind::Fixed { base: 1 }).unwrap();
    r.accept(Instant::ZERO, a, 1, 1);
    r.accept(Instant::ZERO, a, 1, 2);
    assert_eq!(r.classify(a, 1, 1), Verdict::Duplicate);
    r.send_ack(a, &mut out, &mut stats);
    assert_eq!(frames(&out)[0], Frame::Ack { seqno: 2 });
}

#[test]
fn cumulative_ack_clears_the_queue_and_stale_or_future_acks_do_not() {
    let mut store = OutboxBuf::<8, 2048>::new();
    let mut out = store.outbox();
    let mut stats = Stats::default();
    let mut r = Rel::new(Protocol::Kv, 256, params(), 1).unwrap();
    let b = r.add_peer(B, PeerKind::Fixed { base: 1 }).unwrap();
    for v in 0..3u32 {
        r.send(Instant::ZERO, b, &v, &mut out, &mut stats).unwrap();
    }
    assert_eq!(r.on_ack(Instant::ZERO, b, 4), AckOutcome::Invalid, "acks a seqno never sent");
    assert_eq!(r.on_ack(Instant::ZERO, b, 2), AckOutcome::Progress);
    assert_eq!(r.peer(b).unwrap().unacked(), 1);
    assert_eq!(r.on_ack(Instant::ZERO, b, 1), AckOutcome::Stale);
    assert_eq!(r.pending(), 1);
    assert_eq!(r.invariant(), Ok(()));
}

#[test]
fn an_ack_keeps_every_other_peers_messages_whole() {
    let mut store = OutboxBuf::<8, 2048>::new();
    let mut out = store.outbox();
    let mut stats = Stats::default();
    let mut r = Rel::new(Protocol::Kv, 256, params(), 1).unwrap();
    let (a, b) =
        (r.add_peer(A, PeerKind::Fixed { base: 1 }).unwrap(), r.add_peer(B, PeerKind::Fixed { base: 1 }).unwrap());
    let long = [7u8; 100];
    r.send(Instant::ZERO, a, &&long[..], &mut out, &mut stats).unwrap();
    r.send(Instant::ZERO, b, &&[1u8, 2][..], &mut out, &mut stats).unwrap();
    r.send(Instant::ZERO, b, &&[3u8; 40][..], &mut out, &mut stats).unwrap();
    // Acking A's message frees the first slot; the last message (B's) moves into it.
    assert_eq!(r.on_ack(Instant::ZERO, a, 1), AckOutcome::Progress);
    let mut left: heapless::Vec<(u64, heapless::Vec<u8, 64>), 4> =
        r.unacked_bodies(b).map(|(s, m)| (s, heapless::Vec::from_slice(m).unwrap())).collect();
    left.sort_unstable_by_key(|m| m.0);
    let want = |v: &[u8]| {
        let mut buf = [0u8; 64];
        heapless::Vec::<u8, 64>::from_slice(postcard::to_slice(v, &mut buf).unwrap()).unwrap()
    };
    assert_eq!(left.len(), 2);
    assert_eq!(left[0], (1, want(&[1, 2])));
    assert_eq!(left[1], (2, want(&[3; 40])));
    assert_eq!(r.unacked_bodies(a).count(), 0);
    assert_eq!(r.invariant(), Ok(()));
}

#[test]
fn equality_ignores_the_bytes_past_a_message() {
    let mut store = OutboxBuf::<8, 2048>::new();
    let mut out = store.outbox();
    let mut stats = Stats::default();
    let new = || Rel::new(Protocol::Kv, 256, params(), 1).unwrap();
    let (mut moved, mut fresh) = (new(), new());
    for r in [&mut moved, &mut fresh] {
        r.add_peer(A, PeerKind::Fixed { base: 1 }).unwrap();
        r.add_peer(B, PeerKind::Fixed { base: 1 }).unwrap();
    }
    // `moved`: B's short message is copied into the slot A's long one used, whose tail
    // bytes stay behind. `fresh`: the same messages sent and acked in an order that
    // leaves B's message in a never-used slot.
    moved.send(Instant::ZERO, 0, &&[9u8; 100][..], &mut out, &mut stats).unwrap();
    moved.send(Instant::ZERO, 1, &&[1u8][..], &mut out, &mut stats).unwrap();
    moved.on_ack(Instant::ZERO, 0, 1);
    fresh.send(Instant::ZERO, 0, &&[9u8; 100][..], &mut out, &mut stats).unwrap();
    fresh.on_ack(Instant::ZERO, 0, 1);
    fresh.send(Instant::ZERO, 1, &&[1u8][..], &mut out, &mut stats).unwrap();
    assert_eq!(moved, fresh);
    let hash = crate::rsl::app::hash_of::<Rel>;
    assert_eq!(hash(&moved), hash(&fresh));
}

#[test]
fn full_queue_refuses_new_messages() {
    let mut store = OutboxBuf::<8, 2048>::new();
    let mut out = store.outbox();
    let mut stats = Stats::default();
    let mut r = Rel::new(Protocol::Kv, 256, params(), 1).unwrap();
    let b = r.add_peer(B, PeerKind::Fixed { base: 1 }).unwrap();
    for v in 0..3u32 {
        r.send(Instant::ZERO, b, &v, &mut out, &mut stats).unwrap();
    }
    assert_eq!(r.room(b), 0);
    assert_eq!(r.send(Instant::ZERO, b, &9u32, &mut out, &mut stats), Err(SendError::QueueFull));
    assert_eq!(r.peer(b).unwrap().next_seqno(), 4, "refused message took no seqno");
    assert_eq!(r.send(Instant::ZERO, 3, &9u32, &mut out, &mut stats), Err(SendError::UnknownPeer));
    let big = [0u8; 300];
    r.on_ack(Instant::ZERO, b, 3);
    assert_eq!(r.send(Instant::ZERO, b, &Bytes(&big), &mut out, &mut stats), Err(SendError::TooLarge));
}

#[test]
fn unacked_messages_are_retransmitted_in_order_with_backoff() {
    let mut store = OutboxBuf::<8, 2048>::new();
    let mut out = store.outbox();
    let mut stats = Stats::default();
    let mut r = Rel::new(Protocol::Kv, 256, params(), 5).unwrap();
    let b = r.add_peer(B, PeerKind::Client).unwrap();
    r.send(Instant::ZERO, b, &1u32, &mut out, &mut stats).unwrap();
    r.send(Instant::ZERO, b, &2u32, &mut out, &mut stats).unwrap();
    out.clear();
    assert_eq!(r.next_deadline(), Instant::from_millis(10));
    r.tick(Instant::from_millis(9), &mut out, &mut stats);
    assert!(out.is_empty());
    r.tick(Instant::from_millis(10), &mut out, &mut stats);
    let f = frames(&out);
    assert_eq!(
        &f[..],
        &[
            Frame::Single { base: 5, seqno: 5, ack: 0, body: Bytes(&[]) },
            Frame::Single { base: 5, seqno: 6, ack: 0, body: Bytes(&[]) }
        ]
    );
    assert_eq!(r.next_deadline(), Instant::from_millis(30), "delay doubled to 20 ms");
    r.tick(Instant::from_millis(30), &mut out, &mut stats);
    r.tick(Instant::from_millis(70), &mut out, &mut stats);
    assert_eq!(r.next_deadline(), Instant::from_millis(110), "capped at 40 ms");
    r.on_ack(Instant::from_millis(70), b, 5);
    assert_eq!(r.next_deadline(), Instant::from_millis(80), "progress resets the delay");
    r.on_ack(Instant::from_millis(70), b, 6);
    assert_eq!(r.next_deadline(), Instant::NEVER);
    assert_eq!(r.retransmits(), 6);
}

#[test]
fn a_restarted_peer_resets_the_channel_and_stale_incarnations_are_ignored() {
    let mut store = OutboxBuf::<8, 2048>::new();
    let mut out = store.outbox();
    let mut stats = Stats::default();
    let mut r = Rel::new(Protocol::Kv, 256, params(), 1).unwrap();
    let c = r.add_peer(A, PeerKind::Client).unwrap();
    assert_eq!(r.classify(c, 100, 101), Verdict::Ahead, "first contact must be the channel's first message");
    r.accept(Instant::ZERO, c, 100, 100);
    r.send(Instant::ZERO, c, &1u32, &mut out, &mut stats).unwrap();
    assert_eq!(r.classify(c, 50, 50), Verdict::Stale);
    assert_eq!(r.classify(c, 200, 201), Verdict::Ahead);
    assert_eq!(r.classify(c, 200, 200), Verdict::Restarted);
    assert_eq!(r.room_after(c, Verdict::Restarted), 3);
    r.accept(Instant::ZERO, c, 200, 200);
    assert_eq!(r.pending(), 0, "messages for the dead incarnation dropped");
    out.clear();
    r.send(Instant::ZERO, c, &2u32, &mut out, &mut stats).unwrap();
    assert_eq!(
        frames(&out)[0],
        Frame::Single { base: 2, seqno: 2, ack: 200, body: Bytes(&[]) },
        "carries the new incarnation's ack"
    );
    assert_eq!(r.on_ack(Instant::ZERO, c, 1), AckOutcome::Stale, "old incarnation's ack acks nothing new");
    assert_eq!(r.invariant(), Ok(()));
}

#[test]
fn a_fixed_peer_cannot_restart() {
    let mut r = Rel::new(Protocol::Kv, 256, params(), 1).unwrap();
    let a = r.add_peer(A, PeerKind::Fixed { base: 1 }).unwrap();
    assert_eq!(r.classify(a, 9, 9), Verdict::Invalid);
    assert_eq!(r.classify(a, 1, 0), Verdict::Invalid);
}

const C1: Endpoint = Endpoint::v4([10, 0, 1, 1], 9);
const C2: Endpoint = Endpoint::v4([10, 0, 1, 2], 9);
const C3: Endpoint = Endpoint::v4([10, 0, 1, 3], 9);

/// A table of 4: fixed peer A, then clients C1 and C2 (each accepted one message at `base`
/// at 1 ms and 2 ms), C3 at 3 ms.
fn full_table() -> Rel {
    let mut r = Rel::new(Protocol::Kv, 256, params(), 1).unwrap();
    r.add_peer(A, PeerKind::Fixed { base: 1 }).unwrap();
    for (n, ep) in [C1, C2, C3].iter().enumerate() {
        let now = Instant::from_millis(n as u64 + 1);
        let (i, evicted) = r.admit(now, *ep).unwrap();
        assert!(!evicted);
        r.accept(now, i, 100, 100);
    }
    r
}

#[test]
fn admit_evicts_the_least_recently_active_settled_client_and_never_a_fixed_peer() {
    let mut store = OutboxBuf::<8, 2048>::new();
    let mut out = store.outbox();
    let mut stats = Stats::default();
    let mut r = full_table();
    // C1 is the least recently active, but has a message unacked: not settled.
    let c1 = r.index_of(C1).unwrap();
    r.send(Instant::from_millis(5), c1, &1u32, &mut out, &mut stats).unwrap();
    let (i, evicted) = r.admit(Instant::from_millis(6), B).unwrap();
    assert!(evicted);
    r.accept(Instant::from_millis(6), i, 7, 7);
    assert_eq!(r.index_of(C2), None, "C2: settled, least recently active");
    assert_eq!(r.index_of(B), Some(i));
    assert_eq!(r.index_of(A), Some(0), "the fixed peer keeps its index");
    assert_eq!(r.unacked_bodies(r.index_of(C1).unwrap()).count(), 1, "C1's message kept, renumbered");
    assert_eq!(r.invariant(), Ok(()));
    assert_eq!(r.evict(0), None, "a fixed peer is never evicted");
}

#[test]
fn a_full_table_of_unsettled_clients_refuses_a_newcomer() {
    let mut store = OutboxBuf::<8, 2048>::new();
    let mut out = store.outbox();
    let mut stats = Stats::default();
    let mut r = full_table();
    for ep in [C1, C2, C3] {
        let i = r.index_of(ep).unwrap();
        r.send(Instant::ZERO, i, &1u32, &mut out, &mut stats).unwrap();
    }
    assert!(!r.can_admit());
    assert_eq!(r.admit(Instant::ZERO, B), Err(Refusal::TooManyPeers));
    assert_eq!(r.peers().len(), 4, "nobody evicted");
}

#[test]
fn an_evicted_channel_is_closed_for_good_and_only_a_base_above_its_seqnos_opens_a_new_one() {
    let mut r = full_table();
    let c2 = r.index_of(C2).unwrap();
    r.accept(Instant::ZERO, c2, 100, 101);
    assert_eq!(r.classify_unknown(C2, 100, 100), Verdict::New, "before eviction nothing is closed");
    assert_eq!(r.evict(c2), Some(evict::Eviction::Settled));
    for (base, seqno) in [(100, 100), (100, 102), (101, 101), (50, 50)] {
        assert_eq!(r.classify_unknown(C2, base, seqno), Verdict::Closed, "({base}, {seqno})");
    }
    assert_eq!(r.closed_refusal(C2), Refusal::ChannelClosed { above: 101, lost: 0 });
    assert_eq!(r.classify_unknown(C2, 102, 102), Verdict::New);
    assert_eq!(r.classify_unknown(C2, 102, 103), Verdict::Ahead);
    assert_eq!(r.classify_unknown(C2, u64::MAX, u64::MAX), Verdict::Invalid, "base above MAX_CHANNEL_BASE");
}

#[test]
fn a_client_that_acks_nothing_is_given_up_after_the_round_limit_with_its_messages() {
    let mut store = OutboxBuf::<8, 2048>::new();
    let mut out = store.outbox();
    let mut stats = Stats::default();
    let mut r = full_table();
    let c1 = r.index_of(C1).unwrap();
    r.send(Instant::ZERO, c1, &1u32, &mut out, &mut stats).unwrap();
    let next = r.peer(c1).unwrap().next_seqno();
    // give_up_after is 3: three rounds of retransmission, then given up at the fourth.
    let mut abandoned = 0;
    for round in 0..4 {
        out.clear();
        abandoned += r.tick(r.next_deadline(), &mut out, &mut stats);
        assert_eq!((out.len(), abandoned), if round < 3 { (1, 0) } else { (0, 1) }, "round {round}");
    }
    assert_eq!(r.index_of(C1), None);
    assert_eq!(r.pending(), 0);
    assert_eq!(r.closed_refusal(C1), Refusal::ChannelClosed { above: 100, lost: 100 });
    // Its replacement's channel starts above every seqno sent on the abandoned one.
    let (i, _) = r.admit(Instant::ZERO, C1).unwrap();
    r.accept(Instant::ZERO, i, 101, 101);
    assert!(r.peer(i).unwrap().send_base() >= next);
    assert_eq!(r.invariant(), Ok(()));
}

#[test]
fn an_ack_making_progress_resets_the_rounds_towards_giving_up() {
    let mut store = OutboxBuf::<8, 2048>::new();
    let mut out = store.outbox();
    let mut stats = Stats::default();
    let mut r = full_table();
    let c1 = r.index_of(C1).unwrap();
    let s = r.send(Instant::ZERO, c1, &1u32, &mut out, &mut stats).unwrap();
    r.send(Instant::ZERO, c1, &2u32, &mut out, &mut stats).unwrap();
    for _ in 0..3 {
        r.tick(r.next_deadline(), &mut out, &mut stats);
    }
    assert_eq!(r.peer(c1).unwrap().rounds_without_progress(), 3);
    r.on_ack(r.next_deadline(), c1, s);
    assert_eq!(r.peer(c1).unwrap().rounds_without_progress(), 0);
    assert_eq!(r.tick(r.next_deadline(), &mut out, &mut stats), 0, "not given up");
    assert!(r.index_of(C1).is_some());
}

#[test]
fn restart_send_starts_above_the_floor_and_drops_the_dead_channels_messages() {
    let mut store = OutboxBuf::<8, 2048>::new();
    let mut out = store.outbox();
    let mut stats = Stats::default();
    let mut r = Rel::new(Protocol::Kv, 256, params(), 10).unwrap();
    let h = r.add_peer(A, PeerKind::Server).unwrap();
    r.send(Instant::ZERO, h, &1u32, &mut out, &mut stats).unwrap();
    r.send(Instant::ZERO, h, &2u32, &mut out, &mut stats).unwrap();
    r.restart_send(h, 500);
    assert_eq!(r.pending(), 0);
    let p = r.peer(h).unwrap();
    assert_eq!((p.send_base(), p.next_seqno(), p.unacked()), (501, 501, 0));
    r.restart_send(h, 3);
    assert_eq!(r.peer(h).unwrap().send_base(), 501, "never below a seqno already used");
    r.restart_send(h, u64::MAX);
    assert_eq!(r.peer(h).unwrap().send_base(), MAX_CHANNEL_BASE + 1, "saturates, no overflow");
    assert_eq!(r.invariant(), Ok(()));
}

#[test]
fn a_servers_new_channel_restarts_only_the_receive_side() {
    let mut store = OutboxBuf::<8, 2048>::new();
    let mut out = store.outbox();
    let mut stats = Stats::default();
    let mut r = Rel::new(Protocol::Kv, 256, params(), 10).unwrap();
    let h = r.add_peer(A, PeerKind::Server).unwrap();
    r.accept(Instant::ZERO, h, 1, 1);
    r.send(Instant::ZERO, h, &1u32, &mut out, &mut stats).unwrap();
    assert_eq!(r.classify(h, 50, 50), Verdict::Restarted);
    r.accept(Instant::ZERO, h, 50, 50);
    assert_eq!(r.peer(h).unwrap().last_accepted(), Some(50));
    assert_eq!(r.pending(), 1, "our request to the server is kept");
    assert_eq!(r.classify(h, 1, 2), Verdict::Stale, "the server's old channel is stale");
}

#[test]
fn with_the_default_parameters_a_silent_client_is_given_up_14_35_s_after_the_first_send() {
    let mut store = OutboxBuf::<8, 2048>::new();
    let mut out = store.outbox();
    let mut stats = Stats::default();
    let mut r = Rel::new(Protocol::Kv, 256, ReliableParams::default(), 1).unwrap();
    let (c, _) = r.admit(Instant::ZERO, C1).unwrap();
    r.accept(Instant::ZERO, c, 5, 5);
    r.send(Instant::ZERO, c, &1u32, &mut out, &mut stats).unwrap();
    let mut at = Instant::ZERO;
    while r.index_of(C1).is_some() {
        at = r.next_deadline();
        out.clear();
        r.tick(at, &mut out, &mut stats);
    }
    assert_eq!(at, Instant::from_millis(14_350));
    assert_eq!(r.retransmits(), 12);
}

#[test]
fn an_imaged_peer_is_put_back_only_where_it_belongs() {
    let new = || {
        let mut r = Rel::new(Protocol::Kv, 256, params(), 1).unwrap();
        r.add_peer(A, PeerKind::Fixed { base: 1 }).unwrap();
        r
    };
    let host = *new().peer(0).unwrap();
    let client = Peer { ep: B, kind: PeerKind::Client, recv: Some((1, 1)), ..host };
    // A host in its own slot, any send base up to one past the largest channel base.
    assert_eq!(new().restore_peer(0, host), Ok(()));
    assert_eq!(new().restore_peer(0, Peer { send_base: MAX_CHANNEL_BASE + 1, ..host }), Ok(()));
    assert!(new().restore_peer(0, Peer { send_base: 0, ..host }).is_err());
    assert!(new().restore_peer(0, Peer { send_base: MAX_CHANNEL_BASE + 2, ..host }).is_err());
    // Not another endpoint, not a client, in a host's slot.
    assert!(new().restore_peer(0, Peer { ep: B, ..host }).is_err());
    assert!(new().restore_peer(0, Peer { kind: PeerKind::Client, ..host }).is_err());
    // A client next in the table, never a gap, never a host, never twice.
    assert_eq!(new().restore_peer(1, client), Ok(()));
    assert!(new().restore_peer(2, client).is_err());
    assert!(new().restore_peer(1, Peer { kind: PeerKind::Fixed { base: 1 }, ..client }).is_err());
    assert!(new().restore_peer(1, Peer { ep: A, ..client }).is_err());
}

#[test]
fn channel_parameters_are_checked_one_by_one() {
    let p = params();
    assert_eq!(p.validate(3), Ok(()), "three unacked fit a pool of three");
    assert_eq!(ReliableParams { max_retransmit_ms: p.retransmit_ms, ..p }.validate(8), Ok(()), "no backoff");
    let bad = |q: ReliableParams, u| match q.validate(u) {
        Err(ConfigError::Invalid(what)) => what,
        other => panic!("{q:?}: {other:?}"),
    };
    assert_eq!(bad(ReliableParams { retransmit_ms: 0, ..p }, 8), "retransmit_ms");
    assert_eq!(bad(ReliableParams { max_retransmit_ms: p.retransmit_ms - 1, ..p }, 8), "max_retransmit_ms");
    assert_eq!(bad(ReliableParams { max_unacked_per_peer: 0, ..p }, 8), "max_unacked_per_peer");
    assert_eq!(bad(p, 2), "max_unacked_per_peer");
    assert_eq!(bad(ReliableParams { give_up_after: 0, ..p }, 8), "give_up_after");
    let r = Rel::new(Protocol::Kv, 256, p, 1).unwrap();
    assert_eq!(r.max_body_bytes(), 256 - FRAME_OVERHEAD_BYTES);
}

#[test]
fn bases_up_to_the_largest_are_channels_and_beyond_it_are_not() {
    let mut r = Rel::new(Protocol::Kv, 256, params(), 1).unwrap();
    r.add_peer(A, PeerKind::Fixed { base: 1 }).unwrap();
    r.add_peer(B, PeerKind::Client).unwrap();
    assert_eq!(r.classify(1, MAX_CHANNEL_BASE, MAX_CHANNEL_BASE), Verdict::New);
    assert_eq!(r.classify(1, MAX_CHANNEL_BASE + 1, MAX_CHANNEL_BASE + 1), Verdict::Invalid);
    // A fixed peer's new incarnation: any base up to the largest; never for a client.
    assert_eq!(r.restart_fixed(1, 5), None, "a client is not a fixed peer");
    assert_eq!(r.restart_fixed(0, 0), None);
    assert_eq!(r.restart_fixed(0, MAX_CHANNEL_BASE + 1), None);
    assert!(r.restart_fixed(0, MAX_CHANNEL_BASE).is_some());
    assert_eq!(r.fixed_base(0), Some(MAX_CHANNEL_BASE));
}

#[test]
fn room_is_bounded_by_the_peer_and_by_the_shared_queue() {
    let mut store = OutboxBuf::<8, 2048>::new();
    let mut out = store.outbox();
    let mut stats = Stats::default();
    // A shared queue of 4, at most 3 per peer.
    let mut r = Reliable::<4, 4, 256>::new(Protocol::Kv, 256, params(), 1).unwrap();
    let b = r.add_peer(B, PeerKind::Fixed { base: 1 }).unwrap();
    let c = r.add_peer(C1, PeerKind::Client).unwrap();
    r.accept(Instant::ZERO, c, 100, 100);
    assert_eq!((r.room(b), r.room(c)), (3, 3), "empty: the per-peer bound");
    r.send(Instant::ZERO, c, &0u32, &mut out, &mut stats).unwrap();
    r.send(Instant::ZERO, b, &1u32, &mut out, &mut stats).unwrap();
    r.send(Instant::ZERO, b, &2u32, &mut out, &mut stats).unwrap();
    assert_eq!(r.room(b), 1, "3 per peer, 2 queued for b: 1");
    assert_eq!(r.room(c), 1, "3 per peer allow 2 more for c, the shared queue 1");
    assert_eq!(r.room(7), 0, "no such peer");
    // A restarted client's unacked message is dropped by the restart: its slot comes back.
    assert_eq!(r.room_after(c, Verdict::Restarted), 2, "min(3, 4 - 3 + 1)");
    assert_eq!(r.room_after(c, Verdict::New), 1, "no restart: as now");
    r.send(Instant::ZERO, b, &3u32, &mut out, &mut stats).unwrap();
    assert_eq!((r.room(b), r.room(c)), (0, 0), "the shared queue is full");
    assert_eq!(r.room_after(c, Verdict::Restarted), 1, "min(3, 4 - 4 + 1)");
}

#[test]
fn an_ack_is_valid_only_below_the_next_seqno() {
    let mut store = OutboxBuf::<8, 2048>::new();
    let mut out = store.outbox();
    let mut stats = Stats::default();
    let mut r = Rel::new(Protocol::Kv, 256, params(), 1).unwrap();
    let b = r.add_peer(B, PeerKind::Fixed { base: 1 }).unwrap();
    assert!(r.ack_valid(b, 0), "acks nothing");
    assert!(!r.ack_valid(b, 1), "nothing sent yet");
    r.send(Instant::ZERO, b, &1u32, &mut out, &mut stats).unwrap();
    r.send(Instant::ZERO, b, &2u32, &mut out, &mut stats).unwrap();
    assert!(r.ack_valid(b, 2), "the last seqno sent");
    assert!(!r.ack_valid(b, 3), "the next seqno was never sent");
    assert!(!r.ack_valid(5, 0), "no such peer");
}

#[test]
fn a_fixed_base_is_learned_only_within_the_channel_range_and_for_a_fixed_peer() {
    let mut r = Rel::new(Protocol::Kv, 256, params(), 1).unwrap();
    let a = r.add_peer(A, PeerKind::Fixed { base: 1 }).unwrap();
    let c = r.add_peer(C1, PeerKind::Client).unwrap();
    r.accept(Instant::ZERO, c, 100, 100);
    r.set_fixed_base(a, 0);
    assert_eq!(r.fixed_base(a), Some(1), "base 0 is no channel");
    r.set_fixed_base(a, MAX_CHANNEL_BASE + 1);
    assert_eq!(r.fixed_base(a), Some(1), "beyond the largest base");
    r.set_fixed_base(a, MAX_CHANNEL_BASE);
    assert_eq!(r.fixed_base(a), Some(MAX_CHANNEL_BASE), "the largest base is one");
    r.set_fixed_base(a, 40);
    assert_eq!(r.fixed_base(a), Some(40));
    assert_eq!(r.classify(a, 40, 40), Verdict::New, "nothing accepted from it yet");
    r.set_fixed_base(c, 40);
    assert_eq!(r.fixed_base(c), None, "a client has no fixed base");
    assert_eq!(r.invariant(), Ok(()));
}

#[test]
fn the_invariant_refuses_each_broken_clause() {
    let mut store = OutboxBuf::<8, 2048>::new();
    let mut out = store.outbox();
    let mut stats = Stats::default();
    let mut good = Rel::new(Protocol::Kv, 256, params(), 1).unwrap();
    let b = good.add_peer(B, PeerKind::Fixed { base: 5 }).unwrap();
    let c = good.add_peer(C1, PeerKind::Client).unwrap();
    good.accept(Instant::ZERO, c, 100, 100);
    good.send(Instant::ZERO, b, &1u32, &mut out, &mut stats).unwrap();
    good.send(Instant::ZERO, b, &2u32, &mut out, &mut stats).unwrap();
    assert_eq!(good.invariant(), Ok(()));
    let broken = |f: &dyn Fn(&mut Rel)| {
        let mut r = good.clone();
        f(&mut r);
        r.invariant().err().unwrap_or("no error")
    };
    let (acked, next) = (good.peers[b].acked, good.peers[b].next);
    assert_eq!(broken(&|r| r.peers[b].send_base = next), "reliable: acked outside the channel", "below the base");
    assert_eq!(broken(&|r| r.peers[b].next = acked), "reliable: acked outside the channel", "next at acked");
    assert_eq!(broken(&|r| r.peers[b].unacked = 1), "reliable: unacked count disagrees with seqnos");
    assert_eq!(
        broken(&|r| {
            r.peers[b].next = next + 2;
            r.peers[b].unacked = 4;
        }),
        "reliable: per-peer queue over its bound"
    );
    assert_eq!(
        broken(&|r| {
            r.peers[b].next = next + 1;
            r.peers[b].unacked = 3;
        }),
        "reliable: queued messages disagree with the unacked count"
    );
    assert_eq!(
        broken(&|r| r.peers[b].retransmit_at = None),
        "reliable: retransmit timer armed iff messages are unacked"
    );
    assert_eq!(broken(&|r| r.peers[c].recv = Some((100, 98))), "reliable: last accepted below the channel base");
    assert_eq!(
        broken(&|r| {
            r.peers[b].recv = None;
            r.peers[b].ack_due = Some(Instant::ZERO);
        }),
        "reliable: an ack owed for nothing accepted"
    );
    assert_eq!(broken(&|r| r.peers[c].recv = None), "reliable: a client registered with nothing accepted from it");
    assert_eq!(broken(&|r| r.peers[c].send_base = 0), "reliable: send base outside the channel");
    // A send base above the next seqno puts `acked` below the base: the first clause.
    assert_eq!(
        broken(&|r| {
            // b's second message is now nobody's; b's counts agree with what is left.
            r.peers[b].next = next - 1;
            r.peers[b].unacked = 1;
            let last = r.pending.iter_mut().find(|m| m.seqno == next - 1).unwrap();
            last.peer = 9;
        }),
        "reliable: message for no peer"
    );
    assert_eq!(broken(&|r| r.pending[0].seqno = acked), "reliable: queued message outside the unacked window");
    assert_eq!(broken(&|r| r.pending[1].seqno = next), "reliable: queued message outside the unacked window");
}

#[test]
fn an_unknown_endpoints_first_message_needs_a_base_in_the_channel_range() {
    let r = Rel::new(Protocol::Kv, 256, params(), 1).unwrap();
    assert_eq!(r.classify_unknown(C1, 0, 0), Verdict::Invalid, "base 0");
    assert_eq!(r.classify_unknown(C1, 0, 5), Verdict::Invalid, "base 0, any seqno");
    assert_eq!(r.classify_unknown(C1, 5, 4), Verdict::Invalid, "a seqno below the base");
    assert_eq!(r.classify_unknown(C1, MAX_CHANNEL_BASE, MAX_CHANNEL_BASE), Verdict::New, "the largest base");
    assert_eq!(r.classify_unknown(C1, MAX_CHANNEL_BASE + 1, MAX_CHANNEL_BASE + 1), Verdict::Invalid);
}

#[test]
fn closing_a_channel_raises_the_floor_of_its_bucket_only() {
    let mut r = full_table();
    let c2 = r.index_of(C2).unwrap();
    assert_eq!(r.evict(c2), Some(evict::Eviction::Settled));
    assert_eq!(r.classify_unknown(C2, 100, 100), Verdict::Closed);
    // Endpoints hash into the table's 4 buckets: most of 32 others are in another one, and
    // a channel of theirs at the same base still opens.
    let others = (0..32u16).map(|port| Endpoint::v4([10, 0, 2, 1], 2000 + port));
    let open = others.filter(|ep| r.classify_unknown(*ep, 100, 100) == Verdict::New).count();
    assert!((16..32).contains(&open), "{open} of 32 unaffected");
}

#[test]
fn a_peers_accessors_report_its_channel() {
    let mut store = OutboxBuf::<8, 2048>::new();
    let mut out = store.outbox();
    let mut stats = Stats::default();
    let mut r = Rel::new(Protocol::Kv, 256, params(), 1).unwrap();
    let c = r.add_peer(C1, PeerKind::Client).unwrap();
    let t = Instant::from_millis(7);
    r.accept(t, c, 100, 100);
    let p = r.peer(c).unwrap();
    assert_eq!((p.recv_base(), p.last_accepted(), p.last_active()), (Some(100), Some(100), t));
    assert_eq!(p.ack_due(), None, "owed only when the caller says so");
    r.owe_ack(c, t.plus_ms(5));
    r.owe_ack(c, t.plus_ms(3));
    r.owe_ack(c, t.plus_ms(4));
    assert_eq!(r.peer(c).unwrap().ack_due(), Some(t.plus_ms(3)), "the earliest");
    for v in 0..2u32 {
        r.send(t, c, &v, &mut out, &mut stats).unwrap();
    }
    assert_eq!(r.peer(c).unwrap().ack_due(), None, "the messages carried the ack");
    assert_eq!(r.peer(c).unwrap().backoff_ms(), 10);
    r.tick(t.plus_ms(10), &mut out, &mut stats);
    assert_eq!(r.peer(c).unwrap().backoff_ms(), 20, "doubled by a retransmission round");
    let later = t.plus_ms(15);
    assert_eq!(r.on_ack(later, c, 1), AckOutcome::Progress);
    let p = r.peer(c).unwrap();
    assert_eq!((p.acked(), p.unacked(), p.last_active()), (1, 1, later));
}

#[test]
fn a_queued_message_is_equal_by_peer_seqno_and_body_only() {
    let hash = crate::rsl::app::hash_of::<Pending<8>>;
    let m = Pending::<8> { peer: 1, seqno: 5, len: 2, body: [1, 2, 0, 0, 0, 0, 0, 0] };
    let stale_tail = Pending { body: [1, 2, 9, 9, 9, 9, 9, 9], ..m.clone() };
    assert!(m == stale_tail && hash(&m) == hash(&stale_tail), "bytes past the message do not count");
    for (what, other) in [
        ("peer", Pending { peer: 2, ..m.clone() }),
        ("seqno", Pending { seqno: 6, ..m.clone() }),
        ("body", Pending { body: [1, 3, 0, 0, 0, 0, 0, 0], ..m.clone() }),
        ("length", Pending { len: 3, ..m.clone() }),
    ] {
        assert!(m != other, "{what}");
        assert_ne!(hash(&m), hash(&other), "{what}");
    }
}
