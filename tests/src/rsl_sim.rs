//! A deterministic in-process RSL cluster: real `Replica`s and `Client`s over [`SimNet`].
//!
//! One seed drives everything: workload, delays, faults. Each call to [`RslSim::step`] is one
//! host step (one datagram delivered, or one host's timers fired), in global time order.
//! After every step the agreement checker compares the stepped replica's executed-batch
//! digest with every other replica's at the same operation count.

use std::collections::BTreeMap;

use fleet_engine::rsl::apps::kv::{KvApp, KvOp, KvReply};
use fleet_engine::rsl::{Client, Params, Replica, RslConfig};
use fleet_engine::wire::Bytes;
use fleet_engine::{Endpoint, Instant, OutboxBuf};

use crate::net::{NetFaults, SimNet};
use crate::rng::Rng;

/// The application every simulated replica runs: up to 64 keys of 16 bytes, values of 64.
pub type SimApp = KvApp<64, 16, 64>;
/// The simulated replica type.
pub type SimReplica = Replica<SimApp, 7, 8, 1472, 16384, 64, 128>;
/// The simulated client type.
pub type SimClient = Client<7, 1472>;
/// More steps than this at one instant means some timer never re-arms past `now`.
const MAX_STEPS_AT_ONE_INSTANT: u64 = 100_000;
type Outbox = OutboxBuf<512, { 512 * 1024 }>;

/// A client operation on the replicated KV app.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvCall {
    /// Read a key.
    Get(Vec<u8>),
    /// Write a key.
    Put(Vec<u8>, Vec<u8>),
    /// Remove a key.
    Delete(Vec<u8>),
}

/// What a completed operation returned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvResult {
    /// Get's answer.
    Value(Option<Vec<u8>>),
    /// Put/Delete done.
    Done,
    /// The application refused (or the reply did not decode).
    Error,
}

/// One operation in the recorded client history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryOp {
    /// Client index.
    pub client: usize,
    /// The call.
    pub call: KvCall,
    /// When it was submitted (global microseconds).
    pub invoke_us: u64,
    /// When and with what it completed; `None` while pending.
    pub complete: Option<(u64, KvResult)>,
}

/// A simulated client and its closed-loop workload.
#[derive(Debug)]
pub struct ClientSlot {
    /// The sans-IO client.
    pub client: SimClient,
    /// Its endpoint.
    pub ep: Endpoint,
    /// Operations left to submit.
    pub remaining: u32,
    /// When it may submit next.
    pub next_submit_us: u64,
    /// Index in the history of the outstanding operation.
    pub current: Option<usize>,
}

/// How a simulation is set up.
#[derive(Clone, Copy, Debug)]
pub struct SimOptions {
    /// Replicas.
    pub replicas: usize,
    /// Clients.
    pub clients: usize,
    /// Operations each client submits.
    pub ops_per_client: u32,
    /// Distinct keys the workload touches.
    pub keys: u8,
    /// Network faults.
    pub faults: NetFaults,
    /// Protocol parameters.
    pub params: Params,
    /// Client retransmission timeout.
    pub client_retransmit_ms: u64,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            replicas: 3,
            clients: 3,
            ops_per_client: 50,
            keys: 8,
            faults: NetFaults::CALM,
            params: Params::default(),
            client_retransmit_ms: 300,
        }
    }
}

/// The cluster under simulation.
pub struct RslSim {
    /// Global time, microseconds.
    pub now: u64,
    /// The seeded randomness.
    pub rng: Rng,
    /// The network.
    pub net: SimNet,
    /// Replicas; `None` is a crashed one.
    pub replicas: Vec<Option<Box<SimReplica>>>,
    /// Replica endpoints by index.
    pub replica_eps: Vec<Endpoint>,
    /// Clients.
    pub clients: Vec<ClientSlot>,
    /// Every client operation, in invocation order.
    pub history: Vec<HistoryOp>,
    /// Executed-batch digest per operation count, as first seen.
    pub agreement: BTreeMap<u64, (usize, u64)>,
    /// Safety violations found (empty on a good run).
    pub violations: Vec<String>,
    /// Host steps taken.
    pub steps: u64,
    /// Consecutive steps at one instant: a host whose deadline never moves is a livelock.
    steps_at_now: u64,
    /// Options the simulation was built with.
    pub options: SimOptions,
    config: RslConfig<7>,
    outbox: Box<Outbox>,
    keys: u8,
}

impl RslSim {
    /// A fresh cluster, all hosts at time zero.
    pub fn new(seed: u64, options: SimOptions) -> RslSim {
        let replica_eps: Vec<Endpoint> =
            (0..options.replicas).map(|i| Endpoint::v4([10, 0, 0, i as u8 + 1], 7000)).collect();
        let mut config = RslConfig::<7>::new(&replica_eps).expect("at most 7 replicas in the simulator");
        config.params = options.params;
        let replicas = (0..options.replicas)
            .map(|i| {
                Some(Box::new(
                    SimReplica::new(config.clone(), i, SimApp::new(), Instant::ZERO).expect("valid simulator config"),
                ))
            })
            .collect();
        let clients = (0..options.clients)
            .map(|j| {
                let ep = Endpoint::v4([10, 0, 1, j as u8 + 1], 9000);
                let client =
                    SimClient::new(&replica_eps, 1, options.client_retransmit_ms, options.params.max_datagram_bytes)
                        .expect("valid client config");
                ClientSlot { client, ep, remaining: options.ops_per_client, next_submit_us: 0, current: None }
            })
            .collect();
        RslSim {
            now: 0,
            rng: Rng::new(seed),
            net: SimNet::new(options.faults),
            replicas,
            replica_eps,
            clients,
            history: Vec::new(),
            agreement: BTreeMap::new(),
            violations: Vec::new(),
            steps: 0,
            steps_at_now: 0,
            config,
            outbox: Box::new(Outbox::new()),
            keys: options.keys.max(1),
            options,
        }
    }

    fn next_event(&self) -> Option<u64> {
        let mut t = self.net.next_delivery();
        let mut consider = |d: u64| t = Some(t.map_or(d, |x| x.min(d)));
        for r in self.replicas.iter().flatten() {
            consider(r.next_deadline().as_micros());
        }
        for c in &self.clients {
            consider(c.client.next_deadline().as_micros());
            if c.current.is_none() && c.remaining > 0 {
                consider(c.next_submit_us);
            }
        }
        t.filter(|&x| x != u64::MAX)
    }

    /// Runs one host step; returns false when nothing is left to happen.
    pub fn step(&mut self) -> bool {
        let Some(t) = self.next_event() else { return false };
        if t > self.now {
            self.steps_at_now = 0;
        }
        self.steps_at_now += 1;
        if self.steps_at_now > MAX_STEPS_AT_ONE_INSTANT {
            self.violations
                .push(format!("livelock: {} steps at time {} without time moving", self.steps_at_now, self.now));
            return false;
        }
        self.now = self.now.max(t);
        self.steps += 1;
        let now = Instant::from_micros(self.now);
        if let Some(d) = self.net.pop_due(self.now) {
            self.deliver(now, d.from, d.to, &d.bytes);
            return true;
        }
        for i in 0..self.replicas.len() {
            let due = self.replicas[i].as_ref().is_some_and(|r| r.next_deadline() <= now);
            if due {
                let mut out = self.outbox.outbox();
                if let Some(r) = self.replicas[i].as_mut() {
                    let _ = r.tick(now, &mut out);
                }
                self.net.send_all(self.now, self.replica_eps[i], &out, &mut self.rng);
                self.after_replica_step(i);
                return true;
            }
        }
        for j in 0..self.clients.len() {
            if self.clients[j].client.next_deadline() <= now {
                let mut out = self.outbox.outbox();
                self.clients[j].client.tick(now, &mut out);
                self.net.send_all(self.now, self.clients[j].ep, &out, &mut self.rng);
                return true;
            }
            let c = &self.clients[j];
            if c.current.is_none() && c.remaining > 0 && c.next_submit_us <= self.now {
                self.submit(j, now);
                return true;
            }
        }
        true
    }

    fn deliver(&mut self, now: Instant, from: Endpoint, to: Endpoint, bytes: &[u8]) {
        if let Some(i) = self.replica_eps.iter().position(|e| *e == to) {
            let mut out = self.outbox.outbox();
            let Some(r) = self.replicas[i].as_mut() else { return };
            let _ = r.handle(now, from, bytes, &mut out);
            self.net.send_all(self.now, to, &out, &mut self.rng);
            self.after_replica_step(i);
        } else if let Some(j) = self.clients.iter().position(|c| c.ep == to) {
            let done = self.clients[j].client.handle(now, from, bytes).map(|c| decode_result(c.reply));
            if let Some(result) = done {
                let slot = &mut self.clients[j];
                if let Some(h) = slot.current.take() {
                    self.history[h].complete = Some((self.now, result));
                }
                slot.next_submit_us = self.now + self.rng.below(2_000);
            }
        }
    }

    fn submit(&mut self, j: usize, now: Instant) {
        let key = vec![b'k', b'0' + (self.rng.below(u64::from(self.keys)) as u8)];
        let call = match self.rng.below(10) {
            0..=3 => KvCall::Get(key),
            4..=8 => KvCall::Put(key, format!("c{j}-{}", self.history.len()).into_bytes()),
            _ => KvCall::Delete(key),
        };
        let mut buf = [0u8; 256];
        let n = match &call {
            KvCall::Get(k) => KvOp::Get(Bytes(k)).encode(&mut buf),
            KvCall::Put(k, v) => KvOp::Put(Bytes(k), Bytes(v)).encode(&mut buf),
            KvCall::Delete(k) => KvOp::Delete(Bytes(k)).encode(&mut buf),
        }
        .expect("small ops fit 256 bytes");
        let mut out = self.outbox.outbox();
        let slot = &mut self.clients[j];
        if slot.client.submit(now, &buf[..n], &mut out).is_ok() {
            slot.remaining -= 1;
            slot.current = Some(self.history.len());
            self.history.push(HistoryOp { client: j, call, invoke_us: self.now, complete: None });
        }
        self.net.send_all(self.now, self.clients[j].ep, &out, &mut self.rng);
    }

    fn after_replica_step(&mut self, i: usize) {
        let Some(r) = self.replicas[i].as_ref() else { return };
        let ex = r.executor();
        let (opn, digest) = (ex.ops_complete, ex.executed_digest);
        match self.agreement.get(&opn) {
            Some(&(first, d)) if d != digest => self.violations.push(format!(
                "agreement: replica {i} and replica {first} executed different batches by operation {opn} (step {})",
                self.steps
            )),
            Some(_) => {}
            None => {
                self.agreement.insert(opn, (i, digest));
            }
        }
        if let Err(e) = r.check_invariants() {
            self.violations.push(format!("invariant of replica {i} at step {}: {e}", self.steps));
        }
    }

    /// Runs until `done` holds or `max_us` of simulated time pass; returns whether it held.
    pub fn run_until(&mut self, max_us: u64, mut done: impl FnMut(&RslSim) -> bool) -> bool {
        let end = self.now + max_us;
        while self.now <= end {
            if done(self) {
                return true;
            }
            if !self.step() {
                return done(self);
            }
        }
        done(self)
    }

    /// Runs for `us` of simulated time.
    pub fn run_for(&mut self, us: u64) {
        let end = self.now + us;
        while self.now < end && self.step() {}
    }

    /// True when every client has completed every operation.
    pub fn all_done(&self) -> bool {
        self.clients.iter().all(|c| c.remaining == 0 && c.current.is_none())
    }

    /// Operations completed so far.
    pub fn completed(&self) -> usize {
        self.history.iter().filter(|h| h.complete.is_some()).count()
    }

    /// Crash-stops replica `i` (its state is gone).
    pub fn crash(&mut self, i: usize) {
        self.replicas[i] = None;
    }

    /// Cuts replica `i` off from every other host, both ways.
    pub fn isolate(&mut self, i: usize) {
        let everyone: Vec<Endpoint> =
            self.replica_eps.iter().copied().chain(self.clients.iter().map(|c| c.ep)).collect();
        self.net.isolate(self.replica_eps[i], &everyone);
    }

    /// Removes all partitions.
    pub fn heal(&mut self) {
        self.net.heal();
    }

    /// The replica that currently leads (in phase 2 of the view it believes in), if any.
    pub fn leader(&self) -> Option<usize> {
        self.replicas.iter().position(|r| r.as_ref().is_some_and(|r| r.status().is_leader))
    }

    /// The configuration replicas were built with.
    pub fn config(&self) -> &RslConfig<7> {
        &self.config
    }
}

fn decode_result(reply: &[u8]) -> KvResult {
    match KvReply::decode(reply) {
        Some(KvReply::Value(v)) => KvResult::Value(v.map(|b| b.0.to_vec())),
        Some(KvReply::Done) => KvResult::Done,
        _ => KvResult::Error,
    }
}
