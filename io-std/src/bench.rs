//! `fleet bench`: closed-loop load from many clients, latency histograms, JSON output and an
//! optional operation history for offline linearizability checking.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use fleet_proofs::history::{encode_hex, HistoryRecord, RecordOp, RecordStatus};
use hdrhistogram::Histogram;

use crate::client::{CallError, RslClient};
use crate::config::RslSetup;

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

/// Runs the closed-loop RSL benchmark against a running cluster.
pub fn run_rsl(setup: &RslSetup, opts: &BenchOptions) -> Result<BenchResult, CallError> {
    let start = StdInstant::now();
    let stop_at = start + opts.duration;
    let done = Arc::new(AtomicU64::new(0));
    let bar = progress_bar(opts);
    let mut handles = Vec::new();
    for c in 0..opts.clients {
        let mut client = RslClient::connect(setup)?;
        let opts = opts.clone();
        let done = done.clone();
        handles.push(std::thread::spawn(move || {
            let mut w = Worker { hist: new_hist(), ops: 0, errors: 0, timeouts: 0, history: Vec::new() };
            let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (c as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407);
            let mut n = 0u64;
            while StdInstant::now() < stop_at {
                let key = opts.first_key + xorshift(&mut rng) % opts.keys.max(1);
                let read = (xorshift(&mut rng) % 100) < u64::from(opts.read_pct);
                let kb = key.to_be_bytes();
                // Values are unique per write (client, counter), so a history pins every read.
                let mut value = format!("{c:08x}{n:016x}").into_bytes();
                value.resize(opts.value_size.max(value.len()), b'.');
                n += 1;
                let invoke = start.elapsed();
                let t0 = StdInstant::now();
                let outcome = if read {
                    client.get(&kb, opts.op_timeout).map(|v| v.map(|v| encode_hex(&v)))
                } else {
                    client.put(&kb, &value, opts.op_timeout).map(|_| None)
                };
                let complete = start.elapsed();
                let status = match &outcome {
                    Ok(_) => {
                        w.ops += 1;
                        let _ = w.hist.record(t0.elapsed().as_micros().max(1) as u64);
                        RecordStatus::Ok
                    }
                    Err(CallError::Timeout(_)) => {
                        w.errors += 1;
                        w.timeouts += 1;
                        RecordStatus::Timeout
                    }
                    Err(_) => {
                        w.errors += 1;
                        RecordStatus::Fail
                    }
                };
                done.fetch_add(1, Ordering::Relaxed);
                if opts.history.is_some() {
                    w.history.push(HistoryRecord {
                        client: c as u64,
                        op: if read { RecordOp::Get } else { RecordOp::Set },
                        key,
                        value: (!read).then(|| encode_hex(&value)),
                        invoke_us: invoke.as_micros() as u64,
                        complete_us: (status == RecordStatus::Ok).then_some(complete.as_micros() as u64),
                        result: outcome.ok().flatten(),
                        status,
                    });
                }
            }
            w
        }));
    }
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
        let w = h.join().map_err(|_| CallError::BadReply)?;
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
