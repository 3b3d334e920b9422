//! The VOPR driver: one seed in, one judged run out.
//!
//! A run has two phases. **Faults** (`steps` host steps): the seeded [`FaultSchedule`] loses,
//! duplicates, delays and reorders datagrams, partitions arbitrary host sets (symmetric or
//! one-way), crash-stops a minority of replicas (and some clients) and makes clocks jump,
//! while every host runs on its own skewed, drifting clock. **GST**: faults stop, and every
//! request still pending must complete within the liveness bound. Then the client history is
//! checked for linearizability. The safety checkers run after every step of both phases.

use fleet_proofs::checkers::linearizable::{check_keyed, LinVerdict};
use fleet_proofs::checkers::Violation;
use fleet_proofs::spec::bytes_kv::BytesKvApp;
use fleet_proofs::Budget;

use crate::faults::{CrashGroup, FaultCounts, FaultProfile, FaultSchedule, HEALED_NET};
use crate::members_sim::MembersPlant;
use crate::net::NetCounts;
use crate::rng::Rng;
use crate::rsl_sim::{Plant, RslSim, SimOptions};

/// Which system to simulate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// IronRSL (MultiPaxos) replicas running the byte-KV app.
    Rsl,
    /// IronKV (sharded KV): not simulated yet (its host lives on another branch).
    Kv,
    /// RSL membership changes ([`crate::members_sim`]): in-memory replicas grown, replaced
    /// and shrunk under loss, duplication, reordering and restarts without state.
    Members,
}

impl Kind {
    /// Parses `rsl` or `kv`.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "rsl" => Some(Kind::Rsl),
            "kv" => Some(Kind::Kv),
            "members" => Some(Kind::Members),
            _ => None,
        }
    }

    /// The `--kind` name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Rsl => "rsl",
            Kind::Kv => "kv",
            Kind::Members => "members",
        }
    }
}

/// What to run for each seed.
#[derive(Clone, Copy, Debug)]
pub struct RunConfig {
    /// System under test.
    pub kind: Kind,
    /// Host steps in the fault phase.
    pub steps: u64,
    /// A planted bug (checker tests only).
    pub plant: Plant,
    /// Step budget of the linearizability check.
    pub lin_budget_steps: u64,
    /// Most steps the post-GST phase may take before giving up (a liveness violation).
    pub max_liveness_steps: u64,
    /// Steps kept in the trace ring buffer.
    pub trace_capacity: usize,
    /// Render the trace even when the seed passes.
    pub always_trace: bool,
    /// Keep running after a safety violation and always check linearizability (planted-bug
    /// tests use it to see a later checker fire too).
    pub keep_going: bool,
    /// RSL: every seed runs with leader leases ([`fleet_engine::rsl::lease`]) within their
    /// assumption: the drift bound covers the simulated clocks' (±5 %), and no clock jumps.
    pub leases: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            kind: Kind::Rsl,
            steps: 5_000,
            plant: Plant::None,
            lin_budget_steps: 2_000_000,
            max_liveness_steps: 3_000_000,
            trace_capacity: 48,
            always_trace: false,
            keep_going: false,
            leases: false,
        }
    }
}

impl RunConfig {
    /// The one-line command that replays `seed` exactly, with a trace.
    pub fn replay_command(&self, seed: u64) -> String {
        let plant = match self.plant {
            Plant::None => String::new(),
            p => format!(" --plant {}", p.name()),
        };
        let leases = if self.leases && self.plant != Plant::LeaseOverrun { " --leases" } else { "" };
        format!(
            "cargo run --release -p fleet-tests --bin vopr -- --kind {} --seed {seed} --steps {}{plant}{leases}",
            self.kind.name(),
            self.steps
        )
    }
}

/// The outcome of one seed.
#[derive(Clone, Debug, Default)]
pub struct SeedReport {
    /// The seed.
    pub seed: u64,
    /// Steps taken in the fault phase.
    pub fault_steps: u64,
    /// Steps taken after GST.
    pub liveness_steps: u64,
    /// Simulated time at the end, microseconds.
    pub sim_us: u64,
    /// What the network did.
    pub net: NetCounts,
    /// Faults injected.
    pub faults: FaultCounts,
    /// Client operations invoked and completed.
    pub ops: (usize, usize),
    /// Batches the spec executed (the longest executed prefix).
    pub spec_ops: u64,
    /// Queries answered without a log write (RSL).
    pub queries: u64,
    /// Request groups submitted by pipelined sessions (RSL).
    pub groups: u64,
    /// Violations (empty on success).
    pub violations: Vec<Violation>,
    /// The linearizability check ran out of budget (no verdict).
    pub lin_unknown: Option<String>,
    /// A one-line description of the seed's configuration.
    pub setup: String,
    /// The last steps, rendered (filled on failure, or when asked).
    pub trace: String,
    /// KV seeds: short-lived clients and what the hosts' peer tables did with them.
    pub churn: ChurnCounts,
    /// What sealing and the adversary did (sealed runs).
    pub auth: crate::net::AuthCounts,
}

/// What KV hosts did with their peer tables in a run (KV seeds only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChurnCounts {
    /// Short-lived clients started.
    pub ephemerals: u64,
    /// Of those, how many vanished mid-request.
    pub vanished: u64,
    /// Clients evicted settled to make room.
    pub evicted: u64,
    /// Clients given up on with replies unacknowledged.
    pub abandoned: u64,
    /// Messages of closed channels refused.
    pub closed_refused: u64,
    /// Operations that ended lost (outcome unknown).
    pub lost_ops: u64,
    /// Host crashes, each followed by a restart from the host's disk.
    pub host_crashes: u64,
    /// Logged inputs lost at those crashes (never synced).
    pub lost_inputs: u64,
    /// Hosts restarted without their state.
    pub wipes: u64,
    /// Operations answered "key lost".
    pub lost_key_answers: u64,
}

impl ChurnCounts {
    /// Adds another run's counts.
    pub fn add(&mut self, o: &ChurnCounts) {
        self.ephemerals += o.ephemerals;
        self.vanished += o.vanished;
        self.evicted += o.evicted;
        self.abandoned += o.abandoned;
        self.closed_refused += o.closed_refused;
        self.lost_ops += o.lost_ops;
        self.host_crashes += o.host_crashes;
        self.lost_inputs += o.lost_inputs;
        self.wipes += o.wipes;
        self.lost_key_answers += o.lost_key_answers;
    }
}

/// Runs one seed.
pub fn run_seed(seed: u64, cfg: &RunConfig) -> SeedReport {
    run_seed_with(seed, cfg, |_| {})
}

/// Runs one seed, letting a test adjust the seed's options first.
pub fn run_seed_with(seed: u64, cfg: &RunConfig, tweak: impl FnOnce(&mut SimOptions)) -> SeedReport {
    match cfg.kind {
        Kind::Rsl => run_rsl(seed, cfg, tweak),
        Kind::Kv => run_kv(seed, cfg),
        Kind::Members => run_members(seed, cfg.plant),
    }
}

/// One membership seed ([`crate::members_sim::run_seed`]): three changes under faults, then
/// every acknowledged write read back.
fn run_members(seed: u64, plant: Plant) -> SeedReport {
    let plant = match plant {
        Plant::FreshEpoch => MembersPlant::FreshEpoch,
        Plant::ForgetEpoch => MembersPlant::ForgetEpoch,
        _ => MembersPlant::None,
    };
    let (violations, r) = match crate::members_sim::run_seed_with(seed, plant) {
        Ok(r) => (Vec::new(), r),
        Err(v) => (v, crate::members_sim::SeedReport::default()),
    };
    let (sent, lost, duplicated) = r.datagrams;
    let faults = FaultCounts {
        crashes: r.restarts + r.restarts_from_disk,
        wipes: r.restarts,
        rejoins: r.restarts,
        restarts: r.restarts_from_disk,
        power_cuts: r.power_cuts,
        planted: r.planted,
        // A replica asleep through two changes (`members_sim::run_seed`).
        pauses: u64::from(r.slept_epochs > 0),
        ..FaultCounts::default()
    };
    SeedReport {
        seed,
        sim_us: r.sim_us,
        net: NetCounts { sent, lost, duplicated, partitioned: 0 },
        ops: (r.acked as usize, r.acked as usize),
        faults,
        violations: violations.into_iter().map(|v| Violation::new("members", "members-simulator", v)).collect(),
        setup: format!(
            "members: {} replicas, {} epochs entered ({} adding learners), {} writes acknowledged, {} restarts \
             without state, {} from disk, {} power cuts, client {}{}",
            if r.durable { "durable" } else { "in-memory" },
            r.epochs,
            r.learner_changes,
            r.acked,
            r.restarts,
            r.restarts_from_disk,
            r.power_cuts,
            if r.plain_client { "naming no cluster" } else { "naming its cluster" },
            match r.slept_epochs {
                0 => String::new(),
                n => format!(", a replica woke {n} epochs behind"),
            }
        ),
        ..SeedReport::default()
    }
}

/// Even seeds run the spread workload ([`crate::kv_sim::run_kv_seed`]), odd seeds the hot one
/// ([`crate::kv_sim::run_kv_hot_seed`]: many clients on a few keys whose range keeps moving,
/// client restarts on the same endpoints).
fn run_kv(seed: u64, cfg: &RunConfig) -> SeedReport {
    let hot = seed % 2 == 1;
    // The durable-binding plant applies to KV hosts too: every seed then crashes hosts.
    let plant = cfg.plant;
    let tweak = |o: &mut crate::kv_sim::KvSimOptions| match plant {
        Plant::SendBeforeSync => {
            o.send_before_sync = true;
            o.crash_every_us = o.crash_every_us.clamp(1, 50_000);
        }
        Plant::ClaimsAtOnce => {
            o.claims_at_once = true;
            o.wipe_every_us = o.wipe_every_us.clamp(1, 200_000);
        }
        _ => {}
    };
    let r = match hot {
        true => crate::kv_sim::run_kv_hot_seed_with(seed, cfg.steps, tweak),
        false => crate::kv_sim::run_kv_seed_with(seed, cfg.steps, tweak),
    };
    SeedReport {
        seed,
        fault_steps: r.steps,
        sim_us: r.sim_us,
        net: NetCounts { sent: 0, lost: r.lost, duplicated: r.duplicated, partitioned: r.partitioned },
        ops: (r.ops_completed + r.ops_pending, r.ops_completed),
        spec_ops: r.transfers_completed,
        queries: 0,
        groups: 0,
        violations: r.violations.iter().map(|v| Violation::new("kv", "kv-simulator", v.clone())).collect(),
        setup: format!(
            "KV{}: {} shards done, {} refused, {} transfers completed, {} redirects, {} client restarts, \
             {} short-lived clients ({} vanished), {} evicted, {} given up, {} closed-channel refusals, {} lost, \
             {} host crashes ({} unsynced inputs lost)",
            if hot { " (hot keys)" } else { "" },
            r.shards_ok,
            r.shards_refused,
            r.transfers_completed,
            r.redirects,
            r.restarts,
            r.ephemerals,
            r.vanished,
            r.evicted,
            r.abandoned,
            r.closed_refused,
            r.lost_ops,
            r.crashes,
            r.lost_inputs
        ),
        churn: ChurnCounts {
            ephemerals: r.ephemerals,
            vanished: r.vanished,
            evicted: r.evicted,
            abandoned: r.abandoned,
            closed_refused: r.closed_refused,
            lost_ops: r.lost_ops,
            host_crashes: r.crashes,
            lost_inputs: r.lost_inputs,
            wipes: r.wipes,
            lost_key_answers: r.lost_key_answers,
        },
        auth: r.auth,
        ..SeedReport::default()
    }
}

/// After GST, once every client request has completed: every live replica executes every
/// operation some live replica has executed, within the liveness bound, with no new client
/// traffic (leader retransmission, StartingPhase2 and state transfer must get it there).
/// IronRSL's liveness theorem only promises clients their replies; a replica left behind
/// forever would make the next failure the one that loses availability, so Fleet checks it.
fn check_catch_up(sim: &mut RslSim, fault_steps: u64, max_liveness_steps: u64) {
    // Live replicas as (id, operations executed), those below `target` only.
    let below = |sim: &RslSim, target: u64| -> Vec<(usize, u64)> {
        let live = sim.replicas.iter().enumerate().filter_map(|(i, r)| Some((i, r.as_ref()?.executor().ops_complete)));
        live.filter(|e| e.1 < target).collect()
    };
    let target = below(sim, u64::MAX).iter().map(|e| e.1).max().unwrap_or(0);
    let deadline = sim.now + sim.liveness_bound_us();
    while !below(sim, target).is_empty() && sim.now <= deadline && sim.violations.is_empty() {
        if sim.steps - fault_steps > max_liveness_steps || !sim.step() {
            break;
        }
    }
    let left = below(sim, target);
    if !left.is_empty() && sim.violations.is_empty() {
        sim.violations.push(Violation::new(
            "catch-up",
            "fleet: every live replica executes every executed operation after GST",
            format!("replicas (id, executed) {left:?} still below operation {target} at {} us", sim.now),
        ));
    }
}

/// After GST every replica is up (the simulator restarts crashed ones if a replica is
/// without state): every replica that restarted without state must take part again within
/// the liveness bound (the rejoin rule's liveness condition holds).
fn check_rejoined(sim: &mut RslSim, fault_steps: u64, max_liveness_steps: u64) {
    let waiting = |sim: &RslSim| -> Vec<usize> {
        let rejoining =
            |r: &Option<Box<crate::rsl_sim::SimReplica>>| r.as_ref().is_some_and(|r| r.rejoining().is_some());
        sim.replicas.iter().enumerate().filter(|(_, r)| rejoining(r)).map(|(i, _)| i).collect()
    };
    let deadline = sim.now + sim.liveness_bound_us();
    while !waiting(sim).is_empty() && sim.now <= deadline && sim.violations.is_empty() {
        if sim.steps - fault_steps > max_liveness_steps || !sim.step() {
            break;
        }
    }
    let left = waiting(sim);
    if !left.is_empty() && sim.violations.is_empty() {
        sim.violations.push(Violation::new(
            "liveness",
            "fleet: a replica restarted without state rejoins after GST (rsl::rejoin)",
            format!("replicas {left:?} still rejoining at {} us", sim.now),
        ));
    }
}

/// After GST and catch-up, with clients done and only stray requests arriving: the views
/// settle. Two windows of a maximum epoch (and ten heartbeats) each: the first lets a
/// pending suspicion finish (a dead leader is replaced); in the second no live replica may
/// leave a view whose leader is up and leading it.
/// Requests nobody retries, sent only to followers, once made them suspect every leader.
fn check_views_settle(sim: &mut RslSim, fault_steps: u64, max_liveness_steps: u64) {
    let p = sim.config().params;
    let window_us = (p.max_view_timeout_ms + 10 * p.heartbeat_period_ms) * 1_000;
    let run = |sim: &mut RslSim, until: u64| {
        while sim.now < until && sim.violations.is_empty() {
            if sim.steps - fault_steps > max_liveness_steps || !sim.step() {
                break;
            }
        }
    };
    // A pause that began before GST still freezes its replica after it; a frozen leader is
    // rightly left (found by seed 4268: a leader paused 4.6 s, over GST, and a stray request
    // its followers tracked). The windows start once every replica runs again.
    let last_pause_end = sim.paused_until.iter().copied().max().unwrap_or(0);
    run(sim, sim.now.max(last_pause_end) + window_us);
    let views = |sim: &RslSim| -> Vec<Option<(u64, u8)>> {
        sim.replicas.iter().map(|r| r.as_ref().map(|r| (r.status().view.seqno, r.status().view.proposer))).collect()
    };
    let before = views(sim);
    // Replicas leading the view they believe in (a leader restarted from its disk does not
    // lead its old view again: that view must be left, once a request waits).
    let leading_before: Vec<bool> =
        sim.replicas.iter().map(|r| r.as_ref().is_some_and(|r| r.status().is_leader)).collect();
    let from_us = sim.now;
    run(sim, sim.now + window_us);
    let after = views(sim);
    // A view whose leader is down or not leading may (and must, once a request waits) be
    // left; leaving one whose leader led it and stayed up is churn.
    let leader_up =
        |v: (u64, u8)| leading_before.get(usize::from(v.1)) == Some(&true) && sim.replicas[usize::from(v.1)].is_some();
    // Replicas still following a change decided before the window (some replica was
    // already in the higher view) are not churn: only moving past the highest view at the
    // window's start is.
    let highest = before.iter().flatten().copied().max();
    let changed: Vec<usize> = match highest {
        Some(h) if leader_up(h) => (0..after.len()).filter(|&i| after[i].is_some_and(|a| a > h)).collect(),
        _ => Vec::new(),
    };
    if !changed.is_empty() && sim.violations.is_empty() {
        sim.violations.push(Violation::new(
            "liveness",
            "fleet: views settle after GST (no view-change churn from requests nobody retries)",
            format!(
                "replicas {changed:?} changed view between {from_us} and {} us: {before:?} -> {after:?} ({} strays sent)",
                sim.now, sim.strays
            ),
        ));
    }
}

/// Leader leases as long as the view timeout allows, with a drift bound that covers the
/// simulated clocks (±5 %), and no clock jumps: the lease's stated assumption.
fn lease_within_assumption(opts: &mut SimOptions, profile: &mut FaultProfile) {
    opts.params.lease_ms = opts.params.baseline_view_timeout_ms;
    opts.params.clock_drift_ppm = 50_000;
    profile.max_jump_us = 0;
}

fn run_rsl(seed: u64, cfg: &RunConfig, tweak: impl FnOnce(&mut SimOptions)) -> SeedReport {
    let mut rng = Rng::new(seed ^ 0x05EE_D0FF_1EE7);
    let mut opts = SimOptions::random(&mut rng);
    opts.plant = cfg.plant;
    opts.trace_capacity = cfg.trace_capacity;
    tweak(&mut opts);
    let n = opts.replicas;
    let hosts = n + opts.clients;
    let groups = [
        CrashGroup { hosts: (0..n).collect(), max: (n - 1) / 2, restartable: true, whole: true },
        CrashGroup { hosts: (n..hosts).collect(), max: opts.clients / 2, restartable: false, whole: false },
    ];
    let mut profile = FaultProfile::random(&mut rng);
    // The planted rejoin bug acts only on wiped disks: every seed of its runs wipes some.
    if cfg.plant == Plant::RejoinAtOnce && profile.mean_gap_steps > 0 {
        profile.crash_weight = profile.crash_weight.max(1);
        profile.wipe_weight = 3;
    }
    if cfg.leases || cfg.plant == Plant::LeaseOverrun {
        lease_within_assumption(&mut opts, &mut profile);
    }
    if cfg.plant == Plant::LeaseOverrun {
        // Replica 0 (the first leader) keeps time at half speed, far beyond the bound the
        // cluster states: its lease outlives, in real time, the holds that protect it.
        opts.clocks.resize(hosts.max(opts.clocks.len()), crate::clock::HostClock::EXACT);
        opts.clocks[0].drift_ppm = -500_000;
    }
    let schedule = FaultSchedule::generate_from(&mut rng, profile, hosts, &groups, cfg.steps);
    opts.faults = schedule.profile.net;
    opts.max_pause_us = schedule.profile.max_pause_us;
    let setup = format!(
        "{n} replicas, {} clients, {} keys, params {:?}, client retransmit {} ms, faults {:?}, {} fault events",
        opts.clients,
        opts.keys,
        opts.params,
        opts.client_retransmit_ms,
        schedule.profile,
        schedule.events.len()
    );
    let mut sim = RslSim::new(seed, opts);
    let mut next = 0;
    while sim.steps < cfg.steps && (cfg.keep_going || sim.violations.is_empty()) {
        while next < schedule.events.len() && schedule.events[next].0 <= sim.steps {
            sim.apply_fault(schedule.events[next].1);
            next += 1;
        }
        if !sim.step() {
            break;
        }
    }
    let fault_steps = sim.steps;
    if sim.violations.is_empty() {
        sim.start_gst(HEALED_NET);
        let deadline = sim.liveness.deadline().unwrap_or(sim.now);
        while sim.liveness.outstanding() > 0 && sim.now <= deadline && sim.violations.is_empty() {
            if sim.steps - fault_steps > cfg.max_liveness_steps || !sim.step() {
                break;
            }
        }
        if sim.liveness.outstanding() > 0 && sim.violations.is_empty() {
            let now = sim.now.max(deadline + 1);
            sim.liveness.check(now, &mut sim.violations);
            if sim.violations.is_empty() {
                sim.violations.push(Violation::new(
                    "liveness",
                    "lemma_EventuallyLiveReplicaExecutesClientRequest",
                    format!(
                        "{} requests still pending after {} post-GST steps (simulation stalled before the deadline)",
                        sim.liveness.outstanding(),
                        sim.steps - fault_steps
                    ),
                ));
            }
        }
    }
    if sim.violations.is_empty() {
        check_catch_up(&mut sim, fault_steps, cfg.max_liveness_steps);
    }
    if sim.violations.is_empty() {
        check_rejoined(&mut sim, fault_steps, cfg.max_liveness_steps);
    }
    if sim.violations.is_empty() {
        check_views_settle(&mut sim, fault_steps, cfg.max_liveness_steps);
    }
    let mut lin_unknown = None;
    if sim.violations.is_empty() || cfg.keep_going {
        match sim.lin_history() {
            Err(v) => sim.violations.push(v),
            Ok(h) => match check_keyed(&BytesKvApp::default(), &h, &Budget::steps(cfg.lin_budget_steps)) {
                LinVerdict::Linearizable => {}
                LinVerdict::Violation(v) => sim.violations.push(v),
                LinVerdict::Unknown(why) => lin_unknown = Some(why),
            },
        }
    }
    let trace = if sim.violations.is_empty() && !cfg.always_trace { String::new() } else { sim.render_trace() };
    SeedReport {
        seed,
        fault_steps,
        liveness_steps: sim.steps - fault_steps,
        sim_us: sim.now,
        net: sim.net.counts,
        faults: sim.fault_counts,
        ops: (sim.history.len(), sim.completed()),
        spec_ops: sim.checker.refinement.spec_ops(),
        queries: sim.queries_answered,
        groups: sim.groups_submitted,
        violations: sim.violations,
        lin_unknown,
        setup,
        trace,
        churn: ChurnCounts::default(),
        auth: sim.net.auth_counts,
    }
}
