//! A deterministic in-process RSL cluster: real `Replica`s and `Client`s over [`SimNet`],
//! every host on its own skewed, drifting clock, judged by the `fleet-proofs` checkers after
//! every step.
//!
//! One seed drives everything: workload, delays, faults. Each call to [`RslSim::step`] is one
//! host step (one datagram delivered, or one host's timers fired, or one client submission),
//! in global time order. After every replica step the simulator reports what changed to the
//! [`RslChecker`] (acceptor state, votes, executed prefix and app state, replies sent), and
//! also runs the replica's own `check_invariants`.
//!
//! The event loop is here (building the cluster, picking the next step, delivering,
//! submitting). The other jobs live in submodules: `options` (how a run is set up), `clients`
//! (operations and history), `spec` (the spec app, codec and abstraction the checkers judge
//! by), `checks` (what follows every replica step), `crash` (the durable binding and its
//! disk, crash, power cut, restart),
//! `fault_injection` (faults and GST), `plants` (planted bugs) and `render` (failure reports).

mod checks;
mod clients;
mod crash;
mod fault_injection;
mod options;
mod plants;
mod render;
mod spec;

pub use clients::{ClientSlot, HistoryOp, KvCall, KvResult};
pub use options::SimOptions;
pub use plants::Plant;
pub use render::tag_name;
pub use spec::{ep_id, EngineCodec, SpecKv};

use std::collections::BTreeMap;

use fleet_engine::rsl::apps::kv::KvApp;
use fleet_engine::rsl::snapshot::SnapshotId;
use fleet_engine::rsl::{Client, Replica, RslConfig, Step};
use fleet_engine::{Endpoint, Instant, OutboxBuf};
use fleet_proofs::checkers::liveness::LivenessChecker;
use fleet_proofs::checkers::rsl::{RslChecker, RslEvent};
use fleet_proofs::checkers::{Checker, Violation};

use crash::AtCrash;
use spec::{decode_result, encode_call, spec_seqno};

use crate::clock::HostClock;
use crate::disk::SimDisk;
use crate::faults::FaultCounts;
use crate::net::SimNet;
use crate::rng::Rng;
use crate::trace::{Trace, TraceEntry, TraceKind};

/// The application every simulated replica runs: up to 64 keys of 16 bytes, values of 64.
pub type SimApp = KvApp<64, 16, 64>;
/// The simulated replica type: a retained tail of 4 KiB (a few full batches), so runs freeze
/// snapshots often and catch replicas up by snapshot as well as by batches.
pub type SimReplica = Replica<SimApp, 7, 8, 1472, 16384, 64, 128, 4096>;
/// The simulated client type.
pub type SimClient = Client<7, 1472>;
/// More steps than this at one instant means some timer never re-arms past `now`.
const MAX_STEPS_AT_ONE_INSTANT: u64 = 100_000;
type Outbox = OutboxBuf<512, { 512 * 1024 }>;
type Ev<'a> = RslEvent<'a, SpecKv>;

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
    /// Each replica's disk (what its durable binding wrote): survives a crash, and a restart
    /// recovers from it.
    pub disks: Vec<SimDisk>,
    /// Replica endpoints by index.
    pub replica_eps: Vec<Endpoint>,
    /// Clients.
    pub clients: Vec<ClientSlot>,
    /// Host clocks: replicas `0..n`, then clients.
    pub clocks: Vec<HostClock>,
    /// Every client operation, in invocation order.
    pub history: Vec<HistoryOp>,
    /// Violations found (empty on a good run).
    pub violations: Vec<Violation>,
    /// Host steps taken.
    pub steps: u64,
    /// The last steps, for failure reports.
    pub trace: Trace,
    /// Faults injected.
    pub fault_counts: FaultCounts,
    /// The per-step checkers.
    pub checker: RslChecker<SpecKv, EngineCodec>,
    /// The liveness checker (armed at GST).
    pub liveness: LivenessChecker,
    /// When faults stopped (GST), if they have.
    pub gst_us: Option<u64>,
    /// Clients stop submitting new operations (set at GST).
    pub stop_submitting: bool,
    /// Options the simulation was built with.
    pub options: SimOptions,
    /// Consecutive steps at one instant: a host whose deadline never moves is a livelock.
    steps_at_now: u64,
    config: RslConfig<7>,
    outbox: Option<Box<Outbox>>,
    keys: u8,
    last_ops: Vec<u64>,
    /// Each replica's `queries_answered` when last seen (a restart starts it over).
    last_queries: Vec<u64>,
    /// With leases: the highest ballot each replica has promised (a 1b it sent), for the
    /// lease check ([`RslSim::check_leases`]).
    promised: Vec<fleet_engine::rsl::Ballot>,
    /// Queries leaders answered without a log write, in all.
    pub queries_answered: u64,
    /// Groups of requests clients submitted (pipelined sessions).
    pub groups_submitted: u64,
    /// The highest truncation point any acceptor has reached.
    max_truncation: u64,
    /// Each crashed replica's durable state at the moment it crashed.
    at_crash: Vec<Option<AtCrash>>,
    /// Each replica's acceptor state at its last sync: a restart must bring back at least it.
    synced_views: Vec<Option<crash::DurableView>>,
    /// Each replica's sync in progress, and the datagrams waiting for it.
    pending_syncs: Vec<Option<crash::PendingSync>>,
    /// Votes each replica cast since its last sync, `(opn, ballot, batch)`: their records
    /// are in the log, and the next sync makes them durable even if a newer vote for the
    /// same operation replaced them in memory meanwhile (its 2b, held for that sync, then
    /// leaves and counts).
    unsynced_votes: Vec<Vec<(u64, fleet_engine::rsl::Ballot, Vec<u8>)>>,
    /// Crashed replicas whose disk was replaced: their restart is without state.
    wiped: Vec<bool>,
    /// Every replica of the new cluster has been born (see `apply_fault`).
    born: bool,
    /// Replicas restarted without state that have not rejoined yet (up, or crashed again).
    rejoining: Vec<bool>,
    /// Until when each replica is frozen by a `Pause` fault (global µs; past: running).
    pub paused_until: Vec<u64>,
    /// When the next stray request goes out (see [`SimOptions::stray_every_us`]).
    next_stray_us: u64,
    /// Stray requests sent.
    pub strays: u64,
    /// The network adversary, if the run has one.
    pub adversary: Option<crate::adversary::Adversary>,
    /// The snapshot each replica's binding is writing.
    writing_ids: Vec<Option<SnapshotId>>,
    /// Every 1b chunk each replica sent, by `(replica, reply_id, chunk)`: one reply id
    /// names one reply for a replica's whole life, restarts included.
    one_b_chunks: BTreeMap<(usize, u64, u8), Vec<u8>>,
    planted: bool,
    /// [`Plant::UnconfirmedReads`]: acknowledgements to forge, as (leader, from, round message).
    forged_acks: Vec<(usize, Endpoint, Vec<u8>)>,
}

impl RslSim {
    /// A fresh cluster, all hosts at global time zero.
    pub fn new(seed: u64, options: SimOptions) -> RslSim {
        let replica_eps: Vec<Endpoint> =
            (0..options.replicas).map(|i| Endpoint::v4([10, 0, 0, i as u8 + 1], 7000)).collect();
        let mut config = RslConfig::<7>::new(&replica_eps).expect("at most 7 replicas in the simulator");
        config.params = options.params;
        let mut clocks = options.clocks.clone();
        clocks.resize(options.replicas + options.clients, HostClock::EXACT);
        let replicas = (0..options.replicas)
            .map(|i| {
                let now = Instant::from_micros(clocks[i].local(0));
                // A new cluster: every replica starts without state and is born once all
                // have answered that they have none.
                let r =
                    SimReplica::new_durable(config.clone(), i, SimApp::new(), now, 1).expect("valid simulator config");
                Some(Box::new(r))
            })
            .collect();
        let clients = (0..options.clients)
            .map(|j| {
                let ep = Endpoint::v4([10, 0, 1, j as u8 + 1], 9000);
                let client =
                    SimClient::new(&replica_eps, 1, options.client_retransmit_ms, options.params.max_datagram_bytes)
                        .expect("valid client config");
                ClientSlot {
                    client,
                    ep,
                    remaining: options.ops_per_client,
                    next_submit_us: 0,
                    current: Vec::new(),
                    seqno: 0,
                    group: false,
                    crashed: false,
                }
            })
            .collect();
        let mut net = SimNet::new(options.faults);
        let adversary = crate::adversary::seal_and_attack(
            &mut net,
            seed,
            config.identity(),
            &replica_eps,
            options.sealed,
            options.adversary_every_us,
        );
        RslSim {
            now: 0,
            rng: Rng::new(seed),
            net,
            adversary,
            replicas,
            disks: vec![SimDisk::default(); options.replicas],
            writing_ids: vec![None; options.replicas],
            replica_eps,
            clients,
            clocks,
            history: Vec::new(),
            violations: Vec::new(),
            steps: 0,
            trace: Trace::new(options.trace_capacity),
            fault_counts: FaultCounts::default(),
            checker: RslChecker::new(config.quorum(), SpecKv::default()),
            liveness: LivenessChecker::new(),
            gst_us: None,
            stop_submitting: false,
            steps_at_now: 0,
            last_ops: vec![0; options.replicas],
            last_queries: vec![0; options.replicas],
            promised: vec![fleet_engine::rsl::Ballot::default(); options.replicas],
            queries_answered: 0,
            groups_submitted: 0,
            max_truncation: 0,
            at_crash: vec![None; options.replicas],
            synced_views: vec![None; options.replicas],
            pending_syncs: vec![None; options.replicas],
            unsynced_votes: vec![Vec::new(); options.replicas],
            paused_until: vec![0; options.replicas],
            wiped: vec![false; options.replicas],
            born: false,
            rejoining: vec![false; options.replicas],
            next_stray_us: options.stray_every_us.unwrap_or(u64::MAX),
            strays: 0,
            one_b_chunks: BTreeMap::new(),
            config,
            outbox: Some(Box::new(Outbox::new())),
            keys: options.keys.max(1),
            planted: false,
            forged_acks: Vec::new(),
            options,
        }
    }

    fn client_host(&self, j: usize) -> usize {
        self.replicas.len() + j
    }

    /// The host index of an endpoint (replicas first, then clients).
    pub fn host_of(&self, ep: Endpoint) -> Option<usize> {
        self.replica_eps
            .iter()
            .position(|e| *e == ep)
            .or_else(|| self.clients.iter().position(|c| c.ep == ep).map(|j| self.replicas.len() + j))
    }

    /// The endpoint of host `h`.
    pub fn endpoint(&self, h: usize) -> Endpoint {
        match h < self.replicas.len() {
            true => self.replica_eps[h],
            false => self.clients[h - self.replicas.len()].ep,
        }
    }

    fn next_event(&self) -> Option<u64> {
        let mut t = self.net.next_delivery().unwrap_or(u64::MAX);
        t = t.min(self.next_sync_due().unwrap_or(u64::MAX));
        t = t.min(self.next_stray_us);
        if let Some(a) = &self.adversary {
            t = t.min(a.next_us);
        }
        for (i, r) in self.replicas.iter().enumerate() {
            if let Some(r) = r {
                // A frozen replica's timers fire once it runs again.
                t = t.min(self.clocks[i].global(r.next_deadline().as_micros()).max(self.paused_until[i]));
            }
        }
        for (j, c) in self.clients.iter().enumerate() {
            if c.crashed {
                continue;
            }
            t = t.min(self.clocks[self.client_host(j)].global(c.client.next_deadline().as_micros()));
            if self.may_submit(c) {
                t = t.min(c.next_submit_us);
            }
        }
        (t != u64::MAX).then_some(t)
    }

    fn may_submit(&self, c: &ClientSlot) -> bool {
        c.current.is_empty() && c.remaining > 0 && !self.stop_submitting && !c.crashed
    }

    fn local(&self, host: usize) -> Instant {
        Instant::from_micros(self.clocks[host].local(self.now))
    }

    fn record(&mut self, kind: TraceKind) {
        self.trace.push(TraceEntry { step: self.steps, now_us: self.now, kind, after: None });
    }

    /// Runs one host step; returns false when nothing is left to happen (or on a livelock).
    pub fn step(&mut self) -> bool {
        let Some(t) = self.next_event() else { return false };
        if t > self.now {
            self.steps_at_now = 0;
        }
        self.steps_at_now += 1;
        if self.steps_at_now > MAX_STEPS_AT_ONE_INSTANT {
            self.violations.push(Violation::new(
                "liveness",
                "no livelock (every timer re-arms past now)",
                format!("{} steps at time {} without time moving", self.steps_at_now, self.now),
            ));
            return false;
        }
        self.now = self.now.max(t);
        self.steps += 1;
        self.maybe_plant();
        if let Some(d) = self.net.pop_due(self.now) {
            self.deliver_wire(&d);
            self.net.recycle(d.bytes);
            return true;
        }
        if self.complete_due_syncs() {
            return true;
        }
        if self.next_stray_us <= self.now {
            self.send_stray();
            return true;
        }
        if let Some(a) = self.adversary.as_mut().filter(|a| a.next_us <= self.now) {
            a.act(self.now, &mut self.net);
            return true;
        }
        for i in 0..self.replicas.len() {
            let due = !self.paused(i)
                && self.replicas[i]
                    .as_ref()
                    .is_some_and(|r| self.clocks[i].reached(r.next_deadline().as_micros(), self.now));
            if due {
                self.record(TraceKind::Tick(i));
                let now = self.local(i);
                let mut buf = self.outbox.take().expect("outbox present between steps");
                let mut out = buf.outbox();
                let step = match self.replicas[i].as_mut() {
                    Some(r) => r.tick(now, &mut out),
                    None => Step::default(),
                };
                self.after_replica_step(i, step, &out);
                self.outbox = Some(buf);
                return true;
            }
        }
        for j in 0..self.clients.len() {
            let host = self.client_host(j);
            if self.clients[j].crashed {
                continue;
            }
            if self.clocks[host].reached(self.clients[j].client.next_deadline().as_micros(), self.now) {
                self.record(TraceKind::Tick(host));
                let now = self.local(host);
                let mut buf = self.outbox.take().expect("outbox present between steps");
                let mut out = buf.outbox();
                self.clients[j].client.tick(now, &mut out);
                self.net.send_all(self.now, self.clients[j].ep, &out, &mut self.rng);
                self.outbox = Some(buf);
                return true;
            }
            if self.may_submit(&self.clients[j]) && self.clients[j].next_submit_us <= self.now {
                self.submit(j);
                return true;
            }
        }
        true
    }

    /// A datagram off the wire: a paused replica keeps it in its socket buffer; otherwise
    /// its receiver opens it (a sealed network) and handles it. A forgery that opens, or a
    /// key holder's datagram that does not, is a violation.
    fn deliver_wire(&mut self, d: &crate::net::InFlight) {
        let paused = self.host_of(d.to).filter(|&h| h < self.replicas.len() && self.replicas[h].is_some());
        if let Some(i) = paused.filter(|&i| self.paused(i)) {
            let wait = self.paused_until[i] - self.now;
            self.net.requeue(self.now, d, wait);
            return;
        }
        let mut opened = self.net.open(d);
        if opened.is_err() && self.options.plant == Plant::IgnoresSender {
            if let Some(inner) = self.net.open_as_from_any_member(d) {
                self.fault_counts.planted += 1;
                opened = Ok(inner);
            }
        }
        match (opened, d.forged) {
            (Ok(inner), false) => self.deliver(d.from, d.to, inner),
            (Err(_), true) => self.record(TraceKind::Note("a forgery refused")),
            (Ok(_), true) => {
                self.net.auth_counts.forged_accepted += 1;
                self.violations.push(Violation::new(
                    "auth",
                    "no host accepts a datagram that no key holder produced",
                    format!("a forgery from {} to {} opened: {:02x?}", d.from, d.to, d.bytes),
                ))
            }
            (Err(e), false) => self.violations.push(Violation::new(
                "auth",
                "a key holder's datagram opens at its receiver",
                format!("from {} to {}: {e}", d.from, d.to),
            )),
        }
    }

    fn deliver(&mut self, from: Endpoint, to: Endpoint, bytes: &[u8]) {
        let Some(host) = self.host_of(to) else { return };
        let from_host = self.host_of(from).unwrap_or(usize::MAX);
        let tag = bytes.get(fleet_engine::wire::RSL_HEADER_BYTES).copied().unwrap_or(u8::MAX);
        self.record(TraceKind::Deliver { from: from_host, to: host, tag, len: bytes.len() });
        let now = self.local(host);
        if host < self.replicas.len() {
            let i = host;
            if self.replicas[i].is_none() {
                return;
            }
            let mut buf = self.outbox.take().expect("outbox present between steps");
            let mut out = buf.outbox();
            let step = match self.replicas[i].as_mut() {
                Some(r) => r.handle(now, from, bytes, &mut out),
                None => Step::default(),
            };
            self.after_replica_step(i, step, &out);
            self.outbox = Some(buf);
        } else {
            let j = host - self.replicas.len();
            if self.clients[j].crashed {
                return;
            }
            let group = self.clients[j].group;
            let done = self.clients[j].client.handle(now, from, bytes).map(|c| {
                let results: Vec<Option<KvResult>> = match group {
                    false => vec![Some(decode_result(c.reply))],
                    true => fleet_engine::rsl::group::replies(c.reply).map(|r| r.map(decode_result)).collect(),
                };
                (c.seqno, results)
            });
            if let Some((seqno, results)) = done {
                self.record(TraceKind::Complete { client: host, seqno });
                let ops = std::mem::take(&mut self.clients[j].current);
                for (k, h) in ops.into_iter().enumerate() {
                    // A group's request applied without room for its reply stays pending:
                    // it took effect, with a result the client never learns.
                    if let Some(Some(result)) = results.get(k) {
                        self.history[h].complete = Some((self.now, result.clone()));
                    }
                    self.liveness.completed(h as u64);
                }
                let think = self.rng.below(self.options.think_us + 1);
                self.clients[j].next_submit_us = self.now + think;
            }
        }
    }

    /// A Get from a fresh endpoint, sent once to one replica that does not lead the view it
    /// believes in, and never retried (a client that vanished, or a hostile one).
    fn send_stray(&mut self) {
        let mean = self.options.stray_every_us.unwrap_or(u64::MAX / 4);
        self.next_stray_us = self.now + self.rng.range(mean / 2, mean * 3 / 2);
        let followers: Vec<usize> = (0..self.replicas.len())
            .filter(|&i| self.replicas[i].as_ref().is_some_and(|r| usize::from(r.status().view.proposer) != i))
            .collect();
        if followers.is_empty() {
            return;
        }
        let to = followers[self.rng.below(followers.len() as u64) as usize];
        self.strays += 1;
        let n = self.strays;
        let from = Endpoint::v4([10, 200, (n >> 8) as u8, n as u8], 40_000 + (n % 20_000) as u16);
        let mut req = [0u8; 64];
        let len = encode_call(&KvCall::Get(vec![b'k', b'0']), &mut req);
        let seqno = 1;
        let ev = RslEvent::RequestSent { client: ep_id(from), seqno: spec_seqno(seqno, 0), request: &req[..len] };
        self.checker.observe(&ev, &mut self.violations);
        let mut msg = [0u8; 128];
        let request = fleet_engine::wire::Bytes(&req[..len]);
        if let Ok(m) = fleet_engine::wire::encode(
            fleet_engine::wire::Protocol::Rsl,
            &fleet_engine::rsl::RslMsg::Request { seqno, request },
            &mut msg,
        ) {
            self.record(TraceKind::Note("a stray request to a follower"));
            self.net.send(self.now, from, self.replica_eps[to], &msg[..m], &mut self.rng);
        }
    }

    fn submit(&mut self, j: usize) {
        // One submission in four sends a group of two to four operations (a pipelined
        // session), if the client has that many left.
        let remaining = self.clients[j].remaining as u64;
        let count = match self.rng.below(4) {
            0 if remaining >= 2 => 2 + self.rng.below(3.min(remaining - 1)),
            _ => 1,
        } as usize;
        let calls: Vec<KvCall> = (0..count)
            .map(|k| {
                let key = vec![b'k', b'0' + (self.rng.below(u64::from(self.keys)) as u8)];
                match self.rng.below(10) {
                    0..=3 => KvCall::Get(key),
                    4..=8 => KvCall::Put(key, format!("c{j}-{}", self.history.len() + k).into_bytes()),
                    _ => KvCall::Delete(key),
                }
            })
            .collect();
        let encoded: Vec<Vec<u8>> = calls
            .iter()
            .map(|call| {
                let mut req = [0u8; 256];
                let n = encode_call(call, &mut req);
                req[..n].to_vec()
            })
            .collect();
        let host = self.client_host(j);
        let now = self.local(host);
        let mut buf = self.outbox.take().expect("outbox present between steps");
        let mut out = buf.outbox();
        let slot = &mut self.clients[j];
        let submitted = match count {
            1 => slot.client.submit(now, &encoded[0], &mut out).map(|seqno| (seqno, 1)),
            _ => {
                let requests: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
                slot.client.submit_group(now, &requests, &mut out)
            }
        };
        if let Ok((seqno, packed)) = submitted {
            slot.remaining -= packed as u32;
            slot.seqno = seqno;
            slot.group = count > 1;
            self.groups_submitted += u64::from(count > 1);
            let client = ep_id(slot.ep);
            for (k, call) in calls.into_iter().take(packed).enumerate() {
                let h = self.history.len();
                self.clients[j].current.push(h);
                self.liveness.invoked(h as u64, client, self.now);
                self.history.push(HistoryOp { client: j, call, invoke_us: self.now, complete: None });
                let ev = RslEvent::RequestSent { client, seqno: spec_seqno(seqno, k), request: &encoded[k] };
                self.checker.observe(&ev, &mut self.violations);
            }
            self.record(TraceKind::Submit { client: host, seqno });
        }
        self.net.send_all(self.now, self.clients[j].ep, &out, &mut self.rng);
        self.outbox = Some(buf);
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
        self.clients.iter().all(|c| c.remaining == 0 && c.current.is_empty())
    }

    /// Operations completed so far.
    pub fn completed(&self) -> usize {
        self.history.iter().filter(|h| h.complete.is_some()).count()
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
