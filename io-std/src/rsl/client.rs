//! A blocking RSL client over std UDP, and the KV-app operations on top of it.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant as StdInstant, SystemTime, UNIX_EPOCH};

use fleet_engine::rsl::apps::kv::{KvOp, KvReply};
use fleet_engine::rsl::membership::Outcome;
use fleet_engine::rsl::{Client, ClientError};
use fleet_engine::wire::Bytes;
use fleet_engine::Outbox;

use crate::auth::{client_socket_and_seal, ClientSeal};
use crate::capacity::{MAX_REPLICAS, SERVER_DATAGRAM_BYTES};
use crate::clock::Clock;
use crate::config::RslSetup;
use crate::error::CallError;
use crate::net::{to_endpoint, to_socket_addr, HeapOutbox};

/// Default retransmission period of a client (IronRSL: 1 s). A quarter second suits a LAN and
/// bounds how long a request waits before every replica sees it (and can suspect a dead
/// leader): failover takes about this plus one view timeout.
pub const DEFAULT_RETRANSMIT_MS: u64 = 250;

/// The engine's RSL client sized for std replicas.
pub type StdClient = Client<MAX_REPLICAS, SERVER_DATAGRAM_BYTES>;

/// A KV answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvAnswer {
    /// A Get's value (`None`: absent).
    Value(Option<Vec<u8>>),
    /// A Put or Delete took effect.
    Done,
}

/// A blocking client of one RSL cluster.
pub struct RslClient {
    inner: Box<StdClient>,
    socket: UdpSocket,
    clock: Clock,
    out: HeapOutbox,
    buf: Vec<u8>,
    max_request: usize,
    seal: Option<ClientSeal>,
}

impl RslClient {
    /// A client of `setup`'s replicas on a fresh local port.
    pub fn connect(setup: &RslSetup) -> Result<RslClient, CallError> {
        Self::with_retransmit(setup, DEFAULT_RETRANSMIT_MS)
    }

    /// Like `connect`, with a chosen retransmission period.
    pub fn with_retransmit(setup: &RslSetup, retransmit_ms: u64) -> Result<RslClient, CallError> {
        let any = match setup.addrs.first() {
            Some(SocketAddr::V6(_)) => "[::]:0",
            Some(a) if a.ip().is_loopback() => "127.0.0.1:0",
            _ => "0.0.0.0:0",
        };
        let (socket, seal) = client_socket_and_seal(setup.auth.as_ref(), setup.auth_cluster, &setup.addrs, any)?;
        let eps: Vec<_> = setup.addrs.iter().map(|a| to_endpoint(*a)).collect();
        // Seqnos must grow across restarts on the same port: start at the wall clock in µs.
        let first_seqno = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_micros() as u64);
        let max = setup.config.params.max_datagram_bytes;
        let inner = Client::new(&eps, first_seqno, retransmit_ms, max).map_err(|_| CallError::TooLarge)?;
        let max_request =
            setup.config.max_batch_bytes().saturating_sub(fleet_engine::rsl::replica::ENTRY_OVERHEAD_BYTES);
        Ok(RslClient {
            inner: Box::new(inner),
            socket,
            clock: Clock::start(),
            out: HeapOutbox::new(64, 1 << 20),
            buf: vec![0u8; 65536],
            max_request,
            seal,
        })
    }

    /// The local address replicas see as this client.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.socket.local_addr().ok()
    }

    fn flush(socket: &UdpSocket, out: &Outbox<'_>, seal: &mut Option<ClientSeal>) {
        for (dst, bytes) in out.iter() {
            let bytes = match seal.as_mut() {
                None => Some(bytes),
                Some(s) => s.seal(dst, bytes),
            };
            // A failed send is a lost datagram; retransmission covers it.
            if let Some(bytes) = bytes {
                let _ = socket.send_to(bytes, to_socket_addr(dst));
            }
        }
    }

    /// Sends `request` and waits up to `timeout` for its reply.
    pub fn call(&mut self, request: &[u8], timeout: Duration) -> Result<Vec<u8>, CallError> {
        self.call_kind(request, false, timeout)
    }

    /// Sends a membership change (bytes from [`fleet_engine::rsl::membership::encode_change`])
    /// and waits up to `timeout` for its outcome. See [`crate::rsl::members`] for the whole
    /// operator's path (learning the membership, checks, the change).
    pub fn change(&mut self, change: &[u8], timeout: Duration) -> Result<Outcome, CallError> {
        let reply = self.call_kind(change, true, timeout)?;
        postcard::from_bytes(&reply).map_err(|_| CallError::BadReply)
    }

    /// Starts from a membership learned from the replicas ([`crate::rsl::members`]): epoch
    /// `epoch` and its replicas (at most [`MAX_REPLICAS`]).
    pub fn set_membership(&mut self, epoch: u64, replicas: &[SocketAddr]) -> Result<(), CallError> {
        let eps: Vec<_> = replicas.iter().map(|a| to_endpoint(*a)).collect();
        self.inner.set_membership(epoch, &eps).map_err(|_| CallError::TooLarge)
    }

    /// The membership this client sends to: it follows a change when a replica that left
    /// the cluster tells it where the cluster went.
    pub fn membership(&self) -> (u64, Vec<SocketAddr>) {
        let (epoch, replicas) = self.inner.membership();
        (epoch, replicas.iter().map(|e| to_socket_addr(*e)).collect())
    }

    fn call_kind(&mut self, request: &[u8], change: bool, timeout: Duration) -> Result<Vec<u8>, CallError> {
        if request.len() > self.max_request {
            return Err(CallError::TooLarge);
        }
        let started = StdInstant::now();
        let mut out = self.out.outbox();
        let submitted = match change {
            false => self.inner.submit(self.clock.now(), request, &mut out),
            true => self.inner.submit_change(self.clock.now(), request, &mut out),
        };
        match submitted {
            Ok(_) => {}
            Err(ClientError::TooLarge) => return Err(CallError::TooLarge),
            Err(ClientError::Busy) => self.inner.cancel(),
        }
        Self::flush(&self.socket, &out, &mut self.seal);
        self.wait(started, timeout)
    }

    /// Runs `requests` in order, each exactly once, as a pipelined session: as many as fit
    /// go in one datagram (a group, [`fleet_engine::rsl::group`]), one group in flight at a
    /// time, until all have run; waits up to `timeout` for each group. Returns one reply per
    /// request; `None` for a request that was applied without room for its reply in its
    /// group's (ask a query again; updates should have short replies). On an error the
    /// requests of the group in flight may or may not have run, and later ones have not.
    pub fn call_group(&mut self, requests: &[&[u8]], timeout: Duration) -> Result<Vec<Option<Vec<u8>>>, CallError> {
        let mut replies = Vec::with_capacity(requests.len());
        while replies.len() < requests.len() {
            let started = StdInstant::now();
            let mut out = self.out.outbox();
            if self.inner.pending().is_some() {
                self.inner.cancel();
            }
            let rest = &requests[replies.len()..];
            let packed = match self.inner.submit_group(self.clock.now(), rest, &mut out) {
                Ok((_, packed)) => packed,
                Err(_) => return Err(CallError::TooLarge),
            };
            Self::flush(&self.socket, &out, &mut self.seal);
            let reply = self.wait(started, timeout)?;
            let mut answers = fleet_engine::rsl::group::replies(&reply).map(|r| r.map(<[u8]>::to_vec));
            replies.extend((0..packed).map(|_| answers.next().flatten()));
        }
        Ok(replies)
    }

    /// Waits for the outstanding request's reply, retransmitting on the client's timer.
    fn wait(&mut self, started: StdInstant, timeout: Duration) -> Result<Vec<u8>, CallError> {
        loop {
            let elapsed = started.elapsed();
            if elapsed >= timeout {
                self.inner.cancel();
                return Err(self
                    .seal
                    .as_mut()
                    .and_then(ClientSeal::take_refusal)
                    .unwrap_or(CallError::Timeout(timeout)));
            }
            let now = self.clock.now();
            let until_tick = Duration::from_micros(self.inner.next_deadline().micros_since(now));
            let wait = until_tick.min(timeout - elapsed).max(Duration::from_micros(50));
            self.socket.set_read_timeout(Some(wait)).map_err(CallError::Io)?;
            match self.socket.recv_from(&mut self.buf) {
                Ok((n, from)) => {
                    let datagram = match self.seal.as_mut() {
                        None => Some(&self.buf[..n]),
                        Some(s) => s.open(from, &self.buf[..n]),
                    };
                    if let Some(done) = datagram.and_then(|d| self.inner.handle(self.clock.now(), to_endpoint(from), d))
                    {
                        return Ok(done.reply.to_vec());
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(CallError::Io(e)),
            }
            let mut out = self.out.outbox();
            self.inner.tick(self.clock.now(), &mut out);
            Self::flush(&self.socket, &out, &mut self.seal);
        }
    }

    /// Runs a KV operation on the replicated map.
    pub fn kv(&mut self, op: KvOp<'_>, timeout: Duration) -> Result<KvAnswer, CallError> {
        let mut req = vec![0u8; self.max_request.max(16)];
        let n = op.encode(&mut req).map_err(|_| CallError::TooLarge)?;
        let reply = self.call(&req[..n], timeout)?;
        match KvReply::decode(&reply) {
            Some(KvReply::Value(v)) => Ok(KvAnswer::Value(v.map(|b| b.0.to_vec()))),
            Some(KvReply::Done) => Ok(KvAnswer::Done),
            Some(KvReply::Error(e)) => Err(CallError::Refused(format!("{e:?}"))),
            None => Err(CallError::BadReply),
        }
    }

    /// Reads `key`.
    pub fn get(&mut self, key: &[u8], timeout: Duration) -> Result<Option<Vec<u8>>, CallError> {
        match self.kv(KvOp::Get(Bytes(key)), timeout)? {
            KvAnswer::Value(v) => Ok(v),
            KvAnswer::Done => Err(CallError::BadReply),
        }
    }

    /// Writes `key`.
    pub fn put(&mut self, key: &[u8], value: &[u8], timeout: Duration) -> Result<(), CallError> {
        self.kv(KvOp::Put(Bytes(key), Bytes(value)), timeout).map(|_| ())
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: &[u8], timeout: Duration) -> Result<(), CallError> {
        self.kv(KvOp::Delete(Bytes(key)), timeout).map(|_| ())
    }
}
