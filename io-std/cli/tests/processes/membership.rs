//! Membership change with real processes on 127.0.0.1, under a recorded load: a killed
//! replica replaced by a fresh process on a new port; the cluster grown from 3 to 5 and
//! shrunk back to 3 (two of the original replicas leaving). Each history is linearizable,
//! no gap between completed operations exceeds twice the view timeout, clients started
//! with the old config file keep working, and the operator's mistakes get clear errors.
//! Every wait is bounded; children are SIGKILLed when a test ends, pass or fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::{assert_linearizable, read_back, write_linearizable};
use crate::support::{fleet, read_history, Cluster, ClusterOptions, FLEET};
use fleet_cli::bench::{run_rsl, BenchOptions, BenchResult};
use fleet_cli::procs::free_udp_ports;
use fleet_io_std::rsl::members::{self, Membership};
use fleet_io_std::rsl::RslClient;
use fleet_proofs::history::RecordStatus;

/// The cluster's view timeout: the bound on unavailability is twice this.
const VIEW_TIMEOUT_MS: u64 = 1000;
/// The keys the recorded load writes.
const LOAD_FIRST_KEY: u64 = 1 << 40;
const LOAD_KEYS: u64 = 64;

fn cluster(tag: &str) -> Cluster {
    Cluster::start_with(&ClusterOptions { stats_lines: true, ..ClusterOptions::local(tag, VIEW_TIMEOUT_MS) })
}

/// A recorded load of `seconds` on its own thread, through the config file's replicas.
fn start_load(cluster: &Cluster, seconds: u64) -> (std::thread::JoinHandle<BenchResult>, PathBuf) {
    let history = cluster.dir.join("history.jsonl");
    let opts = BenchOptions {
        clients: 6,
        value_size: 100,
        keys: LOAD_KEYS,
        first_key: LOAD_FIRST_KEY,
        read_pct: 30,
        ..BenchOptions::recorded(&history, Duration::from_secs(seconds))
    };
    let setup = cluster.setup.clone();
    (std::thread::spawn(move || run_rsl(&setup, &opts).unwrap()), history)
}

/// The history is linearizable and no two consecutive completions are further apart than
/// twice the view timeout; returns the longest gap.
fn check_history(history: &Path) -> Duration {
    assert_linearizable(history);
    let mut done: Vec<u64> =
        read_history(history).iter().filter(|r| r.status == RecordStatus::Ok).filter_map(|r| r.complete_us).collect();
    done.sort_unstable();
    let gap_us = done.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    assert!(done.len() > 200, "only {} operations completed", done.len());
    assert!(
        gap_us <= 2 * VIEW_TIMEOUT_MS * 1000,
        "no operation completed for {gap_us} µs, more than twice the view timeout"
    );
    Duration::from_micros(gap_us)
}

/// `fleet rsl member ARGS... --config CONFIG`, which must succeed; its stdout.
fn member(cluster: &Cluster, args: &[&str]) -> String {
    let config = cluster.config.to_str().unwrap();
    let mut all = vec!["rsl", "member"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--config", config]);
    let (ok, out, err) = fleet(&all);
    assert!(ok, "fleet {all:?} failed: {err}");
    out
}

/// `fleet rsl member ARGS...` adding replicas started as learners: asked again (for at most
/// 20 s) while a learner it adds is not up yet or still learning the state; its stdout.
fn member_once_learned(cluster: &Cluster, args: &[&str]) -> String {
    let config = cluster.config.to_str().unwrap();
    let mut all = vec!["rsl", "member"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--config", config]);
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, out, err) = fleet(&all);
        if ok {
            return out;
        }
        let learning = err.contains("still learning") || err.contains("nothing answers at");
        assert!(learning && Instant::now() < until, "fleet {all:?} failed: {err}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `fleet rsl member ARGS...`, which must fail; its stderr.
fn member_refused(cluster: &Cluster, args: &[&str]) -> String {
    let config = cluster.config.to_str().unwrap();
    let mut all = vec!["rsl", "member"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--config", config]);
    let (ok, out, err) = fleet(&all);
    assert!(!ok, "fleet {all:?} should fail, said: {out}");
    err
}

/// Starts `fleet rsl serve --join addr` (it waits until `addr` is a member); its log.
fn join(cluster: &mut Cluster, addr: SocketAddr) -> PathBuf {
    join_with(cluster, addr, None, "").0
}

/// `fleet rsl serve --join addr`, durable in `data_dir` if given; its log (named after
/// `run`) and its child number.
fn join_with(cluster: &mut Cluster, addr: SocketAddr, data_dir: Option<&Path>, run: &str) -> (PathBuf, usize) {
    let log = cluster.dir.join(format!("join-{}{run}.log", addr.port()));
    let config = cluster.config.to_str().unwrap().to_string();
    let mut args = vec!["rsl".to_string(), "serve".into(), "--config".into(), config, "--join".into()];
    args.extend([addr.to_string(), "-v".into()]);
    if let Some(dir) = data_dir {
        args.extend(["--data-dir".to_string(), dir.to_str().unwrap().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = cluster.children.spawn(Path::new(FLEET), &args, &log).unwrap();
    (log, child)
}

/// `member list --json`, parsed.
fn list(cluster: &Cluster) -> serde_json::Value {
    try_list(cluster).unwrap_or_else(|e| panic!("member list: {e}"))
}

/// `member list --json`, parsed, or what it said instead (no replica answered).
fn try_list(cluster: &Cluster) -> Result<serde_json::Value, String> {
    let config = cluster.config.to_str().unwrap();
    let (_, out, err) = fleet(&["rsl", "member", "list", "--json", "--config", config]);
    serde_json::from_str(&out).map_err(|e| format!("{e}: {out} {err}"))
}

/// Waits (at most 20 s) until the membership is epoch `epoch` of `replicas`, every member
/// answers, none is catching up or retired, and none lags the leader.
fn wait_settled(cluster: &Cluster, epoch: u64, replicas: &[SocketAddr]) -> serde_json::Value {
    let want: Vec<String> = replicas.iter().map(ToString::to_string).collect();
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let l = try_list(cluster).unwrap_or_else(serde_json::Value::String);
        let settled = l["epoch"] == epoch
            && l["replicas"] == serde_json::json!(want)
            && l["status"].as_array().is_some_and(|rows| {
                rows.iter().all(|r| {
                    r["reachable"] == true && r["rejoining"] == false && r["retired"] == false && r["lag"] == 0
                })
            });
        if settled {
            return l;
        }
        assert!(Instant::now() < until, "not settled in epoch {epoch} with {want:?}: {l}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn new_addrs(n: usize) -> Vec<SocketAddr> {
    free_udp_ports(n).unwrap().into_iter().map(|p| SocketAddr::from(([127, 0, 0, 1], p))).collect()
}

#[test]
fn a_killed_replica_is_replaced_by_a_new_process_under_load() {
    let mut cluster = cluster("member-replace");
    let old = cluster.setup.addrs.clone();
    let new = new_addrs(1)[0];
    let (load, history) = start_load(&cluster, 8);
    std::thread::sleep(Duration::from_millis(1500));
    cluster.kill(2);
    // The new machine learns the state first, then the change adds it.
    let log = join(&mut cluster, new);
    std::thread::sleep(Duration::from_millis(1000));
    let said = member_once_learned(&cluster, &["replace", &old[2].to_string(), &new.to_string()]);
    assert!(said.contains("now epoch 1") && said.contains(&format!("{new} is a replica now")), "{said}");
    let result = load.join().unwrap();
    let gap = check_history(&history);
    wait_settled(&cluster, 1, &[old[0], old[1], new]);
    let joined = std::fs::read_to_string(&log).unwrap();
    assert!(joined.contains("learner of cluster") && joined.contains("(epoch 0)"), "{joined}");
    // A client with the old config file: two of its three replicas still serve.
    let (ok, _, err) = fleet(&["rsl", "put", "--config", cluster.config.to_str().unwrap(), "after", "replace"]);
    assert!(ok, "{err}");
    eprintln!("replace under load: {}; longest gap {gap:?}", result.summary());
}

#[test]
fn the_cluster_grows_to_five_and_shrinks_to_three_under_load() {
    let mut cluster = cluster("member-grow");
    let old = cluster.setup.addrs.clone();
    let added = new_addrs(2);
    let (load, history) = start_load(&cluster, 12);
    std::thread::sleep(Duration::from_millis(1500));
    // Started before they are members: they learn the state, then the change adds them.
    let logs: Vec<PathBuf> = added.iter().map(|a| join(&mut cluster, *a)).collect();
    std::thread::sleep(Duration::from_millis(700));
    let said = member_once_learned(&cluster, &["add", &added[0].to_string(), &added[1].to_string()]);
    assert!(said.contains("now epoch 1"), "{said}");
    let five = [old[0], old[1], old[2], added[0], added[1]];
    wait_settled(&cluster, 1, &five);
    for log in &logs {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(text.contains("learner of cluster") && text.contains("(epoch 0)"), "{text}");
    }
    // Two of the original replicas leave (the leader among them, as replica 0 leads).
    let said = member(&cluster, &["remove", &old[0].to_string(), &old[1].to_string()]);
    assert!(said.contains("now epoch 2") && said.contains(&format!("{} retired", old[0])), "{said}");
    let three = [old[2], added[0], added[1]];
    let result = load.join().unwrap();
    let gap = check_history(&history);
    let settled = wait_settled(&cluster, 2, &three);
    assert_eq!(settled["status"].as_array().unwrap().len(), 3, "{settled}");
    // The retired replicas say so.
    let retired = fleet_io_std::rsl::status_at(&cluster.setup, &old[..2], Duration::from_secs(2)).unwrap();
    assert!(retired.iter().all(|r| r.status.is_some_and(|s| s.retired && s.epoch == 1)), "{retired:?}");
    // A client that knows only a retired replica is told where the cluster went and follows.
    let only_retired = Membership { epoch: 0, start: 0, replicas: vec![old[0]] }.setup(&cluster.setup).unwrap();
    let mut c = RslClient::connect(&only_retired).unwrap();
    c.put(b"after", b"shrink", Duration::from_secs(5)).unwrap();
    assert_eq!(c.get(b"after", Duration::from_secs(5)).unwrap(), Some(b"shrink".to_vec()));
    assert_eq!(c.membership(), (2, three.to_vec()), "the client follows the redirect");
    // `fleet rsl status` with the old file shows the current members.
    let (ok, out, err) = fleet(&["rsl", "status", "--config", cluster.config.to_str().unwrap()]);
    assert!(ok && out.contains("membership changed since the config file: epoch 2"), "{out} {err}");
    for a in &three {
        assert!(out.contains(&a.to_string()), "{a} in {out}");
    }
    // And `fleet rsl get` with the old config file reads it.
    let (ok, out, err) = fleet(&["rsl", "get", "--config", cluster.config.to_str().unwrap(), "after"]);
    assert!(ok && out.trim() == "shrink", "{out} {err}");
    eprintln!("grow and shrink under load: {}; longest gap {gap:?}", result.summary());
}

#[test]
fn a_sealed_cluster_grows_replaces_and_shrinks() {
    // Every datagram sealed: new members must be sealed for as members by the old ones,
    // and clients keep their keys across epochs.
    let mut cluster = Cluster::start_with(&ClusterOptions {
        sealed: true,
        ..ClusterOptions::local("member-sealed", VIEW_TIMEOUT_MS)
    });
    let old = cluster.setup.addrs.clone();
    let added = new_addrs(2);
    join(&mut cluster, added[0]);
    member_once_learned(&cluster, &["add", &added[0].to_string()]);
    wait_settled(&cluster, 1, &[old[0], old[1], old[2], added[0]]);
    join(&mut cluster, added[1]);
    member_once_learned(&cluster, &["replace", &old[1].to_string(), &added[1].to_string()]);
    // The replacement goes last: the new epoch's first replica (which leads first) is kept.
    wait_settled(&cluster, 2, &[old[0], old[2], added[0], added[1]]);
    member(&cluster, &["remove", &old[0].to_string()]);
    wait_settled(&cluster, 3, &[old[2], added[0], added[1]]);
    // A client of the original file (sealed with its keys) is served and reads back.
    let config = cluster.config.to_str().unwrap();
    let (ok, _, err) = fleet(&["rsl", "put", "--config", config, "sealed", "yes"]);
    assert!(ok, "{err}");
    let (ok, out, err) = fleet(&["rsl", "get", "--config", config, "sealed"]);
    assert!(ok && out.trim() == "yes", "{out} {err}");
    // No member refused another's datagrams along the way.
    for log in std::fs::read_dir(&*cluster.dir).unwrap().flatten().map(|e| e.path()) {
        if log.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&log).unwrap();
            assert!(!text.contains("refused a datagram from member"), "{}: {text}", log.display());
        }
    }
}

#[test]
fn durable_replicas_keep_their_epochs_through_a_power_cut() {
    // Durable replicas; replica 2 dies for good and is replaced by a new durable machine,
    // then replica 0 is removed, under a recorded load. Then every process is killed at
    // once and restarted with the same commands: each comes back in its epoch (the removed
    // one retired), the joined one from its directory without asking, and every write
    // acknowledged before the cut reads back.
    let mut cluster = Cluster::start_with(&ClusterOptions {
        data_dirs: true,
        stats_lines: true,
        ..ClusterOptions::local("member-durable", VIEW_TIMEOUT_MS)
    });
    let old = cluster.setup.addrs.clone();
    let new = new_addrs(1)[0];
    let new_dir = cluster.dir.join("data-joined");
    let (load, history) = start_load(&cluster, 8);
    std::thread::sleep(Duration::from_millis(1500));
    cluster.kill(2);
    std::thread::sleep(Duration::from_millis(1000));
    let (_, joined) = join_with(&mut cluster, new, Some(&new_dir), "");
    member_once_learned(&cluster, &["replace", &old[2].to_string(), &new.to_string()]);
    wait_settled(&cluster, 1, &[old[0], old[1], new]);
    member(&cluster, &["remove", &old[0].to_string()]);
    let result = load.join().unwrap();
    let gap = check_history(&history);
    wait_settled(&cluster, 2, &[old[1], new]);
    // The power cut: every process at once (replica 2's died before).
    cluster.kill(0);
    cluster.kill(1);
    cluster.children.kill(joined);
    let cut = Instant::now();
    cluster.spawn(0, "after-cut");
    cluster.spawn(1, "after-cut");
    let (log, _) = join_with(&mut cluster, new, Some(&new_dir), "-after-cut");
    // A restarted cluster elects a leader once a request goes unanswered (as after any
    // power cut): the first write is what brings it back.
    let mut c = RslClient::connect(&cluster.setup).unwrap();
    c.put(b"after", b"cut", Duration::from_secs(15)).expect("the cluster serves again after the cut");
    let back = cut.elapsed();
    wait_settled(&cluster, 2, &[old[1], new]);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("recovered from") && text.contains("epoch 2") && !text.contains("waiting to join"), "{text}");
    let removed = std::fs::read_to_string(&cluster.logs[0]).unwrap();
    assert!(removed.contains("removed from the cluster"), "{removed}");
    let retired = fleet_io_std::rsl::status_at(&cluster.setup, &old[..1], Duration::from_secs(2)).unwrap();
    assert!(retired.iter().all(|r| r.status.is_some_and(|s| s.retired && s.epoch == 1)), "{retired:?}");
    // Every key read back after the cut joins the history, which must stay linearizable.
    let mut records = read_history(&history);
    let end_us = records.iter().filter_map(|r| r.complete_us.max(Some(r.invoke_us))).max().unwrap_or(0);
    for (i, key) in (LOAD_FIRST_KEY..LOAD_FIRST_KEY + LOAD_KEYS).enumerate() {
        let value = c.get(&key.to_be_bytes(), Duration::from_secs(10)).unwrap();
        let at = end_us + 1_000 + 10 * i as u64;
        records.push(read_back(key, at, at + 5, value));
    }
    write_linearizable(&cluster.dir.join("history-read-back.jsonl"), &mut records);
    // Restarted, the removed joined replica would be told its data is no longer needed.
    member(&cluster, &["remove", &new.to_string()]);
    wait_settled(&cluster, 3, &[old[1]]);
    let (ok, _, err) = fleet(&[
        "rsl",
        "serve",
        "--config",
        cluster.config.to_str().unwrap(),
        "--join",
        &new.to_string(),
        "--data-dir",
        new_dir.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("was removed from the cluster in epoch 3"), "{err}");
    eprintln!("durable changes under load: {}; longest gap {gap:?}; back after the cut in {back:?}", result.summary());
}

#[test]
fn a_file_whose_replicas_were_all_replaced_finds_the_cluster_through_its_seeds() {
    // Sealed: seeds are not part of the cluster's identity, so the seals stay valid.
    let mut cluster =
        Cluster::start_with(&ClusterOptions { sealed: true, ..ClusterOptions::local("member-seeds", VIEW_TIMEOUT_MS) });
    let config = cluster.config.to_str().unwrap().to_string();
    let (ok, _, err) = fleet(&["rsl", "put", "--config", &config, "kept", "through three changes"]);
    assert!(ok, "{err}");
    let old = cluster.setup.addrs.clone();
    let new = new_addrs(3);
    let mut members = old.clone();
    for i in 0..3 {
        join(&mut cluster, new[i]);
        member_once_learned(&cluster, &["replace", &old[i].to_string(), &new[i].to_string()]);
        members.retain(|m| *m != old[i]);
        members.push(new[i]);
        wait_settled(&cluster, i as u64 + 1, &members);
    }
    // The file's replicas all retired; once they are stopped the file alone finds nobody.
    for id in 0..3 {
        cluster.kill(id);
    }
    let (ok, _, err) = fleet(&["rsl", "get", "--config", &config, "kept", "--timeout-ms", "1500"]);
    assert!(!ok, "nothing of the file's answers: {err}");
    // With a current replica as a seed, every command finds the cluster.
    let mut file = fleet_io_std::config::ClusterFile::load(&cluster.config).unwrap();
    file.rsl.as_mut().unwrap().seeds = vec![new[1].to_string()];
    std::fs::write(&cluster.config, file.to_toml()).unwrap();
    let (ok, out, err) = fleet(&["rsl", "get", "--config", &config, "kept"]);
    assert!(ok && out.trim() == "through three changes", "{out} {err}");
    let (ok, _, err) = fleet(&["rsl", "put", "--config", &config, "after", "seeds"]);
    assert!(ok, "{err}");
    let l = list(&cluster);
    assert_eq!(l["epoch"], 3, "{l}");
    let (ok, out, err) = fleet(&["rsl", "status", "--config", &config]);
    assert!(ok && out.contains("membership changed since the config file: epoch 3"), "{out} {err}");
}

#[test]
fn operator_mistakes_get_clear_errors_and_change_nothing() {
    let mut cluster = cluster("member-errors");
    let old = cluster.setup.addrs.clone();
    let fresh = new_addrs(2);
    let (a0, a1, a2, n0) = (old[0].to_string(), old[1].to_string(), old[2].to_string(), fresh[0].to_string());
    let err = member_refused(&cluster, &["add", &a1]);
    assert!(err.contains("already a member of epoch 0"), "{err}");
    let err = member_refused(&cluster, &["remove", &n0]);
    assert!(err.contains("is not a member of epoch 0"), "{err}");
    let err = member_refused(&cluster, &["replace", &a0, &a1]);
    assert!(err.contains("already a member"), "{err}");
    let err = member_refused(&cluster, &["remove", &a0, &a1, &a2]);
    assert!(err.contains("at least one replica"), "{err}");
    // Four new replicas with three kept is no majority kept: several changes are needed.
    let four: Vec<String> = new_addrs(4).iter().map(ToString::to_string).collect();
    let mut add = vec!["add"];
    add.extend(four.iter().map(String::as_str));
    let err = member_refused(&cluster, &add);
    assert!(err.contains("only 3 of the 7 new members are current members"), "{err}");
    // With replica 2 down, removing replica 1 would leave one live replica of two.
    cluster.kill(2);
    let err = member_refused(&cluster, &["remove", &a1]);
    assert!(err.contains("needs 2 replicas holding the state") && err.contains(&a2), "{err}");
    // Nothing changed: still epoch 0 of the three.
    let l = list(&cluster);
    assert_eq!(l["epoch"], 0, "{l}");
    // The dead replica replaced; then a change built on the old epoch is refused by the
    // cluster itself (another change came first), and re-adding a retired replica's
    // address is refused while that replica still runs there.
    // An address nothing serves yet is refused: the new replica learns the state first.
    let err = member_refused(&cluster, &["replace", &a2, &n0]);
    assert!(err.contains(&format!("nothing answers at {n0}: start the new replica first")), "{err}");
    join(&mut cluster, fresh[0]);
    member_once_learned(&cluster, &["replace", &a2, &n0]);
    wait_settled(&cluster, 1, &[old[0], old[1], fresh[0]]);
    let stale = Membership { epoch: 0, start: 0, replicas: old.clone() };
    let err = members::change(&cluster.setup, &stale, &[old[0], old[1], fresh[1]], Duration::from_secs(5)).unwrap_err();
    assert!(err.contains("the cluster is in epoch 1: another change came first"), "{err}");
    member(&cluster, &["remove", &a1]);
    let err = member_refused(&cluster, &["add", &a1]);
    assert!(err.contains(&format!("{a1} is already in use by a retired replica of epoch 1")), "{err}");
    // `serve` takes one of --id and --join.
    let (ok, _, err) =
        fleet(&["rsl", "serve", "--config", cluster.config.to_str().unwrap(), "--id", "0", "--join", &n0]);
    assert!(!ok && err.contains("cannot be used with"), "{err}");
}
