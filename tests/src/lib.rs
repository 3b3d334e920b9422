//! Fleet's deterministic simulator and the cross-crate tests built on it.
//!
//! Everything here is driven by one seed: the network ([`net`]), the clusters
//! ([`rsl_sim`], [`kv_sim`]) and the workload. Tests live in `tests/tests/`.
#![forbid(unsafe_code)]
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

pub mod kv_sim;
pub mod net;
pub mod rng;
pub mod rsl_sim;
