//! `fleet demo`: the main job in one command. Starts a local 3-replica RSL cluster as child
//! processes, runs a workload, kills the leader, shows the view change and recovery; starts a
//! 3-host IronKV cluster and shards a hot range while clients run; checks every recorded
//! history for linearizability, prints a summary, and stops everything it started.

use std::path::Path;
use std::time::{Duration, Instant as StdInstant};

use fleet_proofs::history::{check_kv_history_file, HistoryRecord, RecordStatus, Verdict};
use fleet_proofs::Budget;

use crate::bench::{run_kv, run_rsl, BenchOptions, DEFAULT_LOAD_THREADS};
use crate::procs::{free_udp_ports, scratch_dir, Children};
use fleet_io_std::config::{ClusterFile, KvSection, RslSection};
use fleet_io_std::kv::KvBlockingClient;
use fleet_io_std::rsl::{RslClient, DEFAULT_RETRANSMIT_MS};

/// Runs the demo; returns a one-paragraph error a user can act on.
pub fn run(exe: &Path) -> Result<(), String> {
    let dir = scratch_dir("demo").map_err(|e| format!("cannot create a scratch directory: {e}"))?;
    let all = free_udp_ports(6).map_err(|e| format!("cannot find free UDP ports on 127.0.0.1: {e}"))?;
    let (ports, kv_ports) = all.split_at(3);
    let file = ClusterFile {
        rsl: Some(RslSection {
            replicas: ports.iter().map(|p| format!("127.0.0.1:{p}")).collect(),
            heartbeat_period_ms: None,
            baseline_view_timeout_ms: Some(500),
            max_view_timeout_ms: None,
            max_batch_size: None,
            max_batch_delay_ms: None,
            max_log_length: None,
            max_datagram_bytes: Some(8192),
            retransmit_period_ms: None,
            max_keys: None,
        }),
        kv: Some(KvSection {
            hosts: kv_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect(),
            max_value_bytes: None,
            max_datagram_bytes: None,
            max_keys: None,
        }),
    };
    let config_path = dir.join("cluster.toml");
    std::fs::write(&config_path, file.to_toml()).map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
    let setup = file.rsl().map_err(|e| e.to_string())?;
    println!("fleet demo: 3 RSL replicas on 127.0.0.1 ports {ports:?} (config and logs in {})", dir.display());

    let mut children = Children::default();
    let config_arg = config_path.to_string_lossy().to_string();
    for id in 0..3 {
        let log = dir.join(format!("rsl-{id}.log"));
        let id_arg = id.to_string();
        children
            .spawn(exe, &["rsl", "serve", "--config", &config_arg, "--id", &id_arg, "-v"], &log)
            .map_err(|e| format!("cannot start replica {id}: {e}"))?;
    }

    // Wait for the cluster to serve.
    let mut client = RslClient::connect(&setup).map_err(|e| e.to_string())?;
    let t0 = StdInstant::now();
    client.put(b"hello", b"fleet", Duration::from_secs(10)).map_err(|e| format!("the cluster did not come up: {e}"))?;
    println!("cluster serving after {} ms", t0.elapsed().as_millis());

    // Phase 1: steady load.
    let history_ok = dir.join("history-steady.jsonl");
    let opts = BenchOptions {
        clients: 16,
        duration: Duration::from_secs(3),
        value_size: 128,
        keys: 64,
        first_key: 0,
        read_pct: 50,
        op_timeout: Duration::from_secs(2),
        history: Some(history_ok.clone()),
        progress: true,
        load_threads: DEFAULT_LOAD_THREADS,
    };
    println!("phase 1: 16 clients, 128-byte values, 50% reads, 3 s");
    let steady = run_rsl(&setup, &opts).map_err(|e| e.to_string())?;
    println!("  {}", steady.summary());

    // Phase 2: kill the leader under load. Replica 0 leads the first view (1, 0).
    println!("phase 2: the same load; replica 0 (the leader of the first view) is killed with SIGKILL after 1 s");
    let history_kill = dir.join("history-failover.jsonl");
    let opts =
        BenchOptions { duration: Duration::from_secs(5), first_key: 1000, history: Some(history_kill.clone()), ..opts };
    let start = StdInstant::now();
    let (killed_at_us, failover) = std::thread::scope(|s| {
        let bench = s.spawn(|| run_rsl(&setup, &opts));
        std::thread::sleep(Duration::from_secs(1));
        let killed_at = start.elapsed().as_micros() as u64;
        children.kill(0);
        (killed_at, bench.join())
    });
    let failover = failover.map_err(|_| "the benchmark thread failed".to_string())?.map_err(|e| e.to_string())?;
    println!("  {}", failover.summary());
    if let Some(gap) = recovery_us(&history_kill, killed_at_us) {
        println!(
            "  service resumed {} ms after the kill: clients retry every replica every {retry} ms; the followers \
             suspect the leader once a retried request has waited a view timeout (500 ms), start the next view, \
             and its leader proposes the next retry (about {retry} + 500 + {retry} ms)",
            gap / 1000,
            retry = DEFAULT_RETRANSMIT_MS
        );
    }

    // Phase 3: IronKV: three hosts, load, and a shard of a hot range while clients run.
    let kv = file.kv().map_err(|e| e.to_string())?;
    println!(
        "phase 3: 3 IronKV hosts on ports {kv_ports:?}; 16 clients for 3 s; keys [2000, 2032) move to host 1 after 1 s"
    );
    for id in 0..3 {
        let log = dir.join(format!("kv-{id}.log"));
        let id_arg = id.to_string();
        children
            .spawn(exe, &["kv", "serve", "--config", &config_arg, "--id", &id_arg, "-v"], &log)
            .map_err(|e| format!("cannot start KV host {id}: {e}"))?;
    }
    let mut admin = KvBlockingClient::connect(&kv).map_err(|e| e.to_string())?;
    admin.set(1, b"hello", Duration::from_secs(10)).map_err(|e| format!("the KV cluster did not come up: {e}"))?;
    let history_kv = dir.join("history-kv.jsonl");
    let kv_opts = BenchOptions {
        duration: Duration::from_secs(3),
        keys: 64,
        first_key: 2000,
        history: Some(history_kv.clone()),
        ..opts.clone()
    };
    let (sharded, kv_run) = std::thread::scope(|s| {
        let bench = s.spawn(|| run_kv(&kv, &kv_opts));
        std::thread::sleep(Duration::from_secs(1));
        let t = StdInstant::now();
        let sharded = admin.shard(2000, Some(2032), 1, 0, Duration::from_secs(5)).map(|_| t.elapsed());
        (sharded, bench.join())
    });
    let kv_run = kv_run.map_err(|_| "the benchmark thread failed".to_string())?.map_err(|e| e.to_string())?;
    println!("  {}", kv_run.summary());
    match sharded {
        Ok(t) => println!("  shard of [2000, 2032) to host 1 acknowledged in {} ms", t.as_millis()),
        Err(e) => return Err(format!("the shard failed: {e}")),
    }

    // Phase 4: check every history.
    for path in [&history_ok, &history_kill, &history_kv] {
        let report = check_kv_history_file(path, &Budget::default()).map_err(|e| e.to_string())?;
        let verdict = match report.verdict() {
            Verdict::Linearizable => "linearizable",
            Verdict::NotLinearizable => "NOT linearizable",
            Verdict::Unknown => "unknown (checker budget exhausted)",
        };
        println!("history {}: {verdict}", path.display());
        if report.verdict() == Verdict::NotLinearizable {
            return Err(format!("{report}"));
        }
    }
    drop(children);
    println!("demo finished; all servers stopped");
    Ok(())
}

/// Microseconds from `killed_at_us` to the first completion of an operation invoked after it.
fn recovery_us(history: &Path, killed_at_us: u64) -> Option<u64> {
    let text = std::fs::read_to_string(history).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<HistoryRecord>(l).ok())
        .filter(|r| r.status == RecordStatus::Ok && r.invoke_us >= killed_at_us)
        .filter_map(|r| r.complete_us)
        .min()
        .map(|c| c - killed_at_us)
}
