//! Durable records: round trip, compaction, refusal of bad logs, and a restarted replica
//! rejoining a running cluster.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

extern crate std;

use std::vec::Vec;

use super::*;
use crate::outbox::{Outbox, OutboxBuf};
use crate::rsl::apps::counter::Counter;
use crate::rsl::msg::RslMsg;
use crate::Endpoint;

type Rep = Replica<Counter, 3, 8, 1472, 4096, 16, 64>;
type Out = OutboxBuf<64, 65536>;
const RECORD_BYTES: usize = 1472 + DURABLE_RECORD_OVERHEAD_BYTES;

fn eps() -> [Endpoint; 3] {
    [Endpoint::v4([10, 0, 0, 1], 7000), Endpoint::v4([10, 0, 0, 2], 7000), Endpoint::v4([10, 0, 0, 3], 7000)]
}

fn config() -> RslConfig<3> {
    RslConfig::new(&eps()).unwrap()
}

fn encode(msg: &RslMsg<'_>) -> Vec<u8> {
    let mut buf = [0u8; 1472];
    let n = wire::encode(Protocol::Rsl, msg, &mut buf).unwrap();
    buf[..n].to_vec()
}

fn two_a(opn: u64) -> Vec<u8> {
    encode(&RslMsg::TwoA { bal: Ballot::INITIAL, opn, batch: Bytes(b"") })
}

/// A replica and the log a durable binding would have written for it.
struct Node {
    replica: Option<Rep>,
    log: Vec<Vec<u8>>,
}

impl Node {
    fn new(me: usize) -> Node {
        Node { replica: Some(Rep::new(config(), me, Counter::default(), Instant::ZERO).unwrap()), log: Vec::new() }
    }

    fn persist(&mut self, step: Step) {
        if step.durable_state_changed {
            let mut buf = [0u8; RECORD_BYTES];
            let r = self.replica.as_ref().unwrap();
            self.log.push(r.durable_record(&step, &mut buf).unwrap().to_vec());
        }
    }

    fn handle(&mut self, now: Instant, from: Endpoint, bytes: &[u8], out: &mut Outbox<'_>) {
        let Some(r) = self.replica.as_mut() else { return };
        let step = r.handle(now, from, bytes, out);
        self.persist(step);
    }

    fn recover(&self, me: usize) -> Result<Rep, RecoverError> {
        Rep::recover(config(), me, Counter::default(), Instant::ZERO, self.log.iter().map(|r| r.as_slice()))
    }
}

/// Promise, truncation point, reply counter, votes and proposer ballot.
type DurableView = (Ballot, u64, u64, Vec<(u64, Ballot, Vec<u8>)>, Ballot);

/// The acceptor state a log must bring back (checkpoints of peers are not durable).
fn durable_view(r: &Rep) -> DurableView {
    let a = r.acceptor();
    let votes = a.votes().map(|v| (v.opn, v.bal, v.batch.to_vec())).collect();
    (a.max_bal, a.log_truncation_point, a.replies_sent(), votes, r.proposer().max_ballot_sent_1a)
}

#[test]
fn a_replayed_log_restores_promise_votes_and_truncation() {
    let mut node = Node::new(1);
    let mut store = Out::new();
    let mut out = store.outbox();
    for opn in 0..11 {
        node.handle(Instant::ZERO, eps()[0], &two_a(opn), &mut out);
        out.clear();
    }
    let high = Ballot { seqno: 2, proposer: 2 };
    node.handle(Instant::ZERO, eps()[2], &encode(&RslMsg::OneA { bal: high }), &mut out);
    assert_eq!(node.log.len(), 12, "one record per vote and one per promise");
    let live = node.replica.as_ref().unwrap();
    assert!(live.acceptor().log_truncation_point > 0, "the window slid");
    let recovered = node.recover(1).unwrap();
    assert_eq!(durable_view(&recovered), durable_view(live));
    assert_eq!(recovered.status().view, high, "the view is at least the promise");
    assert_eq!(recovered.check_invariants(), Ok(()));

    // The restored promise refuses the old ballot, as the live replica does.
    let mut recovered = recovered;
    out.clear();
    let _ = recovered.handle(Instant::ZERO, eps()[0], &two_a(11), &mut out);
    assert_eq!(recovered.acceptor().vote_at(11), None);
    assert_eq!(recovered.stats().ignored_messages, 1);
}

#[test]
fn a_compacted_image_replays_to_the_same_state() {
    let mut node = Node::new(2);
    let mut store = Out::new();
    let mut out = store.outbox();
    for opn in [0, 1, 2, 4, 5] {
        node.handle(Instant::ZERO, eps()[0], &two_a(opn), &mut out);
        out.clear();
    }
    let live = node.replica.as_ref().unwrap();
    assert_eq!(live.durable_image_len(), 6);
    let image: Vec<Vec<u8>> = (0..live.durable_image_len())
        .map(|i| {
            let mut buf = [0u8; RECORD_BYTES];
            live.durable_image_record(i, &mut buf).unwrap().to_vec()
        })
        .collect();
    let mut buf = [0u8; RECORD_BYTES];
    assert!(live.durable_image_record(6, &mut buf).is_err(), "past the end");
    let from_image = Rep::recover(config(), 2, Counter::default(), Instant::ZERO, image.iter().map(|r| r.as_slice()));
    assert_eq!(durable_view(&from_image.unwrap()), durable_view(live));
}

#[test]
fn a_restarted_leader_never_starts_the_same_ballot_again() {
    let mut node = Node::new(0);
    let mut store = Out::new();
    let mut out = store.outbox();
    let step = node.replica.as_mut().unwrap().tick(Instant::ZERO, &mut out);
    assert!(step.durable_state_changed, "starting phase 1 is durable");
    node.persist(step);
    let sent_1a = out.iter().filter(|(_, b)| matches!(wire::decode(Protocol::Rsl, b), Ok(RslMsg::OneA { .. }))).count();
    assert_eq!(sent_1a, 3);

    let mut recovered = node.recover(0).unwrap();
    assert_eq!(recovered.proposer().max_ballot_sent_1a, Ballot::INITIAL);
    out.clear();
    let _ = recovered.tick(Instant::ZERO, &mut out);
    let again = out.iter().any(|(_, b)| matches!(wire::decode(Protocol::Rsl, b), Ok(RslMsg::OneA { .. })));
    assert!(!again, "ballot (1, 0) was already started before the crash");
}

#[test]
fn bad_logs_are_refused_with_the_record_named() {
    let mut node = Node::new(1);
    let mut store = Out::new();
    let mut out = store.outbox();
    node.handle(Instant::ZERO, eps()[0], &two_a(0), &mut out);
    let high = Ballot { seqno: 3, proposer: 2 };
    node.handle(Instant::ZERO, eps()[2], &encode(&RslMsg::OneA { bal: high }), &mut out);
    let good = node.log.clone();
    let replay = |log: &[Vec<u8>]| {
        Rep::recover(config(), 1, Counter::default(), Instant::ZERO, log.iter().map(|r| r.as_slice())).map(|_| ())
    };
    assert_eq!(replay(&good), Ok(()));

    let mut torn = good.clone();
    torn[1].pop();
    assert!(matches!(replay(&torn), Err(RecoverError::Undecodable { record: 1, .. })));

    let mut reordered = good.clone();
    reordered.swap(0, 1);
    assert!(
        matches!(replay(&reordered), Err(RecoverError::Inconsistent { record: 1, .. })),
        "the promise would go down"
    );

    let mut buf = [0u8; RECORD_BYTES];
    let forged = DurableRecord {
        max_bal: Ballot::INITIAL,
        max_ballot_sent_1a: Ballot::default(),
        log_truncation_point: 0,
        replies_sent: 0,
        vote: Some(Vote { opn: 0, bal: Ballot { seqno: 9, proposer: 0 }, batch: Bytes(b"") }),
    };
    let n = wire::encode(Protocol::Durable, &forged, &mut buf).unwrap();
    assert!(matches!(replay(&[buf[..n].to_vec()]), Err(RecoverError::Inconsistent { record: 0, .. })));

    let other_leader = DurableRecord { max_ballot_sent_1a: Ballot { seqno: 2, proposer: 0 }, vote: None, ..forged };
    let n = wire::encode(Protocol::Durable, &other_leader, &mut buf).unwrap();
    assert!(matches!(replay(&[buf[..n].to_vec()]), Err(RecoverError::Inconsistent { record: 0, .. })));

    // A vote below the truncation point the log already reached.
    let truncated = DurableRecord { max_bal: Ballot::INITIAL, log_truncation_point: 5, vote: None, ..forged };
    let n = wire::encode(Protocol::Durable, &truncated, &mut buf).unwrap();
    let first = buf[..n].to_vec();
    let low_vote = DurableRecord { vote: Some(Vote { opn: 4, bal: Ballot::INITIAL, batch: Bytes(b"") }), ..truncated };
    let n = wire::encode(Protocol::Durable, &low_vote, &mut buf).unwrap();
    assert!(matches!(replay(&[first, buf[..n].to_vec()]), Err(RecoverError::Inconsistent { record: 1, .. })));

    // A later record votes at the same operation with a lower ballot than an earlier one.
    let high = Ballot { seqno: 2, proposer: 0 };
    let v_high = DurableRecord {
        max_bal: high,
        vote: Some(Vote { opn: 0, bal: high, batch: Bytes(b"") }),
        log_truncation_point: 0,
        ..forged
    };
    let n = wire::encode(Protocol::Durable, &v_high, &mut buf).unwrap();
    let first = buf[..n].to_vec();
    let v_low = DurableRecord { vote: Some(Vote { opn: 0, bal: Ballot::INITIAL, batch: Bytes(b"") }), ..v_high };
    let n = wire::encode(Protocol::Durable, &v_low, &mut buf).unwrap();
    assert!(matches!(replay(&[first, buf[..n].to_vec()]), Err(RecoverError::Inconsistent { record: 1, .. })));

    // The reply counter never goes back.
    let counted = DurableRecord { replies_sent: 7, vote: None, ..v_high };
    let n = wire::encode(Protocol::Durable, &counted, &mut buf).unwrap();
    let first = buf[..n].to_vec();
    let uncounted = DurableRecord { replies_sent: 6, ..counted };
    let n = wire::encode(Protocol::Durable, &uncounted, &mut buf).unwrap();
    assert!(matches!(replay(&[first, buf[..n].to_vec()]), Err(RecoverError::Inconsistent { record: 1, .. })));

    let rsl_datagram = two_a(0);
    assert!(matches!(replay(&[rsl_datagram]), Err(RecoverError::Undecodable { record: 0, .. })));
}

/// Three replicas over a FIFO network with one client; replica 2 crashes, the others go on,
/// then replica 2 restarts from its log alone and catches up (by 2a retransmission or state
/// transfer, whichever the window allows).
#[test]
fn a_replica_restarted_from_its_log_rejoins_and_catches_up() {
    let mut nodes = [Node::new(0), Node::new(1), Node::new(2)];
    let client = Endpoint::v4([10, 0, 0, 9], 9000);
    let mut now = Instant::ZERO;
    let mut seqno = 0u64;
    let mut store = Out::new();
    let mut queue: std::collections::VecDeque<(usize, Endpoint, Vec<u8>)> = Default::default();
    let mut replies = 0u64;

    let mut run = |nodes: &mut [Node; 3],
                   queue: &mut std::collections::VecDeque<_>,
                   requests: u64,
                   until: &dyn Fn(&[Node; 3]) -> bool| {
        for _ in 0..20_000 {
            if until(nodes) {
                return true;
            }
            if queue.is_empty() {
                now = now.plus_ms(10);
                if requests > seqno {
                    seqno += 1;
                    let req = encode(&RslMsg::Request { seqno, request: Bytes(b"") });
                    for i in 0..3 {
                        queue.push_back((i, client, req.clone()));
                    }
                }
                for (i, node) in nodes.iter_mut().enumerate() {
                    let mut out = store.outbox();
                    let Some(r) = node.replica.as_mut() else { continue };
                    let step = r.tick(now, &mut out);
                    node.persist(step);
                    route(eps()[i], &out, queue, &mut replies, client);
                }
                continue;
            }
            let (dst, from, bytes) = queue.pop_front().unwrap();
            let mut out = store.outbox();
            nodes[dst].handle(now, from, &bytes, &mut out);
            route(eps()[dst], &out, queue, &mut replies, client);
        }
        false
    };

    let done =
        |n: u64| move |nodes: &[Node; 3]| nodes.iter().all(|x| x.replica.as_ref().is_none_or(|r| r.app().value >= n));
    assert!(run(&mut nodes, &mut queue, 6, &done(6)), "the cluster executes 6 requests (counter increments)");
    nodes[2].replica = None;
    let went_on = run(&mut nodes, &mut queue, 30, &done(30));
    let status: Vec<_> = nodes.iter().map(|n| n.replica.as_ref().map(|r| r.status())).collect();
    assert!(went_on, "two replicas go on without the third: {status:#?}");
    let restarted = nodes[2].recover(2).unwrap();
    assert_eq!(restarted.status().ops_complete, 0, "the application state is not durable");
    nodes[2].replica = Some(restarted);
    let caught_up = |nodes: &[Node; 3]| nodes[2].replica.as_ref().unwrap().app().value >= 30;
    assert!(run(&mut nodes, &mut queue, 30, &caught_up), "the restarted replica catches up");
    let values: Vec<u64> = nodes.iter().map(|n| n.replica.as_ref().unwrap().app().value).collect();
    assert_eq!(values, [30, 30, 30]);
    assert!(replies >= 30);
}

fn route(
    from: Endpoint,
    out: &Outbox<'_>,
    queue: &mut std::collections::VecDeque<(usize, Endpoint, Vec<u8>)>,
    replies: &mut u64,
    client: Endpoint,
) {
    for (dst, bytes) in out.iter() {
        if dst == client {
            *replies += 1;
        } else if let Some(i) = eps().iter().position(|e| *e == dst) {
            queue.push_back((i, from, bytes.to_vec()));
        }
    }
}
