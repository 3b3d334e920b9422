//! Configuration errors shared by the RSL and KV hosts, and the cluster identity both
//! derive from their configuration.

use core::fmt;

/// Why a configuration was refused. Each names what to fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConfigError {
    /// The host list is empty.
    NoReplicas,
    /// More hosts than the compile-time capacity (or the protocol's limit) allows.
    TooManyReplicas,
    /// Two hosts share one endpoint.
    DuplicateEndpoint,
    /// This host's index is not in the host list.
    BadIndex,
    /// The named parameter is out of range for the protocol or the compile-time capacities.
    Invalid(&'static str),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoReplicas => f.write_str("the host list is empty"),
            ConfigError::TooManyReplicas => f.write_str("more hosts than this build's capacity"),
            ConfigError::DuplicateEndpoint => f.write_str("two hosts share an endpoint"),
            ConfigError::BadIndex => f.write_str("this host's index is not in the host list"),
            ConfigError::Invalid(field) => write!(f, "parameter `{field}` is out of range"),
        }
    }
}

/// A cluster's identity: FNV-1a (32 bits, stable across builds and targets) over a
/// protocol tag, the members in order and the parameters that shape messages. Never
/// [`crate::wire::ANY_CLUSTER`].
pub(crate) fn cluster_identity(tag: &[u8], members: &[crate::endpoint::Endpoint], shape: &[u64]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h = (h ^ u32::from(*b)).wrapping_mul(0x0100_0193);
        }
    };
    eat(tag);
    eat(&(members.len() as u64).to_le_bytes());
    for ep in members {
        match ep.ip {
            crate::endpoint::IpAddr::V4(o) => {
                eat(&[4]);
                eat(&o);
            }
            crate::endpoint::IpAddr::V6(o) => {
                eat(&[6]);
                eat(&o);
            }
        }
        eat(&ep.port.to_le_bytes());
    }
    for v in shape {
        eat(&v.to_le_bytes());
    }
    match h {
        crate::wire::ANY_CLUSTER => 1,
        id => id,
    }
}
