//! Shared harness of the fuzz targets: a small replica type, a driver that runs one step
//! and checks what must hold after every step, whatever the input.
#![allow(clippy::panic)]

use fleet_engine::rsl::apps::counter::Counter;
use fleet_engine::rsl::{Params, Replica, RslConfig, RslMsg};
use fleet_engine::wire::{self, Protocol};
use fleet_engine::{Endpoint, Instant, OutboxBuf};

/// The fuzzed replica: counter app, at most 3 replicas, window 4, 512-byte datagrams.
pub type FReplica = Replica<Counter, 3, 4, 512, 2048, 4, 16>;
/// Replica count of the fuzzed cluster.
pub const N: usize = 3;
/// Outbox big enough for any step (see [`MAX_OUT`]).
pub type Buf = OutboxBuf<256, { 256 * 512 }>;

/// Most datagrams one step may emit with [`params`]: a broadcast per log slot (2a
/// retransmissions) plus heartbeat, 1a, StartingPhase2, 2b, a 1b chunk per vote, replies
/// for a batch, and the state-transfer chunks of one answer.
pub const MAX_OUT: usize = N * (4 + 8) + 4 + 4 + 16;

/// Endpoint of replica `i`.
pub fn replica_ep(i: usize) -> Endpoint {
    Endpoint::v4([10, 0, 0, i as u8 + 1], 7000)
}

/// Endpoint of client `i` (not a replica).
pub fn client_ep(i: usize) -> Endpoint {
    Endpoint::v4([10, 0, 1, i as u8 + 1], 9000)
}

/// Parameters small enough that timers and windows matter within a short input.
pub fn params() -> Params {
    Params {
        heartbeat_period_ms: 100,
        baseline_view_timeout_ms: 300,
        max_view_timeout_ms: 2400,
        max_batch_size: 4,
        max_batch_delay_ms: 10,
        max_log_length: 3,
        max_datagram_bytes: 512,
        retransmit_period_ms: 150,
        state_chunks_per_step: 4,
    }
}

/// A fresh replica `me` of the fuzzed cluster.
pub fn replica(me: usize) -> FReplica {
    FReplica::new(config(), me, Counter::default(), Instant::ZERO).unwrap_or_else(|_| panic!("replica"))
}

/// Replica `me` of the fuzzed cluster started without state: it rejoins with nonce 5.
pub fn rejoining_replica(me: usize) -> FReplica {
    FReplica::new_rejoining(config(), me, Counter::default(), Instant::ZERO, 5).unwrap_or_else(|_| panic!("replica"))
}

/// The fuzzed cluster's configuration.
pub fn config() -> RslConfig<N> {
    let eps: Vec<Endpoint> = (0..N).map(replica_ep).collect();
    let mut config = RslConfig::new(&eps).unwrap_or_else(|_| panic!("config"));
    config.params = params();
    config
}

/// Checks what every step must leave behind: the local and step invariants, a bounded
/// output, and only datagrams that fit the bound and decode.
pub fn check_step(r: &FReplica, before: &fleet_engine::rsl::Monotone<3>, out: &fleet_engine::Outbox<'_>) {
    if let Err(e) = r.check_invariants() {
        panic!("local invariant broken: {e}");
    }
    if let Err(e) = before.check_step(&r.monotone()) {
        panic!("step invariant broken: {e}");
    }
    if out.len() > MAX_OUT {
        panic!("one step emitted {} datagrams (bound {MAX_OUT})", out.len());
    }
    if r.stats().oversize_messages > 0 {
        panic!("the engine built a message larger than a datagram");
    }
    for (_, d) in out.iter() {
        if d.len() > params().max_datagram_bytes {
            panic!("datagram of {} bytes", d.len());
        }
        if wire::decode::<RslMsg<'_>>(Protocol::Rsl, d).is_err() {
            panic!("the engine emitted a datagram it cannot decode: {d:02x?}");
        }
    }
}

thread_local! {
    /// One outbox reused by every step (allocating and zeroing 128 KiB per step halved the
    /// execution rate).
    static BUF: std::cell::RefCell<Box<Buf>> = std::cell::RefCell::new(Box::new(Buf::new()));
}

/// Runs `handle` and checks the step.
pub fn deliver(r: &mut FReplica, now: Instant, from: Endpoint, datagram: &[u8]) {
    let before = r.monotone();
    BUF.with(|b| {
        let mut b = b.borrow_mut();
        let mut out = b.outbox();
        let _ = r.handle(now, from, datagram, &mut out);
        check_step(r, &before, &out);
    });
}

/// Runs `tick` and checks the step.
pub fn tick(r: &mut FReplica, now: Instant) {
    let before = r.monotone();
    BUF.with(|b| {
        let mut b = b.borrow_mut();
        let mut out = b.outbox();
        let _ = r.tick(now, &mut out);
        check_step(r, &before, &out);
    });
}
