//! The cluster's membership as its replicas report it, and the operator's membership
//! changes: what `fleet rsl member` and `fleet rsl serve --join` do. The rule a change must
//! pass is the engine's ([`fleet_engine::rsl::membership`]); this module adds the checks an
//! operator wants before a change is sent (is the new membership able to serve? is an
//! address already taken?) and the way a new replica learns the membership it starts in.

use std::net::SocketAddr;
use std::time::Duration;

use fleet_engine::rsl::membership::{self, Outcome};
use fleet_engine::rsl::{RslConfig, RslMsg};
use fleet_engine::wire::{self, Protocol};

use crate::capacity::MAX_REPLICAS;
use crate::config::RslSetup;
use crate::error::CallError;
use crate::net::poll::{poll_members, poll_nonce, Questions};
use crate::net::{to_endpoint, to_socket_addr};
use crate::rsl::client::RslClient;
use crate::rsl::status::{cluster_status, status_at, ReplicaStatus};

/// Most epochs one lookup follows forward (each a round of questions): a cluster changed
/// more often than this while being asked is asked again by the caller.
pub const MAX_FOLLOWS: usize = 8;

/// A membership: an epoch and its replicas, as a replica reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    /// The epoch (0: the configuration file's replicas).
    pub epoch: u64,
    /// The epoch's first operation ([`membership::EPOCH_START_UNKNOWN`] if only replicas
    /// that joined it without state answered).
    pub start: u64,
    /// Its replicas, in order (a replica's id is its place here).
    pub replicas: Vec<SocketAddr>,
}

impl Membership {
    /// The setup of this epoch: the configuration file's parameters (`file`), these
    /// replicas. Clients and replicas of the epoch use it.
    pub fn setup(&self, file: &RslSetup) -> Result<RslSetup, CallError> {
        let endpoints: Vec<_> = self.replicas.iter().map(|a| to_endpoint(*a)).collect();
        let mut config = RslConfig::<MAX_REPLICAS>::new(&endpoints).map_err(|_| CallError::TooLarge)?;
        config.params = file.config.params;
        config.epoch = self.epoch;
        let (max_keys, auth, auth_cluster) = (file.max_keys, file.auth.clone(), file.auth_cluster);
        let seeds = file.seeds.clone();
        Ok(RslSetup { addrs: self.replicas.clone(), config, max_keys, auth, auth_cluster, seeds })
    }

    /// The id (index) of `addr` in this membership.
    pub fn id_of(&self, addr: SocketAddr) -> Option<usize> {
        self.replicas.iter().position(|a| *a == addr)
    }
}

impl std::fmt::Display for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list: Vec<String> = self.replicas.iter().map(ToString::to_string).collect();
        match self.start {
            membership::EPOCH_START_UNKNOWN => write!(f, "epoch {}: {}", self.epoch, list.join(", ")),
            start => write!(f, "epoch {} (from operation {start}): {}", self.epoch, list.join(", ")),
        }
    }
}

/// The cluster's current membership: asks the replicas of `file` (the configuration file)
/// and its seeds for theirs, then the replicas of the latest epoch any of them names, until none names a
/// later one. Each round waits until every asked replica answered or `round` passed.
pub fn current(file: &RslSetup, round: Duration) -> Result<Membership, CallError> {
    let mut best: Option<Membership> = None;
    let mut ask = file.addrs.clone();
    ask.extend(file.seeds.iter().filter(|s| !file.addrs.contains(s)));
    for _ in 0..MAX_FOLLOWS {
        let answers: Vec<Membership> = ask_members(file, &ask, round)?.into_iter().flatten().collect();
        // A replica that joined without state may not know where its epoch began: take
        // the earliest start any replica of the newest epoch reports.
        let newest = answers.iter().max_by_key(|m| m.epoch).map(|m| {
            let start = answers.iter().filter(|a| a.epoch == m.epoch).map(|a| a.start).min().unwrap_or(m.start);
            Membership { start, ..m.clone() }
        });
        match (newest, &best) {
            (Some(m), Some(b)) if m.epoch <= b.epoch => break,
            (Some(m), _) => {
                ask = m.replicas.clone();
                best = Some(m);
            }
            (None, _) => break,
        }
    }
    best.ok_or(CallError::Timeout(round))
}

/// One round: every replica at `addrs` asked for its membership, its answer or `None`.
fn ask_members(file: &RslSetup, addrs: &[SocketAddr], round: Duration) -> Result<Vec<Option<Membership>>, CallError> {
    let nonce = poll_nonce();
    let mut request = [0u8; 64];
    let n = wire::encode_rsl(wire::ANY_CLUSTER, &RslMsg::MembersRequest { nonce }, &mut request)
        .map_err(|_| CallError::TooLarge)?;
    let mut poll = MembersPoll { nonce, request: request[..n].to_vec(), answers: vec![None; addrs.len()] };
    poll_members(file.auth.as_ref(), file.auth_cluster, addrs, round, &mut poll)?;
    Ok(poll.answers)
}

/// One membership request to every replica until each answered.
struct MembersPoll {
    nonce: u64,
    request: Vec<u8>,
    answers: Vec<Option<Membership>>,
}

impl Questions for MembersPoll {
    fn question(&self, i: usize) -> Option<Vec<u8>> {
        self.answers[i].is_none().then(|| self.request.clone())
    }

    fn answer(&mut self, i: usize, datagram: &[u8]) {
        if let Ok(RslMsg::Members { nonce, epoch, start, replicas, .. }) =
            wire::decode::<RslMsg<'_>>(Protocol::Rsl, datagram)
        {
            if let (true, Ok(list)) = (nonce == self.nonce, membership::replicas_of::<MAX_REPLICAS>(replicas.0)) {
                let replicas = list.iter().map(|e| to_socket_addr(*e)).collect();
                self.answers[i] = Some(Membership { epoch, start, replicas });
            }
        }
    }
}

/// What an operator asks of the membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    /// New replicas at these addresses, appended.
    Add(Vec<SocketAddr>),
    /// These replicas leave.
    Remove(Vec<SocketAddr>),
    /// The replica at `old` leaves and one at `new` takes its place (and id).
    Replace {
        /// The leaving replica.
        old: SocketAddr,
        /// The new one.
        new: SocketAddr,
    },
}

/// The next membership's replicas after `edit`, or why the edit makes no sense for
/// `current` (each error says what to do).
pub fn plan(current: &Membership, edit: &Edit) -> Result<Vec<SocketAddr>, String> {
    let epoch = current.epoch;
    let mut next = current.replicas.clone();
    match edit {
        Edit::Add(addrs) => {
            for a in addrs {
                if next.contains(a) {
                    return Err(format!("{a} is already a member of epoch {epoch}, or named twice"));
                }
                next.push(*a);
            }
        }
        Edit::Remove(addrs) => {
            for a in addrs {
                let Some(i) = next.iter().position(|r| r == a) else {
                    return Err(format!("{a} is not a member of epoch {epoch}: see `fleet rsl member list`"));
                };
                next.remove(i);
            }
        }
        Edit::Replace { old, new } => {
            let Some(i) = current.id_of(*old) else {
                return Err(format!("{old} is not a member of epoch {epoch}: see `fleet rsl member list`"));
            };
            if current.id_of(*new).is_some() {
                return Err(format!("{new} is already a member of epoch {epoch}"));
            }
            // At the end: the next epoch's first replica leads its first view, and a kept
            // one leads at once where a new one would first finish its rejoin round.
            next.remove(i);
            next.push(*new);
        }
    }
    if next.is_empty() {
        return Err("a cluster needs at least one replica".into());
    }
    if next.len() > MAX_REPLICAS {
        return Err(format!("{} replicas: this build holds at most {MAX_REPLICAS}", next.len()));
    }
    let kept = next.iter().filter(|a| current.replicas.contains(a)).count();
    if kept < quorum(next.len()) {
        return Err(format!(
            "only {kept} of the {} new members are current members; a change must keep a majority ({}) so \
             that the new membership can serve while new replicas catch up: make it in several changes",
            next.len(),
            quorum(next.len())
        ));
    }
    Ok(next)
}

/// A majority of `n` replicas.
pub fn quorum(n: usize) -> usize {
    n / 2 + 1
}

/// Checks that the change from `current` to `next` leaves a membership that can serve at
/// once, by asking every replica concerned: the kept members that answer and are caught up
/// must be a majority of `next`, no current member may still be catching up (it would count
/// in the new membership before it holds the state), and every added address must be served
/// by a learner ([`fleet_engine::rsl::Learning`]) within [`MAX_LEARNER_LAG_OPS`] of the
/// members (not by nothing, nor by another replica: a retired one, or one of another
/// cluster). Each refusal says why and what to do.
pub fn preflight(file: &RslSetup, current: &Membership, next: &[SocketAddr], timeout: Duration) -> Result<(), String> {
    let answers = cluster_status(&current.setup(file).map_err(|e| e.to_string())?, timeout)
        .map_err(|e| format!("cannot ask the members: {e}"))?;
    let serving = |s: &ReplicaStatus| s.status.is_some_and(|st| !st.retired && !st.rejoining);
    if let Some(a) = answers.iter().find(|a| a.status.is_some_and(|s| s.rejoining)) {
        return Err(format!(
            "replica {} ({}) is still catching up; wait until `fleet rsl member list` shows it serving (or \
             use --force)",
            a.id, a.addr
        ));
    }
    let ready = answers.iter().filter(|a| next.contains(&a.addr) && serving(a)).count();
    if ready < quorum(next.len()) {
        let down: Vec<String> = answers.iter().filter(|a| !serving(a)).map(|a| a.addr.to_string()).collect();
        return Err(format!(
            "the new membership of {} needs {} replicas holding the state to serve, and only {ready} of the kept \
             members answer (not answering: {}); bring them back first (or use --force)",
            next.len(),
            quorum(next.len()),
            if down.is_empty() { "none".to_string() } else { down.join(", ") }
        ));
    }
    let added: Vec<SocketAddr> = next.iter().filter(|a| current.id_of(**a).is_none()).copied().collect();
    if added.is_empty() {
        return Ok(());
    }
    let executed = answers.iter().filter_map(|a| a.status.map(|s| s.ops_complete)).max().unwrap_or(0);
    let found = status_at(file, &added, Duration::from_millis(500))
        .map_err(|e| format!("cannot ask the new addresses: {e}"))?;
    for a in &found {
        match a.status {
            None => {
                return Err(format!(
                    "nothing answers at {addr}: start the new replica first (`fleet rsl serve --join {addr}`): it \
                     learns the state before it counts; or use --force to add it now (it then counts in the quorum \
                     before it holds the state)",
                    addr = a.addr
                ))
            }
            Some(s) if s.learning => {
                let behind = executed.saturating_sub(s.ops_complete);
                if behind > MAX_LEARNER_LAG_OPS {
                    return Err(format!(
                        "{} is still learning the state: {behind} operations behind; wait until it caught up (or \
                         use --force)",
                        a.addr
                    ));
                }
            }
            Some(s) => {
                let what = match s.retired {
                    true => format!("a retired replica of epoch {}", s.epoch),
                    false => format!("a replica of epoch {}", s.epoch),
                };
                return Err(format!(
                    "{} is already in use by {what}: an address joins as a new process; stop that one first",
                    a.addr
                ));
            }
        }
    }
    Ok(())
}

/// How far behind the members' executed count a learner may be when a change adds it
/// ([`preflight`]): it then holds the state at the change's stop-sign moments after it,
/// and votes as soon as its rejoin round is answered.
pub const MAX_LEARNER_LAG_OPS: u64 = 1024;

/// Refuses a change to more replicas than a current member's build holds
/// ([`fleet_engine::rsl::Status::max_replicas`]: a firmware's 3, io-std's 16): that member
/// would refuse it while the others accept, and stay behind in the ended epoch. Checked
/// against the members that answer within `timeout`, even with `--force`.
pub fn check_bounds(
    file: &RslSetup,
    current: &Membership,
    next: &[SocketAddr],
    timeout: Duration,
) -> Result<(), String> {
    let answers = cluster_status(&current.setup(file).map_err(|e| e.to_string())?, timeout)
        .map_err(|e| format!("cannot ask the members: {e}"))?;
    let small = answers
        .iter()
        .filter_map(|a| a.status.map(|s| (a, usize::from(s.max_replicas))))
        .filter(|(_, bound)| *bound < next.len())
        .min_by_key(|(_, bound)| *bound);
    match small {
        None => Ok(()),
        Some((a, bound)) => Err(format!(
            "replica {} ({}) is built for at most {bound} replicas: it would refuse a membership of {} while \
             the others accept it, and be left behind; replace it with a larger build first",
            a.id,
            a.addr,
            next.len()
        )),
    }
}

/// Sends the change from `current` to `next` and waits up to `timeout` for its outcome:
/// the new membership, or the cluster's refusal (said in words).
pub fn change(
    file: &RslSetup,
    current: &Membership,
    next: &[SocketAddr],
    timeout: Duration,
) -> Result<Membership, String> {
    let setup = current.setup(file).map_err(|e| e.to_string())?;
    let mut client = RslClient::connect(&setup).map_err(|e| e.to_string())?;
    client.set_membership(current.epoch, &current.replicas).map_err(|e| e.to_string())?;
    let endpoints: Vec<_> = next.iter().map(|a| to_endpoint(*a)).collect();
    let mut buf = vec![0u8; 64 + next.len() * membership::MAX_ENDPOINT_BYTES];
    let bytes = membership::encode_change(current.epoch, &endpoints, &mut buf).ok_or("the change does not fit")?;
    match client.change(bytes, timeout) {
        Ok(Outcome::Started { epoch, start }) => Ok(Membership { epoch, start, replicas: next.to_vec() }),
        Ok(Outcome::Refused(why)) => Err(format!("the cluster refused the change: {why}")),
        Err(CallError::Timeout(t)) => Err(format!(
            "no answer within {} s: the change may or may not have been made; see `fleet rsl member list`",
            t.as_secs_f64()
        )),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_engine::rsl::proposer::Phase;
    use fleet_engine::rsl::{Ballot, Status};

    /// Three sockets that answer status requests as replicas would, replica `i` built for
    /// `bounds[i]` replicas; the membership of their addresses.
    fn fake_replicas(bounds: [u8; 3]) -> (RslSetup, Membership) {
        let sockets: Vec<std::net::UdpSocket> =
            (0..3).map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
        let addrs: Vec<SocketAddr> = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
        let mut file = crate::config::ClusterFile::local(3, 0);
        file.rsl.as_mut().unwrap().replicas = addrs.iter().map(ToString::to_string).collect();
        let setup = file.rsl().unwrap();
        let cluster = setup.config.identity();
        for (i, socket) in sockets.into_iter().enumerate() {
            socket.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 1500];
                // Bounded: a few requests, or until nobody asks for 3 s.
                for _ in 0..8 {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else { return };
                    let Ok(RslMsg::StatusRequest { nonce }) = wire::decode::<RslMsg<'_>>(Protocol::Rsl, &buf[..n])
                    else {
                        continue;
                    };
                    let status = Status {
                        view: Ballot::default(),
                        phase: Phase::Idle,
                        is_leader: i == 0,
                        ops_complete: 0,
                        next_opn: 0,
                        log_truncation_point: 0,
                        queued: 0,
                        max_bal: Ballot::default(),
                        rejoining: false,
                        pending_queries: 0,
                        durable: false,
                        epoch: 0,
                        retired: false,
                        max_replicas: bounds[i],
                        learning: false,
                    };
                    let reply = RslMsg::StatusReply { nonce, replica: i as u8, status };
                    let mut out = [0u8; 512];
                    let len = wire::encode_rsl(cluster, &reply, &mut out).unwrap();
                    let _ = socket.send_to(&out[..len], from);
                }
            });
        }
        let current = Membership { epoch: 0, start: 0, replicas: addrs };
        (setup, current)
    }

    #[test]
    fn growing_past_a_members_replica_bound_is_refused_by_name() {
        let (setup, current) = fake_replicas([16, 3, 16]);
        let extra: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let four: Vec<SocketAddr> = current.replicas.iter().copied().chain([extra]).collect();
        let err = check_bounds(&setup, &current, &four, Duration::from_secs(2)).unwrap_err();
        let small = current.replicas[1];
        assert!(err.contains(&format!("replica 1 ({small}) is built for at most 3 replicas")), "{err}");
        let three: Vec<SocketAddr> = [current.replicas[0], current.replicas[1], extra].to_vec();
        assert_eq!(check_bounds(&setup, &current, &three, Duration::from_secs(2)), Ok(()), "a replacement fits");
        let (setup, current) = fake_replicas([16, 16, 16]);
        let four: Vec<SocketAddr> = current.replicas.iter().copied().chain([extra]).collect();
        assert_eq!(check_bounds(&setup, &current, &four, Duration::from_secs(2)), Ok(()));
    }
}
