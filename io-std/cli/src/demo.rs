//! `fleet demo`: the main job in one command. Starts a local 3-replica durable RSL cluster as
//! child processes, runs a workload, kills the leader, shows the view change and recovery;
//! cuts the power to every replica at once under load and shows the acknowledged writes come
//! back; replaces one replica's disk (it rejoins, and then serves in a quorum that needs it);
//! starts a 3-host IronKV cluster and shards a hot range while clients run; checks
//! every recorded history for linearizability, prints a summary, and stops everything it
//! started.

use std::path::Path;
use std::time::{Duration, Instant as StdInstant};

use fleet_proofs::history::{check_kv_history_file, HistoryRecord, RecordStatus, Verdict};
use fleet_proofs::Budget;

use crate::bench::{default_rsl_load_threads, run_kv, run_rsl, BenchOptions, DEFAULT_KV_LOAD_THREADS};
use crate::procs::{free_udp_ports, scratch_dir, Children};
use fleet_io_std::config::{ClusterFile, KvSection, RslSection};
use fleet_io_std::kv::KvBlockingClient;
use fleet_io_std::rsl::{RslClient, DEFAULT_RETRANSMIT_MS};

/// Runs the demo; returns a one-paragraph error a user can act on.
pub fn run(exe: &Path) -> Result<(), String> {
    // Kept: the logs and histories are the demo's record; the data directories go at the end.
    let dir = scratch_dir("demo").map_err(|e| format!("cannot create a scratch directory: {e}"))?.keep();
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
            max_datagram_bytes: Some(fleet_io_std::config::LOOPBACK_DATAGRAM_BYTES),
            retransmit_period_ms: None,
            lease_ms: None,
            clock_drift_ppm: None,
            max_keys: None,
            seeds: Vec::new(),
        }),
        kv: Some(KvSection {
            hosts: kv_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect(),
            max_value_bytes: None,
            max_datagram_bytes: None,
            max_keys: None,
        }),
        // Every datagram sealed with fresh keys, as a deployment on an open network would be.
        auth: Some(fleet_io_std::auth::new_key_files(&dir.join("keys")).map_err(|e| e.to_string())?),
        base_dir: None,
    };
    let config_path = dir.join("cluster.toml");
    std::fs::write(&config_path, file.to_toml()).map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
    let setup = file.rsl().map_err(|e| e.to_string())?;
    println!(
        "fleet demo: 3 durable RSL replicas on 127.0.0.1 ports {ports:?}, every datagram sealed with fresh keys \
         (config, keys, data and logs in {})",
        dir.display()
    );

    let mut children = Children::default();
    let config_arg = config_path.to_string_lossy().to_string();
    // Durable replicas: each keeps its state in its own data directory.
    let mut replica_child = [0usize; 3];
    let start_replica = |children: &mut Children, id: usize, run: &str| -> Result<usize, String> {
        let log = dir.join(format!("rsl-{id}{run}.log"));
        let data = dir.join(format!("data-{id}")).to_string_lossy().to_string();
        let args = ["rsl", "serve", "--config", &config_arg, "--id", &id.to_string(), "--data-dir", &data, "-v"];
        children.spawn(exe, &args, &log).map_err(|e| format!("cannot start replica {id}: {e}"))
    };
    for (id, child) in replica_child.iter_mut().enumerate() {
        *child = start_replica(&mut children, id, "")?;
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
        fill: false,
        op_timeout: Duration::from_secs(2),
        history: Some(history_ok.clone()),
        progress: true,
        load_threads: default_rsl_load_threads(16, true),
        pipeline: 1,
        connect: true,
        share_socket: true,
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
        children.kill(replica_child[0]);
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

    // Phase 3: a power cut. Replica 0 restarts from its data directory; known writes are
    // acknowledged; then every replica is killed at once under load and restarted.
    println!(
        "phase 3: replica 0 restarts from its data directory; 20 writes are acknowledged; then, under load, \
         every replica is killed at once (a power cut) and all three restart from their data directories"
    );
    replica_child[0] = start_replica(&mut children, 0, "-restarted")?;
    for i in 0..20 {
        let (k, v) = (format!("kept-{i}"), format!("value-{i}"));
        client.put(k.as_bytes(), v.as_bytes(), Duration::from_secs(10)).map_err(|e| format!("write {k}: {e}"))?;
    }
    let history_cut = dir.join("history-power-cut.jsonl");
    let cut_opts = BenchOptions {
        duration: Duration::from_secs(2),
        first_key: 3000,
        history: Some(history_cut.clone()),
        progress: false,
        ..opts.clone()
    };
    let cut = std::thread::scope(|s| {
        let bench = s.spawn(|| run_rsl(&setup, &cut_opts));
        std::thread::sleep(Duration::from_millis(1000));
        for child in replica_child {
            children.kill(child);
        }
        bench.join()
    });
    let cut = cut.map_err(|_| "the benchmark thread failed".to_string())?.map_err(|e| e.to_string())?;
    println!("  before the cut: {}", cut.summary());
    for (id, child) in replica_child.iter_mut().enumerate() {
        *child = start_replica(&mut children, id, "-after-power-cut")?;
    }
    let t = StdInstant::now();
    let mut client = RslClient::connect(&setup).map_err(|e| e.to_string())?;
    client.put(b"after", b"power cut", Duration::from_secs(15)).map_err(|e| format!("not serving again: {e}"))?;
    println!("  serving again {} ms after the restart", t.elapsed().as_millis());
    let mut read_back = 0;
    for i in 0..20 {
        let (k, v) = (format!("kept-{i}"), format!("value-{i}"));
        let got = client.get(k.as_bytes(), Duration::from_secs(10)).map_err(|e| format!("read {k}: {e}"))?;
        if got.as_deref() != Some(v.as_bytes()) {
            return Err(format!("{k} read back as {got:?} after the power cut, not {v:?}"));
        }
        read_back += 1;
    }
    println!("  {read_back} of 20 acknowledged writes read back with their values");

    // Phase 3b: a replaced disk. Replica 2 comes back with nothing and rejoins; then replica
    // 0 goes, so the quorum {1, 2} needs the replica that came back empty.
    println!(
        "phase 3b: replica 2's disk is replaced (killed, data directory deleted, started again): it rejoins; \
         then replica 0 is killed and the 20 writes are read back from replicas 1 and 2"
    );
    children.kill(replica_child[2]);
    let data2 = dir.join("data-2");
    std::fs::remove_dir_all(&data2).map_err(|e| format!("cannot delete {}: {e}", data2.display()))?;
    let t = StdInstant::now();
    replica_child[2] = start_replica(&mut children, 2, "-new-disk")?;
    let log2 = dir.join("rsl-2-new-disk.log");
    let rejoined = loop {
        let text = std::fs::read_to_string(&log2).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("rejoined")) {
            break line.split("rejoined:").nth(1).unwrap_or_default().trim().to_string();
        }
        if t.elapsed() > Duration::from_secs(15) {
            return Err(format!("replica 2 did not rejoin within 15 s (see {})", log2.display()));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    println!("  replica 2 rejoined {} ms after its start: {rejoined}", t.elapsed().as_millis());
    children.kill(replica_child[0]);
    for i in 0..20 {
        let (k, v) = (format!("kept-{i}"), format!("value-{i}"));
        let got = client.get(k.as_bytes(), Duration::from_secs(10)).map_err(|e| format!("read {k}: {e}"))?;
        if got.as_deref() != Some(v.as_bytes()) {
            return Err(format!("{k} read back as {got:?} from replicas 1 and 2, not {v:?}"));
        }
    }
    client.put(b"after", b"new disk", Duration::from_secs(10)).map_err(|e| format!("no write on {{1, 2}}: {e}"))?;
    println!("  20 of 20 read back, and a new write acknowledged, by the quorum {{1, 2}}");

    // Phase 4: IronKV: three hosts, load, and a shard of a hot range while clients run.
    let kv = file.kv().map_err(|e| e.to_string())?;
    println!(
        "phase 4: 3 IronKV hosts on ports {kv_ports:?}; 16 clients for 3 s; keys [2000, 2032) move to host 1 after 1 s"
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
        load_threads: DEFAULT_KV_LOAD_THREADS,
        pipeline: 1,
        ..opts.clone()
    };
    let (sharded, kv_run) = std::thread::scope(|s| {
        let bench = s.spawn(|| run_kv(&kv, &kv_opts));
        std::thread::sleep(Duration::from_secs(1));
        let t = StdInstant::now();
        let sharded = admin.shard(2000, Some(2032), 1, None, Duration::from_secs(5)).map(|_| t.elapsed());
        (sharded, bench.join())
    });
    let kv_run = kv_run.map_err(|_| "the benchmark thread failed".to_string())?.map_err(|e| e.to_string())?;
    println!("  {}", kv_run.summary());
    match sharded {
        Ok(t) => println!("  shard of [2000, 2032) to host 1 acknowledged in {} ms", t.as_millis()),
        Err(e) => return Err(format!("the shard failed: {e}")),
    }

    // Phase 5: check every history.
    for path in [&history_ok, &history_kill, &history_cut, &history_kv] {
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
    for id in 0..3 {
        let _ = std::fs::remove_dir_all(dir.join(format!("data-{id}")));
    }
    println!("demo finished; all servers stopped; logs and histories kept in {}", dir.display());
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
