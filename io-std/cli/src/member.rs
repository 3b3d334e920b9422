//! `fleet rsl member list|add|remove|replace` and `fleet rsl serve --join`: the operator's
//! side of membership change (the mechanism: docs/ARCHITECTURE.md, "Membership change";
//! the steps: fleet_io_std::rsl::members).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use fleet_io_std::rsl::members::{self, Edit, Membership};
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
            "\nstart the new replica (it catches up, then serves): fleet rsl serve --config {} --join {a}",
            config.display()
        ));
    }
    for a in current.replicas.iter().filter(|a| !next.contains(a)) {
        text.push_str(&format!("\n{a} retired: it tells clients where the cluster went; stop it when they follow"));
    }
    Ok(text)
}

/// `serve --join ADDR [--data-dir DIR]`: the membership a joined replica starts in and its
/// id there. A data directory that holds a log says it (the replica recovers in that epoch
/// and follows the cluster from there); otherwise it is learned from the cluster
/// ([`wait_for_membership`]).
pub fn joined(
    file: &RslSetup,
    config: &Path,
    addr: SocketAddr,
    data_dir: Option<&Path>,
) -> Result<(RslSetup, usize), String> {
    let stored = match data_dir {
        Some(dir) => fleet_io_std::rsl::durable::stored_membership(dir).map_err(|e| e.to_string())?,
        None => None,
    };
    let Some((first, last)) = stored else { return wait_for_membership(file, config, addr) };
    match (first.id_of(addr), last.id_of(addr)) {
        (Some(id), Some(_)) => Ok((first.setup(file).map_err(|e| e.to_string())?, id)),
        _ => Err(format!(
            "{}: {addr} was removed from the cluster in epoch {}; this data is no longer needed \
             (to serve again, add it back as a new replica with an empty directory)",
            data_dir.map_or(String::new(), |d| d.display().to_string()),
            last.epoch
        )),
    }
}

/// `serve --join ADDR`: waits until `addr` is a member of the cluster's current
/// membership (saying once why not yet), then returns that epoch's setup and `addr`'s id.
/// Asks again every [`JOIN_POLL`] until it is added; the caller bounds the wait by killing
/// the process.
pub fn wait_for_membership(file: &RslSetup, config: &Path, addr: SocketAddr) -> Result<(RslSetup, usize), String> {
    let mut said = None;
    loop {
        let (why, m) = match members::current(file, ROUND) {
            Ok(m) => match m.id_of(addr) {
                Some(id) => return Ok((m.setup(file).map_err(|e| e.to_string())?, id)),
                None => (
                    format!(
                        "{addr} is not a member of epoch {} yet; add it: fleet rsl member add --config {} {addr}",
                        m.epoch,
                        config.display()
                    ),
                    Some(m),
                ),
            },
            Err(e) => (format!("no replica of {} answered ({e}); asking again", config.display()), None),
        };
        let key = m.as_ref().map(|m: &Membership| m.epoch);
        if said.as_ref() != Some(&(why.clone(), key)) {
            eprintln!("waiting to join: {why}");
            said = Some((why, key));
        }
        std::thread::sleep(JOIN_POLL);
    }
}
