//! Host rules, one test each, named after the rule.

use super::*;
use crate::kv::config::KvParams;
use crate::kv::msg::{self, Body, KeyBound, KvError, ShardError};
use crate::kv::reliable::{Refusal, ReliableParams};
use crate::kv::storage::HeaplessStore;
use crate::outbox::OutboxBuf;
use crate::wire::Bytes;

type Store = HeaplessStore<16, 64>;
type Host = KvHost<Store, 4, 6, 8, 16, 512>;
type Buf = OutboxBuf<32, 16384>;

const H0: Endpoint = Endpoint::v4([10, 0, 0, 1], 1);
const H1: Endpoint = Endpoint::v4([10, 0, 0, 2], 1);
const H2: Endpoint = Endpoint::v4([10, 0, 0, 3], 1);
const C: Endpoint = Endpoint::v4([10, 0, 1, 1], 9);
const C2: Endpoint = Endpoint::v4([10, 0, 1, 2], 9);
const T0: Instant = Instant::ZERO;

fn params() -> KvParams {
    KvParams {
        max_value_bytes: 64,
        max_datagram_bytes: 512,
        reliable: ReliableParams {
            retransmit_ms: 10,
            max_retransmit_ms: 80,
            max_unacked_per_peer: 4,
            give_up_after: 4,
        },
    }
}

fn host(me: usize) -> Host {
    let mut config = KvConfig::new(&[H0, H1, H2]).unwrap();
    config.params = params();
    Host::new(config, me, Store::new()).unwrap()
}

/// A datagram carrying `body` as message `seqno` of a channel with base `base`.
fn single(base: u64, seqno: u64, body: &Body<'_>) -> heapless::Vec<u8, 512> {
    single_acking(base, seqno, 0, body)
}

/// [`single`] also acking the host's messages up to `ack`.
fn single_acking(base: u64, seqno: u64, ack: u64, body: &Body<'_>) -> heapless::Vec<u8, 512> {
    let mut inner: heapless::Vec<u8, 512> = heapless::Vec::new();
    wire::append(&mut inner, body).unwrap();
    frame(&Frame::Single { base, seqno, ack, body: Bytes(&inner) })
}

/// A datagram from a member of the tests' cluster (hosts H0, H1, H2 with [`params`]).
fn frame(f: &Frame<'_>) -> heapless::Vec<u8, 512> {
    let cluster = crate::kv::config::identity_of(&[H0, H1, H2], &params());
    let mut buf = [0u8; 512];
    let n = wire::encode_in_cluster(Protocol::Kv, cluster, f, &mut buf).unwrap();
    heapless::Vec::from_slice(&buf[..n]).unwrap()
}

/// Owned copy of one emitted datagram.
#[derive(Clone, Debug, PartialEq)]
struct Sent {
    dst: Endpoint,
    bytes: heapless::Vec<u8, 512>,
}

impl Sent {
    fn frame(&self) -> Frame<'_> {
        wire::decode(Protocol::Kv, &self.bytes).unwrap()
    }
    fn body(&self) -> Option<Body<'_>> {
        match self.frame() {
            Frame::Single { body, .. } => Some(wire::decode_exact(body.0).unwrap()),
            _ => None,
        }
    }
}

fn run(h: &mut Host, from: Endpoint, datagram: &[u8]) -> std::vec::Vec<Sent> {
    let mut store = Buf::new();
    let mut out = store.outbox();
    let _ = h.handle(T0, from, datagram, &mut out);
    assert_eq!(h.check_invariants(), Ok(()));
    out.iter().map(|(dst, b)| Sent { dst, bytes: heapless::Vec::from_slice(b).unwrap() }).collect()
}

extern crate std;

fn bodies(sent: &[Sent]) -> std::vec::Vec<Body<'_>> {
    sent.iter().filter_map(|s| s.body()).collect()
}

fn set(h: &mut Host, seqno: u64, key: u64, value: &[u8]) -> std::vec::Vec<Sent> {
    run(h, C, &single(1, seqno, &Body::SetRequest { key, value: Some(Bytes(value)) }))
}

fn shard(h: &mut Host, seqno: u64, range: KeyRange, to: Endpoint) -> std::vec::Vec<Sent> {
    run(h, C, &single(1, seqno, &Body::Shard { range, recipient: to }))
}

/// A Delegate of transfer 1 for `range`: part `part` of `parts`, announcing `total_pairs`
/// pairs and carrying `pairs`.
fn delegate(range: KeyRange, part: u16, parts: u16, total_pairs: u32, pairs: &[u8]) -> Body<'_> {
    Body::Delegate { transfer: 1, range, part, parts, total_pairs, pairs: Bytes(pairs) }
}

/// Delivers every Delegate in `sent` to `to` (as sent by host `from_ep`); returns the acks.
fn deliver(sent: &[Sent], from_ep: Endpoint, to: &mut Host) -> std::vec::Vec<Sent> {
    let mut acks = std::vec::Vec::new();
    for s in sent.iter().filter(|s| matches!(s.body(), Some(Body::Delegate { .. }))) {
        acks.extend(run(to, from_ep, &s.bytes));
    }
    acks
}

mod sharding;

#[test]
fn the_root_serves_set_and_get_and_acks_each_request() {
    let mut h = host(0);
    let sent = set(&mut h, 1, 7, b"seven");
    assert_eq!(sent.len(), 1, "no lone ack: the reply carries it");
    assert!(matches!(sent[0].frame(), Frame::Single { ack: 1, .. }));
    assert_eq!(bodies(&sent), [Body::Reply { req: 1, key: 7, value: None }]);
    let sent = run(&mut h, C, &single(1, 2, &Body::GetRequest { key: 7 }));
    assert_eq!(bodies(&sent), [Body::Reply { req: 2, key: 7, value: Some(Bytes(b"seven")) }]);
    let sent = run(&mut h, C, &single(1, 3, &Body::SetRequest { key: 7, value: None }));
    assert_eq!(bodies(&sent), [Body::Reply { req: 3, key: 7, value: None }]);
    let sent = run(&mut h, C, &single(1, 4, &Body::GetRequest { key: 7 }));
    assert_eq!(bodies(&sent), [Body::Reply { req: 4, key: 7, value: None }], "deleted");
}

#[test]
fn a_request_carrying_the_ack_of_earlier_replies_clears_them() {
    let mut h = host(0);
    let _ = run(&mut h, C, &single(1, 1, &Body::GetRequest { key: 7 }));
    let _ = run(&mut h, C, &single(1, 2, &Body::GetRequest { key: 8 }));
    assert_eq!(h.reliable().pending(), 2, "two replies unacked");
    let _ = run(&mut h, C, &single_acking(1, 3, 2, &Body::GetRequest { key: 9 }));
    assert_eq!(h.reliable().pending(), 1, "only the newest reply is unacked");
}

#[test]
fn a_piggybacked_ack_of_a_message_never_sent_refuses_the_datagram_and_changes_nothing() {
    let mut h = host(0);
    let _ = run(&mut h, C, &single(1, 1, &Body::GetRequest { key: 7 }));
    let before = h.clone();
    let sent = run(&mut h, C, &single_acking(1, 2, 99, &Body::SetRequest { key: 7, value: Some(Bytes(b"x")) }));
    assert!(sent.is_empty());
    assert_eq!(h.stats().invalid_messages, 1);
    assert!(h == before, "nothing accepted, stored or acked");
    // From an endpoint with no channel here the ack is ignored, not refused: a client this
    // host evicted still acks the closed channel, whose seqnos are below the new channel's.
    let sent = run(&mut h, C2, &single_acking(1, 1, 5, &Body::GetRequest { key: 7 }));
    assert_eq!(bodies(&sent), [Body::Reply { req: 1, key: 7, value: None }]);
    let c2 = h.reliable().index_of(C2).unwrap();
    assert_eq!(h.reliable().peer(c2).unwrap().unacked(), 1, "the ack acked nothing of the new channel");
}

#[test]
fn a_duplicate_is_acked_alone_at_once() {
    let mut h = host(0);
    let _ = run(&mut h, C, &single(1, 1, &Body::GetRequest { key: 7 }));
    let sent = run(&mut h, C, &single(1, 1, &Body::GetRequest { key: 7 }));
    assert_eq!(sent.iter().map(Sent::frame).collect::<std::vec::Vec<_>>(), [Frame::Ack { seqno: 1 }]);
}

#[test]
fn a_key_the_host_does_not_own_is_redirected_to_its_owner() {
    let mut h = host(1);
    let sent = run(&mut h, C, &single(1, 1, &Body::GetRequest { key: 5 }));
    assert_eq!(bodies(&sent), [Body::Redirect { req: 1, key: 5, owner: H0 }]);
    let sent = set(&mut h, 2, 5, b"x");
    assert_eq!(bodies(&sent), [Body::Redirect { req: 2, key: 5, owner: H0 }]);
    assert!(h.storage().is_empty(), "a redirected Set writes nothing");
}

#[test]
fn out_of_order_message_is_not_accepted() {
    let mut h = host(0);
    let sent = set(&mut h, 2, 1, b"b");
    assert!(sent.is_empty(), "seqno 2 before 1: no ack, no reply");
    assert!(h.storage().is_empty());
    assert_eq!(h.stats().ignored_messages, 1);
    set(&mut h, 1, 1, b"a");
    set(&mut h, 2, 1, b"b");
    assert_eq!(h.storage().get(1), Some(&b"b"[..]));
}

#[test]
fn duplicate_is_reacked_and_not_executed_again() {
    let mut h = host(0);
    set(&mut h, 1, 1, b"a");
    set(&mut h, 2, 1, b"b");
    let sent = set(&mut h, 1, 1, b"a");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].frame(), Frame::Ack { seqno: 2 }, "cumulative re-ack");
    assert_eq!(h.storage().get(1), Some(&b"b"[..]), "the old Set did not run again");
    assert_eq!(h.counters().duplicates, 1);
}

#[test]
fn a_full_reply_queue_refuses_new_requests_with_visible_back_pressure() {
    let mut h = host(0);
    for s in 1..=4 {
        set(&mut h, s, s, b"v"); // the client never acks the replies
    }
    let sent = set(&mut h, 5, 5, b"v");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].frame(), Frame::Refused { seqno: 5, reason: Refusal::QueueFull });
    assert_eq!(h.storage().get(5), None, "refused request changed nothing");
    assert_eq!(h.stats().queue_full, 1);
    // Once the client acks, the same request (retransmitted) is served.
    run(&mut h, C, &frame(&Frame::Ack { seqno: 4 }));
    let sent = set(&mut h, 5, 5, b"v");
    assert_eq!(bodies(&sent), [Body::Reply { req: 5, key: 5, value: None }]);
}

#[test]
fn unacked_replies_are_retransmitted_with_backoff() {
    let mut h = host(0);
    set(&mut h, 1, 1, b"a");
    assert_eq!(h.next_deadline(), Instant::from_millis(10));
    let mut store = Buf::new();
    let mut out = store.outbox();
    let _ = h.tick(Instant::from_millis(10), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(h.next_deadline(), Instant::from_millis(30));
    out.clear();
    run(&mut h, C, &frame(&Frame::Ack { seqno: 1 }));
    assert_eq!(h.next_deadline(), Instant::NEVER);
}

#[test]
fn value_too_large_gets_an_error_reply_and_changes_nothing() {
    let mut h = host(0);
    let sent = set(&mut h, 1, 1, &[7u8; 65]);
    assert_eq!(bodies(&sent), [Body::Error { req: 1, error: KvError::ValueTooLarge }]);
    assert!(h.storage().is_empty());
}

#[test]
fn a_full_store_refuses_new_keys_with_an_error_reply() {
    let mut h = host(0);
    for k in 0..16u64 {
        set(&mut h, k + 1, k, b"v");
        run(&mut h, C, &frame(&Frame::Ack { seqno: k + 1 }));
    }
    let sent = set(&mut h, 17, 99, b"v");
    assert_eq!(bodies(&sent), [Body::Error { req: 17, error: KvError::StorageFull }]);
    let sent = set(&mut h, 18, 3, b"w");
    assert_eq!(bodies(&sent), [Body::Reply { req: 18, key: 3, value: None }], "overwrites still work");
}

#[test]
fn datagrams_naming_another_cluster_are_refused() {
    let mut h = host(0);
    let body = Body::GetRequest { key: 7 };
    let mut inner: heapless::Vec<u8, 512> = heapless::Vec::new();
    wire::append(&mut inner, &body).unwrap();
    let theirs = crate::kv::config::identity_of(&[H1, H0, H2], &params());
    let mut buf = [0u8; 512];
    let f = Frame::Single { base: 1, seqno: 1, ack: 0, body: Bytes(&inner) };
    let n = wire::encode_in_cluster(Protocol::Kv, theirs, &f, &mut buf).unwrap();
    assert!(run(&mut h, H1, &buf[..n]).is_empty(), "a host of another cluster");
    assert!(run(&mut h, C, &buf[..n]).is_empty(), "a client of another cluster");
    assert_eq!(h.stats().foreign_cluster, 2);
    assert_eq!(h.last_foreign(), Some((C, theirs)));
    let n = wire::encode(Protocol::Kv, &f, &mut buf).unwrap();
    assert!(run(&mut h, H1, &buf[..n]).is_empty(), "a host must name the cluster");
    assert_eq!(h.stats().foreign_cluster, 3);
    assert!(!run(&mut h, C, &buf[..n]).is_empty(), "a client need not");
    assert!(!run(&mut h, C, &frame(&Frame::Single { base: 2, seqno: 2, ack: 0, body: Bytes(&inner) })).is_empty());
}

#[test]
fn malformed_input_is_counted_and_changes_nothing() {
    let mut h = host(0);
    assert!(run(&mut h, C, b"garbage").is_empty());
    assert!(run(&mut h, C, &frame(&Frame::Single { base: 1, seqno: 1, ack: 0, body: Bytes(&[0xFF, 0xFF]) })).is_empty());
    assert!(run(&mut h, C, &frame(&Frame::Ack { seqno: 3 })).is_empty(), "ack from an unknown peer");
    assert!(run(&mut h, H1, &frame(&Frame::Ack { seqno: 3 })).is_empty(), "ack of a seqno never sent");
    let s = h.stats();
    assert_eq!((s.decode_errors, s.unknown_sender, s.invalid_messages), (2, 1, 1));
    assert!(h.reliable().peers().iter().all(|p| p.last_accepted().is_none_or(|l| l == 0)));
    assert_eq!(h.reliable().peers().len(), 3, "no client registered by bad input");
}

#[test]
fn a_restarted_client_is_served_and_its_old_replies_are_dropped() {
    let mut h = host(0);
    set(&mut h, 1, 1, b"a"); // reply 1 never acked
    assert_eq!(h.reliable().pending(), 1);
    let sent = run(&mut h, C, &single(1000, 1000, &Body::GetRequest { key: 1 }));
    assert_eq!(bodies(&sent), [Body::Reply { req: 1000, key: 1, value: Some(Bytes(b"a")) }]);
    assert_eq!(h.reliable().pending(), 1, "the old reply was dropped, the new one queued");
    let reply = sent.iter().find(|s| s.body().is_some()).unwrap();
    assert!(matches!(reply.frame(), Frame::Single { base: 2, seqno: 2, .. }), "fresh channel base");
    assert!(set(&mut h, 2, 1, b"old").is_empty(), "stale incarnation ignored");
}

#[test]
fn largest_messages_fit_the_datagram() {
    let (mut h0, mut h1) = (host(0), host(1));
    let value = [0xABu8; 64];
    let sent = set(&mut h0, u64::MAX, u64::MAX, &value);
    assert!(sent.is_empty(), "seqno u64::MAX is not the channel's next");
    set(&mut h0, 1, u64::MAX, &value);
    let sent = run(&mut h0, C, &single(1, 2, &Body::GetRequest { key: u64::MAX }));
    assert!(sent.iter().all(|s| s.bytes.len() <= 512));
    let sent = shard(&mut h0, 3, KeyRange::from(u64::MAX), H1);
    deliver(&sent, H0, &mut h1);
    assert!(h1.owns(u64::MAX));
    assert_eq!(h0.stats().oversize_messages, 0);
}

mod durable;
#[test]
fn a_host_is_built_only_within_its_capacities() {
    let hosts = [H0, H1, H2];
    let config = |n: usize, p: KvParams| {
        let mut c = KvConfig::new(&hosts[..n]).unwrap();
        c.params = p;
        c
    };
    let bad = |r: Result<Host, ConfigError>| match r {
        Err(e) => e,
        Ok(_) => panic!("built"),
    };
    assert_eq!(bad(Host::new(config(3, params()), 3, Store::new())), ConfigError::BadIndex);
    // Peers: the test host holds 8; a config of 8 hosts fits, 9 do not.
    let eps: heapless::Vec<Endpoint, 9> = (0..9u8).map(|i| Endpoint::v4([10, 9, 0, i], 1)).collect();
    let many = |n: usize| {
        let mut wide = KvConfig::<9>::new(&eps[..n]).unwrap();
        wide.params = params();
        wide
    };
    type Wide = KvHost<Store, 9, 6, 8, 16, 512>;
    assert!(Wide::new(many(8), 0, Store::new()).is_ok());
    assert!(matches!(Wide::new(many(9), 0, Store::new()), Err(ConfigError::Invalid(_))));
    type Narrow = KvHost<Store, 4, 2, 8, 16, 512>;
    assert!(matches!(Narrow::new(config(3, params()), 0, Store::new()), Err(ConfigError::Invalid(_))));
    assert!(KvHost::<Store, 4, 3, 8, 16, 512>::new(config(3, params()), 0, Store::new()).is_ok());
    let value = |bytes| KvParams { max_value_bytes: bytes, ..params() };
    assert!(Host::new(config(3, value(64)), 0, Store::new()).is_ok(), "the store's value capacity");
    assert!(matches!(Host::new(config(3, value(65)), 0, Store::new()), Err(ConfigError::Invalid(_))));
    let unacked =
        |n| KvParams { reliable: ReliableParams { max_unacked_per_peer: n, ..params().reliable }, ..params() };
    assert!(Host::new(config(3, unacked(16)), 0, Store::new()).is_ok(), "the unacked capacity");
    assert!(matches!(Host::new(config(3, unacked(17)), 0, Store::new()), Err(ConfigError::Invalid(_))));
}

#[test]
fn the_host_invariant_rejects_each_broken_transfer_clause() {
    let good = host(1);
    let inc = Incoming { transfer: 1, range: KeyRange::keys(0, 5), parts: 2, next_part: 1, total_pairs: 3, applied: 1 };
    let mut h = good.clone();
    h.incoming[0] = Some(inc);
    h.reserved_pairs = 2;
    assert_eq!(h.check_invariants(), Ok(()), "a transfer half received");
    for (broken, why) in [
        (Incoming { next_part: 0, ..inc }, "part 0 not applied"),
        (Incoming { next_part: 2, ..inc }, "every part applied"),
        (Incoming { applied: 4, total_pairs: 3, ..inc }, "more pairs than the transfer"),
    ] {
        let mut h = good.clone();
        h.incoming[0] = Some(broken);
        h.reserved_pairs = (broken.total_pairs.saturating_sub(broken.applied)) as usize;
        assert_eq!(h.check_invariants(), Err("incoming transfer state out of bounds"), "{why}");
    }
    let mut h = good.clone();
    h.incoming[0] = Some(inc);
    h.reserved_pairs = 1;
    assert_eq!(h.check_invariants(), Err("reserved pairs disagree with the incoming transfers"));
    let mut h = good.clone();
    h.incoming[0] = Some(Incoming { range: KeyRange::keys(0, 5), ..inc });
    h.reserved_pairs = 2;
    h.map.set(&KeyRange::keys(3, 4), 1).unwrap();
    assert_eq!(h.check_invariants(), Err("host owns a key of a range it is still receiving"));
    let mut h = good.clone();
    h.reserved_pairs = 17;
    h.incoming[0] = Some(Incoming { total_pairs: 17, applied: 0, ..inc });
    assert_eq!(h.check_invariants(), Err("storage holds more than its capacity less reservations"));
    let mut h = good.clone();
    h.store.set(7, b"v").unwrap();
    assert_eq!(h.check_invariants(), Err("storage holds a key this host neither owns nor is receiving"));
    let mut h = good.clone();
    h.outgoing
        .push(Outgoing { transfer: 1, recipient: 1, range: KeyRange::keys(0, 5), last_seqno: 5, pairs: 0 })
        .unwrap();
    assert_eq!(h.check_invariants(), Err("outgoing transfer to this host"));
    let mut h = good.clone();
    h.outgoing
        .push(Outgoing { transfer: 1, recipient: 0, range: KeyRange::keys(0, 5), last_seqno: 0, pairs: 0 })
        .unwrap();
    assert_eq!(h.check_invariants(), Err("fully acknowledged transfer still listed as outgoing"));
}

mod bounds;
mod equality;
mod eviction;
mod joining;
mod status;

#[test]
fn a_host_knows_its_index_and_its_clusters_identity() {
    let (h0, h2) = (host(0), host(2));
    assert_eq!((h0.id(), h2.id()), (0, 2));
    assert_eq!(h0.cluster(), crate::kv::config::identity_of(&[H0, H1, H2], &params()));
    assert_eq!(h0.cluster(), h2.cluster(), "one cluster");
    assert_ne!(
        h0.cluster(),
        crate::kv::config::identity_of(&[H1, H0, H2], &params()),
        "another order, another cluster"
    );
}

/// Debug builds check the host's invariants after every step.
#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "reserved pairs disagree with the incoming transfers")]
fn a_debug_build_checks_the_invariants_after_a_step() {
    let mut h = host(0);
    h.reserved_pairs = 1;
    // Not through `run`, which checks the invariants itself.
    let mut store = Buf::new();
    let _ = h.handle(T0, C, &single(1, 1, &Body::GetRequest { key: 7 }), &mut store.outbox());
}

#[test]
fn the_invariants_keep_each_host_fixed_at_its_index() {
    let h = host(0);
    assert_eq!(h.check_invariants(), Ok(()));
    let p = params();
    let table = |peers: &[(Endpoint, PeerKind)]| {
        let mut rel = Reliable::new(Protocol::Kv, p.max_datagram_bytes, p.reliable, 1).unwrap();
        rel.set_cluster(h.config().identity());
        for (ep, kind) in peers {
            let i = rel.add_peer(*ep, *kind).unwrap();
            if *kind == PeerKind::Client {
                rel.accept(T0, i, 100, 100);
            }
        }
        let mut broken = h.clone();
        broken.rel = rel;
        broken.check_invariants()
    };
    let fixed = PeerKind::Fixed { base: 1 };
    assert_eq!(table(&[(H0, fixed), (H1, fixed), (H2, fixed)]), Ok(()), "as built");
    let moved = table(&[(H0, fixed), (H2, fixed), (H1, fixed)]);
    assert_eq!(moved, Err("host peer missing, moved or not fixed"), "hosts 1 and 2 swapped");
    let client = table(&[(H0, fixed), (H1, PeerKind::Client), (H2, fixed)]);
    assert_eq!(client, Err("host peer missing, moved or not fixed"), "host 1 taken for a client");
    let missing = table(&[(H0, fixed), (H1, fixed)]);
    assert_eq!(missing, Err("host peer missing, moved or not fixed"), "host 2 missing");
}
