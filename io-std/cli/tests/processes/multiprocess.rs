//! Real processes on 127.0.0.1: `fleet rsl serve` children, the blocking client, the CLI.
//! Every loop is bounded in time; children are SIGKILLed when a test ends, pass or fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::assert_linearizable;
use crate::support::kv::write_kv_config;
use crate::support::{first_completion_after, fleet, read_history, Cluster, FLEET};
use fleet_cli::bench::{rsl_load_threads_for, run_rsl, BenchOptions};
use fleet_cli::procs::{free_udp_ports, scratch_dir, Children};
use fleet_io_std::config::ClusterFile;

const VIEW_TIMEOUT_MS: u64 = 1000;

fn start_cluster(tag: &str) -> Cluster {
    Cluster::start(tag, VIEW_TIMEOUT_MS)
}

#[test]
fn a_killed_leader_loses_no_acknowledged_operation_and_service_resumes_within_two_view_timeouts() {
    kill_the_leader_under_load("kill-leader", None);
}

/// With leader leases the new leader waits for the old one's holds to end: still within
/// two view timeouts (a lease is at most one), and the reads its lease answered, and those
/// before the kill, are linearizable with everything else.
#[test]
fn with_leases_a_killed_leader_loses_nothing_and_reads_stay_linearizable() {
    kill_the_leader_under_load("kill-leased-leader", Some(VIEW_TIMEOUT_MS / 2));
}

/// 8 clients (half reads) record a history while replica 0, the first leader, is killed.
fn kill_the_leader_under_load(tag: &str, lease_ms: Option<u64>) {
    // Stats lines: the new leader must be seen answering Gets without a log write.
    let options = crate::support::ClusterOptions {
        stats_lines: true,
        lease_ms,
        ..crate::support::ClusterOptions::local(tag, VIEW_TIMEOUT_MS)
    };
    let mut cluster = Cluster::start_with(&options);
    let history = cluster.dir.join("history.jsonl");
    let opts = BenchOptions { ..BenchOptions::recorded(&history, Duration::from_secs(5)) };
    let start = Instant::now();
    let setup = cluster.setup.clone();
    let (killed_at_us, result) = std::thread::scope(|s| {
        let bench = s.spawn(|| run_rsl(&setup, &opts));
        std::thread::sleep(Duration::from_millis(1500));
        let at = start.elapsed().as_micros() as u64;
        cluster.kill(0); // replica 0 leads the first view
        (at, bench.join().unwrap())
    });
    let result = result.unwrap();
    assert!(result.ops > 100, "{}", result.summary());
    assert_linearizable(&history);
    let resumed =
        first_completion_after(&read_history(&history), killed_at_us).expect("operations completed after the kill");
    let gap_ms = (resumed - killed_at_us) / 1000;
    assert!(gap_ms < 2 * VIEW_TIMEOUT_MS, "service resumed {gap_ms} ms after the kill");
    // The history's Gets include queries answered from a leader's state (both leaders:
    // the killed one's log counts too, but only the survivors' are read here).
    std::thread::sleep(Duration::from_millis(1200)); // one more stats line
    let queries: u64 = (1..3).map(|i| last_stat(&cluster.logs[i], "queries=")).sum();
    assert!(queries > 0, "no query answered without a log write after the kill");
}

/// The last value of `key` (`queries=`, ...) in a replica's stats lines (0 if none).
fn last_stat(log: &Path, key: &str) -> u64 {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .rev()
        .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix(key)).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

#[test]
fn the_cli_writes_reads_and_deletes_through_the_cluster() {
    let cluster = start_cluster("cli");
    let config = cluster.config.to_str().unwrap();
    assert_eq!(fleet(&["rsl", "put", "--config", config, "color", "teal"]).1.trim(), "ok");
    let (ok, out, _) = fleet(&["rsl", "get", "--config", config, "color"]);
    assert!(ok);
    assert_eq!(out.trim(), "teal");
    assert!(fleet(&["rsl", "del", "--config", config, "color"]).0);
    let (ok, _, err) = fleet(&["rsl", "get", "--config", config, "color"]);
    assert!(!ok);
    assert!(err.contains("not found"), "{err}");
    let (ok, out, _) = fleet(&["bench", "rsl", "--config", config, "--clients", "2", "--duration-s", "1", "--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(v["ops_per_s"].as_f64().unwrap() > 0.0);
    for field in ["p50_us", "p99_us", "p999_us", "errors"] {
        assert!(v.get(field).is_some(), "missing {field} in {out}");
    }
    // Without --threads each run of a sweep gets its client count's default. Two rounds
    // run interleaved, then one median line per count.
    // A socket per client, so that the two counts get different defaults on two CPUs.
    let args = [
        "bench",
        "rsl",
        "--config",
        config,
        "--sweep",
        "2,300",
        "--rounds",
        "2",
        "--duration-s",
        "1",
        "--json",
        "--socket-per-client",
    ];
    let (ok, out, err) = fleet(&args);
    assert!(ok, "{err}");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 6, "{out}");
    let (runs, medians) = lines.split_at(4);
    for (v, clients) in runs.iter().zip([2, 300, 2, 300]) {
        assert_eq!(v["clients"].as_u64(), Some(clients as u64), "{out}");
        assert_eq!(v["load_threads"].as_u64(), Some(rsl_load_threads_for(clients, cpus, false) as u64), "{out}");
    }
    for (m, clients) in medians.iter().zip([2, 300]) {
        assert_eq!((m["clients"].as_u64(), m["runs"].as_u64()), (Some(clients), Some(2)), "{out}");
        let of_runs: Vec<f64> =
            runs.iter().filter(|v| v["clients"] == m["clients"]).map(|v| v["ops_per_s"].as_f64().unwrap()).collect();
        assert_eq!(m["median_ops_per_s"].as_f64(), Some(of_runs[0].min(of_runs[1])), "{out}");
    }
    assert!(medians[0]["of_best_below"].is_null() && medians[1]["of_best_below"].as_f64().unwrap() > 0.0, "{out}");
    // Three clients on one load thread: every client still completes operations.
    let args = ["bench", "rsl", "--config", config, "--clients", "3", "--threads", "1", "--duration-s", "1", "--json"];
    let (ok, out, err) = fleet(&args);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(v["ops"].as_u64().unwrap() >= 3, "{out}");
    assert_eq!(v["errors"].as_u64(), Some(0), "{out}");
    let (ok, _, err) = fleet(&["bench", "rsl", "--config", config, "--threads", "0", "--duration-s", "1"]);
    assert!(!ok);
    assert!(err.contains("--threads must be at least 1") && !err.contains("panicked"), "{err}");
    let (ok, _, err) = fleet(&["bench", "rsl", "--config", config, "--rounds", "0", "--duration-s", "1"]);
    assert!(!ok);
    assert!(err.contains("--rounds must be at least 1") && !err.contains("panicked"), "{err}");
}

/// A load generator stopped and continued (a debugger or `strace` attaching, a shell's
/// Ctrl-Z and `fg`) sees its wait interrupted (EINTR): the run goes on and reports, instead
/// of ending with "Interrupted system call".
#[test]
fn a_bench_stopped_and_continued_finishes_its_run() {
    use nix::sys::signal::{kill, Signal};
    let cluster = start_cluster("bench-stop");
    let config = cluster.config.to_str().unwrap();
    let args = ["bench", "rsl", "--config", config, "--clients", "2", "--duration-s", "3", "--json"];
    let bench = std::process::Command::new(FLEET)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(bench.id() as i32);
    std::thread::sleep(Duration::from_millis(500));
    // Each stop catches the load thread in its wait most of the time; ten make an
    // interrupted wait all but certain.
    for _ in 0..10 {
        kill(pid, Signal::SIGSTOP).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        kill(pid, Signal::SIGCONT).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = bench.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(v["ops"].as_u64().unwrap() > 0, "{stdout}");
}

#[test]
fn users_get_sentences_not_panics() {
    let dir = scratch_dir("errors").unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[rsl]\nreplicas = [\"127.0.0.1:1\", \"localhost\"]\n").unwrap();
    let (ok, _, err) = fleet(&["rsl", "get", "--config", bad.to_str().unwrap(), "k"]);
    assert!(!ok);
    assert!(err.contains("rsl.replicas[1]"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let (ok, _, err) = fleet(&["rsl", "get", "--config", dir.join("missing.toml").to_str().unwrap(), "k"]);
    assert!(!ok && err.contains("cannot read"), "{err}");
    // A cluster nobody runs: a clear timeout, after the client's own deadline.
    let ports = free_udp_ports(3).unwrap();
    let nobody = dir.join("nobody.toml");
    let list: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    std::fs::write(&nobody, format!("[rsl]\nreplicas = [{}]\n", list.join(", "))).unwrap();
    let (ok, _, err) = fleet(&["rsl", "put", "--config", nobody.to_str().unwrap(), "k", "v"]);
    assert!(!ok);
    assert!(err.contains("no answer from the cluster within"), "{err}");
    // A benchmark of it measured nothing: an error, not "0 ops/s" and success.
    let nobody = nobody.to_str().unwrap();
    let (ok, _, err) = fleet(&["bench", "rsl", "--config", nobody, "--clients", "2", "--duration-s", "1"]);
    assert!(!ok);
    assert!(err.contains("no operation completed in 1 s and none was answered"), "{err}");
    for (flag, value, says) in [
        ("--duration-s", "0", "--duration-s must be at least 1"),
        ("--read-pct", "150", "--read-pct 150: a percentage, 0 to 100"),
    ] {
        let (ok, _, err) = fleet(&["bench", "rsl", "--config", nobody, flag, value]);
        assert!(!ok && err.contains(says), "{flag} {value}: {err}");
    }
    // A history file that cannot be written is named before the load runs.
    let unwritable = dir.join("no-such-dir").join("history.jsonl");
    let (ok, _, err) =
        fleet(&["bench", "rsl", "--config", nobody, "--duration-s", "1", "--history", unwritable.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains(&format!("cannot write the history to {}", unwritable.display())), "{err}");
    // A history to check that is missing or malformed: the file is named, then the fault.
    let (ok, _, err) = fleet(&["check-history", unwritable.to_str().unwrap()]);
    assert!(!ok && err.contains(&format!("{}: reading history", unwritable.display())), "{err}");
    let garbled = dir.join("garbled.jsonl");
    std::fs::write(&garbled, "{}\n").unwrap();
    let (ok, _, err) = fleet(&["check-history", garbled.to_str().unwrap()]);
    assert!(!ok && err.contains(&format!("{}: line 1: missing field", garbled.display())), "{err}");
}

#[test]
fn config_local_prints_a_valid_config() {
    let (ok, out, _) = fleet(&["config", "local", "--replicas", "5", "--base-port", "9100"]);
    assert!(ok);
    let f = ClusterFile::parse(&out).unwrap();
    assert_eq!(f.rsl().unwrap().addrs.len(), 5);
    assert_eq!(f.kv_hosts().unwrap()[0].port(), 9200);
}

fn start_kv_cluster(tag: &str) -> (Children, fleet_io_std::KvSetup, fleet_cli::procs::ScratchDir) {
    let dir = scratch_dir(tag).unwrap();
    let (file, config) = write_kv_config(&dir);
    let mut children = Children::default();
    for id in 0..3 {
        let log = dir.join(format!("kv-{id}.log"));
        children
            .spawn(
                Path::new(FLEET),
                &["kv", "serve", "--config", config.to_str().unwrap(), "--id", &id.to_string()],
                &log,
            )
            .unwrap();
    }
    let setup = file.kv().unwrap();
    let mut c = fleet_io_std::kv::KvBlockingClient::connect(&setup).unwrap();
    c.set(u64::MAX - 1, b"ready", Duration::from_secs(10)).expect("the KV cluster comes up within 10 s");
    (children, setup, dir)
}

#[test]
fn kv_shards_under_load_lose_no_write() {
    let (_children, setup, dir) = start_kv_cluster("kv-shard");
    let history = dir.join("history.jsonl");
    let first_key = 10_000;
    let opts = BenchOptions {
        clients: 8,
        duration: Duration::from_secs(4),
        value_size: 64,
        keys: 64,
        first_key,
        read_pct: 50,
        fill: false,
        op_timeout: Duration::from_secs(3),
        history: Some(history.clone()),
        progress: false,
        load_threads: 2,
        pipeline: 1,
        connect: true,
        share_socket: true,
    };
    let result = std::thread::scope(|s| {
        let bench = s.spawn(|| fleet_cli::bench::run_kv(&setup, &opts));
        let mut admin = fleet_io_std::kv::KvBlockingClient::connect(&setup).unwrap();
        std::thread::sleep(Duration::from_millis(1000));
        admin.shard(first_key, Some(first_key + 32), 1, None, Duration::from_secs(5)).expect("first shard");
        std::thread::sleep(Duration::from_millis(800));
        admin.shard(first_key + 32, Some(first_key + 64), 2, None, Duration::from_secs(5)).expect("second shard");
        bench.join().unwrap()
    })
    .unwrap();
    assert!(result.ops > 100, "{}", result.summary());
    assert_linearizable(&history);
    // The moved keys are served by their new owners: reads after the run see the last writes.
    let mut c = fleet_io_std::kv::KvBlockingClient::connect(&setup).unwrap();
    c.set(first_key + 1, b"after", Duration::from_secs(5)).unwrap();
    assert_eq!(c.get(first_key + 1, Duration::from_secs(5)).unwrap().as_deref(), Some(&b"after"[..]));
}

#[test]
fn the_kv_cli_sets_shards_and_gets() {
    let (_children, _setup, dir) = start_kv_cluster("kv-cli");
    let config = dir.join("kv.toml");
    let config = config.to_str().unwrap();
    assert_eq!(fleet(&["kv", "set", "--config", config, "42", "answer"]).1.trim(), "ok");
    let (ok, _, err) = fleet(&["kv", "shard", "--config", config, "--lo", "0", "--hi", "100", "--to", "2"]);
    assert!(ok, "{err}");
    let (ok, out, _) = fleet(&["kv", "get", "--config", config, "42"]);
    assert!(ok);
    assert_eq!(out.trim(), "answer", "the pair moved with its range");
    // Without --via the CLI finds the owner (host 2 now) and the range moves on.
    let (ok, _, err) = fleet(&["kv", "shard", "--config", config, "--lo", "0", "--hi", "100", "--to", "1"]);
    assert!(ok, "{err}");
    let (ok, out, _) = fleet(&["kv", "get", "--config", config, "42"]);
    assert!(ok && out.trim() == "answer", "{out}");
    // --via overrides: host 0 no longer owns the range, and says so.
    let (ok, _, err) =
        fleet(&["kv", "shard", "--config", config, "--lo", "0", "--hi", "100", "--to", "2", "--via", "0"]);
    assert!(!ok, "host 0 no longer owns the range");
    assert!(err.contains("refused") && err.contains("does not own every key"), "{err}");
}
