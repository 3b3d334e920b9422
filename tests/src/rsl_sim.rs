//! A deterministic in-process RSL cluster: real `Replica`s and `Client`s over [`SimNet`],
//! every host on its own skewed, drifting clock, judged by the `fleet-proofs` checkers after
//! every step.
//!
//! One seed drives everything: workload, delays, faults. Each call to [`RslSim::step`] is one
//! host step (one datagram delivered, or one host's timers fired, or one client submission),
//! in global time order. After every replica step the simulator reports what changed to the
//! [`RslChecker`] (acceptor state, votes, executed prefix and app state, replies sent), and
//! also runs the replica's own `check_invariants`.

use std::collections::BTreeMap;

use fleet_engine::rsl::apps::kv::{KvApp, KvAppError, KvOp, KvReply};
use fleet_engine::rsl::batch;
use fleet_engine::rsl::durable::DURABLE_RECORD_OVERHEAD_BYTES;
use fleet_engine::rsl::proposer::Phase;
use fleet_engine::rsl::{Ballot, Client, Params, Replica, RslConfig, RslMsg, Step};
use fleet_engine::wire::{self, Bytes, Protocol};
use fleet_engine::{Endpoint, Instant, IpAddr, OutboxBuf};
use fleet_proofs::checkers::liveness::LivenessChecker;
use fleet_proofs::checkers::rsl::{RslChecker, RslCodec, RslEvent};
use fleet_proofs::checkers::{Checker, Violation};
use fleet_proofs::linearizability::Operation;
use fleet_proofs::spec::bytes_kv::{BytesKvApp, BytesKvOp, BytesKvRet};
use fleet_proofs::spec::rsl::{AppRequest, AppSpec};
use fleet_proofs::spec::SeqSpec;

use crate::clock::HostClock;
use crate::faults::{FaultCounts, FaultEvent};
use crate::net::{NetFaults, SimNet};
use crate::rng::Rng;
use crate::trace::{Trace, TraceEntry, TraceKind};

/// The application every simulated replica runs: up to 64 keys of 16 bytes, values of 64.
pub type SimApp = KvApp<64, 16, 64>;
/// The simulated replica type.
pub type SimReplica = Replica<SimApp, 7, 8, 1472, 16384, 64, 128>;
/// The simulated client type.
pub type SimClient = Client<7, 1472>;
/// More steps than this at one instant means some timer never re-arms past `now`.
const MAX_STEPS_AT_ONE_INSTANT: u64 = 100_000;
type Outbox = OutboxBuf<512, { 512 * 1024 }>;
/// Wire tag of `RslMsg::Reply` (postcard variant index, after the 3-byte envelope).
const REPLY_TAG: u8 = 6;
const ONE_B_TAG: u8 = 2;

/// What a replica's durable state is: promise, truncation point, 1b reply counter, votes
/// and the proposer's ballot. A restart must bring back exactly this.
type DurableView = (Ballot, u64, u64, Vec<(u64, Ballot, Vec<u8>)>, Ballot);

fn durable_view(r: &SimReplica) -> DurableView {
    let a = r.acceptor();
    let votes = a.votes().map(|v| (v.opn, v.bal, v.batch.to_vec())).collect();
    (a.max_bal, a.log_truncation_point, a.replies_sent(), votes, r.proposer().max_ballot_sent_1a)
}
type Ev<'a> = RslEvent<'a, SpecKv>;

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
    /// When it may submit next (global microseconds).
    pub next_submit_us: u64,
    /// Index in the history of the outstanding operation.
    pub current: Option<usize>,
    /// Seqno of the outstanding operation.
    pub seqno: u64,
    /// Crash-stopped.
    pub crashed: bool,
}

/// A deliberately planted bug: the simulator misbehaves (forges or drops messages) so that a
/// test can see each checker catch a real violation. Never set outside such tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Plant {
    /// No bug.
    #[default]
    None,
    /// Byzantine learners' input: a quorum of forged 2b for a no-op at a replica's next
    /// operation, so it decides a batch nobody chose (agreement, refinement).
    ForgeTwoB,
    /// A proposer that skips phase 1: a forged 2a at a fresh, higher ballot with a different
    /// batch for an already chosen operation (chosen-value stability, refinement).
    SkipPhase1,
    /// A reply no replica computed: `Value(Some("forged"))` to a client's pending request
    /// (refinement: reply not allowed; linearizability).
    ForgeReply,
    /// A request the client never sent, executed under its endpoint with a seqno far ahead
    /// (refinement: request not sent; liveness: the client's real requests are then ignored).
    ForgeRequest,
    /// After GST every reply datagram is dropped (liveness).
    DropReplies,
    /// A crashed replica restarts with an empty acceptor, as if its durable log were lost
    /// (invariants: its promise and truncation point go back; in the worst case agreement).
    AmnesiacRestart,
}

impl Plant {
    /// Every plant, for `--plant` parsing and help.
    pub const ALL: [(&'static str, Plant); 7] = [
        ("none", Plant::None),
        ("forge-2b", Plant::ForgeTwoB),
        ("skip-phase1", Plant::SkipPhase1),
        ("forge-reply", Plant::ForgeReply),
        ("forge-request", Plant::ForgeRequest),
        ("drop-replies", Plant::DropReplies),
        ("amnesiac-restart", Plant::AmnesiacRestart),
    ];

    /// Parses a `--plant` name.
    pub fn parse(s: &str) -> Option<Plant> {
        Plant::ALL.iter().find(|(n, _)| *n == s).map(|(_, p)| *p)
    }

    /// The `--plant` name.
    pub fn name(self) -> &'static str {
        Plant::ALL.iter().find(|(_, p)| *p == self).map_or("none", |(n, _)| n)
    }
}

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
        }
    }
}

/// The spec app the refinement checker replays: IronFleet's byte-KV over the engine's
/// postcard-encoded `KvOp` / `KvReply` (the spec half is `fleet_proofs`' `BytesKvApp`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SpecKv(pub BytesKvApp);

impl AppSpec for SpecKv {
    fn apply(&mut self, request: &[u8]) -> Vec<u8> {
        let reply_of = |r: KvReply<'_>| {
            let mut buf = [0u8; 256];
            postcard::to_slice(&r, &mut buf).map(|b| b.to_vec()).unwrap_or_default()
        };
        let Some(op) = KvOp::decode(request) else { return reply_of(KvReply::Error(KvAppError::Malformed)) };
        let op = match op {
            KvOp::Get(k) => BytesKvOp::Get(k.0.to_vec()),
            KvOp::Put(k, v) => BytesKvOp::Put(k.0.to_vec(), v.0.to_vec()),
            KvOp::Delete(k) => BytesKvOp::Delete(k.0.to_vec()),
        };
        match self.0.step(&op) {
            BytesKvRet::Value(v) => reply_of(KvReply::Value(v.as_deref().map(Bytes))),
            BytesKvRet::Ok => reply_of(KvReply::Done),
        }
    }
}

/// How the engine encodes batches and its executed-digest chain (FNV-1a over
/// `opn.to_le_bytes() ++ batch`, as `Executor::execute` computes it).
#[derive(Clone, Copy, Debug)]
pub struct EngineCodec;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl RslCodec for EngineCodec {
    fn decode_batch(bytes: &[u8]) -> Option<Vec<AppRequest>> {
        batch::validate(bytes, usize::MAX).ok()?;
        Some(
            batch::entries(bytes)
                .map(|e| AppRequest { client: ep_id(e.client), seqno: e.seqno, request: e.request.0.to_vec() })
                .collect(),
        )
    }

    fn initial_digest() -> u64 {
        FNV_OFFSET
    }

    fn chain(prev: u64, opn: u64, batch: &[u8]) -> u64 {
        let mut h = prev;
        for b in opn.to_le_bytes().iter().chain(batch) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(FNV_PRIME);
        }
        h
    }
}

/// A client's identity in the spec: its endpoint packed into a `u64`.
pub fn ep_id(ep: Endpoint) -> u64 {
    match ep.ip {
        IpAddr::V4(o) => (u64::from(u32::from_be_bytes(o)) << 16) | u64::from(ep.port),
        IpAddr::V6(o) => {
            o.iter().fold(u64::from(ep.port), |h, b| (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME)) | (1 << 63)
        }
    }
}

/// The name of an RSL wire tag, for traces.
pub fn tag_name(tag: u8) -> &'static str {
    match tag {
        0 => "Request",
        1 => "1a",
        2 => "1b",
        3 => "2a",
        4 => "2b",
        5 => "Heartbeat",
        6 => "Reply",
        7 => "AppStateRequest",
        8 => "AppStateSupply",
        9 => "StartingPhase2",
        _ => "?",
    }
}

/// A replica's durable log is compacted to its image at this many records.
const MAX_DURABLE_RECORDS: usize = 256;

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
    /// Each replica's durable log (what a durable binding wrote before sending): survives
    /// a crash, and a restart replays it.
    pub durable: Vec<Vec<Vec<u8>>>,
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
    /// The highest truncation point any acceptor has reached.
    max_truncation: u64,
    /// Each crashed replica's durable state at the moment it crashed.
    at_crash: Vec<Option<DurableView>>,
    /// Every 1b chunk each replica sent, by `(replica, reply_id, chunk)`: one reply id
    /// names one reply for a replica's whole life, restarts included.
    one_b_chunks: BTreeMap<(usize, u64, u8), Vec<u8>>,
    planted: bool,
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
                Some(Box::new(SimReplica::new(config.clone(), i, SimApp::new(), now).expect("valid simulator config")))
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
                    current: None,
                    seqno: 0,
                    crashed: false,
                }
            })
            .collect();
        RslSim {
            now: 0,
            rng: Rng::new(seed),
            net: SimNet::new(options.faults),
            replicas,
            durable: vec![Vec::new(); options.replicas],
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
            max_truncation: 0,
            at_crash: vec![None; options.replicas],
            one_b_chunks: BTreeMap::new(),
            config,
            outbox: Some(Box::new(Outbox::new())),
            keys: options.keys.max(1),
            planted: false,
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

    /// A host's name for traces: `r0`, `c1`.
    pub fn host_name(&self, h: usize) -> String {
        match h < self.replicas.len() {
            true => format!("r{h}"),
            false => format!("c{}", h - self.replicas.len()),
        }
    }

    fn next_event(&self) -> Option<u64> {
        let mut t = self.net.next_delivery().unwrap_or(u64::MAX);
        for (i, r) in self.replicas.iter().enumerate() {
            if let Some(r) = r {
                t = t.min(self.clocks[i].global(r.next_deadline().as_micros()));
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
        c.current.is_none() && c.remaining > 0 && !self.stop_submitting && !c.crashed
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
            self.deliver(d.from, d.to, &d.bytes);
            self.net.recycle(d.bytes);
            return true;
        }
        for i in 0..self.replicas.len() {
            let due = self.replicas[i]
                .as_ref()
                .is_some_and(|r| self.clocks[i].global(r.next_deadline().as_micros()) <= self.now);
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
            if self.clocks[host].global(self.clients[j].client.next_deadline().as_micros()) <= self.now {
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

    fn deliver(&mut self, from: Endpoint, to: Endpoint, bytes: &[u8]) {
        let Some(host) = self.host_of(to) else { return };
        let from_host = self.host_of(from).unwrap_or(usize::MAX);
        let tag = bytes.get(3).copied().unwrap_or(u8::MAX);
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
            let done = self.clients[j].client.handle(now, from, bytes).map(|c| (c.seqno, decode_result(c.reply)));
            if let Some((seqno, result)) = done {
                self.record(TraceKind::Complete { client: host, seqno });
                let slot = &mut self.clients[j];
                if let Some(h) = slot.current.take() {
                    self.history[h].complete = Some((self.now, result));
                    self.liveness.completed(h as u64);
                }
                let think = self.rng.below(self.options.think_us + 1);
                self.clients[j].next_submit_us = self.now + think;
            }
        }
    }

    fn submit(&mut self, j: usize) {
        let key = vec![b'k', b'0' + (self.rng.below(u64::from(self.keys)) as u8)];
        let call = match self.rng.below(10) {
            0..=3 => KvCall::Get(key),
            4..=8 => KvCall::Put(key, format!("c{j}-{}", self.history.len()).into_bytes()),
            _ => KvCall::Delete(key),
        };
        let mut req = [0u8; 256];
        let n = encode_call(&call, &mut req);
        let host = self.client_host(j);
        let now = self.local(host);
        let mut buf = self.outbox.take().expect("outbox present between steps");
        let mut out = buf.outbox();
        let slot = &mut self.clients[j];
        if let Ok(seqno) = slot.client.submit(now, &req[..n], &mut out) {
            slot.remaining -= 1;
            slot.current = Some(self.history.len());
            slot.seqno = seqno;
            let client = ep_id(slot.ep);
            self.liveness.invoked(self.history.len() as u64, client, self.now);
            self.history.push(HistoryOp { client: j, call, invoke_us: self.now, complete: None });
            let ev = RslEvent::RequestSent { client, seqno, request: &req[..n] };
            self.checker.observe(&ev, &mut self.violations);
            self.record(TraceKind::Submit { client: host, seqno });
        }
        self.net.send_all(self.now, self.clients[j].ep, &out, &mut self.rng);
        self.outbox = Some(buf);
    }

    /// Reports replica `i`'s step to the checkers, then sends its datagrams.
    fn after_replica_step(&mut self, i: usize, step: Step, out: &fleet_engine::Outbox<'_>) {
        let durable_changed = step.durable_state_changed;
        self.persist(i, step);
        let Some(r) = self.replicas[i].as_deref() else { return };
        let v = &mut self.violations;
        let acc = r.acceptor();
        let bal = |b: Ballot| (b.seqno, u64::from(b.proposer));
        let ev = Ev::Acceptor { replica: i, max_bal: bal(acc.max_bal), log_truncation_point: acc.log_truncation_point };
        self.max_truncation = self.max_truncation.max(acc.log_truncation_point);
        self.checker.observe(&ev, v);
        if durable_changed {
            for vote in acc.votes() {
                let ev = Ev::Vote { acceptor: i, opn: vote.opn, bal: bal(vote.bal), batch: &vote.batch };
                self.checker.observe(&ev, v);
            }
        }
        let ex = r.executor();
        let mut prune = false;
        if ex.ops_complete != self.last_ops[i] {
            self.last_ops[i] = ex.ops_complete;
            let app = abstract_app(r.app(), self.keys);
            let ev =
                RslEvent::Executed { replica: i, ops_complete: ex.ops_complete, digest: ex.executed_digest, app: &app };
            self.checker.observe(&ev, v);
            prune = ex.ops_complete % 32 == 0;
        }
        if let Err(e) = r.check_invariants() {
            self.violations.push(Violation::new("invariant", "Replica::check_invariants", format!("replica {i}: {e}")));
        }
        let s = r.status();
        let phase = match s.phase {
            Phase::Idle => 0,
            Phase::One => 1,
            Phase::Two => 2,
        };
        self.trace.annotate((s.view.seqno, s.view.proposer, phase, s.ops_complete, s.max_bal.seqno));
        if prune {
            self.prune();
        }
        let from = self.replica_eps[i];
        for (to, bytes) in out.iter() {
            self.replica_sends(i, from, to, bytes);
        }
    }

    /// One datagram a replica sends: replies are checked against the spec, then it goes on
    /// the wire (unless a planted bug drops it).
    fn replica_sends(&mut self, i: usize, from: Endpoint, to: Endpoint, bytes: &[u8]) {
        if bytes.get(3) == Some(&ONE_B_TAG) {
            self.check_one_b_id(i, bytes);
        }
        if bytes.get(3) == Some(&REPLY_TAG) {
            if let Ok(RslMsg::Reply { seqno, reply }) = wire::decode::<RslMsg<'_>>(Protocol::Rsl, bytes) {
                let ev = Ev::ReplySent { replica: i, client: ep_id(to), seqno, reply: reply.0 };
                self.checker.observe(&ev, &mut self.violations);
                if self.options.plant == Plant::DropReplies && self.gst_us.is_some() {
                    return;
                }
            }
        }
        self.net.send(self.now, from, to, bytes, &mut self.rng);
    }

    /// A proposer tells the chunks of different 1b replies apart by their reply id: a
    /// replica must never send two different chunks under one id (a restart that reused
    /// ids could let a proposer splice two replies and miss a vote).
    fn check_one_b_id(&mut self, i: usize, bytes: &[u8]) {
        let Ok(RslMsg::OneB { reply_id, chunk, .. }) = wire::decode::<RslMsg<'_>>(Protocol::Rsl, bytes) else { return };
        match self.one_b_chunks.get(&(i, reply_id, chunk)) {
            Some(seen) if seen.as_slice() != bytes => self.violations.push(Violation::new(
                "invariant",
                "one 1b reply id names one reply (Message1b.i.dfy; rsl::durable keeps the counter)",
                format!("replica {i} sent two different chunks {chunk} under reply id {reply_id}"),
            )),
            Some(_) => {}
            None => {
                self.one_b_chunks.insert((i, reply_id, chunk), bytes.to_vec());
            }
        }
    }

    /// Forgets checker history every live replica has passed.
    fn prune(&mut self) {
        let floor = self.replicas.iter().flatten().map(|r| r.executor().ops_complete).min().unwrap_or(0);
        self.checker.prune_below(floor);
    }

    /// Applies one fault.
    pub fn apply_fault(&mut self, e: FaultEvent) {
        if let FaultEvent::Crash(h) = e {
            if h < self.replicas.len() && !self.state_survives_crash_of(h) {
                self.record(TraceKind::Note("crash skipped: it would take down the last replica holding the state"));
                return;
            }
        }
        self.fault_counts.count(&e);
        self.record(TraceKind::Fault(e));
        let hosts = self.replicas.len() + self.clients.len();
        match e {
            FaultEvent::Partition { from, to, symmetric } => {
                for a in (0..hosts).filter(|a| from & (1 << a) != 0) {
                    for b in (0..hosts).filter(|b| to & (1 << b) != 0 && *b != a) {
                        let (ea, eb) = (self.endpoint(a), self.endpoint(b));
                        self.net.block(ea, eb);
                        if symmetric {
                            self.net.block(eb, ea);
                        }
                    }
                }
            }
            FaultEvent::Heal => self.net.heal(),
            FaultEvent::Crash(h) if h < self.replicas.len() => self.crash(h),
            FaultEvent::Restart(h) if h < self.replicas.len() => self.restart(h),
            FaultEvent::Restart(_) => {}
            FaultEvent::Crash(h) => {
                let j = h - self.replicas.len();
                if let Some(c) = self.clients.get_mut(j) {
                    c.crashed = true;
                    self.liveness.client_crashed(ep_id(c.ep));
                }
            }
            FaultEvent::ClockJump(h, us) => {
                if let Some(c) = self.clocks.get_mut(h) {
                    c.jump(us);
                }
            }
            FaultEvent::Net(f) => self.net.faults = f,
        }
    }

    /// GST: partitions heal, the network becomes reliable with small delays, no new faults,
    /// clients stop starting new operations, and every pending one must complete within
    /// [`RslSim::liveness_bound_us`].
    pub fn start_gst(&mut self, net: NetFaults) {
        self.net.heal();
        self.net.faults = net;
        self.gst_us = Some(self.now);
        self.stop_submitting = true;
        self.record(TraceKind::Gst);
        self.liveness.heal(self.now, self.liveness_bound_us());
    }

    /// How long after GST a pending request may take, derived from the timeouts: a client
    /// retry reaches every replica within its retransmission period; a view change takes at
    /// most two epochs (a suspicion epoch, then the view's own) and the epoch length is capped
    /// at `max_view_timeout`; up to `n` views may be needed to reach a live leader; then a few
    /// heartbeats and retransmissions (2a/2b, state transfer) finish the job. Clock drift
    /// (up to 5 %) is covered by a 10 % margin.
    pub fn liveness_bound_us(&self) -> u64 {
        let p = self.config.params;
        let n = self.replicas.len() as u64;
        let views = (n + 2) * 2 * p.max_view_timeout_ms;
        let chatter = 20 * (p.heartbeat_period_ms + p.retransmit_period_ms);
        let ms = 3 * self.options.client_retransmit_ms + views + chatter;
        ms * 1_100
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

    /// Crashes replica `i`: its memory is gone, its durable log stays.
    pub fn crash(&mut self, i: usize) {
        if let Some(r) = self.replicas[i].take() {
            self.at_crash[i] = Some(durable_view(&r));
        }
    }

    /// Durable mode keeps the acceptor state, not the application: a restarted replica
    /// rebuilds its application by state transfer from a replica that has executed past
    /// every truncation point. A crash that would leave no such replica up would make the
    /// cluster wait forever (safely) for state nobody has; the fault model rules it out,
    /// as it rules out crashing a majority. See `docs/simulator.md`.
    fn state_survives_crash_of(&self, h: usize) -> bool {
        let truncation = self.max_truncation;
        self.replicas
            .iter()
            .enumerate()
            .any(|(i, r)| i != h && r.as_ref().is_some_and(|r| r.executor().ops_complete >= truncation))
    }

    /// Appends step `step`'s durable record to replica `i`'s log before any datagram of the
    /// step is sent (the durable binding's rule); compacts long logs to the replica's image,
    /// so restarts replay both forms.
    fn persist(&mut self, i: usize, step: Step) {
        let Some(r) = self.replicas[i].as_deref() else { return };
        if !step.durable_state_changed {
            return;
        }
        let mut buf = vec![0u8; 1472 + DURABLE_RECORD_OVERHEAD_BYTES];
        match r.durable_record(&step, &mut buf) {
            Ok(rec) => self.durable[i].push(rec.to_vec()),
            Err(e) => {
                self.violations.push(Violation::new("invariant", "durable record fits", format!("replica {i}: {e:?}")))
            }
        }
        if self.durable[i].len() >= MAX_DURABLE_RECORDS {
            let image: Result<Vec<Vec<u8>>, _> =
                (0..r.durable_image_len()).map(|k| r.durable_image_record(k, &mut buf).map(<[u8]>::to_vec)).collect();
            match image {
                Ok(image) => self.durable[i] = image,
                Err(e) => self.violations.push(Violation::new(
                    "invariant",
                    "durable image fits",
                    format!("replica {i}: {e:?}"),
                )),
            }
        }
    }

    /// Restarts crashed replica `i` from its durable log, with an empty application (the
    /// planted `AmnesiacRestart` bug replays nothing). A log that does not replay is a
    /// violation: the engine wrote it.
    pub fn restart(&mut self, i: usize) {
        if self.replicas[i].is_some() {
            return;
        }
        // Planted only where there is something to forget.
        let amnesia = self.options.plant == Plant::AmnesiacRestart && !self.durable[i].is_empty();
        if amnesia {
            self.fault_counts.planted += 1;
            self.record(TraceKind::Planted("replica restarted without its durable log"));
        }
        let now = self.local(i);
        let log: &[Vec<u8>] = if amnesia { &[] } else { &self.durable[i] };
        let records = log.iter().map(Vec::as_slice);
        match SimReplica::recover(self.config.clone(), i, SimApp::new(), now, records) {
            Ok(r) => {
                let recovered = durable_view(&r);
                if self.at_crash[i].as_ref().is_some_and(|before| *before != recovered) {
                    self.violations.push(Violation::new(
                        "invariant",
                        "a restarted replica recovers its durable state (rsl::durable)",
                        format!("replica {i}: {:?} at the crash, {recovered:?} after the restart", self.at_crash[i]),
                    ));
                }
                self.replicas[i] = Some(Box::new(r));
                self.last_ops[i] = 0;
                self.checker.observe(&RslEvent::Restarted { replica: i }, &mut self.violations);
                let mut buf = self.outbox.take().expect("outbox present between steps");
                let out = buf.outbox();
                // Report the recovered acceptor at once: the monotonicity checks apply to it.
                self.after_replica_step(i, Step::default(), &out);
                self.outbox = Some(buf);
            }
            Err(e) => self.violations.push(Violation::new(
                "invariant",
                "a durable log replays (Replica::recover)",
                format!("replica {i}: {e}"),
            )),
        }
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

    /// The client history in the checker's format (byte-KV ops; pending ops have no result).
    pub fn lin_history(&self) -> Result<Vec<Operation<BytesKvOp, BytesKvRet>>, Violation> {
        let mut ops = Vec::with_capacity(self.history.len());
        for (i, h) in self.history.iter().enumerate() {
            let op = match &h.call {
                KvCall::Get(k) => BytesKvOp::Get(k.clone()),
                KvCall::Put(k, v) => BytesKvOp::Put(k.clone(), v.clone()),
                KvCall::Delete(k) => BytesKvOp::Delete(k.clone()),
            };
            let complete = match &h.complete {
                None => None,
                Some((t, KvResult::Value(v))) => Some((*t, BytesKvRet::Value(v.clone()))),
                Some((t, KvResult::Done)) => Some((*t, BytesKvRet::Ok)),
                Some((_, KvResult::Error)) => {
                    return Err(Violation::new(
                        "linearizability",
                        "service spec (linearizable state machine)",
                        format!("operation #{i} ({:?}) of client {} got an error reply", h.call, h.client),
                    ))
                }
            };
            ops.push(Operation { client: h.client as u64, op, invoke_us: h.invoke_us, complete });
        }
        Ok(ops)
    }

    /// The last steps, formatted, then every host's state.
    pub fn render_trace(&self) -> String {
        let mut s = self.trace.render(|h| if h == usize::MAX { "?".into() } else { self.host_name(h) }, tag_name);
        for (i, r) in self.replicas.iter().enumerate() {
            match r {
                None => s.push_str(&format!("  r{i}: crashed\n")),
                Some(r) => {
                    let st = r.status();
                    s.push_str(&format!(
                        "  r{i}: view {:?} {:?} leader={} ops {} next_opn {} trunc {} queued {} max_bal {:?} \
                         learner.max_ballot_seen {:?} transfer.target {} incoming {:?} installed {} view_deadline {:?} suspectors {:#b} clock {:?} now {}\n    checkpoints {:?}\n    stats {:?}\n",
                        st.view,
                        st.phase,
                        st.is_leader,
                        st.ops_complete,
                        st.next_opn,
                        st.log_truncation_point,
                        st.queued,
                        st.max_bal,
                        r.learner().max_ballot_seen,
                        r.transfer().target_opn,
                        r.transfer().incoming,
                        r.transfer().installed,
                        r.election().deadline(),
                        r.election().suspectors,
                        self.clocks[i],
                        self.clocks[i].local(self.now),
                        (0..self.replicas.len()).map(|j| r.acceptor().checkpoint_of(j)).collect::<Vec<_>>(),
                        r.stats(),
                    ));
                }
            }
        }
        for (j, c) in self.clients.iter().enumerate() {
            s.push_str(&format!("  c{j}: pending seqno {:?} crashed {} ep {}\n", c.client.pending(), c.crashed, c.ep));
        }
        s
    }

    // ----- planted bugs -------------------------------------------------------------------

    fn maybe_plant(&mut self) {
        if self.planted || self.options.plant == Plant::None || self.steps < 200 {
            return;
        }
        let done = match self.options.plant {
            Plant::None | Plant::DropReplies | Plant::AmnesiacRestart => false,
            Plant::ForgeTwoB => self.plant_forge_2b(),
            Plant::SkipPhase1 => self.plant_skip_phase1(),
            Plant::ForgeReply => self.plant_forge_reply(),
            Plant::ForgeRequest => self.plant_forge_request(),
        };
        if done {
            self.planted = true;
            self.fault_counts.planted += 1;
        }
    }

    fn live_replicas(&self) -> impl Iterator<Item = (usize, &SimReplica)> {
        self.replicas.iter().enumerate().filter_map(|(i, r)| r.as_deref().map(|r| (i, r)))
    }

    /// Hands a forged datagram straight to replica `i` (as if it came from `from`).
    fn forge_to_replica(&mut self, i: usize, from: Endpoint, msg: &RslMsg<'_>) {
        let mut bytes = [0u8; 1472];
        let Ok(n) = wire::encode(Protocol::Rsl, msg, &mut bytes) else { return };
        let now = self.local(i);
        let mut buf = self.outbox.take().expect("outbox present between steps");
        let mut out = buf.outbox();
        let changed = match self.replicas[i].as_mut() {
            Some(r) => r.handle(now, from, &bytes[..n], &mut out),
            None => Step::default(),
        };
        self.after_replica_step(i, changed, &out);
        self.outbox = Some(buf);
    }

    fn plant_forge_2b(&mut self) -> bool {
        // The laggard of two replicas at different positions decides a no-op at its next op.
        let Some((lag, lag_ops)) =
            self.live_replicas().map(|(i, r)| (i, r.executor().ops_complete)).min_by_key(|x| x.1)
        else {
            return false;
        };
        // Another replica was seen at exactly `lag_ops + 1`: the forged decision must disagree.
        if !self.checker.agreement.seen(lag_ops + 1)
            || !self.live_replicas().any(|(_, r)| r.executor().ops_complete > lag_ops)
        {
            return false;
        }
        let r = self.replicas[lag].as_deref().expect("live");
        let bal = r.learner().max_ballot_seen.max(r.acceptor().max_bal).successor(self.replicas.len());
        self.record(TraceKind::Planted("forged quorum of 2b (no-op) at the laggard's next operation"));
        for s in 0..self.config.quorum() {
            let from = self.replica_eps[(lag + 1 + s) % self.replicas.len()];
            let forged = forged_batch();
            let msg = RslMsg::TwoB { bal, opn: lag_ops, batch: Bytes(&forged), opn_ckpt: 0 };
            self.forge_to_replica(lag, from, &msg);
        }
        true
    }

    fn plant_skip_phase1(&mut self) -> bool {
        let Some(opn) = self.checker.paxos.max_chosen() else { return false };
        if self.checker.paxos.chosen(opn).is_none() {
            return false;
        }
        let len = self.config.params.max_log_length;
        let able = self.live_replicas().filter(|(_, r)| opn >= r.acceptor().log_truncation_point).count();
        if able < self.config.quorum() || len == 0 {
            return false;
        }
        let top = self.live_replicas().map(|(_, r)| r.acceptor().max_bal).max().unwrap_or_default();
        let rogue = (usize::from(top.proposer) + 1) % self.replicas.len();
        let bal = Ballot { seqno: top.seqno + 1, proposer: rogue as u8 };
        self.record(TraceKind::Planted("proposer skipped phase 1: 2a with a new batch for a chosen operation"));
        let from = self.replica_eps[rogue];
        let targets: Vec<usize> = self.live_replicas().map(|(i, _)| i).collect();
        let forged = forged_batch();
        for i in targets {
            let msg = RslMsg::TwoA { bal, opn, batch: Bytes(&forged) };
            self.forge_to_replica(i, from, &msg);
        }
        true
    }

    fn plant_forge_reply(&mut self) -> bool {
        let Some(j) = self
            .clients
            .iter()
            .position(|c| c.current.is_some_and(|h| matches!(self.history[h].call, KvCall::Get(_))) && !c.crashed)
        else {
            return false;
        };
        let (ep, seqno) = (self.clients[j].ep, self.clients[j].seqno);
        let mut reply = [0u8; 64];
        let Ok(r) = postcard::to_slice(&KvReply::Value(Some(Bytes(b"forged"))), &mut reply) else { return false };
        let msg = RslMsg::Reply { seqno, reply: Bytes(r) };
        let mut bytes = [0u8; 256];
        let Ok(n) = wire::encode(Protocol::Rsl, &msg, &mut bytes) else { return false };
        self.record(TraceKind::Planted("forged reply Value(\"forged\") from r0"));
        let from = self.replica_eps[0];
        // The forged reply is reported as r0's send, then delivered without loss.
        let ev = Ev::ReplySent { replica: 0, client: ep_id(ep), seqno, reply: r };
        self.checker.observe(&ev, &mut self.violations);
        self.net.inject(self.now, from, ep, &bytes[..n], 1);
        true
    }

    fn plant_forge_request(&mut self) -> bool {
        let Some(j) = self.clients.iter().position(|c| c.current.is_some() && !c.crashed) else { return false };
        if self.leader().is_none() {
            return false;
        }
        let (ep, seqno) = (self.clients[j].ep, self.clients[j].seqno + 1_000);
        let mut req = [0u8; 64];
        let n = encode_call(&KvCall::Put(b"k0".to_vec(), b"forged".to_vec()), &mut req);
        let msg = RslMsg::Request { seqno, request: Bytes(&req[..n]) };
        let mut bytes = [0u8; 256];
        let Ok(len) = wire::encode(Protocol::Rsl, &msg, &mut bytes) else { return false };
        self.record(TraceKind::Planted("forged request from a client endpoint with a seqno it never sent"));
        for i in 0..self.replicas.len() {
            self.net.inject(self.now, ep, self.replica_eps[i], &bytes[..len], 1);
        }
        true
    }
}

/// The abstraction of a replica's app: the spec map read through `KvApp::get` over the key
/// universe; a map with keys outside the universe gets a marker key so it never matches.
fn abstract_app(app: &SimApp, keys: u8) -> SpecKv {
    let mut map = BTreeMap::new();
    for k in 0..keys {
        let key = [b'k', b'0' + k];
        if let Some(v) = app.get(&key) {
            map.insert(key.to_vec(), v.to_vec());
        }
    }
    if app.len() != map.len() {
        map.insert(b"<keys outside the workload>".to_vec(), (app.len() as u64).to_le_bytes().to_vec());
    }
    SpecKv(BytesKvApp { map })
}

/// A batch no client sent: one Get of `k0` from an endpoint outside the cluster.
fn forged_batch() -> Vec<u8> {
    let mut req = [0u8; 64];
    let n = encode_call(&KvCall::Get(b"k0".to_vec()), &mut req);
    let entry = batch::BatchEntry { client: Endpoint::v4([10, 9, 9, 9], 1), seqno: 1, request: Bytes(&req[..n]) };
    let mut buf = [0u8; 128];
    postcard::to_slice(&entry, &mut buf).expect("a small entry fits").to_vec()
}

fn encode_call(call: &KvCall, buf: &mut [u8]) -> usize {
    match call {
        KvCall::Get(k) => KvOp::Get(Bytes(k)).encode(buf),
        KvCall::Put(k, v) => KvOp::Put(Bytes(k), Bytes(v)).encode(buf),
        KvCall::Delete(k) => KvOp::Delete(Bytes(k)).encode(buf),
    }
    .expect("small ops fit 256 bytes")
}

fn decode_result(reply: &[u8]) -> KvResult {
    match KvReply::decode(reply) {
        Some(KvReply::Value(v)) => KvResult::Value(v.map(|b| b.0.to_vec())),
        Some(KvReply::Done) => KvResult::Done,
        _ => KvResult::Error,
    }
}
