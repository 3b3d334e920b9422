//! Cross-host invariants of IronRSL, checked over the set of every packet ever sent.
//!
//! IronFleet states its protocol invariants over `environment.sentPackets`, the set of all
//! packets sent so far; an unordered duplicating network (stateright's, or a simulator's log)
//! is exactly that set. Each check here names the IronRSL lemma it stands for (in
//! `Protocol/RSL/CommonProof/*.i.dfy`). The local invariants of each role live next to the
//! role's state in the engine (`invariant()` functions, `Replica::check_invariants`,
//! `Monotone::check_step`); these are the ones that relate several hosts.
//!
//! Inputs are decoded packets ([`Sent`]); the model checker and the fuzzers decode the raw
//! datagrams with the engine's own wire codec.

use std::collections::{BTreeMap, BTreeSet};

use fleet_engine::rsl::app::App;
use fleet_engine::rsl::batch;
use fleet_engine::rsl::{Ballot, Replica, RslConfig, RslMsg};
use fleet_engine::Endpoint;

use crate::spec::rsl::{AppReply, AppRequest, AppSpec, RslSpec};

/// One packet as sent: source, destination and the decoded message.
#[derive(Clone, Copy, Debug)]
pub struct Sent<'a> {
    /// The sender.
    pub src: Endpoint,
    /// The destination.
    pub dst: Endpoint,
    /// The message.
    pub msg: RslMsg<'a>,
}

/// A broken cross-host invariant: which lemma, and what was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The IronRSL lemma the failed check stands for.
    pub lemma: &'static str,
    /// What was observed.
    pub detail: String,
}

impl core::fmt::Display for Violation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.lemma, self.detail)
    }
}

fn violation(lemma: &'static str, detail: String) -> Violation {
    Violation { lemma, detail }
}

/// A value chosen for one operation: a quorum of distinct replicas sent a 2b for it in
/// one ballot (IronRSL's `IsValidQuorumOf2bs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChosenAt {
    /// The ballot of the quorum.
    pub bal: Ballot,
    /// The batch (encoded).
    pub batch: Vec<u8>,
    /// The replicas whose 2b formed the quorum (indices).
    pub senders: BTreeSet<usize>,
}

/// Every (operation, ballot, value) that a quorum of 2b packets chose.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chosen {
    /// Per operation number, every quorum found.
    pub by_opn: BTreeMap<u64, Vec<ChosenAt>>,
}

/// The replica index of `ep` in `config`.
fn index_of<const R: usize>(config: &RslConfig<R>, ep: Endpoint) -> Option<usize> {
    config.index_of(ep)
}

/// Finds every quorum of 2b packets in `sent`, with `quorum` the quorum size (a checker
/// may pass a size other than the engine's own, e.g. to show why `n/2` is wrong). A 2b
/// names a ballot and an operation; its value is the batch of that ballot's 2a for the
/// operation, sent by the ballot's proposer. Should two different 2a share a ballot and an
/// operation, a quorum chooses each of them, and [`Chosen::check_agreement`] reports it.
pub fn chosen<const R: usize>(config: &RslConfig<R>, quorum: usize, sent: &[Sent<'_>]) -> Chosen {
    let mut votes: BTreeMap<(u64, Ballot), BTreeSet<usize>> = BTreeMap::new();
    let mut proposed: BTreeMap<(u64, Ballot), BTreeSet<&[u8]>> = BTreeMap::new();
    for s in sent {
        match s.msg {
            RslMsg::TwoB { bal, opn, .. } => {
                if let Some(i) = index_of(config, s.src) {
                    votes.entry((opn, bal)).or_default().insert(i);
                }
            }
            RslMsg::TwoA { bal, opn, batch } if index_of(config, s.src) == Some(usize::from(bal.proposer)) => {
                proposed.entry((opn, bal)).or_default().insert(batch.0);
            }
            _ => {}
        }
    }
    let mut out = Chosen::default();
    for ((opn, bal), senders) in votes {
        if senders.len() < quorum {
            continue;
        }
        for batch in proposed.get(&(opn, bal)).into_iter().flatten() {
            out.by_opn.entry(opn).or_default().push(ChosenAt { bal, batch: batch.to_vec(), senders: senders.clone() });
        }
    }
    out
}

impl Chosen {
    /// The value chosen for `opn` (the first quorum found; [`Chosen::check_agreement`]
    /// checks that all agree).
    pub fn value(&self, opn: u64) -> Option<&[u8]> {
        self.by_opn.get(&opn).and_then(|v| v.first()).map(|c| &c.batch[..])
    }

    /// Agreement: two quorums of 2b for one operation carry one value
    /// (IronRSL `lemma_ChosenQuorumsMatchValue`, CommonProof/Chosen.i.dfy).
    pub fn check_agreement(&self) -> Result<(), Violation> {
        for (opn, quorums) in &self.by_opn {
            if let Some(first) = quorums.first() {
                if let Some(other) = quorums.iter().find(|q| q.batch != first.batch) {
                    return Err(violation(
                        "lemma_ChosenQuorumsMatchValue",
                        format!(
                            "operation {opn}: {:?} chose {} (2b from {:?}) but {:?} chose {} (2b from {:?})",
                            first.bal,
                            describe_batch(&first.batch),
                            first.senders,
                            other.bal,
                            describe_batch(&other.batch),
                            other.senders
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The executed-batch digest chain a replica must hold after executing operations
    /// `0..ops` (the engine's `executor::chain_digest`), or `None` if some operation below
    /// `ops` was never chosen.
    pub fn digest_chain(&self, ops: u64) -> Option<u64> {
        let mut h = fleet_engine::rsl::executor::INITIAL_EXECUTED_DIGEST;
        for opn in 0..ops {
            h = fleet_engine::rsl::executor::chain_digest(h, opn, self.value(opn)?);
        }
        Some(h)
    }
}

/// 2a packets of one ballot and operation carry one value
/// (IronRSL `lemma_2aMessagesFromSameBallotAndOperationMatch`, CommonProof/Message2a.i.dfy),
/// and only the ballot's leader sends them.
pub fn check_2a_unique<const R: usize>(config: &RslConfig<R>, sent: &[Sent<'_>]) -> Result<(), Violation> {
    let mut seen: BTreeMap<(Ballot, u64), &[u8]> = BTreeMap::new();
    for s in sent {
        if let RslMsg::TwoA { bal, opn, batch } = s.msg {
            if index_of(config, s.src) != Some(usize::from(bal.proposer)) {
                return Err(violation(
                    "lemma_2aMessagesFromSameBallotAndOperationMatch",
                    format!("2a for {bal:?} sent by {} which does not lead it", s.src),
                ));
            }
            match seen.get(&(bal, opn)) {
                Some(prev) if *prev != batch.0 => {
                    return Err(violation(
                        "lemma_2aMessagesFromSameBallotAndOperationMatch",
                        format!(
                            "two 2a in {bal:?} for operation {opn}: {} and {}",
                            describe_batch(prev),
                            describe_batch(batch.0)
                        ),
                    ))
                }
                Some(_) => {}
                None => {
                    seen.insert((bal, opn), batch.0);
                }
            }
        }
    }
    Ok(())
}

/// A 2a in a ballot above a chosen quorum's carries the chosen value
/// (IronRSL `lemma_ChosenQuorumAnd2aFromLaterBallotMatchValues`, CommonProof/Chosen.i.dfy:
/// the inductive heart of Paxos safety, which rests on quorum intersection,
/// `lemma_QuorumIndexOverlap`).
pub fn check_2a_after_chosen(chosen: &Chosen, sent: &[Sent<'_>]) -> Result<(), Violation> {
    for s in sent {
        if let RslMsg::TwoA { bal, opn, batch } = s.msg {
            for q in chosen.by_opn.get(&opn).into_iter().flatten() {
                if q.bal < bal && q.batch != batch.0 {
                    return Err(violation(
                        "lemma_ChosenQuorumAnd2aFromLaterBallotMatchValues",
                        format!(
                            "operation {opn}: {} chosen in {:?}, but a 2a in later {bal:?} proposes {}",
                            describe_batch(&q.batch),
                            q.bal,
                            describe_batch(batch.0)
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A replica's executed state is the chosen sequence: every operation it executed (or
/// installed by state transfer) was chosen, and its digest chain is the chain of the
/// chosen values (IronRSL `lemma_ExecutedOperationAndAllBeforeItWereChosen` and
/// `lemma_TransferredStateBasedOnChosenOperations`, CommonProof/Chosen.i.dfy).
pub fn check_executed_chosen<
    A,
    const R: usize,
    const W: usize,
    const D: usize,
    const QB: usize,
    const C: usize,
    const RB: usize,
    const TB: usize,
>(
    replica: &Replica<A, R, W, D, QB, C, RB, TB>,
    chosen: &Chosen,
) -> Result<(), Violation>
where
    A: App,
{
    let ex = replica.executor();
    let lemma = "lemma_ExecutedOperationAndAllBeforeItWereChosen";
    match chosen.digest_chain(ex.ops_complete) {
        None => {
            let missing = (0..ex.ops_complete).find(|o| chosen.value(*o).is_none()).unwrap_or(0);
            Err(violation(
                lemma,
                format!(
                    "replica {} executed {} operations but operation {missing} was never chosen",
                    replica.id(),
                    ex.ops_complete
                ),
            ))
        }
        Some(d) if d != ex.executed_digest => Err(violation(
            lemma,
            format!(
                "replica {} executed {} operations that are not the chosen ones (digest {:#x}, chosen chain {:#x})",
                replica.id(),
                ex.ops_complete,
                ex.executed_digest,
                d
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// A stable identity for a client endpoint in spec histories (injective on IPv4).
pub fn client_id(ep: Endpoint) -> u64 {
    match ep.ip {
        fleet_engine::IpAddr::V4(o) => (u64::from(u32::from_be_bytes(o)) << 16) | u64::from(ep.port),
        fleet_engine::IpAddr::V6(o) => {
            let mut h = Fnv(FNV_OFFSET);
            h.write(&o);
            h.write(&ep.port.to_le_bytes());
            h.0 | (1 << 63)
        }
    }
}

/// Replays the longest gap-free prefix of chosen batches through the service spec with
/// Fleet's exactly-once rule (a request at or below the client's last executed seqno is
/// not executed again: the reply cache), returning the spec state.
pub fn replay_chosen<S: AppSpec>(init: &S, chosen: &Chosen) -> RslSpec<S> {
    replay_chosen_with(init, chosen, |_| {})
}

/// Every application state the spec passes through on the chosen prefix (the initial one
/// and the one after each batch): a query answered without a log write must read one.
pub fn chosen_states<S: AppSpec>(init: &S, chosen: &Chosen) -> Vec<S> {
    let mut states = vec![init.clone()];
    replay_chosen_with(init, chosen, |app| states.push(app.clone()));
    states
}

fn replay_chosen_with<S: AppSpec>(init: &S, chosen: &Chosen, mut after_batch: impl FnMut(&S)) -> RslSpec<S> {
    let mut spec = RslSpec::new(init.clone());
    let mut last: BTreeMap<u64, u64> = BTreeMap::new();
    let mut opn = 0u64;
    while let Some(value) = chosen.value(opn) {
        let mut reqs = Vec::new();
        for e in batch::entries(value) {
            let client = client_id(e.client);
            if last.get(&client).is_some_and(|s| e.seqno <= *s) {
                continue;
            }
            last.insert(client, e.seqno);
            reqs.push(AppRequest { client, seqno: e.seqno, request: e.request.0.to_vec() });
        }
        spec.execute_batch(&reqs);
        after_batch(&spec.app);
        opn += 1;
    }
    spec
}

/// Every reply a replica sent is one the spec produced for a request a client sent
/// (IronRSL's service correspondence, `AbstractServiceRSL_s`, via
/// `lemma_ReplyCacheStateInv` in CommonProof/ReplyCache.i.dfy), or, for a query the client
/// sent, the query's answer in one of the spec's `states` (Fleet's reads without a log
/// write; when in that range is the linearizability check's business).
pub fn check_replies_justified<const R: usize, S: AppSpec>(
    config: &RslConfig<R>,
    spec: &RslSpec<S>,
    states_of: impl Fn() -> Vec<S>,
    sent: &[Sent<'_>],
) -> Result<(), Violation> {
    // The spec's states are replayed only if some reply needs them (a query's).
    let states = std::cell::OnceCell::new();
    for s in sent {
        if let RslMsg::Reply { seqno, reply } = s.msg {
            if index_of(config, s.src).is_none() {
                continue;
            }
            let r = AppReply { client: client_id(s.dst), seqno, reply: reply.0.to_vec() };
            let query_answered = || {
                sent.iter().any(|q| match q.msg {
                    RslMsg::Request { seqno: qs, request } if q.src == s.dst && qs == seqno => states
                        .get_or_init(&states_of)
                        .iter()
                        .any(|st: &S| st.query(request.0).as_deref() == Some(reply.0)),
                    _ => false,
                })
            };
            if !spec.reply_is_justified(&r) && !query_answered() {
                return Err(violation(
                    "AbstractServiceRSL_s (reply correspondence)",
                    format!("reply {reply:?} to {} for seqno {seqno} was never produced by the spec", s.dst),
                ));
            }
        }
    }
    Ok(())
}

/// All the checks above, in order of how fundamental they are.
pub fn check_all<
    A,
    S,
    const R: usize,
    const W: usize,
    const D: usize,
    const QB: usize,
    const C: usize,
    const RB: usize,
    const TB: usize,
>(
    replicas: &[&Replica<A, R, W, D, QB, C, RB, TB>],
    sent: &[Sent<'_>],
    spec_init: &S,
) -> Result<(), Violation>
where
    A: App,
    S: AppSpec,
{
    let Some(first) = replicas.first() else { return Ok(()) };
    let config = first.config();
    let chosen = chosen(config, config.quorum(), sent);
    chosen.check_agreement()?;
    check_2a_unique(config, sent)?;
    check_2a_after_chosen(&chosen, sent)?;
    for r in replicas {
        check_executed_chosen(r, &chosen)?;
    }
    let spec = replay_chosen(spec_init, &chosen);
    check_replies_justified(config, &spec, || chosen_states(spec_init, &chosen), sent)
}

/// A short description of a batch for reports: its (client port, seqno) entries.
pub fn describe_batch(b: &[u8]) -> String {
    let entries: Vec<String> = batch::entries(b).map(|e| format!("{}#{}", e.client, e.seqno)).collect();
    if entries.is_empty() {
        "no-op".to_string()
    } else {
        format!("[{}]", entries.join(", "))
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a: a stable identity for IPv6 client endpoints.
struct Fnv(u64);

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}
