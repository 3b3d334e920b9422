//! Durable mode with real processes on 127.0.0.1: a replica killed with SIGKILL and
//! restarted from its data directory (with an empty application) rejoins through state
//! transfer, and the cluster stays linearizable across the kill, the restart and a later
//! view change whose quorum needs the restarted replica. Every loop is bounded in time;
//! children are SIGKILLed when the test ends, pass or fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fleet_io_std::bench::{run_rsl, BenchOptions};
use fleet_io_std::client::RslClient;
use fleet_io_std::config::{ClusterFile, RslSetup};
use fleet_io_std::procs::{free_udp_ports, scratch_dir, Children};
use fleet_proofs::history::{check_kv_history_file, HistoryRecord, Verdict};
use fleet_proofs::Budget;

const FLEET: &str = env!("CARGO_BIN_EXE_fleet");
const VIEW_TIMEOUT_MS: u64 = 1000;

struct Durable {
    children: Children,
    setup: RslSetup,
    config: PathBuf,
    dir: PathBuf,
    /// Child index of each replica's current process.
    child_of: [usize; 3],
}

impl Durable {
    fn start(tag: &str) -> Durable {
        let dir = scratch_dir(tag).unwrap();
        let ports = free_udp_ports(3).unwrap();
        let mut file = ClusterFile::local(3, 0);
        let rsl = file.rsl.as_mut().unwrap();
        rsl.replicas = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        rsl.baseline_view_timeout_ms = Some(VIEW_TIMEOUT_MS);
        file.kv = None;
        let config = dir.join("cluster.toml");
        std::fs::write(&config, file.to_toml()).unwrap();
        let setup = file.rsl().unwrap();
        let mut cluster = Durable { children: Children::default(), setup, config, dir, child_of: [0; 3] };
        for id in 0..3 {
            cluster.spawn(id, "first");
        }
        let mut c = RslClient::connect(&cluster.setup).unwrap();
        c.put(b"ready", b"1", Duration::from_secs(10)).expect("the cluster comes up within 10 s");
        cluster
    }

    fn log(&self, id: usize, run: &str) -> PathBuf {
        self.dir.join(format!("rsl-{id}-{run}.log"))
    }

    fn spawn(&mut self, id: usize, run: &str) {
        let data = self.dir.join(format!("data-{id}"));
        let args = [
            "-v",
            "rsl",
            "serve",
            "--config",
            self.config.to_str().unwrap(),
            "--id",
            &id.to_string(),
            "--data-dir",
            data.to_str().unwrap(),
        ];
        self.child_of[id] = self.children.spawn(Path::new(FLEET), &args, &self.log(id, run)).unwrap();
    }

    fn kill(&mut self, id: usize) {
        self.children.kill(self.child_of[id]);
    }
}

/// The last `executed=` figure a replica's stats lines report.
fn executed(log: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find_map(|l| l.split_whitespace().find_map(|f| f.strip_prefix("executed=")?.parse().ok()))
}

fn bench(history: &Path, seconds: u64) -> BenchOptions {
    BenchOptions {
        clients: 8,
        duration: Duration::from_secs(seconds),
        value_size: 128,
        keys: 32,
        first_key: 1 << 32,
        read_pct: 50,
        op_timeout: Duration::from_secs(3),
        history: Some(history.to_path_buf()),
        progress: false,
    }
}

#[test]
fn a_killed_replica_restarted_from_its_data_dir_rejoins_through_state_transfer() {
    let mut cluster = Durable::start("restart");
    let setup = cluster.setup.clone();

    // Phase 1: load; replica 2 (a follower) is killed, the others go on, then it restarts
    // from its data directory with an empty application.
    let first = cluster.dir.join("history-1.jsonl");
    let opts = bench(&first, 6);
    let first_start = Instant::now();
    let result = std::thread::scope(|s| {
        let load = s.spawn(|| run_rsl(&setup, &opts));
        std::thread::sleep(Duration::from_millis(1500));
        cluster.kill(2);
        std::thread::sleep(Duration::from_millis(2000));
        cluster.spawn(2, "restarted");
        load.join().unwrap()
    })
    .unwrap();
    assert!(result.ops > 100, "{}", result.summary());
    let report = check_kv_history_file(&first, &Budget::default()).unwrap();
    assert_eq!(report.verdict(), Verdict::Linearizable, "{report}");

    // The restarted replica replayed its log and caught up with the leader's execution
    // (operation numbers: each executes one batch of requests).
    let restarted_log = cluster.log(2, "restarted");
    let target = executed(&cluster.log(0, "first")).expect("the leader logs its stats");
    assert!(target > 20, "the leader executed {target} batches");
    let deadline = Instant::now() + Duration::from_secs(15);
    while executed(&restarted_log).is_none_or(|e| e < target) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = std::fs::read_to_string(&restarted_log).unwrap();
    assert!(text.contains("restarted from"), "the replica replays its durable records:\n{text}");
    let caught_up = executed(&restarted_log).unwrap_or(0);
    assert!(caught_up >= target, "restarted replica executed {caught_up} of at least {target} operations:\n{text}");

    // Phase 2: kill the leader. The new view's quorum is {1, 2}: the restarted replica's
    // promises and votes are now needed, and no acknowledged write may be lost.
    let second = cluster.dir.join("history-2.jsonl");
    let opts = bench(&second, 5);
    let second_offset_us = first_start.elapsed().as_micros() as u64;
    let result = std::thread::scope(|s| {
        let load = s.spawn(|| run_rsl(&setup, &opts));
        std::thread::sleep(Duration::from_millis(1000));
        cluster.kill(0);
        load.join().unwrap()
    })
    .unwrap();
    assert!(result.ops > 50, "service resumed on {{1, 2}}: {}", result.summary());
    // Both phases as one history (phase 2's clock shifted to phase 1's, its clients
    // renumbered): every read after the restart must see every earlier write.
    let both = cluster.dir.join("history.jsonl");
    let mut all = std::fs::read_to_string(&first).unwrap();
    for line in std::fs::read_to_string(&second).unwrap().lines() {
        let mut r: HistoryRecord = serde_json::from_str(line).unwrap();
        r.client += 1000;
        r.invoke_us += second_offset_us;
        r.complete_us = r.complete_us.map(|c| c + second_offset_us);
        all.push_str(&serde_json::to_string(&r).unwrap());
        all.push('\n');
    }
    std::fs::write(&both, all).unwrap();
    let report = check_kv_history_file(&both, &Budget::default()).unwrap();
    assert_eq!(report.verdict(), Verdict::Linearizable, "{report}");
}

/// `fleet rsl serve --id ID --data-dir DIR` in the foreground; its exit status and stderr.
fn serve_on(config: &Path, id: usize, dir: &Path) -> (bool, String) {
    let out = std::process::Command::new(FLEET)
        .args(["rsl", "serve", "--config", config.to_str().unwrap(), "--id", &id.to_string()])
        .args(["--data-dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_data_dir_of_another_replica_is_refused_with_a_sentence() {
    let mut cluster = Durable::start("wrong-dir");
    cluster.kill(1);
    // Replica 1 started on replica 0's directory, while replica 0 uses it.
    let data0 = cluster.dir.join("data-0");
    let (ok, err) = serve_on(&cluster.config, 1, &data0);
    assert!(!ok);
    assert!(err.contains("in use by another running server"), "{err}");
    // The same once replica 0 is gone: the directory is still replica 0's.
    cluster.kill(0);
    let (ok, err) = serve_on(&cluster.config, 1, &data0);
    assert!(!ok);
    assert!(err.contains("different replica"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
