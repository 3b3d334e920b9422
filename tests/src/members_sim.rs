//! A seeded in-process RSL cluster whose membership changes (`fleet_engine::rsl::membership`):
//! in-memory replicas, clients that name their cluster and follow it, an operator that grows,
//! shrinks and replaces replicas, new machines started for the epoch a change creates, and
//! a network that loses, duplicates and reorders datagrams, with replicas that crash and
//! restart: without state (in-memory seeds), or from their disks, power cuts included
//! (durable seeds, `members_sim/durable.rs`). Judged by agreement on every executed operation, by every
//! acknowledged write reading back, and by changes and writes completing once faults stop.
//!
//! The main simulator ([`crate::rsl_sim`]) runs a fixed membership with more fault kinds
//! (partitions, clock faults, damaged snapshots, deferred syncs); this one is its
//! membership counterpart.

use std::collections::{BTreeMap, BinaryHeap};

use fleet_engine::rsl::apps::kv::{KvOp, KvReply};
use fleet_engine::rsl::membership::{self, Outcome};
use fleet_engine::rsl::{ClientError, RslConfig};
use fleet_engine::wire::Bytes;
use fleet_engine::{Endpoint, Instant, Outbox, OutboxBuf};

use crate::disk::SimDisk;
use crate::rng::Rng;
use crate::rsl_sim::{SimApp, SimClient, SimReplica};

mod durable;

type Out = OutboxBuf<512, { 512 * 1024 }>;

const MS: u64 = 1_000;

/// Replica `i`'s endpoint (any `i`: new machines get new ones).
pub fn replica_ep(i: u8) -> Endpoint {
    Endpoint::v4([10, 0, 0, i], 7000)
}

/// Client `i`'s endpoint.
pub fn client_ep(i: u8) -> Endpoint {
    Endpoint::v4([10, 0, 1, i], 9000)
}

/// The configuration of epoch `epoch` with replicas `ids`.
pub fn config_of(ids: &[u8], epoch: u64) -> RslConfig<7> {
    let eps: Vec<Endpoint> = ids.iter().map(|&i| replica_ep(i)).collect();
    let mut c = RslConfig::<7>::new(&eps).expect("at most 7 replicas");
    c.epoch = epoch;
    c
}

/// What the network does to datagrams.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Chance a datagram is lost, per million.
    pub loss_ppm: u32,
    /// Chance a datagram is delivered twice, per million.
    pub dup_ppm: u32,
    /// Most extra delay, in milliseconds (reordering).
    pub max_delay_ms: u64,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    /// Delivery time, reversed for the max-heap; then the send order.
    at: core::cmp::Reverse<(u64, u64)>,
    from: Endpoint,
    to: Endpoint,
    bytes: Vec<u8>,
}

/// The cluster: replicas and clients by endpoint, a network, virtual time in milliseconds.
pub struct MembersSim {
    /// Virtual time, microseconds.
    pub now_us: u64,
    /// Every replica process, by endpoint (a retired one stays, answering).
    pub replicas: BTreeMap<Endpoint, SimReplica>,
    /// Clients by endpoint.
    pub clients: BTreeMap<Endpoint, SimClient>,
    /// Hosts that are down: they neither receive nor step.
    pub down: Vec<Endpoint>,
    /// A replica paused with its state (a stalled VM, a long partition): it neither
    /// receives nor steps, takes no crash, and the operator changes the cluster without it.
    pub asleep: Option<Endpoint>,
    /// Replies each client received: (seqno, bytes).
    pub replies: BTreeMap<Endpoint, Vec<(u64, Vec<u8>)>>,
    /// The network's faults.
    pub faults: Faults,
    /// The seeded randomness.
    pub rng: Rng,
    /// Agreement: the digest of the first replica seen at each executed count.
    digests: BTreeMap<u64, (Endpoint, u64)>,
    /// Violations found.
    pub violations: Vec<String>,
    queue: BinaryHeap<InFlight>,
    sent: u64,
    /// Datagrams lost and duplicated by the network.
    pub lost: u64,
    /// Datagrams delivered twice.
    pub duplicated: u64,
    /// One outbox for every step (half a megabyte: not rebuilt each millisecond).
    store: Option<Box<Out>>,
    /// Durable replicas' disks, by endpoint (none: every replica is in memory).
    pub disks: BTreeMap<Endpoint, SimDisk>,
    /// The configuration file's epoch 0: what a file replica restarts from.
    file_config: RslConfig<7>,
    /// Planted: the durable binding drops epoch records at a restart.
    pub forget_epoch: bool,
    /// Records the planted binding dropped.
    pub planted: u64,
    /// Restarts from a disk.
    pub restarts_from_disk: u64,
}

impl MembersSim {
    /// Replicas `1..=n` of epoch 0 and `clients` clients that name its cluster.
    pub fn new(n: u8, clients: u8, seed: u64) -> Self {
        let ids: Vec<u8> = (1..=n).collect();
        let config = config_of(&ids, 0);
        let mut sim = MembersSim {
            now_us: 0,
            replicas: BTreeMap::new(),
            clients: BTreeMap::new(),
            down: Vec::new(),
            asleep: None,
            replies: BTreeMap::new(),
            faults: Faults::default(),
            rng: Rng::new(seed),
            digests: BTreeMap::new(),
            violations: Vec::new(),
            queue: BinaryHeap::new(),
            sent: 0,
            lost: 0,
            duplicated: 0,
            store: Some(Box::new(Out::new())),
            disks: BTreeMap::new(),
            file_config: config.clone(),
            forget_epoch: false,
            planted: 0,
            restarts_from_disk: 0,
        };
        for (i, e) in config.replicas.iter().enumerate() {
            let r = SimReplica::new(config.clone(), i, SimApp::new(), Instant::ZERO).expect("valid config");
            sim.replicas.insert(*e, r);
        }
        for i in 1..=clients {
            let mut client = SimClient::new(&config.replicas, 1, 50, 1472).expect("valid client");
            client.set_cluster(config.identity());
            sim.clients.insert(client_ep(i), client);
        }
        sim
    }

    /// Virtual time now.
    pub fn now(&self) -> Instant {
        Instant::from_micros(self.now_us)
    }

    /// The replica at `ep(i)`.
    pub fn replica(&self, i: u8) -> &SimReplica {
        &self.replicas[&replica_ep(i)]
    }

    /// Starts (or restarts, in memory) the process at `ep(i)` for `config` without state:
    /// it rejoins. `nonce` names the incarnation.
    pub fn start_without_state(&mut self, i: u8, config: RslConfig<7>, nonce: u64) {
        let me = config.index_of(replica_ep(i)).expect("a member of the epoch it starts for");
        let r = SimReplica::new_rejoining(config, me, SimApp::new(), self.now(), nonce).expect("valid config");
        self.replicas.insert(replica_ep(i), r);
        self.down.retain(|e| *e != replica_ep(i));
    }

    /// Starts the process at `ep(i)` as a learner of `config` (not one of its replicas):
    /// it follows the log and becomes a member when a change adds it. `nonce` names the
    /// incarnation it rejoins as then.
    pub fn start_learner(&mut self, i: u8, config: RslConfig<7>, nonce: u64) {
        let r = SimReplica::new_learner(config, replica_ep(i), SimApp::new(), self.now(), nonce, false)
            .expect("valid config");
        self.replicas.insert(replica_ep(i), r);
        self.down.retain(|e| *e != replica_ep(i));
    }

    /// Queues what `from` sent, through the network's faults.
    pub fn collect(&mut self, from: Endpoint, out: &Outbox<'_>) {
        for (to, bytes) in out.iter() {
            if self.rng.chance(self.faults.loss_ppm) {
                self.lost += 1;
                continue;
            }
            let copies = if self.rng.chance(self.faults.dup_ppm) { 2 } else { 1 };
            self.duplicated += copies - 1;
            for _ in 0..copies {
                let delay_ms = match self.faults.max_delay_ms {
                    0 => 0,
                    max => self.rng.below(max + 1),
                };
                self.sent += 1;
                let at = core::cmp::Reverse((self.now_us + delay_ms * MS, self.sent));
                self.queue.push(InFlight { at, from, to, bytes: bytes.to_vec() });
            }
        }
    }

    /// Delivers what is due (bounded), then advances one millisecond and fires every due
    /// timer; checks agreement after every replica step.
    pub fn step(&mut self) {
        let now = self.now();
        let mut store = self.store.take().unwrap_or_else(|| Box::new(Out::new()));
        for _ in 0..100_000 {
            if self.queue.peek().is_none_or(|d| d.at.0 .0 > self.now_us) {
                break;
            }
            let Some(InFlight { from, to, bytes, .. }) = self.queue.pop() else { break };
            if self.down.contains(&to) || self.asleep == Some(to) {
                continue;
            }
            let mut out = store.outbox();
            if let Some(r) = self.replicas.get_mut(&to) {
                let _ = r.handle(now, from, &bytes, &mut out);
                self.check_agreement(to);
                self.persist(to, &out);
            } else if let Some(c) = self.clients.get_mut(&to) {
                if let Some(done) = c.handle(now, from, &bytes) {
                    self.replies.entry(to).or_default().push((done.seqno, done.reply.to_vec()));
                }
            }
            self.collect(to, &out);
        }
        self.now_us += MS;
        let now = self.now();
        let eps: Vec<Endpoint> =
            self.replicas.keys().copied().filter(|e| !self.down.contains(e) && self.asleep != Some(*e)).collect();
        for e in eps {
            let mut out = store.outbox();
            let Some(r) = self.replicas.get_mut(&e) else { continue };
            if r.next_deadline() <= now {
                let _ = r.tick(now, &mut out);
                self.check_agreement(e);
                self.persist(e, &out);
            }
            self.collect(e, &out);
        }
        let cls: Vec<Endpoint> = self.clients.keys().copied().collect();
        for e in cls {
            let mut out = store.outbox();
            let Some(c) = self.clients.get_mut(&e) else { continue };
            if c.next_deadline() <= now {
                c.tick(now, &mut out);
            }
            self.collect(e, &out);
        }
        self.store = Some(store);
    }

    /// Every replica that executed `k` operations holds the same digest chain and the same
    /// application state there; and its own invariants hold.
    fn check_agreement(&mut self, at: Endpoint) {
        let r = &self.replicas[&at];
        if let Err(e) = r.check_invariants() {
            self.violations.push(format!("{at:?}: {e}"));
        }
        let ex = r.executor();
        match self.digests.get(&ex.ops_complete) {
            None => {
                self.digests.insert(ex.ops_complete, (at, ex.executed_digest));
            }
            Some((first, digest)) if *digest != ex.executed_digest => self
                .violations
                .push(format!("{at:?} and {first:?} executed different operations up to {}", ex.ops_complete)),
            Some(_) => {}
        }
    }

    /// Steps until `done` (at most `ms` milliseconds); whether it became true.
    pub fn run_until(&mut self, ms: u64, mut done: impl FnMut(&MembersSim) -> bool) -> bool {
        for _ in 0..ms {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }

    /// Client `i` sends `op` and waits for its reply (at most `ms`).
    pub fn call(&mut self, i: u8, op: KvOp<'_>, ms: u64) -> Option<Vec<u8>> {
        let mut buf = [0u8; 256];
        let n = op.encode(&mut buf).expect("a small operation");
        self.submit(i, |c, now, out| c.submit(now, &buf[..n], out), ms)
    }

    /// Client `i` asks for a change to `members` ending `epoch`, and waits for the outcome.
    pub fn change(&mut self, i: u8, epoch: u64, members: &[u8], ms: u64) -> Option<Outcome> {
        let eps: Vec<Endpoint> = members.iter().map(|&m| replica_ep(m)).collect();
        let mut buf = [0u8; 512];
        let change = membership::encode_change(epoch, &eps, &mut buf).expect("a small change").to_vec();
        let reply = self.submit(i, |c, now, out| c.submit_change(now, &change, out), ms)?;
        postcard::from_bytes(&reply).ok()
    }

    fn submit(
        &mut self,
        i: u8,
        send: impl FnOnce(&mut SimClient, Instant, &mut Outbox<'_>) -> Result<u64, ClientError>,
        ms: u64,
    ) -> Option<Vec<u8>> {
        let mut store = self.store.take().unwrap_or_else(|| Box::new(Out::new()));
        let now = self.now();
        let seqno = {
            let mut out = store.outbox();
            let client = self.clients.get_mut(&client_ep(i)).expect("a client");
            let seqno = send(client, now, &mut out).expect("one request at a time");
            self.collect(client_ep(i), &out);
            seqno
        };
        self.store = Some(store);
        let got = |s: &MembersSim| s.replies.get(&client_ep(i)).is_some_and(|r| r.iter().any(|(q, _)| *q == seqno));
        if !self.run_until(ms, got) {
            if let Some(c) = self.clients.get_mut(&client_ep(i)) {
                c.cancel();
            }
            return None;
        }
        self.replies[&client_ep(i)].iter().find(|(q, _)| *q == seqno).map(|(_, r)| r.clone())
    }

    /// Writes `value` at `key` through client `i`; true once acknowledged.
    pub fn put(&mut self, i: u8, key: &[u8], value: &[u8], ms: u64) -> bool {
        let reply = self.call(i, KvOp::Put(Bytes(key), Bytes(value)), ms);
        reply.is_some_and(|r| KvReply::decode(&r) == Some(KvReply::Done))
    }

    /// Reads `key` through client `i`: `Some(value or None)` once answered.
    pub fn get(&mut self, i: u8, key: &[u8], ms: u64) -> Option<Option<Vec<u8>>> {
        let reply = self.call(i, KvOp::Get(Bytes(key)), ms)?;
        match KvReply::decode(&reply)? {
            KvReply::Value(v) => Some(v.map(|b| b.0.to_vec())),
            _ => None,
        }
    }

    /// One line per replica, for failure reports.
    pub fn states(&self) -> Vec<String> {
        self.replicas
            .iter()
            .map(|(e, r)| {
                let s = r.status();
                format!(
                    "{:?}: epoch {} start {} view {:?} phase {:?} ops {} rejoin {:?} retired {}",
                    e.ip,
                    s.epoch,
                    r.epoch_start(),
                    (s.view.seqno, s.view.proposer),
                    s.phase,
                    s.ops_complete,
                    r.rejoining().map(|j| j.stage),
                    s.retired
                )
            })
            .collect()
    }

    /// Every replica of epoch `epoch` (`members`) is up, in that epoch, and votes (none is
    /// still rejoining or behind in an earlier epoch); but the one asleep, if any.
    pub fn settled(&self, epoch: u64, members: &[u8]) -> bool {
        self.down.is_empty()
            && members.iter().filter(|&&m| self.asleep != Some(replica_ep(m))).all(|&m| {
                let r = &self.replicas[&replica_ep(m)];
                r.config().epoch == epoch && r.rejoining().is_none() && r.retired().is_none()
            })
    }

    /// Every live replica that is not retired has executed at least `ops` in epoch `epoch`.
    pub fn epoch_caught_up(&self, epoch: u64, ops: u64) -> bool {
        self.replicas
            .iter()
            .filter(|(e, r)| !self.down.contains(e) && r.retired().is_none())
            .all(|(_, r)| r.config().epoch == epoch && r.executor().ops_complete >= ops)
    }

    /// Every replica of `members` is up and has executed at least `ops` in epoch `epoch`
    /// (a removed replica that missed the change may stay behind: it can decide nothing).
    pub fn members_caught_up(&self, epoch: u64, members: &[u8], ops: u64) -> bool {
        members.iter().all(|&m| {
            let r = &self.replicas[&replica_ep(m)];
            !self.down.contains(&replica_ep(m)) && r.config().epoch == epoch && r.executor().ops_complete >= ops
        })
    }
}

/// What one seeded run did, for reports.
#[derive(Clone, Debug, Default)]
pub struct SeedReport {
    /// Membership changes that started an epoch.
    pub epochs: u64,
    /// Writes acknowledged.
    pub acked: u64,
    /// Replicas crashed and restarted without state.
    pub restarts: u64,
    /// Datagrams sent, lost and duplicated.
    pub datagrams: (u64, u64, u64),
    /// Simulated time, microseconds.
    pub sim_us: u64,
    /// The client named no cluster (as io-std's clients): it learns new replicas only when
    /// redirected or, its requests unanswered, by asking.
    pub plain_client: bool,
    /// Every replica was durable: crashes restarted from disk, and power cuts happened.
    pub durable: bool,
    /// Restarts from a disk, and power cuts (durable seeds).
    pub restarts_from_disk: u64,
    /// Power cuts (durable seeds).
    pub power_cuts: u64,
    /// Records a planted bug dropped.
    pub planted: u64,
    /// Changes whose new replicas were learners first.
    pub learner_changes: u64,
    /// A replica slept through the last two changes, the replicas removed meanwhile were
    /// shut down, and it woke this many epochs behind (0: no sleeper in this seed).
    pub slept_epochs: u64,
}

/// A bug planted in a membership seed; each must be caught.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembersPlant {
    /// No bug.
    None,
    /// The binding starts each epoch's replicas as a new cluster from the new membership,
    /// without the state at the stop-sign (the next configuration taking effect without
    /// the old one's state, as an operator restarting every server with a new config file
    /// would). The read-back must catch it.
    FreshEpoch,
    /// Durable seeds: the binding drops the epoch records when it restarts a replica (one
    /// written before membership changes existed, keeping the record kinds it knew): a
    /// replica comes back in an epoch it left.
    ForgetEpoch,
}

/// One seeded run: a 3-replica cluster under loss, duplication, reordering and crashes of
/// one replica at a time, through three changes (grow 3 → 5, replace one, shrink 5 → 3 or
/// 4 → 3) with writes before, between and after; then the faults stop, and every
/// acknowledged write must read back, every change must complete, and the replicas must
/// agree. Odd seeds run durable replicas (new machines too): a crashed replica restarts
/// from its disk (unsynced records lost), some rounds cut the power to every replica, and
/// every seed ends with one power cut after its last change. Even seeds run in-memory
/// replicas, restarted without state. A quarter of the seeds of either kind (`seed / 2 % 4
/// == 1`) shrink 5 → 4 → 3 after growing, while replica 1 sleeps through both shrinks with
/// its state; the removed replicas are then shut down (durable: every log is compacted and
/// the power cut) and replica 1 wakes two epochs behind, to be told where the cluster went
/// by the replicas of its epoch that moved on. Returns what happened, or the violations.
pub fn run_seed(seed: u64) -> Result<SeedReport, Vec<String>> {
    run_seed_with(seed, MembersPlant::None)
}

/// [`run_seed`] with a planted bug ([`MembersPlant`]); `ForgetEpoch` makes every seed
/// durable.
pub fn run_seed_with(seed: u64, plant: MembersPlant) -> Result<SeedReport, Vec<String>> {
    let fresh_epoch = plant == MembersPlant::FreshEpoch;
    let durable = (seed % 2 == 1 && !fresh_epoch) || plant == MembersPlant::ForgetEpoch;
    let mut sim = MembersSim::new(3, 1, seed);
    let mut report = SeedReport { durable, ..SeedReport::default() };
    sim.forget_epoch = plant == MembersPlant::ForgetEpoch;
    let mut nonce = 1_000u64;
    if durable {
        for i in 1..=3 {
            nonce += 1;
            sim.start_durable(i, config_of(&[1, 2, 3], 0), nonce);
        }
    }
    sim.faults = Faults {
        loss_ppm: sim.rng.range(0, 100_000) as u32,
        dup_ppm: sim.rng.range(0, 50_000) as u32,
        max_delay_ms: sim.rng.range(0, 5),
    };
    // Half the seeds: a client that names no cluster (replicas of any epoch serve it).
    report.plain_client = sim.rng.chance(500_000);
    if report.plain_client {
        let client = SimClient::new(&config_of(&[1, 2, 3], 0).replicas, 1, 50, 1472).expect("valid client");
        sim.clients.insert(client_ep(1), client);
    }
    let mut acked: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut members: Vec<u8> = vec![1, 2, 3];
    let sleeper = (seed / 2) % 4 == 1;
    let mut next_id = 4u8;
    let mut epoch = 0u64;
    let mut key = 0u32;
    for round in 0..3 {
        // Writes, with a replica crashing and coming back without state meanwhile.
        for _ in 0..sim.rng.range(3, 8) {
            key += 1;
            let (k, v) = (key.to_le_bytes().to_vec(), (key * 7).to_le_bytes().to_vec());
            if sim.put(1, &k, &v, 3_000) {
                acked.push((k, v));
                report.acked += 1;
            }
            if sim.rng.chance(150_000) && sim.down.is_empty() && sim.asleep.is_none() && sim.settled(epoch, &members) {
                let victim = members[sim.rng.below(members.len() as u64) as usize];
                let cut = durable && sim.rng.chance(300_000);
                match (durable, cut) {
                    (true, true) => sim.power_cut(),
                    (true, false) => sim.crash_durable(victim),
                    (false, _) => sim.down.push(replica_ep(victim)),
                }
                let down_ms = sim.rng.range(50, 1_500);
                sim.run_until(down_ms, |_| false);
                nonce += 1;
                if durable {
                    report.power_cuts += u64::from(cut);
                    restart_everything_down(&mut sim, nonce);
                } else if sim.replica(victim).retired().is_none() {
                    let config = sim.replica(victim).config().clone();
                    sim.start_without_state(victim, config, nonce);
                    report.restarts += 1;
                }
                sim.down.clear();
            }
        }
        // The operator's discipline (what `fleet rsl member` waits for): change only a
        // cluster whose replicas all vote, so that replicas still joining never make up
        // a quorum that could have lost state (see `crate::rsl::rejoin`).
        // Clients keep the cluster busy meanwhile (a stalled operation is what makes
        // replicas suspect a leader that left).
        let settle_by = sim.now_us + 60_000 * MS;
        while !sim.settled(epoch, &members) && sim.now_us < settle_by {
            let _ = sim.get(1, b"settle", 2_000);
            sim.run_until(500, |s| s.settled(epoch, &members));
        }
        if !sim.settled(epoch, &members) {
            return Err(vec![format!(
                "seed {seed}: epoch {epoch} never settles before change {round}: {:#?}",
                sim.states()
            )]);
        }
        // The change: grow, replace one, or shrink; new machines start first. A sleeper
        // seed shrinks twice, without replica 1 (no new machine waits for its answer).
        if sleeper && round == 1 {
            sim.asleep = Some(replica_ep(members[0]));
        }
        let next: Vec<u8> = match (round, members.len()) {
            (0, _) => members.iter().copied().chain([next_id, next_id + 1]).collect(),
            (1, n) if sleeper => members[..n - 1].to_vec(),
            (1, n) => {
                let out = sim.rng.below(n as u64) as usize;
                let mut m = members.clone();
                m[out] = next_id + 2;
                m
            }
            (_, _) => members[..3].to_vec(),
        };
        // Most changes add learners that followed the log first (what `fleet rsl member`
        // does); the others add machines started for the next epoch without state.
        let joining: Vec<u8> = next.iter().copied().filter(|m| !members.contains(m)).collect();
        let learners = sim.rng.chance(750_000);
        report.learner_changes += u64::from(learners && !joining.is_empty());
        for &j in &joining {
            nonce += 1;
            match (durable, learners) {
                (true, true) => sim.start_durable_learner(j, config_of(&members, epoch), nonce),
                (false, true) => sim.start_learner(j, config_of(&members, epoch), nonce),
                (true, false) => sim.start_durable(j, config_of(&next, epoch + 1), nonce),
                (false, false) => sim.start_without_state(j, config_of(&next, epoch + 1), nonce),
            }
        }
        if learners && !joining.is_empty() {
            // Until they caught up with a member (the network still faulty): bounded.
            let caught_up = |s: &MembersSim| {
                let ops = members.iter().map(|&m| s.replica(m).executor().ops_complete).max().unwrap_or(0);
                joining.iter().all(|&j| s.replica(j).executor().ops_complete >= ops)
            };
            let _ = sim.get(1, b"learn", 2_000);
            sim.run_until(5_000, caught_up);
        }
        let started = loop {
            match sim.change(1, epoch, &next, 5_000) {
                Some(Outcome::Started { epoch: e, .. }) => break Some(e),
                // A retry of a change that executed: its epoch has ended, as asked.
                Some(Outcome::Refused(membership::Refusal::WrongEpoch { current })) if current == epoch + 1 => {
                    break Some(current)
                }
                Some(other) => return Err(vec![format!("seed {seed}: change {round} answered {other:?}")]),
                None if sim.now_us > 600_000 * MS => break None,
                None => continue,
            }
        };
        let Some(e) = started else {
            let states = sim.states();
            let client = sim.clients[&client_ep(1)].membership();
            let mut found = vec![format!(
                "seed {seed}: change {round} to {next:?} never completed; client {client:?}; {states:#?}"
            )];
            found.extend(sim.violations.into_iter().map(|v| format!("seed {seed}: {v}")));
            return Err(found);
        };
        epoch = e;
        report.epochs += 1;
        members = next;
        next_id += 3;
        if sleeper && round == 2 {
            // The operator shuts the removed replicas down; the sleeper wakes.
            let retired: Vec<Endpoint> =
                sim.replicas.iter().filter(|(_, r)| r.retired().is_some()).map(|(e, _)| *e).collect();
            for e in retired {
                sim.replicas.remove(&e);
                sim.disks.remove(&e);
            }
            if let Some(e) = sim.asleep.take() {
                report.slept_epochs = epoch.saturating_sub(sim.replicas[&e].config().epoch);
                if durable {
                    // Durable: every log is compacted and the power goes out (the sleeper's
                    // too): the kept replicas know the epochs before theirs only from
                    // their images now.
                    sim.compact_all();
                    sim.power_cut();
                    report.power_cuts += 1;
                    let down_ms = sim.rng.range(50, 1_000);
                    sim.run_until(down_ms, |_| false);
                    nonce += 1;
                    restart_everything_down(&mut sim, nonce);
                }
                // Before anything else happens to the cluster (a power cut forgets the
                // epochs a compacted log no longer names): bounded, checked at the end.
                let _ = sim.run_until(10_000, |s| s.replicas[&e].config().epoch == epoch);
            }
        }
        if fresh_epoch {
            let config = config_of(&members, epoch);
            for (i, &m) in members.iter().enumerate() {
                let fresh = SimReplica::new(config.clone(), i, SimApp::new(), sim.now()).expect("valid config");
                sim.replicas.insert(replica_ep(m), fresh);
            }
        }
    }
    // Durable: one power cut after the last change, with everything acknowledged so far to
    // come back.
    if durable {
        let before_ms = sim.rng.range(0, 300);
        sim.run_until(before_ms, |_| false);
        sim.power_cut();
        let down_ms = sim.rng.range(50, 1_000);
        sim.run_until(down_ms, |_| false);
        nonce += 1;
        restart_everything_down(&mut sim, nonce);
        report.power_cuts += 1;
    }
    // Faults stop: the cluster must settle, and everything acknowledged must be there.
    sim.faults = Faults::default();
    sim.down.clear();
    if !sim.put(1, b"end", b"end", 20_000) {
        return Err(vec![format!("seed {seed}: no write completes after the faults stop (epoch {epoch})")]);
    }
    let ops = sim.replicas.values().map(|r| r.executor().ops_complete).max().unwrap_or(0);
    if !sim.run_until(20_000, |s| s.members_caught_up(epoch, &members, ops)) {
        let states = sim.states();
        return Err(vec![format!("seed {seed}: epoch {epoch} replicas do not all catch up to {ops}: {states:?}")]);
    }
    for (k, v) in &acked {
        match sim.get(1, k, 20_000) {
            Some(Some(got)) if got == *v => {}
            other => sim.violations.push(format!("seed {seed}: key {k:?} acknowledged as {v:?}, reads {other:?}")),
        }
    }
    report.datagrams = (sim.sent, sim.lost, sim.duplicated);
    report.sim_us = sim.now_us;
    report.restarts_from_disk = sim.restarts_from_disk;
    report.planted = sim.planted;
    match sim.violations.is_empty() {
        true => Ok(report),
        false => Err(sim.violations.into_iter().map(|v| format!("seed {seed}: {v}")).collect()),
    }
}

/// Restarts every crashed durable replica from its disk (each with its own nonce).
fn restart_everything_down(sim: &mut MembersSim, nonce: u64) {
    let down = std::mem::take(&mut sim.down);
    for (k, ep) in down.into_iter().enumerate() {
        if let Some(i) = (0..=u8::MAX).find(|&i| replica_ep(i) == ep) {
            sim.restart_from_disk(i, nonce.wrapping_mul(16).wrapping_add(k as u64));
        }
    }
}
