//! A blocking IronKV client over std UDP.

use std::io::ErrorKind;
use std::net::UdpSocket;
use std::time::{Duration, Instant as StdInstant, SystemTime, UNIX_EPOCH};

use fleet_engine::kv::client::{ClientError, Event, Outcome, Request};
use fleet_engine::kv::msg::{KeyBound, KeyRange};
use fleet_engine::kv::KvClient;
use fleet_engine::{Endpoint, Outbox};

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
}

impl KvBlockingClient {
    /// A client of `setup`'s hosts on a fresh local port.
    pub fn connect(setup: &KvSetup) -> Result<KvBlockingClient, CallError> {
        let bind = if setup.addrs.first().is_some_and(|a| a.is_ipv6()) { "[::]:0" } else { "127.0.0.1:0" };
        let socket = UdpSocket::bind(bind).map_err(CallError::Io)?;
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
        })
    }

    fn flush(socket: &UdpSocket, out: &Outbox<'_>) {
        for (dst, bytes) in out.iter() {
            let _ = socket.send_to(bytes, to_socket_addr(dst));
        }
    }

    /// Runs one operation, waiting up to `timeout`.
    pub fn call(&mut self, request: Request<'_>, to: Option<usize>, timeout: Duration) -> Result<KvAnswer, CallError> {
        let started = StdInstant::now();
        let mut o = self.out.outbox();
        let submitted = match to.and_then(|i| self.hosts.get(i).copied()) {
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
        Self::flush(&self.socket, &o);
        loop {
            let elapsed = started.elapsed();
            if elapsed >= timeout {
                self.inner.cancel();
                return Err(CallError::Timeout(timeout));
            }
            let now = self.clock.now();
            let until = Duration::from_micros(self.inner.next_deadline().micros_since(now));
            self.socket
                .set_read_timeout(Some(until.min(timeout - elapsed).max(Duration::from_micros(50))))
                .map_err(CallError::Io)?;
            match self.socket.recv_from(&mut self.buf) {
                Ok((n, from)) => {
                    let mut o = self.out.outbox();
                    let ev = self.inner.handle(self.clock.now(), to_endpoint(from), &self.buf[..n], &mut o);
                    let answer = match ev {
                        Some(Event::Completed(c)) => Some(match c.outcome {
                            Outcome::Value(v) => Ok(KvAnswer::Value(v.map(<[u8]>::to_vec))),
                            Outcome::Written => Ok(KvAnswer::Written),
                            Outcome::Sharded => Ok(KvAnswer::Sharded),
                            Outcome::Failed(e) => Err(CallError::Refused(format!("{e:?}"))),
                        }),
                        _ => None,
                    };
                    if answer.is_some() {
                        // The reply's ack is owed; nobody ticks this client between calls.
                        self.inner.flush_acks(&mut o);
                    }
                    Self::flush(&self.socket, &o);
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
            Self::flush(&self.socket, &o);
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

    /// Moves keys `[lo, hi)` to host `to`; the request goes to host `via` (the owner).
    pub fn shard(
        &mut self,
        lo: u64,
        hi: Option<u64>,
        to: usize,
        via: usize,
        timeout: Duration,
    ) -> Result<(), CallError> {
        let recipient = *self.hosts.get(to).ok_or(CallError::Refused(format!("there is no host {to}")))?;
        let range = KeyRange { lo: KeyBound::Key(lo), hi: hi.map_or(KeyBound::Inf, KeyBound::Key) };
        self.call(Request::Shard(range, recipient), Some(via), timeout).map(|_| ())
    }
}
