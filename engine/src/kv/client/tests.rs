//! Client rules, one test each, over real hosts on a lossless network.

extern crate std;
use std::collections::VecDeque;
use std::vec::Vec;

use super::*;
use crate::kv::msg::KeyRange;
use crate::kv::reliable::ReliableParams;
use crate::kv::storage::HeaplessStore;
use crate::kv::{KvConfig, KvHost};
use crate::outbox::OutboxBuf;

type Host = KvHost<HeaplessStore<16, 64>, 4, 8, 8, 16, 512>;
type Client = KvClient<4, 4, 512>;
const H0: Endpoint = Endpoint::v4([10, 0, 0, 1], 1);
const H1: Endpoint = Endpoint::v4([10, 0, 0, 2], 1);
const C: Endpoint = Endpoint::v4([10, 0, 1, 1], 9);

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

/// Two real hosts and one client over a lossless FIFO network.
struct Net {
    hosts: Vec<Host>,
    client: Client,
    queue: VecDeque<(Endpoint, Endpoint, Vec<u8>)>,
    done: Vec<(u64, Option<Vec<u8>>, &'static str)>,
    refused: u32,
    drop_to_client: bool,
}

impl Net {
    fn new(first_seqno: u64) -> Net {
        let mut config = KvConfig::new(&[H0, H1]).unwrap();
        config.params = params();
        let hosts = (0..2).map(|i| Host::new(config.clone(), i, HeaplessStore::new()).unwrap()).collect();
        let client = Client::new(&[H0, H1], first_seqno, params()).unwrap();
        Net { hosts, client, queue: VecDeque::new(), done: Vec::new(), refused: 0, drop_to_client: false }
    }

    fn take(&mut self, from: Endpoint, out: &crate::outbox::Outbox<'_>) {
        for (to, b) in out.iter() {
            self.queue.push_back((from, to, b.to_vec()));
        }
    }

    fn submit(&mut self, r: Request<'_>) -> Result<u64, ClientError> {
        let mut store = OutboxBuf::<16, 8192>::new();
        let mut out = store.outbox();
        let res = self.client.submit(Instant::ZERO, r, &mut out);
        self.take(C, &out);
        res
    }

    /// The client ticks at `ms`: retransmissions and owed acks due then.
    fn tick_client(&mut self, ms: u64) {
        let mut store = OutboxBuf::<16, 8192>::new();
        let mut out = store.outbox();
        self.client.tick(Instant::from_millis(ms), &mut out);
        self.take(C, &out);
    }

    /// The client sends every ack it owes, and the network carries them.
    fn flush_client_acks(&mut self) {
        let mut store = OutboxBuf::<16, 8192>::new();
        let mut out = store.outbox();
        self.client.flush_acks(&mut out);
        self.take(C, &out);
        self.pump();
    }

    /// Another client, at endpoint `n`, runs one Get at host 0 and acks the reply (settled).
    fn other_settled_client(&mut self, n: u8) {
        let ep = Endpoint::v4([10, 0, 3, n], 9);
        let mut inner: heapless::Vec<u8, 64> = heapless::Vec::new();
        wire::append(&mut inner, &Body::GetRequest { key: 0 }).unwrap();
        let mut buf = [0u8; 128];
        let len =
            wire::encode(Protocol::Kv, &Frame::Single { base: 1, seqno: 1, ack: 0, body: Bytes(&inner) }, &mut buf)
                .unwrap();
        let mut store = OutboxBuf::<16, 8192>::new();
        let mut out = store.outbox();
        let _ = self.hosts[0].handle(Instant::ZERO, ep, &buf[..len], &mut out);
        let seqno = out
            .iter()
            .find_map(|(_, d)| match wire::decode::<Frame<'_>>(Protocol::Kv, d) {
                Ok(Frame::Single { seqno, .. }) => Some(seqno),
                _ => None,
            })
            .unwrap();
        let len = wire::encode(Protocol::Kv, &Frame::Ack { seqno }, &mut buf).unwrap();
        out.clear();
        let _ = self.hosts[0].handle(Instant::ZERO, ep, &buf[..len], &mut out);
    }

    /// Host 0 runs its timers until it has nothing left to retransmit: with the client's
    /// replies dropped, it gives up on the client.
    fn host_0_gives_up(&mut self) {
        let mut store = OutboxBuf::<16, 8192>::new();
        for _ in 0..10 {
            let now = self.hosts[0].next_deadline();
            if now == Instant::NEVER {
                break;
            }
            let mut out = store.outbox();
            let _ = self.hosts[0].tick(now, &mut out);
        }
    }

    fn pump(&mut self) {
        let mut store = OutboxBuf::<16, 8192>::new();
        for _ in 0..1000 {
            let Some((from, to, bytes)) = self.queue.pop_front() else { return };
            let mut out = store.outbox();
            if to == C {
                let is_reply = matches!(wire::decode(Protocol::Kv, &bytes), Ok(Frame::Single { .. }));
                if self.drop_to_client && is_reply {
                    continue;
                }
                match self.client.handle(Instant::ZERO, from, &bytes, &mut out) {
                    Some(Event::Completed(c)) => {
                        let (v, what) = match c.outcome {
                            Outcome::Value(v) => (v.map(|v| v.to_vec()), "value"),
                            Outcome::Written => (None, "written"),
                            Outcome::Sharded => (None, "sharded"),
                            Outcome::Failed(_) => (None, "failed"),
                        };
                        self.done.push((c.op, v, what));
                    }
                    Some(Event::Refused { .. }) => self.refused += 1,
                    Some(Event::Lost { op, .. }) => self.done.push((op, None, "lost")),
                    None => {}
                }
            } else {
                let i = usize::from(to == H1);
                let _ = self.hosts[i].handle(Instant::ZERO, from, &bytes, &mut out);
            }
            let out = out;
            let mut q = Vec::new();
            for (dst, b) in out.iter() {
                q.push((to, dst, b.to_vec()));
            }
            self.queue.extend(q);
        }
        panic!("network did not go quiet");
    }
}

#[test]
fn client_sets_and_gets_through_the_root() {
    let mut n = Net::new(1);
    n.submit(Request::Set(5, b"five")).unwrap();
    n.pump();
    n.submit(Request::Get(5)).unwrap();
    n.pump();
    assert_eq!(n.done, [(1, None, "written"), (2, Some(b"five".to_vec()), "value")]);
    assert_eq!(n.client.reliable().pending(), 0, "requests acked by the replies");
    assert_eq!(n.hosts[0].reliable().pending(), 1, "the Get carried the Set reply's ack; the last is owed");
    let mut store = OutboxBuf::<16, 8192>::new();
    let mut out = store.outbox();
    n.client.flush_acks(&mut out);
    assert_eq!(out.len(), 1);
    n.take(C, &out);
    n.pump();
    assert_eq!(n.hosts[0].reliable().pending(), 0, "replies acked by the client");
}

#[test]
fn a_request_and_its_reply_ack_each_other_and_a_lone_ack_waits_a_quarter_retransmission() {
    let mut n = Net::new(1);
    n.submit(Request::Set(5, b"five")).unwrap();
    let (_, _, request) = n.queue.pop_front().unwrap();
    let mut store = OutboxBuf::<16, 8192>::new();
    let mut out = store.outbox();
    let _ = n.hosts[0].handle(Instant::ZERO, C, &request, &mut out);
    let frames: Vec<_> = out.iter().map(|(_, b)| wire::decode::<Frame<'_>>(Protocol::Kv, b).unwrap()).collect();
    assert!(matches!(frames[..], [Frame::Single { ack: 1, .. }]), "one datagram, the reply carrying the ack");
    let reply = out.iter().next().unwrap().1.to_vec();
    let mut out = store.outbox();
    assert!(n.client.handle(Instant::ZERO, H0, &reply, &mut out).is_some());
    assert!(out.is_empty(), "the reply's ack is owed, not sent");
    assert_eq!(n.client.reliable().pending(), 0, "the reply acked the request");
    assert_eq!(n.client.next_deadline(), Instant::from_millis(2), "10 ms / 4, in whole ms");
    n.submit(Request::Get(5)).unwrap();
    let (_, _, next) = n.queue.back().unwrap().clone();
    assert!(matches!(wire::decode(Protocol::Kv, &next), Ok(Frame::Single { seqno: 2, ack: 1, .. })));
    assert_eq!(n.client.next_deadline(), Instant::from_millis(10), "no ack owed: only the retransmission");
}

#[test]
fn client_follows_a_redirect_to_the_new_owner() {
    let mut n = Net::new(1);
    n.submit(Request::Set(5, b"five")).unwrap();
    n.pump();
    n.submit(Request::Shard(KeyRange::keys(0, 10), H1)).unwrap();
    n.pump();
    assert!(n.hosts[1].owns(5));
    n.client.hints.clear(); // forget that H0 answered for key 5
    n.submit(Request::Get(5)).unwrap();
    n.pump();
    assert_eq!(n.done[2], (3, Some(b"five".to_vec()), "value"));
    n.submit(Request::Get(5)).unwrap();
    let first = n.queue.front().unwrap().1;
    assert_eq!(first, H1, "the redirect was remembered");
}

#[test]
fn client_seqnos_start_at_the_caller_supplied_value() {
    let mut n = Net::new(5000);
    n.submit(Request::Get(1)).unwrap();
    let (_, _, bytes) = n.queue.front().unwrap().clone();
    let f: Frame<'_> = wire::decode(Protocol::Kv, &bytes).unwrap();
    assert!(matches!(f, Frame::Single { base: 5000, seqno: 5000, .. }));
    n.pump();
    assert_eq!(n.done.len(), 1);
}

#[test]
fn a_restarted_client_on_the_same_endpoint_is_served() {
    let mut n = Net::new(1);
    n.submit(Request::Set(1, b"a")).unwrap();
    n.pump();
    n.client = Client::new(&[H0, H1], 1_000_000, params()).unwrap();
    n.done.clear();
    n.submit(Request::Get(1)).unwrap();
    n.pump();
    assert_eq!(n.done, [(1, Some(b"a".to_vec()), "value")]);
}

#[test]
fn client_retransmits_an_unacked_request_until_it_is_answered() {
    let mut n = Net::new(1);
    n.submit(Request::Set(1, b"a")).unwrap();
    n.queue.clear(); // lost
    assert_eq!(n.client.next_deadline(), Instant::from_millis(10));
    let mut store = OutboxBuf::<16, 8192>::new();
    let mut out = store.outbox();
    n.client.tick(Instant::from_millis(10), &mut out);
    assert_eq!(out.len(), 1);
    n.take(C, &out);
    n.pump();
    assert_eq!(n.done, [(1, None, "written")]);
    assert_eq!(n.client.next_deadline(), Instant::from_millis(2), "the reply's ack, owed");
    n.tick_client(2);
    assert_eq!(n.queue.len(), 1, "the ack goes alone");
    assert_eq!(n.client.next_deadline(), Instant::NEVER);
}

#[test]
fn client_acks_replies_and_reacks_duplicates() {
    let mut n = Net::new(1);
    n.submit(Request::Get(1)).unwrap();
    n.pump();
    // The host retransmits its (already acked) reply as if the ack were lost.
    let mut store = OutboxBuf::<16, 8192>::new();
    let mut out = store.outbox();
    let body = Body::Reply { req: 1, key: 1, value: None };
    let mut inner: heapless::Vec<u8, 64> = heapless::Vec::new();
    wire::append(&mut inner, &body).unwrap();
    let mut buf = [0u8; 128];
    let len = wire::encode(Protocol::Kv, &Frame::Single { base: 1, seqno: 1, ack: 0, body: Bytes(&inner) }, &mut buf)
        .unwrap();
    assert_eq!(n.client.handle(Instant::ZERO, H0, &buf[..len], &mut out), None, "not completed twice");
    let acks: Vec<_> = out.iter().map(|(_, b)| wire::decode::<Frame<'_>>(Protocol::Kv, b).unwrap()).collect();
    assert_eq!(acks, [Frame::Ack { seqno: 1 }]);
}

#[test]
fn a_busy_host_refusal_is_reported_and_the_request_retried() {
    let mut n = Net::new(1);
    n.drop_to_client = true; // replies lost: the host's reply queue fills
    for k in 0..4u64 {
        n.submit(Request::Get(k)).unwrap();
        n.pump();
        // The request's ack went with the lost reply: the retransmission is a duplicate
        // the host acks alone.
        n.tick_client(1000 * (k + 1));
        n.pump();
        n.client.cancel();
    }
    n.drop_to_client = false;
    n.submit(Request::Get(9)).unwrap();
    n.pump();
    assert_eq!(n.refused, 1, "the host pushed back visibly");
    assert!(n.done.is_empty());
    assert!(n.client.pending().is_some(), "still outstanding");
}

#[test]
fn busy_and_oversize_submissions_are_refused() {
    let mut n = Net::new(1);
    assert_eq!(n.submit(Request::Set(1, &[0u8; 65])), Err(ClientError::TooLarge));
    n.submit(Request::Get(1)).unwrap();
    assert_eq!(n.submit(Request::Get(2)), Err(ClientError::Busy));
}

#[test]
fn a_full_channel_refuses_submission_with_queue_full() {
    let mut n = Net::new(1);
    for k in 0..4u64 {
        n.submit(Request::Get(k)).unwrap();
        n.client.cancel();
    }
    n.queue.clear();
    assert_eq!(n.submit(Request::Get(9)), Err(ClientError::QueueFull));
    assert_eq!(n.client.pending(), None);
}

#[test]
fn a_redirect_loop_pauses_after_the_streak_limit() {
    let mut n = Net::new(1);
    n.submit(Request::Get(5)).unwrap();
    n.queue.clear();
    let mut store = OutboxBuf::<16, 8192>::new();
    for i in 0..MAX_REDIRECT_STREAK as u64 {
        let from = if i % 2 == 0 { H0 } else { H1 };
        let to = if i % 2 == 0 { H1 } else { H0 };
        let req = n.client.op.as_ref().unwrap().seqno.unwrap();
        let body = Body::Redirect { req, key: 5, owner: to };
        let mut inner: heapless::Vec<u8, 64> = heapless::Vec::new();
        wire::append(&mut inner, &body).unwrap();
        let mut buf = [0u8; 128];
        let seq = i / 2 + 1;
        // Each redirect acks the request it answers: the queues never fill, so only the
        // streak limit can hold the next attempt back.
        let f = Frame::Single { base: 1, seqno: seq, ack: req, body: Bytes(&inner) };
        let len = wire::encode(Protocol::Kv, &f, &mut buf).unwrap();
        let mut out = store.outbox();
        assert_eq!(n.client.handle(Instant::ZERO, from, &buf[..len], &mut out), None);
        let requests = out.len(); // the ack is owed, not sent
        let expect = usize::from(i + 1 < u64::from(MAX_REDIRECT_STREAK));
        assert_eq!(requests, expect, "redirect {i}");
    }
    assert_eq!(n.client.op.as_ref().and_then(|o| o.resend_at), Some(Instant::from_millis(10)), "paused");
    assert_eq!(n.client.next_deadline(), Instant::from_millis(2), "the redirects' acks are owed first");
}

#[test]
fn an_evicted_client_restarts_its_channel_and_its_request_runs_once_on_the_new_one() {
    let mut n = Net::new(1);
    n.submit(Request::Set(7, b"a")).unwrap();
    n.pump();
    n.flush_client_acks();
    // Six other clients fill host 0's table (2 hosts + 6 clients); the sixth evicts this
    // client, settled and least recently active.
    for k in 1..=6 {
        n.other_settled_client(k);
    }
    assert!(n.hosts[0].reliable().index_of(C).is_none(), "evicted");
    let old_base = n.client.reliable().peer(0).unwrap().send_base();
    n.submit(Request::Get(7)).unwrap();
    n.pump();
    assert_eq!(n.done, [(1, None, "written"), (2, Some(b"a".to_vec()), "value")]);
    assert_eq!(n.hosts[0].counters().closed_refused, 1, "the old channel was refused once");
    assert_eq!(n.hosts[0].counters().sets, 1);
    assert_eq!(n.hosts[0].counters().gets, 7, "the Get ran once, on the new channel");
    assert!(n.client.reliable().peer(0).unwrap().send_base() > old_base, "channel restarted");
}

#[test]
fn a_request_whose_reply_the_host_gave_up_on_ends_lost_and_is_not_sent_again() {
    let mut n = Net::new(1);
    n.drop_to_client = true;
    n.submit(Request::Set(7, b"a")).unwrap();
    n.pump();
    // The host retransmits the reply into the void, then gives up on the client.
    n.host_0_gives_up();
    assert_eq!(n.hosts[0].counters().abandoned, 1);
    // The client retransmits its request: refused as possibly executed.
    n.drop_to_client = false;
    n.tick_client(10);
    n.pump();
    assert_eq!(n.done, [(1, None, "lost")]);
    assert_eq!(n.client.pending(), None);
    assert_eq!(n.hosts[0].counters().sets, 1, "executed once, never again");
    // The next operation goes on a restarted channel.
    n.submit(Request::Get(7)).unwrap();
    n.pump();
    assert_eq!(n.done[1], (2, Some(b"a".to_vec()), "value"));
    assert_eq!(n.hosts[0].counters().sets, 1);
}

#[test]
fn a_read_whose_reply_the_host_gave_up_on_is_sent_again_on_a_new_channel() {
    let mut n = Net::new(1);
    n.submit(Request::Set(7, b"a")).unwrap();
    n.pump();
    n.drop_to_client = true;
    n.submit(Request::Get(7)).unwrap();
    n.pump();
    n.host_0_gives_up();
    assert_eq!(n.hosts[0].counters().abandoned, 1);
    // Refused as possibly executed: a read has no effect, so it runs again and completes.
    n.drop_to_client = false;
    n.tick_client(10);
    n.pump();
    assert_eq!(n.done, [(1, None, "written"), (2, Some(b"a".to_vec()), "value")]);
    assert_eq!(n.hosts[0].counters().gets, 2, "the read ran on both channels");
}

/// The former liveness gap of docs/kv.md: a client restarted on a dead client's endpoint
/// takes the host's stale retransmission (a reply to the dead client, never acknowledged) as
/// the first message of the host's channel. The host then opens a new channel to it at a
/// larger base when it serves the new client's request, and the client accepts it.
#[test]
fn a_client_restarted_on_a_dead_clients_endpoint_is_served_after_a_stale_retransmission() {
    let mut n = Net::new(1);
    n.drop_to_client = true;
    n.submit(Request::Set(1, b"a")).unwrap();
    n.pump();
    // The dead client never acknowledged the reply: the host retransmits it.
    let mut store = OutboxBuf::<16, 8192>::new();
    let mut out = store.outbox();
    let _ = n.hosts[0].tick(Instant::from_millis(10), &mut out);
    let stale: Vec<Vec<u8>> = out.iter().filter(|(dst, _)| *dst == C).map(|(_, b)| b.to_vec()).collect();
    assert_eq!(stale.len(), 1, "one stale retransmission");
    // A new client on the same endpoint hears it first.
    n.drop_to_client = false;
    n.client = Client::new(&[H0, H1], 1_000_000, params()).unwrap();
    n.done.clear();
    let mut out = store.outbox();
    assert_eq!(n.client.handle(Instant::ZERO, H0, &stale[0], &mut out), None, "nothing of the new client's");
    n.submit(Request::Get(1)).unwrap();
    n.pump();
    assert_eq!(n.done, [(1, Some(b"a".to_vec()), "value")], "served, not timed out");
}

fn hash_of(c: &Client) -> u64 {
    use core::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    c.hash(&mut h);
    h.finish()
}

#[test]
fn client_equality_and_hash_see_every_field_but_the_counters() {
    let a = Client::new(&[H0, H1], 1, params()).unwrap();
    let mut counted = a.clone();
    counted.stats.datagrams_in = 5;
    assert!(counted == a && hash_of(&counted) == hash_of(&a), "counters are not state");
    let mut busy = a.clone();
    let mut store = OutboxBuf::<16, 8192>::new();
    busy.submit(Instant::ZERO, Request::Get(5), &mut store.outbox()).unwrap();
    let mut variants = Vec::new();
    let mut v = a.clone();
    v.hosts.pop();
    variants.push(("hosts", v));
    let mut v = a.clone();
    v.params.max_value_bytes -= 1;
    variants.push(("params", v));
    variants.push(("channels", Client::new(&[H0, H1], 2, params()).unwrap()));
    let mut v = a.clone();
    v.next_op += 1;
    variants.push(("next operation", v));
    let mut v = a.clone();
    v.hints.push((5, 1)).unwrap();
    variants.push(("hints", v));
    let mut v = busy.clone();
    v.op = None;
    for (what, v) in variants {
        assert!(v != a, "{what}");
        assert_ne!(hash_of(&v), hash_of(&a), "{what}");
    }
    assert!(v != busy && hash_of(&v) != hash_of(&busy), "the operation");
}

/// A frame from `from` to the client; its event.
fn to_client(n: &mut Net, from: Endpoint, f: &Frame<'_>) -> Option<Event<'static>> {
    let mut buf = [0u8; 512];
    let len = wire::encode(Protocol::Kv, f, &mut buf).unwrap();
    let mut store = OutboxBuf::<16, 8192>::new();
    let mut out = store.outbox();
    n.client.handle(Instant::ZERO, from, &buf[..len], &mut out).map(|e| match e {
        Event::Completed(c) => Event::Completed(Completed {
            op: c.op,
            outcome: match c.outcome {
                Outcome::Value(_) => Outcome::Value(None),
                Outcome::Written => Outcome::Written,
                Outcome::Sharded => Outcome::Sharded,
                Outcome::Failed(e) => Outcome::Failed(e),
            },
            redirects: c.redirects,
            host: c.host,
        }),
        Event::Lost { op, host } => Event::Lost { op, host },
        Event::Refused { op, host, reason } => Event::Refused { op, host, reason },
    })
}

/// `body`, encoded into `inner` (cleared first).
fn encode_body(body: &Body<'_>, inner: &mut heapless::Vec<u8, 128>) {
    inner.clear();
    wire::append(inner, body).unwrap();
}

#[test]
fn answers_and_refusals_count_only_for_the_outstanding_attempt() {
    let mut n = Net::new(1);
    n.submit(Request::Get(5)).unwrap();
    n.queue.clear();
    // An ack of something never sent is invalid; a refusal of another seqno or from another
    // host is ignored.
    assert_eq!(to_client(&mut n, H0, &Frame::Ack { seqno: 9 }), None);
    assert_eq!(n.client.stats().invalid_messages, 1);
    assert_eq!(to_client(&mut n, H0, &Frame::Ack { seqno: 1 }), None);
    assert_eq!(n.client.stats().invalid_messages, 1, "a real ack is not invalid");
    assert_eq!(to_client(&mut n, H0, &Frame::Refused { seqno: 2, reason: Refusal::QueueFull }), None);
    assert_eq!(to_client(&mut n, H1, &Frame::Refused { seqno: 1, reason: Refusal::QueueFull }), None);
    let refused = to_client(&mut n, H0, &Frame::Refused { seqno: 1, reason: Refusal::QueueFull });
    assert!(matches!(refused, Some(Event::Refused { op: 1, .. })));
    // A closed channel at another host, or for an older seqno, does not end the operation.
    let closed = |seqno| Frame::Refused { seqno, reason: Refusal::ChannelClosed { above: 50, lost: 50 } };
    assert_eq!(to_client(&mut n, H1, &closed(1)), None);
    assert!(n.client.pending().is_some());
    // A reply with the operation's seqno but another key is not its answer.
    let mut inner = heapless::Vec::new();
    encode_body(&Body::Reply { req: 1, key: 6, value: None }, &mut inner);
    let f = Frame::Single { base: 1, seqno: 1, ack: 1, body: Bytes(&inner) };
    assert_eq!(to_client(&mut n, H0, &f), None);
    assert!(n.client.pending().is_some(), "still waiting");
    // The right key completes it, counting no redirect.
    encode_body(&Body::Reply { req: 1, key: 5, value: None }, &mut inner);
    let f = Frame::Single { base: 1, seqno: 2, ack: 1, body: Bytes(&inner) };
    assert!(matches!(to_client(&mut n, H0, &f), Some(Event::Completed(Completed { redirects: 0, .. }))));
}

#[test]
fn a_completed_operation_reports_how_many_redirects_it_followed() {
    let mut n = Net::new(1);
    n.submit(Request::Get(5)).unwrap();
    n.queue.clear();
    let mut inner = heapless::Vec::new();
    encode_body(&Body::Redirect { req: 1, key: 5, owner: H1 }, &mut inner);
    assert_eq!(to_client(&mut n, H0, &Frame::Single { base: 1, seqno: 1, ack: 1, body: Bytes(&inner) }), None);
    let req = n.client.op.as_ref().unwrap().seqno.unwrap();
    encode_body(&Body::Reply { req, key: 5, value: None }, &mut inner);
    let done = to_client(&mut n, H1, &Frame::Single { base: 1, seqno: 1, ack: req, body: Bytes(&inner) });
    assert!(matches!(done, Some(Event::Completed(Completed { redirects: 1, .. }))), "{done:?}");
}

#[test]
fn a_paused_attempt_goes_out_when_its_time_comes_and_not_before() {
    let mut n = Net::new(1);
    n.submit(Request::Get(5)).unwrap();
    n.queue.clear();
    let at = Instant::from_millis(30);
    n.client.op.as_mut().unwrap().seqno = None;
    n.client.op.as_mut().unwrap().resend_at = Some(at);
    let mut store = OutboxBuf::<16, 8192>::new();
    let mut out = store.outbox();
    n.client.tick(Instant::from_millis(5), &mut out);
    assert!(n.client.op.as_ref().unwrap().seqno.is_none(), "not before its time");
    n.client.tick(at, &mut out);
    assert!(n.client.op.as_ref().unwrap().seqno.is_some(), "sent at its time");
}

#[test]
fn a_lone_ack_waits_a_quarter_of_the_retransmission_period() {
    let p = KvParams { reliable: ReliableParams { retransmit_ms: 40, ..params().reliable }, ..params() };
    let mut c = Client::new(&[H0, H1], 1, p).unwrap();
    let mut store = OutboxBuf::<16, 8192>::new();
    c.submit(Instant::ZERO, Request::Get(5), &mut store.outbox()).unwrap();
    let mut inner = heapless::Vec::<u8, 128>::new();
    wire::append(&mut inner, &Body::Reply { req: 1, key: 5, value: None }).unwrap();
    let mut buf = [0u8; 256];
    let f = Frame::Single { base: 1, seqno: 1, ack: 1, body: Bytes(&inner) };
    let len = wire::encode(Protocol::Kv, &f, &mut buf).unwrap();
    assert!(c.handle(Instant::ZERO, H0, &buf[..len], &mut store.outbox()).is_some());
    assert_eq!(c.next_deadline(), Instant::from_millis(10), "40 ms / 4");
}

#[test]
fn a_hint_is_kept_once_per_key_and_the_oldest_goes_when_full() {
    let mut hints = heapless::Vec::new();
    remember(&mut hints, 5, 1);
    remember(&mut hints, 6, 1);
    remember(&mut hints, 5, 0);
    assert_eq!(&hints[..], [(6, 1), (5, 0)], "re-remembering a key replaces its hint only");
    for k in 0..HINTS as u64 {
        remember(&mut hints, 100 + k, 1);
    }
    assert_eq!(hints.len(), HINTS);
    assert_eq!(hints[0], (100, 1), "the two oldest went first");
    assert!(!hints.iter().any(|h| h.0 == 5 || h.0 == 6));
}

/// A frame from `from` to the client: whether it produced an event, and how many datagrams.
fn to_client_sending(n: &mut Net, from: Endpoint, f: &Frame<'_>) -> (bool, usize) {
    let mut buf = [0u8; 512];
    let len = wire::encode(Protocol::Kv, f, &mut buf).unwrap();
    let mut store = OutboxBuf::<16, 8192>::new();
    let mut out = store.outbox();
    let event = n.client.handle(Instant::ZERO, from, &buf[..len], &mut out).is_some();
    (event, out.len())
}

#[test]
fn a_write_is_answered_only_by_a_reply_or_redirect_for_its_own_key() {
    let mut n = Net::new(1);
    n.submit(Request::Set(5, b"v")).unwrap();
    n.queue.clear();
    let mut inner = heapless::Vec::new();
    encode_body(&Body::Reply { req: 1, key: 6, value: None }, &mut inner);
    assert_eq!(to_client(&mut n, H0, &Frame::Single { base: 1, seqno: 1, ack: 1, body: Bytes(&inner) }), None);
    encode_body(&Body::Redirect { req: 1, key: 6, owner: H1 }, &mut inner);
    assert_eq!(to_client(&mut n, H0, &Frame::Single { base: 1, seqno: 2, ack: 1, body: Bytes(&inner) }), None);
    assert!(n.client.pending().is_some(), "still waiting");
    assert!(n.client.hints.is_empty(), "no redirect followed");
    encode_body(&Body::Reply { req: 1, key: 5, value: None }, &mut inner);
    let f = Frame::Single { base: 1, seqno: 3, ack: 1, body: Bytes(&inner) };
    let done = to_client(&mut n, H0, &f);
    assert!(matches!(done, Some(Event::Completed(Completed { outcome: Outcome::Written, redirects: 0, .. }))));
}

#[test]
fn a_value_of_exactly_the_largest_size_is_sent() {
    let mut n = Net::new(1);
    assert!(n.submit(Request::Set(1, &[7u8; 64])).is_ok());
    n.pump();
    assert_eq!(n.done, [(1, None, "written")]);
}

#[test]
fn a_closed_channel_at_another_host_leaves_the_operation_alone() {
    let mut n = Net::new(1);
    // Key 15 lives on host 1: the client's channel to host 1 carries four requests (the
    // first redirected there), seqnos 1-4; its channel to host 0 carries 2.
    n.submit(Request::Shard(KeyRange::keys(10, 20), H1)).unwrap();
    n.pump();
    for _ in 0..4 {
        n.submit(Request::Get(15)).unwrap();
        n.pump();
    }
    assert_eq!(n.done.len(), 5);
    let to_h1 = n.client.reliable().peer(1).unwrap().next_seqno();
    assert_eq!(to_h1, 5);
    // An outstanding Get at host 0, seqno 3 there: a seqno host 1's channel also used.
    n.submit(Request::Get(5)).unwrap();
    assert_eq!(n.client.reliable().peer(0).unwrap().next_seqno(), 4);
    n.queue.clear();
    let closed = |seqno| Frame::Refused { seqno, reason: Refusal::ChannelClosed { above: 50, lost: 50 } };
    let ignored = n.client.stats().ignored_messages;
    assert_eq!(to_client_sending(&mut n, H1, &closed(to_h1)), (false, 0), "a seqno never sent to host 1");
    assert_eq!(n.client.stats().ignored_messages, ignored + 1);
    assert_eq!(to_client_sending(&mut n, H1, &closed(to_h1 - 1)), (false, 0), "host 1's channel restarts, alone");
    assert!(n.client.reliable().peer(1).unwrap().next_seqno() > 50, "restarted above the floor");
    assert!(n.client.pending().is_some(), "the Get at host 0 goes on");
    n.tick_client(10);
    n.pump();
    assert_eq!(n.done.last().map(|d| d.2), Some("value"));
}
