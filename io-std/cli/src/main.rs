//! The `fleet` command: run servers, talk to clusters, benchmark, check histories, demo.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use fleet_cli::bench::{run_kv, run_rsl, BenchOptions, BenchResult, DEFAULT_KV_LOAD_THREADS, DEFAULT_LOAD_THREADS};
use fleet_io_std::kv::{spawn_kv_at, KvBlockingClient, KvServeOptions};
use fleet_io_std::net::event_loop::LoopOptions;
use fleet_io_std::net::metrics::{serve_metrics, MetricsBoard};
use fleet_io_std::net::udp_batch::Syscalls;
use fleet_io_std::rsl::{cluster_status, spawn_rsl_with, RslClient, ServeOptions};
use fleet_io_std::{ClusterFile, KvSetup, RslSetup};
use fleet_proofs::history::{check_kv_history_file, Verdict};
use fleet_proofs::Budget;

#[derive(Parser)]
#[command(name = "fleet", version, about = "IronFleet's RSL and KV on UDP")]
struct Cli {
    /// More logging (-v: stats lines, -vv: debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// How long a client command (get, put, set, del, shard) waits for its answer.
    #[arg(long, value_name = "MS", default_value_t = 5000, global = true)]
    timeout_ms: u64,
    /// Log lines (on stderr) for people (`text`) or one JSON object per line for machines
    /// (`json`: timestamp, level, target, and the message with its fields).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Cluster configuration files.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// The replicated state machine (a KV app replicated by MultiPaxos).
    #[command(subcommand)]
    Rsl(RslCmd),
    /// The sharded key-value store (IronKV).
    #[command(subcommand)]
    Kv(KvCmd),
    /// Closed-loop benchmarks.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Checks a recorded history (JSON lines) for linearizability.
    CheckHistory {
        /// The history file.
        file: PathBuf,
        /// Give up after this many seconds (verdict: unknown).
        #[arg(long, default_value_t = 60)]
        max_seconds: u64,
    },
    /// The main job: a local cluster, a workload, a leader kill, a checked history.
    Demo,
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Prints a TOML cluster config for loopback.
    Local {
        /// Replicas (and KV hosts).
        #[arg(long, default_value_t = 3)]
        replicas: usize,
        /// First port; KV hosts start at base + 100.
        #[arg(long, default_value_t = 7000)]
        base_port: u16,
        /// Seal every datagram: write a new member key and a new client key (mode 600,
        /// from the OS's random source) into this folder, and name them in the config.
        #[arg(long, value_name = "DIR")]
        keys: Option<PathBuf>,
    },
    /// Checks a config file as the servers would read it: its syntax, every address, the
    /// parameters against this build's capacities, and the key files (readable, private,
    /// well-formed). Prints a summary, or the file, key and what is wrong.
    Check {
        /// The config file.
        file: PathBuf,
    },
}

/// `--log-format` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `--syscalls` values.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum SyscallMode {
    /// recvmmsg/sendmmsg: up to 32 datagrams per system call.
    Batched,
    /// One recv_from/send_to per datagram.
    Single,
}

impl From<SyscallMode> for Syscalls {
    fn from(m: SyscallMode) -> Syscalls {
        match m {
            SyscallMode::Batched => Syscalls::Batched,
            SyscallMode::Single => Syscalls::Single,
        }
    }
}

#[derive(Subcommand)]
enum RslCmd {
    /// Runs replica `--id` of the cluster in `--config` until killed.
    Serve {
        /// The cluster's config file (TOML, as `fleet config local` writes).
        #[arg(long)]
        config: PathBuf,
        /// Which member of the config to run (0-based index in its list).
        #[arg(long)]
        id: usize,
        /// Durable mode: keep the replica's promises, votes, executed operations and
        /// snapshots in this directory (created if missing); every promise and vote is
        /// synced before the message that reveals it leaves. Replicas killed and restarted
        /// with their directories (all of them at once included) lose nothing acknowledged.
        /// Without it, state is in memory only: never restart a crashed replica then.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// System calls for datagrams: `batched` (recvmmsg/sendmmsg) or `single`.
        #[arg(long, value_enum, default_value_t = SyscallMode::Batched)]
        syscalls: SyscallMode,
        /// Bind the socket to this address instead of the configured one. The replica still
        /// goes by the config's (advertised) address, and knows its peers by theirs: peers
        /// must see this socket's datagrams come from the advertised address, e.g. through
        /// a NAT or proxy that forwards it here, or a wildcard bind (0.0.0.0:PORT) of the
        /// advertised port.
        #[arg(long, value_name = "ADDR")]
        bind: Option<SocketAddr>,
        /// Durable mode: write a snapshot and drop older log segments once this many bytes
        /// were logged since the last snapshot (default 64 MiB, or the last snapshot's size
        /// if larger). Disk use stays near two snapshots, the log since the older one, and
        /// one preallocated segment (a quarter more than this).
        #[arg(long, value_name = "BYTES", requires = "data_dir")]
        compact_after_bytes: Option<u64>,
        /// Serve Prometheus metrics at http://ADDR/metrics: every numeric field of the stats
        /// line as `fleet_rsl_<field>` (README, "Metrics"), and a histogram of event-loop
        /// step times.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<SocketAddr>,
    },
    /// Writes KEY = VALUE.
    Put {
        /// The cluster's config file (TOML, as `fleet config local` writes).
        #[arg(long)]
        config: PathBuf,
        /// The key (a string).
        key: String,
        /// The value (a string).
        value: String,
    },
    /// Reads KEY.
    Get {
        /// The cluster's config file (TOML, as `fleet config local` writes).
        #[arg(long)]
        config: PathBuf,
        /// The key (a string).
        key: String,
    },
    /// Deletes KEY.
    Del {
        /// The cluster's config file (TOML, as `fleet config local` writes).
        #[arg(long)]
        config: PathBuf,
        /// The key (a string).
        key: String,
    },
    /// Asks every replica where it stands: reachable or not, view and leader, phase,
    /// operations executed, truncation point, lag behind the leader, queued requests,
    /// durable or not. Exit status 1 if no replica leads.
    Status {
        /// The cluster's config file.
        #[arg(long)]
        config: PathBuf,
        /// Print one JSON array (one object per replica) instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum KvCmd {
    /// Runs KV host `--id` of the cluster in `--config` until killed.
    Serve {
        /// The cluster's config file (TOML, as `fleet config local` writes).
        #[arg(long)]
        config: PathBuf,
        /// Which member of the config to run (0-based index in its list).
        #[arg(long)]
        id: usize,
        /// Bind the socket to this address instead of the configured one. The host still
        /// goes by the config's (advertised) address, and knows its peers by theirs: peers
        /// must see this socket's datagrams come from the advertised address, e.g. through
        /// a NAT or proxy that forwards it here, or a wildcard bind (0.0.0.0:PORT) of the
        /// advertised port.
        #[arg(long, value_name = "ADDR")]
        bind: Option<SocketAddr>,
        /// Durable mode: keep the host's whole state (its pairs, which ranges it owns,
        /// transfers, client channels) in this directory (created if missing), as a log of
        /// the inputs that changed it and an image of it; every reply and every message to
        /// another host leaves only once the inputs before it are synced. A host killed and
        /// restarted with its directory loses nothing acknowledged. Without it, state is in
        /// memory only: never restart a crashed host then.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Durable mode: write an image and drop older log segments once this many bytes
        /// were logged since the last image (default 64 MiB, or the last image's size if
        /// larger). Disk use stays near two images, the log since the older one, and one
        /// preallocated segment (a quarter more than this).
        #[arg(long, value_name = "BYTES", requires = "data_dir")]
        compact_after_bytes: Option<u64>,
        /// Serve Prometheus metrics at http://ADDR/metrics: every numeric field of the stats
        /// line as `fleet_kv_<field>` (README, "Metrics"), and a histogram of event-loop
        /// step times.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<SocketAddr>,
    },
    /// Reads KEY (a u64).
    Get {
        /// The cluster's config file (TOML, as `fleet config local` writes).
        #[arg(long)]
        config: PathBuf,
        /// The key (an unsigned 64-bit integer).
        key: u64,
    },
    /// Writes KEY = VALUE.
    Set {
        /// The cluster's config file (TOML, as `fleet config local` writes).
        #[arg(long)]
        config: PathBuf,
        /// The key (an unsigned 64-bit integer).
        key: u64,
        /// The value (a string).
        value: String,
    },
    /// Deletes KEY.
    Del {
        /// The cluster's config file (TOML, as `fleet config local` writes).
        #[arg(long)]
        config: PathBuf,
        /// The key (an unsigned 64-bit integer).
        key: u64,
    },
    /// Moves keys [lo, hi) to host --to. The request goes to the current owner of --lo
    /// (found by reading it), or to --via if given.
    Shard {
        /// The cluster's config file (TOML, as `fleet config local` writes).
        #[arg(long)]
        config: PathBuf,
        /// Inclusive lower bound of the key range to move.
        #[arg(long)]
        lo: u64,
        /// Exclusive upper bound; omit for "up to the last key".
        #[arg(long)]
        hi: Option<u64>,
        /// The host that receives the range (0-based index in the config).
        #[arg(long)]
        to: usize,
        /// Send the request to this host instead of the owner the client finds (an
        /// override: the host must own every key of the range).
        #[arg(long)]
        via: Option<usize>,
    },
    /// Asks every host where it stands: reachable or not, serving or joining, keys stored,
    /// delegation-map runs, channels, unacknowledged messages, transfers out/in, counters,
    /// durable or not; then which host owns which key ranges (and ranges in flight). Exit
    /// status 1 if a host did not answer or some keys have no owner.
    Status {
        /// The cluster's config file.
        #[arg(long)]
        config: PathBuf,
        /// Print one JSON object (`hosts` and `ranges`) instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Benchmarks the RSL cluster (KV app).
    Rsl(BenchArgs),
    /// Benchmarks the IronKV cluster.
    Kv(BenchArgs),
}

#[derive(clap::Args)]
struct BenchArgs {
    /// The cluster's config file (TOML, as `fleet config local` writes).
    #[arg(long)]
    config: PathBuf,
    /// Concurrent closed-loop clients (each its own UDP socket and identity).
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10)]
    duration_s: u64,
    /// Bytes per written value.
    #[arg(long, default_value_t = 128)]
    value_size: usize,
    /// Distinct keys the workload uses, from --first-key on.
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    /// Lowest key (use fresh keys when recording a history against a non-empty cluster).
    #[arg(long, default_value_t = 0)]
    first_key: u64,
    /// Percentage of reads.
    #[arg(long, default_value_t = 50)]
    read_pct: u32,
    /// Write every key in [first-key, first-key + keys) once, spread over the clients, no
    /// reads; stop when all are written (or at --duration-s). Loads a data set.
    #[arg(long, conflicts_with = "sweep")]
    fill: bool,
    /// Print one JSON line instead of the human summary.
    #[arg(long)]
    json: bool,
    /// Write every operation to this JSON-lines file.
    #[arg(long)]
    history: Option<PathBuf>,
    /// Run once per client count, e.g. `1,4,16,64` (overrides --clients).
    #[arg(long, value_delimiter = ',')]
    sweep: Vec<usize>,
    /// With --sweep: draw the throughput/latency curve to this SVG file.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Load-generator threads the clients are spread over (each runs one poll loop); default:
    /// 2 against RSL, 1 against KV (what measured fastest on a 2-CPU machine).
    #[arg(long)]
    threads: Option<usize>,
    /// Operations each client has in flight (RSL only): above 1, a pipelined session packs
    /// up to this many into one request (executed in order, each exactly once), like
    /// `redis-benchmark -P`. At most 64.
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
}

/// Prints a line; a closed pipe (e.g. `| head`) ends the output quietly instead of panicking.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

fn init_logs(verbose: u8, format: LogFormat) {
    let level = match verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    let logs = tracing_subscriber::fmt().with_max_level(level).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => logs.try_init(),
        LogFormat::Json => logs.json().try_init(),
    };
}

/// A benchmark's error as the user should read it.
fn bench_error(e: fleet_io_std::CallError, opts: &BenchOptions) -> String {
    match e {
        fleet_io_std::CallError::TooLarge => format!("--value-size {}: {e}; choose a smaller value", opts.value_size),
        e => e.to_string(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.verbose, cli.log_format);
    match run(cli) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn bench(
    a: &BenchArgs,
    default_threads: usize,
    run: impl Fn(&BenchOptions) -> Result<BenchResult, String>,
) -> Result<(), String> {
    let threads = a.threads.unwrap_or(default_threads);
    if a.clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    let opts = BenchOptions {
        clients: a.clients,
        duration: Duration::from_secs(a.duration_s),
        value_size: a.value_size,
        keys: a.keys,
        first_key: a.first_key,
        read_pct: a.read_pct.min(100),
        fill: a.fill,
        op_timeout: Duration::from_secs(2),
        history: a.history.clone(),
        progress: !a.json,
        load_threads: threads,
        pipeline: a.pipeline,
    };
    if a.pipeline == 0 || a.pipeline > fleet_engine::rsl::group::MAX_GROUP_REQUESTS {
        return Err(format!("--pipeline must be 1 to {}", fleet_engine::rsl::group::MAX_GROUP_REQUESTS));
    }
    let counts = if a.sweep.is_empty() { vec![a.clients] } else { a.sweep.clone() };
    if counts.contains(&0) {
        return Err("client counts must be at least 1".into());
    }
    if threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    let mut results = Vec::new();
    for (i, clients) in counts.into_iter().enumerate() {
        // Each run of a sweep writes fresh keys, so a recorded history (checked against an
        // empty map) never sees another run's values.
        let first_key = opts.first_key + i as u64 * opts.keys;
        let r = run(&BenchOptions { clients, first_key, ..opts.clone() })?;
        say(&if a.json { r.json() } else { r.summary() });
        if r.ops == 0 && r.errors > 0 {
            return Err(format!(
                "no operation completed: {} errors ({} timed out, {} kept being refused by the hosts, {} lost)",
                r.errors, r.timeouts, r.refused, r.lost
            ));
        }
        results.push(r);
    }
    if let Some(path) = &a.plot {
        fleet_cli::plot::draw(&results, "fleet bench", path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// " (advertised as A)" when `--bind` moved the socket off the configured address.
fn advertised(addrs: &[SocketAddr], id: usize, bind: Option<SocketAddr>) -> String {
    match (bind, addrs.get(id)) {
        (Some(_), Some(a)) => format!(" (advertised as {a})"),
        _ => String::new(),
    }
}

/// Starts the metrics HTTP server for `service` if `addr` is given; it runs for the life of
/// the process.
fn start_metrics(addr: Option<SocketAddr>, service: &'static str) -> Result<Option<MetricsBoard>, String> {
    let Some(addr) = addr else { return Ok(None) };
    let board = MetricsBoard::new(service);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    serve_metrics(addr, board.clone(), stop).map_err(|e| format!("--metrics {addr}: cannot listen: {e}"))?;
    eprintln!("metrics at http://{addr}/metrics");
    Ok(Some(board))
}

/// A config error naming the file (once: load errors already start with it).
fn in_file(path: &std::path::Path, e: impl std::fmt::Display) -> String {
    let (name, e) = (path.display().to_string(), e.to_string());
    match e.starts_with(&name) {
        true => e,
        false => format!("{name}: {e}"),
    }
}

fn kv_setup(path: &std::path::Path) -> Result<KvSetup, String> {
    ClusterFile::load(path).and_then(|f| f.kv()).map_err(|e| in_file(path, e))
}

fn rsl_setup(path: &std::path::Path) -> Result<RslSetup, String> {
    ClusterFile::load(path).and_then(|f| f.rsl()).map_err(|e| in_file(path, e))
}

/// `fleet config check`: every section of the file as the servers would take it.
fn check_config(path: &std::path::Path) -> Result<String, String> {
    let file = ClusterFile::load(path).map_err(|e| in_file(path, e))?;
    let mut lines = Vec::new();
    if file.rsl.is_some() {
        let s = file.rsl().map_err(|e| in_file(path, e))?;
        let p = s.config.params;
        lines.push(format!(
            "rsl: {} replicas ({}), max_log_length {}, max_batch_size {}, max_datagram_bytes {}, view timeout {}-{} ms",
            s.addrs.len(),
            s.addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
            p.max_log_length,
            p.max_batch_size,
            p.max_datagram_bytes,
            p.baseline_view_timeout_ms,
            p.max_view_timeout_ms
        ));
        lines.push(match p.lease_ms {
            0 => "rsl reads: a confirmation round per batch of reads (no leases)".to_string(),
            ms => format!(
                "rsl reads: leader leases of {ms} ms, clocks assumed within {} ppm of real time and never stepped",
                p.clock_drift_ppm
            ),
        });
    }
    if file.kv.is_some() {
        let s = file.kv().map_err(|e| in_file(path, e))?;
        lines.push(format!(
            "kv: {} hosts ({})",
            s.addrs.len(),
            s.addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        ));
    }
    match file.auth_files() {
        None => lines.push("auth: none (datagrams are not sealed)".into()),
        Some(files) => {
            let member = fleet_io_std::auth::load_key_file(&files.member_key).map_err(|e| in_file(path, e))?;
            let client = fleet_io_std::auth::load_key_file(&files.client_key).map_err(|e| in_file(path, e))?;
            let _ = (member, client);
            lines.push(format!(
                "auth: member key {}, client key {} (both private and well-formed)",
                files.member_key.display(),
                files.client_key.display()
            ));
        }
    }
    if lines.is_empty() {
        return Err(format!("{}: neither an [rsl] nor a [kv] section", path.display()));
    }
    Ok(format!("{}: ok\n{}", path.display(), lines.join("\n")))
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    let timeout = Duration::from_millis(cli.timeout_ms);
    match cli.cmd {
        Cmd::Config(ConfigCmd::Check { file }) => say(&check_config(&file)?),
        Cmd::Config(ConfigCmd::Local { replicas, base_port, keys }) => {
            if replicas == 0 || replicas > 16 {
                return Err("--replicas must be between 1 and 16".into());
            }
            let mut file = ClusterFile::local(replicas, base_port);
            if let Some(dir) = keys {
                file.auth = Some(fleet_io_std::auth::new_key_files(&dir).map_err(|e| e.to_string())?);
            }
            say(file.to_toml().trim_end());
        }
        Cmd::Rsl(RslCmd::Serve { config, id, data_dir, syscalls, bind, compact_after_bytes, metrics }) => {
            let setup = rsl_setup(&config)?;
            let stats_every = (cli.verbose > 0).then_some(Duration::from_secs(1));
            let board = start_metrics(metrics, "rsl")?;
            let options = ServeOptions {
                loop_options: LoopOptions { stats_every, syscalls: syscalls.into(), auth: None, metrics: board },
                data_dir: data_dir.clone(),
                bind,
                compact_after_bytes,
            };
            let server = spawn_rsl_with(&setup, id, &options).map_err(|e| e.to_string())?;
            let cluster = setup.config.identity();
            match &data_dir {
                Some(d) => eprintln!(
                    "replica {id} of cluster {cluster:08x} serving on {}{} (durable, data in {})",
                    server.addr,
                    advertised(&setup.addrs, id, bind),
                    d.display()
                ),
                None => eprintln!(
                    "replica {id} of cluster {cluster:08x} serving on {}{} (in memory)",
                    server.addr,
                    advertised(&setup.addrs, id, bind)
                ),
            }
            // Runs until the process is killed; it returns only on a server error.
            server.wait().map_err(|e| format!("replica {id} stopped: {e}"))?;
        }
        Cmd::Rsl(RslCmd::Put { config, key, value }) => {
            let mut c = RslClient::connect(&rsl_setup(&config)?).map_err(|e| e.to_string())?;
            c.put(key.as_bytes(), value.as_bytes(), timeout).map_err(|e| e.to_string())?;
            say("ok");
        }
        Cmd::Rsl(RslCmd::Get { config, key }) => {
            let mut c = RslClient::connect(&rsl_setup(&config)?).map_err(|e| e.to_string())?;
            match c.get(key.as_bytes(), timeout).map_err(|e| e.to_string())? {
                Some(v) => say(&String::from_utf8_lossy(&v)),
                None => {
                    eprintln!("(not found)");
                    return Ok(ExitCode::from(1));
                }
            }
        }
        Cmd::Rsl(RslCmd::Status { config, json }) => {
            let answers =
                cluster_status(&rsl_setup(&config)?, timeout.min(Duration::from_secs(2))).map_err(|e| e.to_string())?;
            let leader = fleet_io_std::rsl::status::leader(&answers);
            say(&fleet_cli::status::render(&answers, leader, json));
            if leader.is_none() {
                return Ok(ExitCode::from(1));
            }
        }
        Cmd::Rsl(RslCmd::Del { config, key }) => {
            let mut c = RslClient::connect(&rsl_setup(&config)?).map_err(|e| e.to_string())?;
            c.delete(key.as_bytes(), timeout).map_err(|e| e.to_string())?;
            say("ok");
        }
        Cmd::Kv(KvCmd::Serve { config, id, bind, data_dir, compact_after_bytes, metrics }) => {
            let setup = kv_setup(&config)?;
            let stats_every = (cli.verbose > 0).then_some(Duration::from_secs(1));
            let board = start_metrics(metrics, "kv")?;
            let options = KvServeOptions {
                loop_options: LoopOptions { stats_every, metrics: board, ..LoopOptions::default() },
                data_dir: data_dir.clone(),
                bind,
                compact_after_bytes,
            };
            let server = spawn_kv_at(&setup, id, &options).map_err(|e| e.to_string())?;
            let mode = match &data_dir {
                Some(d) => format!("durable, data in {}", d.display()),
                None => "in memory".to_string(),
            };
            eprintln!("KV host {id} serving on {}{} ({mode})", server.addr, advertised(&setup.addrs, id, bind));
            // Runs until the process is killed; it returns only on a server error.
            server.wait().map_err(|e| format!("KV host {id} stopped: {e}"))?;
        }
        Cmd::Kv(KvCmd::Status { config, json }) => {
            let answers = fleet_io_std::kv::cluster_status(&kv_setup(&config)?, timeout.min(Duration::from_secs(2)))
                .map_err(|e| e.to_string())?;
            say(&fleet_cli::status::render_kv(&answers, json));
            let unowned = !fleet_io_std::kv::ownership(&answers).unowned().is_empty();
            if unowned || answers.iter().any(|a| a.status.is_none() || !a.complete) {
                return Ok(ExitCode::from(1));
            }
        }
        Cmd::Kv(KvCmd::Get { config, key }) => {
            let mut c = KvBlockingClient::connect(&kv_setup(&config)?).map_err(|e| e.to_string())?;
            match c.get(key, timeout).map_err(|e| e.to_string())? {
                Some(v) => say(&String::from_utf8_lossy(&v)),
                None => {
                    eprintln!("(not found)");
                    return Ok(ExitCode::from(1));
                }
            }
        }
        Cmd::Kv(KvCmd::Set { config, key, value }) => {
            let mut c = KvBlockingClient::connect(&kv_setup(&config)?).map_err(|e| e.to_string())?;
            c.set(key, value.as_bytes(), timeout).map_err(|e| e.to_string())?;
            say("ok");
        }
        Cmd::Kv(KvCmd::Del { config, key }) => {
            let mut c = KvBlockingClient::connect(&kv_setup(&config)?).map_err(|e| e.to_string())?;
            c.delete(key, timeout).map_err(|e| e.to_string())?;
            say("ok");
        }
        Cmd::Kv(KvCmd::Shard { config, lo, hi, to, via }) => {
            let setup = kv_setup(&config)?;
            let n = setup.addrs.len();
            for (flag, i) in [("--to", Some(to)), ("--via", via)] {
                let Some(i) = i else { continue };
                if i >= n {
                    return Err(format!("{flag} {i}: there is no KV host {i}; the hosts are 0 to {}", n - 1));
                }
            }
            let mut c = KvBlockingClient::connect(&setup).map_err(|e| e.to_string())?;
            c.shard(lo, hi, to, via, timeout).map_err(|e| match e.to_string() {
                m if m.contains("NotOwner") => format!(
                    "{m}: the host asked does not own every key of the range; keys [{lo}, ...) belong to \
                     more than one host now (move each owner's part on its own) or are moving"
                ),
                m => m,
            })?;
            say("ok");
        }
        Cmd::Bench(BenchCmd::Kv(a)) => {
            if a.pipeline != 1 {
                return Err("--pipeline applies to `fleet bench rsl` only (a KV client keeps its own window)".into());
            }
            let setup = kv_setup(&a.config)?;
            bench(&a, DEFAULT_KV_LOAD_THREADS, |opts| run_kv(&setup, opts).map_err(|e| bench_error(e, opts)))?;
        }
        Cmd::Bench(BenchCmd::Rsl(a)) => {
            let setup = rsl_setup(&a.config)?;
            bench(&a, DEFAULT_LOAD_THREADS, |opts| run_rsl(&setup, opts).map_err(|e| bench_error(e, opts)))?;
        }
        Cmd::CheckHistory { file, max_seconds } => {
            let budget = Budget::time(Duration::from_secs(max_seconds));
            let report = check_kv_history_file(&file, &budget).map_err(|e| e.to_string())?;
            say(&report.to_string());
            return Ok(match report.verdict() {
                Verdict::Linearizable => ExitCode::SUCCESS,
                Verdict::NotLinearizable => ExitCode::from(1),
                Verdict::Unknown => ExitCode::from(2),
            });
        }
        Cmd::Demo => {
            let exe = std::env::current_exe().map_err(|e| format!("cannot find the fleet executable: {e}"))?;
            fleet_cli::demo::run(&exe)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every command, flag and argument of `fleet` explains itself in `--help`.
    #[test]
    fn every_command_and_flag_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            if cmd.get_about().is_none() {
                missing.push(format!("{path}: the command"));
            }
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() {
                    missing.push(format!("{path}: {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "without help text:\n{}", missing.join("\n"));
    }
}
