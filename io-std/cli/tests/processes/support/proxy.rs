//! A fault-injecting UDP proxy between the replicas of a cluster and between the replicas and
//! their clients, owned by a test.
//!
//! Replica `i` advertises `A_i` (the config's address, a socket of the proxy) and binds a
//! private `B_i` (`fleet rsl serve --bind B_i`). The engine knows a peer by a datagram's
//! source address, so the proxy keeps every replica's traffic looking as if it came from its
//! advertised address:
//!
//! * a datagram arriving at `A_j` from `B_i` (replica `i`) goes to `B_j` from the socket
//!   `A_i`, so replica `j` sees it come from `A_i`;
//! * a datagram arriving at `A_j` from anything else (a client `c`) goes to `B_j` from a
//!   face `F_c`, a proxy socket made for `c` on first sight (NAT-like, at most
//!   [`MAX_FACES`]); the replicas see the client as `F_c`, and what they send to `F_c` goes
//!   back to `c` from `A_j`.
//!
//! A shared [`Faults`] table decides, per directed pair of [`Node`]s, whether a datagram is
//! dropped. One thread moves the datagrams; it sleeps in `mio` when there is nothing to do
//! and ends when the [`Proxy`] drops.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use fleet_cli::procs::free_udp_ports;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

/// Most client faces the proxy makes; datagrams from further clients are dropped (and counted).
pub const MAX_FACES: usize = 64;
/// Most datagrams taken from one socket per round before the others get their turn.
const BURST: usize = 256;
/// Longest sleep of the proxy thread, so it notices the stop flag.
const IDLE_WAIT: Duration = Duration::from_millis(50);

/// One side of a directed link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Node {
    /// Replica `i` of the config.
    Replica(usize),
    /// Every client of the cluster.
    Clients,
}

/// Which directed links drop their datagrams: a matrix over the replicas and the clients.
#[derive(Debug)]
pub struct Faults {
    replicas: usize,
    blocked: Vec<AtomicBool>,
}

impl Faults {
    fn new(replicas: usize) -> Faults {
        let n = replicas + 1;
        Faults { replicas, blocked: (0..n * n).map(|_| AtomicBool::new(false)).collect() }
    }

    fn index(&self, node: Node) -> usize {
        match node {
            Node::Replica(i) => {
                assert!(i < self.replicas, "there is no replica {i}");
                i
            }
            Node::Clients => self.replicas,
        }
    }

    fn cell(&self, from: Node, to: Node) -> &AtomicBool {
        &self.blocked[self.index(from) * (self.replicas + 1) + self.index(to)]
    }

    /// Whether datagrams from `from` to `to` are dropped now.
    pub fn is_blocked(&self, from: Node, to: Node) -> bool {
        self.cell(from, to).load(Ordering::Relaxed)
    }

    /// Drops (or, with `blocked: false`, passes again) datagrams from `from` to `to` only.
    pub fn set_one_way(&self, from: Node, to: Node, blocked: bool) {
        self.cell(from, to).store(blocked, Ordering::Relaxed);
    }

    /// A symmetric partition: nothing passes between a node of `a` and a node of `b`, either
    /// way. Links inside each side are left as they are.
    pub fn cut(&self, a: &[Node], b: &[Node]) {
        for &x in a {
            for &y in b {
                if x != y {
                    self.set_one_way(x, y, true);
                    self.set_one_way(y, x, true);
                }
            }
        }
    }

    /// Every link passes again.
    pub fn heal(&self) {
        for cell in &self.blocked {
            cell.store(false, Ordering::Relaxed);
        }
    }
}

/// What the proxy did, for assertions and failure messages.
#[derive(Debug, Default)]
pub struct ProxyCounters {
    /// Datagrams passed on.
    pub forwarded: AtomicU64,
    /// Datagrams dropped by the fault table.
    pub dropped: AtomicU64,
    /// Datagrams from clients beyond [`MAX_FACES`], dropped.
    pub no_face: AtomicU64,
    /// Sends that failed (a full socket buffer: a lost datagram).
    pub send_errors: AtomicU64,
}

impl std::fmt::Display for ProxyCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        write!(
            f,
            "proxy: {} forwarded, {} dropped by faults, {} from clients without a face, {} failed sends",
            get(&self.forwarded),
            get(&self.dropped),
            get(&self.no_face),
            get(&self.send_errors)
        )
    }
}

/// A running proxy; its thread stops when this drops.
pub struct Proxy {
    /// The advertised address of each replica (put these in the config).
    pub advertised: Vec<SocketAddr>,
    /// The private address each replica must bind (`--bind`).
    pub private: Vec<SocketAddr>,
    /// The fault table, shared with the proxy thread.
    pub faults: Arc<Faults>,
    /// Counters, shared with the proxy thread.
    pub counters: Arc<ProxyCounters>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl Proxy {
    /// Binds one advertised socket per replica on 127.0.0.1, picks free private ports, and
    /// starts the proxy thread.
    pub fn start(replicas: usize) -> std::io::Result<Proxy> {
        let loopback: SocketAddr = "127.0.0.1:0".parse().map_err(std::io::Error::other)?;
        let faces: Vec<UdpSocket> = (0..replicas).map(|_| UdpSocket::bind(loopback)).collect::<Result<_, _>>()?;
        let advertised: Vec<SocketAddr> = faces.iter().map(UdpSocket::local_addr).collect::<Result<_, _>>()?;
        let private: Vec<SocketAddr> =
            free_udp_ports(replicas)?.into_iter().map(|p| SocketAddr::new(loopback.ip(), p)).collect();
        let faults = Arc::new(Faults::new(replicas));
        let counters = Arc::new(ProxyCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut state = State {
            replicas: faces,
            private: private.clone(),
            clients: Vec::new(),
            by_client: HashMap::new(),
            faults: faults.clone(),
            counters: counters.clone(),
            buf: vec![0u8; 65536],
        };
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name("udp-proxy".into()).spawn(move || state.run(&flag))?;
        Ok(Proxy { advertised, private, faults, counters, stop, thread: Some(thread) })
    }

    /// Stops the thread and returns its result (an I/O error of `mio`, if any).
    pub fn stop(mut self) -> std::io::Result<()> {
        self.halt()
    }

    fn halt(&mut self) -> std::io::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(std::io::Error::other("the proxy thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

/// A face: the proxy socket one client is seen from.
struct Face {
    client: SocketAddr,
    socket: UdpSocket,
}

struct State {
    /// Socket `i` is bound to replica `i`'s advertised address. Token `i`.
    replicas: Vec<UdpSocket>,
    private: Vec<SocketAddr>,
    /// Token `replicas.len() + k` is face `k`.
    clients: Vec<Face>,
    by_client: HashMap<SocketAddr, usize>,
    faults: Arc<Faults>,
    counters: Arc<ProxyCounters>,
    buf: Vec<u8>,
}

impl State {
    fn run(&mut self, stop: &AtomicBool) -> std::io::Result<()> {
        let mut poll = Poll::new()?;
        for (i, s) in self.replicas.iter_mut().enumerate() {
            poll.registry().register(s, Token(i), Interest::READABLE)?;
        }
        let mut events = Events::with_capacity(256);
        let mut backlog = false;
        while !stop.load(Ordering::Relaxed) {
            // Edge-triggered readiness: every socket is drained each round (bounded per
            // socket), and a socket left non-empty makes the next wait zero.
            let wait = if backlog { Duration::ZERO } else { IDLE_WAIT };
            match poll.poll(&mut events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            backlog = false;
            for j in 0..self.replicas.len() {
                backlog |= self.drain_advertised(j, poll.registry())?;
            }
            for k in 0..self.clients.len() {
                backlog |= self.drain_face(k);
            }
        }
        Ok(())
    }

    fn count(&self, c: impl Fn(&ProxyCounters) -> &AtomicU64) {
        c(&self.counters).fetch_add(1, Ordering::Relaxed);
    }

    fn send(&self, socket: &UdpSocket, len: usize, to: SocketAddr) {
        match socket.send_to(&self.buf[..len], to) {
            Ok(_) => self.count(|c| &c.forwarded),
            Err(_) => self.count(|c| &c.send_errors),
        }
    }

    /// Datagrams to replica `j`'s advertised address; true if the socket may hold more.
    fn drain_advertised(&mut self, j: usize, registry: &mio::Registry) -> std::io::Result<bool> {
        for _ in 0..BURST {
            let (len, from) = match self.replicas[j].recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                // ICMP errors of earlier sends (a replica not listening yet): not datagrams.
                Err(_) => continue,
            };
            let to = self.private[j];
            if let Some(i) = self.private.iter().position(|p| *p == from) {
                if self.faults.is_blocked(Node::Replica(i), Node::Replica(j)) {
                    self.count(|c| &c.dropped);
                } else {
                    self.send(&self.replicas[i], len, to);
                }
                continue;
            }
            let Some(k) = self.face(from, registry)? else {
                self.count(|c| &c.no_face);
                continue;
            };
            if self.faults.is_blocked(Node::Clients, Node::Replica(j)) {
                self.count(|c| &c.dropped);
            } else {
                self.send(&self.clients[k].socket, len, to);
            }
        }
        Ok(true)
    }

    /// The face of `client`, made on first sight; `None` when all faces are taken.
    fn face(&mut self, client: SocketAddr, registry: &mio::Registry) -> std::io::Result<Option<usize>> {
        if let Some(&k) = self.by_client.get(&client) {
            return Ok(Some(k));
        }
        if self.clients.len() >= MAX_FACES {
            return Ok(None);
        }
        let mut socket = UdpSocket::bind(SocketAddr::new(client.ip(), 0))?;
        let k = self.clients.len();
        registry.register(&mut socket, Token(self.replicas.len() + k), Interest::READABLE)?;
        self.clients.push(Face { client, socket });
        self.by_client.insert(client, k);
        Ok(Some(k))
    }

    /// Datagrams the replicas sent to face `k`: back to its client from the sender's
    /// advertised address. True if the socket may hold more.
    fn drain_face(&mut self, k: usize) -> bool {
        for _ in 0..BURST {
            let (len, from) = match self.clients[k].socket.recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(_) => continue,
            };
            // Only replicas know a face's address; anything else is ignored.
            let Some(j) = self.private.iter().position(|p| *p == from) else { continue };
            if self.faults.is_blocked(Node::Replica(j), Node::Clients) {
                self.count(|c| &c.dropped);
            } else {
                self.send(&self.replicas[j], len, self.clients[k].client);
            }
        }
        true
    }
}
