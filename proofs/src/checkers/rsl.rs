//! RSL checkers: agreement, Paxos invariants, monotonicity and refinement, judged per step.
//!
//! The driver reports, after every host step, what changed ([`RslEvent`]): requests clients
//! sent, each acceptor's promise and truncation point, the votes it holds, each replica's
//! executed prefix (count, digest chain, app state) and every reply a replica sends.
//!
//! **Abstraction function.** The spec state is the app state after the decided batches
//! `0..k`, where `k` is the longest executed prefix among replicas (the chosen log prefix).
//! The refinement checker keeps a replay of the spec ([`ExactlyOnceRslSpec`]) driven by the
//! batches *chosen* by acceptor votes (not by what replicas say they executed), and checks
//! after every step that the abstract state moved by zero (stutter) or more whole spec steps,
//! that every replica's executed prefix and app state equal the spec's at the same `k`, and
//! that every reply sent is the spec's reply to a request a client really sent.

use std::collections::{BTreeMap, BTreeSet};

use super::{Checker, Violation};
use crate::spec::rsl::{AppReply, AppRequest, AppSpec, ExactlyOnceRslSpec};

/// A ballot as `(round, proposer)`, ordered lexicographically like IronRSL's `BalLt`.
pub type Bal = (u64, u64);

/// What a driver saw happen in one step of an RSL cluster.
#[derive(Clone, Copy, Debug)]
pub enum RslEvent<'a, A> {
    /// Client `client` sent request `seqno` with these bytes (report the first send only).
    RequestSent {
        /// Client id.
        client: u64,
        /// The client's seqno.
        seqno: u64,
        /// Request bytes.
        request: &'a [u8],
    },
    /// A replica's acceptor after a step.
    Acceptor {
        /// Replica index.
        replica: usize,
        /// Highest ballot promised or voted in.
        max_bal: Bal,
        /// Votes below this were discarded.
        log_truncation_point: u64,
    },
    /// An acceptor holds a vote (report votes held after any step that changed them).
    Vote {
        /// Replica index of the acceptor.
        acceptor: usize,
        /// Operation number.
        opn: u64,
        /// Ballot of the vote.
        bal: Bal,
        /// Batch bytes voted for.
        batch: &'a [u8],
    },
    /// A replica's executed prefix after a step in which it changed.
    Executed {
        /// Replica index.
        replica: usize,
        /// Batches executed (`ops_complete`).
        ops_complete: u64,
        /// The replica's digest chain over the executed batches.
        digest: u64,
        /// The replica's app state, abstracted to the spec's app type.
        app: &'a A,
    },
    /// A crashed replica restarted from its durable state: its acceptor must be where it
    /// was (ballots and truncation point keep their monotonicity across the restart), while
    /// its executed prefix starts again from zero and is rebuilt from peers.
    Restarted {
        /// Replica index.
        replica: usize,
    },
    /// A replica restarted without its durable state (a wiped disk, an in-memory replica):
    /// it rejoins as a new acceptor, so its ballots and truncation point start afresh.
    /// Its earlier votes stay counted: what was chosen stays chosen.
    RestartedWithoutState {
        /// Replica index.
        replica: usize,
    },
    /// A replica sent a reply datagram to a client.
    ReplySent {
        /// Replica index.
        replica: usize,
        /// Client id (the destination).
        client: u64,
        /// Seqno the reply claims to answer.
        seqno: u64,
        /// Reply bytes.
        reply: &'a [u8],
    },
}

/// How the engine encodes what the checkers must read: batches and the executed-digest chain.
pub trait RslCodec {
    /// Decodes batch bytes into requests; `None` if they are not a batch.
    fn decode_batch(batch: &[u8]) -> Option<Vec<AppRequest>>;
    /// The digest chain before any batch.
    fn initial_digest() -> u64;
    /// The digest chain after executing `batch` as operation `opn` on top of `prev`.
    fn chain(prev: u64, opn: u64, batch: &[u8]) -> u64;
}

/// **Agreement**: no two replicas ever execute different batches at the same op number.
///
/// Compares digest chains: equal `ops_complete` must mean equal digests. IronRSL:
/// `lemma_ChosenQuorumsMatchValue` + `lemma_ExecutedOperationAndAllBeforeItWereChosen`
/// (every executed prefix is a prefix of the one chosen sequence).
#[derive(Clone, Debug, Default)]
pub struct AgreementChecker {
    first_seen: BTreeMap<u64, (usize, u64)>,
}

impl<A> Checker<RslEvent<'_, A>> for AgreementChecker {
    fn name(&self) -> &'static str {
        "agreement"
    }

    fn observe(&mut self, event: &RslEvent<'_, A>, out: &mut Vec<Violation>) {
        let RslEvent::Executed { replica, ops_complete, digest, .. } = *event else { return };
        match self.first_seen.get(&ops_complete) {
            Some(&(first, d)) if d != digest => out.push(Violation::new(
                "agreement",
                "lemma_ExecutedOperationAndAllBeforeItWereChosen",
                format!(
                    "replica {replica} and replica {first} executed different batches within the first \
                     {ops_complete} operations (digests {digest:#018x} vs {d:#018x})"
                ),
            )),
            Some(_) => {}
            None => {
                self.first_seen.insert(ops_complete, (replica, digest));
            }
        }
    }
}

impl AgreementChecker {
    /// True if some replica was seen with exactly `ops_complete` batches executed.
    pub fn seen(&self, ops_complete: u64) -> bool {
        self.first_seen.contains_key(&ops_complete)
    }

    /// Forgets prefixes shorter than `opn` (every replica that matters has passed them).
    pub fn prune_below(&mut self, opn: u64) {
        self.first_seen = self.first_seen.split_off(&opn);
    }
}

/// The votes of one `(opn, ballot)`: the value and who voted for it.
#[derive(Clone, Debug)]
struct BallotVotes {
    value: Vec<u8>,
    voters: u64,
}

/// **Paxos invariants** over acceptor votes, and the chosen values they define.
///
/// * One value per ballot and operation (IronRSL `lemma_2aMessagesFromSameBallotAndOperationMatch`,
///   seen through `lemma_Find2aThatCausedVote`): two acceptors never vote for different
///   batches at the same `(opn, ballot)`.
/// * A chosen value is never changed (`lemma_ChosenQuorumsMatchValue`,
///   `lemma_ChosenQuorumAnd2aFromLaterBallotMatchValues`): once a quorum voted for `v` at
///   `opn` in one ballot, any quorum at any ballot for `opn` voted for `v`.
#[derive(Clone, Debug)]
pub struct PaxosChecker {
    quorum: u32,
    votes: BTreeMap<(u64, Bal), BallotVotes>,
    chosen: BTreeMap<u64, (Bal, Vec<u8>)>,
    floor: u64,
}

impl PaxosChecker {
    /// A checker for a cluster whose quorum is `quorum` acceptors.
    pub fn new(quorum: usize) -> Self {
        Self { quorum: quorum as u32, votes: BTreeMap::new(), chosen: BTreeMap::new(), floor: 0 }
    }

    /// The value chosen at `opn` (the first one a quorum voted for in one ballot), if any.
    pub fn chosen(&self, opn: u64) -> Option<&[u8]> {
        self.chosen.get(&opn).map(|(_, v)| &v[..])
    }

    /// The highest operation number with a chosen value.
    pub fn max_chosen(&self) -> Option<u64> {
        self.chosen.keys().next_back().copied()
    }

    /// Forgets operations below `opn` (already executed by every live replica) and ignores
    /// votes for them from now on.
    pub fn prune_below(&mut self, opn: u64) {
        if opn > self.floor {
            self.floor = opn;
            self.votes = self.votes.split_off(&(opn, (0, 0)));
            self.chosen = self.chosen.split_off(&opn);
        }
    }
}

impl<A> Checker<RslEvent<'_, A>> for PaxosChecker {
    fn name(&self) -> &'static str {
        "invariant"
    }

    fn observe(&mut self, event: &RslEvent<'_, A>, out: &mut Vec<Violation>) {
        let RslEvent::Vote { acceptor, opn, bal, batch } = *event else { return };
        if opn < self.floor {
            return;
        }
        let bit = 1u64 << (acceptor % 64);
        let entry = self.votes.entry((opn, bal)).or_insert_with(|| BallotVotes { value: batch.to_vec(), voters: 0 });
        if entry.value != batch {
            out.push(Violation::new(
                "invariant",
                "lemma_2aMessagesFromSameBallotAndOperationMatch",
                format!(
                    "acceptor {acceptor} voted for a different batch at operation {opn} in ballot {bal:?} \
                     than acceptors {:#b} ({} vs {} bytes)",
                    entry.voters,
                    batch.len(),
                    entry.value.len()
                ),
            ));
            return;
        }
        if entry.voters & bit != 0 {
            return;
        }
        entry.voters |= bit;
        if entry.voters.count_ones() < self.quorum {
            return;
        }
        match self.chosen.get(&opn) {
            None => {
                self.chosen.insert(opn, (bal, entry.value.clone()));
            }
            Some((first_bal, v)) if *v != entry.value => out.push(Violation::new(
                "invariant",
                "lemma_ChosenQuorumsMatchValue",
                format!(
                    "operation {opn}: a quorum chose a different batch in ballot {bal:?} ({} bytes) than the \
                     one chosen in ballot {first_bal:?} ({} bytes)",
                    entry.value.len(),
                    v.len()
                ),
            )),
            Some(_) => {}
        }
    }
}

/// **Monotonicity** of per-replica state: acceptor ballots, truncation points and executed
/// counts never decrease.
///
/// IronRSL: the acceptor's `max_bal` only grows (`LAcceptorProcess1a`/`2a`, used by
/// `lemma_VotePrecedesMaxBal` and `lemma_MaxBalLeqMaxBallotPrimarySent1a`);
/// `lemma_LogTruncationPointMonotonic`; `lemma_OpsCompleteMonotonic`.
#[derive(Clone, Debug, Default)]
pub struct MonotoneChecker {
    last: BTreeMap<usize, (Bal, u64, u64)>,
}

impl<A> Checker<RslEvent<'_, A>> for MonotoneChecker {
    fn name(&self) -> &'static str {
        "invariant"
    }

    fn observe(&mut self, event: &RslEvent<'_, A>, out: &mut Vec<Violation>) {
        match *event {
            RslEvent::Acceptor { replica, max_bal, log_truncation_point } => {
                let e = self.last.entry(replica).or_insert((max_bal, log_truncation_point, 0));
                if max_bal < e.0 {
                    out.push(Violation::new(
                        "invariant",
                        "acceptor max_bal never decreases (lemma_VotePrecedesMaxBal)",
                        format!("replica {replica}: max_bal went from {:?} down to {max_bal:?}", e.0),
                    ));
                }
                if log_truncation_point < e.1 {
                    out.push(Violation::new(
                        "invariant",
                        "lemma_LogTruncationPointMonotonic",
                        format!("replica {replica}: truncation point went from {} down to {log_truncation_point}", e.1),
                    ));
                }
                e.0 = e.0.max(max_bal);
                e.1 = e.1.max(log_truncation_point);
            }
            RslEvent::Executed { replica, ops_complete, .. } => {
                let e = self.last.entry(replica).or_insert(((0, 0), 0, ops_complete));
                if ops_complete < e.2 {
                    out.push(Violation::new(
                        "invariant",
                        "lemma_OpsCompleteMonotonic",
                        format!("replica {replica}: ops_complete went from {} down to {ops_complete}", e.2),
                    ));
                }
                e.2 = e.2.max(ops_complete);
            }
            RslEvent::Restarted { replica } => {
                if let Some(e) = self.last.get_mut(&replica) {
                    e.2 = 0;
                }
            }
            RslEvent::RestartedWithoutState { replica } => {
                self.last.remove(&replica);
            }
            _ => {}
        }
    }
}

/// **Refinement** of the cluster to [`ExactlyOnceRslSpec`]: see the module docs.
///
/// Rules (IronRSL `RefinementProof/`):
/// * `lemma_DecidedOperationWasChosen`: a replica executes only batches a quorum of
///   acceptors voted for in one ballot.
/// * `lemma_DecidedRequestWasSentByClient`: every request in an executed batch was sent by
///   that client.
/// * `lemma_ProduceAbstractStateSatisfiesRefinementRelation`: each replica's executed prefix
///   and app state equal the spec's after the same number of batches (the abstract state moves
///   by 0 or more whole spec steps per host step).
/// * `lemma_ReplySentIsAllowed`: every reply a replica sends is the spec's reply for that
///   `(client, seqno)`.
#[derive(Clone, Debug)]
pub struct RefinementChecker<A> {
    spec: ExactlyOnceRslSpec<A>,
    /// `chain[k]`: the digest after the first `k` chosen batches.
    chain: Vec<u64>,
    /// `states[k - states_base]`: the app state after `k` batches.
    states: Vec<A>,
    states_base: u64,
    sent: BTreeSet<(u64, u64, Vec<u8>)>,
    /// Spec steps taken (batches executed by the spec).
    steps_taken: u64,
}

impl<A: AppSpec> RefinementChecker<A> {
    /// A checker whose spec starts from `app` and whose digest chain starts at `initial_digest`.
    pub fn new(app: A, initial_digest: u64) -> Self {
        Self {
            states: vec![app.clone()],
            spec: ExactlyOnceRslSpec::new(app),
            chain: vec![initial_digest],
            states_base: 0,
            sent: BTreeSet::new(),
            steps_taken: 0,
        }
    }

    /// Spec steps taken: the length of the chosen prefix executed by some replica.
    pub fn spec_ops(&self) -> u64 {
        self.steps_taken
    }

    /// The current spec state.
    pub fn spec(&self) -> &ExactlyOnceRslSpec<A> {
        &self.spec
    }

    /// Forgets spec app states below `k` (every replica that matters has passed them).
    pub fn prune_below(&mut self, k: u64) {
        let k = k.min(self.steps_taken);
        if k > self.states_base {
            self.states.drain(..(k - self.states_base) as usize);
            self.states_base = k;
        }
    }

    /// A client really sent this request.
    pub fn request_sent(&mut self, client: u64, seqno: u64, request: &[u8]) {
        self.sent.insert((client, seqno, request.to_vec()));
    }

    /// Advances the spec to `k` batches using the chosen values; false if it could not.
    fn advance<Co: RslCodec>(
        &mut self,
        replica: usize,
        k: u64,
        chosen: impl Fn(u64) -> Option<Vec<u8>>,
        out: &mut Vec<Violation>,
    ) -> bool {
        while self.steps_taken < k {
            let opn = self.steps_taken;
            let Some(batch) = chosen(opn) else {
                out.push(Violation::new(
                    "refinement",
                    "lemma_DecidedOperationWasChosen",
                    format!("replica {replica} executed operation {opn}, but no quorum of acceptors voted for any batch there"),
                ));
                return false;
            };
            let Some(requests) = Co::decode_batch(&batch) else {
                out.push(Violation::new(
                    "refinement",
                    "lemma_DecidedOperationWasChosen",
                    format!("the batch chosen at operation {opn} does not decode"),
                ));
                return false;
            };
            for r in &requests {
                if !self.sent.contains(&(r.client, r.seqno, r.request.clone())) {
                    out.push(Violation::new(
                        "refinement",
                        "lemma_DecidedRequestWasSentByClient",
                        format!(
                            "operation {opn} executes request seqno {} of client {:#x} ({} bytes), which that client never sent",
                            r.seqno,
                            r.client,
                            r.request.len()
                        ),
                    ));
                }
            }
            self.spec.execute_batch(&requests);
            let prev = *self.chain.last().unwrap_or(&Co::initial_digest());
            self.chain.push(Co::chain(prev, opn, &batch));
            self.states.push(self.spec.app.clone());
            self.steps_taken += 1;
        }
        true
    }

    fn on_executed<Co: RslCodec>(
        &mut self,
        replica: usize,
        k: u64,
        digest: u64,
        app: &A,
        chosen: impl Fn(u64) -> Option<Vec<u8>>,
        out: &mut Vec<Violation>,
    ) {
        if !self.advance::<Co>(replica, k, chosen, out) {
            return;
        }
        let rule = "lemma_ProduceAbstractStateSatisfiesRefinementRelation";
        if self.chain.get(k as usize) != Some(&digest) {
            out.push(Violation::new(
                "refinement",
                rule,
                format!("replica {replica} executed {k} batches that are not the first {k} chosen batches"),
            ));
            return;
        }
        if k < self.states_base {
            return;
        }
        match self.states.get((k - self.states_base) as usize) {
            Some(s) if s != app => out.push(Violation::new(
                "refinement",
                rule,
                format!("replica {replica}'s app state after {k} batches differs from the spec's: {app:?} vs {s:?}"),
            )),
            _ => {}
        }
    }

    fn on_reply(&self, replica: usize, client: u64, seqno: u64, reply: &[u8], out: &mut Vec<Violation>) {
        let r = AppReply { client, seqno, reply: reply.to_vec() };
        if self.spec.reply_is_justified(&r) {
            return;
        }
        // A query answered without a log write reads one of the states the spec passed
        // through (when exactly is the linearizability checker's business).
        let requests = self.sent.range((client, seqno, Vec::new())..(client, seqno.saturating_add(1), Vec::new()));
        let states = || self.states.iter().chain(core::iter::once(&self.spec.app));
        for (_, _, request) in requests {
            if states().any(|s| s.query(request).as_deref() == Some(reply)) {
                return;
            }
        }
        let why = match self.spec.replies.get(&(client, seqno)) {
            Some(expected) => {
                format!("the spec's reply is {} bytes {:02x?}", expected.len(), &expected[..expected.len().min(16)])
            }
            None => "the spec has not executed that request".to_string(),
        };
        out.push(Violation::new(
            "refinement",
            "lemma_ReplySentIsAllowed",
            format!(
                "replica {replica} sent client {client:#x} a reply for seqno {seqno} ({} bytes {:02x?}) that the spec never produced: {why}",
                reply.len(),
                &reply[..reply.len().min(16)]
            ),
        ));
    }
}

/// Every RSL checker, fed the same events in the right order (Paxos before refinement, which
/// reads the chosen values).
#[derive(Clone, Debug)]
pub struct RslChecker<A, Co> {
    /// Agreement on executed prefixes.
    pub agreement: AgreementChecker,
    /// One value per ballot, chosen-value stability.
    pub paxos: PaxosChecker,
    /// Ballots, truncation points and executed counts never decrease.
    pub monotone: MonotoneChecker,
    /// Refinement to the exactly-once RSL service spec.
    pub refinement: RefinementChecker<A>,
    codec: core::marker::PhantomData<fn() -> Co>,
}

impl<A: AppSpec, Co: RslCodec> RslChecker<A, Co> {
    /// Checkers for a cluster with quorum size `quorum`, whose app starts as `app`.
    pub fn new(quorum: usize, app: A) -> Self {
        Self {
            agreement: AgreementChecker::default(),
            paxos: PaxosChecker::new(quorum),
            monotone: MonotoneChecker::default(),
            refinement: RefinementChecker::new(app, Co::initial_digest()),
            codec: core::marker::PhantomData,
        }
    }

    /// Forgets history below `opn`: every replica still running has executed that far.
    pub fn prune_below(&mut self, opn: u64) {
        self.agreement.prune_below(opn);
        self.paxos.prune_below(opn);
        self.refinement.prune_below(opn);
    }
}

impl<A: AppSpec, Co: RslCodec> Checker<RslEvent<'_, A>> for RslChecker<A, Co> {
    fn name(&self) -> &'static str {
        "rsl"
    }

    fn observe(&mut self, event: &RslEvent<'_, A>, out: &mut Vec<Violation>) {
        match *event {
            RslEvent::RequestSent { client, seqno, request } => self.refinement.request_sent(client, seqno, request),
            RslEvent::Acceptor { .. } | RslEvent::Restarted { .. } | RslEvent::RestartedWithoutState { .. } => {
                self.monotone.observe(event, out)
            }
            RslEvent::Vote { .. } => self.paxos.observe(event, out),
            RslEvent::Executed { replica, ops_complete, digest, app } => {
                self.monotone.observe(event, out);
                self.agreement.observe(event, out);
                let paxos = &self.paxos;
                self.refinement.on_executed::<Co>(
                    replica,
                    ops_complete,
                    digest,
                    app,
                    |opn| paxos.chosen(opn).map(<[u8]>::to_vec),
                    out,
                );
            }
            RslEvent::ReplySent { replica, client, seqno, reply } => {
                self.refinement.on_reply(replica, client, seqno, reply, out)
            }
        }
    }
}
