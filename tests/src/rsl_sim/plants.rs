//! Planted bugs: the simulator forges or drops messages on purpose, so that a test can see
//! each checker catch a real violation. (`DropReplies` acts in `checks`; `AmnesiacRestart`,
//! `SendBeforeSync`, `EarlyCheckpoint`, `TornSnapshot`, `RejoinAtOnce` and `ForgetIncarnation` in `crash`, the
//! durable binding; `IgnoresSender` in `deliver_wire`.)

use fleet_engine::rsl::apps::kv::KvReply;
use fleet_engine::rsl::batch;
use fleet_engine::rsl::{Ballot, RslMsg, Step};
use fleet_engine::wire::{self, Bytes, Protocol};
use fleet_engine::Endpoint;
use fleet_proofs::checkers::Checker;

use super::clients::KvCall;
use super::spec::{encode_call, ep_id, spec_seqno};
use super::{Ev, RslSim, SimReplica};
use crate::trace::TraceKind;

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
    /// The binding sends a step's datagrams before the step's acceptor records are synced
    /// (half the time): a crash then loses a promise or vote a peer was told about.
    SendBeforeSync,
    /// The network (or a broken replica) never delivers a forwarded request: stray requests
    /// to followers are then never executed and make them suspect every leader.
    NoForward,
    /// The binding tells the replica its records are durable before syncing them: it
    /// reports (and acceptors truncate on) a checkpoint a crash can take back.
    EarlyCheckpoint,
    /// The binding writes snapshots in place and drops the log they cover as it starts: a
    /// crash mid-write leaves a torn snapshot and no log to fall back on.
    TornSnapshot,
    /// A replica restarted without its state (a wiped disk) takes part at once, with an
    /// empty acceptor that promises and votes, instead of rejoining (agreement: it may
    /// vote below a ballot its earlier incarnation promised, or without a vote that made a
    /// value chosen).
    RejoinAtOnce,
    /// The binding does not keep a replica's incarnation and born-with records: after a
    /// power cut during a new cluster's birth, replicas without acceptor state come back as
    /// new incarnations that the born ones do not vouch for, and the cluster waits forever
    /// (liveness).
    ForgetIncarnation,
    /// KV (`--kind kv`): a host restarted without its state takes up its initial ranges at
    /// once instead of joining (host 0 claims every key: lost writes read as absent, two
    /// owners of one key).
    ClaimsAtOnce,
    /// A receiver that checks tags without binding the sender's address: a key holder's
    /// datagram replayed from another (spoofed) member's address opens, and counts as that
    /// member's (auth: no host accepts a datagram no key holder produced).
    IgnoresSender,
    /// A leader answers queries without a quorum's confirmation: every confirmation round
    /// it sends is acknowledged at once by each replica it went to (forged, handed straight
    /// back), so a leader cut off from a newer view answers from its stale state
    /// (linearizability).
    UnconfirmedReads,
    /// Leader leases (implies `--leases`) with replica 0's clock at half speed, beyond the
    /// drift bound the cluster states: as leader it answers queries under a lease that has
    /// ended in real time, after another leader may have chosen writes (linearizability).
    LeaseOverrun,
    /// `--kind members` only: each epoch's replicas start as a new cluster from the new
    /// membership, without the state at the stop-sign (the next configuration taking
    /// effect without the old one's state; acknowledged writes vanish).
    FreshEpoch,
    /// `--kind members` only (every seed durable): the durable binding drops the epoch
    /// records when it restarts a replica, which comes back in an epoch it left.
    ForgetEpoch,
}

impl Plant {
    /// Every plant, for `--plant` parsing and help.
    pub const ALL: [(&'static str, Plant); 19] = [
        ("none", Plant::None),
        ("forge-2b", Plant::ForgeTwoB),
        ("skip-phase1", Plant::SkipPhase1),
        ("forge-reply", Plant::ForgeReply),
        ("forge-request", Plant::ForgeRequest),
        ("drop-replies", Plant::DropReplies),
        ("amnesiac-restart", Plant::AmnesiacRestart),
        ("send-before-sync", Plant::SendBeforeSync),
        ("no-forward", Plant::NoForward),
        ("early-checkpoint", Plant::EarlyCheckpoint),
        ("torn-snapshot", Plant::TornSnapshot),
        ("rejoin-at-once", Plant::RejoinAtOnce),
        ("forget-incarnation", Plant::ForgetIncarnation),
        ("claims-at-once", Plant::ClaimsAtOnce),
        ("ignores-sender", Plant::IgnoresSender),
        ("unconfirmed-reads", Plant::UnconfirmedReads),
        ("lease-overrun", Plant::LeaseOverrun),
        ("fresh-epoch", Plant::FreshEpoch),
        ("forget-epoch", Plant::ForgetEpoch),
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

impl RslSim {
    pub(super) fn maybe_plant(&mut self) {
        for (leader, from, round) in std::mem::take(&mut self.forged_acks) {
            let Ok(RslMsg::ReadConfirm { bal, round }) = wire::decode::<RslMsg<'_>>(Protocol::Rsl, &round) else {
                continue;
            };
            self.fault_counts.planted += 1;
            self.forge_to_replica(leader, from, &RslMsg::ReadAck { bal, round });
        }
        if self.planted || self.options.plant == Plant::None || self.steps < 200 {
            return;
        }
        let done = match self.options.plant {
            Plant::None
            | Plant::DropReplies
            | Plant::AmnesiacRestart
            | Plant::SendBeforeSync
            | Plant::NoForward
            | Plant::EarlyCheckpoint
            | Plant::TornSnapshot
            | Plant::RejoinAtOnce
            | Plant::ForgetIncarnation
            | Plant::ClaimsAtOnce
            | Plant::IgnoresSender
            | Plant::UnconfirmedReads
            | Plant::LeaseOverrun
            | Plant::FreshEpoch
            | Plant::ForgetEpoch => false,
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
        let Ok(n) = wire::encode_rsl(self.config.identity(), msg, &mut bytes) else { return };
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
        self.record(TraceKind::Planted("forged 2a (no-op) and quorum of 2b at the laggard's next operation"));
        // A 2b names no batch: the laggard's own vote of the ballot supplies it, so the
        // forger first has it vote for the no-op, from the ballot's proposer.
        let forged = forged_batch();
        let proposer = self.replica_eps[usize::from(bal.proposer) % self.replicas.len()];
        self.forge_to_replica(lag, proposer, &RslMsg::TwoA { bal, opn: lag_ops, batch: Bytes(&forged) });
        for s in 0..self.config.quorum() {
            let from = self.replica_eps[(lag + 1 + s) % self.replicas.len()];
            let msg = RslMsg::TwoB { bal, opn: lag_ops, opn_ckpt: 0 };
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
        let Some(j) = self.clients.iter().position(|c| {
            !c.group && c.current.first().is_some_and(|&h| matches!(self.history[h].call, KvCall::Get(_))) && !c.crashed
        }) else {
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
        let ev = Ev::ReplySent { replica: 0, client: ep_id(ep), seqno: spec_seqno(seqno, 0), reply: r };
        self.checker.observe(&ev, &mut self.violations);
        self.net.inject(self.now, from, ep, &bytes[..n], 1);
        true
    }

    fn plant_forge_request(&mut self) -> bool {
        let Some(j) = self.clients.iter().position(|c| !c.current.is_empty() && !c.crashed) else { return false };
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

/// A batch no client sent: one Get of `k0` from an endpoint outside the cluster.
fn forged_batch() -> Vec<u8> {
    let mut req = [0u8; 64];
    let n = encode_call(&KvCall::Get(b"k0".to_vec()), &mut req);
    let entry = batch::BatchEntry {
        client: Endpoint::v4([10, 9, 9, 9], 1),
        seqno: 1,
        request: Bytes(&req[..n]),
        kind: batch::EntryKind::Single,
    };
    let mut buf = [0u8; 128];
    postcard::to_slice(&entry, &mut buf).expect("a small entry fits").to_vec()
}
