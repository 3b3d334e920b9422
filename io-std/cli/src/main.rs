//! The `fleet` command: run servers, talk to clusters, benchmark, check histories, demo.

mod args;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use fleet_cli::bench::{
    default_rsl_load_threads, run_kv, run_rsl, shares_socket, BenchOptions, BenchResult, DEFAULT_KV_LOAD_THREADS,
};
use fleet_io_std::kv::{spawn_kv_at, KvBlockingClient, KvServeOptions};
use fleet_io_std::net::event_loop::LoopOptions;
use fleet_io_std::net::metrics::{serve_metrics, MetricsBoard};
use fleet_io_std::rsl::members::Edit;
use fleet_io_std::rsl::{cluster_status, spawn_rsl_with, RslClient, ServeOptions};
use fleet_io_std::storage::syncer::SyncMode;
use fleet_io_std::{ClusterFile, KvSetup, RslSetup};
use fleet_proofs::history::{check_kv_history_file, Verdict};
use fleet_proofs::Budget;

use args::*;

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
    default_threads: impl Fn(usize) -> usize,
    run: impl Fn(&BenchOptions) -> Result<BenchResult, String>,
) -> Result<(), String> {
    // Without --threads, each run of a sweep gets its client count's default.
    let threads_for = |clients| a.threads.unwrap_or_else(|| default_threads(clients));
    if a.clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    if a.duration_s == 0 {
        return Err("--duration-s must be at least 1".into());
    }
    if a.read_pct > 100 {
        return Err(format!("--read-pct {}: a percentage, 0 to 100", a.read_pct));
    }
    let opts = BenchOptions {
        clients: a.clients,
        duration: Duration::from_secs(a.duration_s),
        value_size: a.value_size,
        keys: a.keys,
        first_key: a.first_key,
        read_pct: a.read_pct,
        fill: a.fill,
        op_timeout: Duration::from_secs(2),
        history: a.history.clone(),
        progress: !a.json,
        load_threads: threads_for(a.clients),
        pipeline: a.pipeline,
        connect: !a.unconnected,
        share_socket: !a.socket_per_client,
    };
    if a.pipeline == 0 || a.pipeline > fleet_engine::rsl::group::MAX_GROUP_REQUESTS {
        return Err(format!("--pipeline must be 1 to {}", fleet_engine::rsl::group::MAX_GROUP_REQUESTS));
    }
    let counts = if a.sweep.is_empty() { vec![a.clients] } else { a.sweep.clone() };
    if counts.contains(&0) {
        return Err("client counts must be at least 1".into());
    }
    if a.threads == Some(0) {
        return Err("--threads must be at least 1".into());
    }
    if a.rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    if let Some(path) = &a.history {
        // Found out before the load runs, not after it.
        std::fs::File::create(path).map_err(|e| format!("cannot write the history to {}: {e}", path.display()))?;
    }
    let mut results = Vec::new();
    let runs = (0..a.rounds).flat_map(|_| counts.iter().copied());
    for (i, clients) in runs.enumerate() {
        // Each run of a sweep writes fresh keys, so a recorded history (checked against an
        // empty map) never sees another run's values.
        let first_key = opts.first_key + i as u64 * opts.keys;
        let r = run(&BenchOptions { clients, first_key, load_threads: threads_for(clients), ..opts.clone() })?;
        say(&if a.json { r.json() } else { r.summary() });
        if r.ops == 0 && r.errors > 0 {
            return Err(format!(
                "no operation completed: {} errors ({} timed out, {} kept being refused by the hosts, {} lost)",
                r.errors, r.timeouts, r.refused, r.lost
            ));
        }
        if r.ops == 0 {
            // Shorter than the operation timeout: every request was still unanswered when
            // the run ended, so none counts as failed; nothing was measured all the same.
            return Err(format!(
                "no operation completed in {} s and none was answered: is the cluster running at the \
                 addresses in the config?",
                a.duration_s
            ));
        }
        results.push(r);
    }
    let summaries = fleet_cli::bench::rounds::summarize(&results);
    if a.rounds > 1 {
        for s in &summaries {
            say(&if a.json { s.json() } else { s.summary() });
        }
    }
    if let Some(path) = &a.plot {
        let medians: Vec<BenchResult> = summaries.into_iter().map(|s| s.median_run).collect();
        fleet_cli::plot::draw(&medians, "fleet bench", path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// How a server's event loop runs: stats lines with `-v`, the metrics page if asked for,
/// and the `LoopArgs` flags.
fn loop_options(
    verbose: u8,
    looping: LoopArgs,
    metrics: Option<SocketAddr>,
    service: &'static str,
) -> Result<LoopOptions, String> {
    Ok(LoopOptions {
        stats_every: (verbose > 0).then_some(Duration::from_secs(1)),
        syscalls: looping.syscalls.into(),
        auth: None,
        metrics: start_metrics(metrics, service)?,
        spin: looping.spin(),
        group_commit: looping.group_commit(),
    })
}

/// The options `fleet rsl serve` runs a replica (or a learner) with.
fn serve_options(
    verbose: u8,
    looping: LoopArgs,
    metrics: Option<SocketAddr>,
    data_dir: &Option<std::path::PathBuf>,
    bind: Option<SocketAddr>,
    compact_after_bytes: Option<u64>,
    sync: Option<SyncMode>,
) -> Result<ServeOptions, String> {
    Ok(ServeOptions {
        loop_options: loop_options(verbose, looping, metrics, "rsl")?,
        data_dir: data_dir.clone(),
        bind,
        compact_after_bytes,
        sync,
    })
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

/// The setup a client command starts from: the file's, or, when the file lists seeds, the
/// current membership learned through its replicas and seeds (the file's replicas may all
/// be gone after membership changes). Clients follow later changes by themselves.
fn client_setup(path: &std::path::Path) -> Result<RslSetup, String> {
    let file = rsl_setup(path)?;
    if file.seeds.is_empty() {
        return Ok(file);
    }
    match fleet_io_std::rsl::members::current(&file, fleet_cli::member::ROUND) {
        Ok(m) => m.setup(&file).map_err(|e| e.to_string()),
        Err(_) => Ok(file), // Nobody answered: the client's own error says so.
    }
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
        Cmd::Rsl(RslCmd::Serve { config, id, join, data_dir, looping, bind, compact_after_bytes, sync, metrics }) => {
            let file = rsl_setup(&config)?;
            let (setup, id) = match (id, join) {
                (Some(id), _) => (file, id),
                (None, Some(addr)) => match fleet_cli::member::joined(&file, &config, addr, data_dir.as_deref())? {
                    fleet_cli::member::Joining::Member(setup, id) => (setup, id),
                    fleet_cli::member::Joining::Learner(setup) => {
                        let options =
                            serve_options(cli.verbose, looping, metrics, &data_dir, bind, compact_after_bytes, sync)?;
                        let app = fleet_io_std::rsl::ServerApp::new(setup.max_keys);
                        let server =
                            fleet_io_std::rsl::spawn_learner(&setup, addr, app, &options).map_err(|e| e.to_string())?;
                        eprintln!(
                            "learner of cluster {:08x} (epoch {}) on {}: following the log; it becomes a replica \
                             once added: fleet rsl member add --config {} {addr}",
                            setup.config.identity(),
                            setup.config.epoch,
                            server.addr,
                            config.display()
                        );
                        server.wait().map_err(|e| format!("learner {addr} stopped: {e}"))?;
                        return Ok(ExitCode::SUCCESS);
                    }
                },
                (None, None) => return Err("--id or --join is required".into()),
            };
            let options = serve_options(cli.verbose, looping, metrics, &data_dir, bind, compact_after_bytes, sync)?;
            let server = spawn_rsl_with(&setup, id, &options).map_err(|e| e.to_string())?;
            let cluster = setup.config.identity();
            let cluster = match setup.config.epoch {
                0 => format!("{cluster:08x}"),
                e => format!("{cluster:08x} (epoch {e})"),
            };
            match &data_dir {
                Some(d) => eprintln!(
                    "replica {id} of cluster {cluster} serving on {}{} (durable, data in {})",
                    server.addr,
                    advertised(&setup.addrs, id, bind),
                    d.display()
                ),
                None => eprintln!(
                    "replica {id} of cluster {cluster} serving on {}{} (in memory)",
                    server.addr,
                    advertised(&setup.addrs, id, bind)
                ),
            }
            // Runs until the process is killed; it returns only on a server error.
            server.wait().map_err(|e| format!("replica {id} stopped: {e}"))?;
        }
        Cmd::Rsl(RslCmd::Put { config, key, value }) => {
            let mut c = RslClient::connect(&client_setup(&config)?).map_err(|e| e.to_string())?;
            c.put(key.as_bytes(), value.as_bytes(), timeout).map_err(|e| e.to_string())?;
            say("ok");
        }
        Cmd::Rsl(RslCmd::Get { config, key }) => {
            let mut c = RslClient::connect(&client_setup(&config)?).map_err(|e| e.to_string())?;
            match c.get(key.as_bytes(), timeout).map_err(|e| e.to_string())? {
                Some(v) => say(&String::from_utf8_lossy(&v)),
                None => {
                    eprintln!("(not found)");
                    return Ok(ExitCode::from(1));
                }
            }
        }
        Cmd::Rsl(RslCmd::Status { config, json }) => {
            // The current membership's replicas, once it changed; the file's otherwise
            // (and when none answers, so that each shows as unreachable).
            let file = rsl_setup(&config)?;
            let current = fleet_io_std::rsl::members::current(&file, fleet_cli::member::ROUND).ok();
            let setup = match current.as_ref().filter(|m| m.epoch > 0) {
                Some(m) => m.setup(&file).map_err(|e| e.to_string())?,
                None => file,
            };
            let answers = cluster_status(&setup, timeout.min(Duration::from_secs(2))).map_err(|e| e.to_string())?;
            let leader = fleet_io_std::rsl::status::leader(&answers);
            if let (Some(m), false) = (current.filter(|m| m.epoch > 0), json) {
                say(&format!("membership changed since the config file: {m}"));
            }
            say(&fleet_cli::status::render(&answers, leader, json));
            if leader.is_none() {
                return Ok(ExitCode::from(1));
            }
        }
        Cmd::Rsl(RslCmd::Member(cmd)) => {
            let (config, edit, force) = match cmd {
                MemberCmd::List { config, json } => {
                    let (text, led) = fleet_cli::member::list(&rsl_setup(&config)?, json, timeout)?;
                    say(&text);
                    return Ok(if led { ExitCode::SUCCESS } else { ExitCode::from(1) });
                }
                MemberCmd::Add { config, addrs, force } => (config, Edit::Add(addrs), force),
                MemberCmd::Remove { config, addrs, force } => (config, Edit::Remove(addrs), force),
                MemberCmd::Replace { config, old, new, force } => (config, Edit::Replace { old, new }, force),
            };
            say(&fleet_cli::member::edit(&rsl_setup(&config)?, &config, &edit, force, timeout)?);
        }
        Cmd::Rsl(RslCmd::Del { config, key }) => {
            let mut c = RslClient::connect(&client_setup(&config)?).map_err(|e| e.to_string())?;
            c.delete(key.as_bytes(), timeout).map_err(|e| e.to_string())?;
            say("ok");
        }
        Cmd::Kv(KvCmd::Serve { config, id, bind, data_dir, compact_after_bytes, sync, looping, metrics }) => {
            if sync == Some(SyncMode::Auto) {
                // `auto` follows an RSL replica's role; a KV host has none.
                return Err(
                    "--sync auto is for RSL replicas (leader or follower): a KV host takes inline or thread".into()
                );
            }
            let setup = kv_setup(&config)?;
            let options = KvServeOptions {
                loop_options: loop_options(cli.verbose, looping, metrics, "kv")?,
                data_dir: data_dir.clone(),
                bind,
                compact_after_bytes,
                sync,
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
            if let Some(hi) = hi.filter(|&hi| hi <= lo) {
                return Err(format!("--lo {lo} --hi {hi}: the range is empty; --hi (exclusive) must be above --lo"));
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
            bench(&a, |_| DEFAULT_KV_LOAD_THREADS, |opts| run_kv(&setup, opts).map_err(|e| bench_error(e, opts)))?;
        }
        Cmd::Bench(BenchCmd::Rsl(a)) => {
            let setup = client_setup(&a.config)?;
            let threads =
                |clients| default_rsl_load_threads(clients, shares_socket(&setup.addrs, clients, !a.socket_per_client));
            bench(&a, threads, |opts| run_rsl(&setup, opts).map_err(|e| bench_error(e, opts)))?;
        }
        Cmd::CheckHistory { file, max_seconds } => {
            let budget = Budget::time(Duration::from_secs(max_seconds));
            let report = check_kv_history_file(&file, &budget).map_err(|e| format!("{}: {e}", file.display()))?;
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
