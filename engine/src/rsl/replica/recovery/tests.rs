//! Durable records: round trip, compaction and refusal of bad logs. A restarted replica
//! rejoining a running cluster: `cluster.rs`; epochs: `epochs.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

extern crate std;

use std::vec::Vec;

use super::*;
use crate::outbox::{Outbox, OutboxBuf};
use crate::rsl::apps::counter::Counter;
use crate::rsl::batch::BatchEntry;
use crate::rsl::durable::{snapshot_record, DURABLE_RECORD_OVERHEAD_BYTES};
use crate::rsl::msg::RslMsg;
use crate::rsl::Step;
use crate::Endpoint;

mod cluster;
mod epochs;

/// A retained tail of 2 KiB: about 30 small batches, so runs of these tests overflow it,
/// freeze snapshots, and catch lagging replicas up by snapshot as well as by batches.
type Rep = Replica<Counter, 3, 8, 1472, 4096, 16, 64, 2048>;
type Out = OutboxBuf<64, 65536>;
const RECORD_BYTES: usize = 1472 + DURABLE_RECORD_OVERHEAD_BYTES;

fn eps() -> [Endpoint; 3] {
    [Endpoint::v4([10, 0, 0, 1], 7000), Endpoint::v4([10, 0, 0, 2], 7000), Endpoint::v4([10, 0, 0, 3], 7000)]
}

fn config() -> RslConfig<3> {
    RslConfig::new(&eps()).unwrap()
}

fn encode(msg: &RslMsg<'_>) -> Vec<u8> {
    encode_for(config().identity(), msg)
}

/// `msg` in the envelope of cluster `cluster`.
fn encode_for(cluster: u32, msg: &RslMsg<'_>) -> Vec<u8> {
    let mut buf = [0u8; 1472];
    let n = wire::encode_rsl(cluster, msg, &mut buf).unwrap();
    buf[..n].to_vec()
}

fn two_a(opn: u64) -> Vec<u8> {
    encode(&RslMsg::TwoA { bal: Ballot::INITIAL, opn, batch: Bytes(b"") })
}

/// A replica and what a durable binding would have stored for it: the log, and the latest
/// whole snapshot.
struct Node {
    replica: Option<Rep>,
    log: Vec<Vec<u8>>,
    snapshot: Vec<Vec<u8>>,
    /// Confirm syncs to the replica (a binding that never syncs executed records: false).
    confirm: bool,
}

/// An answer to a rejoin request (nonce 1) from a replica of a new cluster.
fn fresh_answer(from: usize) -> Vec<u8> {
    encode(&RslMsg::RecoverReply {
        nonce: 1,
        incarnation: 10 + from as u64,
        rejoining: true,
        fresh: true,
        ballot: Ballot::default(),
        next_opn: 0,
    })
}

impl Node {
    /// A durable replica of a new cluster: started without state, born on every other
    /// replica's answer that it has none either. Replica 0 then leads view 1.0 at once:
    /// a step's datagrams are dropped here, tests send their own.
    fn new(me: usize) -> Node {
        let replica = Rep::new_durable(config(), me, Counter::default(), Instant::ZERO, 1).unwrap();
        assert!(replica.rejoining().is_some(), "a durable replica without state rejoins");
        let mut node = Node { replica: Some(replica), log: Vec::new(), snapshot: Vec::new(), confirm: true };
        let mut store = Out::new();
        for from in (0..3).filter(|&r| r != me) {
            node.handle(Instant::ZERO, eps()[from], &fresh_answer(from), &mut store.outbox());
        }
        assert!(node.replica.as_ref().unwrap().rejoining().is_none(), "born");
        node
    }

    /// What a binding does after a step: append every record, sync, confirm; persist the
    /// frozen snapshot when one is required.
    fn persist(&mut self, _step: Step) {
        let Some(r) = self.replica.as_mut() else { return };
        let mut buf = [0u8; RECORD_BYTES];
        while let Some(rec) = r.next_record(&mut buf) {
            self.log.push(rec.unwrap().to_vec());
        }
        if self.confirm {
            let mark = r.durable_mark();
            r.persisted(mark);
            if r.snapshot_required().is_some() {
                self.write_snapshot();
            }
        }
    }

    /// Writes the frozen snapshot in pieces of 5 bytes (so it takes several records).
    fn write_snapshot(&mut self) {
        let Some(r) = self.replica.as_mut() else { return };
        let frozen = r.frozen().clone();
        let (mut scratch, mut buf) = ([0u8; 64], [0u8; RECORD_BYTES]);
        let mut pos = crate::rsl::snapshot::SnapshotPos::default();
        self.snapshot.clear();
        while let Some(rec) = snapshot_record(&frozen, pos, 5, &mut scratch, &mut buf) {
            let (n, next) = rec.unwrap();
            self.snapshot.push(buf[..n].to_vec());
            pos = next;
        }
        r.snapshot_persisted(frozen.id);
    }

    fn handle(&mut self, now: Instant, from: Endpoint, bytes: &[u8], out: &mut Outbox<'_>) {
        let Some(r) = self.replica.as_mut() else { return };
        let step = r.handle(now, from, bytes, out);
        self.persist(step);
    }

    fn recover(&self, me: usize) -> Result<Rep, RecoverError> {
        let snapshot = self.snapshot.iter().map(|r| r.as_slice());
        Rep::recover(
            config(),
            me,
            Counter::default(),
            Instant::ZERO,
            1,
            snapshot,
            self.log.iter().map(|r| r.as_slice()),
        )
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
    // The incarnation, whom it was born with (2), the acceptor at birth, one record per vote
    // and one per promise (nothing executed).
    assert_eq!(node.log.len(), 16);
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
    assert_eq!(live.durable_image_len(), 8, "born with 2, the header, 5 votes");
    let image: Vec<Vec<u8>> = (0..live.durable_image_len())
        .map(|i| {
            let mut buf = [0u8; RECORD_BYTES];
            live.durable_image_record(i, &mut buf).unwrap().to_vec()
        })
        .collect();
    let mut buf = [0u8; RECORD_BYTES];
    assert!(live.durable_image_record(8, &mut buf).is_err(), "past the end");
    let from_image =
        Rep::recover(config(), 2, Counter::default(), Instant::ZERO, 1, [], image.iter().map(|r| r.as_slice()));
    assert_eq!(durable_view(&from_image.unwrap()), durable_view(live));
}

#[test]
fn a_restarted_leader_never_starts_the_same_ballot_again() {
    let replica = Rep::new_durable(config(), 0, Counter::default(), Instant::ZERO, 1).unwrap();
    let mut node = Node { replica: Some(replica), log: Vec::new(), snapshot: Vec::new(), confirm: true };
    let mut store = Out::new();
    let mut out = store.outbox();
    let _ = node.replica.as_mut().unwrap().tick(Instant::ZERO, &mut out);
    assert_eq!(out.len(), 2, "a rejoin request to each other replica");
    out.clear();
    node.handle(Instant::ZERO, eps()[1], &fresh_answer(1), &mut out);
    assert!(out.is_empty(), "nothing before every answer is in");
    let step = node.replica.as_mut().unwrap().handle(Instant::ZERO, eps()[2], &fresh_answer(2), &mut out);
    assert!(step.durable_state_changed, "starting phase 1 on birth is durable");
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

fn any_record(r: &DurableRecord<'_>) -> Vec<u8> {
    let mut buf = [0u8; RECORD_BYTES];
    let n = wire::encode(Protocol::Durable, r, &mut buf).unwrap();
    buf[..n].to_vec()
}

fn record(r: &AcceptorRecord<'_>) -> Vec<u8> {
    any_record(&DurableRecord::Acceptor(*r))
}

fn replay(log: &[Vec<u8>]) -> Result<(), RecoverError> {
    Rep::recover(config(), 1, Counter::default(), Instant::ZERO, 1, [], log.iter().map(|r| r.as_slice())).map(|_| ())
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
    // The incarnation and whom it was born with come first; then the acceptor records.
    let first = 3;
    assert!(matches!(decode(&good[0]), DurableRecord::Incarnation { nonce: 1 }));
    assert!(matches!(decode(&good[1]), DurableRecord::BornWith { replica: 0, nonce: 10 }));

    let mut torn = good.clone();
    torn[first + 1].pop();
    assert!(matches!(replay(&torn), Err(RecoverError::Undecodable { record: 4, .. })));

    let mut reordered = good.clone();
    reordered.swap(first, first + 1);
    assert_eq!(replay(&reordered), refused(first + 1, WENT_DOWN), "the promise would go down");

    let outsider = wire_record(&DurableRecord::BornWith { replica: 3, nonce: 5 });
    assert_eq!(replay(&[outsider]), refused(0, "born with a replica outside the configuration"));
    assert_eq!(replay(&[wire_record(&DurableRecord::Incarnation { nonce: 0 })]), refused(0, "incarnation nonce 0"));

    let forged = AcceptorRecord {
        max_bal: Ballot::INITIAL,
        max_ballot_sent_1a: Ballot::default(),
        log_truncation_point: 0,
        replies_sent: 0,
        vote: Some(Vote { opn: 0, bal: Ballot { seqno: 9, proposer: 0 }, batch: Bytes(b"") }),
    };
    assert_eq!(replay(&[record(&forged)]), refused(0, VOTE_BALLOT), "a vote above the promise");
    let stranger = Ballot { seqno: 1, proposer: 3 };
    let outside = AcceptorRecord { max_bal: Ballot { seqno: 2, proposer: 0 }, ..forged };
    let outside = AcceptorRecord { vote: Some(Vote { opn: 0, bal: stranger, batch: Bytes(b"") }), ..outside };
    assert_eq!(replay(&[record(&outside)]), refused(0, VOTE_BALLOT), "a vote by a proposer outside the cluster");
    let promised_stranger = AcceptorRecord { max_bal: stranger, vote: None, ..forged };
    assert_eq!(replay(&[record(&promised_stranger)]), refused(0, "promise names a replica outside the configuration"));

    let other_leader = AcceptorRecord { max_ballot_sent_1a: Ballot { seqno: 2, proposer: 0 }, vote: None, ..forged };
    assert_eq!(replay(&[record(&other_leader)]), refused(0, "proposer ballot belongs to another replica"));

    // A vote below the truncation point the log already reached, and one at u64::MAX.
    let truncated = AcceptorRecord { max_bal: Ballot::INITIAL, log_truncation_point: 5, vote: None, ..forged };
    let low_vote = AcceptorRecord { vote: Some(Vote { opn: 4, bal: Ballot::INITIAL, batch: Bytes(b"") }), ..truncated };
    assert_eq!(replay(&[record(&truncated), record(&low_vote)]), refused(1, OUT_OF_BOUNDS));
    let last_vote =
        AcceptorRecord { vote: Some(Vote { opn: u64::MAX, bal: Ballot::INITIAL, batch: Bytes(b"") }), ..truncated };
    assert_eq!(replay(&[record(&last_vote)]), refused(0, OUT_OF_BOUNDS));

    // Vote batches: malformed, one byte over the bound, and exactly at it.
    let max_bytes = config().max_batch_bytes();
    let vote_of = |batch: &[u8]| {
        let vote = Some(Vote { opn: 0, bal: Ballot::INITIAL, batch: Bytes(batch) });
        record(&AcceptorRecord { vote, ..truncated_free(&forged) })
    };
    let malformed = "vote batch malformed or too large";
    assert_eq!(replay(&[vote_of(&[0xff, 0xff, 0xff])]), refused(0, malformed));
    let exact = batch_of_len(max_bytes);
    assert_eq!(replay(&[vote_of(&exact)]), Ok(()), "a batch of exactly the bound");
    assert_eq!(replay(&[vote_of(&batch_of_len(max_bytes + 1))]), refused(0, malformed));

    // A later record votes at the same operation with a lower ballot than an earlier one.
    let high = Ballot { seqno: 2, proposer: 0 };
    let v_high = AcceptorRecord {
        max_bal: high,
        vote: Some(Vote { opn: 0, bal: high, batch: Bytes(b"") }),
        log_truncation_point: 0,
        ..forged
    };
    let v_low = AcceptorRecord { vote: Some(Vote { opn: 0, bal: Ballot::INITIAL, batch: Bytes(b"") }), ..v_high };
    assert_eq!(
        replay(&[record(&v_high), record(&v_low)]),
        refused(1, "a later vote has a lower ballot than an earlier one")
    );

    // The promise alone goes down; the reply counter alone goes back.
    let promised = AcceptorRecord { vote: None, ..v_high };
    let lower = AcceptorRecord { max_bal: Ballot::INITIAL, ..promised };
    assert_eq!(replay(&[record(&promised), record(&lower)]), refused(1, WENT_DOWN));
    let counted = AcceptorRecord { replies_sent: 7, ..promised };
    let uncounted = AcceptorRecord { replies_sent: 6, ..counted };
    assert_eq!(replay(&[record(&counted), record(&uncounted)]), refused(1, WENT_DOWN));

    let rsl_datagram = two_a(0);
    assert!(matches!(replay(&[rsl_datagram]), Err(RecoverError::Undecodable { record: 0, .. })));
}

fn decode(bytes: &[u8]) -> DurableRecord<'_> {
    wire::decode(Protocol::Durable, bytes).unwrap()
}

fn wire_record(r: &DurableRecord<'_>) -> Vec<u8> {
    let mut buf = [0u8; RECORD_BYTES];
    let n = wire::encode(Protocol::Durable, r, &mut buf).unwrap();
    buf[..n].to_vec()
}

/// `r` with a promise for `Ballot::INITIAL`, no truncation and no vote.
fn truncated_free<'a>(r: &AcceptorRecord<'a>) -> AcceptorRecord<'a> {
    AcceptorRecord { max_bal: Ballot::INITIAL, log_truncation_point: 0, vote: None, ..*r }
}

/// A batch of one request, exactly `len` encoded bytes.
fn batch_of_len(len: usize) -> Vec<u8> {
    let client = eps()[0];
    (0..len)
        .find_map(|k| {
            let request = std::vec![7u8; k];
            let entry =
                BatchEntry { client, seqno: 1, request: Bytes(&request), kind: crate::rsl::batch::EntryKind::Single };
            let mut buf = std::vec![0u8; len + 16];
            let n = postcard::to_slice(&entry, &mut buf).ok()?.len();
            (n == len).then(|| buf[..n].to_vec())
        })
        .expect("some request length encodes to exactly len bytes")
}

/// Three durable replicas over a FIFO network, and one client that sends each request to
/// every replica once.
struct Cluster {
    nodes: [Node; 3],
    queue: std::collections::VecDeque<(usize, Endpoint, Vec<u8>)>,
    now: Instant,
    seqno: u64,
    /// The highest seqno answered.
    answered: u64,
    idle: u64,
    /// Every message kind (wire tag) routed, and whether it waited for the sync.
    kinds: std::collections::BTreeMap<u8, bool>,
    /// The cluster identity the client's requests carry (the epoch it knows).
    cluster: u32,
    /// The datagram sent for one seqno instead of an increment (a membership change).
    special: Option<(u64, Vec<u8>)>,
}

const CLIENT: Endpoint = Endpoint::v4([10, 0, 0, 9], 9000);

impl Cluster {
    fn new() -> Cluster {
        let nodes = [Node::new(0), Node::new(1), Node::new(2)];
        Cluster {
            nodes,
            queue: Default::default(),
            now: Instant::ZERO,
            seqno: 0,
            answered: 0,
            idle: 0,
            kinds: Default::default(),
            cluster: config().identity(),
            special: None,
        }
    }

    /// Runs until `until` holds (true) or 20,000 events pass (false): a closed-loop client
    /// sends requests up to seqno `requests`, the next once the last is answered, and the
    /// last again every half second until it is.
    fn run(&mut self, requests: u64, until: &dyn Fn(&[Node; 3]) -> bool) -> bool {
        let mut store = Out::new();
        for _ in 0..20_000 {
            if until(&self.nodes) {
                return true;
            }
            let Some((dst, from, bytes)) = self.queue.pop_front() else {
                self.now = self.now.plus_ms(10);
                self.idle += 1;
                let next = self.answered >= self.seqno && requests > self.seqno;
                let retry = self.idle.is_multiple_of(50) && self.answered < self.seqno;
                if next || retry {
                    self.seqno += u64::from(next);
                    let req = match &self.special {
                        Some((seqno, bytes)) if *seqno == self.seqno => bytes.clone(),
                        _ => encode_for(self.cluster, &RslMsg::Request { seqno: self.seqno, request: Bytes(b"") }),
                    };
                    for i in 0..3 {
                        self.queue.push_back((i, CLIENT, req.clone()));
                    }
                }
                for (i, node) in self.nodes.iter_mut().enumerate() {
                    let mut out = store.outbox();
                    let Some(r) = node.replica.as_mut() else { continue };
                    let step = r.tick(self.now, &mut out);
                    node.persist(step);
                    route(eps()[i], &out, &mut self.queue, &mut self.answered, &mut self.kinds);
                }
                continue;
            };
            let mut out = store.outbox();
            self.nodes[dst].handle(self.now, from, &bytes, &mut out);
            route(eps()[dst], &out, &mut self.queue, &mut self.answered, &mut self.kinds);
        }
        false
    }

    fn values(&self) -> Vec<Option<u64>> {
        self.nodes.iter().map(|n| n.replica.as_ref().map(|r| r.app().value)).collect()
    }
}

/// Every live replica's counter is at least `n`.
fn all_at(n: u64) -> impl Fn(&[Node; 3]) -> bool {
    move |nodes: &[Node; 3]| nodes.iter().all(|x| x.replica.as_ref().is_none_or(|r| r.app().value >= n))
}

fn route(
    from: Endpoint,
    out: &Outbox<'_>,
    queue: &mut std::collections::VecDeque<(usize, Endpoint, Vec<u8>)>,
    answered: &mut u64,
    kinds: &mut std::collections::BTreeMap<u8, bool>,
) {
    for (dst, bytes, waits) in out.iter_marked() {
        assert_eq!(waits, reveals_acceptor_state(bytes), "{:?}", wire::decode::<RslMsg<'_>>(Protocol::Rsl, bytes));
        kinds.insert(bytes[wire::RSL_HEADER_BYTES], waits);
        if dst == CLIENT {
            if let Ok(RslMsg::Reply { seqno, .. }) = wire::decode(Protocol::Rsl, bytes) {
                *answered = (*answered).max(seqno);
            }
        } else if let Some(i) = eps().iter().position(|e| *e == dst) {
            queue.push_back((i, from, bytes.to_vec()));
        }
    }
}

/// A 1a, 1b or 2b: what a durable binding must hold until the sync.
fn reveals_acceptor_state(bytes: &[u8]) -> bool {
    matches!(wire::decode(Protocol::Rsl, bytes), Ok(RslMsg::OneA { .. } | RslMsg::OneB { .. } | RslMsg::TwoB { .. }))
}
