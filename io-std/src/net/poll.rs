//! Asking every member of a cluster something that changes nothing (a status request) and
//! collecting their answers: each question re-sent every [`POLL_RETRY`] until answered,
//! sealed and opened when the cluster is authenticated, bounded by a timeout.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::auth::client_socket_and_seal;
use crate::error::CallError;
use crate::net::to_endpoint;

/// How often an unanswered question is asked again (a lost datagram costs this much).
pub const POLL_RETRY: Duration = Duration::from_millis(100);

/// What a poll asks each member, and what it makes of the answers.
pub trait Questions {
    /// Member `i`'s current question, or `None` once it has answered everything (a changed
    /// question is sent at once: paging).
    fn question(&self, i: usize) -> Option<Vec<u8>>;
    /// An opened datagram that came from member `i`'s configured address.
    fn answer(&mut self, i: usize, datagram: &[u8]);
}

/// Asks every member at `addrs` through a fresh socket (sealed with `auth`'s client keys for
/// cluster `cluster`, if given) until `q` has no question left or `timeout` passes. On a
/// sealed cluster where no member answered at all but one refused this client's key, that
/// refusal is the error (a wrong key is not an unreachable cluster).
pub fn poll_members(
    auth: Option<&crate::auth::AuthFiles>,
    cluster: u32,
    addrs: &[SocketAddr],
    timeout: Duration,
    q: &mut impl Questions,
) -> Result<(), CallError> {
    let any = match addrs.first() {
        Some(SocketAddr::V6(_)) => "[::]:0",
        Some(a) if a.ip().is_loopback() => "127.0.0.1:0",
        _ => "0.0.0.0:0",
    };
    let (socket, mut seal) = client_socket_and_seal(auth, cluster, addrs, any)?;
    // Per member: what was last sent and when it is due again.
    let mut sent: Vec<Option<(Vec<u8>, Instant)>> = vec![None; addrs.len()];
    let started = Instant::now();
    let mut buf = vec![0u8; 65536];
    let mut answered_any = false;
    while started.elapsed() < timeout {
        let now = Instant::now();
        let mut open = false;
        for (i, addr) in addrs.iter().enumerate() {
            let Some(question) = q.question(i) else { continue };
            open = true;
            let due = match &sent[i] {
                Some((last, at)) => *last != question || now >= *at,
                None => true,
            };
            if due {
                send(&socket, &mut seal, *addr, &question);
                sent[i] = Some((question, now + POLL_RETRY));
            }
        }
        if !open {
            break;
        }
        let next = sent.iter().flatten().map(|(_, at)| *at).min().unwrap_or(now + POLL_RETRY);
        let wait = next.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        socket.set_read_timeout(Some(wait)).map_err(CallError::Io)?;
        match socket.recv_from(&mut buf) {
            Ok((len, from)) => {
                let datagram = match seal.as_mut() {
                    None => Some(&buf[..len]),
                    Some(s) => s.open(from, &buf[..len]),
                };
                if let (Some(d), Some(i)) = (datagram, addrs.iter().position(|a| *a == from)) {
                    answered_any = true;
                    q.answer(i, d);
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(CallError::Io(e)),
        }
    }
    match seal.as_mut().and_then(|s| s.take_refusal()) {
        Some(refused) if !answered_any => Err(refused),
        _ => Ok(()),
    }
}

fn send(socket: &UdpSocket, seal: &mut Option<crate::auth::ClientSeal>, to: SocketAddr, bytes: &[u8]) {
    let bytes = match seal.as_mut() {
        None => Some(bytes),
        Some(s) => s.seal(to_endpoint(to), bytes),
    };
    if let Some(bytes) = bytes {
        // A failed send is a lost datagram: the question is asked again.
        let _ = socket.send_to(bytes, to);
    }
}

/// A nonce for one round of questions: answers to an earlier round are told apart by it.
pub fn poll_nonce() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
}
