//! Real processes on 127.0.0.1: `fleet` servers as children, the CLI, the blocking clients
//! and the load generator, one module per subject. They share one test binary so that
//! `cargo test` runs them side by side (two at a time on two cores, as each module's own
//! tests ran before): most of their time is spent waiting for processes, timeouts and view
//! changes, not computing. Every test starts what it needs on ports it finds free, in a
//! scratch directory of its own, and kills its children when it ends, pass or fail. A
//! scratch directory is named by its tag and the process id (`scratch_dir`), and a test may
//! open its own twice by tag, so no two tests share a tag.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod abuse;
mod auth;
mod catch_up;
mod config_check;
mod kv_clients;
mod kv_rejoin;
mod kv_restart;
mod kv_shard_cli;
mod log_format;
mod membership;
mod metrics;
mod multiprocess;
mod partition;
mod pipelined_client;
mod power_cut;
mod rejoin;
mod restart;
mod status;
mod storage_faults;
