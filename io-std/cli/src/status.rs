//! `fleet rsl status` and `fleet kv status`: every member's answer, as a table for people or
//! JSON for tools.

use fleet_engine::kv::msg::{KeyBound, KeyRange};
use fleet_engine::rsl::proposer::Phase;
use fleet_io_std::kv::{ownership, HostStatus, Ownership};
use fleet_io_std::rsl::ReplicaStatus;

/// One member's JSON object: its index, address and whether it answered, then what it
/// answered (`details`, an object), if it did.
fn member_row(id: usize, addr: std::net::SocketAddr, details: Option<serde_json::Value>) -> serde_json::Value {
    let mut row = serde_json::json!({ "id": id, "addr": addr.to_string(), "reachable": details.is_some() });
    if let (Some(serde_json::Value::Object(fields)), Some(map)) = (details, row.as_object_mut()) {
        map.extend(fields);
    }
    row
}

/// The answers as a table (or, with `json`, one JSON array), with each replica's lag behind
/// `leader` (operations the leader executed that it has not).
pub fn render(answers: &[ReplicaStatus], leader: Option<usize>, json: bool) -> String {
    let leader_ops =
        leader.and_then(|l| answers.iter().find(|a| a.id == l)).and_then(|a| a.status).map(|s| s.ops_complete);
    let phase = |p: Phase| match p {
        Phase::Idle => "idle",
        Phase::One => "1",
        Phase::Two => "2",
    };
    if json {
        let rows: Vec<serde_json::Value> = answers
            .iter()
            .map(|a| {
                member_row(
                    a.id,
                    a.addr,
                    a.status.map(|s| {
                        serde_json::json!({
                            "view": [s.view.seqno, s.view.proposer],
                            "leader": s.is_leader,
                            "phase": phase(s.phase),
                            "ops_complete": s.ops_complete,
                            "log_truncation_point": s.log_truncation_point,
                            "lag": leader_ops.map(|l| l.saturating_sub(s.ops_complete)),
                            "queued": s.queued,
                            "pending_queries": s.pending_queries,
                            "rejoining": s.rejoining,
                            "epoch": s.epoch,
                            "retired": s.retired,
                            "durable": s.durable,
                        })
                    }),
                )
            })
            .collect();
        return serde_json::Value::Array(rows).to_string();
    }
    let mut out = format!(
        "{:<8} {:<22} {:<8} {:<7} {:<6} {:>10} {:>11} {:>6} {:>7} {}\n",
        "replica", "address", "view", "leader", "phase", "executed", "truncation", "lag", "queued", "durable"
    );
    for a in answers {
        let line = match a.status {
            None => format!("{:<8} {:<22} unreachable\n", a.id, a.addr.to_string()),
            Some(s) => format!(
                "{:<8} {:<22} {:<8} {:<7} {:<6} {:>10} {:>11} {:>6} {:>7} {}{}\n",
                a.id,
                a.addr.to_string(),
                format!("({},{})", s.view.seqno, s.view.proposer),
                if s.is_leader { "yes" } else { "no" },
                phase(s.phase),
                s.ops_complete,
                s.log_truncation_point,
                leader_ops.map_or("-".to_string(), |l| l.saturating_sub(s.ops_complete).to_string()),
                s.queued,
                if s.durable { "yes" } else { "no" },
                match (s.retired, s.rejoining) {
                    (true, _) => " (retired)",
                    (false, true) => " (rejoining)",
                    (false, false) => "",
                },
            ),
        };
        out.push_str(&line);
    }
    match leader {
        Some(l) => out.push_str(&format!("leader: replica {l}")),
        None => out.push_str("leader: none (no replica answered that it leads)"),
    }
    out
}

/// A key range as people read it: `[lo, hi)`, `end` past the last key.
fn range_text(r: &KeyRange) -> String {
    let bound = |b: KeyBound| match b {
        KeyBound::Zero => "0".to_string(),
        KeyBound::Key(k) => k.to_string(),
        KeyBound::Inf => "end".to_string(),
    };
    format!("[{}, {})", bound(r.lo), bound(r.hi))
}

/// `fleet kv status`: every host's answer as a table, then who owns which keys (or, with
/// `json`, one JSON object with `hosts` and `ranges`).
pub fn render_kv(answers: &[HostStatus], json: bool) -> String {
    let Ownership { owned, moving } = ownership(answers);
    let gaps = ownership(answers).unowned();
    if json {
        let hosts: Vec<serde_json::Value> = answers
            .iter()
            .map(|a| {
                member_row(
                    a.id,
                    a.addr,
                    a.status.map(|s| {
                        serde_json::json!({
                            "joining": s.joining,
                            "durable": s.durable,
                            "keys": s.keys,
                            "key_capacity": s.key_capacity,
                            "map_runs": s.map_runs,
                            "channels": s.channels,
                            "unacked": s.unacked,
                            "transfers_out": s.transfers_out,
                            "transfers_in": s.transfers_in,
                            "logged_steps": s.logged_steps,
                            "datagrams_in": s.datagrams_in,
                            "gets": s.counters.gets,
                            "sets": s.counters.sets,
                            "redirects": s.counters.redirects,
                            "errors": s.counters.errors,
                            "refusals_sent": s.counters.refusals_sent,
                            "shards": s.counters.shards,
                            "evicted": s.counters.evicted,
                            "ranges_complete": a.complete,
                        })
                    }),
                )
            })
            .collect();
        let bound = |b: KeyBound| match b {
            KeyBound::Zero => serde_json::json!(0),
            KeyBound::Key(k) => serde_json::json!(k),
            KeyBound::Inf => serde_json::Value::Null,
        };
        let ranges: Vec<serde_json::Value> = owned
            .iter()
            .map(|(r, o)| serde_json::json!({ "lo": bound(r.lo), "hi": bound(r.hi), "owner": o }))
            .chain(moving.iter().map(|m| {
                serde_json::json!({ "lo": bound(m.range.lo), "hi": bound(m.range.hi), "moving_from": m.from, "moving_to": m.to })
            }))
            .chain(gaps.iter().map(|r| serde_json::json!({ "lo": bound(r.lo), "hi": bound(r.hi), "owner": null })))
            .collect();
        return serde_json::json!({ "hosts": hosts, "ranges": ranges }).to_string();
    }
    let mut out = format!(
        "{:<5} {:<22} {:<8} {:>9} {:>5} {:>8} {:>7} {:>9} {:>10} {:>10} {:>9} {}\n",
        "host",
        "address",
        "state",
        "keys",
        "runs",
        "channels",
        "unacked",
        "transfers",
        "gets",
        "sets",
        "redirects",
        "durable"
    );
    for a in answers {
        let line = match a.status {
            None => format!("{:<5} {:<22} unreachable\n", a.id, a.addr.to_string()),
            Some(s) => format!(
                "{:<5} {:<22} {:<8} {:>9} {:>5} {:>8} {:>7} {:>9} {:>10} {:>10} {:>9} {}\n",
                a.id,
                a.addr.to_string(),
                if s.joining { "joining" } else { "serving" },
                s.keys,
                s.map_runs,
                s.channels,
                s.unacked,
                format!("{}/{}", s.transfers_out, s.transfers_in),
                s.counters.gets,
                s.counters.sets,
                s.counters.redirects,
                if s.durable { "yes" } else { "no" },
            ),
        };
        out.push_str(&line);
    }
    out.push_str("ranges:\n");
    let mut lines: Vec<(KeyBound, String)> = owned
        .iter()
        .map(|(r, o)| (r.lo, format!("  {:<28} host {o}\n", range_text(r))))
        .chain(moving.iter().map(|m| {
            (m.range.lo, format!("  {:<28} moving: host {} -> host {}\n", range_text(&m.range), m.from, m.to))
        }))
        .chain(gaps.iter().map(|r| {
            (r.lo, format!("  {:<28} no host reports it (lost, or its owner did not answer)\n", range_text(r)))
        }))
        .collect();
    lines.sort_by_key(|(lo, _)| if *lo == KeyBound::Key(0) { KeyBound::Zero } else { *lo });
    for (_, line) in lines {
        out.push_str(&line);
    }
    out.pop();
    out
}
