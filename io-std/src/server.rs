//! The std UDP event loop: one thread, one socket, one engine host.
//!
//! Receive with a read timeout set to the host's `next_deadline`, so an idle server sleeps in
//! the kernel (no busy polling); on a datagram, read the clock once and `handle`; at the
//! deadline, `tick`; after each step send the outbox. Datagrams addressed to the server
//! itself (IronRSL broadcasts include the sender) are fed straight back to `handle` instead
//! of going through the kernel.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use fleet_engine::rsl::durable::DURABLE_RECORD_OVERHEAD_BYTES;
use fleet_engine::rsl::{Replica, Step};
use fleet_engine::{Endpoint, Instant, Outbox, Stats};

use crate::app::StdKvApp;
use crate::config::RslSetup;
use crate::durable::{Wal, WalError};
use crate::net::{to_endpoint, to_socket_addr, HeapOutbox};
use crate::udp_batch::{BurstIo, Syscalls};

/// Most replicas a std cluster may have.
pub const MAX_REPLICAS: usize = 16;
/// Log-window capacity of a std replica (`max_log_length` may be up to this).
pub const SERVER_WINDOW: usize = 16;
/// Datagram capacity of a std replica (`max_datagram_bytes` may be up to this).
pub const SERVER_DATAGRAM_BYTES: usize = 65507;
/// Longest key of the replicated map.
pub const KEY_BYTES: usize = 64;
/// Longest value of the replicated map.
pub const VALUE_BYTES: usize = 1024;
/// The replicated application of std RSL servers.
pub type ServerApp = StdKvApp<KEY_BYTES, VALUE_BYTES>;
/// A std RSL replica: 16 replicas, window 16, 64 KiB datagrams, a 1 MiB request queue, a
/// reply cache of 4096 clients, replies up to 1100 bytes.
pub type ServerReplica =
    Replica<ServerApp, MAX_REPLICAS, SERVER_WINDOW, SERVER_DATAGRAM_BYTES, { 1 << 20 }, 4096, 1100>;
/// Stack for a server thread: engine values are large and built in place.
pub const SERVER_STACK_BYTES: usize = 256 << 20;
/// Most self-addressed datagrams fed back in one round.
const MAX_LOOPBACK_PER_STEP: usize = 1024;

/// What the event loop needs from a host: the sans-IO contract.
pub trait Host {
    /// One received datagram.
    fn handle(&mut self, now: Instant, from: Endpoint, datagram: &[u8], out: &mut Outbox<'_>);
    /// The clock-driven actions.
    fn tick(&mut self, now: Instant, out: &mut Outbox<'_>);
    /// When `tick` must next run.
    fn next_deadline(&self) -> Instant;
    /// One human line: counters and protocol position.
    fn stats_line(&self) -> String;
    /// Makes the state changes of every step since the last call durable. Called before
    /// any datagram of those steps is sent; an in-memory host has nothing to do.
    fn commit(&mut self) -> Result<(), ServerError> {
        Ok(())
    }
}

impl Host for ServerReplica {
    fn handle(&mut self, now: Instant, from: Endpoint, datagram: &[u8], out: &mut Outbox<'_>) {
        // In-memory mode: nothing to persist before sending (see `Step`).
        let _ = Replica::handle(self, now, from, datagram, out);
    }
    fn tick(&mut self, now: Instant, out: &mut Outbox<'_>) {
        let _ = Replica::tick(self, now, out);
    }
    fn next_deadline(&self) -> Instant {
        Replica::next_deadline(self)
    }
    fn stats_line(&self) -> String {
        let s = self.status();
        format!(
            "view=({},{}) leader={} executed={} next_opn={} truncation={} queued={} {}",
            s.view.seqno,
            s.view.proposer,
            s.is_leader,
            s.ops_complete,
            s.next_opn,
            s.log_truncation_point,
            s.queued,
            stats_fields(self.stats())
        )
    }
}

/// A replica in durable mode: every durable record goes to a write-ahead log, synced
/// once per burst before the burst's datagrams are sent (see [`crate::durable`]).
pub struct DurableReplica {
    replica: Box<ServerReplica>,
    wal: Wal,
    record: Vec<u8>,
    encode_failed: bool,
}

impl DurableReplica {
    /// Opens `dir` for replica `id` of `setup` and replays its log: a first start when the
    /// directory is new or empty, a restart otherwise (the application state then comes
    /// back from the other replicas by state transfer).
    pub fn open(setup: &RslSetup, id: usize, dir: &Path, now: Instant) -> Result<DurableReplica, ServerError> {
        if id >= setup.addrs.len() {
            return Err(ServerError::Config(format!(
                "--id {id} is not a replica (the config has {})",
                setup.addrs.len()
            )));
        }
        let addrs: Vec<String> = setup.addrs.iter().map(|a| a.to_string()).collect();
        let identity = format!("replica {id} of {}: {}", addrs.len(), addrs.join(" "));
        let (wal, found) = Wal::open(dir, &identity).map_err(ServerError::Storage)?;
        if found.dropped_tail_bytes > 0 {
            tracing::warn!(
                "{}: cut off a torn log tail of {} bytes (a crash during a write; never acknowledged)",
                dir.display(),
                found.dropped_tail_bytes
            );
        }
        let app = ServerApp::new(setup.max_keys);
        let records = found.records.iter().map(Vec::as_slice);
        let replica = ServerReplica::recover(setup.config.clone(), id, app, now, records)
            .map(Box::new)
            .map_err(|e| ServerError::Recover(dir.to_path_buf(), e.to_string()))?;
        if !found.records.is_empty() {
            let s = replica.status();
            tracing::info!(
                "replica {id} restarted from {} durable records: promise ({},{}), truncation {}; \
                 fetching the application state from the other replicas",
                found.records.len(),
                s.max_bal.seqno,
                s.max_bal.proposer,
                s.log_truncation_point
            );
        }
        let record = vec![0u8; SERVER_DATAGRAM_BYTES + DURABLE_RECORD_OVERHEAD_BYTES];
        Ok(DurableReplica { replica, wal, record, encode_failed: false })
    }

    /// The replica.
    pub fn replica(&self) -> &ServerReplica {
        &self.replica
    }

    fn persist(&mut self, step: Step) {
        if !step.durable_state_changed {
            return;
        }
        match self.replica.durable_record(&step, &mut self.record) {
            Ok(r) => self.wal.append(r),
            // The buffer holds the largest record: an engine bug if ever seen. Fail stop.
            Err(_) => self.encode_failed = true,
        }
    }
}

impl Host for DurableReplica {
    fn handle(&mut self, now: Instant, from: Endpoint, datagram: &[u8], out: &mut Outbox<'_>) {
        let step = Replica::handle(self.replica.as_mut(), now, from, datagram, out);
        self.persist(step);
    }
    fn tick(&mut self, now: Instant, out: &mut Outbox<'_>) {
        let step = Replica::tick(self.replica.as_mut(), now, out);
        self.persist(step);
    }
    fn next_deadline(&self) -> Instant {
        Replica::next_deadline(self.replica.as_ref())
    }
    fn stats_line(&self) -> String {
        format!("{} fsyncs={}", Host::stats_line(self.replica.as_ref()), self.wal.syncs())
    }
    fn commit(&mut self) -> Result<(), ServerError> {
        if self.encode_failed {
            return Err(ServerError::Config("a durable record did not fit its buffer".into()));
        }
        self.wal.commit().map_err(ServerError::Storage)?;
        if self.wal.wants_compaction() {
            let n = self.replica.durable_image_len();
            let mut image = Vec::with_capacity(n);
            for i in 0..n {
                let r = self.replica.durable_image_record(i, &mut self.record);
                let r = r.map_err(|_| ServerError::Config("a durable record did not fit its buffer".into()))?;
                image.push(r.to_vec());
            }
            self.wal.compact(&image).map_err(ServerError::Storage)?;
        }
        Ok(())
    }
}

/// Counters as `key=value` fields.
pub fn stats_fields(s: &Stats) -> String {
    format!(
        "in={} out={} decode_errors={} invalid={} unknown_sender={} ignored={} outbox_full={} queue_full={}",
        s.datagrams_in,
        s.datagrams_out,
        s.decode_errors,
        s.invalid_messages,
        s.unknown_sender,
        s.ignored_messages,
        s.outbox_full,
        s.queue_full
    )
}

/// A server error a user sees.
#[derive(Debug)]
pub enum ServerError {
    /// The socket could not be bound.
    Bind(SocketAddr, std::io::Error),
    /// The engine refused the configuration.
    Config(String),
    /// The socket failed.
    Io(std::io::Error),
    /// The data directory could not be read or written.
    Storage(WalError),
    /// The data directory's log does not replay (it is named, with the first bad record).
    Recover(PathBuf, String),
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerError::Bind(a, e) => {
                let hint = match e.kind() {
                    std::io::ErrorKind::AddrNotAvailable => "is that address one of this machine's?",
                    std::io::ErrorKind::PermissionDenied => "ports below 1024 need privileges",
                    _ => "is another server using that port?",
                };
                write!(f, "cannot listen on {a}: {e} ({hint})")
            }
            ServerError::Config(m) => write!(f, "invalid configuration: {m}"),
            ServerError::Io(e) => write!(f, "network error: {e}"),
            ServerError::Storage(e) => write!(f, "storage error: {e}"),
            ServerError::Recover(d, e) => write!(f, "cannot recover from {}: {e}", d.display()),
        }
    }
}

impl std::error::Error for ServerError {}

/// A monotonic clock in engine `Instant`s, from the loop's start.
#[derive(Clone, Copy, Debug)]
pub struct Clock(StdInstant);

impl Clock {
    /// A clock starting now.
    pub fn start() -> Clock {
        Clock(StdInstant::now())
    }
    /// The current instant.
    pub fn now(&self) -> Instant {
        Instant::from_micros(self.0.elapsed().as_micros() as u64)
    }
}

/// Builds replica `id` of `setup`.
pub fn build_replica(setup: &RslSetup, id: usize, now: Instant) -> Result<Box<ServerReplica>, ServerError> {
    if id >= setup.addrs.len() {
        return Err(ServerError::Config(format!("--id {id} is not a replica (the config has {})", setup.addrs.len())));
    }
    let app = ServerApp::new(setup.max_keys);
    ServerReplica::new(setup.config.clone(), id, app, now).map(Box::new).map_err(|e| ServerError::Config(e.to_string()))
}

/// How the event loop runs.
#[derive(Clone, Debug, Default)]
pub struct LoopOptions {
    /// Log a stats line this often.
    pub stats_every: Option<Duration>,
    /// Batched or one-per-datagram system calls.
    pub syscalls: Syscalls,
}

/// Runs `host` on `socket` until `stop` is set.
///
/// Each round: `tick` if a deadline passed, receive a burst of datagrams without blocking
/// and `handle` each (then the self-addressed ones of the previous round), all into one
/// outbox; then [`Host::commit`] (a durable host syncs its log once for the whole burst)
/// and only then send the burst's datagrams. With nothing to do it sleeps in `poll` until
/// a datagram or the next deadline (at most 100 ms, to notice `stop`). A storage failure
/// stops the server: a replica that cannot persist must not speak.
pub fn run<H: Host>(
    host: &mut H,
    socket: &UdpSocket,
    clock: Clock,
    stop: &AtomicBool,
    options: &LoopOptions,
) -> Result<(), ServerError> {
    let me = socket.local_addr().map_err(ServerError::Io)?;
    run_as(host, socket, me, clock, stop, options)
}

/// Like [`run`], for a host whose own (advertised) address `me` is not the socket's local
/// address, e.g. a replica bound with `--bind` behind a proxy or NAT: datagrams the host
/// sends to `me` are fed back to it directly, and arrive from `me`.
pub fn run_as<H: Host>(
    host: &mut H,
    socket: &UdpSocket,
    me: SocketAddr,
    clock: Clock,
    stop: &AtomicBool,
    options: &LoopOptions,
) -> Result<(), ServerError> {
    let me = to_endpoint(me);
    let mut io = BurstIo::new(socket, options.syscalls).map_err(ServerError::Io)?;
    let mut store = HeapOutbox::new(OUTBOX_SLOTS, OUTBOX_BYTES);
    let mut loopback: VecDeque<Vec<u8>> = VecDeque::new();
    let mut next_stats = options.stats_every.map(|d| StdInstant::now() + d);
    while !stop.load(Ordering::Relaxed) {
        let mut out = store.outbox();
        let mut stepped = false;
        let now = clock.now();
        if host.next_deadline() <= now {
            host.tick(now, &mut out);
            stepped = true;
        }
        let received = io.recv().map_err(ServerError::Io)?;
        for i in 0..received {
            if nearly_full(&out) {
                settle(host, &mut io, &mut out, me, &mut loopback)?;
            }
            let Some((from, datagram)) = io.datagram(i) else { break };
            host.handle(clock.now(), to_endpoint(from), datagram, &mut out);
            stepped = true;
        }
        // Self-addressed datagrams of the previous round (IronRSL broadcasts include the
        // sender); those this round emits wait for the next one.
        for _ in 0..loopback.len().min(MAX_LOOPBACK_PER_STEP) {
            if nearly_full(&out) {
                settle(host, &mut io, &mut out, me, &mut loopback)?;
            }
            let Some(d) = loopback.pop_front() else { break };
            host.handle(clock.now(), me, &d, &mut out);
            stepped = true;
        }
        if stepped {
            settle(host, &mut io, &mut out, me, &mut loopback)?;
        } else if loopback.is_empty() {
            let wait_us = host.next_deadline().micros_since(clock.now()).clamp(1, 100_000);
            io.wait(Duration::from_micros(wait_us)).map_err(ServerError::Io)?;
        }
        if let Some(at) = next_stats {
            if StdInstant::now() >= at {
                tracing::info!("{} syscalls={}", host.stats_line(), io.syscalls);
                next_stats = options.stats_every.map(|d| StdInstant::now() + d);
            }
        }
    }
    Ok(())
}

/// Datagram slots and arena bytes of the loop's outbox.
const OUTBOX_SLOTS: usize = 4096;
const OUTBOX_BYTES: usize = 8 << 20;

/// True when another step might not fit: send what is queued first.
fn nearly_full(out: &Outbox<'_>) -> bool {
    out.free_slots() < OUTBOX_SLOTS / 8 || out.free_bytes() < OUTBOX_BYTES / 8
}

/// Persist, then send: the order durability needs (see `fleet_engine::rsl::durable`).
fn settle<H: Host>(
    host: &mut H,
    io: &mut BurstIo<'_>,
    out: &mut Outbox<'_>,
    me: Endpoint,
    loopback: &mut VecDeque<Vec<u8>>,
) -> Result<(), ServerError> {
    host.commit()?;
    let mut batch: Vec<(SocketAddr, &[u8])> = Vec::with_capacity(out.len());
    for (dst, bytes) in out.iter() {
        if dst == me {
            loopback.push_back(bytes.to_vec());
        } else {
            batch.push((to_socket_addr(dst), bytes));
        }
    }
    io.send(&batch);
    drop(batch);
    out.clear();
    Ok(())
}

/// A server running on its own thread.
pub struct RunningServer {
    stop: Arc<AtomicBool>,
    join: Option<std::thread::JoinHandle<Result<(), ServerError>>>,
    /// The address it listens on.
    pub addr: SocketAddr,
}

impl RunningServer {
    /// Wraps a server thread.
    pub fn new(
        stop: Arc<AtomicBool>,
        join: std::thread::JoinHandle<Result<(), ServerError>>,
        addr: SocketAddr,
    ) -> Self {
        RunningServer { stop, join: Some(join), addr }
    }

    /// Waits until the server stops by itself (it only does on an error, returned here).
    pub fn wait(mut self) -> Result<(), ServerError> {
        match self.join.take().map(|j| j.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(ServerError::Config("the server thread panicked".into())),
            None => Ok(()),
        }
    }

    /// Stops the server and waits for its thread.
    pub fn stop(mut self) -> Result<(), ServerError> {
        self.stop.store(true, Ordering::Relaxed);
        match self.join.take().map(|j| j.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(ServerError::Config("the server thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

/// How `fleet rsl serve` runs a replica.
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
}

/// Binds replica `id`'s address and runs it (in memory) on a new thread.
pub fn spawn_rsl(setup: &RslSetup, id: usize, stats_every: Option<Duration>) -> Result<RunningServer, ServerError> {
    let options = ServeOptions {
        loop_options: LoopOptions { stats_every, ..LoopOptions::default() },
        data_dir: None,
        bind: None,
    };
    spawn_rsl_with(setup, id, &options)
}

/// Binds replica `id`'s address and runs it on a new thread, durable if `options` name a
/// data directory (opened and replayed before this returns, so its errors surface here).
pub fn spawn_rsl_with(setup: &RslSetup, id: usize, options: &ServeOptions) -> Result<RunningServer, ServerError> {
    let addr = *setup.addrs.get(id).ok_or_else(|| ServerError::Config(format!("--id {id} is not a replica")))?;
    let (socket, bound) = bind_socket(options.bind.unwrap_or(addr))?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let setup = setup.clone();
    let options = options.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let join = std::thread::Builder::new()
        .name(format!("rsl-{id}"))
        .stack_size(SERVER_STACK_BYTES)
        .spawn(move || {
            let clock = Clock::start();
            match &options.data_dir {
                None => {
                    let replica = build_replica(&setup, id, clock.now());
                    let _ = ready_tx.send(replica.as_ref().err().map(|e| e.to_string()));
                    run_as(replica?.as_mut(), &socket, addr, clock, &flag, &options.loop_options)
                }
                Some(dir) => {
                    let host = DurableReplica::open(&setup, id, dir, clock.now()).map(Box::new);
                    let _ = ready_tx.send(host.as_ref().err().map(|e| e.to_string()));
                    run_as(host?.as_mut(), &socket, addr, clock, &flag, &options.loop_options)
                }
            }
        })
        .map_err(ServerError::Io)?;
    match ready_rx.recv() {
        Ok(None) => Ok(RunningServer { stop, join: Some(join), addr: bound }),
        Ok(Some(_)) | Err(_) => match join.join() {
            Ok(Err(e)) => Err(e),
            _ => Err(ServerError::Config("the server thread failed to start".into())),
        },
    }
}

/// Binds `addr`; returns the socket and its actual local address (port 0 picks one).
pub fn bind_socket(addr: SocketAddr) -> Result<(UdpSocket, SocketAddr), ServerError> {
    let socket = UdpSocket::bind(addr).map_err(|e| ServerError::Bind(addr, e))?;
    let bound = socket.local_addr().map_err(ServerError::Io)?;
    Ok((socket, bound))
}
