//! `vopr`: runs many seeds of the whole-cluster simulator and summarises.
//!
//! ```text
//! cargo run --release -p fleet-tests --bin vopr -- --seeds 2000 --steps 5000
//! cargo run --release -p fleet-tests --bin vopr -- --seed 1234 --steps 5000      # replay one, with a trace
//! ```
//!
//! Options: `--kind rsl|kv|members`, `--seeds N`, `--first-seed S`, `--seed S`,
//! `--steps N` (fault-phase host steps per seed), `--leases` (RSL: leader leases on every
//! seed, within their assumption), `--jobs N` (threads, default: available
//! cores), `--plant NAME` (a planted bug, to watch a checker fire), `--trace` (print the
//! trace of a replayed seed even when it passes), `--trace-len N` (steps kept, default 200), `--lin-budget N`.
//! Exit status: 0 no violation, 1 violations, 2 bad arguments.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleet_tests::faults::FaultCounts;
use fleet_tests::rsl_sim::Plant;
use fleet_tests::vopr::{run_seed, Kind, RunConfig, SeedReport};

struct Args {
    cfg: RunConfig,
    first_seed: u64,
    seeds: u64,
    single: Option<u64>,
    jobs: usize,
    trace: bool,
    trace_len: usize,
}

fn usage() -> &'static str {
    "usage: vopr [--kind rsl|kv|members] [--seeds N] [--first-seed S] [--seed S] [--steps N] [--jobs N] \
     [--plant none|forge-2b|skip-phase1|forge-reply|forge-request|drop-replies|amnesiac-restart|\
     send-before-sync|early-checkpoint|torn-snapshot|no-forward|rejoin-at-once|forget-incarnation|\
     claims-at-once|ignores-sender|unconfirmed-reads|lease-overrun|fresh-epoch|forget-epoch] [--leases] [--trace] [--trace-len N] \
     [--lin-budget N]"
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        cfg: RunConfig::default(),
        first_seed: 0,
        seeds: 100,
        single: None,
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        trace: false,
        trace_len: 200,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{v}: {e}"));
        match flag.as_str() {
            "--kind" => a.cfg.kind = Kind::parse(&value()?).ok_or("--kind is rsl, kv or members")?,
            "--seeds" => a.seeds = num(value()?)?,
            "--first-seed" => a.first_seed = num(value()?)?,
            "--seed" => a.single = Some(num(value()?)?),
            "--steps" => a.cfg.steps = num(value()?)?,
            "--jobs" => a.jobs = num(value()?)?.max(1) as usize,
            "--lin-budget" => a.cfg.lin_budget_steps = num(value()?)?,
            "--plant" => {
                let v = value()?;
                a.cfg.plant = Plant::parse(&v).ok_or(format!("unknown plant {v}"))?;
            }
            "--leases" => a.cfg.leases = true,
            "--trace" => a.trace = true,
            "--trace-len" => a.trace_len = num(value()?)? as usize,
            "-h" | "--help" => return Err(usage().into()),
            other => return Err(format!("unknown argument {other}\n{}", usage())),
        }
    }
    Ok(a)
}

fn print_failure(r: &SeedReport, cfg: &RunConfig) {
    println!("\nFAIL seed {}: {} violation(s)", r.seed, r.violations.len());
    for v in r.violations.iter().take(5) {
        println!("  {v}");
    }
    println!("  setup: {}", r.setup);
    println!("  replay: {}", cfg.replay_command(r.seed));
    println!("  last steps:\n{}", r.trace);
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(seed) = args.single {
        let mut cfg = args.cfg;
        cfg.trace_capacity = args.trace_len;
        cfg.always_trace = args.trace;
        let started = Instant::now();
        let r = run_seed(seed, &cfg);
        println!("seed {seed}: {}", r.setup);
        println!(
            "  {} fault steps + {} post-GST steps, {:.3} s simulated, {} ops invoked, {} completed, {} batches, {:?}, {:?}, {:?}",
            r.fault_steps,
            r.liveness_steps,
            r.sim_us as f64 / 1e6,
            r.ops.0,
            r.ops.1,
            r.spec_ops,
            r.net,
            r.faults,
            started.elapsed()
        );
        if let Some(u) = &r.lin_unknown {
            println!("  linearizability: unknown ({u})");
        }
        if r.violations.is_empty() {
            if args.trace {
                println!("  last steps:\n{}", r.trace);
            }
            println!("PASS");
            return ExitCode::SUCCESS;
        }
        print_failure(&r, &cfg);
        return ExitCode::from(1);
    }

    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let totals = Arc::new(Mutex::new(Totals::default()));
    let cfg = args.cfg;
    let (first, count) = (args.first_seed, args.seeds);
    let workers: Vec<_> = (0..args.jobs)
        .map(|_| {
            let (next, done, totals) = (next.clone(), done.clone(), totals.clone());
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let r = run_seed(first + i, &cfg);
                let mut t = totals.lock().unwrap_or_else(|e| e.into_inner());
                t.add(&r);
                if !r.violations.is_empty() {
                    if t.failed_seeds.len() < 3 {
                        print_failure(&r, &cfg);
                    }
                    t.failed_seeds.push(r.seed);
                }
                drop(t);
                done.fetch_add(1, Ordering::Relaxed);
            })
        })
        .collect();
    let mut last = Instant::now();
    while done.load(Ordering::Relaxed) < count && workers.iter().any(|w| !w.is_finished()) {
        std::thread::sleep(Duration::from_millis(100));
        if last.elapsed() >= Duration::from_secs(2) {
            last = Instant::now();
            let d = done.load(Ordering::Relaxed);
            let t = totals.lock().unwrap_or_else(|e| e.into_inner());
            eprintln!(
                "[{:>6.1}s] seeds {d}/{count} ({:.0}%), steps {}, violations {}",
                started.elapsed().as_secs_f64(),
                100.0 * d as f64 / count.max(1) as f64,
                t.steps,
                t.violations
            );
        }
    }
    for w in workers {
        let _ = w.join();
    }
    let t = totals.lock().unwrap_or_else(|e| e.into_inner());
    let secs = started.elapsed().as_secs_f64();
    println!("\nvopr --kind {} summary", cfg.kind.name());
    println!("  seeds          {} (first {first}), {} jobs, {secs:.1} s", count, args.jobs);
    println!(
        "  steps          {} ({} fault phase + {} post-GST), {:.0} steps/s",
        t.steps,
        t.fault_steps,
        t.steps - t.fault_steps,
        t.steps as f64 / secs.max(1e-9)
    );
    println!("  simulated time {:.1} s", t.sim_us as f64 / 1e6);
    println!(
        "  client ops     {} invoked, {} completed ({} request groups); {} batches executed, {} queries answered without one",
        t.ops_invoked, t.ops_done, t.groups, t.batches, t.queries
    );
    println!(
        "  network        {} datagrams, {} lost, {} duplicated, {} dropped by partitions",
        t.sent, t.lost, t.dup, t.partitioned
    );
    println!(
        "  faults         {} partitions, {} heals, {} crashes, {} power cuts, {} restarts, {} damaged snapshots, \
         {} wiped disks ({} rejoined), {} clock jumps, {} pauses, {} rate changes, {} planted",
        t.faults.partitions,
        t.faults.heals,
        t.faults.crashes,
        t.faults.power_cuts,
        t.faults.restarts,
        t.faults.corrupt_snapshots,
        t.faults.wipes,
        t.faults.rejoins,
        t.faults.clock_jumps,
        t.faults.pauses,
        t.faults.net_changes,
        t.faults.planted
    );
    println!(
        "  disks          {} syncs completed later (votes held meanwhile), {} held datagrams lost at crashes",
        t.faults.deferred_syncs, t.faults.held_lost
    );
    if cfg.kind == Kind::Kv {
        let c = &t.churn;
        println!(
            "  kv peer tables {} short-lived clients ({} vanished mid-request), {} evicted settled, {} given up, \
             {} closed-channel refusals, {} operations lost",
            c.ephemerals, c.vanished, c.evicted, c.abandoned, c.closed_refused, c.lost_ops
        );
        println!(
            "  kv disks       {} host crashes restarted from disk, {} unsynced inputs lost at them, \
             {} hosts restarted without state ({} operations answered key lost)",
            c.host_crashes, c.lost_inputs, c.wipes, c.lost_key_answers
        );
    }
    if t.auth.sealed > 0 {
        let a = &t.auth;
        println!(
            "  sealed         {} datagrams of key holders sealed, {} opened at their receivers",
            a.sealed, a.opened
        );
        println!(
            "  adversary      {} forgeries: {} delivered and refused, {} accepted, {} dropped by partitions or crashes",
            a.forged,
            a.forged_refused,
            a.forged_accepted,
            a.forged - a.forged_refused - a.forged_accepted
        );
    }
    println!("  linearizability unknown (budget) on {} seeds", t.lin_unknown);
    println!("  violations     {} in {} seeds", t.violations, t.failed_seeds.len());
    if !t.failed_seeds.is_empty() {
        println!("  failing seeds  {:?}", &t.failed_seeds[..t.failed_seeds.len().min(20)]);
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

#[derive(Default)]
struct Totals {
    steps: u64,
    fault_steps: u64,
    sim_us: u64,
    ops_invoked: u64,
    ops_done: u64,
    batches: u64,
    queries: u64,
    groups: u64,
    sent: u64,
    lost: u64,
    dup: u64,
    partitioned: u64,
    faults: FaultCounts,
    lin_unknown: u64,
    violations: u64,
    failed_seeds: Vec<u64>,
    churn: fleet_tests::vopr::ChurnCounts,
    auth: fleet_tests::net::AuthCounts,
}

impl Totals {
    fn add(&mut self, r: &SeedReport) {
        self.steps += r.fault_steps + r.liveness_steps;
        self.fault_steps += r.fault_steps;
        self.sim_us += r.sim_us;
        self.ops_invoked += r.ops.0 as u64;
        self.ops_done += r.ops.1 as u64;
        self.batches += r.spec_ops;
        self.queries += r.queries;
        self.groups += r.groups;
        self.sent += r.net.sent;
        self.lost += r.net.lost;
        self.dup += r.net.duplicated;
        self.partitioned += r.net.partitioned;
        self.faults.add(&r.faults);
        self.lin_unknown += u64::from(r.lin_unknown.is_some());
        self.violations += r.violations.len() as u64;
        self.churn.add(&r.churn);
        self.auth.sealed += r.auth.sealed;
        self.auth.opened += r.auth.opened;
        self.auth.forged += r.auth.forged;
        self.auth.forged_refused += r.auth.forged_refused;
        self.auth.forged_accepted += r.auth.forged_accepted;
    }
}
