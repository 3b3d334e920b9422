//! A generic, seeded fault schedule: which faults happen at which step of a run.
//!
//! Protocol-agnostic: hosts are indices `0..hosts` (the RSL simulator numbers replicas first,
//! then clients; a KV simulator can number its hosts the same way). The schedule is a list of
//! `(step, FaultEvent)` for the fault phase, then the *GST* (IronFleet's eventual synchrony):
//! every partition heals, loss and duplication stop, delays become small, and no new fault
//! happens. Crashed hosts stay down unless their group is restartable and a `Restart` brings
//! them back from durable state before GST; the schedule never has more hosts of a group
//! down at once than that group's budget (for RSL: a minority of replicas, so a quorum
//! stays up).

use crate::clock::HostClock;
use crate::net::NetFaults;
use crate::rng::Rng;

/// One fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultEvent {
    /// Drop datagrams from every host in `from` to every host in `to` (bitmasks of host
    /// indices); `symmetric` also drops `to -> from`.
    Partition {
        /// Sending side.
        from: u64,
        /// Receiving side.
        to: u64,
        /// Both directions.
        symmetric: bool,
    },
    /// Remove every partition.
    Heal,
    /// Crash a host: its memory is gone. It stays down unless a `Restart` follows.
    Crash(usize),
    /// A crashed host of a restartable group comes back with only its durable state (RSL:
    /// its log and snapshot; what it lacks comes from peers).
    Restart(usize),
    /// Every host of crash group `.0` crashes at once (a power cut); `Restart`s of each
    /// follow within a few steps.
    CrashAll(usize),
    /// A host's clock jumps forward by this many microseconds.
    ClockJump(usize, u64),
    /// A host freezes for this many microseconds (a stopped process, a stalled VM): it runs
    /// no timer and handles no datagram; those sent to it wait for it, as in its socket
    /// buffer, and then it goes on where it stopped, with its clock far ahead.
    Pause(usize, u64),
    /// New network loss, duplication and delay rates.
    Net(NetFaults),
    /// A crashed host's disk is replaced: its durable state is gone, and its next
    /// `Restart` starts it without state (RSL: it rejoins, see `fleet_engine::rsl::rejoin`).
    Wipe(usize),
}

/// Hosts a schedule may crash: each group crashes at most `max` of its hosts.
#[derive(Clone, Debug, Default)]
pub struct CrashGroup {
    /// Host indices in the group.
    pub hosts: Vec<usize>,
    /// Most hosts of the group that may be down at once.
    pub max: usize,
    /// Crashed hosts of the group may restart from durable state.
    pub restartable: bool,
    /// The whole group may crash at once (it restarts from durable state, so this needs
    /// `restartable`).
    pub whole: bool,
}

/// How hard a seed hits the system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultProfile {
    /// Mean steps between fault events (0: no fault events at all).
    pub mean_gap_steps: u64,
    /// Network rates at the start.
    pub net: NetFaults,
    /// Largest loss rate a `Net` event may pick (ppm).
    pub max_loss_ppm: u32,
    /// Largest duplication rate a `Net` event may pick (ppm).
    pub max_dup_ppm: u32,
    /// Largest delay a `Net` event may pick (us).
    pub max_delay_us: u64,
    /// Weight of crash events among fault events (0 disables crashes).
    pub crash_weight: u32,
    /// Largest clock jump (us; 0 disables jumps).
    pub max_jump_us: u64,
    /// Longest pause of a host (us; 0 disables pauses).
    pub max_pause_us: u64,
    /// Weight of disk replacements (wipes) among fault events (0 disables them).
    pub wipe_weight: u32,
}

impl FaultProfile {
    /// No faults at all.
    pub const NONE: FaultProfile = FaultProfile {
        mean_gap_steps: 0,
        net: NetFaults::CALM,
        max_loss_ppm: 0,
        max_dup_ppm: 0,
        max_delay_us: 100,
        crash_weight: 0,
        max_jump_us: 0,
        max_pause_us: 0,
        wipe_weight: 0,
    };

    /// A random profile: rates and frequencies vary per seed, from calm to harsh.
    pub fn random(rng: &mut Rng) -> FaultProfile {
        if rng.below(10) == 0 {
            return FaultProfile::NONE;
        }
        let max_loss_ppm = [0, 10_000, 50_000, 200_000][rng.below(4) as usize];
        let max_dup_ppm = [0, 10_000, 100_000][rng.below(3) as usize];
        let max_delay_us = [200, 2_000, 20_000, 100_000][rng.below(4) as usize];
        let net = random_net(rng, max_loss_ppm, max_dup_ppm, max_delay_us);
        FaultProfile {
            mean_gap_steps: [50, 200, 1_000][rng.below(3) as usize],
            net,
            max_loss_ppm,
            max_dup_ppm,
            max_delay_us,
            crash_weight: [0, 1, 3][rng.below(3) as usize],
            max_jump_us: [0, 0, 2_000_000][rng.below(3) as usize],
            max_pause_us: [0, 1_000_000, 5_000_000][rng.below(3) as usize],
            // A third of the seeds replace disks; the others keep every restart's disk.
            wipe_weight: [0, 0, 1][rng.below(3) as usize],
        }
    }
}

fn random_net(rng: &mut Rng, loss: u32, dup: u32, max_delay: u64) -> NetFaults {
    let min_delay_us = rng.range(10, 200.min(max_delay));
    NetFaults {
        loss_ppm: rng.below(u64::from(loss) + 1) as u32,
        dup_ppm: rng.below(u64::from(dup) + 1) as u32,
        min_delay_us,
        max_delay_us: rng.range(min_delay_us, max_delay),
    }
}

/// The network after GST: no loss, no duplication, small delays (still reordering).
pub const HEALED_NET: NetFaults = NetFaults { loss_ppm: 0, dup_ppm: 0, min_delay_us: 50, max_delay_us: 2_000 };

/// A seeded fault schedule for one run.
#[derive(Clone, Debug)]
pub struct FaultSchedule {
    /// Fault events by step, in step order.
    pub events: Vec<(u64, FaultEvent)>,
    /// The step at which faults stop (GST).
    pub gst_step: u64,
    /// The profile it was drawn from.
    pub profile: FaultProfile,
}

impl FaultSchedule {
    /// Draws a schedule over `hosts` hosts for a fault phase of `steps` steps.
    pub fn generate(rng: &mut Rng, hosts: usize, crash_groups: &[CrashGroup], steps: u64) -> FaultSchedule {
        let profile = FaultProfile::random(rng);
        FaultSchedule::generate_from(rng, profile, hosts, crash_groups, steps)
    }

    /// Draws a schedule from a given profile.
    pub fn generate_from(
        rng: &mut Rng,
        profile: FaultProfile,
        hosts: usize,
        crash_groups: &[CrashGroup],
        steps: u64,
    ) -> FaultSchedule {
        let mut events = Vec::new();
        let mut crashed = vec![0usize; crash_groups.len()];
        let mut down = vec![false; hosts];
        if profile.mean_gap_steps > 0 {
            let mut step = rng.below(profile.mean_gap_steps * 2);
            while step < steps {
                // Restarts are as likely as crashes (only crashed, restartable hosts restart).
                let whole = u32::from(profile.crash_weight > 0 && crash_groups.iter().any(|g| g.whole));
                let pauses = u32::from(profile.max_pause_us > 0);
                let weights = [
                    4u32,
                    3,
                    profile.crash_weight,
                    u32::from(profile.max_jump_us > 0),
                    3,
                    profile.crash_weight,
                    whole,
                    pauses,
                    profile.wipe_weight.min(profile.crash_weight),
                ];
                let total: u32 = weights.iter().sum();
                let mut pick = rng.below(u64::from(total)) as u32;
                let mut kind = 0;
                while pick >= weights[kind] {
                    pick -= weights[kind];
                    kind += 1;
                }
                let event = match kind {
                    0 => {
                        let all = if hosts >= 64 { u64::MAX } else { (1u64 << hosts) - 1 };
                        let from = rng.next_u64() & all;
                        let to = match rng.below(2) {
                            0 => !from & all,
                            _ => rng.next_u64() & all,
                        };
                        Some(FaultEvent::Partition { from, to, symmetric: rng.below(2) == 0 })
                    }
                    1 => Some(FaultEvent::Heal),
                    2 => {
                        let g = rng.below(crash_groups.len() as u64) as usize;
                        let group = crash_groups.get(g);
                        match group {
                            Some(group) if crashed[g] < group.max && !group.hosts.is_empty() => {
                                let h = group.hosts[rng.below(group.hosts.len() as u64) as usize];
                                if down[h] {
                                    None
                                } else {
                                    down[h] = true;
                                    crashed[g] += 1;
                                    Some(FaultEvent::Crash(h))
                                }
                            }
                            _ => None,
                        }
                    }
                    3 => {
                        Some(FaultEvent::ClockJump(rng.below(hosts as u64) as usize, rng.range(1, profile.max_jump_us)))
                    }
                    5 => {
                        let g = rng.below(crash_groups.len() as u64) as usize;
                        let group = crash_groups.get(g).filter(|g| g.restartable);
                        let downed: Vec<usize> =
                            group.map_or(Vec::new(), |g| g.hosts.iter().copied().filter(|h| down[*h]).collect());
                        match downed.is_empty() {
                            true => None,
                            false => {
                                let h = downed[rng.below(downed.len() as u64) as usize];
                                down[h] = false;
                                crashed[g] -= 1;
                                Some(FaultEvent::Restart(h))
                            }
                        }
                    }
                    6 => {
                        // A power cut: only when the whole group is up, and every host comes
                        // back within 50 steps (well before GST).
                        let g = crash_groups.iter().position(|g| g.whole && g.restartable);
                        match g.map(|g| (g, &crash_groups[g])) {
                            Some((g, group)) if crashed[g] == 0 && step + 100 < steps => {
                                for (k, &h) in group.hosts.iter().enumerate() {
                                    events.push((step + 1 + k as u64 + rng.below(50), FaultEvent::Restart(h)));
                                }
                                Some(FaultEvent::CrashAll(g))
                            }
                            _ => None,
                        }
                    }
                    7 => Some(FaultEvent::Pause(rng.below(hosts as u64) as usize, rng.range(1, profile.max_pause_us))),
                    8 => {
                        // Only a crashed host of a restartable group; it restarts later.
                        let downed: Vec<usize> = crash_groups
                            .iter()
                            .filter(|g| g.restartable)
                            .flat_map(|g| g.hosts.iter().copied())
                            .filter(|h| down[*h])
                            .collect();
                        (!downed.is_empty()).then(|| FaultEvent::Wipe(downed[rng.below(downed.len() as u64) as usize]))
                    }
                    _ => Some(FaultEvent::Net(random_net(
                        rng,
                        profile.max_loss_ppm,
                        profile.max_dup_ppm,
                        profile.max_delay_us,
                    ))),
                };
                if let Some(e) = event {
                    events.push((step, e));
                }
                step += 1 + rng.below(profile.mean_gap_steps * 2);
            }
        }
        // A quarter of the seeds with a whole group cut its power while the new cluster is
        // being born (the first steps: requests and answers of the rejoin rule), when some
        // replicas may be born and others not yet. Drawn from a fork of the generator so
        // that the rest of every seed's schedule stays as it was.
        let mut early = Rng::new(rng.clone().next_u64() ^ 0x0B12_7C07);
        let whole = crash_groups.iter().position(|g| g.whole && g.restartable);
        let cut_soon = events.iter().any(|(at, e)| *at < 100 && matches!(e, FaultEvent::CrashAll(_)));
        if let Some(g) = whole.filter(|_| profile.crash_weight > 0 && early.below(4) == 0 && steps > 100 && !cut_soon) {
            let at = early.range(1, 40);
            events.push((at, FaultEvent::CrashAll(g)));
            for (k, &h) in crash_groups[g].hosts.iter().enumerate() {
                events.push((at + 1 + k as u64 + early.below(50), FaultEvent::Restart(h)));
            }
        }
        events.sort_by_key(|(step, _)| *step);
        // Between a power cut and its restarts, no other crash or restart of the group.
        let mut cut: Vec<Option<(usize, usize)>> = vec![None; crash_groups.len()];
        events.retain(|(_, e)| match *e {
            FaultEvent::CrashAll(g) => {
                cut[g] = Some((g, crash_groups[g].hosts.len()));
                true
            }
            FaultEvent::Restart(h) | FaultEvent::Crash(h) => {
                match crash_groups.iter().position(|gr| gr.hosts.contains(&h)).and_then(|g| cut[g].map(|c| (g, c))) {
                    Some((g, (_, left))) if matches!(e, FaultEvent::Restart(_)) => {
                        cut[g] = (left > 1).then_some((g, left - 1));
                        true
                    }
                    Some(_) => false,
                    None => true,
                }
            }
            _ => true,
        });
        FaultSchedule { events, gst_step: steps, profile }
    }

    /// Random per-host clocks: half the seeds get skew (up to 10 s) and drift (up to ±5 %).
    pub fn clocks(rng: &mut Rng, hosts: usize) -> Vec<HostClock> {
        let skewed = rng.below(2) == 0;
        (0..hosts)
            .map(|_| match skewed {
                false => HostClock::EXACT,
                true => {
                    HostClock { offset_us: rng.below(10_000_000), drift_ppm: rng.range(0, 100_000) as i64 - 50_000 }
                }
            })
            .collect()
    }
}

/// How many faults a run injected, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Partitions raised.
    pub partitions: u64,
    /// Heals (before GST).
    pub heals: u64,
    /// Hosts crashed.
    pub crashes: u64,
    /// Crashed hosts restarted from durable state.
    pub restarts: u64,
    /// Whole groups crashed at once.
    pub power_cuts: u64,
    /// Snapshots found damaged at a restart (and set aside).
    pub corrupt_snapshots: u64,
    /// Syncs that completed later than the step that asked (marked datagrams held meanwhile).
    pub deferred_syncs: u64,
    /// Datagrams held for a sync that a crash cut short (never sent).
    pub held_lost: u64,
    /// Clock jumps.
    pub clock_jumps: u64,
    /// Hosts frozen for a while.
    pub pauses: u64,
    /// Changes of network rates.
    pub net_changes: u64,
    /// Forged or planted messages (planted-bug runs only).
    pub planted: u64,
    /// Disks of crashed hosts replaced (their restart is without state).
    pub wipes: u64,
    /// Replicas restarted without state that rejoined (took part again).
    pub rejoins: u64,
}

impl FaultCounts {
    /// Counts one event.
    pub fn count(&mut self, e: &FaultEvent) {
        match e {
            FaultEvent::Partition { .. } => self.partitions += 1,
            FaultEvent::Heal => self.heals += 1,
            FaultEvent::Crash(_) => self.crashes += 1,
            FaultEvent::Restart(_) => self.restarts += 1,
            FaultEvent::CrashAll(_) => self.power_cuts += 1,
            FaultEvent::ClockJump(..) => self.clock_jumps += 1,
            FaultEvent::Pause(..) => self.pauses += 1,
            FaultEvent::Net(_) => self.net_changes += 1,
            // Counted where applied: the RSL simulator refuses some (see its `wipe`).
            FaultEvent::Wipe(_) => {}
        }
    }

    /// Adds another run's counts.
    pub fn add(&mut self, o: &FaultCounts) {
        self.partitions += o.partitions;
        self.heals += o.heals;
        self.crashes += o.crashes;
        self.restarts += o.restarts;
        self.power_cuts += o.power_cuts;
        self.corrupt_snapshots += o.corrupt_snapshots;
        self.deferred_syncs += o.deferred_syncs;
        self.held_lost += o.held_lost;
        self.clock_jumps += o.clock_jumps;
        self.pauses += o.pauses;
        self.net_changes += o.net_changes;
        self.planted += o.planted;
        self.wipes += o.wipes;
        self.rejoins += o.rejoins;
    }
}
