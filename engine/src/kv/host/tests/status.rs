//! Status requests (`kv::status`): answered to anyone, paged, and changing nothing.

use super::*;
use crate::kv::join::runs;
use crate::kv::status::KvStatus;
use std::vec::Vec;

/// A status request as an operator's tool sends it: any cluster.
fn status_request(nonce: u64, from_key: u64) -> heapless::Vec<u8, 512> {
    let mut buf = [0u8; 512];
    let n = wire::encode(Protocol::Kv, &Frame::StatusRequest { nonce, from_key }, &mut buf).unwrap();
    heapless::Vec::from_slice(&buf[..n]).unwrap()
}

/// The one status reply in `sent`: (nonce, host, status, next, runs).
fn reply(sent: &[Sent]) -> (u64, u8, KvStatus, Option<u64>, Vec<(KeyRange, u8)>) {
    assert_eq!(sent.len(), 1, "{sent:?}");
    match sent[0].frame() {
        Frame::StatusReply { nonce, host, status, next, runs: r, .. } => {
            (nonce, host, status, next, runs(r.0).map(|x| x.unwrap()).collect())
        }
        other => panic!("not a status reply: {other:?}"),
    }
}

#[test]
fn a_status_request_is_answered_with_the_hosts_state_and_changes_nothing() {
    let mut h = host(0);
    let _ = set(&mut h, 1, 7, b"seven");
    h.set_durable(true);
    let before = h.clone();
    let mut store = Buf::new();
    let mut out = store.outbox();
    let step = h.handle(T0, C2, &status_request(42, 0), &mut out);
    assert!(!step.log_input && !step.storage_changed, "nothing for a durable binding to log");
    let sent: Vec<Sent> =
        out.iter().map(|(dst, b)| Sent { dst, bytes: heapless::Vec::from_slice(b).unwrap() }).collect();
    assert!(h == before, "protocol state unchanged");
    assert_eq!(sent[0].dst, C2);
    let (nonce, host, status, next, owned) = reply(&sent);
    assert_eq!((nonce, host, next), (42, 0, None));
    assert_eq!(owned, [(KeyRange::from(0), 0)], "host 0 owns every key");
    assert!(!status.joining && status.durable);
    assert_eq!((status.keys, status.key_capacity), (1, 16));
    assert_eq!(status.counters.sets, 1);
    assert_eq!(status.unacked, 1, "the Set's reply is not acked yet");
    assert_eq!(status.channels, 4, "three hosts and one client");
    assert_eq!(status.map_runs, 1);
    assert!(h.reliable().index_of(C2).is_none(), "the asker got no channel");
}

#[test]
fn a_status_page_starts_at_the_key_asked_for() {
    let mut h = host(0);
    let (_, _, _, next, owned) = reply(&run(&mut h, C, &status_request(1, 50)));
    assert_eq!(owned, [(KeyRange::from(50), 0)]);
    assert_eq!(next, None);
    let mut h1 = host(1);
    let (_, host, status, _, owned) = reply(&run(&mut h1, C, &status_request(2, 0)));
    assert_eq!((host, owned.len(), status.keys), (1, 0, 0), "host 1 owns nothing at first");
}

#[test]
fn a_joining_host_answers_that_it_is_joining_with_no_ranges() {
    let mut config = KvConfig::new(&[H0, H1, H2]).unwrap();
    config.params = params();
    let mut h = Host::new_joining(config, 0, Store::new(), 1_000, T0).unwrap();
    let (_, _, status, next, owned) = reply(&run(&mut h, C, &status_request(3, 0)));
    assert!(status.joining);
    assert_eq!((owned.len(), next), (0, None));
}

#[test]
fn a_status_request_naming_another_cluster_is_refused() {
    let mut h = host(0);
    let mut buf = [0u8; 64];
    let n = wire::encode_in_cluster(Protocol::Kv, 0xDEAD, &Frame::StatusRequest { nonce: 1, from_key: 0 }, &mut buf)
        .unwrap();
    assert!(run(&mut h, C, &buf[..n]).is_empty());
    assert_eq!(h.stats().foreign_cluster, 1);
}
