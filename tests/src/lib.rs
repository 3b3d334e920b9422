//! Fleet's deterministic simulator (our VOPR) and the cross-crate tests built on it.
//!
//! Everything here is driven by one seed: the network ([`net`]), host clocks ([`clock`]),
//! the fault schedule ([`faults`]), the clusters and workloads ([`rsl_sim`], [`kv_sim`]). [`vopr`] runs one
//! seed end to end and judges it with the `fleet-proofs` checkers; the `vopr` binary runs
//! many. Tests live in `tests/tests/`.
#![forbid(unsafe_code)]
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

pub mod adversary;
pub mod clock;
pub mod disk;
pub mod faults;
pub mod kv_sim;
pub mod members_sim;
pub mod net;
pub mod rng;
pub mod rsl_sim;
pub mod trace;
pub mod vopr;
