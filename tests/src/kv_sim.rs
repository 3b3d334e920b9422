//! A deterministic in-process IronKV cluster: real `KvHost`s and `KvClient`s over [`SimNet`],
//! with random Shard commands, loss, duplication, reordering and partitions.
//!
//! One seed drives everything. Each [`KvSim::step`] is one host step (one datagram
//! delivered, or one host's timers fired), in global time order. After every host step the
//! simulator checks that host's local invariants and the global **key-ownership invariant**:
//! every workload key is owned by exactly one host, or by exactly one in-flight Delegate
//! transfer (sent by its old owner, not yet completed by its recipient). At the end the
//! client history is checked for linearizability, key by key, against IronKV's map spec.

use fleet_engine::kv::{
    Event, HeaplessStore, KeyBound, KeyRange, KvClient, KvConfig, KvError, KvHost, Outcome, Request, Storage,
};
use fleet_engine::{Endpoint, Instant, OutboxBuf};
use fleet_proofs::linearizability::{check_partitioned, Operation};
use fleet_proofs::spec::kv::{KvOp, KvRet, KvSpec};
use fleet_proofs::Budget;

use crate::net::{NetFaults, SimNet};
use crate::rng::Rng;

mod crash;
mod ephemeral;
mod options;
mod wire;
use crash::Disk;
use ephemeral::Ephemeral;
pub use options::{sim_params, KvSimOptions, KvSimReport};

/// Longest value the simulated workload writes (and the cluster's `max_value_bytes`).
pub const SIM_MAX_VALUE: usize = 100;
/// The simulated datagram bound: small, so that Shards of a few pairs need several Delegates.
pub const SIM_DATAGRAM: usize = 300;
/// The keys the workload touches, spread so that ranges between them mean something.
pub const KEYS: [u64; 12] = [0, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10_000, u64::MAX];
/// A hot workload: few adjacent keys, so many clients write the same keys while their
/// range is sharded back and forth (the shape of the multi-process shard test).
pub const HOT_KEYS: [u64; 4] = [4000, 4001, 4002, 4003];
/// The heap-free store every simulated host uses by default.
pub type SimStore = HeaplessStore<64, SIM_MAX_VALUE>;
/// A simulated host over store `S`.
pub type SimHost<S> = KvHost<S, 4, 16, 16, 32, 512>;
/// A simulated client.
pub type SimClient = KvClient<4, 8, 512>;
type Outbox = OutboxBuf<256, { 64 * 1024 }>;
const MAX_STEPS_AT_ONE_INSTANT: u64 = 100_000;

struct ClientSlot {
    client: SimClient,
    ep: Endpoint,
    next_submit_us: u64,
    current: Option<usize>,
    writes: u64,
}

/// The cluster under simulation, over stores of type `S`.
pub struct KvSim<S: Storage = SimStore> {
    /// Global time, microseconds.
    pub now: u64,
    /// The seeded randomness.
    pub rng: Rng,
    /// The network.
    pub net: SimNet,
    /// The network adversary, if the run has one.
    pub adversary: Option<crate::adversary::Adversary>,
    /// Hosts, by index.
    pub hosts: Vec<Box<SimHost<S>>>,
    /// Host endpoints by index.
    pub host_eps: Vec<Endpoint>,
    clients: Vec<ClientSlot>,
    admin: ClientSlot,
    /// Every workload operation, in invocation order (the linearizability history).
    pub history: Vec<Operation<KvOp, KvRet>>,
    /// Safety violations found so far.
    pub violations: Vec<String>,
    /// Host steps taken.
    pub steps: u64,
    steps_at_now: u64,
    /// Options the simulation was built with.
    pub options: KvSimOptions,
    next_shard_us: u64,
    next_partition_us: u64,
    next_restart_us: u64,
    heal_at_us: Option<u64>,
    /// Shard commands carried out.
    pub shards_ok: u64,
    /// Shard commands refused.
    pub shards_refused: u64,
    /// Client restarts (new incarnations on the same endpoint).
    pub restarts: u64,
    /// Stop issuing new work (drain mode).
    pub quiesce: bool,
    outbox: Box<Outbox>,
    ephemerals: Vec<Ephemeral>,
    gone: Vec<(Endpoint, u64)>,
    next_ephemeral_us: u64,
    /// Short-lived clients started.
    pub spawned: u64,
    /// Short-lived clients that vanished mid-request.
    pub vanished: u64,
    /// Operations that ended lost.
    pub lost_ops: u64,
    /// Each host's disk (durable hosts; see `crash.rs`).
    disks: Vec<Disk>,
    /// Per host: down until this instant (crashed).
    down_until: Vec<Option<u64>>,
    next_crash_us: u64,
    /// Makes an empty store for a host rebuilt from its disk.
    new_store: Box<dyn FnMut() -> S>,
    /// Host crashes (each followed by a restart from the host's disk).
    pub crashes: u64,
    /// Logged inputs lost at crashes (never synced).
    pub lost_inputs: u64,
    next_wipe_us: u64,
    /// Hosts restarted without their state (joining, then born or amnesiac).
    pub wipes: u64,
    /// Operations answered `KvError::Lost` (their key's owner restarted without state).
    pub lost_key_answers: u64,
}

impl KvSim<SimStore> {
    /// A cluster of heap-free stores.
    pub fn new(seed: u64, options: KvSimOptions) -> KvSim<SimStore> {
        KvSim::with_stores(seed, options, SimStore::new)
    }
}

impl<S: Storage> KvSim<S> {
    /// A fresh cluster whose hosts use stores made by `store`.
    pub fn with_stores(seed: u64, options: KvSimOptions, mut store: impl FnMut() -> S + 'static) -> KvSim<S> {
        let host_eps: Vec<Endpoint> = (0..options.hosts).map(|i| Endpoint::v4([10, 0, 0, i as u8 + 1], 7000)).collect();
        let mut config = KvConfig::<4>::new(&host_eps).expect("at most 4 hosts");
        config.params = options.params;
        let hosts: Vec<Box<SimHost<S>>> = (0..options.hosts)
            .map(|i| Box::new(SimHost::new(config.clone(), i, store()).expect("valid config")))
            .collect();
        let disks: Vec<Disk> = hosts.iter().map(|h| Disk::new(h)).collect();
        let mut rng = Rng::new(seed);
        let slot = |j: usize, rng: &mut Rng| {
            let ep = Endpoint::v4([10, 0, 1, j as u8 + 1], 9000);
            // Clients start at a seed-dependent seqno, as a restarted client would.
            let first = 1 + rng.below(1000);
            let client = SimClient::new(&host_eps, first, options.params).expect("valid client config");
            ClientSlot { client, ep, next_submit_us: 0, current: None, writes: 0 }
        };
        let clients = (0..options.clients).map(|j| slot(j, &mut rng)).collect();
        let admin = slot(200, &mut rng);
        let next_shard_us = if options.shard_every_us > 0 { rng.below(options.shard_every_us) } else { u64::MAX };
        let next_partition_us =
            if options.partition_every_us > 0 { rng.below(options.partition_every_us) } else { u64::MAX };
        let next_restart_us = if options.restart_every_us > 0 { rng.below(options.restart_every_us) } else { u64::MAX };
        let next_ephemeral_us =
            if options.ephemeral_every_us > 0 { rng.below(options.ephemeral_every_us) } else { u64::MAX };
        let next_crash_us = if options.crash_every_us > 0 { rng.below(options.crash_every_us) } else { u64::MAX };
        let next_wipe_us = if options.wipe_every_us > 0 { rng.below(options.wipe_every_us) } else { u64::MAX };
        let mut net = SimNet::new(options.faults);
        let adversary = crate::adversary::seal_and_attack(
            &mut net,
            seed,
            config.identity(),
            &host_eps,
            options.sealed,
            options.adversary_every_us,
        );
        KvSim {
            now: 0,
            rng,
            net,
            adversary,
            hosts,
            host_eps,
            clients,
            admin,
            history: Vec::new(),
            violations: Vec::new(),
            steps: 0,
            steps_at_now: 0,
            options,
            next_shard_us,
            next_partition_us,
            next_restart_us,
            heal_at_us: None,
            shards_ok: 0,
            shards_refused: 0,
            restarts: 0,
            quiesce: false,
            outbox: Box::new(Outbox::new()),
            ephemerals: Vec::new(),
            gone: Vec::new(),
            next_ephemeral_us,
            spawned: 0,
            vanished: 0,
            lost_ops: 0,
            down_until: vec![None; disks.len()],
            disks,
            next_crash_us,
            new_store: Box::new(store),
            crashes: 0,
            lost_inputs: 0,
            next_wipe_us,
            wipes: 0,
            lost_key_answers: 0,
        }
    }

    fn next_event(&self) -> Option<u64> {
        let mut t = self.net.next_delivery();
        let mut consider = |d: u64| t = Some(t.map_or(d, |x| x.min(d)));
        if let Some(a) = &self.adversary {
            consider(a.next_us);
        }
        for (i, h) in self.hosts.iter().enumerate() {
            match self.down_until[i] {
                Some(t) => consider(t),
                None => consider(h.next_deadline().as_micros()),
            }
        }
        for c in self.clients.iter().chain(std::iter::once(&self.admin)) {
            consider(c.client.next_deadline().as_micros());
        }
        if let Some(d) = self.ephemeral_deadline() {
            consider(d);
        }
        if !self.quiesce {
            consider(self.next_ephemeral_us);
            for c in &self.clients {
                if c.current.is_none() {
                    consider(c.next_submit_us);
                }
            }
            consider(self.next_shard_us);
            consider(self.next_partition_us);
            consider(self.next_restart_us);
            consider(self.next_crash_us);
            consider(self.next_wipe_us);
        }
        if let Some(h) = self.heal_at_us {
            consider(h);
        }
        t.filter(|&x| x != u64::MAX)
    }

    /// Runs one step; returns false when nothing is left to happen.
    pub fn step(&mut self) -> bool {
        let Some(t) = self.next_event() else { return false };
        if t > self.now {
            self.steps_at_now = 0;
        }
        self.steps_at_now += 1;
        if self.steps_at_now > MAX_STEPS_AT_ONE_INSTANT {
            self.violations.push(format!("livelock: {} steps at time {}", self.steps_at_now, self.now));
            return false;
        }
        self.now = self.now.max(t);
        self.steps += 1;
        let now = Instant::from_micros(self.now);
        if self.restart_due_hosts() {
            return true;
        }
        if let Some(d) = self.net.pop_due(self.now) {
            self.deliver_wire(now, &d);
            self.net.recycle(d.bytes);
            return true;
        }
        if let Some(a) = self.adversary.as_mut().filter(|a| a.next_us <= self.now) {
            a.act(self.now, &mut self.net);
            return true;
        }
        for i in 0..self.hosts.len() {
            if !self.is_down(i) && self.hosts[i].next_deadline() <= now {
                let mut outbox = std::mem::replace(&mut self.outbox, Box::new(Outbox::new()));
                let mut out = outbox.outbox();
                let step = self.hosts[i].tick(now, &mut out);
                self.persist(i, now, None, step, &out);
                self.net.send_all(self.now, self.host_eps[i], &out, &mut self.rng);
                self.outbox = outbox;
                self.after_host_step(i);
                return true;
            }
        }
        for j in 0..=self.clients.len() {
            let c = if j < self.clients.len() { &mut self.clients[j] } else { &mut self.admin };
            if c.client.next_deadline() <= now {
                let mut out = self.outbox.outbox();
                c.client.tick(now, &mut out);
                self.net.send_all(self.now, c.ep, &out, &mut self.rng);
                return true;
            }
        }
        if self.tick_ephemerals(now) {
            return true;
        }
        if let Some(h) = self.heal_at_us.filter(|h| *h <= self.now) {
            let _ = h;
            self.net.heal();
            self.heal_at_us = None;
            return true;
        }
        if self.quiesce {
            return true;
        }
        for j in 0..self.clients.len() {
            if self.clients[j].current.is_none() && self.clients[j].next_submit_us <= self.now {
                self.submit(j, now);
                return true;
            }
        }
        if self.next_shard_us <= self.now {
            self.next_shard_us = self.now + 1 + self.rng.below(2 * self.options.shard_every_us);
            self.admin_shard(now);
            return true;
        }
        if self.next_ephemeral_us <= self.now {
            self.next_ephemeral_us = self.now + 1 + self.rng.below(2 * self.options.ephemeral_every_us);
            self.spawn_ephemeral(now);
            return true;
        }
        if self.next_wipe_us <= self.now {
            self.next_wipe_us = self.now + 1 + self.rng.below(2 * self.options.wipe_every_us);
            self.wipe_host(now);
            return true;
        }
        if self.next_crash_us <= self.now {
            self.next_crash_us = self.now + 1 + self.rng.below(2 * self.options.crash_every_us);
            self.crash_host();
            return true;
        }
        if self.next_restart_us <= self.now {
            self.next_restart_us = self.now + 1 + self.rng.below(2 * self.options.restart_every_us);
            self.restart_client(now);
            return true;
        }
        if self.next_partition_us <= self.now {
            self.next_partition_us = self.now + 1 + self.rng.below(2 * self.options.partition_every_us);
            if self.heal_at_us.is_none() {
                self.partition();
            }
            return true;
        }
        true
    }

    /// Replaces a random client by a new incarnation on the same endpoint whose seqnos start
    /// above every seqno the old one used. The old one's outstanding operation keeps an
    /// unknown outcome (its requests may still be executed); its unacked requests die with it.
    fn restart_client(&mut self, now: Instant) {
        let _ = now;
        let j = self.rng.below(self.clients.len() as u64) as usize;
        let used = self.clients[j].client.reliable().peers().iter().map(|p| p.next_seqno()).max().unwrap_or(1);
        let first = used + self.rng.below(1000);
        let Ok(client) = SimClient::new(&self.host_eps, first, self.options.params) else { return };
        let slot = &mut self.clients[j];
        slot.client = client;
        slot.current = None;
        slot.next_submit_us = self.now + self.rng.below(2_000);
        self.restarts += 1;
    }

    fn partition(&mut self) {
        let victim = self.host_eps[self.rng.below(self.hosts.len() as u64) as usize];
        let everyone: Vec<Endpoint> = self
            .host_eps
            .iter()
            .copied()
            .chain(self.clients.iter().map(|c| c.ep))
            .chain(std::iter::once(self.admin.ep))
            .collect();
        self.net.isolate(victim, &everyone);
        self.heal_at_us = Some(self.now + self.rng.range(5_000, 100_000));
    }

    fn deliver(&mut self, now: Instant, from: Endpoint, to: Endpoint, bytes: &[u8]) {
        if let Some(i) = self.host_eps.iter().position(|e| *e == to) {
            if self.is_down(i) {
                return;
            }
            let mut outbox = std::mem::replace(&mut self.outbox, Box::new(Outbox::new()));
            let mut out = outbox.outbox();
            let step = self.hosts[i].handle(now, from, bytes, &mut out);
            self.persist(i, now, Some((from, bytes)), step, &out);
            self.net.send_all(self.now, to, &out, &mut self.rng);
            self.outbox = outbox;
            self.after_host_step(i);
            return;
        }
        if let Some(i) = self.ephemeral_at(to) {
            return self.deliver_ephemeral(now, i, from, bytes);
        }
        let admin = self.admin.ep == to;
        let Some(j) = self.clients.iter().position(|c| c.ep == to).or(admin.then_some(usize::MAX)) else { return };
        let mut out = self.outbox.outbox();
        let slot = if admin { &mut self.admin } else { &mut self.clients[j] };
        let event = slot.client.handle(now, from, bytes, &mut out);
        if let Some(Event::Lost { .. }) = event {
            // The host gave up on the client with the reply undelivered: the operation's
            // outcome is unknown (it stays pending in the history) and the client moves on.
            slot.current = None;
            slot.next_submit_us = self.now;
            self.lost_ops += 1;
        }
        let key_lost = matches!(&event, Some(Event::Completed(c)) if c.outcome == Outcome::Failed(KvError::Lost));
        let completed = match event {
            Some(Event::Completed(c)) => Some(match c.outcome {
                Outcome::Value(v) => Some(KvRet::Value(v.map(<[u8]>::to_vec))),
                Outcome::Written => Some(KvRet::Ok),
                Outcome::Sharded => None,
                Outcome::Failed(_) => None,
            })
            .map(|r| (r, matches!(c.outcome, Outcome::Sharded))),
            _ => None,
        };
        self.net.send_all(self.now, to, &out, &mut self.rng);
        let Some((ret, sharded)) = completed else { return };
        let think = self.rng.below(2_000);
        let slot = if admin { &mut self.admin } else { &mut self.clients[j] };
        slot.next_submit_us = self.now + think;
        let Some(h) = slot.current.take() else { return };
        if admin {
            match sharded {
                true => self.shards_ok += 1,
                false => self.shards_refused += 1,
            }
            return;
        }
        match ret {
            Some(ret) => self.history[h].complete = Some((self.now, ret)),
            // The key's owner restarted without its state: nothing was read or written. The
            // operation stays pending (the checker lets it take effect or not).
            None if key_lost && self.wipes > 0 => self.lost_key_answers += 1,
            None => {
                // A refused write took no effect: drop it from the history. (Nothing in this
                // workload should be refused; record it as a violation to notice.)
                self.violations.push(format!("operation {h} refused: {:?}", self.history[h].op));
                self.history[h].complete = Some((self.now, KvRet::Ok));
            }
        }
    }

    fn submit(&mut self, j: usize, now: Instant) {
        let keys = self.options.keys;
        let key = keys[self.rng.below(keys.len() as u64) as usize];
        let slot = &mut self.clients[j];
        slot.writes += 1;
        let len = self.rng.range(1, SIM_MAX_VALUE as u64) as usize;
        let mut value = format!("c{j}-w{}-", slot.writes).into_bytes();
        value.resize(len.max(value.len()).min(SIM_MAX_VALUE), b'.');
        let op = match self.rng.below(10) {
            0..=3 => KvOp::Get(key),
            4..=8 => KvOp::Set(key, value),
            _ => KvOp::Delete(key),
        };
        let request = match &op {
            KvOp::Get(k) => Request::Get(*k),
            KvOp::Set(k, v) => Request::Set(*k, v),
            KvOp::Delete(k) => Request::Delete(*k),
        };
        let mut out = self.outbox.outbox();
        let slot = &mut self.clients[j];
        match slot.client.submit(now, request, &mut out) {
            Ok(_) => {
                slot.current = Some(self.history.len());
                self.history.push(Operation { client: j as u64, op, invoke_us: self.now, complete: None });
            }
            Err(_) => slot.next_submit_us = self.now + 1_000,
        }
        self.net.send_all(self.now, self.clients[j].ep, &out, &mut self.rng);
    }

    /// Issues a random Shard: usually a range its owner really owns, sometimes not.
    fn admin_shard(&mut self, now: Instant) {
        if self.admin.current.is_some() || self.hosts.len() < 2 {
            return;
        }
        let n = self.hosts.len();
        let keys = self.options.keys;
        let i = self.rng.below(keys.len() as u64) as usize;
        let key = keys[i];
        let owner = match self.hosts.iter().position(|h| h.owns(key)) {
            Some(o) if !self.rng.chance(100_000) => o,
            _ => self.rng.below(n as u64) as usize,
        };
        let (run, _) = self.hosts[owner].map().run_of(key);
        let lo = if self.rng.chance(500_000) { KeyBound::Key(key) } else { run.lo };
        let j = i + 1 + self.rng.below(3) as usize;
        let hi = if j >= keys.len() { KeyBound::Inf } else { KeyBound::Key(keys[j]) };
        let range = KeyRange { lo, hi: hi.min(run.hi) };
        let to = (owner + 1 + self.rng.below(n as u64 - 1) as usize) % n;
        let mut out = self.outbox.outbox();
        let (dst, recipient) = (self.host_eps[owner], self.host_eps[to]);
        if self.admin.client.submit_to(now, dst, Request::Shard(range, recipient), &mut out).is_ok() {
            self.admin.current = Some(0);
        }
        self.net.send_all(self.now, self.admin.ep, &out, &mut self.rng);
    }

    fn after_host_step(&mut self, i: usize) {
        if let Err(e) = self.hosts[i].check_invariants() {
            self.violations.push(format!("invariant of host {i} at step {}: {e}", self.steps));
        }
        if let Err(e) = self.check_ownership() {
            self.violations.push(format!("ownership at step {}: {e}", self.steps));
        }
    }

    /// Every workload key (and the range bounds around it) is owned by exactly one host or
    /// exactly one in-flight transfer.
    pub fn check_ownership(&self) -> Result<(), String> {
        for &k in KEYS.iter().chain(HOT_KEYS.iter()).chain([1, 999, 1001, u64::MAX - 1].iter()) {
            let owners: Vec<usize> = (0..self.hosts.len()).filter(|&h| self.hosts[h].owns(k)).collect();
            let mut in_flight = 0;
            let mut moving = Vec::new();
            for (a, host) in self.hosts.iter().enumerate() {
                for o in host.outgoing() {
                    let b = usize::from(o.recipient);
                    // A transfer to a dead incarnation of its recipient can never be applied
                    // (the sender drops it when the new one asks): it holds nothing.
                    let alive = self.hosts[b].joining().is_none()
                        && self.hosts[a].reliable().peer(b).map(|p| p.send_base())
                            == self.hosts[b].reliable().fixed_base(a);
                    if alive && o.range.contains(k) && o.transfer > self.hosts[b].completed_from(a) {
                        in_flight += 1;
                        moving.push((a, b, o.transfer, self.hosts[b].completed_from(a)));
                    }
                }
            }
            // After a host restarted without its state, a key it held has no owner (lost);
            // a key never has two.
            let lost_allowed = self.wipes > 0 && owners.len() + in_flight == 0;
            if owners.len() + in_flight != 1 && !lost_allowed {
                return Err(format!(
                    "key {k}: owned by hosts {owners:?} and {in_flight} in-flight transfers \
                     (from, to, transfer, completed at the recipient): {moving:?}; {} restarts without state",
                    self.wipes
                ));
            }
        }
        Ok(())
    }

    /// Runs `steps` steps (or until nothing is left to happen).
    pub fn run_steps(&mut self, steps: u64) {
        for _ in 0..steps {
            if !self.step() {
                break;
            }
        }
    }

    /// Stops new work, heals the network, and runs until every client is idle and every
    /// transfer is acknowledged, or `max_us` pass; returns whether it got there.
    pub fn drain(&mut self, max_us: u64) -> bool {
        self.quiesce = true;
        self.net.heal();
        self.heal_at_us = None;
        self.net.faults = NetFaults::CALM;
        let end = self.now + max_us;
        while self.now <= end {
            if self.idle() {
                return true;
            }
            if !self.step() {
                break;
            }
        }
        self.idle()
    }

    /// No client operation outstanding and nothing unacked anywhere.
    pub fn idle(&self) -> bool {
        self.clients.iter().chain(std::iter::once(&self.admin)).all(|c| c.client.pending().is_none())
            && self.ephemerals_idle()
            && self.hosts.iter().all(|h| h.outgoing().is_empty() && h.reliable().pending() == 0)
    }

    /// Checks the history for linearizability against the map spec, one key at a time.
    pub fn check_linearizable(&mut self) {
        let budget = Budget::steps(50_000_000);
        match check_partitioned(&KvSpec::default(), &self.history, &budget) {
            Ok(outcome) => {
                for (k, v) in &outcome.violations {
                    self.violations.push(format!("key {k} not linearizable: {v}"));
                }
                for k in outcome.unknown.keys() {
                    self.violations.push(format!("key {k}: linearizability check ran out of budget"));
                }
            }
            Err(e) => self.violations.push(format!("invalid history: {e:?}")),
        }
    }

    /// Completed and pending workload operations.
    pub fn ops(&self) -> (usize, usize) {
        let done = self.history.iter().filter(|o| o.complete.is_some()).count();
        (done, self.history.len() - done)
    }

    /// The run's report (call after checking).
    pub fn report(&self, seed: u64) -> KvSimReport {
        let (ops_completed, ops_pending) = self.ops();
        KvSimReport {
            seed,
            steps: self.steps,
            sim_us: self.now,
            ops_completed,
            ops_pending,
            shards_ok: self.shards_ok,
            shards_refused: self.shards_refused,
            transfers_completed: self.hosts.iter().map(|h| h.counters().transfers_in).sum(),
            redirects: self.hosts.iter().map(|h| h.counters().redirects).sum(),
            restarts: self.restarts,
            ephemerals: self.spawned,
            vanished: self.vanished,
            evicted: self.hosts.iter().map(|h| h.counters().evicted).sum(),
            abandoned: self.hosts.iter().map(|h| h.counters().abandoned).sum(),
            closed_refused: self.hosts.iter().map(|h| h.counters().closed_refused).sum(),
            lost_ops: self.lost_ops,
            crashes: self.crashes,
            lost_inputs: self.lost_inputs,
            wipes: self.wipes,
            lost_key_answers: self.lost_key_answers,
            lost: self.net.counts.lost,
            duplicated: self.net.counts.duplicated,
            partitioned: self.net.counts.partitioned,
            auth: self.net.auth_counts,
            violations: self.violations.clone(),
        }
    }
}

/// Runs one seeded KV simulation of `steps` host steps with faults, partitions and random
/// Shards drawn from the seed, then checks linearizability per key. Every step also checks
/// host invariants and key ownership. A good run has no violations.
pub fn run_kv_seed(seed: u64, steps: u64) -> KvSimReport {
    run_kv_seed_with(seed, steps, |_| {})
}

/// [`run_kv_seed`], letting the caller adjust the seed's options first (planted bugs).
pub fn run_kv_seed_with(seed: u64, steps: u64, tweak: impl FnOnce(&mut KvSimOptions)) -> KvSimReport {
    let mut rng = Rng::new(seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut options =
        KvSimOptions::random(&mut rng).with_churn(&mut churn_rng(seed)).with_crashes(&mut crash_rng(seed)).attacked();
    tweak(&mut options);
    run_kv_with(seed, steps, options)
}

/// [`run_kv_seed`] with a hot workload ([`KvSimOptions::hot`]): many clients on a few keys,
/// frequent Shards of their range, long delays, client restarts on the same endpoints.
pub fn run_kv_hot_seed(seed: u64, steps: u64) -> KvSimReport {
    run_kv_hot_seed_with(seed, steps, |_| {})
}

/// [`run_kv_hot_seed`], letting the caller adjust the seed's options first.
pub fn run_kv_hot_seed_with(seed: u64, steps: u64, tweak: impl FnOnce(&mut KvSimOptions)) -> KvSimReport {
    let mut rng = Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x48_4f54);
    let mut options =
        KvSimOptions::hot(&mut rng).with_churn(&mut churn_rng(seed)).with_crashes(&mut crash_rng(seed)).attacked();
    tweak(&mut options);
    run_kv_with(seed, steps, options)
}

/// The stream a seed's crash options come from ([`KvSimOptions::with_crashes`]).
fn crash_rng(seed: u64) -> Rng {
    Rng::new(seed.wrapping_mul(0xA076_1D64_78BD_642F) ^ 0x0043_5241_5348)
}

/// The stream a seed's churn options come from ([`KvSimOptions::with_churn`]).
fn churn_rng(seed: u64) -> Rng {
    Rng::new(seed.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ 0x0043_4855_524e)
}

fn run_kv_with(seed: u64, steps: u64, options: KvSimOptions) -> KvSimReport {
    let mut sim = KvSim::new(seed, options);
    sim.run_steps(steps);
    sim.check_linearizable();
    sim.report(seed)
}
