//! `fleet rsl member list|add|remove|replace` and `fleet rsl serve --join`: the operator's
//! side of membership change (the mechanism: docs/ARCHITECTURE.md, "Membership change";
//! the steps: fleet_io_std::rsl::members).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use fleet_io_std::rsl::members::{self, Edit};
use fleet_io_std::rsl::{cluster_status, status::leader};
use fleet_io_std::RslSetup;

/// How long one round of membership questions waits for replicas that do not answer.
pub const ROUND: Duration = Duration::from_millis(1000);

/// How often a replica waiting to join asks again.
pub const JOIN_POLL: Duration = Duration::from_millis(500);

/// `member list`: the current membership and every member's status (a table, or one JSON
/// object with `epoch`, `start`, `replicas` and `status`). The flag is false when no member
/// leads.
pub fn list(file: &RslSetup, json: bool, timeout: Duration) -> Result<(String, bool), String> {
    let m = members::current(file, ROUND.min(timeout)).map_err(|e| e.to_string())?;
    let setup = m.setup(file).map_err(|e| e.to_string())?;
    let answers = cluster_status(&setup, timeout.min(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    let lead = leader(&answers);
    let table = crate::status::render(&answers, lead, json);
    let text = match json {
        true => {
            let status: serde_json::Value = serde_json::from_str(&table).map_err(|e| e.to_string())?;
            let replicas: Vec<String> = m.replicas.iter().map(ToString::to_string).collect();
            serde_json::json!({ "epoch": m.epoch, "start": m.start, "replicas": replicas, "status": status })
                .to_string()
        }
        false => format!("{m}\n{table}"),
    };
    Ok((text, lead.is_some()))
}

/// `member add|remove|replace`: learns the membership, checks the edit (and, unless
/// `force`, that the new membership can serve at once), sends the change, and says what
/// happened and what to do next.
pub fn edit(file: &RslSetup, config: &Path, edit: &Edit, force: bool, timeout: Duration) -> Result<String, String> {
    let current = members::current(file, ROUND.min(timeout)).map_err(|e| e.to_string())?;
    let next = members::plan(&current, edit)?;
    if next.len() > current.replicas.len() {
        members::check_bounds(file, &current, &next, timeout.min(Duration::from_secs(2)))?;
    }
    if !force {
        members::preflight(file, &current, &next, timeout.min(Duration::from_secs(2)))?;
    }
    let started = members::change(file, &current, &next, timeout)?;
    let mut text = format!("epoch {} ended; now {started}", current.epoch);
    let added: Vec<&SocketAddr> = next.iter().filter(|a| current.id_of(**a).is_none()).collect();
    for a in added {
        text.push_str(&format!(
            "\n{a} is a replica now (if it is not running: fleet rsl serve --config {} --join {a})",
            config.display()
        ));
    }
    for a in current.replicas.iter().filter(|a| !next.contains(a)) {
        text.push_str(&format!("\n{a} retired: it tells clients where the cluster went; stop it when they follow"));
    }
    Ok(text)
}

/// How `serve --join ADDR` starts.
#[derive(Debug)]
pub enum Joining {
    /// As replica `id` of this epoch: ADDR is a member (a restart after a change, or a
    /// data directory that says so).
    Member(RslSetup, usize),
    /// As a learner of this epoch: ADDR is not a member yet; it follows the log until a
    /// change adds it.
    Learner(RslSetup),
}

/// `serve --join ADDR [--data-dir DIR]`: how a joining replica starts. A data directory
/// that holds a log says where (the replica recovers in that epoch and follows the cluster
/// from there); otherwise the cluster's current membership does ([`find_membership`]).
pub fn joined(file: &RslSetup, config: &Path, addr: SocketAddr, data_dir: Option<&Path>) -> Result<Joining, String> {
    let stored = match data_dir {
        Some(dir) => fleet_io_std::rsl::durable::stored_membership(dir).map_err(|e| e.to_string())?,
        None => None,
    };
    let Some((first, last)) = stored else { return find_membership(file, config, addr) };
    match (first.id_of(addr), last.id_of(addr)) {
        (Some(id), Some(_)) => Ok(Joining::Member(first.setup(file).map_err(|e| e.to_string())?, id)),
        _ => Err(format!(
            "{}: {addr} was removed from the cluster in epoch {}; this data is no longer needed \
             (to serve again, add it back as a new replica with an empty directory)",
            data_dir.map_or(String::new(), |d| d.display().to_string()),
            last.epoch
        )),
    }
}

/// `serve --join ADDR`: learns the cluster's current membership (asking again every
/// [`JOIN_POLL`], and saying so once, while no replica answers): a member there starts as
/// that epoch's replica, anyone else as its learner. The caller bounds the wait by killing
/// the process.
pub fn find_membership(file: &RslSetup, config: &Path, addr: SocketAddr) -> Result<Joining, String> {
    let mut said = false;
    loop {
        match members::current(file, ROUND) {
            Ok(m) => {
                let setup = m.setup(file).map_err(|e| e.to_string())?;
                return Ok(match m.id_of(addr) {
                    Some(id) => Joining::Member(setup, id),
                    None => Joining::Learner(setup),
                });
            }
            Err(e) if !said => {
                eprintln!("waiting to join: no replica of {} answered ({e}); asking again", config.display());
                said = true;
            }
            Err(_) => {}
        }
        std::thread::sleep(JOIN_POLL);
    }
}
