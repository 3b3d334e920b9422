//! Careless or hostile neighbours, with real processes on 127.0.0.1: requests sent once to
//! followers and never retried must not change views. Every wait is bounded; the children
//! are SIGKILLed when the test ends, pass or fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::UdpSocket;
use std::time::Duration;

use crate::support::assert_linearizable;
use crate::support::{Cluster, ClusterOptions};
use fleet_engine::rsl::apps::kv::KvOp;
use fleet_engine::rsl::RslMsg;
use fleet_engine::wire::{self, Bytes, Protocol};

const VIEW_TIMEOUT_MS: u64 = 500;

fn cluster(tag: &str) -> Cluster {
    Cluster::start_with(&ClusterOptions { stats_lines: true, ..ClusterOptions::local(tag, VIEW_TIMEOUT_MS) })
}

/// One Get request, as a client that vanishes right after sending it would send it.
fn stray_request(key: &[u8]) -> Vec<u8> {
    let mut op = [0u8; 64];
    let n = KvOp::Get(Bytes(key)).encode(&mut op).unwrap();
    let mut buf = [0u8; 128];
    let m = wire::encode(Protocol::Rsl, &RslMsg::Request { seqno: 1, request: Bytes(&op[..n]) }, &mut buf).unwrap();
    buf[..m].to_vec()
}

#[test]
fn requests_sent_once_to_followers_change_no_view() {
    let cluster = cluster("strays");
    let stats = cluster.wait_for_stats(Duration::from_secs(5), |s| s.iter().all(Option::is_some)).unwrap();
    let view = stats[0].unwrap().view;
    let leader = usize::try_from(view.1).unwrap();
    // Ten vanishing clients, each sending one request to one follower, never to the leader.
    for i in 0..10 {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let follower = (leader + 1 + i % 2) % 3;
        socket.send_to(&stray_request(format!("stray-{i}").as_bytes()), cluster.setup.addrs[follower]).unwrap();
    }
    // Six view timeouts: long enough for followers to suspect, and for a view change.
    std::thread::sleep(Duration::from_millis(6 * VIEW_TIMEOUT_MS));
    let after = cluster.stats();
    for (i, s) in after.iter().enumerate() {
        assert_eq!(s.unwrap().view, view, "replica {i} changed view: {after:?}");
    }
    // And the leader executed them (forwarded by the followers): ten more operations.
    let executed = after[leader].unwrap().executed - stats[leader].unwrap().executed;
    assert!(executed >= 1, "the forwarded requests were executed ({executed} operations)");
}

#[test]
fn replicas_started_from_config_files_that_differ_refuse_each_other_and_one_side_serves() {
    use fleet_cli::procs::{free_udp_ports, scratch_dir, Children};
    use fleet_io_std::config::ClusterFile;
    use std::path::Path;

    let dir = scratch_dir("mismatched-configs").unwrap();
    let ports = free_udp_ports(3).unwrap();
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let write = |name: &str, order: [usize; 3]| {
        let mut file = ClusterFile::local(3, 0);
        file.kv = None;
        let rsl = file.rsl.as_mut().unwrap();
        rsl.replicas = order.iter().map(|&i| addrs[i].clone()).collect();
        rsl.baseline_view_timeout_ms = Some(VIEW_TIMEOUT_MS);
        let path = dir.join(name);
        std::fs::write(&path, file.to_toml()).unwrap();
        path
    };
    // The same three addresses; b.toml lists the first two the other way round, so a
    // process at address 1 started from b.toml believes it is replica 0, as the one at
    // address 0 does.
    let a = write("a.toml", [0, 1, 2]);
    let b = write("b.toml", [1, 0, 2]);
    let mut children = Children::default();
    let logs: Vec<_> = (0..4).map(|i| dir.join(format!("rsl-{i}.log"))).collect();
    let spawn = |children: &mut Children, config: &Path, id: usize, log: &Path| {
        let args = ["rsl", "serve", "--config", config.to_str().unwrap(), "--id", &id.to_string(), "-v"];
        children.spawn(Path::new(crate::support::FLEET), &args, log).unwrap()
    };
    // A new cluster starts once all its replicas are up; then replica 1 is restarted from
    // the wrong file, as an operator might.
    let c = &mut children;
    let first = [spawn(c, &a, 0, &logs[0]), spawn(c, &a, 1, &logs[3]), spawn(c, &a, 2, &logs[2])];
    let setup = ClusterFile::load(&a).unwrap().rsl().unwrap();
    let mut client = fleet_io_std::rsl::client::RslClient::connect(&setup).unwrap();
    client.put(b"ready", b"1", Duration::from_secs(10)).expect("the cluster serves once all three are up");
    children.kill(first[1]);
    spawn(&mut children, &b, 0, &logs[1]);
    let history = dir.join("history.jsonl");
    let opts = fleet_cli::bench::BenchOptions {
        clients: 4,
        value_size: 16,
        keys: 8,
        first_key: 1 << 40,
        op_timeout: Duration::from_secs(2),
        load_threads: 1,
        ..fleet_cli::bench::BenchOptions::recorded(&history, Duration::from_secs(4))
    };
    let result = fleet_cli::bench::run_rsl(&setup, &opts).unwrap();
    assert!(result.ops > 50, "the two replicas that agree serve: {}", result.summary());
    assert_linearizable(&history);
    let misfit = std::fs::read_to_string(&logs[1]).unwrap();
    let cluster_a = format!("{:08x}", setup.config.identity());
    assert!(
        misfit.contains("The config files differ") && misfit.contains(&format!("cluster {cluster_a}")),
        "the misconfigured replica names both clusters: {misfit}"
    );
    let agreeing = std::fs::read_to_string(&logs[0]).unwrap();
    assert!(agreeing.contains("The config files differ"), "and so do the others: {agreeing}");
}
