//! The `fleet` command line: every command, subcommand and flag, with its help text.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use fleet_io_std::net::event_loop::DEFAULT_GROUP_COMMIT;
use fleet_io_std::net::spin::DEFAULT_SPIN;
use fleet_io_std::net::udp_batch::Syscalls;
use fleet_io_std::storage::syncer::SyncMode;

#[derive(Parser)]
#[command(name = "fleet", version, about = "IronFleet's RSL and KV on UDP")]
pub(crate) struct Cli {
    /// More logging (-v: stats lines, -vv: debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,
    /// How long a client command (get, put, set, del, shard) waits for its answer.
    #[arg(long, value_name = "MS", default_value_t = 5000, global = true)]
    pub(crate) timeout_ms: u64,
    /// Log lines (on stderr) for people (`text`) or one JSON object per line for machines
    /// (`json`: timestamp, level, target, and the message with its fields).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub(crate) log_format: LogFormat,
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
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
pub(crate) enum ConfigCmd {
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
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `--syscalls` values.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum SyscallMode {
    /// recvmmsg/sendmmsg: up to 32 datagrams per system call.
    Batched,
    /// One recv_from/send_to per datagram.
    Single,
}

/// How a server's event loop meets the operating system (`rsl serve`, `kv serve`).
#[derive(clap::Args, Clone, Copy, Debug)]
pub(crate) struct LoopArgs {
    /// System calls for datagrams: `batched` (recvmmsg/sendmmsg) or `single`.
    #[arg(long, value_enum, default_value_t = SyscallMode::Batched)]
    pub(crate) syscalls: SyscallMode,
    /// After handling datagrams, keep polling the socket this long (giving the CPU to
    /// anything else runnable between polls) before sleeping: the next datagram of an
    /// exchange then finds the server awake, which on virtual machines saves most of a
    /// hop (one client's writes: about twice as many per second). It costs CPU while
    /// datagrams keep coming less than this apart; an idle server sleeps as before. 0: never
    /// poll, sleep at once (docs/performance.md, session 41).
    #[arg(long, value_name = "US", default_value_t = DEFAULT_SPIN.as_micros() as u64)]
    pub(crate) spin_us: u64,
    /// Group commit window: when replies wait for a log sync that runs on the event loop (a
    /// durable KV host; an RSL replica with `--sync inline`) and requests come from more than
    /// one client, keep taking requests this long before the sync, so that they share it.
    /// Durable KV at 50 clients: about 10 % more writes per second, and lower latency. 0:
    /// sync at once (docs/performance.md, session 48).
    #[arg(long, value_name = "US", default_value_t = DEFAULT_GROUP_COMMIT.as_micros() as u64)]
    pub(crate) group_commit_us: u64,
}

impl LoopArgs {
    /// The spin window.
    pub(crate) fn spin(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.spin_us)
    }

    /// The group commit window.
    pub(crate) fn group_commit(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.group_commit_us)
    }
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
pub(crate) enum RslCmd {
    /// Runs replica `--id` of the cluster in `--config` until killed.
    Serve {
        /// The cluster's config file (TOML, as `fleet config local` writes).
        #[arg(long)]
        config: PathBuf,
        /// Which member of the config to run (0-based index in its list).
        #[arg(long, required_unless_present = "join", conflicts_with = "join")]
        id: Option<usize>,
        /// Runs the replica at ADDR of the cluster's current membership, not one of the
        /// config file's: learns the membership from the replicas (following every change
        /// since the file), waits until ADDR is a member (`fleet rsl member add` or
        /// `replace`, before or after this starts), then starts without state and catches
        /// up from the others before it votes. Also how an in-memory replica comes back
        /// after a membership change. With --data-dir it is durable: restarted with the
        /// same directory it recovers from it (no waiting), in the epoch it was in, and
        /// follows the cluster from there.
        #[arg(long, value_name = "ADDR")]
        join: Option<SocketAddr>,
        /// Durable mode: keep the replica's promises, votes, executed operations and
        /// snapshots in this directory (created if missing); every promise and vote is
        /// synced before the message that reveals it leaves. Replicas killed and restarted
        /// with their directories (all of them at once included) lose nothing acknowledged.
        /// Without it, state is in memory only: never restart a crashed replica then.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        looping: LoopArgs,
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
        /// Durable mode: where the log's fdatasync runs. `auto` (the default): on a sync
        /// thread while this replica leads (it goes on handling while its vote is synced),
        /// on the event loop while it follows (no hand-off between threads). `thread`: on a
        /// sync thread always. `inline`: on the event loop always (see
        /// docs/performance.md).
        #[arg(long, value_name = "auto|inline|thread", requires = "data_dir")]
        sync: Option<SyncMode>,
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
    /// Membership: list the current members; add, remove or replace replicas while the
    /// cluster serves (README, "Changing the membership").
    #[command(subcommand)]
    Member(MemberCmd),
    /// Asks every replica of the current membership (learned from the config file's
    /// replicas) where it stands: reachable or not, view and leader, phase,
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
pub(crate) enum MemberCmd {
    /// The current membership (its epoch, first operation and replicas, learned from the
    /// replicas of the config file and followed through every change), then every
    /// member's status. Exit status 1 if no member leads.
    List {
        /// The cluster's config file (any epoch's: the membership is followed from it).
        #[arg(long)]
        config: PathBuf,
        /// Print one JSON object (`epoch`, `start`, `replicas`, `status`) instead.
        #[arg(long)]
        json: bool,
    },
    /// Adds replicas at ADDR... in one change; then start each with `fleet rsl serve
    /// --config FILE --join ADDR`. A majority of the new membership must be current members.
    Add {
        /// The cluster's config file.
        #[arg(long)]
        config: PathBuf,
        /// The new replicas' addresses.
        #[arg(required = true, value_name = "ADDR")]
        addrs: Vec<SocketAddr>,
        /// Skip the checks that the new membership can serve at once (members answering,
        /// none still catching up, the addresses free).
        #[arg(long)]
        force: bool,
    },
    /// Removes the replicas at ADDR... in one change; they retire and tell clients where
    /// the cluster went.
    Remove {
        /// The cluster's config file.
        #[arg(long)]
        config: PathBuf,
        /// The leaving replicas' addresses.
        #[arg(required = true, value_name = "ADDR")]
        addrs: Vec<SocketAddr>,
        /// Skip the checks that the new membership can serve at once.
        #[arg(long)]
        force: bool,
    },
    /// Replaces the replica at OLD (e.g. a dead machine) by a new one at NEW in one change;
    /// then start it with `fleet rsl serve --config FILE --join NEW`.
    Replace {
        /// The cluster's config file.
        #[arg(long)]
        config: PathBuf,
        /// The leaving replica's address.
        old: SocketAddr,
        /// The new replica's address.
        new: SocketAddr,
        /// Skip the checks that the new membership can serve at once.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum KvCmd {
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
        /// Durable mode: where the log's fdatasync runs. `inline` (the default): on the event
        /// loop, which waits for it, as Redis's `appendfsync always` does. `thread`: on a
        /// sync thread, while the host goes on handling (see docs/performance.md).
        #[arg(long, value_name = "inline|thread", requires = "data_dir")]
        sync: Option<SyncMode>,
        #[command(flatten)]
        looping: LoopArgs,
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
pub(crate) enum BenchCmd {
    /// Benchmarks the RSL cluster (KV app).
    Rsl(BenchArgs),
    /// Benchmarks the IronKV cluster.
    Kv(BenchArgs),
}

#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    /// The cluster's config file (TOML, as `fleet config local` writes).
    #[arg(long)]
    pub(crate) config: PathBuf,
    /// Concurrent closed-loop clients (each its own UDP socket and identity).
    #[arg(long, default_value_t = 1)]
    pub(crate) clients: usize,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10)]
    pub(crate) duration_s: u64,
    /// Bytes per written value.
    #[arg(long, default_value_t = 128)]
    pub(crate) value_size: usize,
    /// Distinct keys the workload uses, from --first-key on.
    #[arg(long, default_value_t = 1000)]
    pub(crate) keys: u64,
    /// Lowest key (use fresh keys when recording a history against a non-empty cluster).
    #[arg(long, default_value_t = 0)]
    pub(crate) first_key: u64,
    /// Percentage of reads.
    #[arg(long, default_value_t = 50)]
    pub(crate) read_pct: u32,
    /// Write every key in [first-key, first-key + keys) once, spread over the clients, no
    /// reads; stop when all are written (or at --duration-s). Loads a data set.
    #[arg(long, conflicts_with = "sweep")]
    pub(crate) fill: bool,
    /// Print one JSON line instead of the human summary.
    #[arg(long)]
    pub(crate) json: bool,
    /// Write every operation to this JSON-lines file.
    #[arg(long)]
    pub(crate) history: Option<PathBuf>,
    /// Run once per client count, e.g. `1,4,16,64` (overrides --clients).
    #[arg(long, value_delimiter = ',')]
    pub(crate) sweep: Vec<usize>,
    /// Run the sweep (or the one --clients count) this many times, rounds interleaved,
    /// then print each count's median run, its range, and its median as a share of the
    /// best median with fewer clients. A shared machine's minute-to-minute swings then do
    /// not decide the curve.
    #[arg(long, default_value_t = 1)]
    pub(crate) rounds: usize,
    /// With --sweep: draw the throughput/latency curve to this SVG file (with --rounds,
    /// each count's median run).
    #[arg(long)]
    pub(crate) plot: Option<PathBuf>,
    /// Load-generator threads the clients are spread over (each runs one poll loop); default:
    /// against RSL one per 256 clients (or part), at most one per CPU; against KV one (what
    /// measured fastest on a 2-CPU machine). In a sweep, each client count gets its own.
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Operations each client has in flight (RSL only): above 1, a pipelined session packs
    /// up to this many into one request (executed in order, each exactly once), like
    /// `redis-benchmark -P`. At most 64.
    #[arg(long, default_value_t = 1)]
    pub(crate) pipeline: usize,
    /// Send with `sendto` instead of connecting each KV client's socket to the host it
    /// sends to. Connected sockets cost the load generator less (no route lookup per
    /// datagram) but receive only from that address: use this flag when hosts answer from
    /// another address than the one they are reached at (behind a NAT or proxy).
    #[arg(long)]
    pub(crate) unconnected: bool,
    /// A socket per client even where the clients of a load thread could share one (every
    /// server at an IPv4 loopback address, Linux): shared, each client sends from its own
    /// address in 127.64.0.0/10 and replies are read in bursts.
    #[arg(long)]
    pub(crate) socket_per_client: bool,
}
