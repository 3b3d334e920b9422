//! RSL rules checked through a replica's sans-IO entry points, one rule per test.
//!
//! Grouped by protocol section, one file each under `rsl_rules/`; the fixtures that several
//! sections share are here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fleet_engine::rsl::{Ballot, RslMsg};
use fleet_engine::wire::Bytes;
use fleet_engine::{Endpoint, Instant};
use fleet_tests::rsl_sim::SimReplica;

mod rules_common;
use rules_common::*;

#[path = "rsl_rules/phases.rs"]
mod phases;
#[path = "rsl_rules/refusals.rs"]
mod refusals;
#[path = "rsl_rules/replica_state.rs"]
mod replica_state;
#[path = "rsl_rules/requests.rs"]
mod requests;
#[path = "rsl_rules/state_transfer.rs"]
mod state_transfer;
#[path = "rsl_rules/truncation.rs"]
mod truncation;

/// Replica 1 votes for and executes operations 0..5 (2b from replica 0 and from itself).
fn executed_five() -> SimReplica {
    let mut r = fresh(1);
    let mut store = Out::new();
    let mut out = store.outbox();
    for opn in 0..5 {
        let batch = Bytes(b"");
        let _ =
            r.handle(Instant::ZERO, eps()[0], &encode(&RslMsg::TwoA { bal: Ballot::INITIAL, opn, batch }), &mut out);
        let two_b = encode(&RslMsg::TwoB { bal: Ballot::INITIAL, opn, opn_ckpt: 0 });
        let _ = r.handle(Instant::ZERO, eps()[0], &two_b, &mut out);
        let _ = r.handle(Instant::ZERO, eps()[1], &two_b, &mut out);
        out.clear();
    }
    assert_eq!(r.status().ops_complete, 5);
    r
}

fn heartbeat(ckpt: u64) -> Vec<u8> {
    encode(&RslMsg::Heartbeat { bal: Ballot::INITIAL, suspicious: false, opn_ckpt: ckpt })
}

/// Replica 0 leads view (1, 0) (promises from itself and replica 1) and executes five
/// one-request batches (2b from itself and replica 1, each reporting checkpoint 0).
fn leader_executed_five() -> SimReplica {
    let mut r = leader();
    let client = Endpoint::v4([10, 0, 1, 1], 9000);
    for seqno in 1..=5 {
        propose_and_decide(&mut r, client, &encode(&RslMsg::Request { seqno, request: Bytes(b"put") }));
    }
    assert_eq!(r.status().ops_complete, 5);
    r
}
