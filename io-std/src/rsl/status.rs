//! Asks every replica of a cluster where it stands (`fleet rsl status`): one
//! `RslMsg::StatusRequest` each, answered by the engine itself, so firmware replicas answer
//! too.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant as StdInstant};

use fleet_engine::rsl::replica::Status;
use fleet_engine::rsl::RslMsg;
use fleet_engine::wire::{self, Protocol};

use crate::auth::client_socket_and_seal;
use crate::config::RslSetup;
use crate::error::CallError;
use crate::net::to_endpoint;

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
    let any = match setup.addrs.first() {
        Some(SocketAddr::V6(_)) => "[::]:0",
        Some(a) if a.ip().is_loopback() => "127.0.0.1:0",
        _ => "0.0.0.0:0",
    };
    let (socket, mut seal) = client_socket_and_seal(setup.auth.as_ref(), setup.config.identity(), &setup.addrs, any)?;
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
    let mut request = [0u8; 64];
    let n = wire::encode_rsl(wire::ANY_CLUSTER, &RslMsg::StatusRequest { nonce }, &mut request)
        .map_err(|_| CallError::TooLarge)?;
    let mut answers: Vec<ReplicaStatus> =
        setup.addrs.iter().enumerate().map(|(id, &addr)| ReplicaStatus { id, addr, status: None }).collect();
    let started = StdInstant::now();
    let mut buf = vec![0u8; 65536];
    let mut next_send = started;
    while started.elapsed() < timeout && answers.iter().any(|a| a.status.is_none()) {
        if StdInstant::now() >= next_send {
            for a in answers.iter().filter(|a| a.status.is_none()) {
                let bytes = match seal.as_mut() {
                    None => Some(&request[..n]),
                    Some(s) => s.seal(to_endpoint(a.addr), &request[..n]),
                };
                if let Some(bytes) = bytes {
                    // A failed send is a lost datagram: the next round asks again.
                    let _ = socket.send_to(bytes, a.addr);
                }
            }
            next_send = StdInstant::now() + Duration::from_millis(100);
        }
        let wait = next_send.saturating_duration_since(StdInstant::now()).max(Duration::from_millis(1));
        socket.set_read_timeout(Some(wait)).map_err(CallError::Io)?;
        match socket.recv_from(&mut buf) {
            Ok((len, from)) => {
                let datagram = match seal.as_mut() {
                    None => Some(&buf[..len]),
                    Some(s) => s.open(from, &buf[..len]),
                };
                let Some(datagram) = datagram else { continue };
                if let Ok(RslMsg::StatusReply { nonce: got, replica, status }) =
                    wire::decode::<RslMsg<'_>>(Protocol::Rsl, datagram)
                {
                    // Only the replica at the configured address speaks for its index.
                    match answers.iter_mut().find(|a| a.addr == from && a.id == usize::from(replica)) {
                        Some(a) if got == nonce => a.status = Some(status),
                        _ => {}
                    }
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(CallError::Io(e)),
        }
    }
    Ok(answers)
}

/// The leader among the answers: the replica that says it leads in the highest view.
pub fn leader(answers: &[ReplicaStatus]) -> Option<usize> {
    answers.iter().filter_map(|a| a.status.filter(|s| s.is_leader).map(|s| (s.view, a.id))).max().map(|(_, id)| id)
}
