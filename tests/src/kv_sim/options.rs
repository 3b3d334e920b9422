//! How a KV simulation is set up ([`KvSimOptions`], [`sim_params`]) and what a run found
//! ([`KvSimReport`]).

use fleet_engine::kv::{KvParams, ReliableParams};

use super::{HOT_KEYS, KEYS, SIM_DATAGRAM, SIM_MAX_VALUE};
use crate::net::NetFaults;
use crate::rng::Rng;

/// How a KV simulation is set up.
#[derive(Clone, Copy, Debug)]
pub struct KvSimOptions {
    /// Hosts (at most 4).
    pub hosts: usize,
    /// Workload clients.
    pub clients: usize,
    /// Network faults.
    pub faults: NetFaults,
    /// Mean time between admin Shard commands, microseconds (0: none).
    pub shard_every_us: u64,
    /// Mean time between partitions, microseconds (0: none).
    pub partition_every_us: u64,
    /// Protocol parameters.
    pub params: KvParams,
    /// The keys the workload and the admin's Shards use.
    pub keys: &'static [u64],
    /// Mean time between client restarts, microseconds (0: none): a client is replaced by
    /// a new incarnation on the same endpoint with a larger first seqno; its outstanding
    /// operation (if any) is left with an unknown outcome.
    pub restart_every_us: u64,
    /// Mean time between short-lived clients, microseconds (0: none): each runs one
    /// operation from a new endpoint (or a departed one's, restarted) and leaves, some
    /// mid-request or without acknowledging; they fill the hosts' peer tables, so hosts
    /// evict settled clients and give up on vanished ones.
    pub ephemeral_every_us: u64,
    /// Mean time between host crashes, microseconds (0: none): a host loses its unsynced
    /// inputs, is down 1-50 ms, and restarts from its disk.
    pub crash_every_us: u64,
    /// Planted bug: hosts' datagrams leave before the inputs they depend on are synced.
    pub send_before_sync: bool,
    /// Mean time between restarts of a host without its state, microseconds (0: none):
    /// its disk is lost and it joins as a new incarnation (one host at a time).
    pub wipe_every_us: u64,
    /// Planted bug: a host restarted without state takes up its initial ranges at once
    /// (host 0: every key) instead of joining.
    pub claims_at_once: bool,
    /// Seal every datagram with the cluster's keys (as an `[auth]` deployment does).
    pub sealed: bool,
    /// Mean gap between the network adversary's forgeries (only with `sealed`).
    pub adversary_every_us: Option<u64>,
}

impl KvSimOptions {
    /// A seed's options: faults, shard rate and partitions all drawn from the seed.
    pub fn random(rng: &mut Rng) -> KvSimOptions {
        let max_delay = rng.range(200, 20_000);
        KvSimOptions {
            hosts: rng.range(2, 4) as usize,
            clients: rng.range(2, 4) as usize,
            faults: NetFaults {
                loss_ppm: rng.range(0, 100_000) as u32,
                dup_ppm: rng.range(0, 100_000) as u32,
                min_delay_us: 100,
                max_delay_us: max_delay,
            },
            shard_every_us: rng.range(5_000, 40_000),
            partition_every_us: if rng.chance(500_000) { rng.range(50_000, 300_000) } else { 0 },
            params: sim_params(),
            keys: &KEYS,
            restart_every_us: 0,
            ephemeral_every_us: 0,
            crash_every_us: 0,
            send_before_sync: false,
            wipe_every_us: 0,
            claims_at_once: false,
            sealed: false,
            adversary_every_us: None,
        }
    }

    /// Sealed, with the network adversary (every VOPR KV seed).
    pub fn attacked(mut self) -> KvSimOptions {
        self.sealed = true;
        self.adversary_every_us = Some(20_000);
        self
    }

    /// Draws, from its own stream (so a seed's other options stay what they were), whether
    /// the seed runs short-lived clients (half of the seeds), how often, and after how many
    /// retransmission rounds hosts give up on a client (3 to 12).
    pub fn with_churn(mut self, rng: &mut Rng) -> KvSimOptions {
        if rng.chance(500_000) {
            self.ephemeral_every_us = rng.range(300, 5_000);
            self.params.reliable.give_up_after = rng.range(3, 12) as u32;
        }
        self
    }

    /// Draws, from its own stream, whether hosts crash and restart from their disks (two
    /// seeds in three) and how often.
    pub fn with_crashes(mut self, rng: &mut Rng) -> KvSimOptions {
        if rng.below(3) < 2 {
            self.crash_every_us = rng.range(20_000, 300_000);
        }
        if rng.below(3) == 0 {
            self.wipe_every_us = rng.range(100_000, 1_000_000);
        }
        self
    }

    /// A hot seed: up to 8 clients on [`HOT_KEYS`], frequent Shards of the hot range between
    /// hosts (redirect ping-pong while it is in flight), long reordering delays, duplicates,
    /// and clients restarting on their endpoints.
    pub fn hot(rng: &mut Rng) -> KvSimOptions {
        let max_delay = rng.range(2_000, 50_000);
        KvSimOptions {
            hosts: rng.range(2, 4) as usize,
            clients: rng.range(5, 8) as usize,
            faults: NetFaults {
                loss_ppm: rng.range(0, 100_000) as u32,
                dup_ppm: rng.range(0, 200_000) as u32,
                min_delay_us: 100,
                max_delay_us: max_delay,
            },
            shard_every_us: rng.range(2_000, 20_000),
            partition_every_us: if rng.chance(300_000) { rng.range(50_000, 300_000) } else { 0 },
            params: sim_params(),
            keys: &HOT_KEYS,
            restart_every_us: if rng.chance(500_000) { rng.range(20_000, 200_000) } else { 0 },
            ephemeral_every_us: 0,
            crash_every_us: 0,
            send_before_sync: false,
            wipe_every_us: 0,
            claims_at_once: false,
            sealed: false,
            adversary_every_us: None,
        }
    }
}

impl Default for KvSimOptions {
    fn default() -> Self {
        KvSimOptions {
            hosts: 3,
            clients: 3,
            faults: NetFaults::CALM,
            shard_every_us: 20_000,
            partition_every_us: 0,
            params: sim_params(),
            keys: &KEYS,
            restart_every_us: 0,
            ephemeral_every_us: 0,
            crash_every_us: 0,
            send_before_sync: false,
            wipe_every_us: 0,
            claims_at_once: false,
            sealed: false,
            adversary_every_us: None,
        }
    }
}

/// The parameters every simulated host and client uses.
pub fn sim_params() -> KvParams {
    KvParams {
        max_value_bytes: SIM_MAX_VALUE,
        max_datagram_bytes: SIM_DATAGRAM,
        reliable: ReliableParams {
            retransmit_ms: 5,
            max_retransmit_ms: 80,
            max_unacked_per_peer: 8,
            give_up_after: 12,
        },
    }
}

/// What one seeded run found.
#[derive(Clone, Debug, Default)]
pub struct KvSimReport {
    /// The seed.
    pub seed: u64,
    /// Host steps taken.
    pub steps: u64,
    /// Simulated time reached, microseconds.
    pub sim_us: u64,
    /// Client operations completed.
    pub ops_completed: usize,
    /// Client operations still pending at the end (unknown outcome).
    pub ops_pending: usize,
    /// Shard commands carried out / refused by the host.
    pub shards_ok: u64,
    /// Shard commands refused (not owner, queue full, ...).
    pub shards_refused: u64,
    /// Transfers completed by recipients.
    pub transfers_completed: u64,
    /// Redirects the hosts sent.
    pub redirects: u64,
    /// Client restarts.
    pub restarts: u64,
    /// Short-lived clients started.
    pub ephemerals: u64,
    /// Short-lived clients that vanished mid-request.
    pub vanished: u64,
    /// Clients the hosts evicted (settled) to make room.
    pub evicted: u64,
    /// Clients the hosts gave up on (replies never acknowledged).
    pub abandoned: u64,
    /// Messages of closed channels the hosts refused.
    pub closed_refused: u64,
    /// Operations that ended lost (the host gave up with the reply undelivered).
    pub lost_ops: u64,
    /// Host crashes, each followed by a restart from the host's disk.
    pub crashes: u64,
    /// Hosts restarted without their state.
    pub wipes: u64,
    /// Operations answered `KvError::Lost`.
    pub lost_key_answers: u64,
    /// Logged inputs lost at crashes (never synced; nothing anyone was told).
    pub lost_inputs: u64,
    /// Datagrams the network lost, duplicated, or dropped at a partition.
    pub lost: u64,
    /// Datagrams duplicated.
    pub duplicated: u64,
    /// Datagrams dropped by partitions.
    pub partitioned: u64,
    /// What sealing and the adversary did (sealed runs).
    pub auth: crate::net::AuthCounts,
    /// Safety violations: invariants, ownership, linearizability (empty on a good run).
    pub violations: Vec<String>,
}
