//! The election rules, one per test.

use super::*;

fn c() -> Endpoint {
    Endpoint::v4([10, 0, 0, 9], 1)
}

#[test]
fn a_request_unexecuted_for_a_whole_epoch_causes_suspicion() {
    let mut e: Election<4> = Election::new(1000);
    e.reflect_received(Instant::from_millis(300), c(), 1);
    assert_eq!(e.deadline(), Some(Instant::from_millis(1300)));
    assert!(!e.check_timeout(Instant::from_millis(1299), 0), "not a whole epoch yet");
    assert!(e.check_timeout(Instant::from_millis(1300), 0));
    assert!(e.suspects(0));
}

#[test]
fn a_vote_undecided_for_a_whole_epoch_causes_suspicion_without_any_client() {
    let mut e: Election<4> = Election::new(1000);
    e.reflect_progress(Instant::from_millis(100));
    // Idle for long, then a vote that no decision follows (the leader died).
    e.reflect_undecided(Instant::from_millis(60_000), true);
    assert_eq!(e.deadline(), Some(Instant::from_millis(61_000)), "an epoch from the vote, not the last progress");
    e.reflect_undecided(Instant::from_millis(60_500), true);
    assert_eq!(e.deadline(), Some(Instant::from_millis(61_000)), "still the first vote's epoch");
    assert!(!e.check_timeout(Instant::from_millis(60_999), 0));
    assert!(e.check_timeout(Instant::from_millis(61_000), 0));
    // Decided and executed: nothing waits.
    e.reflect_progress(Instant::from_millis(61_100));
    e.reflect_undecided(Instant::from_millis(61_100), false);
    assert_eq!(e.deadline(), None);
    assert!(!e.check_timeout(Instant::from_millis(90_000), 0));
}

#[test]
fn a_view_whose_leader_is_rejoining_is_suspected_after_an_epoch_until_the_next_view() {
    let mut e: Election<4> = Election::new(1000);
    e.reflect_progress(Instant::from_millis(100));
    assert_eq!(e.deadline(), None);
    e.reflect_leader_rejoining(Instant::from_millis(5_000));
    assert_eq!(e.deadline(), Some(Instant::from_millis(6_000)));
    e.reflect_leader_rejoining(Instant::from_millis(5_500));
    assert_eq!(e.deadline(), Some(Instant::from_millis(6_000)), "from the first request");
    assert!(e.check_timeout(Instant::from_millis(6_000), 0));
    // A quorum moves on: the next view's leader is not known to be rejoining.
    e.process_heartbeat(Instant::from_millis(6_100), 1, Ballot { seqno: 1, proposer: 1 }, false);
    assert_eq!(e.deadline(), None);
}

#[test]
fn executed_requests_do_not_cause_suspicion() {
    let mut e: Election<4> = Election::new(1000);
    e.reflect_received(Instant::ZERO, c(), 1);
    e.reflect_executed(c(), 1);
    assert_eq!(e.deadline(), None);
    assert!(!e.check_timeout(Instant::from_millis(5000), 0));
}

#[test]
fn a_retried_request_keeps_its_first_arrival() {
    let mut e: Election<4> = Election::new(1000);
    e.reflect_received(Instant::ZERO, c(), 1);
    e.reflect_received(Instant::from_millis(900), c(), 1);
    assert_eq!(e.deadline(), Some(Instant::from_millis(1000)));
}

#[test]
fn a_quorum_of_suspicions_moves_to_the_successor_view_and_doubles_the_epoch() {
    let mut e: Election<4> = Election::new(1000);
    e.reflect_received(Instant::ZERO, c(), 1);
    e.process_heartbeat(Instant::ZERO, 1, Ballot::INITIAL, true);
    assert!(!e.check_quorum(Instant::ZERO, 2, 3, 8000));
    e.process_heartbeat(Instant::ZERO, 2, Ballot::INITIAL, true);
    assert!(e.check_quorum(Instant::from_millis(5), 2, 3, 8000));
    assert_eq!(e.current_view, Ballot { seqno: 1, proposer: 1 });
    assert_eq!(e.epoch_length_ms, 2000);
    assert_eq!(e.suspectors, 0);
    assert_eq!(e.deadline(), None, "the new view tracks nothing yet");
    e.reflect_received(Instant::from_millis(400), c(), 1);
    assert_eq!(e.deadline(), Some(Instant::from_millis(2400)), "a retry is tracked, with the doubled epoch");
}

#[test]
fn a_request_nobody_retries_is_forgotten_at_the_next_view() {
    let mut e: Election<4> = Election::new(1000);
    assert_eq!(e.reflect_received(Instant::ZERO, c(), 1), Tracking::New);
    e.suspectors = 0b11;
    assert!(e.check_quorum(Instant::from_millis(1000), 2, 3, 8000));
    assert!(e.tracked().next().is_none());
    assert!(!e.check_timeout(Instant::from_millis(60_000), 0), "nothing waits in the new view");
}

#[test]
fn a_replica_that_is_executing_does_not_suspect_its_leader() {
    let mut e: Election<4> = Election::new(1000);
    e.reflect_received(Instant::ZERO, c(), 1); // dropped by a leader whose queue is full
    for ms in (100..5000).step_by(100) {
        e.reflect_progress(Instant::from_millis(ms));
        assert!(!e.check_timeout(Instant::from_millis(ms), 0), "executing at {ms} ms");
    }
    // Progress stops (the leader died): a new request waits a whole epoch.
    e.reflect_received(Instant::from_millis(5000), c(), 2);
    assert_eq!(e.deadline(), Some(Instant::from_millis(6000)));
    assert!(!e.check_timeout(Instant::from_millis(5999), 0));
    assert!(e.check_timeout(Instant::from_millis(6000), 0), "a whole epoch with nothing executed");
}

#[test]
fn a_request_passed_over_for_a_whole_epoch_of_progress_is_dropped() {
    let mut e: Election<4> = Election::new(1000);
    let other = Endpoint::v4([10, 0, 0, 8], 1);
    e.reflect_received(Instant::ZERO, c(), 1); // its forward was lost
    e.reflect_received(Instant::from_millis(600), other, 1);
    e.reflect_progress(Instant::from_millis(999));
    assert_eq!(e.tracked().count(), 2, "not a whole epoch yet");
    e.reflect_progress(Instant::from_millis(1300));
    assert_eq!(e.tracked().map(|t| t.client).collect::<heapless::Vec<_, 4>>()[..], [other]);
}

#[test]
fn tracking_tells_new_requests_from_known_ones_and_a_full_list() {
    let mut e: Election<1> = Election::new(1000);
    assert_eq!(e.reflect_received(Instant::ZERO, c(), 1), Tracking::New);
    assert_eq!(e.reflect_received(Instant::ZERO, c(), 1), Tracking::Known, "a retransmission");
    assert_eq!(e.reflect_received(Instant::ZERO, c(), 2), Tracking::New, "the client's next request");
    assert_eq!(e.reflect_received(Instant::ZERO, Endpoint::v4([10, 0, 0, 8], 1), 1), Tracking::Full);
}

#[test]
fn a_view_stable_for_a_whole_epoch_brings_the_epoch_back_to_the_baseline() {
    let mut e: Election<4> = Election::new(1000);
    for round in 0..3 {
        e.suspectors = 0b11;
        assert!(e.check_quorum(Instant::from_millis(round * 100), 2, 3, 8000));
    }
    assert_eq!(e.epoch_length_ms, 8000);
    assert!(!e.check_timeout(Instant::from_millis(8199), 0));
    assert_eq!(e.epoch_length_ms, 8000, "not a whole epoch in this view yet");
    assert!(!e.check_timeout(Instant::from_millis(8200), 0));
    assert_eq!(e.epoch_length_ms, 1000);
}

#[test]
fn a_suspicion_lasts_only_while_its_request_waits() {
    let mut e: Election<4> = Election::new(1000);
    e.reflect_received(Instant::ZERO, c(), 1);
    assert!(e.check_timeout(Instant::from_millis(1000), 0));
    e.reflect_executed(c(), 1);
    assert!(!e.check_timeout(Instant::from_millis(1001), 0), "withdrawn once executed");
    e.process_heartbeat(Instant::ZERO, 1, Ballot::INITIAL, true);
    e.process_heartbeat(Instant::ZERO, 1, Ballot::INITIAL, false);
    e.process_heartbeat(Instant::ZERO, 2, Ballot::INITIAL, true);
    assert!(!e.check_quorum(Instant::ZERO, 2, 3, 8000), "replica 1 withdrew: one suspicion is no quorum");
}

#[test]
fn suspicion_of_an_old_view_does_not_count() {
    let mut e: Election<4> = Election::new(1000);
    e.process_heartbeat(Instant::ZERO, 1, Ballot { seqno: 3, proposer: 0 }, false);
    e.process_heartbeat(Instant::ZERO, 2, Ballot::INITIAL, true);
    assert_eq!(e.suspectors, 0);
    assert_eq!(e.current_view, Ballot { seqno: 3, proposer: 0 });
}

#[test]
fn a_view_others_suspect_is_not_stable_so_the_epoch_keeps_doubling() {
    let mut e: Election<4> = Election::new(1000);
    // Two view changes: the epoch is 4 s.
    e.process_heartbeat(Instant::ZERO, 1, Ballot::INITIAL, true);
    e.process_heartbeat(Instant::ZERO, 2, Ballot::INITIAL, true);
    assert!(e.check_quorum(Instant::ZERO, 2, 3, 8000));
    let v = e.current_view;
    e.process_heartbeat(Instant::ZERO, 1, v, true);
    e.process_heartbeat(Instant::ZERO, 2, v, true);
    assert!(e.check_quorum(Instant::ZERO, 2, 3, 8000));
    assert_eq!(e.epoch_length_ms, 4000);
    // A whole epoch later this replica does not suspect, but two others do.
    let v = e.current_view;
    e.process_heartbeat(Instant::from_millis(4000), 1, v, true);
    e.process_heartbeat(Instant::from_millis(4000), 2, v, true);
    assert!(!e.check_timeout(Instant::from_millis(4000), 0));
    assert_eq!(e.epoch_length_ms, 4000, "not stable: others suspect it");
    assert!(e.check_quorum(Instant::from_millis(4000), 2, 3, 8000));
    assert_eq!(e.epoch_length_ms, 8000, "doubled from where it was");
}

#[test]
fn epoch_length_is_capped() {
    let mut e: Election<4> = Election::new(1000);
    for _ in 0..10 {
        e.suspectors = 0b11;
        e.check_quorum(Instant::ZERO, 2, 3, 4000);
    }
    assert_eq!(e.epoch_length_ms, 4000);
}

#[test]
fn invariant_rejects_each_broken_clause() {
    let ok: Election<4> = Election::new(1000);
    let check = |f: &dyn Fn(&mut Election<4>)| {
        let mut e = ok.clone();
        f(&mut e);
        e.invariant(3, 1000, 8000)
    };
    assert_eq!(check(&|_| {}), Ok(()));
    assert!(check(&|e| e.current_view = Ballot { seqno: 1, proposer: 3 }).is_err(), "view names no replica");
    assert!(check(&|e| e.current_view = Ballot { seqno: 0, proposer: 2 }).is_err(), "below the initial view");
    assert_eq!(check(&|e| e.suspectors = 0b111), Ok(()), "every known replica may suspect");
    assert!(check(&|e| e.suspectors = 1 << 3).is_err(), "replica 3 is not in a cluster of 3");
    assert_eq!(check(&|e| e.epoch_length_ms = 8000), Ok(()), "the cap itself");
    assert!(check(&|e| e.epoch_length_ms = 999).is_err());
    assert!(check(&|e| e.epoch_length_ms = 8001).is_err());
    let twice = |e: &mut Election<4>| {
        let t = Tracked { client: c(), seqno: 1, since: Instant::ZERO, waiting: true };
        e.tracked.push(t).unwrap();
        e.tracked.push(Tracked { seqno: 2, ..t }).unwrap();
    };
    assert!(check(&twice).is_err(), "a client tracked twice");
    let stale_cache = |e: &mut Election<4>| {
        e.tracked.push(Tracked { client: c(), seqno: 1, since: Instant::from_millis(5), waiting: true }).unwrap();
    };
    assert!(check(&stale_cache).is_err(), "an entry older than the cached oldest arrival");
}

#[test]
fn a_client_keeps_its_place_and_the_oldest_arrival_follows_what_waits() {
    let mut e: Election<2> = Election::new(1000);
    let (a, b, z) = (Endpoint::v4([10, 0, 0, 1], 1), Endpoint::v4([10, 0, 0, 2], 1), Endpoint::v4([10, 0, 0, 3], 1));
    assert_eq!(e.reflect_received(Instant::from_millis(10), b, 1), Tracking::New);
    assert_eq!(e.reflect_received(Instant::from_millis(20), a, 1), Tracking::New);
    assert_eq!(e.tracked().map(|t| t.client).collect::<heapless::Vec<_, 2>>()[..], [a, b], "client order");
    assert_eq!(e.deadline(), Some(Instant::from_millis(1010)), "b's arrival is the oldest");
    e.reflect_executed(b, 1);
    assert_eq!(e.deadline(), Some(Instant::from_millis(1020)), "b no longer waits: a's arrival");
    e.reflect_progress(Instant::from_millis(30));
    assert_eq!(e.invariant(3, 1000, 8000), Ok(()));
    assert_eq!(e.deadline(), Some(Instant::from_millis(1030)), "progress moves the deadline");
    // b's entry stays; its next request re-arms it in place. A third client finds the
    // table full of waiting requests only after b waits again.
    assert_eq!(e.reflect_received(Instant::from_millis(40), b, 1), Tracking::New, "a retry after execution");
    assert_eq!(e.reflect_received(Instant::from_millis(40), z, 1), Tracking::Full);
    e.reflect_executed(b, 2);
    assert_eq!(
        e.reflect_received(Instant::from_millis(50), z, 1),
        Tracking::New,
        "room from b, which waits for nothing"
    );
    assert_eq!(e.tracked().map(|t| t.client).collect::<heapless::Vec<_, 2>>()[..], [a, z]);
    assert_eq!(e.invariant(3, 1000, 8000), Ok(()));
}

#[test]
fn an_execution_forgets_only_that_clients_requests_up_to_its_seqno() {
    let mut e: Election<4> = Election::new(1000);
    let other = Endpoint::v4([10, 0, 0, 8], 1);
    e.reflect_received(Instant::ZERO, other, 1);
    e.reflect_received(Instant::ZERO, c(), 5);
    e.reflect_executed(c(), 3);
    assert_eq!(e.tracked().count(), 2, "seqno 5 is newer than the executed 3");
    e.reflect_executed(c(), 5);
    assert_eq!(e.tracked().map(|t| (t.client, t.seqno)).collect::<heapless::Vec<_, 4>>()[..], [(other, 1)]);
}
