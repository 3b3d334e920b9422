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

/// Binds `addr`; returns the socket and its actual local address (port 0 picks one).
pub fn bind_socket(addr: SocketAddr) -> Result<(UdpSocket, SocketAddr), ServerError> {
    let socket = UdpSocket::bind(addr).map_err(|e| ServerError::Bind(addr, e))?;
    let bound = socket.local_addr().map_err(ServerError::Io)?;
    Ok((socket, bound))
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
