//! `--log-format json`: every log line a server writes is one JSON object with a timestamp,
//! a level and the message.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::FLEET;
use fleet_cli::procs::{free_udp_ports, scratch_dir, Children};

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = scratch_dir("log-format").unwrap();
    let port = free_udp_ports(1).unwrap()[0];
    let config = dir.join("one.toml");
    std::fs::write(&config, format!("[rsl]\nreplicas = [\"127.0.0.1:{port}\"]\nheartbeat_period_ms = 50\n")).unwrap();
    let log = dir.join("replica.log");
    let mut children = Children::default();
    let args = ["rsl", "serve", "--config", config.to_str().unwrap(), "--id", "0", "-v", "--log-format", "json"];
    let child = children.spawn(Path::new(FLEET), &args, &log).unwrap();
    // The stats line comes once a second: wait for two (at most 10 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let json: Vec<String> = text.lines().filter(|l| l.starts_with('{')).map(str::to_string).collect();
        if json.iter().filter(|l| l.contains("executed=")).count() >= 2 || Instant::now() >= deadline {
            break (text, json);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    children.kill(child);
    let (text, json) = lines;
    assert!(json.len() >= 2, "no JSON log lines:\n{text}");
    let mut stats_lines = 0;
    for line in &json {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{line}");
        stats_lines += usize::from(v["fields"]["message"].as_str().unwrap().contains("executed="));
    }
    assert!(stats_lines >= 1, "the stats line is among them:\n{text}");
    // Besides the JSON lines, only the start-up banner (stdout) is in the log.
    let other: Vec<&str> = text.lines().filter(|l| !l.starts_with('{')).collect();
    assert!(other.len() <= 1 && other.iter().all(|l| l.contains("serving on")), "{other:?}");
}
