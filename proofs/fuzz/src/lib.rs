//! Shared harness of the fuzz targets: a small replica type, a driver that runs one step
//! and checks what must hold after every step, whatever the input, and the cluster's keys:
//! the harness holds them, as every member does, so fuzzed messages are sealed by their
//! claimed sender and opened by the replica's guard before `handle`, exactly as a binding
//! does (`fleet_engine::auth`); bytes that were not sealed must never open.
#![allow(clippy::panic)]

// The engines check their own invariants after every step under debug assertions
// (`Replica::check_invariants` and the step invariants, `KvHost::check_invariants`): the
// harness relies on that instead of checking twice, so the profile must keep them on.
#[cfg(not(debug_assertions))]
compile_error!("fuzz with debug assertions on (proofs/fuzz/Cargo.toml's release profile)");

use fleet_engine::auth::{Guard, Key, KeySet, Keyring, Role, AUTH_OVERHEAD_BYTES};

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
pub const fn replica_ep(i: usize) -> Endpoint {
    Endpoint::v4([10, 0, 0, i as u8 + 1], 7000)
}

/// Every replica's endpoint.
pub static MEMBERS: [Endpoint; N] = [replica_ep(0), replica_ep(1), replica_ep(2)];

/// The keys of the fuzzed cluster (member and client keys); `member: false` for a client's.
pub fn keyring(cluster: u32, member: bool) -> Keyring {
    Keyring {
        cluster,
        member: member.then(|| KeySet::single(Key::new(1, [0x4d; 16]))),
        client: KeySet::single(Key::new(2, [0x43; 16])),
    }
}

/// The guard of the host at `me` among `members` (a client's if `me` is not one).
pub fn guard(cluster: u32, me: Endpoint, members: &'static [Endpoint]) -> Guard<'static> {
    match members.contains(&me) {
        true => Guard::new(keyring(cluster, true), me, Role::Member(members)),
        false => Guard::new(keyring(cluster, false), me, Role::Client),
    }
}

/// `inner` from `from` to `to`, sealed as `from`'s binding would.
pub fn seal(cluster: u32, members: &'static [Endpoint], from: Endpoint, to: Endpoint, inner: &[u8]) -> Vec<u8> {
    let mut wire = vec![0u8; inner.len() + AUTH_OVERHEAD_BYTES];
    let Ok(n) = guard(cluster, from, members).seal(to, inner, &mut wire) else { panic!("a member cannot seal") };
    wire.truncate(n);
    wire
}

/// The receiving side: `wire` from `from` opened at `to`. A datagram the harness did not
/// seal must never open: `sealed_by_harness` says whether it did.
pub fn open<'w>(
    cluster: u32,
    members: &'static [Endpoint],
    from: Endpoint,
    to: Endpoint,
    wire: &'w [u8],
    sealed_by_harness: bool,
) -> Option<&'w [u8]> {
    match (guard(cluster, to, members).check(from, wire), sealed_by_harness) {
        (Ok(inner), true) => Some(inner),
        (Ok(_), false) => panic!("bytes no key holder sealed opened: {wire:02x?}"),
        (Err(e), true) => panic!("a sealed datagram did not open: {e}"),
        (Err(_), false) => None,
    }
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
        lease_ms: 0,
        clock_drift_ppm: 1_000,
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

/// Checks what every step must leave behind besides the invariants the replica checks
/// itself: a bounded output, and only datagrams that fit the bound and decode.
pub fn check_step(r: &FReplica, out: &fleet_engine::Outbox<'_>) {
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

/// Runs `handle` on an unsealed cluster's datagram (the decoder's robustness) and checks
/// the step.
pub fn deliver(r: &mut FReplica, now: Instant, from: Endpoint, datagram: &[u8]) {
    BUF.with(|b| {
        let mut b = b.borrow_mut();
        let mut out = b.outbox();
        let _ = r.handle(now, from, datagram, &mut out);
        check_step(r, &out);
    });
}

/// `inner` sealed by `from` (the harness holds every key), opened by the replica's guard,
/// then handled: fuzzed input reaches past the MAC as a key holder's would.
pub fn deliver_sealed(r: &mut FReplica, me: usize, now: Instant, from: Endpoint, inner: &[u8]) {
    let me = MEMBERS[me];
    let wire = seal(r.cluster(), &MEMBERS, from, me, inner);
    if let Some(opened) = open(r.cluster(), &MEMBERS, from, me, &wire, true) {
        deliver(r, now, from, opened);
    }
}

/// Bytes as they came off the wire, not sealed by anyone: the replica's guard must refuse
/// them (nothing reaches `handle`).
pub fn deliver_unsealed_wire(r: &FReplica, me: usize, from: Endpoint, wire: &[u8]) {
    let me = MEMBERS[me];
    let _ = open(r.cluster(), &MEMBERS, from, me, wire, false);
}

/// Runs `tick` and checks the step.
pub fn tick(r: &mut FReplica, now: Instant) {
    BUF.with(|b| {
        let mut b = b.borrow_mut();
        let mut out = b.outbox();
        let _ = r.tick(now, &mut out);
        check_step(r, &out);
    });
}
