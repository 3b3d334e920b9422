//! The errors a user of the runtime sees: a server that cannot start or stops, and a client
//! call that got no answer. Each says what to check.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::storage::StorageError;

/// A server error a user sees.
#[derive(Debug)]
pub enum ServerError {
    /// The socket could not be bound.
    Bind(SocketAddr, std::io::Error),
    /// The engine refused the configuration.
    Config(String),
    /// The socket failed.
    Io(std::io::Error),
    /// The data directory could not be read or written.
    Storage(StorageError),
    /// The data directory's log does not replay (it is named, with the first bad record).
    Recover(PathBuf, String),
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerError::Bind(a, e) => {
                let hint = match e.kind() {
                    std::io::ErrorKind::AddrNotAvailable => "is that address one of this machine's?",
                    std::io::ErrorKind::PermissionDenied => "ports below 1024 need privileges",
                    _ => "is another server using that port?",
                };
                write!(f, "cannot listen on {a}: {e} ({hint})")
            }
            ServerError::Config(m) => write!(f, "invalid configuration: {m}"),
            ServerError::Io(e) => write!(f, "network error: {e}"),
            ServerError::Storage(e) => write!(f, "storage error: {e}"),
            ServerError::Recover(d, e) => write!(f, "cannot recover from {}: {e}", d.display()),
        }
    }
}

impl std::error::Error for ServerError {}

/// Why a call did not return a reply.
#[derive(Debug)]
pub enum CallError {
    /// No replica answered in time: the outcome is unknown (it may still execute).
    Timeout(Duration),
    /// The request is larger than one datagram of the configuration.
    TooLarge,
    /// The reply did not decode as a KV reply.
    BadReply,
    /// The application refused the operation.
    Refused(String),
    /// A host answered, but only to refuse the request (back-pressure such as a full client
    /// table or reply queue), until the call's deadline.
    HostRefused {
        /// The host that refused.
        host: SocketAddr,
        /// What it said, by name (`TooManyPeers`, `QueueFull`, ...), and what that means.
        reason: String,
        /// How long the call tried.
        waited: Duration,
    },
    /// The host gave up on this client's channel while the request's reply was undelivered:
    /// the operation may or may not have taken effect.
    Lost {
        /// The host.
        host: SocketAddr,
    },
    /// A host index that the cluster does not have.
    NoSuchHost {
        /// The index asked for.
        index: usize,
        /// How many hosts the cluster has.
        hosts: usize,
    },
    /// The local socket failed.
    Io(std::io::Error),
    /// A member refused this client's datagrams: its key is not the cluster's.
    KeyRefused {
        /// The member that said so.
        host: SocketAddr,
        /// What it refused (an unknown key id, or a MAC that did not match).
        reason: String,
        /// The client key file the client sealed with.
        key_file: PathBuf,
    },
    /// A key file could not be used (named, with what is wrong).
    Keys(crate::config::ConfigFileError),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Timeout(d) => {
                write!(f, "no answer from the cluster within {:.1} s (is it running?)", d.as_secs_f64())
            }
            CallError::TooLarge => f.write_str("the request is too large for one datagram of this cluster"),
            CallError::BadReply => f.write_str("the cluster sent a reply that is not a KV reply"),
            CallError::Refused(why) => write!(f, "the cluster refused the operation: {why}"),
            CallError::HostRefused { host, reason, waited } => write!(
                f,
                "host {host} refused the request ({reason}) and kept refusing it for {:.1} s; gave up \
                 (the request was not executed unless a retransmission got through)",
                waited.as_secs_f64()
            ),
            CallError::Lost { host } => write!(
                f,
                "host {host} gave up on this client before its reply was delivered: the operation may or may \
                 not have taken effect"
            ),
            CallError::NoSuchHost { index, hosts: 0 } => {
                write!(f, "there is no host {index}: the cluster has no hosts")
            }
            CallError::NoSuchHost { index, hosts } => {
                write!(f, "there is no host {index}: the cluster's hosts are 0 to {}", hosts - 1)
            }
            CallError::Io(e) => write!(f, "network error: {e}"),
            CallError::KeyRefused { host, reason, key_file } => write!(
                f,
                "{host} refused this client's datagrams ({reason}): the client key in {} is not the \
                 cluster's; nothing was executed",
                key_file.display()
            ),
            CallError::Keys(e) => write!(f, "cannot use the key file: {e}"),
        }
    }
}

impl std::error::Error for CallError {}
