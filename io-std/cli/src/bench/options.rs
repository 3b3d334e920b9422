//! What a benchmark run is asked to do, and what it measured.

use std::path::PathBuf;
use std::time::Duration;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Concurrent closed-loop clients (one thread each).
    pub clients: usize,
    /// How long to run.
    pub duration: Duration,
    /// Bytes per written value.
    pub value_size: usize,
    /// Distinct keys (u64, sent as 8 big-endian bytes): `first_key .. first_key + keys`.
    pub keys: u64,
    /// The lowest key used. A history is checked against an empty map, so runs against a
    /// cluster that already holds data should use keys nobody wrote before.
    pub first_key: u64,
    /// Percentage of operations that are reads.
    pub read_pct: u32,
    /// Fill instead: write every key `first_key .. first_key + keys` once (client `c` takes
    /// keys `c, c + clients, ...`; a key whose write failed is tried again), no reads, and
    /// stop when all are written (or at `duration`).
    pub fill: bool,
    /// Give up on one operation after this long (recorded as a timeout).
    pub op_timeout: Duration,
    /// Write every operation as a JSON line here.
    pub history: Option<PathBuf>,
    /// Show a progress bar.
    pub progress: bool,
    /// Load-generator threads the clients are spread over (at least 1). Which count is
    /// fastest depends on the machine and the service: on 2 CPUs, 1 thread leaves a CPU to a
    /// single busy server (KV), 2 threads suit a 3-replica RSL cluster.
    pub load_threads: usize,
    /// Operations per request (1: one at a time). Above 1, each RSL client keeps a pipelined
    /// session: up to this many operations packed into one request (a group, executed in
    /// order, each exactly once), as `redis-benchmark -P` does. Not used by KV clients.
    pub pipeline: usize,
    /// Connect each client's socket to the server it sends to, where the service answers
    /// from there (KV; not RSL, whose leader answers requests sent to followers). The kernel
    /// then skips a route lookup per datagram: 13 % less load-generator CPU per KV
    /// operation on the 2-CPU machine (docs/performance.md, session 42). Off for servers
    /// that answer from another address than the one they are sent to (behind a NAT or
    /// proxy, `--bind` to another address): their answers would be dropped.
    pub connect: bool,
    /// Give each load thread one socket for all its clients, each client sending from an
    /// address of its own in 127.64.0.0/10 ([`super::shared_socket`]), when every server is
    /// at an IPv4 loopback address on Linux; a socket per client otherwise. The servers see
    /// the same endpoints per client either way; the load generator saves a system call and
    /// a readiness event per operation and reads replies in bursts.
    pub share_socket: bool,
}

impl BenchOptions {
    /// A recorded load for tests: 8 clients on two load threads over keys `2^32 .. 2^32 +
    /// 32`, half reads, 128-byte values, a 3 s operation timeout, every operation written to
    /// `history`, for `duration`. Tests change what they need with struct update syntax.
    pub fn recorded(history: &std::path::Path, duration: Duration) -> BenchOptions {
        BenchOptions {
            clients: 8,
            duration,
            value_size: 128,
            keys: 32,
            first_key: 1 << 32,
            read_pct: 50,
            fill: false,
            op_timeout: Duration::from_secs(3),
            history: Some(history.to_path_buf()),
            progress: false,
            load_threads: 2,
            pipeline: 1,
            connect: true,
            share_socket: true,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct BenchResult {
    /// Operations completed successfully.
    pub ops: u64,
    /// Operations that did not complete successfully: refused, timed out, or lost.
    pub errors: u64,
    /// Of the errors, how many timed out with no refusal heard.
    pub timeouts: u64,
    /// Of the errors, how many the service kept refusing (back-pressure such as a full
    /// client table) until they timed out.
    pub refused: u64,
    /// Of the errors, how many the service gave up on (outcome unknown).
    pub lost: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Completed operations per second.
    pub ops_per_s: f64,
    /// Median latency, µs.
    pub p50_us: u64,
    /// 99th percentile latency, µs.
    pub p99_us: u64,
    /// 99.9th percentile latency, µs.
    pub p999_us: u64,
    /// Clients used.
    pub clients: usize,
    /// Load-generator threads they ran on.
    pub load_threads: usize,
}

impl BenchResult {
    /// One JSON line with the headline figures.
    pub fn json(&self) -> String {
        serde_json::json!({
            "ops_per_s": (self.ops_per_s * 10.0).round() / 10.0,
            "p50_us": self.p50_us,
            "p99_us": self.p99_us,
            "p999_us": self.p999_us,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "refused": self.refused,
            "lost": self.lost,
            "ops": self.ops,
            "clients": self.clients,
            "load_threads": self.load_threads,
            "elapsed_s": self.elapsed.as_secs_f64(),
        })
        .to_string()
    }

    /// A human summary.
    pub fn summary(&self) -> String {
        format!(
            "{} ops in {:.1} s from {} clients on {} load threads: {:.0} ops/s; latency p50 {} us, p99 {} us, p99.9 {} us; {} errors ({} timeouts, {} refused, {} lost)",
            self.ops,
            self.elapsed.as_secs_f64(),
            self.clients,
            self.load_threads,
            self.ops_per_s,
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.errors,
            self.timeouts,
            self.refused,
            self.lost
        )
    }
}

/// Clients one event-driven load thread drives against an RSL cluster before a second
/// thread pays, when each client has a socket of its own: each thread runs its share of the
/// logical clients from a single `mio` poll loop. On the 2-CPU machine (2026-12-07,
/// `docs/performance.md`), one thread was faster up to 128 clients (134k against 108k ops/s
/// at 50), the two were even at 256, and two were faster from 512 on.
pub const CLIENTS_PER_RSL_LOAD_THREAD: usize = 256;

/// The same when a load thread's clients share one socket ([`BenchOptions::share_socket`]):
/// a thread then costs so much less per operation that on the 2-CPU machine one thread was
/// the faster up to 2,048 clients (session 49, `docs/performance.md`: at 1,024 clients
/// 238-263k ops/s against 224-246k with two; at 2,048 241-246k against 210-231k).
pub const CLIENTS_PER_SHARED_RSL_LOAD_THREAD: usize = 2048;

/// The load threads `fleet bench rsl` runs for `clients` without `--threads`:
/// [`rsl_load_threads_for`] on this machine's CPUs.
pub fn default_rsl_load_threads(clients: usize, shared_socket: bool) -> usize {
    rsl_load_threads_for(clients, std::thread::available_parallelism().map_or(1, |n| n.get()), shared_socket)
}

/// The load threads for `clients` on a machine with `cpus` CPUs: one per
/// [`CLIENTS_PER_RSL_LOAD_THREAD`] clients or part of them
/// ([`CLIENTS_PER_SHARED_RSL_LOAD_THREAD`] when the clients share sockets), at most one
/// per CPU.
pub fn rsl_load_threads_for(clients: usize, cpus: usize, shared_socket: bool) -> usize {
    let per_thread = if shared_socket { CLIENTS_PER_SHARED_RSL_LOAD_THREAD } else { CLIENTS_PER_RSL_LOAD_THREAD };
    clients.div_ceil(per_thread).clamp(1, cpus.max(1))
}

/// Whether a run of `clients` clients against `servers` gives each load thread one shared
/// socket, when asked to ([`BenchOptions::share_socket`]): Linux, every server at an IPv4
/// loopback address, and more than one client. A client alone keeps its own socket: it has
/// no replies to read in bursts, and its own socket measured faster (26.7-37.2k ops/s shared
/// against 32.0-39.0k, session 49).
pub fn shares_socket(servers: &[std::net::SocketAddr], clients: usize, asked: bool) -> bool {
    asked && clients > 1 && clients <= super::shared_socket::MAX_CLIENTS && super::shared_socket::usable_for(servers)
}

/// Default number of load threads against a KV cluster: one. A KV operation costs the hosts
/// far less than an RSL one, so a second load thread only competes with them for the CPUs:
/// on the 2-CPU CI machine at 50 clients, one thread gave 241-266k ops/s with p99 260-391 us,
/// two 237-245k with p99 4.1 ms (2026-12-05, `docs/performance.md`).
pub const DEFAULT_KV_LOAD_THREADS: usize = 1;
