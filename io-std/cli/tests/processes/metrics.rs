//! `--metrics ADDR`: a replica's Prometheus page, scraped over HTTP while clients write; the
//! executed-operations counter grows with the load, and every request is timed once. Bounded; the child is SIGKILLed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::FLEET;
use fleet_cli::procs::{free_udp_ports, scratch_dir, Children};
use fleet_io_std::rsl::RslClient;
use fleet_io_std::ClusterFile;

/// `GET /metrics`, retried for up to 10 s while the server starts.
fn scrape(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
            let mut page = String::new();
            s.read_to_string(&mut page).unwrap();
            if page.contains("fleet_rsl_executed") {
                return page;
            }
        }
        assert!(Instant::now() < deadline, "no metrics page within 10 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn value(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} not in:\n{page}"))
        .parse()
        .unwrap()
}

#[test]
fn the_executed_counter_grows_under_load() {
    let dir = scratch_dir("metrics").unwrap();
    let ports = free_udp_ports(2).unwrap();
    let mut file = ClusterFile::local(1, 0);
    file.kv = None;
    file.rsl.as_mut().unwrap().replicas = vec![format!("127.0.0.1:{}", ports[0])];
    let config = dir.join("one.toml");
    std::fs::write(&config, file.to_toml()).unwrap();
    let metrics = format!("127.0.0.1:{}", ports[1]);
    let mut children = Children::default();
    let args = ["rsl", "serve", "--config", config.to_str().unwrap(), "--id", "0", "--metrics", &metrics];
    let child = children.spawn(Path::new(FLEET), &args, &dir.join("replica.log")).unwrap();
    let before = scrape(ports[1]);
    let setup = file.rsl().unwrap();
    let mut client = RslClient::connect(&setup).unwrap();
    for i in 0..200u32 {
        client.put(&i.to_be_bytes(), b"v", Duration::from_secs(5)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(600)); // two publishing periods
    let after = scrape(ports[1]);
    children.kill(child);
    let (e0, e1) = (value(&before, "fleet_rsl_executed"), value(&after, "fleet_rsl_executed"));
    assert!(e1 >= e0 + 200.0, "executed {e0} -> {e1}");
    assert_eq!(value(&after, "fleet_rsl_leader"), 1.0);
    assert!(value(&after, "fleet_rsl_in") > value(&before, "fleet_rsl_in"));
    let steps = value(&after, "fleet_rsl_step_seconds_count");
    assert!(steps >= 200.0, "every request is at least one step: {steps}");
    assert!(after.contains("# TYPE fleet_rsl_step_seconds histogram"), "{after}");
    // The spin window's counters are on the page (their values depend on timing).
    let spun = value(&after, "fleet_rsl_spin_hits") + value(&after, "fleet_rsl_spin_misses");
    assert!(spun.is_finite() && spun >= 0.0, "spin counters: {spun}");
    // Every put is timed once from its arrival to its reply (a retransmission answered
    // from the reply cache would add one).
    let requests = value(&after, "fleet_rsl_request_seconds_count");
    assert!((200.0..=220.0).contains(&requests), "requests timed: {requests}");
    assert_eq!(value(&after, "fleet_rsl_request_seconds_bucket{le=\"+Inf\"}"), requests);
    let mean_s = value(&after, "fleet_rsl_request_seconds_sum") / requests;
    // Each put completed within its 5 s timeout: a larger mean is a unit error.
    assert!(mean_s > 0.0 && mean_s < 5.0, "mean request latency {mean_s} s");
}
