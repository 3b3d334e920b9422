//! # fleet-io-std
//!
//! Fleet's runtime for std programs: it binds `fleet-engine` to UDP sockets, threads, a
//! clock and files. It holds no protocol logic: it moves datagrams and time between the
//! operating system and the engine, and persists what the engine says must be durable. The
//! `fleet` command, the benchmark and the demo are a separate crate (`fleet-cli`).
//!
//! ## Replicating your own application
//!
//! 1. Implement [`fleet_engine::rsl::App`] for your state machine: `apply` one request
//!    (deterministically), and read, stage and install snapshots (how a lagging replica
//!    catches up).
//! 2. Describe the cluster: a [`ClusterFile`] with an `[rsl]` section listing the replicas'
//!    addresses (`ClusterFile::load` reads one from disk), validated into an [`RslSetup`].
//! 3. On each machine, [`rsl::spawn`] runs replica `id` on its own thread; with
//!    [`rsl::ServeOptions::data_dir`] set, its promises and votes are synced to disk before
//!    anything that depends on them is sent, so the process may be killed and restarted.
//! 4. Talk to the cluster with [`rsl::RslClient`]: [`call`](rsl::RslClient::call) sends one
//!    request and returns the reply of its one execution;
//!    [`call_group`](rsl::RslClient::call_group) runs many in order, packed into as few
//!    datagrams as fit (a pipelined session).
//!
//! The whole program, runnable as `cargo run -p fleet-io-std --example replicated_total`:
//!
//! ```no_run
#![doc = include_str!("../examples/replicated_total.rs")]
//! ```
//!
//! ## Modules
//!
//! - [`rsl`]: replicas of any application, the replicated map `fleet rsl serve` runs,
//!   durable mode, and the blocking client;
//! - [`kv`]: IronKV hosts (in memory, or durable: [`kv::DurableKvHost`]) and the blocking KV
//!   client;
//! - [`config`]: the TOML cluster file, validated into [`RslSetup`] and [`KvSetup`];
//! - [`capacity`]: the compile-time capacities of the std engine types;
//! - [`net`]: the event loop ([`net::event_loop::Host`] is the contract a host meets), burst
//!   UDP I/O, address conversion, server threads;
//! - [`storage`]: the write-ahead log and snapshot files of durable RSL replicas and KV hosts;
//! - [`clock`], [`error`]: the engine's clock, and the errors users see.
#![forbid(unsafe_code)]

pub mod auth;
pub mod capacity;
pub mod clock;
pub mod config;
pub mod error;
pub mod kv;
pub mod net;
pub mod rsl;
pub mod storage;

pub use config::{ClusterFile, ConfigFileError, KvSetup, RslSetup};
pub use error::{CallError, ServerError};
pub use net::server_thread::RunningServer;
