//! The std UDP event loop: one thread, one socket, one engine host.
//!
//! Receive with a read timeout set to the host's `next_deadline`, so an idle server sleeps in
//! the kernel (no busy polling); on a datagram, read the clock once and `handle`; at the
//! deadline, `tick`; after each step send the outbox. Datagrams addressed to the server
//! itself (IronRSL broadcasts include the sender) are fed straight back to `handle` instead
//! of going through the kernel.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use fleet_engine::rsl::Replica;
use fleet_engine::{Endpoint, Instant, Outbox, Stats};

use crate::app::StdKvApp;
use crate::config::RslSetup;
use crate::net::{to_endpoint, to_socket_addr, HeapOutbox};

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
/// Most self-addressed datagrams fed back in one step (a broadcast has at most one).
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

/// Runs `host` on `socket` until `stop` is set. `stats_every` logs a stats line periodically.
pub fn run<H: Host>(
    host: &mut H,
    socket: &UdpSocket,
    clock: Clock,
    stop: &AtomicBool,
    stats_every: Option<Duration>,
) -> Result<(), ServerError> {
    let me = socket.local_addr().map_err(ServerError::Io)?;
    run_as(host, socket, me, clock, stop, stats_every)
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
    stats_every: Option<Duration>,
) -> Result<(), ServerError> {
    let me = to_endpoint(me);
    let mut store = HeapOutbox::new(4096, 8 << 20);
    let mut buf = vec![0u8; 65536];
    let mut loopback: VecDeque<Vec<u8>> = VecDeque::new();
    let mut next_stats = stats_every.map(|d| StdInstant::now() + d);
    while !stop.load(Ordering::Relaxed) {
        let now = clock.now();
        let deadline = host.next_deadline();
        if deadline <= now {
            let mut out = store.outbox();
            host.tick(now, &mut out);
            flush(socket, me, &out, &mut loopback);
        } else {
            // Sleep in the kernel until a datagram or the deadline (at most 100 ms, to notice `stop`).
            let wait_us = deadline.micros_since(now).clamp(1, 100_000);
            socket.set_read_timeout(Some(Duration::from_micros(wait_us))).map_err(ServerError::Io)?;
            match socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let now = clock.now();
                    let mut out = store.outbox();
                    host.handle(now, to_endpoint(from), &buf[..n], &mut out);
                    flush(socket, me, &out, &mut loopback);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                // ICMP port-unreachable from a dead peer surfaces here on Linux: not our error.
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(ServerError::Io(e)),
            }
        }
        for _ in 0..MAX_LOOPBACK_PER_STEP {
            let Some(d) = loopback.pop_front() else { break };
            let now = clock.now();
            let mut out = store.outbox();
            host.handle(now, me, &d, &mut out);
            flush(socket, me, &out, &mut loopback);
        }
        if let Some(at) = next_stats {
            if StdInstant::now() >= at {
                tracing::info!("{}", host.stats_line());
                next_stats = stats_every.map(|d| StdInstant::now() + d);
            }
        }
    }
    Ok(())
}

fn flush(socket: &UdpSocket, me: Endpoint, out: &Outbox<'_>, loopback: &mut VecDeque<Vec<u8>>) {
    for (dst, bytes) in out.iter() {
        if dst == me {
            loopback.push_back(bytes.to_vec());
        } else if let Err(e) = socket.send_to(bytes, to_socket_addr(dst)) {
            // UDP is lossy by contract: a failed send is a lost datagram, which the protocol
            // recovers from. Log it for the operator.
            tracing::debug!("send to {dst} failed: {e}");
        }
    }
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

/// Binds replica `id`'s address and runs it on a new thread.
pub fn spawn_rsl(setup: &RslSetup, id: usize, stats_every: Option<Duration>) -> Result<RunningServer, ServerError> {
    spawn_rsl_at(setup, id, None, stats_every)
}

/// Like [`spawn_rsl`], but the socket binds `bind` (when given) instead of the replica's
/// configured address. The engine and the peers keep using the configured (advertised)
/// address: something else (a proxy, a NAT, a wildcard bind of the same port) must carry
/// datagrams between the two. The returned server's `addr` is the bound address.
pub fn spawn_rsl_at(
    setup: &RslSetup,
    id: usize,
    bind: Option<SocketAddr>,
    stats_every: Option<Duration>,
) -> Result<RunningServer, ServerError> {
    let addr = *setup.addrs.get(id).ok_or_else(|| ServerError::Config(format!("--id {id} is not a replica")))?;
    let (socket, bound) = bind_socket(bind.unwrap_or(addr))?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let setup = setup.clone();
    let join = std::thread::Builder::new()
        .name(format!("rsl-{id}"))
        .stack_size(SERVER_STACK_BYTES)
        .spawn(move || {
            let clock = Clock::start();
            let mut replica = build_replica(&setup, id, clock.now())?;
            run_as(replica.as_mut(), &socket, addr, clock, &flag, stats_every)
        })
        .map_err(ServerError::Io)?;
    Ok(RunningServer { stop, join: Some(join), addr: bound })
}

/// Binds `addr`; returns the socket and its actual local address (port 0 picks one).
pub fn bind_socket(addr: SocketAddr) -> Result<(UdpSocket, SocketAddr), ServerError> {
    let socket = UdpSocket::bind(addr).map_err(|e| ServerError::Bind(addr, e))?;
    let bound = socket.local_addr().map_err(ServerError::Io)?;
    Ok((socket, bound))
}
