//! `fleet bench`: closed-loop load from many clients, latency histograms, JSON output and an
//! optional operation history for offline linearizability checking.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use fleet_proofs::history::{encode_hex, HistoryRecord, RecordOp, RecordStatus};
use hdrhistogram::Histogram;

use std::time::{SystemTime, UNIX_EPOCH};

use fleet_engine::kv::{Event as KvEvent, Outcome as KvOutcome, Request as KvRequest};
use fleet_engine::rsl::apps::kv::{KvOp, KvReply};
use fleet_engine::rsl::Client;
use fleet_engine::wire::Bytes;
use fleet_engine::{Endpoint, Instant, Outbox};

use crate::kv::{KvSetup, StdKvClient};

use crate::client::{CallError, DEFAULT_RETRANSMIT_MS};
use crate::config::RslSetup;
use crate::net::{to_endpoint, to_socket_addr, HeapOutbox};
use crate::server::{Clock, MAX_REPLICAS, SERVER_DATAGRAM_BYTES};

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
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct BenchResult {
    /// Operations completed successfully.
    pub ops: u64,
    /// Operations refused or timed out.
    pub errors: u64,
    /// Of the errors, how many timed out.
    pub timeouts: u64,
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
            "ops": self.ops,
            "clients": self.clients,
            "elapsed_s": self.elapsed.as_secs_f64(),
        })
        .to_string()
    }

    /// A human summary.
    pub fn summary(&self) -> String {
        format!(
            "{} ops in {:.1} s from {} clients: {:.0} ops/s; latency p50 {} us, p99 {} us, p99.9 {} us; {} errors ({} timeouts)",
            self.ops,
            self.elapsed.as_secs_f64(),
            self.clients,
            self.ops_per_s,
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.errors,
            self.timeouts
        )
    }
}

struct Worker {
    hist: Histogram<u64>,
    ops: u64,
    errors: u64,
    timeouts: u64,
    history: Vec<HistoryRecord>,
}

/// A latency histogram from 1 µs to 60 s at 3 significant digits.
#[allow(clippy::expect_used)]
fn new_hist() -> Histogram<u64> {
    // Constant, valid bounds (low >= 1, high >= 2 * low, sigfig <= 5): creation cannot fail.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid constant histogram bounds")
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Default number of event-driven load threads ([`BenchOptions::load_threads`]): each
/// drives its share of the logical clients (one UDP socket each, so one client identity
/// each) from a single `mio` poll loop, so 50 clients cost two threads, not fifty. The
/// sans-IO client does the protocol; this loop only moves bytes.
pub const DEFAULT_LOAD_THREADS: usize = 2;
/// Most datagrams read from one client socket per readiness event.
const MAX_READS_PER_EVENT: usize = 16;

/// A sans-IO client the load generator can drive: one outstanding operation at a time.
pub trait LoadClient: Send + 'static {
    /// Starts a read of `key` (`write: None`) or a write of `write` to `key`; false if the
    /// client could not submit it.
    fn start(&mut self, now: Instant, key: u64, write: Option<&[u8]>, out: &mut Outbox<'_>) -> bool;
    /// A received datagram; `Some` when it completed the outstanding operation.
    fn on_datagram(&mut self, now: Instant, from: Endpoint, bytes: &[u8], out: &mut Outbox<'_>) -> Option<OpResult>;
    /// Timers.
    fn tick(&mut self, now: Instant, out: &mut Outbox<'_>);
    /// When `tick` must next run.
    fn next_deadline(&self) -> Instant;
    /// Gives up on the outstanding operation.
    fn cancel(&mut self);
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// A read's value.
    Value(Option<Vec<u8>>),
    /// A write took effect.
    Done,
    /// The service refused it (nothing changed).
    Refused,
}

/// The RSL client driving the replicated KV app (keys as 8 big-endian bytes).
pub struct RslLoad(Box<Client<MAX_REPLICAS, SERVER_DATAGRAM_BYTES>>);

impl LoadClient for RslLoad {
    fn start(&mut self, now: Instant, key: u64, write: Option<&[u8]>, out: &mut Outbox<'_>) -> bool {
        let kb = key.to_be_bytes();
        let op = match write {
            None => KvOp::Get(Bytes(&kb)),
            Some(v) => KvOp::Put(Bytes(&kb), Bytes(v)),
        };
        let mut req = vec![0u8; write.map_or(0, <[u8]>::len) + 64];
        let Ok(len) = op.encode(&mut req) else { return false };
        self.0.submit(now, &req[..len], out).is_ok()
    }
    fn on_datagram(&mut self, now: Instant, from: Endpoint, bytes: &[u8], _out: &mut Outbox<'_>) -> Option<OpResult> {
        let done = self.0.handle(now, from, bytes)?;
        Some(match KvReply::decode(done.reply) {
            Some(KvReply::Value(v)) => OpResult::Value(v.map(|b| b.0.to_vec())),
            Some(KvReply::Done) => OpResult::Done,
            _ => OpResult::Refused,
        })
    }
    fn tick(&mut self, now: Instant, out: &mut Outbox<'_>) {
        self.0.tick(now, out);
    }
    fn next_deadline(&self) -> Instant {
        self.0.next_deadline()
    }
    fn cancel(&mut self) {
        self.0.cancel();
    }
}

/// The IronKV client.
pub struct KvLoad(Box<StdKvClient>);

impl LoadClient for KvLoad {
    fn start(&mut self, now: Instant, key: u64, write: Option<&[u8]>, out: &mut Outbox<'_>) -> bool {
        let req = match write {
            None => KvRequest::Get(key),
            Some(v) => KvRequest::Set(key, v),
        };
        self.0.submit(now, req, out).is_ok()
    }
    fn on_datagram(&mut self, now: Instant, from: Endpoint, bytes: &[u8], out: &mut Outbox<'_>) -> Option<OpResult> {
        match self.0.handle(now, from, bytes, out)? {
            KvEvent::Completed(c) => Some(match c.outcome {
                KvOutcome::Value(v) => OpResult::Value(v.map(<[u8]>::to_vec)),
                KvOutcome::Written | KvOutcome::Sharded => OpResult::Done,
                KvOutcome::Failed(_) => OpResult::Refused,
            }),
            KvEvent::Refused { .. } => None,
        }
    }
    fn tick(&mut self, now: Instant, out: &mut Outbox<'_>) {
        self.0.tick(now, out);
    }
    fn next_deadline(&self) -> Instant {
        self.0.next_deadline()
    }
    fn cancel(&mut self) {
        self.0.cancel();
    }
}

struct Logical<C> {
    client: C,
    socket: mio::net::UdpSocket,
    id: u64,
    rng: u64,
    n: u64,
    current: Option<InFlightOp>,
}

struct InFlightOp {
    key: u64,
    read: bool,
    value: Vec<u8>,
    invoke_us: u64,
    sent: StdInstant,
}

struct Shared {
    start: StdInstant,
    stop_at: StdInstant,
    done: Arc<AtomicU64>,
}

fn send_all(socket: &mio::net::UdpSocket, out: &Outbox<'_>) {
    for (dst, bytes) in out.iter() {
        // WouldBlock or an error is a lost datagram: the client retransmits.
        let _ = socket.send_to(bytes, to_socket_addr(dst));
    }
}

fn start_op<C: LoadClient>(
    l: &mut Logical<C>,
    opts: &BenchOptions,
    shared: &Shared,
    clock: &Clock,
    out: &mut HeapOutbox,
) {
    let key = opts.first_key + xorshift(&mut l.rng) % opts.keys.max(1);
    let read = (xorshift(&mut l.rng) % 100) < u64::from(opts.read_pct);
    // Values are unique per write (client, counter), so a history pins every read.
    let mut value = format!("{:08x}{:016x}", l.id, l.n).into_bytes();
    value.resize(opts.value_size.max(value.len()), b'.');
    l.n += 1;
    // The invocation instant is taken before the request can leave: once `send_to` returns
    // (or even before, since a loopback send wakes the server and this thread may be
    // descheduled right there), the service may already have executed the operation. A
    // timestamp taken after the send can be later than the operation's effect, and the
    // history would then claim a real-time order that never happened (a Get "invoked" after
    // a Set completed, that in truth was executed before it).
    let invoke_us = shared.start.elapsed().as_micros() as u64;
    let sent = StdInstant::now();
    let mut o = out.outbox();
    if l.client.start(clock.now(), key, (!read).then_some(&value[..]), &mut o) {
        send_all(&l.socket, &o);
        l.current = Some(InFlightOp { key, read, value, invoke_us, sent });
    }
}

fn finish_op<C>(w: &mut Worker, l: &mut Logical<C>, opts: &BenchOptions, shared: &Shared, reply: Option<OpResult>) {
    let Some(op) = l.current.take() else { return };
    let complete_us = shared.start.elapsed().as_micros() as u64;
    let recording = opts.history.is_some();
    let (status, result) = match reply {
        // Hex only for the history file: encoding every read is most of the load
        // generator's own CPU otherwise.
        Some(OpResult::Value(v)) => (RecordStatus::Ok, v.filter(|_| recording).map(|b| encode_hex(&b))),
        Some(OpResult::Done) => (RecordStatus::Ok, None),
        // Refused by the service: nothing changed.
        Some(OpResult::Refused) => (RecordStatus::Fail, None),
        None => (RecordStatus::Timeout, None),
    };
    match status {
        RecordStatus::Ok => {
            w.ops += 1;
            let _ = w.hist.record(op.sent.elapsed().as_micros().max(1) as u64);
        }
        RecordStatus::Timeout => {
            w.errors += 1;
            w.timeouts += 1;
        }
        RecordStatus::Fail => w.errors += 1,
    }
    shared.done.fetch_add(1, Ordering::Relaxed);
    if recording {
        w.history.push(HistoryRecord {
            client: l.id,
            op: if op.read { RecordOp::Get } else { RecordOp::Set },
            key: op.key,
            value: (!op.read).then(|| encode_hex(&op.value)),
            invoke_us: op.invoke_us,
            complete_us: (status == RecordStatus::Ok).then_some(complete_us),
            result,
            status,
        });
    }
}

fn load_thread<C: LoadClient>(
    mut clients: Vec<Logical<C>>,
    opts: BenchOptions,
    shared: Shared,
) -> std::io::Result<Worker> {
    let mut w = Worker { hist: new_hist(), ops: 0, errors: 0, timeouts: 0, history: Vec::new() };
    let mut poll = mio::Poll::new()?;
    for (i, l) in clients.iter_mut().enumerate() {
        poll.registry().register(&mut l.socket, mio::Token(i), mio::Interest::READABLE)?;
    }
    let clock = Clock::start();
    let mut out = HeapOutbox::new(64, 1 << 20);
    let mut events = mio::Events::with_capacity(1024);
    let mut buf = vec![0u8; 65536];
    for l in clients.iter_mut() {
        start_op(l, &opts, &shared, &clock, &mut out);
    }
    while StdInstant::now() < shared.stop_at {
        let now = clock.now();
        let next = clients.iter().map(|l| l.client.next_deadline()).min().unwrap_or(Instant::NEVER);
        let wait =
            Duration::from_micros(next.micros_since(now)).min(shared.stop_at - StdInstant::now().min(shared.stop_at));
        poll.poll(&mut events, Some(wait.max(Duration::from_micros(100))))?;
        for ev in events.iter() {
            let Some(l) = clients.get_mut(ev.token().0) else { continue };
            // Read until the outstanding operation completes or the socket is empty. Stopping
            // at a completion saves the `WouldBlock` read, one system call per operation: a
            // datagram left queued (a duplicate reply) is read on the next event, and there
            // is a next event, because the next operation's reply is a new arrival and Linux
            // epoll reports every arrival, even edge-triggered. Each socket is read at most
            // `MAX_READS_PER_EVENT` times per event so one chatty peer cannot starve the rest.
            for _ in 0..MAX_READS_PER_EVENT {
                match l.socket.recv_from(&mut buf) {
                    Ok((len, from)) => {
                        let mut o = out.outbox();
                        let completed = l.client.on_datagram(clock.now(), to_endpoint(from), &buf[..len], &mut o);
                        send_all(&l.socket, &o);
                        if let Some(reply) = completed {
                            finish_op(&mut w, l, &opts, &shared, Some(reply));
                            if StdInstant::now() < shared.stop_at {
                                start_op(l, &opts, &shared, &clock, &mut out);
                            }
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => break, // e.g. ICMP unreachable from a dead replica
                }
            }
        }
        let now = clock.now();
        // One clock read for the whole scan, not one per client.
        let now_std = StdInstant::now();
        for l in clients.iter_mut() {
            if l.current.as_ref().is_some_and(|op| now_std.saturating_duration_since(op.sent) >= opts.op_timeout) {
                l.client.cancel();
                finish_op(&mut w, l, &opts, &shared, None);
                start_op(l, &opts, &shared, &clock, &mut out);
            } else if l.client.next_deadline() <= now {
                let mut o = out.outbox();
                l.client.tick(now, &mut o);
                send_all(&l.socket, &o);
            }
        }
    }
    // Operations still outstanding at the end: their outcome is unknown.
    for l in clients.iter_mut() {
        if l.current.is_some() {
            finish_op(&mut w, l, &opts, &shared, None);
            w.errors -= 1; // Cut off by the end of the run, not a failure of the cluster.
            w.timeouts -= 1;
        }
    }
    Ok(w)
}

/// Runs the closed-loop benchmark against a running RSL cluster.
pub fn run_rsl(setup: &RslSetup, opts: &BenchOptions) -> Result<BenchResult, CallError> {
    let eps: Vec<_> = setup.addrs.iter().map(|a| to_endpoint(*a)).collect();
    let seed = wall_clock_us();
    let max = setup.config.params.max_datagram_bytes;
    run_load(&setup.addrs, opts, |_| {
        Client::new(&eps, seed, DEFAULT_RETRANSMIT_MS, max)
            .map(|c| RslLoad(Box::new(c)))
            .map_err(|_| CallError::TooLarge)
    })
}

/// Runs the closed-loop benchmark against a running IronKV cluster.
pub fn run_kv(setup: &KvSetup, opts: &BenchOptions) -> Result<BenchResult, CallError> {
    let eps: Vec<_> = setup.addrs.iter().map(|a| to_endpoint(*a)).collect();
    let seed = wall_clock_us();
    let params = setup.config.params;
    run_load(&setup.addrs, opts, |_| {
        StdKvClient::new(&eps, seed, params).map(|c| KvLoad(Box::new(c))).map_err(|_| CallError::TooLarge)
    })
}

fn wall_clock_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_micros() as u64)
}

fn run_load<C: LoadClient>(
    servers: &[std::net::SocketAddr],
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
    let threads = opts.load_threads.clamp(1, opts.clients.max(1));
    let mut groups: Vec<Vec<Logical<C>>> = (0..threads).map(|_| Vec::new()).collect();
    for c in 0..opts.clients {
        let socket = mio::net::UdpSocket::bind(bind).map_err(CallError::Io)?;
        let client = make(c)?;
        let rng = 0x9E37_79B9_7F4A_7C15u64 ^ (c as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407);
        let l = Logical { client, socket, id: c as u64, rng, n: 0, current: None };
        let g = c % groups.len();
        groups[g].push(l);
    }
    let start = StdInstant::now();
    let stop_at = start + opts.duration;
    let done = Arc::new(AtomicU64::new(0));
    let bar = progress_bar(opts);
    let handles: Vec<_> = groups
        .into_iter()
        .map(|g| {
            let shared = Shared { start, stop_at, done: done.clone() };
            let opts = opts.clone();
            std::thread::spawn(move || load_thread(g, opts, shared))
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
    let (mut ops, mut errors, mut timeouts) = (0, 0, 0);
    let mut history = Vec::new();
    for h in handles {
        let w = h.join().map_err(|_| CallError::BadReply)?.map_err(CallError::Io)?;
        let _ = hist.add(&w.hist);
        ops += w.ops;
        errors += w.errors;
        timeouts += w.timeouts;
        history.extend(w.history);
    }
    let elapsed = start.elapsed();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(path) = &opts.history {
        history.sort_by_key(|r| r.invoke_us);
        let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(CallError::Io)?);
        for r in &history {
            let line = serde_json::to_string(r).map_err(|e| CallError::Io(std::io::Error::other(e)))?;
            writeln!(f, "{line}").map_err(CallError::Io)?;
        }
        f.flush().map_err(CallError::Io)?;
    }
    Ok(BenchResult {
        ops,
        errors,
        timeouts,
        elapsed,
        ops_per_s: ops as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_us: hist.value_at_quantile(0.5),
        p99_us: hist.value_at_quantile(0.99),
        p999_us: hist.value_at_quantile(0.999),
        clients: opts.clients,
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
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::kv::{spawn_kv, KvSetup};
    use crate::procs::free_udp_ports;
    use fleet_engine::kv::KvConfig;

    /// The real IronKV client, but the load thread is slow right after the request is
    /// queued: it models the thread being descheduled by the `send_to` that wakes the server.
    struct SlowAfterSubmit(KvLoad, Duration);

    impl LoadClient for SlowAfterSubmit {
        fn start(&mut self, now: Instant, key: u64, write: Option<&[u8]>, out: &mut Outbox<'_>) -> bool {
            let ok = self.0.start(now, key, write, out);
            std::thread::sleep(self.1);
            ok
        }
        fn on_datagram(
            &mut self,
            now: Instant,
            from: Endpoint,
            bytes: &[u8],
            out: &mut Outbox<'_>,
        ) -> Option<OpResult> {
            self.0.on_datagram(now, from, bytes, out)
        }
        fn tick(&mut self, now: Instant, out: &mut Outbox<'_>) {
            self.0.tick(now, out);
        }
        fn next_deadline(&self) -> Instant {
            self.0.next_deadline()
        }
        fn cancel(&mut self) {
            self.0.cancel();
        }
    }

    /// Regression: the bench took an operation's invocation time after sending its request,
    /// so a load thread descheduled after the send recorded an invocation later than the
    /// operation's effect, and the history checker reported linearizability violations (a
    /// Get returning a value "before" its Set was invoked, or a stale value after a Set that
    /// "completed before" the Get) that the cluster never committed.
    #[test]
    fn invocation_time_precedes_the_request_leaving() {
        let port = free_udp_ports(1).unwrap()[0];
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let config = KvConfig::new(&[to_endpoint(addr)]).unwrap();
        let setup = KvSetup { addrs: vec![addr], config, max_keys: 1024 };
        let server = spawn_kv(&setup, 0, None).unwrap();
        let dir = crate::procs::scratch_dir("bench-invoke").unwrap();
        let history = dir.join("history.jsonl");
        let opts = BenchOptions {
            clients: 1,
            // Long enough to outlast the server thread's start-up and a retransmission of a
            // request sent before it listened (a loaded CI machine builds big values slowly).
            duration: Duration::from_secs(2),
            value_size: 16,
            keys: 4,
            first_key: 1,
            read_pct: 50,
            op_timeout: Duration::from_secs(3),
            history: Some(history.clone()),
            progress: false,
            load_threads: DEFAULT_LOAD_THREADS,
        };
        let eps = vec![to_endpoint(addr)];
        let pause = Duration::from_millis(5);
        let result = run_load(&setup.addrs, &opts, |_| {
            StdKvClient::new(&eps, wall_clock_us(), setup.config.params)
                .map(|c| SlowAfterSubmit(KvLoad(Box::new(c)), pause))
                .map_err(|_| CallError::TooLarge)
        })
        .unwrap();
        drop(server);
        assert!(result.ops > 5, "{}", result.summary());
        let text = std::fs::read_to_string(&history).unwrap();
        for line in text.lines() {
            let r: HistoryRecord = serde_json::from_str(line).unwrap();
            let Some(done) = r.complete_us else { continue };
            assert!(
                done - r.invoke_us >= pause.as_micros() as u64,
                "operation recorded in [{}, {done}] us but its request was queued before a {pause:?} pause",
                r.invoke_us
            );
        }
    }
}
