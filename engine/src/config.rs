//! Configuration errors shared by the RSL and KV hosts.

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
