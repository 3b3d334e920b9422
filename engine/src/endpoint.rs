//! A compact network address that both bindings convert to and from.
//!
//! `fleet-io-std` converts from `std::net::SocketAddr`, `fleet-io-embassy` from
//! `embassy_net::IpEndpoint`; the engine itself only compares and serializes them.

use core::fmt;
use serde::{Deserialize, Serialize};

/// An IPv4 or IPv6 address, as raw octets. Ordered IPv4 first, then by octets (as a derived
/// order would be; written out because comparing octet arrays called `memcmp`, and the reply
/// cache's binary search compares endpoints on every request).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum IpAddr {
    /// IPv4 octets, most significant first.
    V4([u8; 4]),
    /// IPv6 octets, most significant first.
    V6([u8; 16]),
}

impl Ord for IpAddr {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        use core::cmp::Ordering;
        match (self, other) {
            (IpAddr::V4(a), IpAddr::V4(b)) => u32::from_be_bytes(*a).cmp(&u32::from_be_bytes(*b)),
            (IpAddr::V6(a), IpAddr::V6(b)) => u128::from_be_bytes(*a).cmp(&u128::from_be_bytes(*b)),
            (IpAddr::V4(_), IpAddr::V6(_)) => Ordering::Less,
            (IpAddr::V6(_), IpAddr::V4(_)) => Ordering::Greater,
        }
    }
}

impl PartialOrd for IpAddr {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// An IP address and a UDP port: where a host or client receives datagrams. Ordered by
/// address, then port.
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

    /// An IPv4 endpoint's place among IPv4 endpoints as one number: address, then port.
    #[inline]
    fn v4_key(self) -> Option<u64> {
        match self.ip {
            IpAddr::V4(octets) => Some(u64::from(u32::from_be_bytes(octets)) << 16 | u64::from(self.port)),
            IpAddr::V6(_) => None,
        }
    }
}

/// `binary_search_by` for `target` in `items`, sorted by the endpoint `endpoint_of` gives.
/// An IPv4 target is compared as one number per probe (IPv6 endpoints sort after every
/// IPv4 one): the engine searches by client on every request, and the endpoints' own
/// comparison took twice the instructions.
#[inline]
pub(crate) fn search_sorted<T>(
    items: &[T],
    target: Endpoint,
    endpoint_of: impl Fn(&T) -> Endpoint,
) -> Result<usize, usize> {
    match target.v4_key() {
        Some(key) => items.binary_search_by(|item| match endpoint_of(item).v4_key() {
            Some(probe) => probe.cmp(&key),
            None => core::cmp::Ordering::Greater,
        }),
        None => items.binary_search_by(|item| endpoint_of(item).cmp(&target)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_order_as_their_octets_ipv4_first() {
        let v4 = |a: u8, b: u8| IpAddr::V4([a, 0, 0, b]);
        let v6 = |a: u8, b: u8| {
            let mut o = [0u8; 16];
            o[0] = a;
            o[15] = b;
            IpAddr::V6(o)
        };
        let mut all = [v6(1, 0), v4(2, 0), v4(1, 255), v6(0, 9), v4(1, 3), v6(0, 0xff), v4(255, 255)];
        all.sort();
        assert_eq!(all, [v4(1, 3), v4(1, 255), v4(2, 0), v4(255, 255), v6(0, 9), v6(0, 0xff), v6(1, 0)]);
        let a = Endpoint::v4([10, 0, 0, 1], 9);
        assert!(a < Endpoint::v4([10, 0, 0, 1], 10) && a < Endpoint::v4([10, 0, 0, 2], 1));
    }

    #[test]
    fn endpoints_order_as_family_octets_then_port() {
        let mut rng = crate::test_rng::TestRng(0xdead_beef_1234_5678);
        // Few distinct octets and ports, so that ties on each part occur.
        let endpoint = |rng: &mut crate::test_rng::TestRng| {
            let mut o = [0u8; 16];
            o.iter_mut().for_each(|b| *b = [0, 1, 0xff][rng.below(3) as usize]);
            let port = [0, 1, 0x100, 0xffff][rng.below(4) as usize];
            match rng.below(2) {
                0 => Endpoint::v4([o[0], o[1], o[2], o[3]], port),
                _ => Endpoint::v6(o, port),
            }
        };
        let reference = |e: &Endpoint| match e.ip {
            IpAddr::V4(o) => (0, [o[0], o[1], o[2], o[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], e.port),
            IpAddr::V6(o) => (1, o, e.port),
        };
        for _ in 0..50_000 {
            let (a, b) = (endpoint(&mut rng), endpoint(&mut rng));
            assert_eq!(a.cmp(&b), reference(&a).cmp(&reference(&b)), "{a} {b}");
            assert_eq!(a.cmp(&b).is_eq(), a == b);
        }
    }

    #[test]
    fn searching_by_number_finds_what_the_endpoint_order_finds() {
        let mut rng = crate::test_rng::TestRng(0x0bad_cafe_f00d_d00d);
        // Few distinct octets and ports, so that neighbours tie on each part.
        let endpoint = |rng: &mut crate::test_rng::TestRng| {
            let mut o = [0u8; 16];
            o.iter_mut().for_each(|b| *b = [0, 1, 0x80, 0xff][rng.below(4) as usize]);
            let port = [0, 1, 0x8000, 0xffff][rng.below(4) as usize];
            match rng.below(3) {
                0 => Endpoint::v6(o, port),
                _ => Endpoint::v4([o[0], o[1], o[2], o[3]], port),
            }
        };
        let (mut found, mut missed) = (0, 0);
        for _ in 0..5_000 {
            let mut sorted: heapless::Vec<(Endpoint, u8), 32> = heapless::Vec::new();
            for _ in 0..rng.below(33) {
                let e = endpoint(&mut rng);
                if !sorted.iter().any(|(x, _)| *x == e) {
                    let _ = sorted.push((e, 0));
                }
            }
            sorted.sort_by_key(|(e, _)| *e);
            for _ in 0..8 {
                // Half the targets are in the array.
                let target = match sorted.len() {
                    n if n > 0 && rng.below(2) == 0 => sorted[rng.below(n as u64) as usize].0,
                    _ => endpoint(&mut rng),
                };
                let want = sorted.binary_search_by(|(e, _)| e.cmp(&target));
                assert_eq!(search_sorted(&sorted, target, |(e, _)| *e), want, "{target} in {sorted:?}");
                if want.is_ok() {
                    found += 1;
                } else {
                    missed += 1;
                }
            }
        }
        assert!(found > 5_000 && missed > 5_000, "both outcomes exercised: {found} / {missed}");
    }
}
