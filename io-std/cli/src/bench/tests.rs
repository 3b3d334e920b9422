//! The load generator against a real KV host.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::procs::free_udp_ports;
use fleet_engine::kv::KvConfig;
use fleet_engine::{Endpoint, Instant, Outbox};
use fleet_io_std::kv::spawn_kv;
use fleet_proofs::history::HistoryRecord;

/// The real IronKV client, but the load thread is slow right after the request is
/// queued: it models the thread being descheduled by the `send_to` that wakes the server.
struct SlowAfterSubmit(KvLoad, Duration);

impl LoadClient for SlowAfterSubmit {
    fn start(&mut self, now: Instant, ops: &[PlannedOp<'_>], out: &mut Outbox<'_>) -> usize {
        let started = self.0.start(now, ops, out);
        std::thread::sleep(self.1);
        started
    }
    fn on_datagram(
        &mut self,
        now: Instant,
        from: Endpoint,
        bytes: &[u8],
        out: &mut Outbox<'_>,
        results: &mut Vec<OpResult>,
    ) -> bool {
        self.0.on_datagram(now, from, bytes, out, results)
    }
    fn tick(&mut self, now: Instant, out: &mut Outbox<'_>) {
        self.0.tick(now, out);
    }
    fn next_deadline(&self) -> Instant {
        self.0.next_deadline()
    }
    fn cancel(&mut self) {
        self.0.cancel();
    }
}

/// Regression: the bench took an operation's invocation time after sending its request,
/// so a load thread descheduled after the send recorded an invocation later than the
/// operation's effect, and the history checker reported linearizability violations (a
/// Get returning a value "before" its Set was invoked, or a stale value after a Set that
/// "completed before" the Get) that the cluster never committed.
#[test]
fn invocation_time_precedes_the_request_leaving() {
    let port = free_udp_ports(1).unwrap()[0];
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = KvConfig::new(&[to_endpoint(addr)]).unwrap();
    let setup = KvSetup { addrs: vec![addr], config, max_keys: 1024, auth: None };
    let server = spawn_kv(&setup, 0, None).unwrap();
    let dir = crate::procs::scratch_dir("bench-invoke").unwrap();
    let history = dir.join("history.jsonl");
    let opts = BenchOptions {
        clients: 1,
        // Long enough to outlast the server thread's start-up and a retransmission of a
        // request sent before it listened (a loaded CI machine builds big values slowly).
        duration: Duration::from_secs(2),
        value_size: 16,
        keys: 4,
        first_key: 1,
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
    let eps = vec![to_endpoint(addr)];
    let pause = Duration::from_millis(5);
    let result = run_load(&setup.addrs, None, &opts, |_| {
        StdKvClient::new(&eps, wall_clock_us(), setup.config.params)
            .map(|c| SlowAfterSubmit(KvLoad::new(c), pause))
            .map_err(|_| CallError::TooLarge)
    })
    .unwrap();
    drop(server);
    assert!(result.ops > 5, "{}", result.summary());
    let text = std::fs::read_to_string(&history).unwrap();
    for line in text.lines() {
        let r: HistoryRecord = serde_json::from_str(line).unwrap();
        let Some(done) = r.complete_us else { continue };
        assert!(
            done - r.invoke_us >= pause.as_micros() as u64,
            "operation recorded in [{}, {done}] us but its request was queued before a {pause:?} pause",
            r.invoke_us
        );
    }
}

fn kv_host(tag: &str) -> (KvSetup, fleet_io_std::net::server_thread::RunningServer, crate::procs::ScratchDir) {
    let port = free_udp_ports(1).unwrap()[0];
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = KvConfig::new(&[to_endpoint(addr)]).unwrap();
    let setup = KvSetup { addrs: vec![addr], config, max_keys: 1024, auth: None };
    let server = spawn_kv(&setup, 0, None).unwrap();
    (setup, server, crate::procs::scratch_dir(tag).unwrap())
}

fn options(history: Option<std::path::PathBuf>) -> BenchOptions {
    BenchOptions {
        clients: 3,
        duration: Duration::from_secs(20),
        value_size: 16,
        keys: 50,
        first_key: 100,
        read_pct: 50,
        fill: true,
        op_timeout: Duration::from_secs(3),
        history,
        progress: false,
        load_threads: 2,
        pipeline: 1,
        connect: true,
        share_socket: true,
    }
}

#[test]
fn a_fill_writes_every_key_once_and_stops() {
    let (setup, server, dir) = kv_host("bench-fill");
    let history = dir.join("history.jsonl");
    let result = run_kv(&setup, &options(Some(history.clone()))).unwrap();
    drop(server);
    assert_eq!((result.ops, result.errors), (50, 0), "{}", result.summary());
    assert!(result.elapsed < Duration::from_secs(10), "it stopped once every key was written");
    let mut keys: Vec<u64> = std::fs::read_to_string(&history)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<HistoryRecord>(l).unwrap())
        .inspect(|r| assert!(r.value.is_some(), "a fill only writes"))
        .map(|r| r.key)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, (100..150).collect::<Vec<u64>>());
}

#[test]
fn a_value_too_large_for_one_request_is_refused_before_the_run() {
    let (setup, server, _) = kv_host("bench-too-large");
    let opts = BenchOptions { value_size: 100_000, fill: false, duration: Duration::from_secs(1), ..options(None) };
    let started = std::time::Instant::now();
    assert!(matches!(run_kv(&setup, &opts), Err(CallError::TooLarge)));
    assert!(started.elapsed() < Duration::from_millis(500), "refused at once, not after the run");
    drop(server);
}

/// A pipelined run (`--pipeline 8`) against three in-process replicas: groups of reads and
/// writes complete, and the recorded history, each group's operations overlapping in time,
/// is linearizable. Seen failing with the bench pairing each group's replies to the wrong
/// operations (reversed), which the history checker reports at once.
#[test]
fn a_pipelined_run_completes_groups_and_records_a_linearizable_history() {
    let ports = free_udp_ports(3).unwrap();
    let mut file = fleet_io_std::ClusterFile::local(3, 0);
    file.kv = None;
    file.rsl.as_mut().unwrap().replicas = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let setup = file.rsl().unwrap();
    let servers: Vec<_> = (0..3).map(|id| fleet_io_std::rsl::spawn_rsl(&setup, id, None).unwrap()).collect();
    let dir = crate::procs::scratch_dir("bench-pipeline").unwrap();
    let history = dir.join("history.jsonl");
    let opts = BenchOptions {
        clients: 4,
        duration: Duration::from_secs(2),
        keys: 8,
        fill: false,
        pipeline: 8,
        // Large enough that a group of eight reads does not fit the 1,100-byte reply: the
        // reads without room are asked again.
        value_size: 200,
        ..options(Some(history.clone()))
    };
    let result = run_rsl(&setup, &opts).unwrap();
    drop(servers);
    assert!(result.ops > 200, "{}", result.summary());
    assert_eq!(result.errors, 0, "{}", result.summary());
    let budget = fleet_proofs::Budget::time(Duration::from_secs(60));
    let report = fleet_proofs::history::check_kv_history_file(&history, &budget).unwrap();
    assert_eq!(report.verdict(), fleet_proofs::history::Verdict::Linearizable, "{report}");
}

#[test]
fn rsl_load_threads_follow_the_client_count_up_to_the_cpus() {
    let per_thread = CLIENTS_PER_RSL_LOAD_THREAD;
    assert_eq!(rsl_load_threads_for(1, 2, false), 1);
    assert_eq!(rsl_load_threads_for(50, 2, false), 1);
    assert_eq!(rsl_load_threads_for(per_thread, 2, false), 1);
    assert_eq!(rsl_load_threads_for(per_thread + 1, 2, false), 2);
    assert_eq!(rsl_load_threads_for(1024, 2, false), 2, "no more threads than CPUs");
    assert_eq!(rsl_load_threads_for(1024, 8, false), 4);
    assert_eq!(rsl_load_threads_for(1024, 1, false), 1);
    assert_eq!(rsl_load_threads_for(0, 0, false), 1, "at least one thread");
    // Clients on shared sockets cost a thread less: one carries many more.
    let per_shared = CLIENTS_PER_SHARED_RSL_LOAD_THREAD;
    assert_eq!(rsl_load_threads_for(1024, 2, true), 1);
    assert_eq!(rsl_load_threads_for(per_shared, 8, true), 1);
    assert_eq!(rsl_load_threads_for(per_shared + 1, 8, true), 2);
    assert_eq!(rsl_load_threads_for(4 * per_shared, 2, true), 2, "no more threads than CPUs");
}

#[test]
fn clients_share_a_socket_only_where_it_works_and_pays() {
    let addrs = |list: &[&str]| list.iter().map(|a| a.parse().unwrap()).collect::<Vec<std::net::SocketAddr>>();
    let loopback = addrs(&["127.0.0.1:7000", "127.0.0.1:7001"]);
    assert!(shares_socket(&loopback, 2, true));
    assert!(shares_socket(&loopback, 1024, true));
    assert!(!shares_socket(&loopback, 1024, false), "--socket-per-client");
    assert!(!shares_socket(&loopback, 1, true), "a client alone keeps its own socket");
    assert!(!shares_socket(&addrs(&["127.0.0.1:7000", "192.0.2.1:7001"]), 50, true), "a server off loopback");
    assert!(!shares_socket(&addrs(&["[::1]:7000"]), 50, true), "IPv6");
}

/// An IronKV client's requests, and its own request echoed back is taken as the reply:
/// against a server that echoes, the server hears exactly the endpoints the clients are,
/// and a reply handed to the wrong client completes nothing.
struct Echo(KvLoad, Vec<u8>);

impl LoadClient for Echo {
    fn start(&mut self, now: Instant, ops: &[PlannedOp<'_>], out: &mut Outbox<'_>) -> usize {
        let started = self.0.start(now, ops, out);
        self.1 = out.iter().last().map(|(_, bytes)| bytes.to_vec()).unwrap_or_default();
        started
    }
    fn on_datagram(&mut self, _: Instant, _: Endpoint, b: &[u8], _: &mut Outbox<'_>, r: &mut Vec<OpResult>) -> bool {
        if b != self.1 {
            return false;
        }
        // The inner client still waits for a real reply: drop it, so the next one starts.
        self.0.cancel();
        r.push(OpResult::Done);
        true
    }
    fn tick(&mut self, _: Instant, _: &mut Outbox<'_>) {}
    fn next_deadline(&self) -> Instant {
        Instant::NEVER
    }
    fn cancel(&mut self) {}
}

/// Runs `clients` echo clients for half a second against a server thread that answers
/// every datagram; returns the completed operations and the endpoints the server heard.
fn echo_run(clients: usize, share_socket: bool) -> (u64, std::collections::BTreeSet<std::net::SocketAddr>) {
    let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    server.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let addr = server.local_addr().unwrap();
    let serving = std::thread::spawn(move || {
        let mut heard = std::collections::BTreeSet::new();
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = server.recv_from(&mut buf) {
            heard.insert(from);
            server.send_to(&buf[..n], from).unwrap();
        }
        heard
    });
    let opts =
        BenchOptions { clients, duration: Duration::from_millis(500), fill: false, share_socket, ..options(None) };
    let config: KvConfig<{ fleet_io_std::capacity::KV_MAX_HOSTS }> = KvConfig::new(&[to_endpoint(addr)]).unwrap();
    let result = run_load(&[addr], None, &opts, |_| {
        Ok(Echo(KvLoad::new(StdKvClient::new(&[to_endpoint(addr)], 1, config.params).unwrap()), Vec::new()))
    })
    .unwrap();
    assert_eq!(result.errors, 0, "{}", result.summary());
    (result.ops, serving.join().unwrap())
}

/// On shared sockets every client is still an endpoint of its own, and each reply finds
/// its client: seen failing with every client sending from the socket's first address
/// (one endpoint heard), and with replies handed to the wrong client (operations stall).
#[test]
fn clients_on_shared_sockets_are_endpoints_of_their_own() {
    let (ops, heard) = echo_run(5, true);
    assert!(ops >= 10, "{ops} operations");
    assert_eq!(heard.len(), 5, "{heard:?}");
    let ports: std::collections::BTreeSet<u16> = heard.iter().map(|a| a.port()).collect();
    assert_eq!(ports.len(), 2, "one socket per load thread: {heard:?}");
    for a in &heard {
        let std::net::IpAddr::V4(ip) = a.ip() else { panic!("{a}") };
        assert!(shared_socket::client_index(ip).is_some(), "{a}");
    }
    // A socket each: five ports on the servers' own address.
    let (ops, heard) = echo_run(5, false);
    assert!(ops >= 10, "{ops} operations");
    assert_eq!(heard.len(), 5, "{heard:?}");
    assert!(heard.iter().all(|a| a.ip() == std::net::Ipv4Addr::LOCALHOST), "{heard:?}");
}

/// Clients whose replicas never answer time out on schedule, again and again, while the
/// run goes on: the load thread looks at their timers when the earliest is due even when
/// nothing arrives. Seen failing with the look skipped, and with no client's timer counted
/// as due.
#[test]
fn unanswered_operations_time_out_during_the_run() {
    let silent: Vec<std::net::UdpSocket> = (0..3).map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    let mut file = fleet_io_std::ClusterFile::local(3, 0);
    file.kv = None;
    file.rsl.as_mut().unwrap().replicas = silent.iter().map(|s| s.local_addr().unwrap().to_string()).collect();
    let setup = file.rsl().unwrap();
    let opts = BenchOptions {
        clients: 2,
        duration: Duration::from_millis(1500),
        op_timeout: Duration::from_millis(300),
        ..options(None)
    };
    let result = run_rsl(&setup, &opts).unwrap();
    assert_eq!(result.ops, 0, "{}", result.summary());
    // Each client times out about every 300 ms: four or five times in 1.5 s.
    assert!(result.timeouts >= 6, "{}", result.summary());
    drop(silent);
}
