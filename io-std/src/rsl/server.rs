//! Running a std replica on its own thread: in memory, or durable with a data directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use fleet_engine::rsl::App;

use super::durable::{DurableReplica, DEFAULT_LOG};
use super::replica::{build, ServerApp};
use crate::config::RslSetup;
use crate::error::ServerError;
use crate::net::event_loop::LoopOptions;
use crate::net::server_thread::{bind_socket, spawn_host, RunningServer};
use crate::storage::syncer::SyncMode;

/// How a replica runs.
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    /// Event-loop options.
    pub loop_options: LoopOptions,
    /// Durable mode: the replica's data directory. Without it the replica keeps its state
    /// in memory only, and a crashed replica must not be restarted with the same identity.
    pub data_dir: Option<PathBuf>,
    /// Bind the socket here instead of the replica's configured address. The engine and
    /// the peers keep using the configured (advertised) address: something else (a proxy,
    /// a NAT, a wildcard bind of the same port) must carry datagrams between the two. The
    /// server's `addr` is then the bound address.
    pub bind: Option<SocketAddr>,
    /// Durable mode: compact the log (write a snapshot, drop older log segments) once its
    /// newest segment holds this many bytes; `None`: [`DEFAULT_LOG`]'s (64 MiB).
    pub compact_after_bytes: Option<u64>,
    /// Durable mode: where the log's syncs run; `None`: [`DEFAULT_LOG`]'s (a sync thread).
    pub sync: Option<SyncMode>,
}

/// Runs replica `id` of `setup` with application `app` on a new thread, durable if
/// `options` name a data directory (opened and replayed before this returns, so its errors
/// surface here). Every replica of a cluster must run the same application, built the same
/// way: they apply the same requests in the same order and must reach the same state.
/// Durable mode writes snapshots on a thread of their own, so the application's snapshot
/// type must be `Clone + Send` (cheap to clone: see [`fleet_engine::rsl::App::snapshot`]).
pub fn spawn<A>(setup: &RslSetup, id: usize, app: A, options: &ServeOptions) -> Result<RunningServer, ServerError>
where
    A: App + Clone + Send + 'static,
    A::Snapshot: Clone + Send + 'static,
{
    let addr = *setup.addrs.get(id).ok_or_else(|| ServerError::Config(format!("--id {id} is not a replica")))?;
    let (socket, bound) = bind_socket(options.bind.unwrap_or(addr))?;
    let name = format!("rsl-{id}");
    let setup = setup.clone();
    let mut loop_options = options.loop_options.clone();
    if loop_options.auth.is_none() {
        loop_options.auth = crate::auth::member_loop_auth(setup.auth.as_ref(), setup.auth_cluster, &setup.addrs)?;
    }
    if let Some(board) = loop_options.metrics.as_mut() {
        // Members' datagrams are protocol messages: only clients' requests are timed.
        board.members = setup.addrs.iter().map(|a| crate::net::to_endpoint(*a)).collect();
    }
    let log = DEFAULT_LOG.overridden(options.compact_after_bytes, options.sync);
    match options.data_dir.clone() {
        None => spawn_host(name, socket, bound, addr, loop_options, move |now| build(&setup, id, app, now)),
        Some(dir) => spawn_host(name, socket, bound, addr, loop_options, move |now| {
            DurableReplica::open_with(&setup, id, &dir, app, now, log).map(Box::new)
        }),
    }
}

/// Runs a learner at `own` of the epoch `setup` describes with application `app`, as
/// [`spawn`] runs a replica: it follows the epoch's log from its members and becomes a
/// member (durable if `options` name a data directory) when a membership change adds it.
pub fn spawn_learner<A>(
    setup: &RslSetup,
    own: SocketAddr,
    app: A,
    options: &ServeOptions,
) -> Result<RunningServer, ServerError>
where
    A: App + Clone + Send + 'static,
    A::Snapshot: Clone + Send + 'static,
{
    let (socket, bound) = bind_socket(options.bind.unwrap_or(own))?;
    let setup = setup.clone();
    let mut loop_options = options.loop_options.clone();
    if loop_options.auth.is_none() {
        // It seals for the members as one of them (they take a member key from a server
        // that is not a member yet); clients are clients.
        let known: Vec<SocketAddr> = setup.addrs.iter().copied().chain([own]).collect();
        loop_options.auth = crate::auth::member_loop_auth(setup.auth.as_ref(), setup.auth_cluster, &known)?;
    }
    let log = DEFAULT_LOG.overridden(options.compact_after_bytes, options.sync);
    let name = format!("rsl-learner-{}", own.port());
    match options.data_dir.clone() {
        None => spawn_host(name, socket, bound, own, loop_options, move |now| {
            super::replica::build_learner(&setup, own, app, now, false)
        }),
        Some(dir) => spawn_host(name, socket, bound, own, loop_options, move |now| {
            DurableReplica::open_learner(&setup, own, &dir, app, now, log).map(Box::new)
        }),
    }
}

/// Runs replica `id` of `setup` with the replicated map of `fleet rsl serve` (keys up to
/// `setup.max_keys`), as [`spawn`] does.
pub fn spawn_rsl_with(setup: &RslSetup, id: usize, options: &ServeOptions) -> Result<RunningServer, ServerError> {
    spawn(setup, id, ServerApp::new(setup.max_keys), options)
}

/// Runs replica `id` of `setup` (the replicated map, in memory) on a new thread.
pub fn spawn_rsl(setup: &RslSetup, id: usize, stats_every: Option<Duration>) -> Result<RunningServer, ServerError> {
    let options = ServeOptions {
        loop_options: LoopOptions { stats_every, ..LoopOptions::default() },
        data_dir: None,
        bind: None,
        compact_after_bytes: None,
        sync: None,
    };
    spawn_rsl_with(setup, id, &options)
}
