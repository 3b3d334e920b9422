//! IronRSL on std UDP: replicas of any [`App`](fleet_engine::rsl::App) on their own
//! threads, in memory or durable, and a blocking client.
//!
//! - [`server`]: [`spawn`] runs a replica of your application; [`spawn_rsl_with`] runs the
//!   replicated map that `fleet rsl serve` serves;
//! - [`replica`]: the std replica type ([`StdReplica`]) and how the event loop drives it;
//! - [`durable`]: durable mode, the replica with a write-ahead log in a data directory;
//! - [`client`]: [`RslClient`], a blocking client: raw requests ([`RslClient::call`]) or
//!   the map's get, put and delete;
//! - [`app`]: [`StdKvApp`], the replicated map of the std servers;
//! - [`status`]: [`cluster_status`], every replica's answer to a status request;
//! - [`members`]: the current membership and the operator's membership changes.

pub mod app;
pub mod client;
pub mod durable;
pub mod members;
pub mod replica;
pub mod server;
pub mod status;

pub use app::StdKvApp;
pub use client::{KvAnswer, RslClient, StdClient, DEFAULT_RETRANSMIT_MS};
pub use durable::DurableReplica;
pub use members::Membership;
pub use replica::{ServerApp, ServerReplica, StdReplica};
pub use server::{spawn, spawn_learner, spawn_rsl, spawn_rsl_with, ServeOptions};
pub use status::{cluster_status, status_at, ReplicaStatus};
