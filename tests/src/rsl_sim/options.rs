//! How a simulation is set up: cluster size, workload, protocol timing, clocks and faults,
//! fixed or drawn from a seed.

use fleet_engine::rsl::Params;

use super::plants::Plant;
use crate::clock::HostClock;
use crate::net::NetFaults;
use crate::rng::Rng;

/// How a simulation is set up.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Replicas.
    pub replicas: usize,
    /// Clients.
    pub clients: usize,
    /// Operations each client submits.
    pub ops_per_client: u32,
    /// Distinct keys the workload touches.
    pub keys: u8,
    /// Largest pause between a client's operations, microseconds.
    pub think_us: u64,
    /// Network faults.
    pub faults: NetFaults,
    /// Protocol parameters.
    pub params: Params,
    /// Client retransmission timeout.
    pub client_retransmit_ms: u64,
    /// Host clocks, replicas first then clients (missing ones are exact).
    pub clocks: Vec<HostClock>,
    /// A planted bug (tests of the checkers only).
    pub plant: Plant,
    /// Steps kept in the trace ring buffer.
    pub trace_capacity: usize,
    /// Mean gap between stray requests (a Get from a fresh endpoint, sent once to one
    /// follower and never retried, as a vanished or hostile client would), if any.
    pub stray_every_us: Option<u64>,
    /// The longest pause a fault may freeze a replica for (the liveness bound allows it).
    pub max_pause_us: u64,
    /// Seal every datagram with the cluster's keys (as an `[auth]` deployment does).
    pub sealed: bool,
    /// Mean gap between the network adversary's forgeries ([`crate::adversary`]), if any
    /// (only with `sealed`).
    pub adversary_every_us: Option<u64>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            replicas: 3,
            clients: 3,
            ops_per_client: 50,
            keys: 8,
            think_us: 1_999,
            faults: NetFaults::CALM,
            params: Params::default(),
            client_retransmit_ms: 300,
            clocks: Vec::new(),
            plant: Plant::None,
            trace_capacity: 64,
            stray_every_us: None,
            max_pause_us: 0,
            sealed: false,
            adversary_every_us: None,
        }
    }
}

impl SimOptions {
    /// Options drawn from `rng`: cluster size, workload, protocol timing and clocks all vary.
    pub fn random(rng: &mut Rng) -> SimOptions {
        let replicas = [3, 3, 3, 4, 5, 5][rng.below(6) as usize];
        let clients = rng.range(1, 5) as usize;
        let heartbeat = rng.range(20, 100);
        let baseline = rng.range(3 * heartbeat, 1_000);
        let params = Params {
            heartbeat_period_ms: heartbeat,
            baseline_view_timeout_ms: baseline,
            max_view_timeout_ms: baseline * [2, 4, 8][rng.below(3) as usize],
            max_batch_size: [1, 4, 32][rng.below(3) as usize],
            max_batch_delay_ms: rng.range(1, 10),
            max_log_length: rng.range(2, 8),
            retransmit_period_ms: rng.range(20, 200),
            state_chunks_per_step: [1, 2, 64][rng.below(3) as usize],
            ..Params::default()
        };
        let clocks = crate::faults::FaultSchedule::clocks(rng, replicas + clients);
        SimOptions {
            replicas,
            clients,
            ops_per_client: u32::MAX,
            keys: rng.range(1, 8) as u8,
            think_us: [0, 1_000, 20_000][rng.below(3) as usize],
            faults: NetFaults::CALM,
            params,
            client_retransmit_ms: rng.range(50, 500),
            clocks,
            plant: Plant::None,
            trace_capacity: 64,
            stray_every_us: (rng.below(2) == 0).then(|| rng.range(300_000, 3_000_000)),
            max_pause_us: 0,
            // Every VOPR seed is sealed and attacked: drawn from the seed, not from `rng`,
            // so each seed's other choices stay what they were.
            sealed: true,
            adversary_every_us: Some(20_000),
        }
    }
}
