//! IronKV on std UDP: hosts on their own threads and a blocking client.
//!
//! - [`server`]: [`spawn_kv`] and [`spawn_kv_at`] run a host of a KV cluster, in memory or
//!   durable ([`KvServeOptions::data_dir`]);
//! - [`host`]: the std host type ([`KvServerHost`]) and how the event loop drives it;
//! - [`durable`]: [`DurableKvHost`], a host whose inputs are logged and imaged to a data
//!   directory, so it survives a SIGKILL;
//! - [`image`]: its image files, and recovery from them and the log;
//! - [`store`]: [`StdStore`], the host's ordered map behind the engine's `Storage` trait;
//! - [`client`]: [`KvBlockingClient`]: get, set, delete and shard;
//! - [`status`]: [`cluster_status`], every host's answer to a status request, with its ranges.

pub mod client;
pub mod durable;
pub mod host;
pub mod image;
pub mod server;
pub mod status;
pub mod store;

pub use client::{KvAnswer, KvBlockingClient, StdKvClient};
pub use durable::DurableKvHost;
pub use host::KvServerHost;
pub use server::{spawn_kv, spawn_kv_at, KvServeOptions};
pub use status::{cluster_status, ownership, HostStatus, Moving, Ownership};
pub use store::StdStore;
