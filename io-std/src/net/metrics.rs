//! Prometheus metrics (`fleet rsl serve --metrics ADDR`, `fleet kv serve --metrics ADDR`):
//! the event loop publishes a text page every [`PUBLISH_EVERY`]; an HTTP thread serves the
//! latest page at `GET /metrics`, never touching the host.
//!
//! What the page holds, for a service `rsl` or `kv`:
//! - `fleet_<service>_<field>`: every numeric field of the host's stats line (the one `-v`
//!   logs), under its own name: counters such as `in`, `out`, `executed`, `invalid`,
//!   `queries`, `fsyncs`; positions such as `truncation` and `queued`; `leader` is 1 or 0,
//!   `view_seqno` and `view_leader` come from `view=(seqno,leader)`;
//! - `fleet_<service>_syscalls`: system calls for datagrams;
//! - `fleet_<service>_step_seconds`: a histogram of the time one loop iteration spends
//!   handling what it received and settling its output;
//! - `fleet_<service>_request_seconds`: a histogram of the time from a client's datagram
//!   arriving to the first datagram this server sends back to that client (a request's
//!   server-side latency, protocol rounds and syncs included; [`super::latency`]).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use fleet_engine::Endpoint;

use super::latency::Histogram;

/// How often the event loop republishes the page.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(250);

/// Where the event loop publishes, and which service it is.
#[derive(Clone, Debug)]
pub struct MetricsBoard {
    /// `rsl` or `kv`: the metric names' prefix after `fleet_`.
    pub service: &'static str,
    /// The cluster's members (their datagrams are not client requests and are not timed).
    pub members: Vec<Endpoint>,
    page: Arc<Mutex<String>>,
}

impl MetricsBoard {
    /// An empty board for `service`.
    pub fn new(service: &'static str) -> Self {
        MetricsBoard { service, members: Vec::new(), page: Arc::new(Mutex::new(String::new())) }
    }

    /// The latest page.
    pub fn page(&self) -> String {
        self.page.lock().map(|p| p.clone()).unwrap_or_default()
    }

    fn publish(&self, page: String) {
        if let Ok(mut p) = self.page.lock() {
            *p = page;
        }
    }
}

/// Renders and publishes the page for a host whose stats line is `stats_line`.
pub fn publish(board: &MetricsBoard, stats_line: &str, syscalls: u64, steps: &Histogram, requests: &Histogram) {
    let svc = board.service;
    let mut page = String::new();
    for (field, value) in numeric_fields(stats_line) {
        let _ = writeln!(page, "# TYPE fleet_{svc}_{field} untyped\nfleet_{svc}_{field} {value}");
    }
    let _ = writeln!(page, "# TYPE fleet_{svc}_syscalls counter\nfleet_{svc}_syscalls {syscalls}");
    let help = "Time one event-loop iteration spends handling and settling.";
    histogram(&mut page, &format!("fleet_{svc}_step_seconds"), help, steps);
    let help = "Time from a client's datagram arriving to the first datagram back to it.";
    histogram(&mut page, &format!("fleet_{svc}_request_seconds"), help, requests);
    board.publish(page);
}

/// Appends `h` as Prometheus histogram `name`.
fn histogram(page: &mut String, name: &str, help: &str, h: &Histogram) {
    let _ = writeln!(page, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (bound, cumulative) in h.cumulative() {
        match bound {
            Some(b) => writeln!(page, "{name}_bucket{{le=\"{b}\"}} {cumulative}"),
            None => writeln!(page, "{name}_bucket{{le=\"+Inf\"}} {cumulative}"),
        }
        .unwrap_or(());
    }
    let _ = writeln!(page, "{name}_sum {}\n{name}_count {}", h.sum_s(), h.count());
}

/// The numeric `key=value` fields of a stats line, with `leader=true` as 1 and
/// `view=(s,l)` as `view_seqno` and `view_leader`.
fn numeric_fields(line: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for token in line.split_whitespace() {
        let Some((key, value)) = token.split_once('=') else { continue };
        let key: String = key.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        match value {
            "true" => out.push((key, 1.0)),
            "false" => out.push((key, 0.0)),
            v if v.starts_with('(') => {
                let inner = v.trim_start_matches('(').trim_end_matches(')');
                if let Some((a, b)) = inner.split_once(',') {
                    if let (Ok(a), Ok(b)) = (a.parse::<f64>(), b.parse::<f64>()) {
                        out.push((format!("{key}_seqno"), a));
                        out.push((format!("{key}_leader"), b));
                    }
                }
            }
            v => {
                if let Ok(n) = v.parse::<f64>() {
                    out.push((key, n));
                }
            }
        }
    }
    out
}

/// Serves `board` at `http://addr/metrics` on a thread of its own until `stop` is set;
/// binding errors are returned here.
pub fn serve_metrics(addr: SocketAddr, board: MetricsBoard, stop: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> {
    let server = tiny_http::Server::http(addr).map_err(|e| std::io::Error::other(format!("{addr}: {e}")))?;
    Ok(std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(200)) else { continue };
            let response = match request.url() {
                "/metrics" => {
                    let page = tiny_http::Response::from_string(board.page());
                    match "Content-Type: text/plain; version=0.0.4".parse::<tiny_http::Header>() {
                        Ok(header) => page.with_header(header),
                        Err(()) => page,
                    }
                }
                _ => tiny_http::Response::from_string("fleet serves /metrics\n").with_status_code(404),
            };
            let _ = request.respond(response);
        }
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_stats_line_becomes_one_metric_per_numeric_field() {
        let board = MetricsBoard::new("rsl");
        let mut steps = Histogram::new(super::super::latency::STEP_BUCKETS_S);
        steps.record(Duration::from_micros(30));
        steps.record(Duration::from_millis(200));
        let mut requests = Histogram::new(super::super::latency::REQUEST_BUCKETS_S);
        requests.record(Duration::from_micros(700));
        publish(&board, "view=(3,1) leader=true executed=42 rejoin=asking in=7", 9, &steps, &requests);
        let page = board.page();
        for want in [
            "fleet_rsl_view_seqno 3",
            "fleet_rsl_view_leader 1",
            "fleet_rsl_leader 1",
            "fleet_rsl_executed 42",
            "fleet_rsl_in 7",
            "fleet_rsl_syscalls 9",
            "fleet_rsl_step_seconds_bucket{le=\"0.00005\"} 1",
            "fleet_rsl_step_seconds_bucket{le=\"+Inf\"} 2",
            "fleet_rsl_step_seconds_count 2",
            "fleet_rsl_request_seconds_bucket{le=\"0.0005\"} 0",
            "fleet_rsl_request_seconds_bucket{le=\"0.001\"} 1",
            "fleet_rsl_request_seconds_count 1",
        ] {
            assert!(page.contains(want), "{want} not in:\n{page}");
        }
        assert!(!page.contains("rejoin"), "non-numeric fields are left out");
    }
}
