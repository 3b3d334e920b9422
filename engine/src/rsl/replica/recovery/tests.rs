//! Durable records: round trip, compaction, refusal of bad logs, and a restarted replica
//! rejoining a running cluster.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

extern crate std;

use std::vec::Vec;

use super::*;
use crate::outbox::{Outbox, OutboxBuf};
use crate::rsl::apps::counter::Counter;
use crate::rsl::batch::BatchEntry;
use crate::rsl::durable::DURABLE_RECORD_OVERHEAD_BYTES;
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

/// The refusal a replay must give: record `record`, for `reason`.
fn refused(record: usize, reason: &'static str) -> Result<(), RecoverError> {
    Err(RecoverError::Inconsistent { record, reason })
}

const WENT_DOWN: &str = "promise, truncation point or reply counter went down";
const VOTE_BALLOT: &str = "vote ballot invalid or above the promise";
const OUT_OF_BOUNDS: &str = "vote below the truncation point or out of bounds";

fn record(r: &DurableRecord<'_>) -> Vec<u8> {
    let mut buf = [0u8; RECORD_BYTES];
    let n = wire::encode(Protocol::Durable, r, &mut buf).unwrap();
    buf[..n].to_vec()
}

fn replay(log: &[Vec<u8>]) -> Result<(), RecoverError> {
    Rep::recover(config(), 1, Counter::default(), Instant::ZERO, log.iter().map(|r| r.as_slice())).map(|_| ())
}

#[test]
fn bad_logs_are_refused_with_the_record_and_the_rule_named() {
    let mut node = Node::new(1);
    let mut store = Out::new();
    let mut out = store.outbox();
    node.handle(Instant::ZERO, eps()[0], &two_a(0), &mut out);
    let high = Ballot { seqno: 3, proposer: 2 };
    node.handle(Instant::ZERO, eps()[2], &encode(&RslMsg::OneA { bal: high }), &mut out);
    let good = node.log.clone();
    assert_eq!(replay(&good), Ok(()));

    let mut torn = good.clone();
    torn[1].pop();
    assert!(matches!(replay(&torn), Err(RecoverError::Undecodable { record: 1, .. })));

    let mut reordered = good.clone();
    reordered.swap(0, 1);
    assert_eq!(replay(&reordered), refused(1, WENT_DOWN), "the promise would go down");

    let forged = DurableRecord {
        max_bal: Ballot::INITIAL,
        max_ballot_sent_1a: Ballot::default(),
        log_truncation_point: 0,
        replies_sent: 0,
        vote: Some(Vote { opn: 0, bal: Ballot { seqno: 9, proposer: 0 }, batch: Bytes(b"") }),
    };
    assert_eq!(replay(&[record(&forged)]), refused(0, VOTE_BALLOT), "a vote above the promise");
    let stranger = Ballot { seqno: 1, proposer: 3 };
    let outside = DurableRecord { max_bal: Ballot { seqno: 2, proposer: 0 }, ..forged };
    let outside = DurableRecord { vote: Some(Vote { opn: 0, bal: stranger, batch: Bytes(b"") }), ..outside };
    assert_eq!(replay(&[record(&outside)]), refused(0, VOTE_BALLOT), "a vote by a proposer outside the cluster");
    let promised_stranger = DurableRecord { max_bal: stranger, vote: None, ..forged };
    assert_eq!(replay(&[record(&promised_stranger)]), refused(0, "promise names a replica outside the configuration"));

    let other_leader = DurableRecord { max_ballot_sent_1a: Ballot { seqno: 2, proposer: 0 }, vote: None, ..forged };
    assert_eq!(replay(&[record(&other_leader)]), refused(0, "proposer ballot belongs to another replica"));

    // A vote below the truncation point the log already reached, and one at u64::MAX.
    let truncated = DurableRecord { max_bal: Ballot::INITIAL, log_truncation_point: 5, vote: None, ..forged };
    let low_vote = DurableRecord { vote: Some(Vote { opn: 4, bal: Ballot::INITIAL, batch: Bytes(b"") }), ..truncated };
    assert_eq!(replay(&[record(&truncated), record(&low_vote)]), refused(1, OUT_OF_BOUNDS));
    let last_vote =
        DurableRecord { vote: Some(Vote { opn: u64::MAX, bal: Ballot::INITIAL, batch: Bytes(b"") }), ..truncated };
    assert_eq!(replay(&[record(&last_vote)]), refused(0, OUT_OF_BOUNDS));

    // Vote batches: malformed, one byte over the bound, and exactly at it.
    let max_bytes = config().max_batch_bytes();
    let vote_of = |batch: &[u8]| {
        let vote = Some(Vote { opn: 0, bal: Ballot::INITIAL, batch: Bytes(batch) });
        record(&DurableRecord { vote, ..truncated_free(&forged) })
    };
    let malformed = "vote batch malformed or too large";
    assert_eq!(replay(&[vote_of(&[0xff, 0xff, 0xff])]), refused(0, malformed));
    let exact = batch_of_len(max_bytes);
    assert_eq!(replay(&[vote_of(&exact)]), Ok(()), "a batch of exactly the bound");
    assert_eq!(replay(&[vote_of(&batch_of_len(max_bytes + 1))]), refused(0, malformed));

    // A later record votes at the same operation with a lower ballot than an earlier one.
    let high = Ballot { seqno: 2, proposer: 0 };
    let v_high = DurableRecord {
        max_bal: high,
        vote: Some(Vote { opn: 0, bal: high, batch: Bytes(b"") }),
        log_truncation_point: 0,
        ..forged
    };
    let v_low = DurableRecord { vote: Some(Vote { opn: 0, bal: Ballot::INITIAL, batch: Bytes(b"") }), ..v_high };
    assert_eq!(
        replay(&[record(&v_high), record(&v_low)]),
        refused(1, "a later vote has a lower ballot than an earlier one")
    );

    // The promise alone goes down; the reply counter alone goes back.
    let promised = DurableRecord { vote: None, ..v_high };
    let lower = DurableRecord { max_bal: Ballot::INITIAL, ..promised };
    assert_eq!(replay(&[record(&promised), record(&lower)]), refused(1, WENT_DOWN));
    let counted = DurableRecord { replies_sent: 7, ..promised };
    let uncounted = DurableRecord { replies_sent: 6, ..counted };
    assert_eq!(replay(&[record(&counted), record(&uncounted)]), refused(1, WENT_DOWN));

    let rsl_datagram = two_a(0);
    assert!(matches!(replay(&[rsl_datagram]), Err(RecoverError::Undecodable { record: 0, .. })));
}

/// `r` with a promise for `Ballot::INITIAL`, no truncation and no vote.
fn truncated_free<'a>(r: &DurableRecord<'a>) -> DurableRecord<'a> {
    DurableRecord { max_bal: Ballot::INITIAL, log_truncation_point: 0, vote: None, ..*r }
}

/// A batch of one request, exactly `len` encoded bytes.
fn batch_of_len(len: usize) -> Vec<u8> {
    let client = eps()[0];
    (0..len)
        .find_map(|k| {
            let request = std::vec![7u8; k];
            let entry = BatchEntry { client, seqno: 1, request: Bytes(&request) };
            let mut buf = std::vec![0u8; len + 16];
            let n = postcard::to_slice(&entry, &mut buf).ok()?.len();
            (n == len).then(|| buf[..n].to_vec())
        })
        .expect("some request length encodes to exactly len bytes")
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

#[test]
fn a_replica_recovered_past_a_truncation_point_asks_for_state_at_once() {
    let truncated = DurableRecord {
        max_bal: Ballot::INITIAL,
        max_ballot_sent_1a: Ballot::default(),
        log_truncation_point: 5,
        replies_sent: 0,
        vote: None,
    };
    let log = [record(&truncated)];
    let mut r = Rep::recover(config(), 1, Counter::default(), Instant::ZERO, log.iter().map(|r| r.as_slice())).unwrap();
    assert_eq!(r.transfer().target_opn, 5, "operations below 5 are gone from every log it can reach");
    let mut store = Out::new();
    let mut out = store.outbox();
    let _ = r.tick(Instant::ZERO, &mut out);
    let asks = out.iter().filter(|(_, b)| matches!(wire::decode(Protocol::Rsl, b), Ok(RslMsg::AppStateRequest { .. })));
    assert_eq!(asks.count(), 1);
}

#[test]
fn recovery_errors_read_as_sentences_naming_the_record() {
    let e = RecoverError::Inconsistent { record: 3, reason: WENT_DOWN };
    assert_eq!(
        std::format!("{e}"),
        "durable record 3 is inconsistent: promise, truncation point or reply counter went down"
    );
    let e = replay(&[two_a(0)]).unwrap_err();
    assert!(std::format!("{e}").starts_with("durable record 0 is unreadable: "), "{e}");
    let corrupt = crate::rsl::app::SnapshotError::Corrupt;
    assert_eq!(std::format!("{corrupt}"), "snapshot bytes do not describe a valid state");
}
