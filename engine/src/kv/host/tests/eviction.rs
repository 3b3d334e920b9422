//! Eviction rules of the host's peer table, one test each, named after the rule. The test
//! host has 3 hosts and room for 8 peers: 5 clients.

use super::*;

/// Client endpoint number `n`.
fn client(n: u8) -> Endpoint {
    Endpoint::v4([10, 0, 2, n], 9)
}

fn run_at(h: &mut Host, ms: u64, from: Endpoint, datagram: &[u8]) -> std::vec::Vec<Sent> {
    let mut store = Buf::new();
    let mut out = store.outbox();
    let _ = h.handle(Instant::from_millis(ms), from, datagram, &mut out);
    assert_eq!(h.check_invariants(), Ok(()));
    out.iter().map(|(dst, b)| Sent { dst, bytes: heapless::Vec::from_slice(b).unwrap() }).collect()
}

fn tick_at(h: &mut Host, ms: u64) -> usize {
    let mut store = Buf::new();
    let mut out = store.outbox();
    let _ = h.tick(Instant::from_millis(ms), &mut out);
    assert_eq!(h.check_invariants(), Ok(()));
    out.len()
}

/// The seqno of the host's reply among `sent` (the message of its channel to the client).
fn reply_seqno(sent: &[Sent]) -> u64 {
    sent.iter()
        .find_map(|s| match s.frame() {
            Frame::Single { seqno, .. } => Some(seqno),
            _ => None,
        })
        .unwrap()
}

/// Client `ep` runs one Get on a new channel at `base` at `ms`, and acks the reply: settled.
fn settled_get(h: &mut Host, ms: u64, ep: Endpoint, base: u64) {
    let sent = run_at(h, ms, ep, &single(base, base, &Body::GetRequest { key: 1 }));
    assert_eq!(bodies(&sent).len(), 1, "served");
    let _ = run_at(h, ms, ep, &frame(&Frame::Ack { seqno: reply_seqno(&sent) }));
}

fn known(h: &Host, ep: Endpoint) -> bool {
    h.reliable().index_of(ep).is_some()
}

#[test]
fn a_full_table_evicts_the_least_recently_active_settled_client_and_serves_the_newcomer() {
    let mut h = host(0);
    for n in 1..=5 {
        settled_get(&mut h, u64::from(n), client(n), 100);
    }
    // Client 1 is active again later; client 2 has a reply in flight (not settled).
    let _ = run_at(&mut h, 10, client(1), &single(100, 101, &Body::GetRequest { key: 1 }));
    let _ = run_at(&mut h, 10, client(1), &frame(&Frame::Ack { seqno: 2 }));
    let _ = run_at(&mut h, 11, client(2), &single(100, 101, &Body::GetRequest { key: 1 }));
    let sent = run_at(&mut h, 12, client(6), &single(100, 100, &Body::GetRequest { key: 1 }));
    assert_eq!(bodies(&sent), [Body::Reply { req: 100, key: 1, value: None }], "the newcomer is served");
    assert!(!known(&h, client(3)), "client 3: settled, least recently active");
    for n in [1, 2, 4, 5, 6] {
        assert!(known(&h, client(n)), "client {n} kept");
    }
    assert_eq!(h.counters().evicted, 1);
}

#[test]
fn a_newcomer_is_refused_too_many_peers_only_while_no_client_is_settled() {
    let mut h = host(0);
    for n in 1..=5 {
        // Nobody acks its reply: no client is settled.
        let _ = run_at(&mut h, 1, client(n), &single(100, 100, &Body::GetRequest { key: 1 }));
    }
    let sent = run_at(&mut h, 2, client(6), &single(100, 100, &Body::GetRequest { key: 1 }));
    assert_eq!(sent[0].frame(), Frame::Refused { seqno: 100, reason: Refusal::TooManyPeers });
    assert!(!known(&h, client(6)));
    assert_eq!(h.counters().evicted, 0);
    // Client 4 acks: it is settled, and the newcomer's retransmission evicts it.
    let _ = run_at(&mut h, 3, client(4), &frame(&Frame::Ack { seqno: 1 }));
    let sent = run_at(&mut h, 4, client(6), &single(100, 100, &Body::GetRequest { key: 1 }));
    assert_eq!(bodies(&sent).len(), 1);
    assert!(!known(&h, client(4)) && known(&h, client(6)));
}

#[test]
fn hosts_are_never_evicted() {
    let mut h = host(0);
    for n in 1..=5 {
        settled_get(&mut h, 1, client(n), 100);
    }
    // Host 1 and host 2 are the least recently active peers (never heard from), and settled.
    settled_get(&mut h, 2, client(6), 100);
    for (i, ep) in [H0, H1, H2].iter().enumerate() {
        assert_eq!(h.reliable().index_of(*ep), Some(i), "host {i} kept its index");
    }
    assert!(!known(&h, client(1)));
}

#[test]
fn a_stale_duplicate_of_an_evicted_clients_first_request_is_refused_not_executed_again() {
    let mut h = host(0);
    let set_a = single(100, 100, &Body::SetRequest { key: 7, value: Some(Bytes(b"a")) });
    let sent = run_at(&mut h, 1, client(1), &set_a);
    let _ = run_at(&mut h, 1, client(1), &frame(&Frame::Ack { seqno: reply_seqno(&sent) }));
    // Another client overwrites the key; then client 1 is evicted to make room.
    let _ = run_at(&mut h, 2, client(2), &single(500, 500, &Body::SetRequest { key: 7, value: Some(Bytes(b"b")) }));
    let _ = run_at(&mut h, 2, client(2), &frame(&Frame::Ack { seqno: 1 }));
    for n in 3..=6 {
        settled_get(&mut h, 3, client(n), 100);
    }
    assert!(!known(&h, client(1)), "client 1 evicted");
    let sets = h.counters().sets;
    // The network delivers a late copy of client 1's first request: it must not look like
    // a new client's first message.
    let sent = run_at(&mut h, 4, client(1), &set_a);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].frame(), Frame::Refused { seqno: 100, reason: Refusal::ChannelClosed { above: 100, lost: 0 } });
    assert_eq!(h.storage().get(7), Some(&b"b"[..]), "the stale Set did not run again");
    assert_eq!(h.counters().sets, sets);
    assert!(!known(&h, client(1)), "and it took no slot");
    // Client 1 restarts its channel above the floor: served.
    let sent = run_at(&mut h, 5, client(1), &single(101, 101, &Body::GetRequest { key: 7 }));
    assert_eq!(bodies(&sent), [Body::Reply { req: 101, key: 7, value: Some(Bytes(b"b")) }]);
}

#[test]
fn a_readmitted_client_gets_a_new_channel_above_every_seqno_of_its_evicted_one() {
    let mut h = host(0);
    // Client 1 gets three replies on the host's channel to it (seqnos 1..3), all acked.
    for s in 0..3 {
        let sent = run_at(&mut h, 1, client(1), &single(100, 100 + s, &Body::GetRequest { key: 1 }));
        let _ = run_at(&mut h, 1, client(1), &frame(&Frame::Ack { seqno: reply_seqno(&sent) }));
    }
    for n in 2..=6 {
        settled_get(&mut h, 2, client(n), 100);
    }
    assert!(!known(&h, client(1)));
    let sent = run_at(&mut h, 3, client(1), &single(200, 200, &Body::GetRequest { key: 1 }));
    match sent[0].frame() {
        Frame::Single { base, seqno, .. } => assert!(base > 3 && seqno == base, "new channel at {base}"),
        f => panic!("expected a reply, got {f:?}"),
    }
}

#[test]
fn a_client_that_never_acks_is_given_up_after_the_round_limit_and_its_requests_are_refused_as_possibly_lost() {
    let mut h = host(0);
    let set_a = single(100, 100, &Body::SetRequest { key: 7, value: Some(Bytes(b"a")) });
    let _ = run_at(&mut h, 0, client(1), &set_a);
    // give_up_after is 4: four retransmission rounds (10, 30, 70, 150 ms), then given up.
    let mut rounds = 0;
    while known(&h, client(1)) {
        let at = h.next_deadline().as_micros() / 1000;
        assert!(rounds <= 4, "still retransmitting after {rounds} rounds");
        if tick_at(&mut h, at) == 1 {
            rounds += 1;
        }
    }
    assert_eq!(rounds, 4);
    assert_eq!(h.counters().abandoned, 1);
    assert_eq!(h.reliable().pending(), 0, "its reply dropped");
    assert_eq!(h.next_deadline(), Instant::NEVER, "nothing more sent to it");
    // The client's retransmission: the request may have run, and does not run again.
    let sent = run_at(&mut h, 400, client(1), &set_a);
    assert_eq!(
        sent[0].frame(),
        Frame::Refused { seqno: 100, reason: Refusal::ChannelClosed { above: 100, lost: 100 } }
    );
    assert_eq!(h.counters().sets, 1);
}
