//! IronKV on std UDP: the heap-backed store, the server host type, and a blocking client.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant, SystemTime, UNIX_EPOCH};

use fleet_engine::kv::client::{ClientError, Event, Outcome, Request};
use fleet_engine::kv::msg::{KeyBound, KeyRange};
use fleet_engine::kv::storage::{Storage, StorageError};
use fleet_engine::kv::{KvClient, KvConfig, KvHost};
use fleet_engine::{Endpoint, Instant, Outbox};

use crate::client::CallError;
use crate::net::{to_endpoint, to_socket_addr, HeapOutbox};
use crate::server::{
    bind_socket, run_as, stats_fields, Clock, Host, LoopOptions, RunningServer, ServerError, SERVER_STACK_BYTES,
};

/// Most hosts in a std KV cluster.
pub const KV_MAX_HOSTS: usize = 16;
/// Datagram capacity of std KV hosts and clients.
pub const KV_DATAGRAM_BYTES: usize = 8192;
/// A std KV host: 16 hosts, 1024 delegation runs, 1024 peers (hosts and clients), 1024
/// unacked messages, 8 KiB datagrams.
pub type KvServerHost = KvHost<StdStore, KV_MAX_HOSTS, 1024, 1024, 1024, KV_DATAGRAM_BYTES>;
/// A std KV client.
pub type StdKvClient = KvClient<KV_MAX_HOSTS, 8, KV_DATAGRAM_BYTES>;

/// An ordered, heap-backed store for a std KV host: at most `capacity` keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StdStore {
    map: BTreeMap<u64, Vec<u8>>,
    capacity: usize,
    max_value: usize,
}

impl StdStore {
    /// An empty store of at most `capacity` keys of at most `max_value` bytes.
    pub fn new(capacity: usize, max_value: usize) -> StdStore {
        StdStore { map: BTreeMap::new(), capacity, max_value }
    }
}

impl Storage for StdStore {
    fn get(&self, key: u64) -> Option<&[u8]> {
        self.map.get(&key).map(Vec::as_slice)
    }
    fn set(&mut self, key: u64, value: &[u8]) -> Result<(), StorageError> {
        if value.len() > self.max_value {
            return Err(StorageError::TooLarge);
        }
        if !self.map.contains_key(&key) && self.map.len() >= self.capacity {
            return Err(StorageError::Full);
        }
        self.map.insert(key, value.to_vec());
        Ok(())
    }
    fn delete(&mut self, key: u64) -> bool {
        self.map.remove(&key).is_some()
    }
    fn next_at_or_after(&self, key: u64) -> Option<(u64, &[u8])> {
        self.map.range(key..).next().map(|(k, v)| (*k, v.as_slice()))
    }
    fn len(&self) -> usize {
        self.map.len()
    }
    fn capacity(&self) -> usize {
        self.capacity
    }
    fn max_value_bytes(&self) -> usize {
        self.max_value
    }
}

/// A validated KV setup.
#[derive(Debug, Clone)]
pub struct KvSetup {
    /// Host addresses by id.
    pub addrs: Vec<SocketAddr>,
    /// The engine configuration.
    pub config: KvConfig<KV_MAX_HOSTS>,
    /// Keys each host may store.
    pub max_keys: usize,
}

impl Host for KvServerHost {
    fn handle(&mut self, now: Instant, from: Endpoint, datagram: &[u8], out: &mut Outbox<'_>) {
        let _ = KvHost::handle(self, now, from, datagram, out);
    }
    fn tick(&mut self, now: Instant, out: &mut Outbox<'_>) {
        let _ = KvHost::tick(self, now, out);
    }
    fn next_deadline(&self) -> Instant {
        KvHost::next_deadline(self)
    }
    fn stats_line(&self) -> String {
        format!("keys={} {:?} {}", self.storage().len(), self.counters(), stats_fields(self.stats()))
    }
}

/// Binds host `id`'s address and runs it on a new thread.
pub fn spawn_kv(setup: &KvSetup, id: usize, stats_every: Option<Duration>) -> Result<RunningServer, ServerError> {
    spawn_kv_at(setup, id, None, stats_every)
}

/// Like [`spawn_kv`], but the socket binds `bind` (when given) instead of the host's
/// configured address, which the engine and the peers keep using (see
/// [`crate::server::ServeOptions::bind`]). The returned server's `addr` is the bound address.
pub fn spawn_kv_at(
    setup: &KvSetup,
    id: usize,
    bind: Option<SocketAddr>,
    stats_every: Option<Duration>,
) -> Result<RunningServer, ServerError> {
    let addr = *setup.addrs.get(id).ok_or_else(|| ServerError::Config(format!("--id {id} is not a KV host")))?;
    let (socket, bound) = bind_socket(bind.unwrap_or(addr))?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let setup = setup.clone();
    let join = std::thread::Builder::new()
        .name(format!("kv-{id}"))
        .stack_size(SERVER_STACK_BYTES)
        .spawn(move || {
            let store = StdStore::new(setup.max_keys, setup.config.params.max_value_bytes);
            let host =
                KvServerHost::new(setup.config.clone(), id, store).map_err(|e| ServerError::Config(e.to_string()))?;
            let mut host = Box::new(host);
            let options = LoopOptions { stats_every, ..LoopOptions::default() };
            run_as(host.as_mut(), &socket, addr, Clock::start(), &flag, &options)
        })
        .map_err(ServerError::Io)?;
    Ok(RunningServer::new(stop, join, bound))
}

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
