//! A compact network address that both bindings convert to and from.
//!
//! `fleet-io-std` converts from `std::net::SocketAddr`, `fleet-io-embassy` from
//! `embassy_net::IpEndpoint`; the engine itself only compares and serializes them.

use core::fmt;
use serde::{Deserialize, Serialize};

/// An IPv4 or IPv6 address, as raw octets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum IpAddr {
    /// IPv4 octets, most significant first.
    V4([u8; 4]),
    /// IPv6 octets, most significant first.
    V6([u8; 16]),
}

/// An IP address and a UDP port: where a host or client receives datagrams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Endpoint {
    /// The address.
    pub ip: IpAddr,
    /// The UDP port.
    pub port: u16,
}

impl Endpoint {
    /// An IPv4 endpoint `a.b.c.d:port`.
    pub const fn v4(octets: [u8; 4], port: u16) -> Endpoint {
        Endpoint { ip: IpAddr::V4(octets), port }
    }

    /// An IPv6 endpoint.
    pub const fn v6(octets: [u8; 16], port: u16) -> Endpoint {
        Endpoint { ip: IpAddr::V6(octets), port }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4([a, b, c, d]) => write!(f, "{a}.{b}.{c}.{d}:{}", self.port),
            IpAddr::V6(o) => {
                f.write_str("[")?;
                for (i, pair) in o.chunks(2).enumerate() {
                    if i > 0 {
                        f.write_str(":")?;
                    }
                    write!(f, "{:x}", u16::from_be_bytes([pair[0], pair[1]]))?;
                }
                write!(f, "]:{}", self.port)
            }
        }
    }
}
