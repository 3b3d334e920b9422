//! A cluster of one replica: started without state (as every in-memory replica starts), it
//! has nobody to ask and is born at once, then leads and executes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod rules_common;

use fleet_engine::rsl::apps::kv::KvOp;
use fleet_engine::rsl::RslMsg;
use fleet_engine::wire::{self, Bytes};
use fleet_engine::{Endpoint, Instant};
use fleet_tests::rsl_sim::{SimApp, SimReplica};
use rules_common::*;

#[test]
fn a_single_replica_started_without_state_is_born_and_serves() {
    let me = Endpoint::v4([10, 0, 0, 1], 7000);
    let config = fleet_engine::rsl::RslConfig::<7>::new(&[me]).unwrap();
    let cluster = config.identity();
    let mut r = SimReplica::new_rejoining(config, 0, SimApp::new(), Instant::ZERO, 5).unwrap();
    let mut store = Out::new();
    let client = Endpoint::v4([10, 0, 9, 1], 9000);
    let mut now = Instant::ZERO;
    let mut replied = false;
    // Ticks and self-addressed datagrams until the put is answered (bounded: 5 s of time).
    let mut op = [0u8; 64];
    let n = KvOp::Put(Bytes(b"k"), Bytes(b"v")).encode(&mut op).unwrap();
    let mut request = [0u8; 128];
    let len = wire::encode_rsl(cluster, &RslMsg::Request { seqno: 1, request: Bytes(&op[..n]) }, &mut request).unwrap();
    for _ in 0..500 {
        let mut out = store.outbox();
        let _ = r.tick(now, &mut out);
        if r.rejoining().is_none() && r.status().is_leader {
            let _ = r.handle(now, client, &request[..len], &mut out);
        }
        let mut pending = sent(&out);
        while let Some((to, bytes)) = pending.pop() {
            if to == client {
                replied |= matches!(decode(&bytes), RslMsg::Reply { seqno: 1, .. });
                continue;
            }
            let mut out = store.outbox();
            let _ = r.handle(now, me, &bytes, &mut out);
            pending.extend(sent(&out));
        }
        if replied {
            break;
        }
        now = now.plus_ms(10);
    }
    assert!(r.rejoining().is_none(), "born without anyone to ask");
    assert!(replied, "the put was answered: {:?}", r.status());
    assert_eq!(r.app().get(b"k"), Some(&b"v"[..]));
}
