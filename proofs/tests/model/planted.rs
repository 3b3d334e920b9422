//! The planted bugs: what each one is, and the wrappers that plant them by changing what a
//! replica is shown or what it sends (never the engine).

use fleet_engine::rsl::msg::Vote;
use fleet_engine::rsl::proposer::Phase;
use fleet_engine::rsl::{Ballot, RslMsg};
use fleet_engine::wire;
use fleet_engine::Endpoint;

use super::{encode, endpoint, MReplica, ReplicaNode};

/// Bugs planted by wrapping actors (never in the engine).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Planted {
    /// The last replica's acceptor also votes for 2a packets below its promise: when the
    /// engine refuses such a 2a, the wrapper broadcasts the 2b a buggy acceptor would send.
    LowerBallotAccept,
    /// Every replica counts each 1b, 2b and heartbeat twice, as if the next replica had sent
    /// it too: a quorum of `n/2` real replicas (1 of 3) is enough for promises, decisions
    /// and view changes.
    HalfQuorum,
    /// Acceptors send their 1b without the votes they hold (an acceptor that forgot its
    /// votes, as a restart without durable state would).
    AmnesiacAcceptor,
    /// The proposer mutant `merge_vote`: `if v.bal > self.merged[i].bal` changed to `<`
    /// (engine `rsl/proposer.rs`): phase 1 keeps, at each operation, the *lowest*-ballot
    /// vote reported, in every replica. Emulated exactly, without touching the engine, by
    /// relabelling what each replica is shown: the vote of every 1b for ballot `B` reaches
    /// the engine with its ballot mirrored inside `[INITIAL, B)` ([`mirror_ballot`], an
    /// order-reversing bijection), so the real `>` replaces a merged vote exactly when the
    /// mutant's `<` would, and keeps the same batch. The mirrored ballot is read nowhere
    /// else: `merge_vote` compares it, `Proposer::invariant` checks it stays below `B` (it
    /// does), and re-proposals use only the batch.
    KeepsLowerBallotVote,
    /// The `merge_vote` mutant `>` changed to `==`: a vote at an operation that already has a
    /// merged vote replaces it only at an equal ballot, i.e. phase 1 keeps the *first* vote
    /// reported at each operation (a same-ballot vote carries the same batch, which
    /// `check_2a_unique` checks in every state). Emulated exactly: a 1b vote at an operation
    /// the replica's phase 1 has already merged is shown with the merged vote's ballot, so
    /// the real `>` keeps what it has.
    KeepsFirstVote,
    /// A replica restarted without state takes part at once: the amnesia restart
    /// ([`Scope::restarts`]) creates an ordinary `Replica::new` (an empty acceptor that
    /// promises and votes immediately) instead of `Replica::new_rejoining`.
    ///
    /// [`Scope::restarts`]: super::Scope::restarts
    VotesAtOnce,
    /// In a [`Scope::DURABLE`] restart, the log keeps the replica's incarnation and
    /// born-with records but loses its acceptor records: it rejoins as the same incarnation,
    /// which its peers were born with and still vouch for as one that never acted, so it is
    /// born again with an empty acceptor, though it had promised and voted.
    ///
    /// [`Scope::DURABLE`]: super::Scope::DURABLE
    KeepsIncarnationLosesAcceptor,
    /// A leader answers queries without confirming its ballot: every confirmation round a
    /// replica sends is acknowledged at once, within the step, by forged acknowledgements
    /// from every other replica (as if the leader counted a quorum it never heard from).
    UnconfirmedReads,
    /// The next epoch takes effect without the stop-sign's state: a replica that enters
    /// it (by executing the stop-sign, or told by a peer) is replaced, within that step, by
    /// a replica started from the next epoch's configuration alone (`Replica::new`: no
    /// state, operation 0), and a new machine starts the same way instead of rejoining, as
    /// an operator restarting every server with a new configuration file would. The
    /// overlap a stop-sign requires (the next epoch starts at the stop-sign's operation
    /// plus one, from the state there) is missing; the quorum overlap is not (every epoch
    /// keeps a majority).
    FreshEpoch,
    /// In [`Scope::DURABLE_MEMBERS`], recovery replays a replica's log only up to its first
    /// epoch record of a later epoch than the configuration it is recovered with, and
    /// ignores the rest, as a binding that takes a record it cannot place for the log's
    /// torn tail would: a replica that entered the next epoch comes back in epoch 0, with
    /// its state there (the disk keeps every record; only the replay stops). Unsafe: it
    /// may have promised and voted in the next epoch (its 1b and 2b there left after the
    /// epoch record and its acceptor records were synced), and it follows the cluster into
    /// that epoch again (told by a peer, or executing the stop-sign once more), entering it
    /// as a replica that never took part there: an empty acceptor, a proposer that never
    /// started a ballot. It is the next epoch's amnesiac acceptor: a leader of that epoch
    /// may count its empty 1b, or it may start again a ballot it already used, and a second
    /// value is proposed for an operation the epoch already chose.
    ///
    /// [`Scope::DURABLE_MEMBERS`]: super::Scope::DURABLE_MEMBERS
    ReplayStopsAtEpoch,
    /// In [`Scope::LEARNERS`], a learner that moves into the epoch that adds it takes part
    /// at once instead of rejoining ([`learners::take_part_at_once`]). Harmless the first
    /// time (it never promised or voted there), unsafe for a reincarnation: the new machine
    /// took part in epoch 1, crashed, came back without state as a learner and re-enters
    /// epoch 1 with an acceptor that forgot its promises and votes there.
    ///
    /// [`Scope::LEARNERS`]: super::Scope::LEARNERS
    /// [`learners::take_part_at_once`]: super::learners::take_part_at_once
    LearnerTakesPartAtOnce,
    /// A learner that takes a 2b to be a vote for the batch its own acceptor voted for at
    /// that operation, whatever ballot that vote is in (a 2b names a ballot, not a batch:
    /// only the own vote *of the 2b's ballot* is its batch, `engine/src/rsl/learner.rs`).
    /// Emulated by relabelling what a replica is shown: a 2b for an operation at which its
    /// acceptor holds a vote of another ballot arrives with that vote's ballot, so the
    /// learner counts it toward the vote it holds and executes that vote's batch.
    TwoBForOwnVote,
}

/// AmnesiacAcceptor: a 1b that carries a vote is sent without it.
pub(super) fn forget_votes(bytes: &[u8]) -> Vec<u8> {
    match wire::decode_rsl::<RslMsg<'_>>(bytes) {
        Ok((cluster, RslMsg::OneB { bal, log_truncation_point, reply_id, chunk, chunks, vote: Some(_) })) => {
            let forgotten = RslMsg::OneB { bal, log_truncation_point, reply_id, chunk, chunks, vote: None::<Vote<'_>> };
            encode(cluster, &forgotten)
        }
        _ => bytes.to_vec(),
    }
}

/// The position of ballot `b` in the total order of the ballots of `n` replicas.
fn ballot_index(b: Ballot, n: usize) -> u64 {
    b.seqno * n as u64 + u64::from(b.proposer)
}

/// The ballot at position `k` of that order.
fn ballot_at(k: u64, n: usize) -> Ballot {
    Ballot { seqno: k / n as u64, proposer: (k % n as u64) as u8 }
}

/// The order-reversing bijection of the ballots `[INITIAL, top)` of `n` replicas onto
/// themselves (the lowest goes to the highest and back); `None` outside that range.
pub fn mirror_ballot(b: Ballot, top: Ballot, n: usize) -> Option<Ballot> {
    if b < Ballot::INITIAL || b >= top {
        return None;
    }
    let (lo, hi) = (ballot_index(Ballot::INITIAL, n), ballot_index(top, n) - 1);
    Some(ballot_at(lo + hi - ballot_index(b, n), n))
}

/// The 1b vote a datagram carries to a replica in phase 1 of the 1b's ballot (the only
/// 1b votes its proposer merges), with the 1b's other fields.
fn phase1_vote<'b>(replica: &MReplica, bytes: &'b [u8]) -> Option<(u32, RslMsg<'b>, Vote<'b>)> {
    let (cluster, msg) = wire::decode_rsl::<RslMsg<'_>>(bytes).ok()?;
    let RslMsg::OneB { bal, vote: Some(v), .. } = msg else { return None };
    let p = replica.proposer();
    (p.phase == Phase::One && p.max_ballot_sent_1a == bal).then_some((cluster, msg, v))
}

/// Whether `bytes` is a 1b vote the replica's phase 1 merges at an operation where it has
/// already merged a vote for another batch (necessarily from another ballot).
pub(super) fn conflicts_with_merged(replica: &MReplica, bytes: &[u8]) -> bool {
    phase1_vote(replica, bytes).is_some_and(|(_, _, v)| {
        replica.proposer().merged_votes().iter().any(|m| m.opn == v.opn && m.batch[..] != *v.batch.0)
    })
}

/// What the engine of `replica` is shown of `bytes` under a planted `merge_vote` mutant
/// ([`Planted::KeepsLowerBallotVote`], [`Planted::KeepsFirstVote`]): the same 1b with its
/// vote's ballot relabelled so that the correct `merge_vote` does what the mutant does.
/// `None`: shown unchanged.
pub(super) fn merge_mutant(planted: Option<Planted>, replica: &MReplica, bytes: &[u8]) -> Option<Vec<u8>> {
    let (cluster, RslMsg::OneB { bal, log_truncation_point, reply_id, chunk, chunks, .. }, v) =
        phase1_vote(replica, bytes)?
    else {
        return None;
    };
    let shown = match planted? {
        Planted::KeepsLowerBallotVote => mirror_ballot(v.bal, bal, replica.config().n())?,
        Planted::KeepsFirstVote => replica.proposer().merged_votes().iter().find(|m| m.opn == v.opn)?.bal,
        _ => return None,
    };
    let vote = Some(Vote { bal: shown, ..v });
    Some(encode(cluster, &RslMsg::OneB { bal, log_truncation_point, reply_id, chunk, chunks, vote }))
}

/// [`Planted::TwoBForOwnVote`]: a 2b for an operation at which `replica`'s acceptor holds a
/// vote of another ballot, shown with the vote's ballot.
pub(super) fn own_vote_mutant(planted: Option<Planted>, replica: &MReplica, bytes: &[u8]) -> Option<Vec<u8>> {
    if planted != Some(Planted::TwoBForOwnVote) {
        return None;
    }
    let Ok((cluster, RslMsg::TwoB { bal, opn, opn_ckpt })) = wire::decode_rsl::<RslMsg<'_>>(bytes) else {
        return None;
    };
    let vote = replica.acceptor().vote_at(opn).filter(|v| v.bal != bal)?;
    Some(encode(cluster, &RslMsg::TwoB { bal: vote.bal, opn, opn_ckpt }))
}

/// [`Planted::UnconfirmedReads`]: each confirmation round the replica sent in this step is
/// acknowledged at once by every replica it went to (forged, handed straight back).
pub(super) fn forge_read_acks(r: &mut ReplicaNode, n: usize, out: &mut fleet_engine::Outbox<'_>) {
    let rounds: Vec<(Endpoint, Ballot, u64)> = out
        .iter()
        .filter_map(|(dst, b)| match wire::decode_rsl::<RslMsg<'_>>(b) {
            Ok((_, RslMsg::ReadConfirm { bal, round })) => Some((dst, bal, round)),
            _ => None,
        })
        .collect();
    for (dst, bal, round) in rounds {
        let ack = encode(r.replica.cluster(), &RslMsg::ReadAck { bal, round });
        if (0..n).any(|i| endpoint(i, n) == dst) {
            let _ = r.replica.handle(r.now, dst, &ack, out);
        }
    }
}
