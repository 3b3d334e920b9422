//! Real `fleet kv serve` processes on 127.0.0.1 and many short-lived clients: a host's
//! client table never fills for good, refusals reach the user as refusals, and a host index
//! outside the cluster is an error. Every wait is bounded; children are SIGKILLed at the end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::support::kv::write_kv_config;
use crate::support::{fleet, FLEET};
use fleet_cli::procs::{free_udp_ports, scratch_dir, Children, ScratchDir};
use fleet_engine::kv::{Frame, Refusal};
use fleet_engine::wire::{self, Protocol};
use fleet_io_std::kv::KvBlockingClient;

/// Short-lived clients in the churn test: about five times a std host's peer table (1,024).
const CLIENTS: u64 = 5_000;
/// Threads running them.
const THREADS: u64 = 4;

/// Three `fleet kv serve` processes (host 0 with `-v`: a stats line per second in its log),
/// and their scratch directory (removed when the guard drops).
fn start_kv_cluster(tag: &str) -> (Children, fleet_io_std::KvSetup, PathBuf, PathBuf, ScratchDir) {
    let dir = scratch_dir(tag).unwrap();
    let (file, config) = write_kv_config(&dir);
    let mut children = Children::default();
    for id in 0..3 {
        let log = dir.join(format!("kv-{id}.log"));
        let id_s = id.to_string();
        let mut args = vec!["kv", "serve", "--config", config.to_str().unwrap(), "--id", &id_s];
        if id == 0 {
            args.push("-v");
        }
        children.spawn(Path::new(FLEET), &args, &log).unwrap();
    }
    let setup = file.kv().unwrap();
    let mut c = KvBlockingClient::connect(&setup).unwrap();
    c.set(u64::MAX - 1, b"ready", Duration::from_secs(10)).expect("the KV cluster comes up within 10 s");
    let log = dir.join("kv-0.log");
    (children, setup, config, log, dir)
}

/// The highest `evicted: N` host 0 logged in a stats line.
fn evicted_in_log(log: &Path) -> u64 {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.match_indices("evicted: ")
        .filter_map(|(i, m)| {
            let rest = &text[i + m.len()..];
            rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn five_thousand_short_lived_clients_do_not_fill_a_hosts_table_and_the_next_one_is_served() {
    let started = Instant::now();
    let (_children, setup, config, log, _dir) = start_kv_cluster("kv-churn");
    let done = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (setup, done) = (&setup, &done);
            s.spawn(move || {
                for i in (t..CLIENTS).step_by(THREADS as usize) {
                    // A new client on a new UDP socket (a new port), one operation, gone.
                    let mut c = KvBlockingClient::connect(setup).unwrap();
                    let key = 1_000_000 + i;
                    let r = match i % 2 {
                        0 => c.set(key, format!("v{i}").as_bytes(), Duration::from_secs(5)),
                        _ => c.get(key - 1, Duration::from_secs(5)).map(|_| ()),
                    };
                    r.unwrap_or_else(|e| panic!("client {i}: {e}"));
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(done.load(Ordering::Relaxed), CLIENTS);
    // The next new client is served, by the library and by the CLI.
    let mut c = KvBlockingClient::connect(&setup).unwrap();
    c.set(7, b"after", Duration::from_secs(5)).expect("a new client after 5,000 is served");
    assert_eq!(c.get(7, Duration::from_secs(5)).unwrap().as_deref(), Some(&b"after"[..]));
    assert_eq!(c.get(1_000_000 + 4_998, Duration::from_secs(5)).unwrap().as_deref(), Some(&b"v4998"[..]));
    let config = config.to_str().unwrap();
    let (ok, out, err) = fleet(&["kv", "get", "--config", config, "7"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "after");
    let (ok, out, err) = fleet(&["bench", "kv", "--config", config, "--clients", "4", "--duration-s", "1", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(v["ops"].as_u64().unwrap() > 0 && v["errors"].as_u64() == Some(0), "{out}");
    // Host 0 served every client and evicted thousands (its stats line comes once a second;
    // a port the system handed out again is the same endpoint, a restarted client, which
    // takes no new slot).
    const THOUSANDS: u64 = 2_000;
    let deadline = Instant::now() + Duration::from_secs(3);
    while evicted_in_log(&log) < THOUSANDS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let evicted = evicted_in_log(&log);
    assert!(evicted >= THOUSANDS, "host 0 evicted {evicted} clients");
    eprintln!("{CLIENTS} short-lived clients, {evicted} evicted by host 0, in {:.1?}", started.elapsed());
}

/// A UDP "host" that refuses every message with `reason` for `for_ms`; a config naming it.
fn refusing_host(dir: &Path, reason: Refusal, for_ms: u64) -> (PathBuf, std::thread::JoinHandle<()>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    let config = dir.join("refusing.toml");
    std::fs::write(&config, format!("[kv]\nhosts = [\"127.0.0.1:{port}\"]\n")).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let until = Instant::now() + Duration::from_millis(for_ms);
    let thread = std::thread::spawn(move || {
        let mut buf = [0u8; 9000];
        while Instant::now() < until {
            let Ok((n, from)) = socket.recv_from(&mut buf) else { continue };
            if let Ok(Frame::Single { seqno, .. }) = wire::decode::<Frame<'_>>(Protocol::Kv, &buf[..n]) {
                let mut out = [0u8; 64];
                let len = wire::encode(Protocol::Kv, &Frame::Refused { seqno, reason }, &mut out).unwrap();
                let _ = socket.send_to(&out[..len], from);
            }
        }
    });
    (config, thread)
}

#[test]
fn a_refusing_host_is_reported_as_refusing_by_the_cli_and_counted_by_the_bench() {
    let dir = scratch_dir("kv-refusing").unwrap();
    let (config, host) = refusing_host(&dir, Refusal::TooManyPeers, 9_000);
    let config = config.to_str().unwrap();
    let (ok, _, err) = fleet(&["kv", "get", "--config", config, "1"]);
    assert!(!ok);
    assert!(err.contains("refused the request (TooManyPeers"), "{err}");
    assert!(!err.contains("no answer from the cluster") && !err.contains("panicked"), "{err}");
    let (ok, out, err) = fleet(&["bench", "kv", "--config", config, "--clients", "2", "--duration-s", "1", "--json"]);
    assert!(!ok, "a run that completed nothing is an error: {out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!((v["ops"].as_u64(), v["refused"].as_u64(), v["errors"].as_u64()), (Some(0), Some(2), Some(2)), "{out}");
    assert!(err.contains("no operation completed") && err.contains("2 kept being refused"), "{err}");
    host.join().unwrap();
}

#[test]
fn kv_shard_via_a_host_outside_the_cluster_is_an_error_naming_it() {
    let dir = scratch_dir("kv-shard-via").unwrap();
    let ports = free_udp_ports(3).unwrap();
    let hosts: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    let config = dir.join("kv.toml");
    std::fs::write(&config, format!("[kv]\nhosts = [{}]\n", hosts.join(", "))).unwrap();
    let config = config.to_str().unwrap();
    let (ok, out, err) =
        fleet(&["kv", "shard", "--config", config, "--lo", "0", "--hi", "10", "--to", "1", "--via", "9"]);
    assert!(!ok, "{out}");
    assert!(err.contains("--via 9") && err.contains("there is no KV host 9; the hosts are 0 to 2"), "{err}");
    assert!(!out.contains("ok"));
    let (ok, _, err) = fleet(&["kv", "shard", "--config", config, "--lo", "0", "--to", "3"]);
    assert!(!ok);
    assert!(err.contains("--to 3") && err.contains("0 to 2"), "{err}");
    // An empty range is refused before anything is sent (nobody runs this cluster).
    let (ok, _, err) = fleet(&["kv", "shard", "--config", config, "--lo", "10", "--hi", "5", "--to", "1"]);
    assert!(!ok);
    assert!(err.contains("--lo 10 --hi 5: the range is empty"), "{err}");
}
