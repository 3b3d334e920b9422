//! What the rule tests share: a three-replica cluster's endpoints, its datagrams, and a
//! replica that leads the first view.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fleet_engine::rsl::{Ballot, RslConfig, RslMsg};
use fleet_engine::wire::{self, Protocol};
use fleet_engine::{Endpoint, Instant, OutboxBuf};
use fleet_tests::rsl_sim::{SimApp, SimReplica};

pub type Out = OutboxBuf<256, { 256 * 1024 }>;

pub fn eps() -> Vec<Endpoint> {
    (0..3).map(|i| Endpoint::v4([10, 0, 0, i as u8 + 1], 7000)).collect()
}

pub fn fresh(me: usize) -> SimReplica {
    SimReplica::new(config(), me, SimApp::new(), Instant::ZERO).unwrap()
}

/// The rule tests' cluster: [`eps`] with default parameters.
pub fn config() -> RslConfig<7> {
    RslConfig::<7>::new(&eps()).unwrap()
}

/// A datagram from a member of the cluster of [`fresh`] replicas.
pub fn encode(msg: &RslMsg<'_>) -> Vec<u8> {
    encode_in(&config(), msg)
}

/// A datagram from a member of the cluster `config` describes.
pub fn encode_in(config: &RslConfig<7>, msg: &RslMsg<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let n = wire::encode_rsl(config.identity(), msg, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

pub fn sent(out: &fleet_engine::Outbox<'_>) -> Vec<(Endpoint, Vec<u8>)> {
    out.iter().map(|(d, b)| (d, b.to_vec())).collect()
}

pub fn decode(bytes: &[u8]) -> RslMsg<'_> {
    wire::decode(Protocol::Rsl, bytes).unwrap()
}

/// Replica 0 leads view (1, 0) with promises from itself and replica 1.
pub fn leader() -> SimReplica {
    leader_of(config(), Instant::ZERO, Instant::ZERO)
}

/// Replica 0 of `config`, started at `start`, leads view (1, 0) from `at` with promises
/// from itself and replica 1.
pub fn leader_of(config: RslConfig<7>, start: Instant, at: Instant) -> SimReplica {
    let mut r = SimReplica::new(config.clone(), 0, SimApp::new(), start).unwrap();
    let mut store = Out::new();
    let mut out = store.outbox();
    let _ = r.tick(at, &mut out);
    for from in [0, 1] {
        let one_b = RslMsg::OneB {
            bal: Ballot::INITIAL,
            log_truncation_point: 0,
            reply_id: 1,
            chunk: 0,
            chunks: 1,
            vote: None,
        };
        let _ = r.handle(at, eps()[from], &encode_in(&config, &one_b), &mut out);
    }
    assert!(r.status().is_leader);
    r
}

/// Hands `r` a datagram as a binding does: `handle`, then `tick` if that left a deadline due
/// (a leader with nothing in flight proposes a partial batch from the tick that ends a
/// receive burst).
pub fn handle_then_due(
    r: &mut SimReplica,
    now: Instant,
    from: Endpoint,
    datagram: &[u8],
    out: &mut fleet_engine::Outbox<'_>,
) {
    let _ = r.handle(now, from, datagram, out);
    if r.next_deadline() <= now {
        let _ = r.tick(now, out);
    }
}

/// Hands the leader `r` a client's request datagram, takes the 2a it proposes at the end of
/// the burst, hands that 2a back to it (its own acceptor votes), and decides it with 2b from
/// replicas 0 and 1 (each reporting checkpoint 0).
pub fn propose_and_decide(r: &mut SimReplica, client: Endpoint, request: &[u8]) {
    let mut store = Out::new();
    let mut out = store.outbox();
    handle_then_due(r, Instant::ZERO, client, request, &mut out);
    let (opn, two_a) = sent(&out)
        .into_iter()
        .find_map(|(_, b)| match decode(&b) {
            RslMsg::TwoA { opn, .. } => Some((opn, b)),
            _ => None,
        })
        .expect("an idle leader proposes at the burst's end");
    let _ = r.handle(Instant::ZERO, eps()[0], &two_a, &mut out);
    let two_b = encode(&RslMsg::TwoB { bal: Ballot::INITIAL, opn, opn_ckpt: 0 });
    for from in [0, 1] {
        let _ = r.handle(Instant::ZERO, eps()[from], &two_b, &mut out);
    }
}
