//! Running a std KV host on its own thread: in memory, or durable with a data directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::durable::{DurableKvHost, DEFAULT_LOG};
use super::host::new_host;
use crate::config::KvSetup;
use crate::error::ServerError;
use crate::net::event_loop::LoopOptions;
use crate::net::server_thread::{bind_socket, spawn_host, RunningServer};
use crate::storage::syncer::SyncMode;

/// How a KV host runs.
#[derive(Clone, Debug, Default)]
pub struct KvServeOptions {
    /// Event-loop options.
    pub loop_options: LoopOptions,
    /// Durable mode: the host's data directory. Without it the host keeps its state in
    /// memory only, and a crashed host must not be restarted with the same identity (it
    /// would come back owning what it gave away, without what it stored).
    pub data_dir: Option<PathBuf>,
    /// Bind the socket here instead of the host's configured address, which the engine and
    /// the peers keep using (see [`crate::rsl::ServeOptions::bind`]). The server's `addr`
    /// is then the bound address.
    pub bind: Option<SocketAddr>,
    /// Durable mode: write an image and drop older log segments once this many bytes were
    /// logged since the last image; `None`: [`DEFAULT_LOG`]'s (64 MiB).
    pub compact_after_bytes: Option<u64>,
    /// Durable mode: where the log's syncs run; `None`: [`DEFAULT_LOG`]'s (inline).
    pub sync: Option<SyncMode>,
}

/// Binds host `id`'s address and runs it (in memory) on a new thread.
pub fn spawn_kv(setup: &KvSetup, id: usize, stats_every: Option<Duration>) -> Result<RunningServer, ServerError> {
    let options = KvServeOptions {
        loop_options: LoopOptions { stats_every, ..LoopOptions::default() },
        ..KvServeOptions::default()
    };
    spawn_kv_at(setup, id, &options)
}

/// Runs host `id` of `setup` on a new thread as `options` say: durable if they name a data
/// directory (opened and recovered before this returns, so its errors surface here), bound
/// to `options.bind` if given.
pub fn spawn_kv_at(setup: &KvSetup, id: usize, options: &KvServeOptions) -> Result<RunningServer, ServerError> {
    let addr = *setup.addrs.get(id).ok_or_else(|| ServerError::Config(format!("--id {id} is not a KV host")))?;
    let (socket, bound) = bind_socket(options.bind.unwrap_or(addr))?;
    let name = format!("kv-{id}");
    let setup = setup.clone();
    let mut loop_options = options.loop_options.clone();
    if loop_options.auth.is_none() {
        loop_options.auth = crate::auth::member_loop_auth(setup.auth.as_ref(), setup.config.identity(), &setup.addrs)?;
    }
    if let Some(board) = loop_options.metrics.as_mut() {
        // Members' datagrams are protocol messages: only clients' requests are timed.
        board.members = setup.addrs.iter().map(|a| crate::net::to_endpoint(*a)).collect();
    }
    match options.data_dir.clone() {
        // In memory every start is a start without state: the host joins before it serves.
        None => spawn_host(name, socket, bound, addr, loop_options, move |now| new_host(&setup, id, now)),
        Some(dir) => {
            let log = DEFAULT_LOG.overridden(options.compact_after_bytes, options.sync);
            spawn_host(name, socket, bound, addr, loop_options, move |now| {
                DurableKvHost::open_with(&setup, id, &dir, now, log).map(Box::new)
            })
        }
    }
}
