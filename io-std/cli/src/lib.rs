//! # fleet-cli
//!
//! The tools around Fleet's runtime: what the `fleet` command runs besides the servers
//! themselves (those are `fleet-io-std`).
//!
//! - [`bench`](mod@bench): the closed-loop load generator behind `fleet bench`, with latency histograms
//!   and an operation history for `fleet check-history`;
//! - [`demo`]: `fleet demo`, the main job;
//! - [`member`]: `fleet rsl member` and `fleet rsl serve --join`, membership change;
//! - [`plot`]: throughput/latency curves of a sweep as SVG;
//! - [`procs`]: child server processes for the demo and the multi-process tests;
//! - [`status`]: how `fleet rsl status` and `fleet kv status` show every member's answer.
#![forbid(unsafe_code)]

pub mod bench;
pub mod demo;
pub mod member;
pub mod plot;
pub mod procs;
pub mod status;
