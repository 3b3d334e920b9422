//! Cluster membership and the protocol's tunable parameters, with IronRSL's defaults.

use crate::config::ConfigError;
use crate::endpoint::Endpoint;
use crate::wire::{DEFAULT_MAX_DATAGRAM_BYTES, MAX_UDP_PAYLOAD_BYTES};

/// The highest replica count: suspicion and 1b-chunk sets are `u64` bitmasks.
pub const MAX_REPLICAS: usize = 64;
/// The largest log window: 1b replies are tracked as a `u64` mask of chunks.
pub const MAX_LOG_WINDOW: usize = 63;
/// The smallest datagram bound accepted; below it a batch could not hold one request.
pub const MIN_DATAGRAM_BYTES: usize = 256;
/// Bytes reserved in a datagram for the fields around a batch (2a, 2b, 1b headers).
pub const BATCH_OVERHEAD_BYTES: usize = 72;
/// The largest clock drift bound leases accept: 20 % (the leader's lease is then two thirds
/// of the holds).
pub const MAX_CLOCK_DRIFT_PPM: u32 = 200_000;

/// Tunable parameters of one replica. Defaults are IronRSL's where it has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Params {
    /// How often each replica broadcasts a heartbeat (IronRSL: 100 ms).
    pub heartbeat_period_ms: u64,
    /// The first epoch length of the view-change timer (IronRSL: 1000 ms).
    pub baseline_view_timeout_ms: u64,
    /// The epoch length doubles on every view change, up to this cap (default 8 s; IronRSL
    /// has none), and returns to the baseline once a view lasts a whole epoch.
    pub max_view_timeout_ms: u64,
    /// Most requests in one batch (IronRSL: 32).
    pub max_batch_size: usize,
    /// How long a partial batch may wait while earlier batches are in flight (IronRSL: 10 ms).
    /// With nothing in flight a partial batch is proposed by the next `tick`, which the
    /// batch timer makes due at once (adaptive batching): a binding ticks after the receive
    /// burst, so the burst's requests go in one batch.
    pub max_batch_delay_ms: u64,
    /// Log window: how far past the truncation point a proposal may go (IronRSL: 7).
    pub max_log_length: u64,
    /// Most bytes in one datagram, header included (default 1472, at most 65507).
    pub max_datagram_bytes: usize,
    /// How often a leader re-sends 2a for operations a replica has not executed yet, and a
    /// lagging replica re-asks for state. Not in IronRSL, which relied on view changes.
    pub retransmit_period_ms: u64,
    /// Most state-transfer chunks one answer may emit (bounds one step's output).
    pub state_chunks_per_step: usize,
    /// Leader leases ([`crate::rsl::lease`]): how long an acceptor that acknowledged a
    /// leader's round refuses to promise a higher ballot; 0 (the default) turns leases off.
    /// At least two heartbeat periods (the leader renews every period), at most the
    /// baseline view timeout (it delays electing a new leader by up to this much).
    pub lease_ms: u64,
    /// With leases: the bound on every replica's clock rate error, in parts per million
    /// (default 1,000, 0.1 %; NTP slews at most 500 ppm). The leader's lease is shorter than
    /// the acceptors' holds by this much on both clocks.
    pub clock_drift_ppm: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            heartbeat_period_ms: 100,
            baseline_view_timeout_ms: 1000,
            max_view_timeout_ms: 8_000,
            max_batch_size: 32,
            max_batch_delay_ms: 10,
            max_log_length: 7,
            max_datagram_bytes: DEFAULT_MAX_DATAGRAM_BYTES,
            retransmit_period_ms: 100,
            state_chunks_per_step: 64,
            lease_ms: 0,
            clock_drift_ppm: 1_000,
        }
    }
}

/// The cluster: every replica's endpoint, by index, and the parameters all replicas share.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RslConfig<const R: usize> {
    /// Replica endpoints; a replica's identity is its index here.
    pub replicas: heapless::Vec<Endpoint, R>,
    /// Shared parameters.
    pub params: Params,
    /// Which epoch of the cluster these replicas are ([`crate::rsl::membership`]): 0 for
    /// the configuration file's, one more for each membership change since.
    pub epoch: u64,
}

impl<const R: usize> RslConfig<R> {
    /// A configuration with default parameters; fails if more than `R` endpoints are given.
    pub fn new(replicas: &[Endpoint]) -> Result<Self, ConfigError> {
        let replicas = heapless::Vec::from_slice(replicas).map_err(|_| ConfigError::TooManyReplicas)?;
        Ok(RslConfig { replicas, params: Params::default(), epoch: 0 })
    }

    /// Number of replicas.
    pub fn n(&self) -> usize {
        self.replicas.len()
    }

    /// Size of a majority: `n / 2 + 1`.
    pub fn quorum(&self) -> usize {
        self.n() / 2 + 1
    }

    /// Index of the replica at `ep`, if it is one.
    pub fn index_of(&self, ep: Endpoint) -> Option<usize> {
        self.replicas.iter().position(|r| *r == ep)
    }

    /// This cluster's identity: a hash of what every member must agree on, the members in
    /// order and the parameters that shape messages (`max_log_length`, `max_batch_size`,
    /// `max_datagram_bytes`). Replicas send it in every datagram and refuse peers with
    /// another: two config files that list the same addresses in another order would
    /// otherwise give two processes one index, and two leaders one ballot. Never
    /// [`crate::wire::ANY_CLUSTER`]. Timing parameters may differ between members, except
    /// the lease's (`lease_ms`, `clock_drift_ppm`), which are covered when leases are on: a
    /// leader counting on a longer hold than its acceptors keep would serve stale reads.
    /// After a membership change the epoch is covered too: each epoch is a cluster of its
    /// own, even one whose replicas an earlier epoch had.
    pub fn identity(&self) -> u32 {
        let p = &self.params;
        let mut shape: heapless::Vec<u64, 6> = heapless::Vec::new();
        // Cannot fail: at most six values.
        let _ = shape.extend_from_slice(&[p.max_log_length, p.max_batch_size as u64, p.max_datagram_bytes as u64]);
        if p.lease_ms != 0 {
            let _ = shape.extend_from_slice(&[p.lease_ms, u64::from(p.clock_drift_ppm)]);
        }
        if self.epoch != 0 {
            let _ = shape.push(self.epoch);
        }
        crate::config::cluster_identity(b"fleet-rsl-cluster", &self.replicas, &shape)
    }

    /// The configuration of the next epoch: `replicas`, these parameters.
    pub fn next_epoch(&self, replicas: heapless::Vec<Endpoint, R>) -> Self {
        self.at_epoch(self.epoch.saturating_add(1), replicas)
    }

    /// The configuration of epoch `epoch` (a later one, learned from a peer or a log):
    /// `replicas`, these parameters.
    pub fn at_epoch(&self, epoch: u64, replicas: heapless::Vec<Endpoint, R>) -> Self {
        RslConfig { replicas, params: self.params, epoch }
    }

    /// With leases on, the leader's lease in microseconds ([`crate::rsl::lease`]).
    pub fn leader_lease_us(&self) -> Option<u64> {
        let p = &self.params;
        (p.lease_ms > 0).then(|| crate::rsl::lease::leader_lease_us(p.lease_ms, p.clock_drift_ppm))
    }

    /// Bytes a batch may take so that every message carrying it fits one datagram.
    pub fn max_batch_bytes(&self) -> usize {
        self.params.max_datagram_bytes.saturating_sub(BATCH_OVERHEAD_BYTES)
    }

    /// Checks the configuration against the replica's compile-time capacities:
    /// `window` log slots and `datagram` bytes per batch buffer.
    pub fn validate(&self, window: usize, datagram: usize) -> Result<(), ConfigError> {
        let p = &self.params;
        if self.replicas.is_empty() {
            return Err(ConfigError::NoReplicas);
        }
        if self.n() > MAX_REPLICAS {
            return Err(ConfigError::TooManyReplicas);
        }
        for (i, a) in self.replicas.iter().enumerate() {
            if self.replicas[..i].contains(a) {
                return Err(ConfigError::DuplicateEndpoint);
            }
        }
        if p.max_log_length == 0 || p.max_log_length > window as u64 || window > MAX_LOG_WINDOW {
            return Err(ConfigError::Invalid("max_log_length"));
        }
        if p.max_datagram_bytes < MIN_DATAGRAM_BYTES
            || p.max_datagram_bytes > MAX_UDP_PAYLOAD_BYTES
            || p.max_datagram_bytes > datagram
        {
            return Err(ConfigError::Invalid("max_datagram_bytes"));
        }
        if p.max_batch_size == 0 {
            return Err(ConfigError::Invalid("max_batch_size"));
        }
        if p.heartbeat_period_ms == 0 {
            return Err(ConfigError::Invalid("heartbeat_period_ms"));
        }
        if p.baseline_view_timeout_ms == 0 {
            return Err(ConfigError::Invalid("baseline_view_timeout_ms"));
        }
        if p.max_view_timeout_ms < p.baseline_view_timeout_ms {
            return Err(ConfigError::Invalid("max_view_timeout_ms"));
        }
        if p.retransmit_period_ms == 0 {
            return Err(ConfigError::Invalid("retransmit_period_ms"));
        }
        if p.state_chunks_per_step == 0 {
            return Err(ConfigError::Invalid("state_chunks_per_step"));
        }
        if p.lease_ms > 0 && (p.lease_ms < 2 * p.heartbeat_period_ms || p.lease_ms > p.baseline_view_timeout_ms) {
            return Err(ConfigError::Invalid("lease_ms"));
        }
        if p.lease_ms > 0 && p.clock_drift_ppm > MAX_CLOCK_DRIFT_PPM {
            return Err(ConfigError::Invalid("clock_drift_ppm"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: usize = 8;

    /// Sets one parameter to zero.
    type ZeroField = fn(&mut Params);
    const DATAGRAM: usize = DEFAULT_MAX_DATAGRAM_BYTES;

    fn cluster(n: usize) -> RslConfig<70> {
        let eps: heapless::Vec<Endpoint, 70> = (0..n).map(|i| Endpoint::v4([10, 0, 0, 1], 7000 + i as u16)).collect();
        RslConfig::new(&eps).unwrap()
    }

    fn with(f: impl FnOnce(&mut Params)) -> RslConfig<70> {
        let mut c = cluster(3);
        f(&mut c.params);
        c
    }

    #[test]
    fn the_identity_covers_members_in_order_and_message_shapes_but_not_timing() {
        let base = cluster(3).identity();
        assert_eq!(base, cluster(3).identity(), "deterministic");
        let mut swapped = cluster(3);
        swapped.replicas.swap(0, 1);
        assert_ne!(swapped.identity(), base, "the same addresses in another order");
        assert_ne!(cluster(4).identity(), base);
        assert_ne!(with(|p| p.max_log_length = 5).identity(), base);
        assert_ne!(with(|p| p.max_batch_size = 8).identity(), base);
        assert_ne!(with(|p| p.max_datagram_bytes = 8192).identity(), base);
        assert_eq!(with(|p| p.heartbeat_period_ms = 7).identity(), base, "timing may differ");
        assert_eq!(with(|p| p.clock_drift_ppm = 7).identity(), base, "the drift bound is unused without leases");
        let leased = with(|p| p.lease_ms = 500).identity();
        assert_ne!(leased, base, "leases change what members must agree on");
        assert_ne!(with(|p| p.lease_ms = 600).identity(), leased);
        assert_ne!(
            with(|p| {
                p.lease_ms = 500;
                p.clock_drift_ppm = 2_000;
            })
            .identity(),
            leased
        );
        assert_ne!(base, crate::wire::ANY_CLUSTER);
        let mut later = cluster(3);
        later.epoch = 2;
        assert_ne!(later.identity(), base, "an epoch with the same replicas is another cluster");
        let next = cluster(3).next_epoch(cluster(3).replicas);
        assert_eq!(next.epoch, 1);
        assert_ne!(next.identity(), base);
        assert_ne!(next.identity(), later.identity());
    }

    #[test]
    fn the_defaults_are_valid_and_every_bound_is_inclusive() {
        assert_eq!(cluster(3).validate(WINDOW, DATAGRAM), Ok(()));
        assert_eq!(cluster(MAX_REPLICAS).validate(WINDOW, DATAGRAM), Ok(()));
        assert_eq!(cluster(MAX_REPLICAS + 1).validate(WINDOW, DATAGRAM), Err(ConfigError::TooManyReplicas));
        let log = |len: u64, window: usize| with(|p| p.max_log_length = len).validate(window, DATAGRAM);
        assert_eq!(log(WINDOW as u64, WINDOW), Ok(()));
        assert_eq!(log(WINDOW as u64 + 1, WINDOW), Err(ConfigError::Invalid("max_log_length")));
        assert_eq!(log(7, MAX_LOG_WINDOW), Ok(()));
        assert_eq!(log(7, MAX_LOG_WINDOW + 1), Err(ConfigError::Invalid("max_log_length")));
        let dgram = |bytes: usize, buffer: usize| with(|p| p.max_datagram_bytes = bytes).validate(WINDOW, buffer);
        assert_eq!(dgram(MIN_DATAGRAM_BYTES, DATAGRAM), Ok(()));
        assert_eq!(dgram(MIN_DATAGRAM_BYTES - 1, DATAGRAM), Err(ConfigError::Invalid("max_datagram_bytes")));
        assert_eq!(dgram(DATAGRAM, DATAGRAM), Ok(()));
        assert_eq!(dgram(DATAGRAM + 1, DATAGRAM), Err(ConfigError::Invalid("max_datagram_bytes")));
        assert_eq!(dgram(MAX_UDP_PAYLOAD_BYTES, usize::MAX), Ok(()));
        assert_eq!(dgram(MAX_UDP_PAYLOAD_BYTES + 1, usize::MAX), Err(ConfigError::Invalid("max_datagram_bytes")));
        let views = |max: u64| with(|p| p.max_view_timeout_ms = max).validate(WINDOW, DATAGRAM);
        assert_eq!(views(1000), Ok(()), "the cap may equal the baseline");
        assert_eq!(views(999), Err(ConfigError::Invalid("max_view_timeout_ms")));
        let lease = |ms: u64| with(|p| p.lease_ms = ms).validate(WINDOW, DATAGRAM);
        assert_eq!(lease(200), Ok(()), "two heartbeat periods");
        assert_eq!(lease(199), Err(ConfigError::Invalid("lease_ms")));
        assert_eq!(lease(1000), Ok(()), "the baseline view timeout");
        assert_eq!(lease(1001), Err(ConfigError::Invalid("lease_ms")));
        let drift = |ppm: u32| {
            with(|p| {
                p.lease_ms = 500;
                p.clock_drift_ppm = ppm;
            })
            .validate(WINDOW, DATAGRAM)
        };
        assert_eq!(drift(MAX_CLOCK_DRIFT_PPM), Ok(()));
        assert_eq!(drift(MAX_CLOCK_DRIFT_PPM + 1), Err(ConfigError::Invalid("clock_drift_ppm")));
    }

    #[test]
    fn each_refusal_names_what_to_fix() {
        assert_eq!(cluster(0).validate(WINDOW, DATAGRAM), Err(ConfigError::NoReplicas));
        let mut dup = cluster(3);
        dup.replicas[2] = dup.replicas[0];
        assert_eq!(dup.validate(WINDOW, DATAGRAM), Err(ConfigError::DuplicateEndpoint));
        let zeroed: [(&str, ZeroField); 6] = [
            ("max_log_length", |p| p.max_log_length = 0),
            ("max_batch_size", |p| p.max_batch_size = 0),
            ("heartbeat_period_ms", |p| p.heartbeat_period_ms = 0),
            ("baseline_view_timeout_ms", |p| p.baseline_view_timeout_ms = 0),
            ("retransmit_period_ms", |p| p.retransmit_period_ms = 0),
            ("state_chunks_per_step", |p| p.state_chunks_per_step = 0),
        ];
        for (field, zero) in zeroed {
            assert_eq!(with(zero).validate(WINDOW, DATAGRAM), Err(ConfigError::Invalid(field)), "{field}");
        }
    }
}
