//! # fleet-engine
//!
//! IronFleet's two verified systems — **IronRSL** (MultiPaxos state machine replication)
//! and **IronKV** (a sharded key-value store) — as one `no_std`, heap-free, sans-IO engine.
//! The same code runs in firmware (through `fleet-io-embassy`), in servers (through
//! `fleet-io-std`), in the deterministic simulator, and under a fuzzer.
//!
//! ## The sans-IO contract
//!
//! A host ([`rsl::Replica`], [`rsl::Client`], [`kv::KvHost`], [`kv::KvClient`]) never
//! performs IO and never reads a clock.
//! The binding drives it with exactly three calls:
//!
//! 1. **`handle(now, from, datagram, out) -> Step`** — one received datagram in. This is one
//!    IronFleet step: the receive, at most one clock reading (`now`, read by the binding
//!    *after* the receive), then sends. Malformed, hostile, stale or out-of-bounds input is
//!    counted in `stats()` and changes nothing else; it never panics.
//! 2. **`tick(now, out) -> Step`** — the clock-driven actions: heartbeats, view timeouts,
//!    suspicion, the batch timer, retransmissions, state-transfer retries.
//! 3. **`next_deadline() -> Instant`** — when `tick` must next be called. Calling `tick`
//!    early is harmless; calling it late only delays timers. After every `handle` or
//!    `tick`, re-read `next_deadline`: a step may arm a new timer. A request that reaches
//!    an idle leader arms the batch timer at `now`: a binding that handles a burst of
//!    received datagrams before it ticks proposes the burst's requests as one batch.
//!
//! Order: `new`, then any interleaving of `handle` and `tick`, with non-decreasing `now`.
//! After each call the binding sends every datagram in `out` (in order; order between
//! destinations does not matter) and clears it.
//!
//! **Outbox.** `out` is caller-provided bounded storage ([`Outbox`], [`OutboxBuf`]); the
//! engine encodes straight into it. A full outbox behaves like a lossy network: the
//! datagram is dropped and counted in `Stats::outbox_full`, never a panic. Size it for one
//! step's worst case (a broadcast per log slot, a state-transfer burst) to avoid that.
//!
//! **Self-addressed datagrams.** Broadcasts include the host itself, as in IronRSL. A
//! binding may send them through its socket or feed them straight back to `handle`.
//!
//! **Starting without state.** A replica without its durable state (in memory after a
//! crash, a wiped disk, a firmware without flash) starts with
//! [`rsl::Replica::new_rejoining`]: it promises and votes only once every other replica has
//! told it what it may have promised and voted ([`rsl::rejoin`]).
//!
//! **Durability.** A durable RSL replica ([`rsl::Replica::new_durable`]) hands its binding
//! records to append after every step ([`rsl::Replica::next_record`]) and marks the
//! datagrams that reveal acceptor state ([`Outbox::waits_for_sync`]): those leave only once
//! the records before them are synced; every other datagram may leave at once
//! ([`rsl::durable`] has the rule and why). [`rsl::Step::durable_state_changed`] says a
//! step changed the acceptor's durable state; [`kv::Step::storage_changed`] says a KV
//! host's store or delegation map changed (KV state is in memory only, as in IronKV).
//!
//! **Time** is a caller-supplied monotonic [`Instant`] in microseconds.
//!
//! ## Capacities
//!
//! Nothing is allocated: every buffer is a const-generic capacity ([`rsl::Replica`] lists
//! them), and runtime parameters ([`rsl::Params`]) are validated against those capacities
//! at construction. Every loop is bounded by one of them.
//!
//! ## Wire
//!
//! [`wire`]: a 3-byte versioned envelope (magic, version, protocol) followed by a postcard
//! body; every message is bounded by the configured datagram size (default 1472 bytes,
//! the 1500-MTU UDP payload; at most 65507).
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod auth;
pub mod config;
mod emit;
pub mod endpoint;
pub mod kv;
pub mod outbox;
mod reader;
pub mod rsl;
mod sip;
pub mod stats;
#[cfg(test)]
mod test_rng;
pub mod time;
pub mod wire;
mod writer;

/// The format of the durable records the engines hand to bindings (RSL acceptor, executed
/// and snapshot records; KV inputs and images). A binding stores it beside the records and
/// refuses state of another format rather than misread it (io-std's data-directory
/// `format` file, fleet-flash's frames). Bump it whenever a record's encoding changes.
pub const RECORD_FORMAT: u32 = 5;

pub use config::ConfigError;
pub use endpoint::{Endpoint, IpAddr};
pub use outbox::{Outbox, OutboxBuf};
pub use stats::Stats;
pub use time::Instant;
