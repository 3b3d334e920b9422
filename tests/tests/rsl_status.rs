//! Status requests (`RslMsg::StatusRequest`, `fleet rsl status`), through a replica's sans-IO
//! entry points.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod rules_common;

use fleet_engine::rsl::RslMsg;
use fleet_engine::wire::{self, Protocol};
use fleet_engine::{Endpoint, Instant};
use rules_common::*;

#[test]
fn anyone_gets_the_replicas_status_and_nothing_changes() {
    let mut r = leader();
    let before = r.clone();
    let stranger = Endpoint::v4([192, 168, 9, 9], 4000);
    let mut store = Out::new();
    let mut out = store.outbox();
    let mut request = [0u8; 32];
    // An operator's tool need not know the cluster's identity.
    let n = wire::encode_rsl(wire::ANY_CLUSTER, &RslMsg::StatusRequest { nonce: 77 }, &mut request).unwrap();
    let _ = r.handle(Instant::ZERO, stranger, &request[..n], &mut out);
    let replies = sent(&out);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].0, stranger);
    match decode(&replies[0].1) {
        RslMsg::StatusReply { nonce, replica, status } => {
            assert_eq!((nonce, replica), (77, 0));
            assert_eq!(status, r.status());
            assert!(status.is_leader);
        }
        other => panic!("{other:?}"),
    }
    assert!(r == before, "a status request changes no protocol state");
}

#[test]
fn a_status_request_naming_another_cluster_is_refused() {
    let mut r = leader();
    let mut store = Out::new();
    let mut out = store.outbox();
    let mut request = [0u8; 32];
    let n = wire::encode_rsl(0xDEAD_BEEF, &RslMsg::StatusRequest { nonce: 1 }, &mut request).unwrap();
    let _ = r.handle(Instant::ZERO, Endpoint::v4([192, 168, 9, 9], 4000), &request[..n], &mut out);
    assert!(sent(&out)
        .iter()
        .all(|(_, b)| !matches!(wire::decode::<RslMsg<'_>>(Protocol::Rsl, b), Ok(RslMsg::StatusReply { .. }))));
    assert_eq!(r.stats().foreign_cluster, 1);
}
