//! Channel rules, one test each, named after the rule.

use super::*;
use crate::outbox::OutboxBuf;
use crate::wire;

type Rel = Reliable<4, 8, 256>;
const A: Endpoint = Endpoint::v4([10, 0, 0, 1], 1);
const B: Endpoint = Endpoint::v4([10, 0, 0, 2], 1);

fn params() -> ReliableParams {
    ReliableParams { retransmit_ms: 10, max_retransmit_ms: 40, max_unacked_per_peer: 3 }
}

fn frames(out: &Outbox<'_>) -> heapless::Vec<Frame<'static>, 16> {
    // Re-decode into 'static by leaking nothing: only the header fields are compared.
    out.iter()
        .map(|(_, d)| match wire::decode::<Frame<'_>>(Protocol::Kv, d).unwrap() {
            Frame::Single { base, seqno, ack, .. } => Frame::Single { base, seqno, ack, body: Bytes(&[]) },
            Frame::Ack { seqno } => Frame::Ack { seqno },
            Frame::Refused { seqno, reason } => Frame::Refused { seqno, reason },
        })
        .collect()
}

#[test]
fn seqnos_start_at_the_base_and_grow_by_one() {
    let mut store = OutboxBuf::<8, 2048>::new();
    let mut out = store.outbox();
    let mut stats = Stats::default();
    let mut r = Rel::new(Protocol::Kv, 256, params(), 1).unwrap();
    let b = r.add_peer(B, Some(1)).unwrap();
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
    let a = r.add_peer(A, Some(1)).unwrap();
    assert_eq!(r.classify(a, 1, 2), Verdict::Ahead);
    r.accept(a, 1, 2);
    assert_eq!(r.peer(a).unwrap().last_accepted(), Some(0), "ahead message changed nothing");
    assert_eq!(r.classify(a, 1, 1), Verdict::New);
    r.accept(a, 1, 1);
    assert_eq!(r.classify(a, 1, 2), Verdict::New);
}

#[test]
fn duplicate_is_reacked_with_the_cumulative_ack() {
    let mut store = OutboxBuf::<8, 2048>::new();
    let mut out = store.outbox();
    let mut stats = Stats::default();
    let mut r = Rel::new(Protocol::Kv, 256, params(), 1).unwrap();
    let a = r.add_peer(A, Some(1)).unwrap();
    r.accept(a, 1, 1);
    r.accept(a, 1, 2);
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
    let b = r.add_peer(B, Some(1)).unwrap();
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
    let (a, b) = (r.add_peer(A, Some(1)).unwrap(), r.add_peer(B, Some(1)).unwrap());
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
        r.add_peer(A, Some(1)).unwrap();
        r.add_peer(B, Some(1)).unwrap();
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
    let b = r.add_peer(B, Some(1)).unwrap();
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
    let b = r.add_peer(B, None).unwrap();
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
    let c = r.add_peer(A, None).unwrap();
    assert_eq!(r.classify(c, 100, 101), Verdict::Ahead, "first contact must be the channel's first message");
    r.accept(c, 100, 100);
    r.send(Instant::ZERO, c, &1u32, &mut out, &mut stats).unwrap();
    assert_eq!(r.classify(c, 50, 50), Verdict::Stale);
    assert_eq!(r.classify(c, 200, 201), Verdict::Ahead);
    assert_eq!(r.classify(c, 200, 200), Verdict::Restarted);
    assert_eq!(r.room_after(c, Verdict::Restarted), 3);
    r.accept(c, 200, 200);
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
    let a = r.add_peer(A, Some(1)).unwrap();
    assert_eq!(r.classify(a, 9, 9), Verdict::Invalid);
    assert_eq!(r.classify(a, 1, 0), Verdict::Invalid);
}
