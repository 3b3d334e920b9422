//! Running a std KV host on its own thread.

use std::net::SocketAddr;
use std::time::Duration;

use super::host::KvServerHost;
use super::store::StdStore;
use crate::clock::incarnation_nonce;
use crate::config::KvSetup;
use crate::error::ServerError;
use crate::net::event_loop::LoopOptions;
use crate::net::server_thread::{bind_socket, spawn_host, RunningServer};

/// Binds host `id`'s address and runs it on a new thread.
pub fn spawn_kv(setup: &KvSetup, id: usize, stats_every: Option<Duration>) -> Result<RunningServer, ServerError> {
    spawn_kv_at(setup, id, None, stats_every)
}

/// Like [`spawn_kv`], but the socket binds `bind` (when given) instead of the host's
/// configured address, which the engine and the peers keep using (see
/// [`crate::rsl::ServeOptions::bind`]). The returned server's `addr` is the bound address.
pub fn spawn_kv_at(
    setup: &KvSetup,
    id: usize,
    bind: Option<SocketAddr>,
    stats_every: Option<Duration>,
) -> Result<RunningServer, ServerError> {
    let addr = *setup.addrs.get(id).ok_or_else(|| ServerError::Config(format!("--id {id} is not a KV host")))?;
    let (socket, bound) = bind_socket(bind.unwrap_or(addr))?;
    let options = LoopOptions { stats_every, ..LoopOptions::default() };
    let setup = setup.clone();
    spawn_host(format!("kv-{id}"), socket, bound, addr, options, move |now| {
        let store = StdStore::new(setup.max_keys, setup.config.params.max_value_bytes);
        // In memory: every start is a start without state, which joins before serving
        // (`fleet_engine::kv::join`).
        let host = KvServerHost::new_joining(setup.config.clone(), id, store, incarnation_nonce(), now)
            .map_err(|e| ServerError::Config(e.to_string()))?;
        tracing::info!("kv host {id}: started without state; joining (it serves once every other host has answered)");
        Ok(Box::new(host))
    })
}
