//! The KV cluster's hosts and tunable parameters, with IronKV's defaults where it has one.

use super::msg::{BODY_OVERHEAD_BYTES, PAIR_OVERHEAD_BYTES};
use super::reliable::{ReliableParams, FRAME_OVERHEAD_BYTES};
use crate::config::ConfigError;
use crate::endpoint::Endpoint;
use crate::wire::{DEFAULT_MAX_DATAGRAM_BYTES, MAX_UDP_PAYLOAD_BYTES};

/// Most hosts a cluster may have: owners are stored as `u8` in the delegation map.
pub const MAX_HOSTS: usize = 255;
/// IronKV's value bound (values are shorter than 1024 bytes there; here at most this).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1024;
/// Bytes every message may add around one value, envelope included: with
/// `max_value_bytes + MSG_OVERHEAD_BYTES <= max_datagram_bytes` every Get reply, Set
/// request and one-pair Delegate fits one datagram.
pub const MSG_OVERHEAD_BYTES: usize = FRAME_OVERHEAD_BYTES + BODY_OVERHEAD_BYTES + PAIR_OVERHEAD_BYTES;
/// Most transfers one host may have unacknowledged at once (outgoing Shard table).
pub const MAX_TRANSFERS_IN_FLIGHT: usize = 8;

/// Tunable parameters shared by every host and client of a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct KvParams {
    /// Longest value (default 1024).
    pub max_value_bytes: usize,
    /// Most bytes in one datagram, header included (default 1472, at most 65507).
    pub max_datagram_bytes: usize,
    /// Retransmission delays, the per-peer unacked bound, and when a host gives up on a
    /// client. `max_unacked_per_peer` is also the most Delegate datagrams one Shard may take.
    pub reliable: ReliableParams,
}

impl Default for KvParams {
    fn default() -> Self {
        KvParams {
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            max_datagram_bytes: DEFAULT_MAX_DATAGRAM_BYTES,
            reliable: ReliableParams::default(),
        }
    }
}

impl KvParams {
    /// Checks the parameters against a `datagram`-byte buffer capacity.
    pub fn validate(&self, datagram: usize) -> Result<(), ConfigError> {
        if self.max_datagram_bytes > MAX_UDP_PAYLOAD_BYTES || self.max_datagram_bytes > datagram {
            return Err(ConfigError::Invalid("max_datagram_bytes"));
        }
        if self.max_value_bytes == 0 || self.max_value_bytes + MSG_OVERHEAD_BYTES > self.max_datagram_bytes {
            return Err(ConfigError::Invalid("max_value_bytes"));
        }
        let r = &self.reliable;
        if r.retransmit_ms == 0 {
            return Err(ConfigError::Invalid("retransmit_ms"));
        }
        if r.max_retransmit_ms < r.retransmit_ms {
            return Err(ConfigError::Invalid("max_retransmit_ms"));
        }
        if r.max_unacked_per_peer == 0 || r.max_unacked_per_peer > usize::from(u16::MAX) {
            return Err(ConfigError::Invalid("max_unacked_per_peer"));
        }
        if r.give_up_after == 0 {
            return Err(ConfigError::Invalid("give_up_after"));
        }
        Ok(())
    }

    /// Bytes of pairs one Delegate datagram may carry.
    pub fn delegate_pair_bytes(&self) -> usize {
        self.max_datagram_bytes.saturating_sub(FRAME_OVERHEAD_BYTES + BODY_OVERHEAD_BYTES)
    }
}

/// The cluster: every host's endpoint (a host's identity is its index; host 0 is the root,
/// which initially owns every key) and the shared parameters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KvConfig<const H: usize> {
    /// Host endpoints.
    pub hosts: heapless::Vec<Endpoint, H>,
    /// Shared parameters.
    pub params: KvParams,
}

/// The identity of the KV cluster of `hosts` (in order) and `params`: hosts send it in
/// every datagram and refuse other hosts that send another (two config files that list
/// the hosts in another order would disagree on who owns what); clients send it too, and
/// hosts accept `ANY_CLUSTER` from a client. Covers `max_value_bytes` and
/// `max_datagram_bytes`; timing parameters may differ.
pub fn identity_of(hosts: &[Endpoint], params: &KvParams) -> u32 {
    let shape = [params.max_value_bytes as u64, params.max_datagram_bytes as u64];
    crate::config::cluster_identity(b"fleet-kv-cluster", hosts, &shape)
}

impl<const H: usize> KvConfig<H> {
    /// A configuration with default parameters; fails if more than `H` endpoints are given.
    pub fn new(hosts: &[Endpoint]) -> Result<Self, ConfigError> {
        let hosts = heapless::Vec::from_slice(hosts).map_err(|_| ConfigError::TooManyReplicas)?;
        Ok(KvConfig { hosts, params: KvParams::default() })
    }

    /// Number of hosts.
    pub fn n(&self) -> usize {
        self.hosts.len()
    }

    /// Index of the host at `ep`, if it is one.
    pub fn index_of(&self, ep: Endpoint) -> Option<usize> {
        self.hosts.iter().position(|h| *h == ep)
    }

    /// This cluster's identity ([`identity_of`]).
    pub fn identity(&self) -> u32 {
        identity_of(&self.hosts, &self.params)
    }

    /// Checks hosts and parameters against a `datagram`-byte buffer capacity.
    pub fn validate(&self, datagram: usize) -> Result<(), ConfigError> {
        if self.hosts.is_empty() {
            return Err(ConfigError::NoReplicas);
        }
        if self.n() > MAX_HOSTS {
            return Err(ConfigError::TooManyReplicas);
        }
        for (i, a) in self.hosts.iter().enumerate() {
            if self.hosts[..i].contains(a) {
                return Err(ConfigError::DuplicateEndpoint);
            }
        }
        self.params.validate(datagram)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_adds_at_most_102_bytes_around_its_value() {
        // Frame 41 (envelope and cluster identity included), body and pair headers.
        assert_eq!(MSG_OVERHEAD_BYTES, 102);
    }

    #[test]
    fn each_bad_parameter_is_named() {
        let ok = KvParams { max_value_bytes: 100, max_datagram_bytes: 100 + MSG_OVERHEAD_BYTES, ..KvParams::default() };
        assert_eq!(ok.validate(ok.max_datagram_bytes), Ok(()), "the tightest fit is fine");
        let bad = |p: KvParams, datagram: usize| match p.validate(datagram) {
            Err(ConfigError::Invalid(what)) => what,
            other => panic!("{p:?} with {datagram}-byte buffers: {other:?}"),
        };
        assert_eq!(bad(ok, ok.max_datagram_bytes - 1), "max_datagram_bytes");
        let huge = KvParams { max_datagram_bytes: MAX_UDP_PAYLOAD_BYTES + 1, ..ok };
        assert_eq!(bad(huge, usize::MAX), "max_datagram_bytes");
        assert_eq!(bad(KvParams { max_value_bytes: 101, ..ok }, 1 << 16), "max_value_bytes");
        assert_eq!(bad(KvParams { max_value_bytes: 0, ..ok }, 1 << 16), "max_value_bytes");
        let r = ok.reliable;
        let with = |reliable| KvParams { reliable, ..ok };
        assert_eq!(bad(with(ReliableParams { retransmit_ms: 0, ..r }), 1 << 16), "retransmit_ms");
        let slow = ReliableParams { max_retransmit_ms: r.retransmit_ms - 1, ..r };
        assert_eq!(bad(with(slow), 1 << 16), "max_retransmit_ms");
        assert_eq!(bad(with(ReliableParams { max_unacked_per_peer: 0, ..r }), 1 << 16), "max_unacked_per_peer");
        let many = ReliableParams { max_unacked_per_peer: usize::from(u16::MAX) + 1, ..r };
        assert_eq!(bad(with(many), 1 << 16), "max_unacked_per_peer");
        assert_eq!(bad(with(ReliableParams { give_up_after: 0, ..r }), 1 << 16), "give_up_after");
        // Each limit itself is fine.
        let largest = KvParams { max_datagram_bytes: MAX_UDP_PAYLOAD_BYTES, ..ok };
        assert_eq!(largest.validate(usize::MAX), Ok(()), "the largest UDP payload");
        let steady = ReliableParams { max_retransmit_ms: r.retransmit_ms, ..r };
        assert_eq!(with(steady).validate(1 << 16), Ok(()), "no backoff");
        let most = ReliableParams { max_unacked_per_peer: usize::from(u16::MAX), ..r };
        assert_eq!(with(most).validate(1 << 16), Ok(()), "u16::MAX messages per peer");
    }

    #[test]
    fn a_cluster_has_one_to_255_distinct_hosts() {
        let ep = |i: usize| Endpoint::v4([10, 0, (i >> 8) as u8, i as u8], 1);
        let with = |n: usize| KvConfig::<256> { hosts: (0..n).map(ep).collect(), params: KvParams::default() };
        assert_eq!(with(255).validate(1472), Ok(()));
        assert_eq!(with(256).validate(1472), Err(ConfigError::TooManyReplicas));
        assert_eq!(with(0).validate(1472), Err(ConfigError::NoReplicas));
        let mut twice = with(3);
        twice.hosts[2] = ep(0);
        assert_eq!(twice.validate(1472), Err(ConfigError::DuplicateEndpoint));
    }
}
