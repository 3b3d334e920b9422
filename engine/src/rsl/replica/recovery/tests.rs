//! Durable records: round trip, compaction, refusal of bad logs, and a restarted replica
//! rejoining a running cluster.

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

/// Replica 2 crashes, the others go on, then replica 2 restarts from its log and snapshot
/// and catches up (by 2a retransmission, retained batches or a snapshot, whichever the
/// others still hold).
#[test]
fn a_replica_restarted_from_its_log_rejoins_and_catches_up() {
    let mut c = Cluster::new();
    assert!(c.run(6, &all_at(6)), "the cluster executes 6 requests (counter increments)");
    c.nodes[2].replica = None;
    assert!(c.run(60, &all_at(60)), "two replicas go on without the third: {:?}", c.values());
    let restarted = c.nodes[2].recover(2).unwrap();
    assert_eq!(restarted.status().ops_complete, 6, "its executions came back from its log");
    assert_eq!(restarted.app().value, 6);
    c.nodes[2].replica = Some(restarted);
    let caught_up = |nodes: &[Node; 3]| nodes[2].replica.as_ref().unwrap().app().value >= 60;
    assert!(c.run(60, &caught_up), "the restarted replica catches up: {:?}", c.values());
    assert_eq!(c.values(), [Some(60); 3]);
    assert_eq!(c.answered, 60);
}

/// Every replica crashes at once (a power cut) and restarts from what it stored: every
/// executed operation is still there, and the cluster serves again.
#[test]
fn a_whole_cluster_restart_keeps_every_executed_operation() {
    let mut c = Cluster::new();
    assert!(c.run(80, &all_at(80)), "{:?}", c.values());
    let answered_before = c.answered;
    for node in c.nodes.iter_mut() {
        node.replica = None;
    }
    c.queue.clear();
    for (i, node) in c.nodes.iter_mut().enumerate() {
        let r = node.recover(i).unwrap();
        assert_eq!(r.app().value, 80, "replica {i} recovered every execution it had");
        node.replica = Some(r);
    }
    let served = c.run(100, &all_at(100));
    let status: Vec<_> =
        c.nodes.iter().map(|n| n.replica.as_ref().map(|r| (r.status(), r.transfer().target_opn))).collect();
    assert!(served, "the restarted cluster serves again: {:?} {status:#?}", c.values());
    assert!(c.answered > answered_before);
    assert!(c.nodes.iter().any(|n| !n.snapshot.is_empty()) || c.nodes.iter().all(|n| n.log.len() > 80));
}

/// A durable replica reports as its checkpoint only what its binding confirmed durable:
/// heartbeats and 2bs carry it, and acceptors truncate on it.
#[test]
fn the_checkpoint_reported_is_what_the_binding_confirmed_durable() {
    let mut c = Cluster::new();
    c.nodes[1].confirm = false;
    // Fewer requests than the log window: replica 1's checkpoint holds the leader's window.
    assert!(c.run(5, &all_at(5)));
    let unconfirmed = c.nodes[1].replica.as_ref().unwrap();
    assert_eq!(unconfirmed.status().ops_complete, 5);
    assert_eq!(unconfirmed.checkpoint(), 0, "nothing confirmed, nothing reported");
    let leader = c.nodes[0].replica.as_ref().unwrap();
    assert_eq!(leader.acceptor().checkpoint_of(1), 0, "the leader never heard more from replica 1");
    assert!(leader.acceptor().checkpoint_of(2) >= 3, "replica 2 reports what it executed (durably)");
    let r = c.nodes[1].replica.as_mut().unwrap();
    let mark = r.durable_mark();
    assert_eq!(mark, 5, "every execution was handed out");
    r.persisted(mark);
    assert_eq!(r.checkpoint(), 5);
}

/// A replica caught up by a snapshot from another replica must persist that snapshot
/// before its checkpoint moves past where its own records stop.
#[test]
fn an_installed_snapshot_is_required_before_the_checkpoint_moves_on() {
    let mut c = Cluster::new();
    assert!(c.run(5, &all_at(5)));
    c.nodes[2].replica = None;
    assert!(c.run(120, &all_at(120)), "{:?}", c.values());
    // Restarted with a binding that confirms records but never writes snapshots.
    let mut restarted = c.nodes[2].recover(2).unwrap();
    assert_eq!(restarted.app().value, 5);
    c.nodes[2].confirm = false;
    restarted.persisted(restarted.durable_mark());
    c.nodes[2].replica = Some(restarted);
    let caught_up = |nodes: &[Node; 3]| nodes[2].replica.as_ref().unwrap().app().value >= 120;
    assert!(c.run(120, &caught_up), "{:?}", c.values());
    let r = c.nodes[2].replica.as_mut().unwrap();
    let required = r.snapshot_required().expect("caught up by a snapshot: the tail no longer reached back");
    let mark = r.durable_mark();
    r.persisted(mark);
    assert!(r.checkpoint() < required, "records past a missing snapshot do not count");
    let frozen = r.frozen().id;
    r.snapshot_persisted(frozen);
    assert_eq!(r.snapshot_required(), None);
    assert!(r.checkpoint() >= required);
}

/// Executed records that do not follow on (after a required snapshot never persisted, or
/// one set aside) are skipped; a later record that follows on is executed (a replica that
/// caught up again after such a gap). The replica comes back where its durable history
/// stops, and catches up from peers.
#[test]
fn replay_executes_what_follows_on_and_skips_the_rest() {
    let exec = |opn: u64| any_record(&DurableRecord::Executed { opn, bal: Ballot::INITIAL, batch: Bytes(b"") });
    let log = [exec(0), exec(1), exec(3), exec(4)];
    let r = Rep::recover(config(), 1, Counter::default(), Instant::ZERO, 1, [], log.iter().map(|r| r.as_slice()));
    let r = r.unwrap();
    assert_eq!(r.status().ops_complete, 2);
    assert_eq!(r.checkpoint(), 2, "what replayed is durable");
    let caught_up_again = [exec(5), exec(6), exec(0), exec(1), exec(2)];
    let r = Rep::recover(
        config(),
        1,
        Counter::default(),
        Instant::ZERO,
        1,
        [],
        caught_up_again.iter().map(|r| r.as_slice()),
    );
    assert_eq!(r.unwrap().status().ops_complete, 3, "5 and 6 skipped, then 0, 1, 2 executed");
    let dup = [exec(0), exec(0), exec(1)];
    let r = Rep::recover(config(), 1, Counter::default(), Instant::ZERO, 1, [], dup.iter().map(|r| r.as_slice()));
    assert_eq!(r.unwrap().status().ops_complete, 2, "a record written twice executes once");
    let bad = [any_record(&DurableRecord::Executed { opn: 0, bal: Ballot::INITIAL, batch: Bytes(&[0xff; 3]) })];
    assert_eq!(replay(&bad), refused(0, "executed batch malformed, too large, or of an invalid ballot"));
}

/// A batch a replica executed as it voted for it is written as a reference to that vote
/// (the batch is in the log once), and replays from the vote; a reference to a vote the
/// log does not hold, or of an invalid ballot, is refused.
#[test]
fn an_executed_vote_is_logged_once_and_replays_from_the_vote() {
    let mut c = Cluster::new();
    assert!(c.run(40, &all_at(40)), "{:?}", c.values());
    for (i, node) in c.nodes.iter().enumerate() {
        let (mut full, mut refs) = (0, 0);
        for bytes in &node.log {
            match decode(bytes) {
                DurableRecord::Executed { .. } => full += 1,
                DurableRecord::ExecutedVote { .. } => refs += 1,
                _ => {}
            }
        }
        assert!(refs > full, "replica {i}: most executed batches are its votes ({refs} references, {full} whole)");
        let r = node.recover(i).unwrap();
        assert_eq!(r.app().value, 40, "replica {i} replays the referenced votes");
    }

    let batch = batch_of_len(20);
    let first = c.nodes[1].log.iter().find_map(|b| match decode(b) {
        DurableRecord::Acceptor(a) => Some(a),
        _ => None,
    });
    let header = truncated_free(&first.expect("an acceptor record"));
    let vote = crate::rsl::msg::Vote { opn: 0, bal: Ballot::INITIAL, batch: Bytes(&batch) };
    let executed = |bal| wire_record(&DurableRecord::ExecutedVote { opn: 0, bal });
    let voted = [record(&header), record(&AcceptorRecord { vote: Some(vote), ..header }), executed(Ballot::INITIAL)];
    let r = Rep::recover(config(), 1, Counter::default(), Instant::ZERO, 1, [], voted.iter().map(|r| r.as_slice()));
    assert_eq!(r.unwrap().status().ops_complete, 1, "executed from the vote");
    assert_eq!(
        replay(&[record(&header), executed(Ballot::INITIAL)]),
        refused(1, "an executed vote the log does not hold")
    );
    let outside = Ballot { seqno: 1, proposer: 7 };
    assert_eq!(
        replay(&voted[..2].iter().cloned().chain([executed(outside)]).collect::<Vec<_>>()),
        refused(2, "executed vote of an invalid ballot")
    );
}

/// A snapshot whose records stop short, or a snapshot piece in the log, is refused.
#[test]
fn a_snapshot_that_is_not_whole_is_refused() {
    let mut c = Cluster::new();
    assert!(c.run(10, &all_at(10)));
    let node = &mut c.nodes[0];
    node.replica.as_mut().unwrap().freeze_snapshot();
    node.write_snapshot();
    assert!(node.snapshot.len() > 1, "several pieces");
    let whole = node.recover(0).unwrap();
    assert_eq!(whole.app().value, 10);
    node.snapshot.pop();
    assert_eq!(node.recover(0).map(|_| ()), Err(RecoverError::Snapshot("its records stop before its end")));
    let piece = node.snapshot[0].clone();
    assert_eq!(replay(&[piece]), refused(0, "a snapshot piece in the log"));
    let e = Rep::recover(config(), 0, Counter::default(), Instant::ZERO, 1, [c.nodes[0].log[0].as_slice()], []);
    assert!(matches!(e, Err(RecoverError::Inconsistent { record: 0, .. })), "a log record in the snapshot");
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

/// Exactly the datagrams that reveal acceptor state wait for the sync (`route` checks every
/// datagram of every cluster test); a first view, requests and replies show each kind.
#[test]
fn only_promises_votes_and_ballots_wait_for_the_sync() {
    let mut c = Cluster::new();
    assert!(c.run(3, &all_at(3)));
    // Wire tags: 1 OneA, 2 OneB, 3 TwoA, 4 TwoB, 5 Heartbeat, 6 Reply.
    let expected = [(1, true), (2, true), (3, false), (4, true), (5, false), (6, false)];
    for (tag, waits) in expected {
        assert_eq!(c.kinds.get(&tag), Some(&waits), "tag {tag}: {:?}", c.kinds);
    }
    let mut store = Out::new();
    let mut out = store.outbox();
    let step = c.nodes[1].replica.as_mut().unwrap().handle(Instant::ZERO, eps()[0], &two_a(7), &mut out);
    c.nodes[1].persist(step);
    let first_2b = out.iter().position(|(_, b)| b[wire::RSL_HEADER_BYTES] == 4).unwrap();
    assert!(out.any_waits_for_sync() && out.waits_for_sync(first_2b) && !out.waits_for_sync(out.len()));
    out.clear();
    assert!(!out.any_waits_for_sync(), "cleared");
}

#[test]
fn a_replica_recovered_past_a_truncation_point_asks_for_state_at_once() {
    let truncated = AcceptorRecord {
        max_bal: Ballot::INITIAL,
        max_ballot_sent_1a: Ballot::default(),
        log_truncation_point: 5,
        replies_sent: 0,
        vote: None,
    };
    let log = [record(&truncated)];
    let mut r =
        Rep::recover(config(), 1, Counter::default(), Instant::ZERO, 1, [], log.iter().map(|r| r.as_slice())).unwrap();
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

/// Three durable replicas of a new cluster, each with its log, on a FIFO network in
/// virtual time.
struct Birth {
    reps: Vec<Rep>,
    logs: Vec<Vec<Vec<u8>>>,
    net: std::collections::VecDeque<(usize, usize, Vec<u8>)>,
    now: Instant,
}

impl Birth {
    fn start(nonces: [u64; 3]) -> Birth {
        let reps = (0..3).map(|i| Rep::new_durable(config(), i, Counter::default(), Instant::ZERO, nonces[i]).unwrap());
        Birth { reps: reps.collect(), logs: std::vec![Vec::new(); 3], net: Default::default(), now: Instant::ZERO }
    }

    /// Every replica restarts from its log (a power cut), with new nonces.
    fn power_cut(&mut self, nonces: [u64; 3]) {
        self.net.clear();
        for (i, nonce) in nonces.into_iter().enumerate() {
            let log = self.logs[i].iter().map(|r| r.as_slice());
            self.reps[i] = Rep::recover(config(), i, Counter::default(), self.now, nonce, [], log).unwrap();
        }
    }

    /// One step of replica `i` (a datagram from `from`, or a tick), persisted, then sent.
    fn step(&mut self, i: usize, input: Option<(usize, Vec<u8>)>) {
        let mut store = Out::new();
        let mut out = store.outbox();
        let r = &mut self.reps[i];
        let _ = match input {
            Some((from, bytes)) => r.handle(self.now, eps()[from], &bytes, &mut out),
            None => r.tick(self.now, &mut out),
        };
        let mut buf = [0u8; RECORD_BYTES];
        while let Some(rec) = r.next_record(&mut buf) {
            self.logs[i].push(rec.unwrap().to_vec());
        }
        let mark = r.durable_mark();
        r.persisted(mark);
        for (to, bytes) in out.iter() {
            let to = eps().iter().position(|e| *e == to).unwrap();
            self.net.push_back((i, to, bytes.to_vec()));
        }
    }

    /// Delivers the datagrams from `from` to `to` queued now.
    fn deliver(&mut self, from: usize, to: usize) {
        let (now, later): (Vec<_>, Vec<_>) = self.net.drain(..).partition(|(f, t, _)| *f == from && *t == to);
        self.net.extend(later);
        for (_, _, bytes) in now {
            self.step(to, Some((from, bytes)));
        }
    }

    /// Runs freely until every replica takes part, or `limit_ms` passes.
    fn run(&mut self, limit_ms: u64) -> bool {
        let end = self.now.plus_ms(limit_ms);
        while self.now < end {
            while let Some((from, to, bytes)) = self.net.pop_front() {
                self.step(to, Some((from, bytes)));
            }
            for i in 0..3 {
                if self.reps[i].next_deadline() <= self.now {
                    self.step(i, None);
                }
            }
            if self.reps.iter().all(|r| r.rejoining().is_none()) {
                return true;
            }
            self.now = self.now.plus_ms(1);
        }
        false
    }
}

#[test]
fn a_power_cut_while_a_new_cluster_is_born_does_not_stall_it() {
    let mut b = Birth::start([100, 200, 300]);
    for i in 0..3 {
        b.step(i, None); // Each asks the others.
    }
    assert!(b.logs.iter().all(|l| l.len() == 1), "each incarnation is durable before its request leaves");
    // Replica 0 hears both others (rejoining, without state) and is born; they never hear
    // its answers: the power goes first.
    b.deliver(1, 0);
    b.deliver(2, 0);
    b.deliver(0, 1);
    b.deliver(0, 2);
    b.deliver(1, 0);
    b.deliver(2, 0);
    assert!(b.reps[0].rejoining().is_none(), "replica 0 is born");
    assert!(b.reps[1].rejoining().is_some() && b.reps[2].rejoining().is_some());
    b.power_cut([101, 201, 301]);
    assert!(b.reps[0].rejoining().is_none(), "replica 0 comes back a member");
    assert_eq!(b.reps[1].rejoining().map(|r| r.nonce), Some(200), "the same incarnation: it never acted");
    assert_eq!(b.reps[2].rejoining().map(|r| r.nonce), Some(300));
    assert!(
        b.run(2_000),
        "the cluster is born after the cut: {:?}",
        b.reps.iter().map(|r| r.status()).collect::<Vec<_>>()
    );

    // A disk lost instead: replica 1 comes back as a new incarnation, which replica 0 was
    // not born with. Replica 2 (vouched for) is born; replica 1 then catches up from
    // members, as any replica that lost its state.
    let mut b = Birth::start([100, 200, 300]);
    for i in 0..3 {
        b.step(i, None);
    }
    for (from, to) in [(1, 0), (2, 0), (0, 1), (0, 2), (1, 0), (2, 0)] {
        b.deliver(from, to);
    }
    b.logs[1].clear();
    b.power_cut([101, 201, 301]);
    assert_eq!(b.reps[1].rejoining().map(|r| r.nonce), Some(201), "a new incarnation");
    assert!(b.run(5_000), "{:?}", b.reps.iter().map(|r| r.status()).collect::<Vec<_>>());
    assert_eq!(b.logs[1].first().map(|r| decode(r)), Some(DurableRecord::Incarnation { nonce: 201 }));
}

mod epochs;
