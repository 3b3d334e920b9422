//! `fleet rsl status`: every replica's answer, as a table for people or JSON for tools.

use fleet_engine::rsl::proposer::Phase;
use fleet_io_std::rsl::ReplicaStatus;

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
            .map(|a| match a.status {
                None => serde_json::json!({ "id": a.id, "addr": a.addr.to_string(), "reachable": false }),
                Some(s) => serde_json::json!({
                    "id": a.id,
                    "addr": a.addr.to_string(),
                    "reachable": true,
                    "view": [s.view.seqno, s.view.proposer],
                    "leader": s.is_leader,
                    "phase": phase(s.phase),
                    "ops_complete": s.ops_complete,
                    "log_truncation_point": s.log_truncation_point,
                    "lag": leader_ops.map(|l| l.saturating_sub(s.ops_complete)),
                    "queued": s.queued,
                    "pending_queries": s.pending_queries,
                    "rejoining": s.rejoining,
                    "durable": s.durable,
                }),
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
                if s.rejoining { " (rejoining)" } else { "" },
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
