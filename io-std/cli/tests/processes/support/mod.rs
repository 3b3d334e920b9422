//! Shared by the multi-process tests: `fleet rsl serve` children, the CLI, histories, the
//! replicas' stats lines, and a fault-injecting proxy. Every wait is bounded in time.

#![allow(dead_code)] // Helpers some test modules use and others do not.

pub mod kv;
pub mod proxy;
pub mod tmpfs;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fleet_cli::bench::BenchOptions;
use fleet_cli::procs::{free_udp_ports, scratch_dir, Children, ScratchDir};
use fleet_io_std::config::{ClusterFile, RslSetup};
use fleet_io_std::rsl::RslClient;
use fleet_proofs::history::{check_kv_history_file, encode_hex, HistoryRecord, RecordOp, RecordStatus, Verdict};
use fleet_proofs::Budget;

/// The `fleet` executable under test.
pub const FLEET: &str = env!("CARGO_BIN_EXE_fleet");

/// A 3-replica RSL cluster of child processes (SIGKILLed when this drops).
pub struct Cluster {
    /// The replica processes; child `i` is replica `i`.
    pub children: Children,
    /// The validated config (advertised addresses).
    pub setup: RslSetup,
    /// The config file.
    pub config: PathBuf,
    /// Scratch directory with the config, the logs and histories.
    pub dir: ScratchDir,
    /// Replica `i`'s log (stderr and stdout) of its current process.
    pub logs: Vec<PathBuf>,
    /// Replica `i`'s `fleet` arguments, to start it again after a kill.
    args: Vec<Vec<String>>,
    /// Child index of replica `i`'s current process.
    child_of: Vec<usize>,
}

/// How to start a cluster.
pub struct ClusterOptions<'a> {
    /// Names the scratch directory.
    pub tag: &'a str,
    /// The replicas' advertised addresses; `None`: free loopback ports.
    pub advertised: Option<Vec<SocketAddr>>,
    /// Addresses the replicas bind instead (`--bind`), e.g. behind a proxy.
    pub bind: Option<Vec<SocketAddr>>,
    /// The config's `baseline_view_timeout_ms`.
    pub view_timeout_ms: u64,
    /// Run the replicas with `-v`: a stats line per second in their logs.
    pub stats_lines: bool,
    /// Durable mode: replica `i` keeps its state in `DIR/data-i` (`--data-dir`).
    pub data_dirs: bool,
    /// More `fleet rsl serve` arguments for every replica.
    pub extra_args: Vec<String>,
    /// The config's `lease_ms` (leader leases), if any.
    pub lease_ms: Option<u64>,
    /// Seal every datagram: fresh keys in `DIR/keys`, named in the config's `[auth]`.
    pub sealed: bool,
}

impl<'a> ClusterOptions<'a> {
    /// Three in-memory replicas on free loopback ports, without stats lines.
    pub fn local(tag: &'a str, view_timeout_ms: u64) -> ClusterOptions<'a> {
        ClusterOptions {
            tag,
            advertised: None,
            bind: None,
            view_timeout_ms,
            stats_lines: false,
            data_dirs: false,
            extra_args: Vec::new(),
            lease_ms: None,
            sealed: false,
        }
    }
}

impl Cluster {
    /// Three replicas on free loopback ports.
    pub fn start(tag: &str, view_timeout_ms: u64) -> Cluster {
        Cluster::start_with(&ClusterOptions::local(tag, view_timeout_ms))
    }

    /// Writes the config, starts the replicas and waits (at most 10 s) until a write commits.
    pub fn start_with(o: &ClusterOptions<'_>) -> Cluster {
        let dir = scratch_dir(o.tag).unwrap();
        let advertised = o.advertised.clone().unwrap_or_else(|| {
            free_udp_ports(3).unwrap().into_iter().map(|p| SocketAddr::from(([127, 0, 0, 1], p))).collect()
        });
        let mut file = ClusterFile::local(advertised.len(), 0);
        let rsl = file.rsl.as_mut().unwrap();
        rsl.replicas = advertised.iter().map(ToString::to_string).collect();
        rsl.baseline_view_timeout_ms = Some(o.view_timeout_ms);
        rsl.lease_ms = o.lease_ms;
        file.kv = None;
        if o.sealed {
            file.auth = Some(fleet_io_std::auth::new_key_files(&dir.join("keys")).unwrap());
        }
        let config = dir.join("cluster.toml");
        std::fs::write(&config, file.to_toml()).unwrap();
        let mut cluster = Cluster {
            children: Children::default(),
            setup: file.rsl().unwrap(),
            config: config.clone(),
            dir,
            logs: Vec::new(),
            args: Vec::new(),
            child_of: Vec::new(),
        };
        for id in 0..advertised.len() {
            let mut args = vec!["rsl", "serve", "--config", config.to_str().unwrap()]
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>();
            args.extend(["--id".to_string(), id.to_string()]);
            if let Some(b) = &o.bind {
                args.extend(["--bind".to_string(), b[id].to_string()]);
            }
            if o.data_dirs {
                args.extend([
                    "--data-dir".to_string(),
                    cluster.dir.join(format!("data-{id}")).to_str().unwrap().to_string(),
                ]);
            }
            if o.stats_lines {
                args.push("-v".to_string());
            }
            args.extend(o.extra_args.iter().cloned());
            cluster.args.push(args);
            cluster.logs.push(PathBuf::new());
            cluster.child_of.push(0);
            cluster.spawn(id, "first");
        }
        let mut c = RslClient::connect(&cluster.setup).unwrap();
        c.put(b"ready", b"1", Duration::from_secs(10)).expect("the cluster comes up within 10 s");
        cluster
    }

    /// Starts replica `id`'s process (again) with its arguments; its log is named after `run`.
    pub fn spawn(&mut self, id: usize, run: &str) {
        let log = match run {
            "first" => self.dir.join(format!("rsl-{id}.log")),
            _ => self.dir.join(format!("rsl-{id}-{run}.log")),
        };
        let args: Vec<&str> = self.args[id].iter().map(String::as_str).collect();
        self.child_of[id] = self.children.spawn(Path::new(FLEET), &args, &log).unwrap();
        self.logs[id] = log;
    }

    /// SIGKILLs replica `id`'s current process.
    pub fn kill(&mut self, id: usize) {
        self.children.kill(self.child_of[id]);
    }

    /// Freezes replica `id`'s process (SIGSTOP).
    pub fn pause(&mut self, id: usize) {
        self.children.pause(self.child_of[id]).unwrap();
    }

    /// Lets replica `id`'s frozen process run again (SIGCONT).
    pub fn resume(&mut self, id: usize) {
        self.children.resume(self.child_of[id]).unwrap();
    }

    /// The last stats line of every replica (`None` for one that has logged none yet).
    pub fn stats(&self) -> Vec<Option<StatsLine>> {
        self.logs.iter().map(|l| last_stats(l)).collect()
    }

    /// Polls the stats lines every 100 ms until `done` holds, for at most `limit`; the
    /// lines that satisfied it, or a message with the last lines seen.
    pub fn wait_for_stats(
        &self,
        limit: Duration,
        done: impl Fn(&[Option<StatsLine>]) -> bool,
    ) -> Result<Vec<Option<StatsLine>>, String> {
        let start = Instant::now();
        loop {
            let s = self.stats();
            if done(&s) {
                return Ok(s);
            }
            if start.elapsed() >= limit {
                return Err(format!("after {limit:?}, the replicas' last stats lines: {s:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Runs `fleet args...`: (success, stdout, stderr).
pub fn fleet(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(FLEET).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The protocol position a replica logs once per second with `-v`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatsLine {
    /// The view (seqno, proposer) the replica is in.
    pub view: (u64, u64),
    /// Whether it leads that view.
    pub leader: bool,
    /// Operations it executed.
    pub executed: u64,
}

/// Parses the `view=(s,p) leader=b executed=n` fields of a stats line.
pub fn parse_stats(line: &str) -> Option<StatsLine> {
    let rest = &line[line.find("view=(")? + "view=(".len()..];
    let (seqno, rest) = rest.split_once(',')?;
    let (proposer, rest) = rest.split_once(')')?;
    let field = |name: &str| rest.split_whitespace().find_map(|w| w.strip_prefix(name));
    Some(StatsLine {
        view: (seqno.trim().parse().ok()?, proposer.trim().parse().ok()?),
        leader: field("leader=")?.parse().ok()?,
        executed: field("executed=")?.parse().ok()?,
    })
}

/// The last stats line in a replica's log.
pub fn last_stats(log: &Path) -> Option<StatsLine> {
    std::fs::read_to_string(log).ok()?.lines().rev().find_map(parse_stats)
}

/// Asserts that the project's checker finds the history file at `path` linearizable.
pub fn assert_linearizable(path: &Path) {
    let report = check_kv_history_file(path, &Budget::default()).unwrap();
    assert_eq!(report.verdict(), Verdict::Linearizable, "{}: {report}", path.display());
}

/// A read the test made itself, after a recorded run, as a history record of client
/// [`READ_BACK_CLIENT`] (`invoke_us..complete_us` on the history's clock).
pub fn read_back(key: u64, invoke_us: u64, complete_us: u64, value: Option<Vec<u8>>) -> HistoryRecord {
    HistoryRecord {
        client: READ_BACK_CLIENT,
        op: RecordOp::Get,
        key,
        value: None,
        invoke_us,
        complete_us: Some(complete_us),
        result: value.map(|v| encode_hex(&v)),
        status: RecordStatus::Ok,
    }
}

/// The client id of [`read_back`] records: above any recorded run's clients.
pub const READ_BACK_CLIENT: u64 = 1_000_000;

/// Writes `records` in invocation order to `path` as a history file, and asserts it is
/// linearizable.
pub fn write_linearizable(path: &Path, records: &mut [HistoryRecord]) {
    records.sort_by_key(|r| r.invoke_us);
    let lines: Vec<String> = records.iter().map(|r| serde_json::to_string(r).unwrap()).collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
    assert_linearizable(path);
}

/// A recorded load of 6 clients over `keys` keys from `first_key` (40 % reads, 64-byte
/// values), to be cut by a kill: operations time out after 1.5 s.
pub fn kill_load(history: &Path, keys: u64, first_key: u64, duration: Duration) -> BenchOptions {
    BenchOptions {
        clients: 6,
        value_size: 64,
        keys,
        first_key,
        read_pct: 40,
        op_timeout: Duration::from_millis(1500),
        ..BenchOptions::recorded(history, duration)
    }
}

/// A small xorshift: kill moments that vary from round to round, reproducibly.
pub fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// The records of a history file.
pub fn read_history(path: &Path) -> Vec<HistoryRecord> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().map(|l| serde_json::from_str::<HistoryRecord>(l).unwrap()).collect()
}

/// The earliest completion of an operation invoked at or after `t_us` (history time), if any.
pub fn first_completion_after(history: &[HistoryRecord], t_us: u64) -> Option<u64> {
    history.iter().filter(|r| r.status == RecordStatus::Ok && r.invoke_us >= t_us).filter_map(|r| r.complete_us).min()
}

/// How many operations invoked at or after `from_us` completed before `to_us`.
pub fn completed_between(history: &[HistoryRecord], from_us: u64, to_us: u64) -> usize {
    history
        .iter()
        .filter(|r| r.status == RecordStatus::Ok && r.invoke_us >= from_us)
        .filter(|r| r.complete_us.is_some_and(|c| c < to_us))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_of_a_value_never_written_is_not_linearizable() {
        let dir = scratch_dir("support-stale-read").unwrap();
        let path = dir.join("history-of-a-stale-read.jsonl");
        // Key 7 was never written, yet the read returns a value.
        let mut records = vec![read_back(7, 10, 20, Some(b"ghost".to_vec()))];
        // Caught rather than `should_panic`: the scratch directory is kept when its
        // thread panics, and this failure is the expected outcome.
        let failure =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write_linearizable(&path, &mut records)))
                .expect_err("a read of a value never written passed the checker");
        let message = failure.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("history-of-a-stale-read.jsonl"), "the failure names the history: {message}");
    }
}
