//! Durable replicas in a running cluster: one restarted from its log, a whole-cluster
//! power cut, checkpoints that follow what the binding confirmed, and replay of executed
//! records.

use super::*;

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
