//! A bridge between the in-memory switch and real UDP sockets: the switch's default port
//! carries IPv4/UDP packets; the bridge owns one std `UdpSocket` per bridged embassy
//! endpoint and moves payloads both ways, so std processes and embassy stacks are peers.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use fleet_io_embassy::switch::Frame;

use super::TestPort;

/// A running bridge thread; stops when dropped.
pub struct Bridge {
    stop: Arc<AtomicBool>,
    join: Option<JoinHandle<()>>,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

impl Bridge {
    /// Bridges the embassy endpoint `inside` (an address a switch port owns) to a std
    /// socket bound at the same address on the host. `uplink` is the switch's default port.
    pub fn start(uplink: TestPort, inside: SocketAddrV4) -> std::io::Result<Bridge> {
        let socket = UdpSocket::bind(inside)?;
        socket.set_read_timeout(Some(Duration::from_millis(1)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let join = std::thread::Builder::new().name("bridge".into()).spawn(move || {
            let mut buf = [0u8; 2048];
            while !flag.load(Ordering::Relaxed) {
                // Host → embassy.
                if let Ok((n, SocketAddr::V4(from))) = socket.recv_from(&mut buf) {
                    if let Some(frame) = ipv4_udp(from, inside, &buf[..n]) {
                        uplink.inject_frame(frame);
                    }
                }
                // Embassy → host.
                while let Some(frame) = uplink.take_frame() {
                    if let Some((src, dst, payload)) = parse_ipv4_udp(&frame) {
                        if src == inside {
                            let _ = socket.send_to(payload, dst);
                        }
                    }
                }
            }
        })?;
        Ok(Bridge { stop, join: Some(join) })
    }
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in bytes.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4/UDP packet from `src` to `dst` (UDP checksum 0: "none", valid over IPv4).
pub fn ipv4_udp(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Option<Frame> {
    let total = 20 + 8 + payload.len();
    let mut f = Frame::new();
    f.resize(total, 0).ok()?;
    f[0] = 0x45;
    f[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    f[8] = 64; // TTL
    f[9] = 17; // UDP
    f[12..16].copy_from_slice(&src.ip().octets());
    f[16..20].copy_from_slice(&dst.ip().octets());
    let c = checksum(&f[..20]);
    f[10..12].copy_from_slice(&c.to_be_bytes());
    f[20..22].copy_from_slice(&src.port().to_be_bytes());
    f[22..24].copy_from_slice(&dst.port().to_be_bytes());
    f[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f[28..].copy_from_slice(payload);
    Some(f)
}

/// Source, destination and payload of an IPv4/UDP packet.
pub fn parse_ipv4_udp(f: &[u8]) -> Option<(SocketAddrV4, SocketAddrV4, &[u8])> {
    if f.len() < 20 || f[0] >> 4 != 4 || f[9] != 17 {
        return None;
    }
    let ihl = usize::from(f[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([f[2], f[3]])).min(f.len());
    let udp = f.get(ihl..total)?;
    if udp.len() < 8 {
        return None;
    }
    let ip = |o: &[u8]| Ipv4Addr::new(o[0], o[1], o[2], o[3]);
    let src = SocketAddrV4::new(ip(&f[12..16]), u16::from_be_bytes([udp[0], udp[1]]));
    let dst = SocketAddrV4::new(ip(&f[16..20]), u16::from_be_bytes([udp[2], udp[3]]));
    let len = usize::from(u16::from_be_bytes([udp[4], udp[5]])).clamp(8, udp.len());
    Some((src, dst, &udp[8..len]))
}

/// The addresses of a mixed cluster: replica 0 (embassy) bridged at 127.0.0.2, replicas
/// 1 and 2 (std) on 127.0.0.1, each on a free port.
pub struct MixedAddrs {
    /// Where the bridge's socket for replica 0 binds.
    pub inside: SocketAddrV4,
    /// Every replica's address, replica 0 first.
    pub addrs: Vec<SocketAddr>,
    /// The same as engine endpoints.
    pub eps: Vec<fleet_engine::Endpoint>,
}

fn free_port(ip: Ipv4Addr) -> Option<u16> {
    Some(UdpSocket::bind((ip, 0)).ok()?.local_addr().ok()?.port())
}

/// Free addresses for a mixed cluster; `None` (the test skips, saying why) where
/// 127.0.0.2 cannot be bound.
pub fn mixed_addrs() -> Option<MixedAddrs> {
    let inside_ip = Ipv4Addr::new(127, 0, 0, 2);
    let Some(p0) = free_port(inside_ip) else {
        eprintln!("SKIPPED: cannot bind 127.0.0.2 on this machine (needed for the embassy member's bridge socket)");
        return None;
    };
    let (p1, p2) = (free_port(Ipv4Addr::LOCALHOST)?, free_port(Ipv4Addr::LOCALHOST)?);
    let inside = SocketAddrV4::new(inside_ip, p0);
    let addrs: Vec<SocketAddr> =
        vec![inside.into(), SocketAddr::from((Ipv4Addr::LOCALHOST, p1)), SocketAddr::from((Ipv4Addr::LOCALHOST, p2))];
    let eps = addrs.iter().map(|a| fleet_io_std::net::to_endpoint(*a)).collect();
    Some(MixedAddrs { inside, addrs, eps })
}
