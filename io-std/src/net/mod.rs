//! Datagrams between the operating system and the engine: address conversion, outbox
//! storage, burst UDP I/O, the event loop and the server thread.
//!
//! - [`event_loop`]: the [`Host`](event_loop::Host) contract and the loop that drives it;
//! - [`metrics`]: the Prometheus page the loop publishes and its HTTP server;
//! - [`latency`]: the page's histograms: step times and request latencies;
//! - [`poll`]: asking every member a question (status) and collecting the answers;
//! - [`udp_batch`]: `recvmmsg`/`sendmmsg` bursts;
//! - [`spin`]: how long the loop polls after work before it sleeps;
//! - [`server_thread`]: a host on its own thread, and the handle that stops it.

pub mod event_loop;
pub mod latency;
pub mod metrics;
pub mod poll;
pub mod server_thread;
pub mod spin;
pub mod udp_batch;

use std::net::{IpAddr as StdIp, Ipv4Addr, Ipv6Addr, SocketAddr};

use fleet_engine::outbox::Slot;
use fleet_engine::{Endpoint, IpAddr, Outbox};

/// The engine endpoint of a socket address.
pub fn to_endpoint(addr: SocketAddr) -> Endpoint {
    match addr.ip() {
        StdIp::V4(v4) => Endpoint::v4(v4.octets(), addr.port()),
        StdIp::V6(v6) => match v6.to_ipv4_mapped() {
            // A dual-stack socket reports IPv4 peers as mapped addresses: keep them IPv4 so
            // that they compare equal to the configured endpoints.
            Some(v4) => Endpoint::v4(v4.octets(), addr.port()),
            None => Endpoint::v6(v6.octets(), addr.port()),
        },
    }
}

/// The socket address of an engine endpoint.
pub fn to_socket_addr(ep: Endpoint) -> SocketAddr {
    match ep.ip {
        IpAddr::V4(o) => SocketAddr::new(StdIp::V4(Ipv4Addr::from(o)), ep.port),
        IpAddr::V6(o) => SocketAddr::new(StdIp::V6(Ipv6Addr::from(o)), ep.port),
    }
}

/// Outbox storage on the heap (std threads have small stacks; engine outboxes can be large).
#[derive(Debug)]
pub struct HeapOutbox {
    bytes: Vec<u8>,
    slots: Vec<Slot>,
}

impl HeapOutbox {
    /// Room for `slots` datagrams in `bytes` bytes.
    pub fn new(slots: usize, bytes: usize) -> HeapOutbox {
        HeapOutbox { bytes: vec![0; bytes], slots: vec![Slot::EMPTY; slots] }
    }

    /// An empty outbox over this storage.
    pub fn outbox(&mut self) -> Outbox<'_> {
        Outbox::new(&mut self.bytes, &mut self.slots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        for s in ["127.0.0.1:7000", "[::1]:9", "10.1.2.3:65535"] {
            let a: SocketAddr = s.parse().unwrap();
            assert_eq!(to_socket_addr(to_endpoint(a)), a);
        }
    }

    #[test]
    fn mapped_ipv4_becomes_ipv4() {
        let a: SocketAddr = "[::ffff:127.0.0.1]:7000".parse().unwrap();
        assert_eq!(to_endpoint(a), Endpoint::v4([127, 0, 0, 1], 7000));
    }
}
