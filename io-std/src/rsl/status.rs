//! Asks every replica of a cluster where it stands (`fleet rsl status`): one
//! `RslMsg::StatusRequest` each, answered by the engine itself, so firmware replicas answer
//! too.

use std::net::SocketAddr;
use std::time::Duration;

use fleet_engine::rsl::replica::Status;
use fleet_engine::rsl::RslMsg;
use fleet_engine::wire::{self, Protocol};

use crate::config::RslSetup;
use crate::error::CallError;
use crate::net::poll::{poll_members, poll_nonce, Questions};

/// One replica's answer, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// The replica's index in the config.
    pub id: usize,
    /// Its configured address.
    pub addr: SocketAddr,
    /// What it answered; `None` if it did not answer in time.
    pub status: Option<Status>,
}

/// Sends a status request to every replica of `setup` (again every 100 ms, in case one is
/// lost) and collects the answers until all have answered or `timeout` passed.
pub fn cluster_status(setup: &RslSetup, timeout: Duration) -> Result<Vec<ReplicaStatus>, CallError> {
    statuses(setup, &setup.addrs, true, timeout)
}

/// Asks whoever serves at each of `addrs` for its status, as [`cluster_status`] does, but
/// takes the answer of a replica of any cluster and index (`id` is the place in `addrs`):
/// whether an address is already in use. `setup` gives the keys, if datagrams are sealed.
pub fn status_at(setup: &RslSetup, addrs: &[SocketAddr], timeout: Duration) -> Result<Vec<ReplicaStatus>, CallError> {
    statuses(setup, addrs, false, timeout)
}

fn statuses(
    setup: &RslSetup,
    addrs: &[SocketAddr],
    check_index: bool,
    timeout: Duration,
) -> Result<Vec<ReplicaStatus>, CallError> {
    let nonce = poll_nonce();
    let mut request = [0u8; 64];
    let n = wire::encode_rsl(wire::ANY_CLUSTER, &RslMsg::StatusRequest { nonce }, &mut request)
        .map_err(|_| CallError::TooLarge)?;
    let answers = addrs.iter().enumerate().map(|(id, &addr)| ReplicaStatus { id, addr, status: None }).collect();
    let mut poll = StatusPoll { nonce, request: request[..n].to_vec(), answers, check_index };
    poll_members(setup.auth.as_ref(), setup.auth_cluster, addrs, timeout, &mut poll)?;
    Ok(poll.answers)
}

/// One status request to every replica until each answered.
struct StatusPoll {
    nonce: u64,
    request: Vec<u8>,
    answers: Vec<ReplicaStatus>,
    check_index: bool,
}

impl Questions for StatusPoll {
    fn question(&self, i: usize) -> Option<Vec<u8>> {
        self.answers[i].status.is_none().then(|| self.request.clone())
    }

    fn answer(&mut self, i: usize, datagram: &[u8]) {
        if let Ok(RslMsg::StatusReply { nonce, replica, status }) = wire::decode::<RslMsg<'_>>(Protocol::Rsl, datagram)
        {
            // Only the replica at the configured address speaks for its index.
            if nonce == self.nonce && (!self.check_index || usize::from(replica) == i) {
                self.answers[i].status = Some(status);
            }
        }
    }
}

/// The leader among the answers: the replica that says it leads in the highest view.
pub fn leader(answers: &[ReplicaStatus]) -> Option<usize> {
    answers.iter().filter_map(|a| a.status.filter(|s| s.is_leader).map(|s| (s.view, a.id))).max().map(|(_, id)| id)
}
