//! `fleet bench`: closed-loop load from many clients, latency histograms, JSON output and an
//! optional operation history for offline linearizability checking.
//!
//! - [`options`]: what to run ([`BenchOptions`]) and what was measured ([`BenchResult`]);
//! - [`load_client`]: the RSL and KV clients behind one [`LoadClient`] trait;
//! - [`worker`]: one load thread's poll loop;
//! - [`shared_socket`]: one socket for a load thread's clients on loopback;
//! - [`rounds`]: a sweep repeated, summarised per client count by its median.

pub mod load_client;
pub mod options;
pub mod rounds;
pub mod shared_socket;
pub mod worker;

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant, SystemTime, UNIX_EPOCH};

use fleet_engine::rsl::Client;
use fleet_io_std::kv::StdKvClient;
use fleet_io_std::net::to_endpoint;
use fleet_io_std::rsl::DEFAULT_RETRANSMIT_MS;
use fleet_io_std::{CallError, KvSetup, RslSetup};

pub use load_client::{KvLoad, LoadClient, OpResult, PlannedOp, RslLoad};
pub use options::{
    default_rsl_load_threads, rsl_load_threads_for, shares_socket, BenchOptions, BenchResult,
    CLIENTS_PER_RSL_LOAD_THREAD, CLIENTS_PER_SHARED_RSL_LOAD_THREAD, DEFAULT_KV_LOAD_THREADS,
};
use shared_socket::SharedSocket;
use worker::{load_thread, new_hist, Logical, Port, Shared};

/// Runs the closed-loop benchmark against a running RSL cluster.
pub fn run_rsl(setup: &RslSetup, opts: &BenchOptions) -> Result<BenchResult, CallError> {
    let eps: Vec<_> = setup.addrs.iter().map(|a| to_endpoint(*a)).collect();
    let seed = wall_clock_us();
    let max = setup.config.params.max_datagram_bytes;
    let max_request = setup.config.max_batch_bytes().saturating_sub(fleet_engine::rsl::replica::ENTRY_OVERHEAD_BYTES);
    let auth = setup.auth.as_ref().map(|f| (f, setup.auth_cluster));
    run_load(&setup.addrs, auth, opts, |_| {
        Client::new(&eps, seed, DEFAULT_RETRANSMIT_MS, max)
            .map(|c| RslLoad::new(Box::new(c), max_request, opts.pipeline))
            .map_err(|_| CallError::TooLarge)
    })
}

/// Runs the closed-loop benchmark against a running IronKV cluster.
pub fn run_kv(setup: &KvSetup, opts: &BenchOptions) -> Result<BenchResult, CallError> {
    let eps: Vec<_> = setup.addrs.iter().map(|a| to_endpoint(*a)).collect();
    let seed = wall_clock_us();
    let params = setup.config.params;
    let auth = setup.auth.as_ref().map(|f| (f, setup.config.identity()));
    run_load(&setup.addrs, auth, opts, |_| {
        StdKvClient::new(&eps, seed, params).map(KvLoad::new).map_err(|_| CallError::TooLarge)
    })
}

fn wall_clock_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_micros() as u64)
}

fn run_load<C: LoadClient>(
    servers: &[std::net::SocketAddr],
    auth: Option<(&fleet_io_std::auth::AuthFiles, u32)>,
    opts: &BenchOptions,
    mut make: impl FnMut(usize) -> Result<C, CallError>,
) -> Result<BenchResult, CallError> {
    let bind: std::net::SocketAddr = match servers.first() {
        Some(std::net::SocketAddr::V6(_)) => "[::]:0",
        Some(a) if a.ip().is_loopback() => "127.0.0.1:0",
        _ => "0.0.0.0:0",
    }
    .parse()
    .map_err(|_| CallError::BadReply)?;
    // A write that does not fit one request would never complete: refuse the run instead
    // of reporting a handful of operations and no errors.
    let mut probe = make(0)?;
    let mut scratch = fleet_io_std::net::HeapOutbox::new(4, 1 << 20);
    let value = vec![b'.'; opts.value_size];
    let probe_op = load_client::PlannedOp { key: opts.first_key, write: Some(&value) };
    if probe.start(fleet_engine::Instant::ZERO, &[probe_op], &mut scratch.outbox()) == 0 {
        return Err(CallError::TooLarge);
    }
    let threads = opts.load_threads.clamp(1, opts.clients.max(1));
    let mut groups: Vec<Vec<Logical<C>>> = (0..threads).map(|_| Vec::new()).collect();
    // One socket per load thread for all its clients, where the servers allow it.
    let share = shares_socket(servers, opts.clients, opts.share_socket);
    let mut sockets: Vec<Option<(std::net::UdpSocket, u16)>> = (0..threads)
        .map(|_| share.then(|| shared_socket::bind().and_then(|s| s.local_addr().map(|a| (s, a.port())))).transpose())
        .collect::<Result<_, _>>()
        .map_err(CallError::Io)?;
    for c in 0..opts.clients {
        let g = c % groups.len();
        let client = make(c)?;
        // The client's port, and its endpoint where a seal must name it.
        let (port, me) = match &sockets[g] {
            Some((_, port)) => {
                let index = groups[g].len();
                let endpoint = shared_socket::client_endpoint(*port, index);
                (Port::Shared { addr: shared_socket::client_addr(index) }, Some(endpoint))
            }
            None => {
                let (socket, me) = match auth {
                    None => (mio::net::UdpSocket::bind(bind).map_err(CallError::Io)?, None),
                    Some(_) => {
                        // A sealed datagram binds its sender's address: bind a concrete one.
                        let socket = fleet_io_std::auth::client_socket(servers).map_err(CallError::Io)?;
                        socket.set_nonblocking(true).map_err(CallError::Io)?;
                        let me = socket.local_addr().map_err(CallError::Io)?;
                        (mio::net::UdpSocket::from_std(socket), Some(me))
                    }
                };
                let link = worker::Link::new(opts.connect && client.answered_by_destination());
                (Port::Own { socket, link }, me)
            }
        };
        let seal = match (auth, me) {
            (Some((files, cluster)), Some(me)) => {
                Some(fleet_io_std::auth::ClientSeal::new(files, cluster, me).map_err(CallError::Keys)?)
            }
            _ => None,
        };
        let rng = 0x9E37_79B9_7F4A_7C15u64 ^ (c as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407);
        let l = Logical {
            client,
            port,
            seal,
            id: c as u64,
            rng,
            n: 0,
            filled: 0,
            op_deadline: fleet_engine::Instant::NEVER,
            current: Vec::new(),
            finished: Vec::new(),
            results: Vec::new(),
            carried: Vec::new(),
            spare_values: Vec::new(),
        };
        groups[g].push(l);
    }
    let start = StdInstant::now();
    let stop_at = start + opts.duration;
    let done = Arc::new(AtomicU64::new(0));
    let bar = progress_bar(opts);
    let handles: Vec<_> = groups
        .into_iter()
        .zip(sockets.drain(..))
        .map(|(g, socket)| {
            let shared = Shared { start, stop_at, done: done.clone() };
            let opts = opts.clone();
            std::thread::spawn(move || load_thread(g, socket.map(|(s, _)| SharedSocket::new(s)), opts, shared))
        })
        .collect();
    if let Some(bar) = &bar {
        while StdInstant::now() < stop_at {
            std::thread::sleep(Duration::from_millis(100));
            bar.set_position(start.elapsed().as_millis() as u64);
            bar.set_message(format!("{} ops", done.load(Ordering::Relaxed)));
        }
    }
    let mut hist = new_hist();
    let (mut ops, mut errors, mut timeouts, mut refused, mut lost) = (0, 0, 0, 0, 0);
    let mut history = Vec::new();
    for h in handles {
        let w = h.join().map_err(|_| CallError::BadReply)?.map_err(CallError::Io)?;
        let _ = hist.add(&w.hist);
        ops += w.ops;
        errors += w.errors;
        timeouts += w.timeouts;
        refused += w.refused;
        lost += w.lost;
        history.extend(w.history);
    }
    let elapsed = start.elapsed();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(path) = &opts.history {
        history.sort_by_key(|r| r.invoke_us);
        let named = |e: std::io::Error| {
            CallError::Io(std::io::Error::new(e.kind(), format!("writing the history to {}: {e}", path.display())))
        };
        let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(named)?);
        for r in &history {
            let line = serde_json::to_string(r).map_err(|e| CallError::Io(std::io::Error::other(e)))?;
            writeln!(f, "{line}").map_err(named)?;
        }
        f.flush().map_err(named)?;
    }
    Ok(BenchResult {
        ops,
        errors,
        timeouts,
        refused,
        lost,
        elapsed,
        ops_per_s: ops as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_us: hist.value_at_quantile(0.5),
        p99_us: hist.value_at_quantile(0.99),
        p999_us: hist.value_at_quantile(0.999),
        clients: opts.clients,
        load_threads: opts.load_threads,
    })
}

fn progress_bar(opts: &BenchOptions) -> Option<indicatif::ProgressBar> {
    if !opts.progress {
        return None;
    }
    let bar = indicatif::ProgressBar::new(opts.duration.as_millis() as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}") {
        bar.set_style(style);
    }
    Some(bar)
}

#[cfg(test)]
mod tests;
