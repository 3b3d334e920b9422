//! Bounds of hostile Delegates and of Shards at the edge of what fits: each limit seen
//! refusing one past it and accepting the limit itself.

use super::*;

/// The pairs `(k, v)` as a Delegate carries them.
fn pairs_bytes(pairs: &[(u64, &[u8])]) -> heapless::Vec<u8, 512> {
    let mut bytes = heapless::Vec::new();
    for (k, v) in pairs {
        let mut buf = [0u8; 128];
        let w = postcard::to_slice(&(*k, Bytes(v)), &mut buf).unwrap();
        bytes.extend_from_slice(w).unwrap();
    }
    bytes
}

#[test]
fn a_delegate_outside_the_protocols_bounds_is_invalid_and_changes_nothing() {
    let mut h1 = host(1);
    let before = h1.clone();
    let two = pairs_bytes(&[(1, b"a"), (2, b"b")]);
    let outside = pairs_bytes(&[(1, b"a"), (12, b"b")]);
    let repeated = pairs_bytes(&[(3, b"a"), (3, b"b")]);
    let descending = pairs_bytes(&[(4, b"a"), (3, b"b")]);
    let long = [b'x'; 65];
    let too_long = pairs_bytes(&[(1, &long)]);
    let r = KeyRange::keys(0, 10);
    let bad = [
        ("an empty range", delegate(KeyRange::keys(5, 5), 0, 1, 0, &[])),
        ("no parts", delegate(r, 0, 0, 2, &two)),
        ("a part past the last", delegate(r, 2, 2, 2, &two)),
        ("more parts than a peer's queue holds (4)", delegate(r, 0, 5, 2, &two)),
        ("a key outside the range", delegate(r, 0, 1, 2, &outside)),
        ("a repeated key", delegate(r, 0, 1, 2, &repeated)),
        ("keys out of order", delegate(r, 0, 1, 2, &descending)),
        ("a value longer than max_value_bytes", delegate(r, 0, 1, 1, &too_long)),
        ("more pairs than the transfer's total", delegate(r, 0, 1, 1, &two)),
    ];
    for (n, (what, d)) in bad.iter().enumerate() {
        assert!(run(&mut h1, H0, &single(1, 1, d)).is_empty(), "{what}: not acked");
        assert_eq!(h1.stats().invalid_messages, n as u64 + 1, "{what}: counted");
        assert!(h1 == before, "{what}: changed nothing");
    }
    // At the limits: 4 parts, as many pairs as the total, a 64-byte value.
    let at_limits = pairs_bytes(&[(1, b"a"), (2, &[b'y'; 64])]);
    let sent = run(&mut h1, H0, &single(1, 1, &delegate(r, 0, 4, 2, &at_limits)));
    assert!(!sent.is_empty(), "acked");
    assert_eq!(h1.stats().invalid_messages, bad.len() as u64);
    assert_eq!(h1.reserved_pairs(), 0, "all of the transfer's pairs arrived");
    assert!(h1 != before, "part 0 of 4 taken");
}

/// Sets keys `first..first + n` to `len`-byte values.
fn fill(h: &mut Host, first: u64, n: u64, len: usize) {
    for i in 0..n {
        set(h, i + 1, first + i, &std::vec![b'v'; len]);
        run(h, C, &frame(&Frame::Ack { seqno: i + 1 }));
    }
}

/// Keys from `first` whose varints take `key_bytes` each, with values whose pairs add up
/// to a Delegate's pair budget exactly, go in one part; one byte more needs two.
fn exact_fit(first: u64, key_bytes: usize) {
    let (mut h0, mut h1) = (host(0), host(1));
    let budget = h0.config().params.delegate_pair_bytes();
    // n pairs of key_bytes + 1 + len bytes each (values under 128 bytes) fill it exactly.
    let (n, len) = (1..=16u64)
        .rev()
        .find_map(|n| {
            let per = budget / n as usize;
            (budget % n as usize == 0 && (key_bytes + 2..=key_bytes + 65).contains(&per))
                .then_some((n, per - key_bytes - 1))
        })
        .expect("some split of the budget into pairs");
    fill(&mut h0, first, n, len);
    let range = KeyRange::keys(first, first + n);
    let sent = shard(&mut h0, n + 1, range, H1);
    let parts: std::vec::Vec<&Sent> = sent.iter().filter(|s| s.dst == H1).collect();
    assert_eq!(parts.len(), 1, "{n} pairs of {} bytes fill the {budget}-byte budget", key_bytes + 1 + len);
    run(&mut h1, H0, &parts[0].bytes);
    assert_eq!(h1.storage().len(), n as usize, "every pair arrived");
    assert!(h1.owns(first) && h1.owns(first + n - 1));
    // One byte more does not fit: two parts, and every pair arrives.
    let (mut h0, mut h2) = (host(0), host(2));
    fill(&mut h0, first, n - 1, len);
    set(&mut h0, n, first + n - 1, &std::vec![b'v'; len + 1]);
    run(&mut h0, C, &frame(&Frame::Ack { seqno: n }));
    let sent = shard(&mut h0, n + 1, range, H2);
    let parts: std::vec::Vec<&Sent> = sent.iter().filter(|s| s.dst == H2).collect();
    assert_eq!(parts.len(), 2, "one byte over the budget");
    for p in parts {
        run(&mut h2, H0, &p.bytes);
    }
    assert_eq!(h2.storage().len(), n as usize);
}

#[test]
fn pairs_that_fill_a_delegate_exactly_go_in_one_part() {
    exact_fit(0, 1);
    exact_fit(200, 2);
    exact_fit(1 << 20, 3);
}

#[test]
fn a_shard_of_as_many_parts_as_a_peers_queue_holds_goes_and_one_more_does_not() {
    // 12 pairs of 64-byte values: 2 + 64 = 66 bytes each, 7 to a part of the 512-byte
    // datagram (see `a_large_range_moves_...`): 2 parts.
    let shard_with_queue = |queue: usize| {
        let mut config = KvConfig::new(&[H0, H1, H2]).unwrap();
        config.params = params();
        config.params.reliable.max_unacked_per_peer = queue;
        let mut h0 = Host::new(config, 0, Store::new()).unwrap();
        let value = [b'x'; 64];
        for k in 0..12u64 {
            set(&mut h0, k + 1, k, &value);
            run(&mut h0, C, &frame(&Frame::Ack { seqno: k + 1 }));
        }
        let sent = shard(&mut h0, 13, KeyRange::keys(0, 12), H1);
        (sent.iter().filter(|s| s.dst == H1).count(), bodies(&sent).contains(&Body::Sharded { req: 13 }))
    };
    let (parts, sharded) = shard_with_queue(3);
    assert_eq!(parts, 2, "the plan");
    assert!(sharded);
    // A queue of 2 holds the 2 parts but not the reply to a requester that is the
    // recipient; here the requester is a client, so 2 parts go.
    assert_eq!(shard_with_queue(2), (2, true), "parts = the per-peer bound");
    assert_eq!(shard_with_queue(1), (0, false), "one part more than the bound");
}

/// The reply among `sent` (not a Delegate).
fn answer(sent: &[Sent]) -> Option<Body<'_>> {
    bodies(sent).into_iter().find(|b| !matches!(b, Body::Delegate { .. }))
}

#[test]
fn a_shard_needs_room_for_its_parts_and_its_reply_in_both_queues() {
    // Queues of 3 per peer: a 2-part shard (as above) to H1.
    let host_with_pairs = || {
        let mut config = KvConfig::new(&[H0, H1, H2]).unwrap();
        config.params = params();
        config.params.reliable.max_unacked_per_peer = 3;
        let mut h0 = Host::new(config, 0, Store::new()).unwrap();
        for k in 0..12u64 {
            set(&mut h0, k + 1, k, &[b'x'; 64]);
            run(&mut h0, C, &frame(&Frame::Ack { seqno: k + 1 }));
        }
        h0
    };
    let range = KeyRange::keys(0, 12);
    let request = Body::Shard { range, recipient: H1 };
    // Asked by the recipient itself: the 2 parts and the reply all go to H1, 3 of 3.
    let mut h0 = host_with_pairs();
    let sent = run(&mut h0, H1, &single(1, 1, &request));
    assert_eq!(answer(&sent), Some(Body::Sharded { req: 1 }), "3 messages fit a queue of 3");
    // One message already queued for H1: the parts and the reply no longer fit.
    let mut h0 = host_with_pairs();
    let _ = run(&mut h0, H1, &single(1, 1, &Body::GetRequest { key: 20 }));
    assert_eq!(h0.reliable().room(1), 2);
    let sent = run(&mut h0, H1, &single(1, 2, &request));
    assert_eq!(answer(&sent), Some(Body::Error { req: 2, error: KvError::Shard(ShardError::QueueFull) }));
    // Asked by a client: the 2 parts fit H1's 2 places left, the reply goes to the client.
    let mut h0 = host_with_pairs();
    let _ = run(&mut h0, H1, &single(1, 1, &Body::GetRequest { key: 20 }));
    assert_eq!(h0.reliable().room(1), 2);
    let sent = run(&mut h0, C, &single(1, 13, &request));
    assert_eq!(answer(&sent), Some(Body::Sharded { req: 13 }), "the reply goes to the client");
}

#[test]
fn a_shard_needs_room_for_its_parts_and_its_reply_in_the_shared_queue() {
    // The shared queue holds 16 (U); 12 replies to 4 clients stay unacked (3 each) plus
    // `extra` more to a fifth, then host 2 asks for a one-part shard (an empty range), which
    // needs 1 + 1 places (the peer table, 3 hosts and 5 clients, is full).
    let shard_with_pending = |extra: u64| {
        let mut config = KvConfig::new(&[H0, H1, H2]).unwrap();
        config.params = params();
        config.params.reliable.max_unacked_per_peer = 3;
        let mut h0 = Host::new(config, 0, Store::new()).unwrap();
        let clients: std::vec::Vec<Endpoint> = (1..=5).map(|i| Endpoint::v4([10, 0, 2, i], 9)).collect();
        for (i, c) in clients.iter().take(4).enumerate() {
            for s in 1..=3u64 {
                run(&mut h0, *c, &single(1, s, &Body::GetRequest { key: i as u64 }));
            }
        }
        for s in 1..=extra {
            run(&mut h0, clients[4], &single(1, s, &Body::GetRequest { key: 9 }));
        }
        assert_eq!(h0.reliable().pending(), 12 + extra as usize);
        run(&mut h0, H2, &single(1, 1, &Body::Shard { range: KeyRange::keys(100, 110), recipient: H1 }))
    };
    assert_eq!(answer(&shard_with_pending(2)), Some(Body::Sharded { req: 1 }), "14 queued: 2 places left");
    assert_eq!(
        answer(&shard_with_pending(3)),
        Some(Body::Error { req: 1, error: KvError::Shard(ShardError::QueueFull) }),
        "15 queued: 1 place left"
    );
}

#[test]
fn a_shard_leaves_two_map_entries_for_each_transfer_being_received() {
    // M = 6. Host 0 gives [10, 20) to host 1 (3 entries), and host 1 starts giving
    // [10, 15) back in 2 parts (1 transfer being received: 2 entries kept free for it).
    let (mut h0, mut h1) = (host(0), host(1));
    let sent = shard(&mut h0, 1, KeyRange::keys(10, 20), H1);
    for ack in deliver(&sent, H0, &mut h1) {
        run(&mut h0, H1, &ack.bytes);
    }
    run(&mut h0, C, &frame(&Frame::Ack { seqno: 1 }));
    let part = pairs_bytes(&[(10, b"a")]);
    assert!(!run(&mut h0, H1, &single(1, 1, &delegate(KeyRange::keys(10, 15), 0, 2, 2, &part))).is_empty());
    assert_eq!(h0.map().len(), 3);
    // [0, 5) to host 2 makes 4 entries: 6 - 4 = 2 left, enough.
    let mut ok = h0.clone();
    let sent = shard(&mut ok, 2, KeyRange::keys(0, 5), H2);
    assert!(bodies(&sent).contains(&Body::Sharded { req: 2 }));
    // [30, 40) to host 2 makes 5: 1 left, not enough.
    let sent = shard(&mut h0, 2, KeyRange::keys(30, 40), H2);
    assert_eq!(bodies(&sent), [Body::Error { req: 2, error: KvError::Shard(ShardError::MapFull) }]);
}

/// Delivers Delegate `part` of `parts` of transfer `transfer` from `from`, as message
/// `seqno` of its channel (base 1). Returns what the receiver sent.
#[allow(clippy::too_many_arguments)]
fn part_of(
    h: &mut Host,
    from: Endpoint,
    seqno: u64,
    transfer: u64,
    range: KeyRange,
    (part, parts): (u16, u16),
    total_pairs: u32,
    pairs: &[(u64, &[u8])],
) -> std::vec::Vec<Sent> {
    let bytes = pairs_bytes(pairs);
    let body = Body::Delegate { transfer, range, part, parts, total_pairs, pairs: Bytes(&bytes) };
    run(h, from, &single(1, seqno, &body))
}

fn refused_no_room(sent: &[Sent]) -> bool {
    sent.iter().any(|s| matches!(s.frame(), Frame::Refused { reason: Refusal::NoRoom, .. }))
}

/// What is wrong, then transfer, range, (part, parts), total pairs and the pairs.
type WrongPart<'a> = (&'a str, u64, KeyRange, (u16, u16), u32, &'a [(u64, &'a [u8])]);

#[test]
fn a_later_part_must_continue_the_transfer_under_way_exactly() {
    let r = KeyRange::keys(0, 10);
    let mut h1 = host(1);
    // Part 0 of 3 of transfer 1, 4 pairs in all, 1 of them here.
    assert!(!part_of(&mut h1, H0, 1, 1, r, (0, 3), 4, &[(1, b"a")]).is_empty());
    let under_way = h1.clone();
    let wrong: [WrongPart<'_>; 7] = [
        ("another transfer", 2, r, (1, 3), 4, &[(2, b"b")]),
        ("another range", 1, KeyRange::keys(0, 9), (1, 3), 4, &[(2, b"b")]),
        ("another part count", 1, r, (1, 4), 4, &[(2, b"b")]),
        ("another total", 1, r, (1, 3), 5, &[(2, b"b")]),
        ("a part skipped", 1, r, (2, 3), 4, &[(2, b"b")]),
        ("more pairs than the total left", 1, r, (1, 3), 4, &[(2, b"b"), (3, b"c"), (4, b"d"), (5, b"e")]),
        ("the last part short of the total", 1, r, (1, 2), 4, &[(2, b"b")]),
    ];
    for (what, transfer, range, parts, total, pairs) in &wrong {
        let mut h = under_way.clone();
        assert!(part_of(&mut h, H0, 2, *transfer, *range, *parts, *total, pairs).is_empty(), "{what}");
        assert_eq!(h.stats().invalid_messages, 1, "{what}: counted");
        assert!(h == under_way, "{what}: changed nothing");
    }
    // The right part 1 of 3, then the last with the rest: the transfer completes.
    assert!(!part_of(&mut h1, H0, 2, 1, r, (1, 3), 4, &[(2, b"b")]).is_empty());
    assert!(!part_of(&mut h1, H0, 3, 1, r, (2, 3), 4, &[(3, b"c"), (4, b"d")]).is_empty());
    assert!(h1.owns(0) && h1.owns(9));
    assert_eq!(h1.storage().len(), 4);
}

#[test]
fn adjacent_transfers_from_two_hosts_may_arrive_at_once() {
    for (first, second) in
        [(KeyRange::keys(0, 10), KeyRange::keys(10, 20)), (KeyRange::keys(10, 20), KeyRange::keys(0, 10))]
    {
        let mut h1 = host(1);
        assert!(!part_of(&mut h1, H0, 1, 1, first, (0, 2), 2, &[]).is_empty());
        let sent = part_of(&mut h1, H2, 1, 1, second, (0, 2), 2, &[]);
        assert!(!sent.is_empty() && !refused_no_room(&sent), "{second:?} next to {first:?} is taken");
        assert_eq!(h1.stats().invalid_messages, 0);
        // Overlapping by one key is forged.
        let mut h = host(1);
        let _ = part_of(&mut h, H0, 1, 1, first, (0, 2), 2, &[]);
        let overlapping = KeyRange::keys(5, 15);
        assert!(part_of(&mut h, H2, 1, 1, overlapping, (0, 2), 2, &[]).is_empty());
        assert_eq!(h.stats().invalid_messages, 1);
    }
}

#[test]
fn a_new_transfer_needs_storage_for_its_pairs_and_for_those_reserved() {
    // 16 slots; transfer 1 from host 0 reserves 10 (1 of its 11 pairs arrived).
    let under_way = || {
        let mut h1 = host(1);
        assert!(!part_of(&mut h1, H0, 1, 1, KeyRange::keys(0, 100), (0, 2), 11, &[(1, b"a")]).is_empty());
        assert_eq!((h1.storage().len(), h1.reserved_pairs()), (1, 10));
        h1
    };
    // 1 stored + 10 reserved + 5 = 16: room.
    let mut h1 = under_way();
    let sent = part_of(&mut h1, H2, 1, 1, KeyRange::keys(200, 300), (0, 2), 5, &[]);
    assert!(!sent.is_empty() && !refused_no_room(&sent), "exactly the capacity");
    // 1 + 10 + 6 = 17: refused, visibly, and nothing changes.
    let mut h1 = under_way();
    let before = h1.clone();
    assert!(refused_no_room(&part_of(&mut h1, H2, 1, 1, KeyRange::keys(200, 300), (0, 2), 6, &[])));
    assert!(h1 == before);
}

#[test]
fn a_new_transfer_needs_two_free_map_entries_for_each_transfer_arriving() {
    // M = 6. Host 1 takes [0, 10) and [20, 30) from host 0 (one-part transfers): its map has
    // 4 entries, 2 free, enough for one transfer arriving and no more.
    let mut h1 = host(1);
    let _ = part_of(&mut h1, H0, 1, 1, KeyRange::keys(0, 10), (0, 1), 0, &[]);
    let _ = part_of(&mut h1, H0, 2, 2, KeyRange::keys(20, 30), (0, 1), 0, &[]);
    assert_eq!(h1.map().len(), 4);
    let ready = h1.clone();
    let sent = part_of(&mut h1, H2, 1, 1, KeyRange::keys(50, 60), (0, 2), 0, &[]);
    assert!(!sent.is_empty() && !refused_no_room(&sent), "2 free entries for 1 transfer");
    // A second transfer while that one arrives would need 4.
    assert!(refused_no_room(&part_of(&mut h1, H0, 3, 3, KeyRange::keys(70, 80), (0, 2), 0, &[])));
    // From 3 entries of room (a one-part transfer completes at once): still 2 per transfer.
    let mut h = ready.clone();
    let _ = part_of(&mut h, H2, 1, 1, KeyRange::keys(50, 60), (0, 1), 0, &[]);
    assert!(h.owns(50));
    assert_eq!(h.map().len(), 6);
    assert!(refused_no_room(&part_of(&mut h, H0, 3, 3, KeyRange::keys(70, 80), (0, 2), 0, &[])), "no room left");
}

#[test]
fn a_new_client_is_refused_while_the_shared_queue_is_full() {
    // 4 clients with 4 unacked replies each fill the shared queue of 16.
    let mut h0 = host(0);
    for i in 1..=4u8 {
        for s in 1..=4u64 {
            run(&mut h0, Endpoint::v4([10, 0, 2, i], 9), &single(1, s, &Body::GetRequest { key: s }));
        }
    }
    assert_eq!(h0.reliable().pending(), 16);
    let before = h0.clone();
    let sent = run(&mut h0, Endpoint::v4([10, 0, 2, 5], 9), &single(1, 1, &Body::GetRequest { key: 1 }));
    assert!(matches!(sent[..], [ref s] if matches!(s.frame(), Frame::Refused { reason: Refusal::QueueFull, .. })));
    assert!(h0 == before, "not admitted");
}

#[test]
fn each_acknowledged_transfer_is_counted_once() {
    let (mut h0, mut h1) = (host(0), host(1));
    let to_h1 = shard(&mut h0, 1, KeyRange::keys(10, 20), H1);
    let _to_h2 = shard(&mut h0, 2, KeyRange::keys(30, 40), H2);
    assert_eq!(h0.outgoing().len(), 2);
    for ack in deliver(&to_h1, H0, &mut h1) {
        run(&mut h0, H1, &ack.bytes);
    }
    assert_eq!(h0.outgoing().len(), 1, "host 2 has not acknowledged");
    assert_eq!(h0.counters().transfers_out, 1);
}

#[test]
fn values_are_bounded_by_the_configured_size_not_the_stores() {
    // The store holds 64-byte values; the cluster allows 32.
    let mut config = KvConfig::new(&[H0, H1, H2]).unwrap();
    config.params = params();
    config.params.max_value_bytes = 32;
    let cluster = config.identity();
    let mut h0 = Host::new(config, 0, Store::new()).unwrap();
    // This cluster's identity differs from the tests' default one.
    let set = |h: &mut Host, seqno: u64, value: &[u8]| {
        let mut inner: heapless::Vec<u8, 512> = heapless::Vec::new();
        wire::append(&mut inner, &Body::SetRequest { key: 1, value: Some(Bytes(value)) }).unwrap();
        let mut buf = [0u8; 512];
        let f = Frame::Single { base: 1, seqno, ack: 0, body: Bytes(&inner) };
        let n = wire::encode_in_cluster(Protocol::Kv, cluster, &f, &mut buf).unwrap();
        run(h, C, &buf[..n])
    };
    let sent = set(&mut h0, 1, &[7u8; 33]);
    assert_eq!(bodies(&sent), [Body::Error { req: 1, error: KvError::ValueTooLarge }]);
    assert!(h0.storage().is_empty());
    let sent = set(&mut h0, 2, &[7u8; 32]);
    assert_eq!(bodies(&sent), [Body::Reply { req: 2, key: 1, value: None }]);
}

#[test]
fn a_new_key_needs_a_slot_beyond_those_reserved_for_arriving_pairs() {
    // Host 1 owns [0, 100) and is receiving a transfer of `reserved` pairs from host 2.
    let receiving = |reserved: u32| {
        let mut h1 = host(1);
        let _ = part_of(&mut h1, H0, 1, 1, KeyRange::keys(0, 100), (0, 1), 0, &[]);
        assert!(h1.owns(0));
        let _ = part_of(&mut h1, H2, 1, 1, KeyRange::keys(200, 300), (0, 2), reserved, &[]);
        assert_eq!(h1.reserved_pairs(), reserved as usize);
        h1
    };
    // All 16 slots reserved: no new key, though the store is empty.
    let mut h1 = receiving(16);
    assert_eq!(bodies(&set(&mut h1, 1, 1, b"v")), [Body::Error { req: 1, error: KvError::StorageFull }]);
    // 4 reserved: 12 new keys, not 13.
    let mut h1 = receiving(4);
    for k in 0..12u64 {
        assert_eq!(bodies(&set(&mut h1, k + 1, k, b"v")), [Body::Reply { req: k + 1, key: k, value: None }]);
        run(&mut h1, C, &frame(&Frame::Ack { seqno: k + 1 }));
    }
    assert_eq!(bodies(&set(&mut h1, 13, 50, b"v")), [Body::Error { req: 13, error: KvError::StorageFull }]);
}
