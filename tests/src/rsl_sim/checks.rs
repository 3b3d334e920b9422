//! What follows every replica step: its durable record is written, its state is reported to
//! the checkers (acceptor, votes, executed prefix, replies, 1b reply ids) and its own
//! invariants are checked, then its datagrams go on the wire.

use fleet_engine::rsl::group;
use fleet_engine::rsl::proposer::Phase;
use fleet_engine::rsl::{Ballot, RslMsg, Step};
use fleet_engine::wire::{self, Protocol};
use fleet_engine::Endpoint;
use fleet_proofs::checkers::rsl::RslEvent;
use fleet_proofs::checkers::{Checker, Violation};

use super::plants::Plant;
use super::spec::{abstract_app, ep_id, spec_seqno};
use super::{Ev, RslSim};

/// Wire tag of `RslMsg::Reply` (postcard variant index, after the 3-byte envelope).
const REPLY_TAG: u8 = 6;
/// Wire tag of `RslMsg::Replies`, a group's reply.
const REPLIES_TAG: u8 = 16;
/// Where an RSL datagram's message tag is: after the envelope and the cluster identity.
const READ_CONFIRM_TAG: u8 = 13;
const TAG_AT: usize = fleet_engine::wire::RSL_HEADER_BYTES;
const ONE_B_TAG: u8 = 2;
const FORWARDED_TAG: u8 = 10;

impl RslSim {
    /// Reports replica `i`'s step to the checkers, then sends its datagrams: those marked
    /// [`Outbox::waits_for_sync`](fleet_engine::Outbox::waits_for_sync) only once the disk
    /// is synced (now, or when a pending sync completes), the rest at once.
    pub(super) fn after_replica_step(&mut self, i: usize, step: Step, out: &fleet_engine::Outbox<'_>) {
        let marked_may_go = self.persist(i, step, out.any_waits_for_sync());
        let Some(r) = self.replicas[i].as_deref() else { return };
        let v = &mut self.violations;
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
        let queries = r.stats().queries_answered;
        self.queries_answered += queries.saturating_sub(self.last_queries[i]);
        self.last_queries[i] = queries;
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
        if self.config.params.lease_ms > 0 {
            for (_, bytes) in out.iter() {
                if bytes.get(TAG_AT) == Some(&ONE_B_TAG) {
                    if let Ok((_, RslMsg::OneB { bal, .. })) = wire::decode_rsl::<RslMsg<'_>>(bytes) {
                        self.promised[i] = self.promised[i].max(bal);
                    }
                }
            }
            self.check_leases();
        }
        let from = self.replica_eps[i];
        for (to, bytes, waits) in out.iter_marked() {
            match self.pending_syncs[i].as_mut() {
                Some(pending) if waits && !marked_may_go => pending.held.push((to, bytes.to_vec())),
                _ => self.replica_sends(i, from, to, bytes),
            }
        }
    }

    /// The lease invariant (`fleet_engine::rsl::lease`): while a replica that leads its
    /// ballot `b` holds a lease on its own clock, fewer than a quorum of replicas have
    /// promised a ballot above `b`, so no newer leader can have chosen anything. Checked in
    /// global time after every replica step; promises are the 1b each replica sent.
    pub(super) fn check_leases(&mut self) {
        let quorum = self.config.quorum();
        for x in 0..self.replicas.len() {
            let now = self.local(x);
            let Some(r) = self.replicas[x].as_deref() else { continue };
            let b = r.reads().ballot();
            let serving = r.status().is_leader && r.status().view == b && r.acceptor().max_bal <= b;
            if !serving || !r.reads().leased(now) {
                continue;
            }
            let above: Vec<usize> = (0..self.promised.len()).filter(|&a| self.promised[a] > b).collect();
            if above.len() >= quorum {
                self.violations.push(Violation::new(
                    "invariant",
                    "fleet: a leader's lease outlives no quorum of promises to a higher ballot (rsl::lease)",
                    format!(
                        "replica {x} leads {:?} under a lease at {} us (its clock {:?}) while replicas {above:?} \
                         promised higher ballots {:?}",
                        (b.seqno, b.proposer),
                        self.now,
                        now,
                        above.iter().map(|&a| (self.promised[a].seqno, self.promised[a].proposer)).collect::<Vec<_>>()
                    ),
                ));
                return;
            }
        }
    }

    /// Replica `i`'s durable acceptor state, after a sync (or a restart, which reads only
    /// what is on disk): the checkers judge what is durable, since what was not synced may
    /// be lost and nobody was told it.
    pub(super) fn report_durable(&mut self, i: usize) {
        let Some(r) = self.replicas[i].as_deref() else { return };
        // A rejoining replica's acceptor is empty and takes no part: nothing to judge yet.
        if r.rejoining().is_some() {
            return;
        }
        // Rejoined for good once that is durable (a crash before restarts it rejoining).
        if self.rejoining[i] {
            self.rejoining[i] = false;
            self.fault_counts.rejoins += 1;
        }
        let v = &mut self.violations;
        let acc = r.acceptor();
        let bal = |b: Ballot| (b.seqno, u64::from(b.proposer));
        let ev = Ev::Acceptor { replica: i, max_bal: bal(acc.max_bal), log_truncation_point: acc.log_truncation_point };
        self.max_truncation = self.max_truncation.max(acc.log_truncation_point);
        self.checker.observe(&ev, v);
        for vote in acc.votes() {
            let ev = Ev::Vote { acceptor: i, opn: vote.opn, bal: bal(vote.bal), batch: &vote.batch };
            self.checker.observe(&ev, v);
        }
        // Votes cast since the last sync and already replaced in memory are durable too.
        for (opn, b, batch) in std::mem::take(&mut self.unsynced_votes[i]) {
            let ev = Ev::Vote { acceptor: i, opn, bal: bal(b), batch: &batch };
            self.checker.observe(&ev, &mut self.violations);
        }
        self.synced_views[i] = Some(super::crash::durable_view(r));
    }

    /// One datagram a replica sends: replies are checked against the spec, then it goes on
    /// the wire (unless a planted bug drops it).
    pub(super) fn replica_sends(&mut self, i: usize, from: Endpoint, to: Endpoint, bytes: &[u8]) {
        if bytes.get(TAG_AT) == Some(&ONE_B_TAG) {
            self.check_one_b_id(i, bytes);
        }
        if bytes.get(TAG_AT) == Some(&READ_CONFIRM_TAG) && self.options.plant == Plant::UnconfirmedReads {
            self.forged_acks.push((i, to, bytes.to_vec()));
        }
        if bytes.get(TAG_AT) == Some(&FORWARDED_TAG) && self.options.plant == Plant::NoForward {
            self.fault_counts.planted += 1;
            return;
        }
        if matches!(bytes.get(TAG_AT), Some(&REPLY_TAG | &REPLIES_TAG)) {
            let client = ep_id(to);
            match wire::decode::<RslMsg<'_>>(Protocol::Rsl, bytes) {
                Ok(RslMsg::Reply { seqno, reply }) => {
                    let ev = Ev::ReplySent { replica: i, client, seqno: spec_seqno(seqno, 0), reply: reply.0 };
                    self.checker.observe(&ev, &mut self.violations);
                }
                // Each answered request of a group is judged as the spec's request it is.
                Ok(RslMsg::Replies { seqno, replies }) => {
                    for (k, reply) in group::replies(replies.0).enumerate() {
                        let Some(reply) = reply else { continue };
                        let ev = Ev::ReplySent { replica: i, client, seqno: spec_seqno(seqno, k), reply };
                        self.checker.observe(&ev, &mut self.violations);
                    }
                }
                _ => {}
            }
            if self.options.plant == Plant::DropReplies && self.gst_us.is_some() {
                return;
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
}
