//! IronKV on std UDP: hosts on their own threads and a blocking client.
//!
//! - [`server`]: [`spawn_kv`] runs a host of a KV cluster;
//! - [`host`]: the std host type ([`KvServerHost`]) and how the event loop drives it;
//! - [`store`]: [`StdStore`], the host's ordered map behind the engine's `Storage` trait;
//! - [`client`]: [`KvBlockingClient`]: get, set, delete and shard.

pub mod client;
pub mod host;
pub mod server;
pub mod store;

pub use client::{KvAnswer, KvBlockingClient, StdKvClient};
pub use host::KvServerHost;
pub use server::{spawn_kv, spawn_kv_at};
pub use store::StdStore;
