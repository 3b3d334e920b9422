//! Conversions between the engine's [`Endpoint`] and smoltcp's [`IpEndpoint`].
//!
//! An address family the build does not enable (feature `ipv4`, `ipv6`) converts to `None`:
//! the run loop counts such a datagram as a send error instead of panicking.

use embassy_net::{IpAddress, IpEndpoint};
use fleet_engine::{Endpoint, IpAddr};

/// The engine endpoint of a smoltcp endpoint.
pub fn to_endpoint(ep: IpEndpoint) -> Option<Endpoint> {
    #[allow(unreachable_patterns)]
    match ep.addr {
        #[cfg(feature = "ipv4")]
        IpAddress::Ipv4(a) => Some(Endpoint::v4(a.octets(), ep.port)),
        #[cfg(feature = "ipv6")]
        IpAddress::Ipv6(a) => Some(Endpoint::v6(a.octets(), ep.port)),
        _ => None,
    }
}

/// The smoltcp endpoint of an engine endpoint.
pub fn to_ip_endpoint(ep: Endpoint) -> Option<IpEndpoint> {
    match ep.ip {
        #[cfg(feature = "ipv4")]
        IpAddr::V4(o) => Some(IpEndpoint::new(IpAddress::Ipv4(o.into()), ep.port)),
        #[cfg(feature = "ipv6")]
        IpAddr::V6(o) => Some(IpEndpoint::new(IpAddress::Ipv6(o.into()), ep.port)),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_round_trips() {
        let e = Endpoint::v4([10, 0, 0, 7], 7000);
        assert_eq!(to_ip_endpoint(e).and_then(to_endpoint), Some(e));
    }
}
