//! `fleet kv serve` children for the multi-process KV tests: a 3-host cluster on free
//! loopback ports, each host started, SIGKILLed and started again with its arguments (its
//! data directory included). Every wait is bounded.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fleet_cli::procs::{free_udp_ports, scratch_dir, Children, ScratchDir};
use fleet_io_std::config::{ClusterFile, KvSetup};

use super::FLEET;

/// A 3-host KV cluster of child processes (SIGKILLed when this drops).
pub struct KvCluster {
    /// The host processes.
    pub children: Children,
    /// The validated config.
    pub setup: KvSetup,
    /// The config file.
    pub config: PathBuf,
    /// Scratch directory with the config, the logs, histories and data directories.
    pub dir: ScratchDir,
    /// Host `i`'s log (stderr and stdout) of its current process.
    pub logs: Vec<PathBuf>,
    args: Vec<Vec<String>>,
    child_of: Vec<usize>,
}

/// A 3-host KV config (no RSL section) on free local ports, written to `dir/kv.toml`.
pub fn write_kv_config(dir: &Path) -> (ClusterFile, PathBuf) {
    let ports = free_udp_ports(3).unwrap();
    let mut file = ClusterFile::local(3, 0);
    file.rsl = None;
    file.kv.as_mut().unwrap().hosts = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let config = dir.join("kv.toml");
    std::fs::write(&config, file.to_toml()).unwrap();
    (file, config)
}

impl KvCluster {
    /// Three hosts, durable (host `i` in `DIR/data-i`) when `durable`, each with `-v` (a
    /// stats line per second) and `extra` arguments. Waits (at most 10 s) for each to serve.
    pub fn start(tag: &str, durable: bool, extra: &[&str]) -> KvCluster {
        let dir = scratch_dir(tag).unwrap();
        let (file, config) = write_kv_config(&dir);
        let mut cluster = KvCluster {
            children: Children::default(),
            setup: file.kv().unwrap(),
            config: config.clone(),
            dir,
            logs: Vec::new(),
            args: Vec::new(),
            child_of: Vec::new(),
        };
        for id in 0..3 {
            let mut args: Vec<String> =
                ["kv", "serve", "--config", config.to_str().unwrap(), "--id", &id.to_string(), "-v"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
            if durable {
                args.extend([
                    "--data-dir".to_string(),
                    cluster.dir.join(format!("data-{id}")).to_str().unwrap().to_string(),
                ]);
            }
            args.extend(extra.iter().map(|s| s.to_string()));
            cluster.args.push(args);
            cluster.logs.push(PathBuf::new());
            cluster.child_of.push(0);
            cluster.spawn(id, "first");
        }
        cluster
    }

    /// Starts host `id`'s process (again) with its arguments, its log named after `run`,
    /// and waits (at most 10 s) until it says it serves (after its recovery).
    pub fn spawn(&mut self, id: usize, run: &str) {
        let log = self.dir.join(format!("kv-{id}-{run}.log"));
        let args: Vec<&str> = self.args[id].iter().map(String::as_str).collect();
        self.child_of[id] = self.children.spawn(Path::new(FLEET), &args, &log).unwrap();
        self.logs[id] = log.clone();
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("serving on") {
                return;
            }
            assert!(self.children.alive(self.child_of[id]), "host {id} ({run}) exited:\n{text}");
            assert!(Instant::now() < until, "host {id} ({run}) did not serve within 10 s:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs host `id`'s current process.
    pub fn kill(&mut self, id: usize) {
        self.children.kill(self.child_of[id]);
    }

    /// Host `id`'s current log.
    pub fn log(&self, id: usize) -> String {
        std::fs::read_to_string(&self.logs[id]).unwrap_or_default()
    }

    /// The counter `name` (e.g. `redirects`) in host `id`'s last stats line, waiting up to
    /// `limit` for one with it at least `at_least`; the last value seen.
    pub fn counter(&self, id: usize, name: &str, at_least: u64, limit: Duration) -> u64 {
        let until = Instant::now() + limit;
        loop {
            let value = last_field(&self.log(id), name).unwrap_or(0);
            if value >= at_least || Instant::now() >= until {
                return value;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The numeric field `name` (`name=N` or `name: N`) in the last line that has it.
pub fn last_field(log: &str, name: &str) -> Option<u64> {
    log.lines().rev().find_map(|line| {
        let at = [format!("{name}="), format!("{name}: ")].into_iter().find_map(|p| {
            let i = line.find(&p)?;
            Some(i + p.len())
        })?;
        line[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    })
}
