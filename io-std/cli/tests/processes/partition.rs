//! Partitions that heal: three `fleet rsl serve` children behind a fault-injecting UDP proxy
//! (see `crate::support::proxy`), under load from the bench's load generator with a recorded
//! history. The leader is cut off for longer than a view timeout, the other two elect a new
//! view, the network heals; the history must be linearizable, service must carry on and
//! resume, and the old leader must rejoin. Every wait is bounded; children are SIGKILLed and
//! the proxy thread stopped when a test ends, pass or fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::support::assert_linearizable;
use crate::support::proxy::{Node, Proxy};
use crate::support::StatsLine;
use crate::support::{completed_between, first_completion_after, parse_stats, read_history, Cluster, ClusterOptions};
use fleet_cli::bench::{run_rsl, BenchOptions, BenchResult};
use fleet_io_std::rsl::RslClient;
use fleet_proofs::history::{HistoryRecord, RecordStatus};

const VIEW_TIMEOUT_MS: u64 = 1000;
/// How long the load runs; the partition happens inside it.
const BENCH: Duration = Duration::from_secs(9);
/// A bench operation gives up (and is recorded as timed out) after this.
const OP_TIMEOUT: Duration = Duration::from_secs(3);
/// Load before the cut.
const BEFORE_CUT: Duration = Duration::from_millis(1500);
/// The cut lasts at least this long (and until the majority has a new leader).
const MIN_CUT: Duration = Duration::from_millis(2500);
/// The new leader must show up in the stats lines within this long of the cut.
const ELECTION_LIMIT: Duration = Duration::from_secs(5);
/// Load that must remain after the heal.
const AFTER_HEAL: Duration = Duration::from_secs(2);

/// The tests share two cores with three replicas each: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn proxied_cluster(tag: &str) -> (Proxy, Cluster) {
    let proxy = Proxy::start(3).unwrap();
    let cluster = Cluster::start_with(&ClusterOptions {
        advertised: Some(proxy.advertised.clone()),
        bind: Some(proxy.private.clone()),
        stats_lines: true,
        ..ClusterOptions::local(tag, VIEW_TIMEOUT_MS)
    });
    (proxy, cluster)
}

/// The replica of `among` that leads a view at least one other replica of `among` is in.
fn leader_among(s: &[Option<StatsLine>], among: &[usize]) -> Option<(usize, (u64, u64))> {
    among.iter().copied().find_map(|i| {
        let l = s[i]?;
        let followers = among.iter().filter(|&&k| s[k].is_some_and(|x| x.view == l.view)).count();
        (l.leader && l.view.1 == i as u64 && followers >= 2).then_some((i, l.view))
    })
}

/// What happened during one partition run, in µs since the load started.
struct Run {
    result: BenchResult,
    history: Vec<HistoryRecord>,
    old_leader: usize,
    old_view: (u64, u64),
    new_view: (u64, u64),
    cut_us: u64,
    elected_us: u64,
    heal_us: u64,
}

/// Runs the load; once it has run `BEFORE_CUT`, finds the leader, calls `cut(proxy, leader)`,
/// waits for the other two to elect a new leader and for `MIN_CUT`, heals, and lets the load
/// run to its end.
fn partition_under_load(proxy: &Proxy, cluster: &Cluster, cut: impl Fn(&Proxy, usize)) -> Run {
    let history = cluster.dir.join("history.jsonl");
    let opts = BenchOptions { op_timeout: OP_TIMEOUT, ..BenchOptions::recorded(&history, BENCH) };
    // The load generator's clock starts a little after this one: an instant measured here is
    // no earlier in history time than the event it marks.
    let start = Instant::now();
    let us = |t: Instant| t.duration_since(start).as_micros() as u64;
    let setup = cluster.setup.clone();
    let (positions, result) = std::thread::scope(|s| {
        let bench = s.spawn(|| run_rsl(&setup, &opts));
        let positions = (|| {
            std::thread::sleep(BEFORE_CUT);
            let stats = cluster.wait_for_stats(Duration::from_secs(3), |s| leader_among(s, &[0, 1, 2]).is_some())?;
            let (old_leader, old_view) = leader_among(&stats, &[0, 1, 2]).unwrap();
            let others: Vec<usize> = (0..3).filter(|&i| i != old_leader).collect();
            let cut_at = Instant::now();
            cut(proxy, old_leader);
            let stats = cluster
                .wait_for_stats(ELECTION_LIMIT, |s| leader_among(s, &others).is_some_and(|(_, v)| v > old_view))
                .map_err(|e| format!("no new leader among {others:?} within {ELECTION_LIMIT:?} of the cut: {e}"))?;
            let elected_at = Instant::now();
            let (_, new_view) = leader_among(&stats, &others).unwrap();
            // Hold the cut a while longer: the majority serves on its own for a time.
            std::thread::sleep((cut_at + MIN_CUT).saturating_duration_since(Instant::now()).max(VIEW_TIMEOUT));
            let heal_at = Instant::now();
            proxy.faults.heal();
            Ok::<_, String>((old_leader, old_view, new_view, us(cut_at), us(elected_at), us(heal_at)))
        })();
        // On an early error, still wait for the load (it is bounded by BENCH).
        (positions, bench.join().unwrap())
    });
    let (old_leader, old_view, new_view, cut_us, elected_us, heal_us) =
        positions.unwrap_or_else(|e| panic!("{e}\n{}", proxy.counters));
    let result = result.unwrap();
    assert_linearizable(&history);
    Run { result, history: read_history(&history), old_leader, old_view, new_view, cut_us, elected_us, heal_us }
}

const VIEW_TIMEOUT: Duration = Duration::from_millis(VIEW_TIMEOUT_MS);

/// The checks every healed partition must pass; `what` names the case in messages.
fn assert_healed_without_anomalies(what: &str, proxy: &Proxy, cluster: &Cluster, run: &Run) {
    let ctx = format!(
        "{what}: {}; {}; leader {} of view {:?} cut at {} ms, view {:?} elected at {} ms, healed at {} ms",
        run.result.summary(),
        proxy.counters,
        run.old_leader,
        run.old_view,
        run.cut_us / 1000,
        run.new_view,
        run.elected_us / 1000,
        run.heal_us / 1000
    );
    assert!(run.result.ops > 100, "{ctx}");
    assert!(proxy.counters.dropped.load(std::sync::atomic::Ordering::Relaxed) > 0, "the cut dropped nothing: {ctx}");
    let end_us = run.result.elapsed.as_micros() as u64;
    assert!(run.heal_us + AFTER_HEAL.as_micros() as u64 <= end_us, "the load ended too soon after the heal: {ctx}");
    // The majority served during the cut, once it had its new leader.
    let during = completed_between(&run.history, run.cut_us, run.heal_us.saturating_sub(100_000));
    assert!(during > 0, "no operation invoked during the cut completed before the heal: {ctx}");
    // Service after the heal: prompt, and nothing invoked after it was left hanging.
    let resumed = first_completion_after(&run.history, run.heal_us).expect(&ctx);
    let gap_ms = (resumed - run.heal_us) / 1000;
    assert!(gap_ms < 2 * VIEW_TIMEOUT_MS, "service resumed {gap_ms} ms after the heal: {ctx}");
    let after = completed_between(&run.history, run.heal_us, u64::MAX);
    assert!(after > 20, "only {after} operations completed after the heal: {ctx}");
    let hung: Vec<_> = run
        .history
        .iter()
        .filter(|r| r.status == RecordStatus::Timeout && r.invoke_us >= run.heal_us)
        // Operations still outstanding when the load stopped are recorded as timeouts too.
        .filter(|r| r.invoke_us + OP_TIMEOUT.as_micros() as u64 <= end_us)
        .collect();
    assert!(hung.is_empty(), "operations invoked after the heal timed out: {hung:?}: {ctx}");
    // The longest time without a completion, from the cut on: the failover's unavailability.
    let mut done: Vec<u64> = run.history.iter().filter_map(|r| r.complete_us).filter(|&c| c >= run.cut_us).collect();
    done.push(run.cut_us);
    done.sort_unstable();
    let stall_ms = done.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0) / 1000;
    assert!(stall_ms < 3 * VIEW_TIMEOUT_MS, "no operation completed for {stall_ms} ms after the cut: {ctx}");
    // The old leader rejoins: every replica ends in one view, newer than the cut one, and
    // executes the same operations once the load has stopped.
    let settled = cluster.wait_for_stats(Duration::from_secs(5), |s| {
        let Some(first) = s[0] else { return false };
        first.view >= run.new_view
            && s.iter().all(|x| x.is_some_and(|x| x.view == first.view && x.executed == first.executed))
    });
    let settle_start = Instant::now();
    settled.unwrap_or_else(|e| panic!("the replicas did not converge after the heal: {e}: {ctx}"));
    let settled_ms = settle_start.elapsed().as_millis();
    // And a fresh client is served.
    let mut c = RslClient::connect(&cluster.setup).unwrap();
    c.put(b"after-the-heal", b"yes", Duration::from_secs(5)).expect(&ctx);
    assert_eq!(c.get(b"after-the-heal", Duration::from_secs(5)).expect(&ctx).as_deref(), Some(&b"yes"[..]));
    eprintln!(
        "{ctx}; longest stall {stall_ms} ms, first completion {gap_ms} ms after the heal, \
         replicas in step (waited {settled_ms} ms for it)"
    );
}

#[test]
fn a_leader_cut_off_from_both_peers_is_replaced_and_the_healed_cluster_has_no_anomalies() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (proxy, cluster) = proxied_cluster("partition-symmetric");
    // The clients still reach every replica, the cut-off leader included.
    let run = partition_under_load(&proxy, &cluster, |p, leader| {
        let others: Vec<Node> = (0..3).filter(|&i| i != leader).map(Node::Replica).collect();
        p.faults.cut(&[Node::Replica(leader)], &others);
    });
    assert_healed_without_anomalies("symmetric cut", &proxy, &cluster, &run);
}

#[test]
fn a_leader_that_cannot_send_to_its_peers_is_replaced_and_the_healed_cluster_has_no_anomalies() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (proxy, cluster) = proxied_cluster("partition-one-way");
    // One way only: the leader hears its peers and the clients, nobody hears the leader.
    let run = partition_under_load(&proxy, &cluster, |p, leader| {
        for i in (0..3).filter(|&i| i != leader) {
            p.faults.set_one_way(Node::Replica(leader), Node::Replica(i), true);
        }
        p.faults.set_one_way(Node::Replica(leader), Node::Clients, true);
    });
    assert_healed_without_anomalies("one-way cut", &proxy, &cluster, &run);
}

#[test]
fn the_proxy_passes_traffic_and_its_fault_table_cuts_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (proxy, cluster) = proxied_cluster("partition-proxy");
    let mut c = RslClient::connect(&cluster.setup).unwrap();
    c.put(b"k", b"v", Duration::from_secs(5)).unwrap();
    // Clients cut from every replica: nothing answers.
    let all: Vec<Node> = (0..3).map(Node::Replica).collect();
    proxy.faults.cut(&[Node::Clients], &all);
    assert!(c.get(b"k", Duration::from_millis(800)).is_err(), "a reply crossed a cut");
    proxy.faults.heal();
    assert_eq!(c.get(b"k", Duration::from_secs(5)).unwrap().as_deref(), Some(&b"v"[..]));
    // The CLI, a separate process with its own client, goes through the proxy too.
    let (ok, out, err) = crate::support::fleet(&["rsl", "get", "--config", cluster.config.to_str().unwrap(), "k"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "v");
}

#[test]
fn stats_lines_parse() {
    let line = "\u{1b}[2m2026-01-01T00:00:00Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m view=(3,2) leader=true executed=41 \
                next_opn=42 truncation=0 queued=0 in=1 out=2";
    assert_eq!(parse_stats(line), Some(StatsLine { view: (3, 2), leader: true, executed: 41 }));
    assert_eq!(parse_stats("replica 0 serving on 127.0.0.1:1"), None);
}

#[test]
fn serve_explains_an_address_it_cannot_bind() {
    let dir = fleet_cli::procs::scratch_dir("partition-bind").unwrap();
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let ports = fleet_cli::procs::free_udp_ports(1).unwrap();
    let config = dir.join("one.toml");
    std::fs::write(
        &config,
        format!("[rsl]\nreplicas = [\"127.0.0.1:{}\"]\n[kv]\nhosts = [\"127.0.0.1:{}\"]\n", ports[0], ports[0]),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    for kind in ["rsl", "kv"] {
        // In use, and not an address of this machine (TEST-NET-1): a sentence naming it.
        for (bind, hint) in [(taken.as_str(), "another server"), ("192.0.2.1:7000", "one of this machine's")] {
            let (ok, _, err) = crate::support::fleet(&[kind, "serve", "--config", config, "--id", "0", "--bind", bind]);
            assert!(!ok, "{kind} serve --bind {bind} started");
            assert!(err.contains(&format!("cannot listen on {bind}")) && err.contains(hint), "{err}");
            assert!(!err.contains("panicked"), "{err}");
        }
        let (ok, _, err) =
            crate::support::fleet(&[kind, "serve", "--config", config, "--id", "0", "--bind", "nowhere"]);
        assert!(!ok);
        assert!(err.contains("--bind"), "{err}");
    }
}
