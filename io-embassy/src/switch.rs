//! An in-memory IP switch: one [`Port`] per embassy-net stack, routing raw IP packets
//! (`medium-ip`) by destination address, with optional loss, reordering and cut ports.
//!
//! Several embassy-net stacks, each with its own address, then talk UDP to each other in
//! one process — a host test of the real binding code over the real smoltcp stack. A
//! *default port* receives packets for addresses no port owns; with
//! [`Port::take_frame`] / [`Port::inject_frame`] a test can bridge it elsewhere (for
//! instance to std UDP sockets).
//!
//! It needs no `std`: state sits behind a critical-section mutex (on a host, enable
//! `critical-section`'s `std` feature), frames in fixed queues of `Q` per port.

use core::cell::RefCell;
use core::task::Context;

use embassy_net_driver::{Capabilities, Driver, HardwareAddress, LinkState, RxToken, TxToken};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::waitqueue::WakerRegistration;
use fleet_engine::IpAddr;

/// The switch's MTU: IP packets up to 1500 bytes (1472 bytes of UDP payload over IPv4).
pub const MTU: usize = 1500;
/// One IP packet.
pub type Frame = heapless::Vec<u8, MTU>;

/// Network faults applied to every packet crossing the switch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Per-mille chance a packet is lost.
    pub loss_permille: u16,
    /// Per-mille chance a packet overtakes the one queued before it.
    pub reorder_permille: u16,
}

/// What happened to the packets sent to (or from) one port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets queued for this port.
    pub delivered: u64,
    /// Packets for this port lost on purpose ([`Faults::loss_permille`]).
    pub lost: u64,
    /// Packets to or from this port dropped because it was cut off.
    pub cut: u64,
    /// Packets for this port dropped because its queue was full.
    pub overflow: u64,
    /// Packets for this port that overtook another.
    pub reordered: u64,
    /// Packets from this port with no destination port (and no default port).
    pub no_route: u64,
}

/// Why a port could not be attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachError {
    /// All `P` ports are in use.
    Full,
    /// Another port owns that address, or a default port exists already.
    Taken,
    /// The port's handle still exists ([`Switch::reopen`]), or there is no such port.
    Held,
}

/// An index of a port on its switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortId(pub usize);

struct PortState<const Q: usize> {
    addr: Option<IpAddr>,
    connected: bool,
    /// A [`Port`] handle for it exists.
    held: bool,
    queue: heapless::Deque<Frame, Q>,
    waker: WakerRegistration,
    stats: PortStats,
}

impl<const Q: usize> PortState<Q> {
    const fn new() -> Self {
        PortState {
            addr: None,
            connected: true,
            held: false,
            queue: heapless::Deque::new(),
            waker: WakerRegistration::new(),
            stats: PortStats { delivered: 0, lost: 0, cut: 0, overflow: 0, reordered: 0, no_route: 0 },
        }
    }
}

struct Inner<const P: usize, const Q: usize> {
    ports: [PortState<Q>; P],
    attached: usize,
    default_port: Option<usize>,
    faults: Faults,
    rng: u64,
}

impl<const P: usize, const Q: usize> Inner<P, Q> {
    /// xorshift64*: deterministic for a seed, good enough to pick lost packets.
    fn roll(&mut self, permille: u16) -> bool {
        if permille == 0 {
            return false;
        }
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (r >> 32) % 1000 < u64::from(permille)
    }

    fn route(&mut self, from: usize, frame: Frame) {
        if !self.ports[from].connected {
            self.ports[from].stats.cut += 1;
            return;
        }
        let dst = destination(&frame);
        let to =
            self.ports[..self.attached].iter().position(|p| p.addr.is_some() && p.addr == dst).or(self.default_port);
        let Some(to) = to else {
            self.ports[from].stats.no_route += 1;
            return;
        };
        self.deliver(to, frame);
    }

    fn deliver(&mut self, to: usize, frame: Frame) {
        let faults = self.faults;
        if !self.ports[to].connected {
            self.ports[to].stats.cut += 1;
            return;
        }
        if self.roll(faults.loss_permille) {
            self.ports[to].stats.lost += 1;
            return;
        }
        let reorder = self.roll(faults.reorder_permille);
        let port = &mut self.ports[to];
        if port.queue.is_full() {
            port.stats.overflow += 1;
            return;
        }
        match (reorder, port.queue.pop_back()) {
            (true, Some(prev)) => {
                // Cannot fail: one slot was freed by pop_back and the queue was not full.
                let _ = port.queue.push_back(frame);
                let _ = port.queue.push_back(prev);
                port.stats.reordered += 1;
            }
            (_, prev) => {
                if let Some(prev) = prev {
                    let _ = port.queue.push_back(prev);
                }
                let _ = port.queue.push_back(frame);
            }
        }
        port.stats.delivered += 1;
        port.waker.wake();
    }
}

/// The destination address of an IPv4 or IPv6 packet.
fn destination(frame: &[u8]) -> Option<IpAddr> {
    match frame.first()? >> 4 {
        4 => Some(IpAddr::V4(frame.get(16..20)?.try_into().ok()?)),
        6 => Some(IpAddr::V6(frame.get(24..40)?.try_into().ok()?)),
        _ => None,
    }
}

/// An in-memory switch of `P` ports, each with a receive queue of `Q` packets.
///
/// It is large (`P × Q × 1.5 KB`): keep it in a `static` or on the heap of a test.
pub struct Switch<const P: usize, const Q: usize> {
    inner: Mutex<CriticalSectionRawMutex, RefCell<Inner<P, Q>>>,
}

impl<const P: usize, const Q: usize> Switch<P, Q> {
    /// An empty switch with no faults; `seed` drives loss and reordering.
    pub const fn new(seed: u64) -> Self {
        Switch {
            inner: Mutex::new(RefCell::new(Inner {
                ports: [const { PortState::new() }; P],
                attached: 0,
                default_port: None,
                faults: Faults { loss_permille: 0, reorder_permille: 0 },
                rng: seed | 1,
            })),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner<P, Q>) -> R) -> R {
        self.inner.lock(|c| f(&mut c.borrow_mut()))
    }

    /// A port that receives packets addressed to `addr`.
    pub fn attach(&self, addr: IpAddr) -> Result<Port<'_, P, Q>, AttachError> {
        self.attach_inner(Some(addr))
    }

    /// The port that receives packets for every address no other port owns (an uplink).
    pub fn attach_default(&self) -> Result<Port<'_, P, Q>, AttachError> {
        self.attach_inner(None)
    }

    fn attach_inner(&self, addr: Option<IpAddr>) -> Result<Port<'_, P, Q>, AttachError> {
        let id = self.with(|s| {
            if s.attached == P {
                return Err(AttachError::Full);
            }
            let taken = match addr {
                Some(a) => s.ports[..s.attached].iter().any(|p| p.addr == Some(a)),
                None => s.default_port.is_some(),
            };
            if taken {
                return Err(AttachError::Taken);
            }
            let id = s.attached;
            s.ports[id].addr = addr;
            s.ports[id].held = true;
            if addr.is_none() {
                s.default_port = Some(id);
            }
            s.attached += 1;
            Ok(id)
        })?;
        Ok(Port { switch: self, id: PortId(id) })
    }

    /// A new handle for port `id`, whose previous handle was dropped: the same address on
    /// the same wire, as a device's NIC after the device resets. Packets queued meanwhile
    /// are dropped (a reset loses the NIC's buffers).
    pub fn reopen(&self, id: PortId) -> Result<Port<'_, P, Q>, AttachError> {
        self.with(|s| {
            let attached = s.attached;
            match s.ports.get_mut(id.0) {
                Some(p) if id.0 < attached && !p.held => {
                    p.held = true;
                    p.queue.clear();
                    Ok(())
                }
                _ => Err(AttachError::Held),
            }
        })?;
        Ok(Port { switch: self, id })
    }

    /// Sets the faults applied from now on.
    pub fn set_faults(&self, faults: Faults) {
        self.with(|s| s.faults = faults);
    }

    /// Cuts a port off (every packet to or from it is dropped) or reconnects it.
    pub fn set_connected(&self, port: PortId, connected: bool) {
        self.with(|s| {
            if let Some(p) = s.ports.get_mut(port.0) {
                p.connected = connected;
                if !connected {
                    p.queue.clear();
                }
            }
        });
    }

    /// The counters of one port.
    pub fn stats(&self, port: PortId) -> PortStats {
        self.with(|s| s.ports.get(port.0).map(|p| p.stats).unwrap_or_default())
    }
}

/// One port of a [`Switch`]: an [`embassy_net_driver::Driver`] for one stack.
pub struct Port<'s, const P: usize, const Q: usize> {
    switch: &'s Switch<P, Q>,
    id: PortId,
}

impl<const P: usize, const Q: usize> Drop for Port<'_, P, Q> {
    fn drop(&mut self) {
        let id = self.id;
        self.switch.with(|s| {
            if let Some(p) = s.ports.get_mut(id.0) {
                p.held = false;
            }
        });
    }
}

impl<'s, const P: usize, const Q: usize> Port<'s, P, Q> {
    /// This port's index (for [`Switch::set_connected`] and [`Switch::stats`]).
    pub fn id(&self) -> PortId {
        self.id
    }

    /// Takes the oldest packet queued for this port, registering `cx`'s waker if none is.
    pub fn poll_frame(&self, cx: &mut Context<'_>) -> Option<Frame> {
        self.switch.with(|s| {
            let p = &mut s.ports[self.id.0];
            let f = p.queue.pop_front();
            if f.is_none() {
                p.waker.register(cx.waker());
            }
            f
        })
    }

    /// Takes the oldest packet queued for this port, if any (for bridges).
    pub fn take_frame(&self) -> Option<Frame> {
        self.switch.with(|s| s.ports[self.id.0].queue.pop_front())
    }

    /// Sends a packet into the switch as if this port's stack had sent it (for bridges).
    pub fn inject_frame(&self, frame: Frame) {
        self.switch.with(|s| s.route(self.id.0, frame));
    }
}

/// A received packet.
pub struct SwitchRx(Frame);

/// Permission to send one packet from a port.
pub struct SwitchTx<'a, 's, const P: usize, const Q: usize>(&'a Port<'s, P, Q>);

impl RxToken for SwitchRx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(mut self, f: F) -> R {
        f(&mut self.0)
    }
}

impl<const P: usize, const Q: usize> TxToken for SwitchTx<'_, '_, P, Q> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = Frame::new();
        // smoltcp never asks for more than the MTU; a larger request is truncated to it.
        let _ = frame.resize(len.min(MTU), 0);
        let r = f(&mut frame);
        self.0.inject_frame(frame);
        r
    }
}

impl<'s, const P: usize, const Q: usize> Driver for Port<'s, P, Q> {
    type RxToken<'a>
        = SwitchRx
    where
        Self: 'a;
    type TxToken<'a>
        = SwitchTx<'a, 's, P, Q>
    where
        Self: 'a;

    fn receive(&mut self, cx: &mut Context) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.poll_frame(cx)?;
        Some((SwitchRx(frame), SwitchTx(self)))
    }

    fn transmit(&mut self, _cx: &mut Context) -> Option<Self::TxToken<'_>> {
        Some(SwitchTx(self))
    }

    fn link_state(&mut self, _cx: &mut Context) -> LinkState {
        LinkState::Up
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.max_transmission_unit = MTU;
        caps
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ip
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_to(dst: [u8; 4]) -> Frame {
        let mut f = Frame::new();
        let _ = f.resize(28, 0);
        f[0] = 0x45;
        f[16..20].copy_from_slice(&dst);
        f
    }

    #[test]
    fn a_port_is_reopened_only_once_its_handle_is_gone() {
        let sw = Switch::<2, 4>::new(1);
        let port = sw.attach(IpAddr::V4([10, 0, 0, 1])).unwrap();
        let id = port.id();
        assert_eq!(sw.reopen(id).err(), Some(AttachError::Held), "its handle still exists");
        assert_eq!(sw.reopen(PortId(1)).err(), Some(AttachError::Held), "never attached");
        drop(port);
        let again = sw.reopen(id).unwrap();
        assert_eq!(again.id(), id);
        assert_eq!(sw.attach(IpAddr::V4([10, 0, 0, 1])).err(), Some(AttachError::Taken), "the address stays its own");
    }

    #[test]
    fn routes_by_destination_and_falls_back_to_the_default_port() {
        let sw = Switch::<3, 4>::new(1);
        let a = sw.attach(IpAddr::V4([10, 0, 0, 1])).unwrap();
        let b = sw.attach(IpAddr::V4([10, 0, 0, 2])).unwrap();
        assert_eq!(sw.attach(IpAddr::V4([10, 0, 0, 2])).err(), Some(AttachError::Taken));
        a.inject_frame(ipv4_to([10, 0, 0, 2]));
        assert!(b.take_frame().is_some());
        a.inject_frame(ipv4_to([10, 9, 9, 9]));
        assert_eq!(sw.stats(a.id()).no_route, 1);
        let up = sw.attach_default().unwrap();
        a.inject_frame(ipv4_to([10, 9, 9, 9]));
        assert!(up.take_frame().is_some());
        assert_eq!(sw.attach_default().err(), Some(AttachError::Full));
    }

    #[test]
    fn cut_ports_and_full_queues_drop() {
        let sw = Switch::<2, 1>::new(1);
        let a = sw.attach(IpAddr::V4([10, 0, 0, 1])).unwrap();
        let b = sw.attach(IpAddr::V4([10, 0, 0, 2])).unwrap();
        a.inject_frame(ipv4_to([10, 0, 0, 2]));
        a.inject_frame(ipv4_to([10, 0, 0, 2]));
        assert_eq!(sw.stats(b.id()).overflow, 1);
        sw.set_connected(b.id(), false);
        assert!(b.take_frame().is_none(), "cutting a port flushes its queue");
        a.inject_frame(ipv4_to([10, 0, 0, 2]));
        b.inject_frame(ipv4_to([10, 0, 0, 1]));
        assert_eq!(sw.stats(b.id()).cut, 2);
    }

    #[test]
    fn loss_rate_is_roughly_what_was_asked() {
        let sw = Switch::<2, 1>::new(7);
        let a = sw.attach(IpAddr::V4([10, 0, 0, 1])).unwrap();
        let b = sw.attach(IpAddr::V4([10, 0, 0, 2])).unwrap();
        sw.set_faults(Faults { loss_permille: 100, reorder_permille: 0 });
        for _ in 0..10_000 {
            a.inject_frame(ipv4_to([10, 0, 0, 2]));
            let _ = b.take_frame();
        }
        let lost = sw.stats(b.id()).lost;
        assert!((800..1200).contains(&lost), "lost {lost} of 10000");
    }
}
