//! Datagram I/O in bursts: `recvmmsg`/`sendmmsg` (through `nix`) on Linux, or one
//! `recv_from`/`send_to` per datagram ([`Syscalls::Single`], kept for comparison and for
//! platforms without the batched calls). The socket is non-blocking; [`BurstIo::wait`]
//! sleeps in `poll` until a datagram arrives or a timeout passes.

use std::io::{self, ErrorKind, IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};

/// Most datagrams moved by one batched system call.
pub const BURST: usize = 32;
/// Receive buffer per datagram: the largest UDP payload, rounded up.
const RECV_BUF_BYTES: usize = 65536;

/// How datagrams cross the kernel boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Syscalls {
    /// `recvmmsg`/`sendmmsg`: up to [`BURST`] datagrams per call.
    #[default]
    Batched,
    /// One `recv_from`/`send_to` per datagram.
    Single,
}

/// A non-blocking UDP socket with burst receive and send.
pub struct BurstIo<'s> {
    socket: &'s UdpSocket,
    mode: Syscalls,
    bufs: Vec<Vec<u8>>,
    received: Vec<(usize, SocketAddr)>,
    recv_headers: MultiHeaders<SockaddrStorage>,
    send_headers: MultiHeaders<SockaddrStorage>,
    /// System calls made, for the stats line.
    pub syscalls: u64,
}

impl<'s> BurstIo<'s> {
    /// Wraps `socket` (switched to non-blocking).
    pub fn new(socket: &'s UdpSocket, mode: Syscalls) -> io::Result<BurstIo<'s>> {
        socket.set_nonblocking(true)?;
        Ok(BurstIo {
            socket,
            mode,
            bufs: (0..BURST).map(|_| vec![0u8; RECV_BUF_BYTES]).collect(),
            received: Vec::with_capacity(BURST),
            recv_headers: MultiHeaders::preallocate(BURST, None),
            send_headers: MultiHeaders::preallocate(BURST, None),
            syscalls: 0,
        })
    }

    /// Sleeps until the socket (or `also`) is readable or `timeout` passes (rounded up to
    /// 1 ms).
    pub fn wait(&mut self, timeout: Duration, also: Option<BorrowedFd<'_>>) -> io::Result<()> {
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let socket = || PollFd::new(self.socket.as_fd(), PollFlags::POLLIN);
        let mut one = [socket()];
        let mut both = also.map(|fd| [socket(), PollFd::new(fd, PollFlags::POLLIN)]);
        let polled: &mut [PollFd<'_>] = match both.as_mut() {
            Some(b) => b,
            None => &mut one,
        };
        self.syscalls += 1;
        match nix::poll::poll(polled, PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)) {
            Ok(_) | Err(Errno::EINTR) => Ok(()),
            Err(e) => Err(io::Error::from(e)),
        }
    }

    /// Receives what is queued, up to [`BURST`] datagrams, without blocking; returns how
    /// many. Read them with [`BurstIo::datagram`].
    pub fn recv(&mut self) -> io::Result<usize> {
        self.received.clear();
        match self.mode {
            Syscalls::Single => {
                while self.received.len() < BURST {
                    self.syscalls += 1;
                    let i = self.received.len();
                    match self.socket.recv_from(&mut self.bufs[i]) {
                        Ok((n, from)) => self.received.push((n, from)),
                        Err(e) if quiet(&e) => break,
                        Err(e) => return Err(e),
                    }
                }
            }
            Syscalls::Batched => {
                let fd = self.socket.as_raw_fd();
                let mut slices: Vec<[IoSliceMut<'_>; 1]> =
                    self.bufs.iter_mut().map(|b| [IoSliceMut::new(b.as_mut_slice())]).collect();
                self.syscalls += 1;
                match recvmmsg(fd, &mut self.recv_headers, slices.iter_mut(), MsgFlags::MSG_DONTWAIT, None) {
                    Ok(results) => {
                        for r in results {
                            if let Some(from) = r.address.as_ref().and_then(to_std) {
                                self.received.push((r.bytes, from));
                            }
                        }
                    }
                    Err(e) => {
                        let e = io::Error::from(e);
                        if !quiet(&e) {
                            return Err(e);
                        }
                    }
                }
            }
        }
        Ok(self.received.len())
    }

    /// Datagram `i` of the last [`BurstIo::recv`]: its sender and bytes.
    pub fn datagram(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        let (n, from) = *self.received.get(i)?;
        Some((from, &self.bufs[i][..n]))
    }

    /// Sends every datagram of `batch`. UDP is lossy by contract: a datagram the kernel
    /// refuses is logged and skipped (the protocol recovers), never retried here.
    pub fn send(&mut self, batch: &[(SocketAddr, &[u8])]) {
        match self.mode {
            Syscalls::Single => {
                for (dst, bytes) in batch {
                    self.syscalls += 1;
                    if let Err(e) = self.socket.send_to(bytes, dst) {
                        tracing::debug!("send to {dst} failed: {e}");
                    }
                }
            }
            Syscalls::Batched => {
                let fd = self.socket.as_raw_fd();
                let no_cmsgs: [ControlMessage<'_>; 0] = [];
                let mut rest = batch;
                // Each round sends at least one datagram or skips one: bounded by the batch.
                while !rest.is_empty() {
                    let chunk = &rest[..rest.len().min(BURST)];
                    let slices: Vec<[IoSlice<'_>; 1]> = chunk.iter().map(|(_, b)| [IoSlice::new(b)]).collect();
                    let addrs: Vec<Option<SockaddrStorage>> =
                        chunk.iter().map(|(a, _)| Some(SockaddrStorage::from(*a))).collect();
                    self.syscalls += 1;
                    match sendmmsg(fd, &mut self.send_headers, slices.iter(), &addrs, no_cmsgs, MsgFlags::empty()) {
                        Ok(results) => {
                            let sent = results.count().max(1);
                            rest = &rest[sent.min(rest.len())..];
                        }
                        Err(Errno::EINTR) => {}
                        Err(e) => {
                            // The first datagram of the chunk failed (e.g. a full send buffer
                            // or an ICMP error from a dead peer): drop it, go on with the rest.
                            tracing::debug!("send to {} failed: {e}", chunk[0].0);
                            rest = &rest[1..];
                        }
                    }
                }
            }
        }
    }
}

/// Errors that mean "nothing more to read now", not a failure.
fn quiet(e: &io::Error) -> bool {
    // ICMP port-unreachable from a dead peer surfaces as ConnectionRefused on Linux.
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted | ErrorKind::ConnectionRefused
    )
}

fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::new(v4.ip(), v4.port())));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6(SocketAddrV6::new(v6.ip(), v6.port(), v6.flowinfo(), v6.scope_id())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(mode: Syscalls) {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b_addr = b.local_addr().unwrap();
        let mut tx = BurstIo::new(&a, mode).unwrap();
        let mut rx = BurstIo::new(&b, mode).unwrap();
        let payloads: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 1 + i as usize * 10]).collect();
        let batch: Vec<(SocketAddr, &[u8])> = payloads.iter().map(|p| (b_addr, p.as_slice())).collect();
        tx.send(&batch);
        let mut got = Vec::new();
        for _ in 0..100 {
            rx.wait(Duration::from_millis(50), None).unwrap();
            let n = rx.recv().unwrap();
            assert!(n <= BURST);
            for i in 0..n {
                let (from, bytes) = rx.datagram(i).unwrap();
                assert_eq!(from, a.local_addr().unwrap());
                got.push(bytes.to_vec());
            }
            if got.len() == payloads.len() {
                break;
            }
        }
        assert_eq!(got, payloads, "loopback UDP keeps order and loses nothing at this rate");
        assert_eq!(rx.recv().unwrap(), 0, "nothing more queued: recv does not block");
    }

    #[test]
    fn batched_syscalls_move_bursts_in_order() {
        round_trip(Syscalls::Batched);
    }

    #[test]
    fn single_syscalls_move_bursts_in_order() {
        round_trip(Syscalls::Single);
    }
}
