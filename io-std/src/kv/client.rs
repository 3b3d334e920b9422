//! A blocking IronKV client over std UDP.

use std::io::ErrorKind;
use std::net::UdpSocket;
use std::time::{Duration, Instant as StdInstant, SystemTime, UNIX_EPOCH};

use fleet_engine::kv::client::{ClientError, Event, Outcome, Request};
use fleet_engine::kv::msg::{KeyBound, KeyRange};
use fleet_engine::kv::KvClient;
use fleet_engine::kv::Refusal;
use fleet_engine::{Endpoint, Outbox};

use crate::auth::{client_socket_and_seal, ClientSeal};
use crate::capacity::{KV_CLIENT_UNACKED, KV_DATAGRAM_BYTES, KV_MAX_HOSTS};
use crate::clock::Clock;
use crate::config::KvSetup;
use crate::error::CallError;
use crate::net::{to_endpoint, to_socket_addr, HeapOutbox};

/// A std KV client: the engine's [`KvClient`] sized by [`crate::capacity`].
pub type StdKvClient = KvClient<KV_MAX_HOSTS, KV_CLIENT_UNACKED, KV_DATAGRAM_BYTES>;

/// What a blocking KV call returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvAnswer {
    /// A Get's value.
    Value(Option<Vec<u8>>),
    /// A Set or Delete took effect.
    Written,
    /// A Shard was carried out.
    Sharded,
}

/// A blocking IronKV client.
pub struct KvBlockingClient {
    inner: Box<StdKvClient>,
    socket: UdpSocket,
    clock: Clock,
    out: HeapOutbox,
    buf: Vec<u8>,
    hosts: Vec<Endpoint>,
    seal: Option<ClientSeal>,
    /// The host that answered the last completed operation.
    last_host: Option<Endpoint>,
}

impl KvBlockingClient {
    /// A client of `setup`'s hosts on a fresh local port.
    pub fn connect(setup: &KvSetup) -> Result<KvBlockingClient, CallError> {
        let bind = if setup.addrs.first().is_some_and(|a| a.is_ipv6()) { "[::]:0" } else { "127.0.0.1:0" };
        let (socket, seal) = client_socket_and_seal(setup.auth.as_ref(), setup.config.identity(), &setup.addrs, bind)?;
        let hosts: Vec<Endpoint> = setup.addrs.iter().map(|a| to_endpoint(*a)).collect();
        // Channel bases must grow across restarts on one port: seed from the wall clock.
        let first = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_micros() as u64);
        let inner = StdKvClient::new(&hosts, first, setup.config.params).map_err(|_| CallError::TooLarge)?;
        Ok(KvBlockingClient {
            inner: Box::new(inner),
            socket,
            clock: Clock::start(),
            out: HeapOutbox::new(64, 1 << 20),
            buf: vec![0u8; 65536],
            hosts,
            seal,
            last_host: None,
        })
    }

    fn flush(socket: &UdpSocket, out: &Outbox<'_>, seal: &mut Option<ClientSeal>) {
        for (dst, bytes) in out.iter() {
            let bytes = match seal.as_mut() {
                None => Some(bytes),
                Some(s) => s.seal(dst, bytes),
            };
            if let Some(bytes) = bytes {
                let _ = socket.send_to(bytes, to_socket_addr(dst));
            }
        }
    }

    /// Runs one operation, waiting up to `timeout`; `to` sends it to that host (an index of
    /// the cluster's hosts) instead of the key's owner. A host that only ever refused the
    /// request (back-pressure) until the deadline is reported as [`CallError::HostRefused`],
    /// naming the refusal, not as a timeout.
    pub fn call(&mut self, request: Request<'_>, to: Option<usize>, timeout: Duration) -> Result<KvAnswer, CallError> {
        let started = StdInstant::now();
        let target = match to {
            Some(i) => Some(*self.hosts.get(i).ok_or(CallError::NoSuchHost { index: i, hosts: self.hosts.len() })?),
            None => None,
        };
        let mut o = self.out.outbox();
        let submitted = match target {
            Some(ep) => self.inner.submit_to(self.clock.now(), ep, request, &mut o),
            None => self.inner.submit(self.clock.now(), request, &mut o),
        };
        match submitted {
            Ok(_) => {}
            Err(ClientError::TooLarge) => return Err(CallError::TooLarge),
            Err(ClientError::Busy) | Err(ClientError::QueueFull) => {
                return Err(CallError::Refused("the client's queue to that host is full".into()))
            }
        }
        Self::flush(&self.socket, &o, &mut self.seal);
        // The last refusal heard, cleared by any other answer from that host.
        let mut refused: Option<(Endpoint, Refusal)> = None;
        loop {
            let elapsed = started.elapsed();
            if elapsed >= timeout {
                self.inner.cancel();
                let key_refused = self.seal.as_mut().and_then(ClientSeal::take_refusal);
                return Err(match (refused, key_refused) {
                    (_, Some(e)) => e,
                    (Some((host, r)), None) => {
                        CallError::HostRefused { host: to_socket_addr(host), reason: describe(r), waited: elapsed }
                    }
                    (None, None) => CallError::Timeout(timeout),
                });
            }
            let now = self.clock.now();
            let until = Duration::from_micros(self.inner.next_deadline().micros_since(now));
            self.socket
                .set_read_timeout(Some(until.min(timeout - elapsed).max(Duration::from_micros(50))))
                .map_err(CallError::Io)?;
            match self.socket.recv_from(&mut self.buf) {
                Ok((n, from)) => {
                    let mut o = self.out.outbox();
                    let sender = to_endpoint(from);
                    let datagram = match self.seal.as_mut() {
                        None => Some(&self.buf[..n]),
                        Some(s) => s.open(from, &self.buf[..n]),
                    };
                    let Some(datagram) = datagram else { continue };
                    let ev = self.inner.handle(self.clock.now(), sender, datagram, &mut o);
                    let answer = match ev {
                        Some(Event::Completed(c)) => Some({
                            self.last_host = Some(c.host);
                            match c.outcome {
                                Outcome::Value(v) => Ok(KvAnswer::Value(v.map(<[u8]>::to_vec))),
                                Outcome::Written => Ok(KvAnswer::Written),
                                Outcome::Sharded => Ok(KvAnswer::Sharded),
                                Outcome::Failed(e) => Err(CallError::Refused(e.to_string())),
                            }
                        }),
                        Some(Event::Lost { host, .. }) => Some(Err(CallError::Lost { host: to_socket_addr(host) })),
                        Some(Event::Refused { host, reason, .. }) => {
                            refused = Some((host, reason));
                            None
                        }
                        None => {
                            if refused.is_some_and(|(h, _)| h == sender) {
                                refused = None;
                            }
                            None
                        }
                    };
                    if answer.is_some() {
                        // The reply's ack is owed; nobody ticks this client between calls.
                        self.inner.flush_acks(&mut o);
                    }
                    Self::flush(&self.socket, &o, &mut self.seal);
                    if let Some(a) = answer {
                        return a;
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(CallError::Io(e)),
            }
            let mut o = self.out.outbox();
            self.inner.tick(self.clock.now(), &mut o);
            Self::flush(&self.socket, &o, &mut self.seal);
        }
    }

    /// Reads `key`.
    pub fn get(&mut self, key: u64, timeout: Duration) -> Result<Option<Vec<u8>>, CallError> {
        match self.call(Request::Get(key), None, timeout)? {
            KvAnswer::Value(v) => Ok(v),
            _ => Err(CallError::BadReply),
        }
    }

    /// Writes `key`.
    pub fn set(&mut self, key: u64, value: &[u8], timeout: Duration) -> Result<(), CallError> {
        self.call(Request::Set(key, value), None, timeout).map(|_| ())
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: u64, timeout: Duration) -> Result<(), CallError> {
        self.call(Request::Delete(key), None, timeout).map(|_| ())
    }

    /// The index of the host that answered the last completed operation.
    pub fn last_host(&self) -> Option<usize> {
        self.last_host.and_then(|h| self.hosts.iter().position(|e| *e == h))
    }

    /// The host that owns `key` now: the one that answers a read of it (following
    /// redirects from whoever the client asks first).
    pub fn owner_of(&mut self, key: u64, timeout: Duration) -> Result<usize, CallError> {
        self.call(Request::Get(key), None, timeout)?;
        self.last_host().ok_or(CallError::BadReply)
    }

    /// Moves keys `[lo, hi)` to host `to`. The request goes to host `via` if given, else to
    /// the current owner of `lo`, found by reading it; a range with several owners is
    /// refused (`NotOwner`): move each owner's part on its own.
    pub fn shard(
        &mut self,
        lo: u64,
        hi: Option<u64>,
        to: usize,
        via: Option<usize>,
        timeout: Duration,
    ) -> Result<(), CallError> {
        let recipient = *self.hosts.get(to).ok_or(CallError::NoSuchHost { index: to, hosts: self.hosts.len() })?;
        let via = match via {
            Some(v) => v,
            None => self.owner_of(lo, timeout)?,
        };
        let range = KeyRange { lo: KeyBound::Key(lo), hi: hi.map_or(KeyBound::Inf, KeyBound::Key) };
        self.call(Request::Shard(range, recipient), Some(via), timeout).map(|_| ())
    }
}

/// A host's refusal by name, with what it means for the user.
pub fn describe(r: Refusal) -> String {
    match r {
        Refusal::TooManyPeers => {
            "TooManyPeers: its table of clients is full of clients still waiting for replies".to_string()
        }
        Refusal::QueueFull => "QueueFull: its queue of replies to this client is full".to_string(),
        Refusal::NoRoom => "NoRoom: it has no room to apply the request now".to_string(),
        Refusal::ChannelClosed { above, .. } => {
            format!("ChannelClosed: it closed this client's channel (restart above seqno {above})")
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::config::ClusterFile;
    use fleet_engine::kv::Frame;
    use fleet_engine::wire::{self, Protocol};

    /// A "host" on loopback that refuses every message with `reason` until `for_ms` pass.
    fn refusing_host(reason: Refusal, for_ms: u64) -> (KvSetup, std::thread::JoinHandle<()>) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        let file = ClusterFile::parse(&format!("[kv]\nhosts = [\"127.0.0.1:{port}\"]\n")).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let until = StdInstant::now() + Duration::from_millis(for_ms);
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 9000];
            while StdInstant::now() < until {
                let Ok((n, from)) = socket.recv_from(&mut buf) else { continue };
                if let Ok(Frame::Single { seqno, .. }) = wire::decode::<Frame<'_>>(Protocol::Kv, &buf[..n]) {
                    let mut out = [0u8; 64];
                    let len = wire::encode(Protocol::Kv, &Frame::Refused { seqno, reason }, &mut out).unwrap();
                    let _ = socket.send_to(&out[..len], from);
                }
            }
        });
        (file.kv().unwrap(), thread)
    }

    #[test]
    fn a_host_that_only_refuses_is_reported_as_refusing_not_as_silent() {
        let (setup, host) = refusing_host(Refusal::TooManyPeers, 1500);
        let mut c = KvBlockingClient::connect(&setup).unwrap();
        let err = c.get(1, Duration::from_millis(400)).unwrap_err();
        assert!(matches!(err, CallError::HostRefused { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("TooManyPeers") && msg.contains("refused"), "{msg}");
        assert!(!msg.contains("no answer from the cluster"), "{msg}");
        host.join().unwrap();
    }

    #[test]
    fn a_host_index_outside_the_cluster_is_refused_before_anything_is_sent() {
        let (setup, host) = refusing_host(Refusal::QueueFull, 100);
        let mut c = KvBlockingClient::connect(&setup).unwrap();
        let err = c.shard(0, Some(10), 0, Some(9), Duration::from_millis(200)).unwrap_err();
        assert!(matches!(err, CallError::NoSuchHost { index: 9, hosts: 1 }), "{err:?}");
        assert!(err.to_string().contains("there is no host 9: the cluster's hosts are 0 to 0"), "{err}");
        host.join().unwrap();
    }
}
