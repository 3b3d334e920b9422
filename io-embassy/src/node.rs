//! The async run loop: one UDP socket, one engine host, embassy-time timers.
//!
//! Each iteration is one IronFleet step: wait for a datagram or for the host's
//! `next_deadline`, whichever comes first; read the clock once (after the receive); call
//! `handle` or `tick`; send every datagram of the step's outbox. Datagrams addressed to the
//! node itself (IronRSL broadcasts include the sender) do not go through the stack: they
//! are queued in a bounded loopback FIFO and fed back to `handle` after the step, exactly
//! as `fleet-io-std` does. A full loopback FIFO drops (and counts) like a lossy network.
//!
//! With a [`Guard`] ([`Node::run_sealed`]) every datagram is opened before `handle` (a
//! refused one is counted in [`LinkStats::auth_refused`] and changes nothing) and sealed as
//! it leaves, in the receive buffer (so `D` must hold the engine's largest datagram plus
//! [`AUTH_OVERHEAD_BYTES`](fleet_engine::auth::AUTH_OVERHEAD_BYTES)); self-addressed
//! datagrams are neither.
//!
//! The host lives in a blocking mutex ([`Node::with`]) so that other tasks — a status
//! display, a test — can read it between steps; the run loop holds it only for the
//! duration of one synchronous engine call, never across an `.await`.

use core::cell::RefCell;

use embassy_futures::select::{select, Either};
use embassy_net::udp::{PacketMetadata, RecvError, UdpSocket};
use embassy_net::Stack;
use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_time::{Duration, Timer};
use fleet_engine::auth::{Guard, AUTH_HEADER_BYTES};
use fleet_engine::{Endpoint, Instant, Outbox, OutboxBuf};

use crate::durable::{Halt, InMemory, Input, Persist};
use crate::host::SansIoHost;
use crate::log::{debug, error};
use crate::net::{to_endpoint, to_ip_endpoint};

/// Most self-addressed datagrams fed back after one step before the loop polls the socket
/// again (bounds the time between receives; the rest wait in the FIFO).
pub const MAX_LOOPBACK_PER_ROUND: usize = 64;
/// The longest single wait; the loop re-reads the deadline at least this often.
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// What the binding itself saw (the engine's own counters are in the host's `stats()`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LinkStats {
    /// Datagrams received from the socket and passed to `handle`.
    pub received: u64,
    /// Datagrams handed to the socket.
    pub sent: u64,
    /// Datagrams the socket refused (no route, larger than its buffer, address family not built).
    pub send_errors: u64,
    /// Received datagrams larger than the receive buffer (`D`): dropped.
    pub truncated: u64,
    /// Received datagrams from an address family this build does not convert: dropped.
    pub unknown_family: u64,
    /// Self-addressed datagrams fed back to `handle`.
    pub looped_back: u64,
    /// Self-addressed datagrams dropped because the loopback FIFO was full.
    pub loopback_dropped: u64,
    /// Calls to `tick`.
    pub ticks: u64,
    /// Received datagrams refused by the guard (forged, tampered with, another key's).
    pub auth_refused: u64,
}

fn bump(c: &mut u64) {
    *c = c.saturating_add(1);
}

/// The host and the binding's counters, as seen through [`Node::with`].
#[derive(Debug)]
pub struct NodeState<H> {
    /// The engine host.
    pub host: H,
    /// The binding's counters.
    pub link: LinkStats,
    /// Why the node stopped speaking, once its persister failed ([`Node::run_durable`]).
    pub halted: Option<Halt>,
}

/// An engine host bound to one endpoint, ready to [`run`](Node::run) on a UDP socket.
///
/// `M` is the mutex flavour guarding the host: `NoopRawMutex` when every user is on one
/// executor, `CriticalSectionRawMutex` when another executor, an interrupt or a thread
/// reads it.
pub struct Node<M: RawMutex, H> {
    me: Endpoint,
    state: Mutex<M, RefCell<NodeState<H>>>,
}

/// The run loop's working memory, all sized at compile time.
///
/// `SLOTS`/`BYTES`: one step's outbox (datagrams, arena bytes). `D`: the receive buffer,
/// at least the configured `max_datagram_bytes`. `LB`: loopback FIFO bytes (each queued
/// datagram takes its length plus 2).
pub struct Buffers<const SLOTS: usize, const BYTES: usize, const D: usize, const LB: usize> {
    out: OutboxBuf<SLOTS, BYTES>,
    rx: [u8; D],
    loopback: Fifo<LB>,
}

impl<const SLOTS: usize, const BYTES: usize, const D: usize, const LB: usize> Buffers<SLOTS, BYTES, D, LB> {
    /// Zeroed buffers (`const`, so they can live in a `static`).
    pub const fn new() -> Self {
        Buffers { out: OutboxBuf::new(), rx: [0; D], loopback: Fifo::new() }
    }
}

impl<const SLOTS: usize, const BYTES: usize, const D: usize, const LB: usize> Default for Buffers<SLOTS, BYTES, D, LB> {
    fn default() -> Self {
        Self::new()
    }
}

/// Storage for one embassy-net UDP socket: `META` packets and `BYTES` payload bytes per
/// direction. `BYTES` must be at least one maximum datagram, or sends of that size fail.
pub struct SocketBuffers<const META: usize, const BYTES: usize> {
    rx_meta: [PacketMetadata; META],
    rx: [u8; BYTES],
    tx_meta: [PacketMetadata; META],
    tx: [u8; BYTES],
}

impl<const META: usize, const BYTES: usize> SocketBuffers<META, BYTES> {
    /// Empty storage (`const`, so it can live in a `static`).
    pub const fn new() -> Self {
        SocketBuffers {
            rx_meta: [PacketMetadata::EMPTY; META],
            rx: [0; BYTES],
            tx_meta: [PacketMetadata::EMPTY; META],
            tx: [0; BYTES],
        }
    }

    /// A socket on `stack` over this storage, bound to `port` on every local address.
    pub fn bind<'a>(&'a mut self, stack: Stack<'a>, port: u16) -> Result<UdpSocket<'a>, embassy_net::udp::BindError> {
        let mut socket = UdpSocket::new(stack, &mut self.rx_meta, &mut self.rx, &mut self.tx_meta, &mut self.tx);
        socket.bind(port)?;
        Ok(socket)
    }
}

impl<const META: usize, const BYTES: usize> Default for SocketBuffers<META, BYTES> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: RawMutex, H: SansIoHost> Node<M, H> {
    /// `host`, which knows itself as `me` in its configuration (the endpoint peers send to;
    /// behind a NAT it may differ from the socket's local address).
    pub const fn new(me: Endpoint, host: H) -> Self {
        Node { me, state: Mutex::new(RefCell::new(NodeState { host, link: ZERO_STATS, halted: None })) }
    }

    /// The endpoint this node is in its configuration.
    pub fn me(&self) -> Endpoint {
        self.me
    }

    /// Runs `f` on the host and counters between steps. Do not call `with` from inside `f`.
    pub fn with<R>(&self, f: impl FnOnce(&mut NodeState<H>) -> R) -> R {
        self.state.lock(|cell| f(&mut cell.borrow_mut()))
    }

    /// Runs the in-memory host on `socket` forever.
    pub async fn run<const SLOTS: usize, const BYTES: usize, const D: usize, const LB: usize>(
        &self,
        socket: &UdpSocket<'_>,
        bufs: &mut Buffers<SLOTS, BYTES, D, LB>,
    ) -> ! {
        self.run_durable(socket, bufs, &mut InMemory).await
    }

    /// Runs the host on `socket` forever, persisting what each step requires through
    /// `persist` before the step's datagrams leave. If `persist` fails, the node stops
    /// speaking for good and [`NodeState::halted`] says why.
    pub async fn run_durable<const SLOTS: usize, const BYTES: usize, const D: usize, const LB: usize>(
        &self,
        socket: &UdpSocket<'_>,
        bufs: &mut Buffers<SLOTS, BYTES, D, LB>,
        persist: &mut impl Persist<H>,
    ) -> ! {
        self.run_with(socket, bufs, persist, None::<&mut Guard<'_, 0>>).await
    }

    /// [`Node::run_durable`] on a sealed cluster: every datagram is opened with `guard`
    /// before the host sees it and sealed with it as it leaves.
    pub async fn run_sealed<const SLOTS: usize, const BYTES: usize, const D: usize, const LB: usize, const A: usize>(
        &self,
        socket: &UdpSocket<'_>,
        bufs: &mut Buffers<SLOTS, BYTES, D, LB>,
        persist: &mut impl Persist<H>,
        guard: &mut Guard<'_, A>,
    ) -> ! {
        self.run_with(socket, bufs, persist, Some(guard)).await
    }

    async fn run_with<const SLOTS: usize, const BYTES: usize, const D: usize, const LB: usize, const A: usize>(
        &self,
        socket: &UdpSocket<'_>,
        bufs: &mut Buffers<SLOTS, BYTES, D, LB>,
        persist: &mut impl Persist<H>,
        mut guard: Option<&mut Guard<'_, A>>,
    ) -> ! {
        let Buffers { out: store, rx, loopback } = bufs;
        debug!("fleet node up");
        loop {
            let now = crate::now();
            let deadline = self.with(|s| s.host.next_deadline());
            if deadline <= now {
                let mut out = store.outbox();
                self.with(|s| {
                    bump(&mut s.link.ticks);
                    s.host.tick(now, &mut out);
                });
                self.persist(persist, now, Input::Tick).await;
                self.flush(socket, &out, loopback, &mut guard, rx).await;
            } else {
                let wait = Duration::from_micros(deadline.micros_since(now)).min(MAX_WAIT);
                let event = select(socket.recv_from(rx), Timer::after(wait)).await;
                match event {
                    Either::First(Ok((n, meta))) => {
                        // One clock reading per step, after the receive.
                        let now = crate::now();
                        let mut out = store.outbox();
                        let opened = match to_endpoint(meta.endpoint) {
                            None => Err(Refused::UnknownFamily),
                            Some(from) => match guard.as_deref_mut() {
                                None => Ok((from, 0..n)),
                                Some(g) => match g.open(from, &rx[..n]) {
                                    // The inner datagram sits after the sealed header.
                                    Ok(inner) => Ok((from, AUTH_HEADER_BYTES..AUTH_HEADER_BYTES + inner.len())),
                                    Err(_) => Err(Refused::Auth),
                                },
                            },
                        };
                        let handled = self.with(|s| match opened {
                            Ok((from, range)) => {
                                bump(&mut s.link.received);
                                s.host.handle(now, from, &rx[range.clone()], &mut out);
                                Some((from, range))
                            }
                            Err(Refused::UnknownFamily) => {
                                bump(&mut s.link.unknown_family);
                                None
                            }
                            Err(Refused::Auth) => {
                                bump(&mut s.link.auth_refused);
                                None
                            }
                        });
                        if let Some((from, range)) = handled {
                            self.persist(persist, now, Input::Datagram { from, datagram: &rx[range] }).await;
                            self.flush(socket, &out, loopback, &mut guard, rx).await;
                        }
                    }
                    Either::First(Err(RecvError::Truncated)) => {
                        debug!("datagram larger than the receive buffer dropped");
                        self.with(|s| bump(&mut s.link.truncated));
                    }
                    Either::Second(()) => {}
                }
            }
            for _ in 0..MAX_LOOPBACK_PER_ROUND {
                let Some(n) = loopback.pop(rx) else { break };
                let now = crate::now();
                let mut out = store.outbox();
                self.with(|s| {
                    bump(&mut s.link.looped_back);
                    s.host.handle(now, self.me, &rx[..n], &mut out);
                });
                self.persist(persist, now, Input::Datagram { from: self.me, datagram: &rx[..n] }).await;
                self.flush(socket, &out, loopback, &mut guard, rx).await;
            }
        }
    }

    /// Persists what the step requires; on failure, halts: the node never speaks again.
    async fn persist(&self, persist: &mut impl Persist<H>, now: Instant, input: Input<'_>) {
        if let Err(halt) = persist.after_step(self, now, input).await {
            error!("fleet node halted: {}", halt.0);
            self.with(|s| s.halted = Some(halt));
            core::future::pending::<()>().await;
        }
    }

    /// Sends a step's datagrams (sealed in `scratch`, the receive buffer, when there is a
    /// guard); self-addressed ones go to the loopback FIFO as they are.
    async fn flush<const LB: usize, const A: usize>(
        &self,
        socket: &UdpSocket<'_>,
        out: &Outbox<'_>,
        loopback: &mut Fifo<LB>,
        guard: &mut Option<&mut Guard<'_, A>>,
        scratch: &mut [u8],
    ) {
        for (dst, bytes) in out.iter() {
            if dst == self.me {
                if !loopback.push(bytes) {
                    self.with(|s| bump(&mut s.link.loopback_dropped));
                }
                continue;
            }
            let wire = match guard.as_deref_mut() {
                None => Some(bytes),
                Some(g) => g.seal(dst, bytes, scratch).ok().map(|n| &scratch[..n]),
            };
            let sent = match (to_ip_endpoint(dst), wire) {
                // UDP is lossy by contract: a refused send is a lost datagram, counted.
                (Some(ep), Some(wire)) => socket.send_to(wire, ep).await.is_ok(),
                _ => false,
            };
            self.with(|s| match sent {
                true => bump(&mut s.link.sent),
                false => bump(&mut s.link.send_errors),
            });
        }
    }
}

const ZERO_STATS: LinkStats = LinkStats {
    received: 0,
    sent: 0,
    send_errors: 0,
    truncated: 0,
    unknown_family: 0,
    looped_back: 0,
    loopback_dropped: 0,
    ticks: 0,
    auth_refused: 0,
};

/// Why a received datagram did not reach the host.
enum Refused {
    UnknownFamily,
    Auth,
}

/// A byte FIFO of length-prefixed datagrams (2-byte little-endian length, then the bytes).
struct Fifo<const N: usize> {
    bytes: heapless::Deque<u8, N>,
}

impl<const N: usize> Fifo<N> {
    const fn new() -> Self {
        Fifo { bytes: heapless::Deque::new() }
    }

    /// Queues `datagram`; false (nothing queued) if it does not fit.
    fn push(&mut self, datagram: &[u8]) -> bool {
        let Ok(len) = u16::try_from(datagram.len()) else { return false };
        if N - self.bytes.len() < datagram.len() + 2 {
            return false;
        }
        for b in len.to_le_bytes().iter().chain(datagram) {
            // Cannot fail: room was checked above.
            let _ = self.bytes.push_back(*b);
        }
        true
    }

    /// Moves the oldest datagram into `buf`; returns its length. A datagram longer than
    /// `buf` is dropped (cannot happen when `buf` holds a maximum datagram).
    fn pop(&mut self, buf: &mut [u8]) -> Option<usize> {
        let lo = self.bytes.pop_front()?;
        let hi = self.bytes.pop_front()?;
        let len = usize::from(u16::from_le_bytes([lo, hi]));
        for i in 0..len {
            let b = self.bytes.pop_front()?;
            if let Some(slot) = buf.get_mut(i) {
                *slot = b;
            }
        }
        (len <= buf.len()).then_some(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_keeps_order_and_refuses_what_does_not_fit() {
        let mut f = Fifo::<12>::new();
        assert!(f.push(b"abc"));
        assert!(f.push(b"defgh"));
        assert!(!f.push(b"x"), "2 bytes left, a 1-byte datagram needs 3");
        let mut buf = [0u8; 8];
        assert_eq!(f.pop(&mut buf), Some(3));
        assert_eq!(&buf[..3], b"abc");
        assert!(f.push(b"x"));
        assert_eq!(f.pop(&mut buf), Some(5));
        assert_eq!(&buf[..5], b"defgh");
        assert_eq!(f.pop(&mut buf), Some(1));
        assert_eq!(f.pop(&mut buf), None);
    }
}
