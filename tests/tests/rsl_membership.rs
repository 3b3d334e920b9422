//! Membership change by stop-sign ([`fleet_engine::rsl::membership`]), by rule: a change
//! is decided through the log and ends its epoch; replicas that execute it enter the next
//! epoch with the same state; new replicas catch up before they vote; a removed replica
//! only redirects; lagging replicas and clients of an ended epoch follow; a change that
//! breaks the rules is refused and changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod rules_common;

use fleet_engine::rsl::apps::kv::KvOp;
use fleet_engine::rsl::membership::{self, Outcome, Refusal};
use fleet_engine::rsl::{RslConfig, RslMsg};
use fleet_engine::wire::{self, Bytes, Protocol};
use fleet_engine::{Endpoint, Instant, OutboxBuf};
use fleet_tests::members_sim::{client_ep, config_of, replica_ep, MembersSim};
use fleet_tests::rsl_sim::SimClient;

type ClusterOut = OutboxBuf<512, { 512 * 1024 }>;

fn ep(i: u8) -> Endpoint {
    replica_ep(i)
}

/// The seeded membership cluster with a perfect network, and the rule tests' shorthands.
struct Cluster(MembersSim);

impl std::ops::Deref for Cluster {
    type Target = MembersSim;
    fn deref(&self) -> &MembersSim {
        &self.0
    }
}

impl std::ops::DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut MembersSim {
        &mut self.0
    }
}

impl Cluster {
    fn new(n: u8, clients: u8) -> Self {
        Cluster(MembersSim::new(n, clients, 0))
    }

    fn start_joiner(&mut self, i: u8, config: RslConfig<7>, nonce: u64) {
        self.0.start_without_state(i, config, nonce);
    }

    fn change(&mut self, i: u8, epoch: u64, ids: &[u8], ms: u64) -> Option<Outcome> {
        self.0.change(i, epoch, ids, ms)
    }

    fn put(&mut self, i: u8, key: &[u8], value: &[u8]) -> bool {
        self.0.put(i, key, value, 5_000)
    }

    fn put_within(&mut self, i: u8, key: &[u8], value: &[u8], ms: u64) -> bool {
        self.0.put(i, key, value, ms)
    }

    fn get(&mut self, i: u8, key: &[u8]) -> Option<Vec<u8>> {
        self.0.get(i, key, 5_000).expect("a read is answered")
    }
}

fn members(ids: &[u8]) -> Vec<Endpoint> {
    ids.iter().map(|&i| ep(i)).collect()
}

fn next_config(ids: &[u8], epoch: u64) -> RslConfig<7> {
    config_of(ids, epoch)
}

#[test]
fn growing_from_three_to_five_keeps_every_write_and_new_replicas_catch_up() {
    let mut c = Cluster::new(3, 1);
    for k in 0..10u8 {
        assert!(c.put(1, &[k], &[k, k]), "put {k}");
    }
    // The new machines start first, for the epoch the change will create; they wait.
    c.start_joiner(4, next_config(&[1, 2, 3, 4, 5], 1), 41);
    c.start_joiner(5, next_config(&[1, 2, 3, 4, 5], 1), 51);
    assert_eq!(c.replica(4).epoch_start(), membership::EPOCH_START_UNKNOWN, "no state: start unknown");
    let outcome = c.change(1, 0, &[1, 2, 3, 4, 5], 5_000).expect("the change is answered");
    let Outcome::Started { epoch: 1, start } = outcome else { panic!("{outcome:?}") };
    assert!(start > 10, "the change executed after the writes: starts at {start}");
    for i in 1..=3 {
        let r = c.replica(i);
        assert_eq!((r.config().epoch, r.epoch_start(), r.config().n()), (1, start, 5), "replica {i}");
        assert_eq!(r.stats().epochs_entered, 1);
    }
    for k in 10..20u8 {
        assert!(c.put(1, &[k], &[k, k]), "put {k} in epoch 1");
    }
    let (epoch, replicas) = c.clients[&client_ep(1)].membership();
    assert_eq!((epoch, replicas), (1, &members(&[1, 2, 3, 4, 5])[..]), "the client followed");
    // A joiner asks again each retry period until the members of epoch 1 answer: it may
    // have the operations before it has the answers.
    let rejoined = |c: &MembersSim| [4, 5].iter().all(|&i| c.replica(i).rejoining().is_none());
    assert!(c.run_until(5_000, |c| c.epoch_caught_up(1, start + 10) && rejoined(c)), "the new replicas catch up");
    for i in [4, 5] {
        let r = c.replica(i);
        assert!(r.rejoining().is_none(), "replica {i} votes once caught up");
        let at = r.epoch_start();
        assert!(at >= start && at != membership::EPOCH_START_UNKNOWN, "replica {i}: epoch start {at}");
        assert_eq!(r.app(), c.replica(1).app(), "replica {i} holds the same state");
        assert_eq!(r.executor().executed_digest, c.replica(1).executor().executed_digest);
    }
    for k in 0..20u8 {
        assert_eq!(c.get(1, &[k]), Some(vec![k, k]), "key {k}");
    }
    // Epoch 1 survives losing two of its five, including two original replicas.
    c.down.extend([ep(1), ep(2)]);
    // Views 2 and 3 are led by the dead replicas 1 and 2: the third view change serves.
    assert!(c.put_within(1, b"after", b"losing two", 20_000), "three of five go on");
    assert_eq!(c.get(1, b"after"), Some(b"losing two".to_vec()));
}

#[test]
fn a_learner_follows_the_log_and_votes_as_soon_as_a_change_adds_it() {
    let mut c = Cluster::new(3, 1);
    for k in 0..10u8 {
        assert!(c.put(1, &[k], &[k, k]), "put {k}");
    }
    // New machines started as learners of epoch 0: they follow the log, in no quorum.
    c.0.start_learner(4, config_of(&[1, 2, 3], 0), 41);
    c.0.start_learner(5, config_of(&[1, 2, 3], 0), 51);
    for k in 10..20u8 {
        assert!(c.put(1, &[k], &[k, k]), "put {k}");
    }
    let leader_ops = c.replica(1).executor().ops_complete;
    assert!(c.run_until(1_000, |c| [4, 5].iter().all(|&i| c.replica(i).executor().ops_complete >= leader_ops)));
    for i in [4, 5] {
        let r = c.replica(i);
        let s = r.status();
        assert!(s.learning && !s.rejoining && r.acceptor().max_bal == Default::default(), "replica {i}: {s:?}");
        assert_eq!(r.app(), c.replica(1).app(), "learner {i} executed what the members did");
    }
    // Two of the three members down: the learners do not make a quorum.
    c.down.extend([ep(2), ep(3)]);
    assert!(!c.put_within(1, b"no", b"quorum", 3_000), "learners take no part");
    c.down.clear();
    assert!(c.run_until(5_000, |c| c.settled(0, &[1, 2, 3])));
    let outcome = c.change(1, 0, &[1, 2, 3, 4, 5], 5_000).expect("the change is answered");
    let Outcome::Started { epoch: 1, start } = outcome else { panic!("{outcome:?}") };
    // The learners executed the stop-sign themselves: members with the state at the start,
    // voting once their rejoin round is answered (no state transfer needed).
    assert!(c.run_until(2_000, |c| c.settled(1, &[1, 2, 3, 4, 5])), "{:#?}", c.states());
    for i in [4, 5] {
        let r = c.replica(i);
        assert_eq!((r.config().epoch, r.epoch_start(), r.learning().is_none()), (1, start, true), "replica {i}");
        assert_eq!(r.stats().epochs_entered, 1);
    }
    // Epoch 1 survives losing two of its five: the former learners vote.
    c.down.extend([ep(1), ep(2)]);
    assert!(c.put_within(1, b"after", b"losing two", 20_000), "three of five go on");
    assert_eq!(c.get(1, b"after"), Some(b"losing two".to_vec()));
}

#[test]
fn a_learner_left_out_of_a_change_learns_the_next_epoch() {
    let mut c = Cluster::new(3, 1);
    assert!(c.put(1, b"k", b"v"));
    c.0.start_learner(6, config_of(&[1, 2, 3], 0), 61);
    assert!(c.run_until(1_000, |c| c.replica(6).executor().ops_complete >= 1));
    c.start_joiner(4, next_config(&[1, 2, 4], 1), 41);
    let Some(Outcome::Started { epoch: 1, .. }) = c.change(1, 0, &[1, 2, 4], 5_000) else { panic!("no change") };
    assert!(c.put(1, b"k2", b"v2"));
    let ops = c.replica(1).executor().ops_complete;
    assert!(c.run_until(2_000, |c| c.replica(6).executor().ops_complete >= ops), "{:#?}", c.states());
    let r = c.replica(6);
    assert!(r.learning().is_some() && r.config().epoch == 1 && r.retired().is_none(), "{:?}", r.status());
    assert_eq!(r.app(), c.replica(1).app());
}

#[test]
fn a_client_naming_no_cluster_learns_new_replicas_once_its_requests_go_unanswered() {
    let mut c = Cluster::new(3, 2);
    // Client 2 names no cluster (io-std's default): a replica of any epoch serves it, so
    // nothing redirects it while a replica it knows is still a member.
    let plain = SimClient::new(&members(&[1, 2, 3]), 1, 50, 1472).unwrap();
    c.clients.insert(client_ep(2), plain);
    assert!(c.put(2, b"k", b"v0"));
    c.start_joiner(4, next_config(&[1, 2, 3, 4, 5], 1), 41);
    c.start_joiner(5, next_config(&[1, 2, 3, 4, 5], 1), 51);
    let outcome = c.change(1, 0, &[1, 2, 3, 4, 5], 5_000).unwrap();
    let Outcome::Started { epoch: 1, start } = outcome else { panic!("{outcome:?}") };
    assert!(c.run_until(5_000, |c| c.epoch_caught_up(1, start)), "the new replicas catch up");
    assert!(c.put(2, b"k", b"v1"), "the kept replicas serve it");
    assert_eq!(c.clients[&client_ep(2)].membership().0, 0, "nothing told it of epoch 1 yet");
    // The leader dies. Replicas 2 and 3 see the client's requests and suspect it; 4 and 5
    // would not, and a view change of five needs three suspicions, unless the client,
    // unanswered, asks for the membership and sends to them too.
    c.down.push(ep(1));
    assert!(c.put_within(2, b"k", b"v2", 20_000), "a new leader serves it");
    assert_eq!(c.clients[&client_ep(2)].membership(), (1, &members(&[1, 2, 3, 4, 5])[..]));
    assert_eq!(c.get(2, b"k"), Some(b"v2".to_vec()));
}

#[test]
fn a_removed_replica_retires_and_redirects_and_clients_follow() {
    let mut c = Cluster::new(3, 2);
    assert!(c.put(1, b"k", b"v1"));
    // Client 2 has not sent anything yet: it still knows only epoch 0.
    let outcome = c.change(1, 0, &[1, 2, 4], 5_000).unwrap();
    let Outcome::Started { epoch: 1, start } = outcome else { panic!("{outcome:?}") };
    c.start_joiner(4, next_config(&[1, 2, 4], 1), 44);
    let retired = c.replica(3).retired().expect("replica 3 is not in epoch 1");
    assert_eq!((retired.next.epoch, retired.start), (1, start));
    assert!(c.replica(3).status().retired);
    assert_eq!(c.replica(3).next_deadline(), Instant::NEVER, "a retired replica has no timers");
    assert!(c.run_until(5_000, |c| c.epoch_caught_up(1, start)), "replica 4 catches up");
    // Only replica 3 answers client 2 at first: everything else of epoch 0 is gone.
    c.down.extend([ep(1), ep(2)]);
    let mut store = ClusterOut::new();
    let mut out = store.outbox();
    let mut buf = [0u8; 64];
    let n = KvOp::Get(Bytes(b"k")).encode(&mut buf).unwrap();
    let now = c.now();
    let _ = c.clients.get_mut(&client_ep(2)).unwrap().submit(now, &buf[..n], &mut out).unwrap();
    c.collect(client_ep(2), &out);
    let moved = |c: &MembersSim| c.clients[&client_ep(2)].membership().0 == 1;
    assert!(c.run_until(1_000, moved), "the retired replica told the client where the cluster went");
    c.down.clear();
    assert_eq!(c.clients[&client_ep(2)].membership().1, &members(&[1, 2, 4])[..]);
    assert!(c.replica(3).stats().redirects >= 1);
    let answered = |c: &MembersSim| c.replies.get(&client_ep(2)).is_some_and(|r| !r.is_empty());
    assert!(c.run_until(5_000, answered), "the client's request is served in epoch 1");
    c.down.push(ep(3));
    assert!(c.put(2, b"k", b"v2"));
    assert_eq!(c.get(1, b"k"), Some(b"v2".to_vec()));
}

#[test]
fn a_lagging_replica_learns_the_next_epoch_from_a_peer() {
    let mut c = Cluster::new(3, 1);
    assert!(c.put(1, b"a", b"1"));
    c.down.push(ep(3));
    let outcome = c.change(1, 0, &[1, 2, 3, 4], 5_000).unwrap();
    let Outcome::Started { epoch: 1, start } = outcome else { panic!("{outcome:?}") };
    c.start_joiner(4, next_config(&[1, 2, 3, 4], 1), 4);
    c.run_until(500, |_| false);
    assert_eq!(c.replica(3).config().epoch, 0, "replica 3 missed the stop-sign");
    c.down.clear();
    // Its next datagram of epoch 0 to a replica of epoch 1 is answered with the membership.
    assert!(c.run_until(2_000, |c| c.replica(3).config().epoch == 1), "replica 3 follows");
    assert!(c.put(1, b"b", b"2"), "epoch 1 serves");
    assert!(c.run_until(5_000, |c| c.epoch_caught_up(1, start + 1)), "replica 3 and 4 catch up");
    assert_eq!(c.replica(3).app(), c.replica(1).app());
    c.down.push(ep(1));
    assert!(c.put_within(1, b"c", b"3", 20_000), "replicas 2, 3 and 4 decide without replica 1");
}

#[test]
fn a_replica_two_epochs_behind_follows_once_its_peers_moved_on() {
    let mut c = Cluster::new(5, 1);
    assert!(c.put(1, b"a", b"1"));
    // Replica 3 sleeps through two changes: 5 leaves, then 4.
    c.down.push(ep(3));
    let outcome = c.change(1, 0, &[1, 2, 3, 4], 5_000).unwrap();
    let Outcome::Started { epoch: 1, .. } = outcome else { panic!("{outcome:?}") };
    assert!(c.put(1, b"b", b"2"), "epoch 1 serves");
    let outcome = c.change(1, 1, &[1, 2, 3], 5_000).unwrap();
    let Outcome::Started { epoch: 2, start } = outcome else { panic!("{outcome:?}") };
    assert!(c.put(1, b"c", b"3"), "epoch 2 serves");
    // The removed replicas are shut down, as an operator does: only 1 and 2 are left of
    // epoch 0, and they are in epoch 2.
    c.down = vec![ep(4), ep(5)];
    assert_eq!(c.replica(3).config().epoch, 0, "replica 3 missed both stop-signs");
    // Its next datagram of epoch 0 reaches replicas 1 and 2, which remember epoch 0 and
    // say where the cluster is.
    assert!(c.run_until(2_000, |c| c.replica(3).config().epoch == 2), "replica 3 follows: {:?}", c.states());
    assert_eq!(c.replica(3).epoch_start(), start);
    assert!(c.put(1, b"d", b"4"), "epoch 2 serves");
    let ops = c.replica(1).executor().ops_complete;
    assert!(c.run_until(5_000, |c| c.epoch_caught_up(2, ops)), "replica 3 catches up: {:?}", c.states());
    assert_eq!(c.replica(3).app(), c.replica(1).app());
    c.down.push(ep(1));
    assert!(c.put_within(1, b"e", b"5", 20_000), "replicas 2 and 3 decide without replica 1");
    assert_eq!(c.get(1, b"a"), Some(b"1".to_vec()));
}

#[test]
fn a_refused_change_changes_nothing_and_says_why() {
    let mut c = Cluster::new(3, 1);
    assert!(c.put(1, b"k", b"v"));
    let cases: [(u64, &[u8], Refusal); 4] = [
        (1, &[1, 2, 4], Refusal::WrongEpoch { current: 0 }),
        (0, &[1, 2, 3], Refusal::Unchanged),
        (0, &[1, 8, 9], Refusal::NoMajorityKept),
        (0, &[1, 1, 2], Refusal::Duplicate),
    ];
    for (epoch, ids, why) in cases {
        assert_eq!(c.change(1, epoch, ids, 5_000), Some(Outcome::Refused(why)), "{ids:?}");
    }
    for i in 1..=3 {
        assert_eq!(c.replica(i).config().epoch, 0, "replica {i} stayed in epoch 0");
    }
    assert!(c.put(1, b"k", b"w"), "the cluster serves on");
    assert_eq!(c.get(1, b"k"), Some(b"w".to_vec()));
    // Two changes for the same epoch: the first ends it, the second is refused.
    assert!(matches!(c.change(1, 0, &[1, 2, 4], 5_000), Some(Outcome::Started { epoch: 1, .. })));
    c.start_joiner(4, next_config(&[1, 2, 4], 1), 9);
    c.down.push(ep(3));
    assert_eq!(
        c.change(1, 0, &[1, 2, 5], 5_000),
        Some(Outcome::Refused(Refusal::WrongEpoch { current: 1 })),
        "a change for an ended epoch"
    );
}

#[test]
fn replica_and_client_datagrams_of_the_old_epoch_are_not_counted_in_the_new_one() {
    let mut c = Cluster::new(3, 1);
    assert!(c.put(1, b"k", b"v"));
    let old = c.replica(1).cluster();
    assert!(matches!(c.change(1, 0, &[1, 2, 3, 4], 5_000), Some(Outcome::Started { .. })));
    let new = c.replica(1).cluster();
    assert_ne!(old, new, "each epoch is a cluster of its own");
    // A 1a of epoch 0 for a huge ballot reaches replica 1: it is answered with the
    // membership, and promises nothing.
    let one_a = RslMsg::OneA { bal: fleet_engine::rsl::Ballot { seqno: 1_000, proposer: 1 } };
    let mut buf = [0u8; 256];
    let n = wire::encode_rsl(old, &one_a, &mut buf).unwrap();
    let mut store = ClusterOut::new();
    let mut out = store.outbox();
    let before = c.replica(1).acceptor().max_bal;
    let now = c.now();
    let _ = c.replicas.get_mut(&ep(1)).unwrap().handle(now, ep(2), &buf[..n], &mut out);
    assert_eq!(c.replica(1).acceptor().max_bal, before);
    let answers: Vec<_> = out.iter().map(|(to, b)| (to, b.to_vec())).collect();
    assert_eq!(answers.len(), 1);
    let (cluster, msg) = wire::decode_rsl::<RslMsg<'_>>(&answers[0].1).unwrap();
    assert_eq!(cluster, old, "sent in the old epoch's envelope, which its replicas take");
    let RslMsg::Members { epoch: 1, replicas, .. } = msg else { panic!("{msg:?}") };
    assert_eq!(membership::replicas_of::<7>(replicas.0).unwrap(), members(&[1, 2, 3, 4])[..]);
    // Anyone may ask for the membership.
    let n = wire::encode(Protocol::Rsl, &RslMsg::MembersRequest { nonce: 77 }, &mut buf).unwrap();
    let mut out = store.outbox();
    let redirects = c.replica(2).stats().redirects;
    let _ = c.replicas.get_mut(&ep(2)).unwrap().handle(now, client_ep(9), &buf[..n], &mut out);
    assert_eq!(c.replica(2).stats().redirects, redirects, "an answer is not a redirect");
    let reply: Vec<_> = out.iter().map(|(_, b)| b.to_vec()).collect();
    let RslMsg::Members { nonce: 77, epoch: 1, .. } = wire::decode(Protocol::Rsl, &reply[0]).unwrap() else {
        panic!("no membership answer")
    };
}

mod single {
    //! One replica driven by hand (`rules_common`): rules visible in one step.

    use super::*;

    use super::rules_common::{decode, encode, eps, handle_then_due, leader, propose_and_decide, sent, Out};

    fn change_datagram(seqno: u64, epoch: u64, replicas: &[Endpoint]) -> Vec<u8> {
        let mut buf = [0u8; 512];
        let change = membership::encode_change(epoch, replicas, &mut buf).unwrap();
        encode(&RslMsg::Change { seqno, change: Bytes(change) })
    }

    fn get_datagram(seqno: u64) -> Vec<u8> {
        let mut buf = [0u8; 64];
        let n = KvOp::Get(Bytes(b"k")).encode(&mut buf).unwrap();
        encode(&RslMsg::Request { seqno, request: Bytes(&buf[..n]) })
    }

    #[test]
    fn a_leader_that_proposed_a_change_sends_queries_through_the_log() {
        let operator = client_ep(7);
        let mut control = leader();
        let mut store = Out::new();
        let mut out = store.outbox();
        let _ = control.handle(Instant::ZERO, client_ep(1), &get_datagram(1), &mut out);
        assert_eq!(control.reads().pending(), 1, "without a change the query waits for a confirmation round");
        let mut r = leader();
        let next = [eps()[0], eps()[1], ep(9)];
        let mut out = store.outbox();
        handle_then_due(&mut r, Instant::ZERO, operator, &change_datagram(1, 0, &next), &mut out);
        assert!(
            sent(&out).iter().any(|(_, b)| matches!(decode(b), RslMsg::TwoA { .. })),
            "the change is proposed at the burst's end"
        );
        let mut out = store.outbox();
        let _ = r.handle(Instant::ZERO, client_ep(1), &get_datagram(1), &mut out);
        assert_eq!(r.reads().pending(), 0, "no query is answered without the log while the change is open");
        assert_eq!(r.proposer().queued(), 1, "the query waits for the log instead");
        assert!(!sent(&out).iter().any(|(_, b)| matches!(decode(b), RslMsg::ReadConfirm { .. })));
    }

    #[test]
    fn a_refused_change_lets_queries_skip_the_log_again() {
        let mut r = leader();
        propose_and_decide(&mut r, client_ep(7), &change_datagram(1, 5, &[eps()[0], eps()[1], ep(9)]));
        assert_eq!(r.config().epoch, 0, "a change for epoch 5 is refused");
        let mut store = Out::new();
        let mut out = store.outbox();
        let _ = r.handle(Instant::ZERO, client_ep(1), &get_datagram(1), &mut out);
        assert_eq!(r.reads().pending(), 1);
    }

    #[test]
    fn a_membership_for_another_epoch_or_from_a_stranger_is_not_followed() {
        let mut r = leader();
        let list = |ids: &[Endpoint]| {
            let mut buf = Vec::new();
            for e in ids {
                let mut one = [0u8; 32];
                buf.extend_from_slice(postcard::to_slice(e, &mut one).unwrap());
            }
            buf
        };
        let next = list(&[eps()[0], eps()[1], ep(9)]);
        let members = |epoch, replicas: &[u8]| {
            encode(&RslMsg::Members { nonce: 0, epoch, cluster: 1, start: 3, replicas: Bytes(replicas) })
        };
        let mut store = Out::new();
        let mut out = store.outbox();
        let _ = r.handle(Instant::ZERO, eps()[1], &members(0, &next), &mut out);
        assert_eq!((r.config().epoch, r.stats().ignored_messages), (0, 1), "epoch 0 is not a later one");
        let _ = r.handle(Instant::ZERO, ep(9), &members(1, &next), &mut out);
        assert_eq!((r.config().epoch, r.stats().unknown_sender), (0, 1), "not a replica of this epoch");
        let _ = r.handle(Instant::ZERO, eps()[1], &members(1, &list(&[eps()[0], eps()[0]])), &mut out);
        assert_eq!((r.config().epoch, r.stats().invalid_messages), (0, 1), "a list with a duplicate");
        // An epoch cannot begin at or below what this replica executed (it would have
        // executed the stop-sign and entered): such a membership is false.
        let at_zero = encode(&RslMsg::Members { nonce: 0, epoch: 1, cluster: 1, start: 0, replicas: Bytes(&next) });
        let _ = r.handle(Instant::ZERO, eps()[1], &at_zero, &mut out);
        assert_eq!((r.config().epoch, r.stats().ignored_messages), (0, 2), "a start at what was executed");
        let _ = r.handle(Instant::ZERO, eps()[1], &members(1, &next), &mut out);
        assert_eq!((r.config().epoch, r.epoch_start()), (1, 3), "the next epoch, from a replica of this one");
        assert_eq!(r.status().ops_complete, 0, "behind the epoch's start: it fetches the state");
        assert!(r.transfer().target_opn >= 3);
        // A replica that missed changes follows a later epoch than the next, as its own.
        let mut behind = leader();
        let _ = behind.handle(Instant::ZERO, eps()[1], &members(3, &next), &mut out);
        assert_eq!((behind.config().epoch, behind.epoch_start()), (3, 3), "epoch 3, two changes on");
        assert_eq!(behind.cluster(), behind.config().identity(), "its envelope is epoch 3's");
    }
}

#[test]
fn seeded_membership_changes_under_loss_reordering_and_restarts_lose_nothing() {
    let seeds: u64 = std::env::var("MEMBERSHIP_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(40);
    let first: u64 = std::env::var("MEMBERSHIP_FIRST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut failures = Vec::new();
    let (mut epochs, mut restarts, mut from_disk, mut power_cuts) = (0, 0, 0, 0);
    for seed in first..first + seeds {
        match fleet_tests::members_sim::run_seed(seed) {
            Ok(report) => {
                epochs += report.epochs;
                restarts += report.restarts;
                from_disk += report.restarts_from_disk;
                power_cuts += report.power_cuts;
            }
            Err(v) => failures.push(v),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {seeds} seeds failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert_eq!(epochs, 3 * seeds, "every seed went through three changes");
    assert!(restarts > 0, "some seeds restarted a replica without state");
    assert!(from_disk > 0 && power_cuts >= seeds / 2, "odd seeds are durable and end with a power cut");
}

/// Durable seeds whose binding restarts replicas from their logs as they were before their
/// first epoch change (`MembersPlant::ForgetEpoch`) are caught: a replica back in an epoch
/// it left cannot take part, and the cluster stalls.
#[test]
fn a_binding_that_forgets_the_epoch_is_caught() {
    for seed in 0..5 {
        let found = fleet_tests::members_sim::run_seed_with(seed, fleet_tests::members_sim::MembersPlant::ForgetEpoch);
        assert!(found.is_err(), "seed {seed}: the planted bug went unnoticed");
    }
}
