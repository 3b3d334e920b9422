//! A server on its own thread: binding its socket, and the handle that stops it.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use fleet_engine::Instant;

use super::event_loop::{run_as, Host, LoopOptions};
use crate::capacity::SERVER_STACK_BYTES;
use crate::clock::Clock;
use crate::error::ServerError;

/// A server running on its own thread.
pub struct RunningServer {
    stop: Arc<AtomicBool>,
    join: Option<std::thread::JoinHandle<Result<(), ServerError>>>,
    /// The address it listens on.
    pub addr: SocketAddr,
}

impl RunningServer {
    /// Wraps a server thread.
    pub fn new(
        stop: Arc<AtomicBool>,
        join: std::thread::JoinHandle<Result<(), ServerError>>,
        addr: SocketAddr,
    ) -> Self {
        RunningServer { stop, join: Some(join), addr }
    }

    /// Waits until the server stops by itself (it only does on an error, returned here).
    pub fn wait(mut self) -> Result<(), ServerError> {
        match self.join.take().map(|j| j.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(ServerError::Config("the server thread panicked".into())),
            None => Ok(()),
        }
    }

    /// Stops the server and waits for its thread.
    pub fn stop(mut self) -> Result<(), ServerError> {
        self.stop.store(true, Ordering::Relaxed);
        match self.join.take().map(|j| j.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(ServerError::Config("the server thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

/// Binds `addr`; returns the socket and its actual local address (port 0 picks one). The
/// socket's kernel buffers are raised to [`SERVER_SOCKET_BUFFER_BYTES`] (or what the kernel
/// allows: `net.core.rmem_max` and `wmem_max` cap them).
pub fn bind_socket(addr: SocketAddr) -> Result<(UdpSocket, SocketAddr), ServerError> {
    let socket = UdpSocket::bind(addr).map_err(|e| ServerError::Bind(addr, e))?;
    let bound = socket.local_addr().map_err(ServerError::Io)?;
    raise_buffers(&socket);
    Ok((socket, bound))
}

/// Kernel buffer bytes a server socket asks for, each way. With Linux's default receive
/// buffer (212,992 bytes, about 200 small datagrams with their kernel overhead), a burst
/// from a thousand clients overflowed it: every dropped request waited for its client's
/// retransmission, and 1,024 RSL clients got 30-40k ops/s with p99 0.37-0.45 s (13,152
/// `RcvbufErrors` in a 5-second run). Larger is not better: a replica paused under load
/// finds the buffer full of stale datagrams when it resumes and works through them before
/// the fresh ones. With 8 MiB a follower paused for 3 s did not catch up in 5 s
/// (`tests/catch_up.rs`), with 1 MiB it took 2-3 s, with 512 KiB 1 s as with the default,
/// while 1,024 clients still ran at 157-166k ops/s with p99.9 15-20 ms.
pub const SERVER_SOCKET_BUFFER_BYTES: usize = 512 << 10;

/// Asks for [`SERVER_SOCKET_BUFFER_BYTES`] each way; a kernel that caps lower is logged, not
/// refused (the server works, bursts just drop sooner).
fn raise_buffers(socket: &UdpSocket) {
    use nix::sys::socket::{getsockopt, setsockopt, sockopt};
    let want = SERVER_SOCKET_BUFFER_BYTES;
    let _ = setsockopt(socket, sockopt::RcvBuf, &want);
    let _ = setsockopt(socket, sockopt::SndBuf, &want);
    // Linux reports twice what it grants (the doubling covers its bookkeeping).
    let got = getsockopt(socket, sockopt::RcvBuf).unwrap_or(0) / 2;
    if got < want {
        tracing::debug!(
            "socket receive buffer is {got} bytes, below the {want} asked for: raise net.core.rmem_max \
             for bursts from many clients"
        );
    }
}

/// Runs a host on a new thread with a large stack, on `socket` (bound to `bound`) as
/// `me` (its advertised address). The host is built by `make` on that thread (engine
/// values are large and built in place); an error building it is returned here, so a bad
/// data directory or configuration fails the caller, not a thread nobody watches.
pub fn spawn_host<H, F>(
    name: String,
    socket: UdpSocket,
    bound: SocketAddr,
    me: SocketAddr,
    options: LoopOptions,
    make: F,
) -> Result<RunningServer, ServerError>
where
    H: Host,
    F: FnOnce(Instant) -> Result<Box<H>, ServerError> + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let join = std::thread::Builder::new()
        .name(name)
        .stack_size(SERVER_STACK_BYTES)
        .spawn(move || {
            let clock = Clock::start();
            let host = make(clock.now());
            let _ = ready_tx.send(host.as_ref().err().map(|e| e.to_string()));
            run_as(host?.as_mut(), &socket, me, clock, &flag, &options)
        })
        .map_err(ServerError::Io)?;
    match ready_rx.recv() {
        Ok(None) => Ok(RunningServer::new(stop, join, bound)),
        Ok(Some(_)) | Err(_) => match join.join() {
            Ok(Err(e)) => Err(e),
            _ => Err(ServerError::Config("the server thread failed to start".into())),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use nix::sys::socket::{getsockopt, sockopt};

    /// A server socket gets the receive buffer it asks for, up to the kernel's cap
    /// (`net.core.rmem_max`), not the smaller default that bursts overflowed.
    #[test]
    fn a_server_socket_asks_for_large_kernel_buffers() {
        let (socket, _) = bind_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        let cap = std::fs::read_to_string("/proc/sys/net/core/rmem_max").unwrap().trim().parse::<usize>().unwrap();
        let granted = getsockopt(&socket, sockopt::RcvBuf).unwrap() / 2;
        assert!(granted >= SERVER_SOCKET_BUFFER_BYTES.min(cap), "granted {granted}, cap {cap}");
        let plain = UdpSocket::bind("127.0.0.1:0").unwrap();
        if cap > 2 * 212_992 {
            assert!(granted > getsockopt(&plain, sockopt::RcvBuf).unwrap() / 2, "larger than a plain socket's");
        }
    }
}
