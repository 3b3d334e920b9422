//! One UDP socket for all of a load thread's clients, each at an address of its own.
//!
//! A logical client is an endpoint to the servers: with a socket per client, every request
//! and reply costs the load generator its own `recvfrom`, `sendto` and readiness event, and
//! at 1,024 clients the kernel walks 1,024 cold sockets. On loopback every address in
//! 127.0.0.0/8 is local, so a socket bound to the wildcard address can stand for many
//! clients: it sends each datagram from its client's address (`IP_PKTINFO` on `sendmsg`),
//! and it learns whose reply arrived from the address the datagram was sent to
//! (`IP_PKTINFO` on `recvmmsg`), reading up to [`BURST`] replies in one system call. The
//! servers still see one endpoint per client.
//!
//! Linux only, and only when every server listens on an IPv4 loopback address: a reply to
//! 127.64.0.7 reaches this socket only through the loopback device.

use std::io::{self, ErrorKind, IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::libc;
use nix::sys::socket::{
    recvmmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrIn,
    SockaddrStorage,
};

/// Most datagrams read by one `recvmmsg`.
pub const BURST: usize = 32;
/// Receive buffer per datagram: the largest UDP payload.
const RECV_BUF_BYTES: usize = 65536;
/// The kernel receive buffer asked for: replies to a thousand clients can arrive while the
/// thread is busy (the kernel caps it at `net.core.rmem_max`).
const RCVBUF_BYTES: usize = 4 << 20;
/// Client `i`'s address is this one plus `i + 1`: 127.64.0.1 and on, clear of the
/// 127.0.0.1 servers usually listen on.
const FIRST_CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(127, 64, 0, 0);
/// Most clients on one shared socket: their addresses stay inside 127.64.0.0/10.
pub const MAX_CLIENTS: usize = (1 << 22) - 2;

/// Whether clients of `servers` can share a socket here: Linux, and every server at an IPv4
/// loopback address.
pub fn usable_for(servers: &[SocketAddr]) -> bool {
    cfg!(target_os = "linux")
        && !servers.is_empty()
        && servers.iter().all(|s| matches!(s, SocketAddr::V4(v4) if v4.ip().is_loopback()))
}

/// Client `index`'s address on a shared socket (`index < MAX_CLIENTS`).
pub fn client_addr(index: usize) -> Ipv4Addr {
    debug_assert!(index < MAX_CLIENTS);
    Ipv4Addr::from(u32::from(FIRST_CLIENT_ADDR) + index as u32 + 1)
}

/// The client index whose address is `addr`, if it is one.
pub fn client_index(addr: Ipv4Addr) -> Option<usize> {
    let offset = u32::from(addr).checked_sub(u32::from(FIRST_CLIENT_ADDR))?.checked_sub(1)? as usize;
    (offset < MAX_CLIENTS).then_some(offset)
}

/// A received datagram: the buffer it is in, the client address it was sent to, its
/// sender, its length.
#[derive(Clone, Copy, Debug)]
struct Received {
    buf: usize,
    to: Ipv4Addr,
    from: SocketAddr,
    len: usize,
}

/// Binds the socket clients will share: the wildcard address, an ephemeral port,
/// non-blocking, with `IP_PKTINFO` on. A load thread wraps it in a [`SharedSocket`].
pub fn bind() -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
    socket.set_nonblocking(true)?;
    setsockopt(&socket, sockopt::Ipv4PacketInfo, &true).map_err(io::Error::from)?;
    // Don't fragment: an unconnected socket's datagrams that may be fragmented each take an
    // IP identifier from the kernel's shared, hashed generator (`__ip_select_ident`, 3 % of
    // the load generator's time at 1,024 clients); unfragmentable ones carry 0. Loopback's
    // MTU (65,536) holds any UDP datagram, so nothing is refused for its size.
    rustix::net::sockopt::set_ip_mtu_discover(&socket, rustix::net::sockopt::Ipv4PathMtuDiscovery::DO)?;
    // A smaller buffer than asked for still works: replies it drops are retransmitted.
    let _ = setsockopt(&socket, sockopt::RcvBuf, &RCVBUF_BYTES);
    Ok(socket)
}

/// The endpoint client `index` is to the servers, on a shared socket bound to `port`.
pub fn client_endpoint(port: u16, index: usize) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(client_addr(index), port))
}

/// A socket from [`bind`], speaking for many client addresses, with its receive buffers
/// (made on the load thread that uses them: they hold raw pointers, so are not `Send`).
pub struct SharedSocket {
    socket: mio::net::UdpSocket,
    bufs: Vec<Vec<u8>>,
    received: Vec<Received>,
    headers: MultiHeaders<SockaddrStorage>,
}

impl SharedSocket {
    /// Wraps a socket from [`bind`].
    pub fn new(socket: UdpSocket) -> SharedSocket {
        SharedSocket {
            socket: mio::net::UdpSocket::from_std(socket),
            bufs: (0..BURST).map(|_| vec![0u8; RECV_BUF_BYTES]).collect(),
            received: Vec::with_capacity(BURST),
            headers: MultiHeaders::preallocate(BURST, Some(nix::cmsg_space!(libc::in_pktinfo))),
        }
    }

    /// The socket, to register with a poll.
    pub fn source(&mut self) -> &mut mio::net::UdpSocket {
        &mut self.socket
    }

    /// Sends `bytes` to `dst` from client address `from`. A failure is a lost datagram
    /// (the client retransmits), as with any UDP send.
    pub fn send(&self, from: Ipv4Addr, dst: SocketAddr, bytes: &[u8]) -> io::Result<()> {
        let SocketAddr::V4(dst) = dst else {
            return Err(io::Error::new(ErrorKind::Unsupported, "a shared client socket sends to IPv4 servers only"));
        };
        let info = libc::in_pktinfo {
            ipi_ifindex: 0,
            ipi_spec_dst: libc::in_addr { s_addr: u32::from(from).to_be() },
            ipi_addr: libc::in_addr { s_addr: 0 },
        };
        let iov = [IoSlice::new(bytes)];
        let cmsg = [ControlMessage::Ipv4PacketInfo(&info)];
        sendmsg(self.socket.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_DONTWAIT, Some(&SockaddrIn::from(dst)))
            .map(|_| ())
            .map_err(io::Error::from)
    }

    /// Receives what is queued, up to [`BURST`] datagrams, without blocking; returns how
    /// many the kernel gave (fewer than [`BURST`]: the queue is empty). Read them with
    /// [`SharedSocket::datagrams`], which skips any without its addresses.
    pub fn recv(&mut self) -> io::Result<usize> {
        self.received.clear();
        let fd = self.socket.as_raw_fd();
        let mut slices: Vec<[IoSliceMut<'_>; 1]> =
            self.bufs.iter_mut().map(|b| [IoSliceMut::new(b.as_mut_slice())]).collect();
        match recvmmsg(fd, &mut self.headers, slices.iter_mut(), MsgFlags::MSG_DONTWAIT, None) {
            Ok(results) => {
                let mut count = 0;
                for (buf, r) in results.enumerate() {
                    count += 1;
                    let to = r.cmsgs().ok().and_then(|mut c| {
                        c.find_map(|m| match m {
                            ControlMessageOwned::Ipv4PacketInfo(info) => {
                                Some(Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr)))
                            }
                            _ => None,
                        })
                    });
                    let from = r.address.as_ref().and_then(|a| a.as_sockaddr_in()).map(|v4| SocketAddr::from(*v4));
                    if let (Some(to), Some(from)) = (to, from) {
                        self.received.push(Received { buf, to, from, len: r.bytes });
                    }
                }
                Ok(count)
            }
            Err(Errno::EAGAIN | Errno::EINTR | Errno::ECONNREFUSED) => Ok(0),
            Err(e) => Err(io::Error::from(e)),
        }
    }

    /// The datagrams of the last [`SharedSocket::recv`]: for each, the client address it
    /// was sent to, its sender and its bytes.
    pub fn datagrams(&self) -> impl Iterator<Item = (Ipv4Addr, SocketAddr, &[u8])> + '_ {
        self.received.iter().map(|r| (r.to, r.from, &self.bufs[r.buf][..r.len]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn client_addresses_map_back_to_their_index() {
        for i in [0, 1, 255, 256, 1023, 65_535, 65_536, MAX_CLIENTS - 1] {
            let a = client_addr(i);
            assert!(a.is_loopback(), "{a}");
            assert_eq!(client_index(a), Some(i), "{a}");
        }
        assert_eq!(client_addr(0), Ipv4Addr::new(127, 64, 0, 1));
        assert_eq!(client_index(Ipv4Addr::new(127, 0, 0, 1)), None);
        assert_eq!(client_index(FIRST_CLIENT_ADDR), None);
        assert_eq!(client_index(Ipv4Addr::new(127, 128, 0, 0)), None, "past the last client");
    }

    #[test]
    fn only_ipv4_loopback_servers_allow_sharing() {
        let v4 = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(usable_for(&[v4("127.0.0.1:7000"), v4("127.0.0.2:7001")]));
        assert!(!usable_for(&[v4("127.0.0.1:7000"), v4("10.0.0.2:7001")]));
        assert!(!usable_for(&[v4("[::1]:7000")]));
        assert!(!usable_for(&[]));
    }

    /// Each client speaks from its own address, and each reply is read back with the
    /// address it was sent to.
    #[test]
    fn clients_send_from_and_hear_at_their_own_addresses() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let server_addr = server.local_addr().unwrap();
        let socket = bind().unwrap();
        let port = socket.local_addr().unwrap().port();
        let mut shared = SharedSocket::new(socket);
        let mut buf = [0u8; 64];
        for i in [0usize, 7, 300] {
            shared.send(client_addr(i), server_addr, format!("from {i}").as_bytes()).unwrap();
            let (n, from) = server.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], format!("from {i}").as_bytes());
            assert_eq!(from, client_endpoint(port, i), "the server sees client {i}'s own endpoint");
            server.send_to(format!("to {i}").as_bytes(), from).unwrap();
        }
        let mut got = Vec::new();
        for _ in 0..200 {
            shared.recv().unwrap();
            for (to, from, bytes) in shared.datagrams() {
                assert_eq!(from, server_addr);
                got.push((client_index(to).unwrap(), bytes.to_vec()));
            }
            if got.len() == 3 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(got, vec![(0, b"to 0".to_vec()), (7, b"to 7".to_vec()), (300, b"to 300".to_vec())]);
        assert_eq!(shared.recv().unwrap(), 0, "nothing more queued: recv does not block");
    }

    /// Without `IP_PMTUDISC_DO` the kernel draws an IP identifier for every datagram.
    #[test]
    fn the_shared_socket_sends_unfragmentable_datagrams() {
        let socket = bind().unwrap();
        let mode = rustix::net::sockopt::ip_mtu_discover(&socket).unwrap();
        assert_eq!(mode, rustix::net::sockopt::Ipv4PathMtuDiscovery::DO);
    }

    #[test]
    fn ipv6_destinations_are_refused_with_an_error() {
        let shared = SharedSocket::new(bind().unwrap());
        let e = shared.send(client_addr(0), "[::1]:9".parse().unwrap(), b"x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
    }
}
