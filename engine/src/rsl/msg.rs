//! The RSL wire messages: IronRSL's ten, in its tag order, with the fields Fleet adds.
//!
//! Additions over IronRSL, each for a bound IronRSL did not have: 1b replies are split into
//! one datagram per vote (`reply_id`, `chunk`, `chunks`) so that a window of full batches
//! never needs a datagram larger than the configured bound; 2b carries the sender's
//! checkpoint so the log window slides at message rate, not heartbeat rate; state transfer
//! answers from the retained executed batches when it can, else with a snapshot in chunks
//! (`SupplyPart`), resumable, followed by the batches after it.

use serde::{Deserialize, Serialize};

use super::ballot::Ballot;
use crate::endpoint::Endpoint;
use crate::wire::Bytes;

/// One vote an acceptor reports in a 1b.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Vote<'a> {
    /// The operation number voted on.
    pub opn: u64,
    /// The ballot of the vote.
    pub bal: Ballot,
    /// The batch voted for (encoded entries).
    #[serde(borrow)]
    pub batch: Bytes<'a>,
}

/// Identity and size of a snapshot: what every piece of it repeats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SnapshotId {
    /// Operations the snapshot reflects.
    pub opn: u64,
    /// The highest ballot of an executed batch (`max_bal_reflected`) at the supplier.
    pub bal: Ballot,
    /// The executed-batch digest chain at `opn` (part of the replicated state).
    pub executed_digest: u64,
    /// Application snapshot bytes.
    pub app_len: u64,
    /// Reply-cache entries.
    pub cache_entries: u32,
}

impl SnapshotId {
    /// True when both describe the same bytes (ignoring the supplier's ballot, which may
    /// differ between replicas at the same operation).
    pub fn same_content(&self, other: &SnapshotId) -> bool {
        self.opn == other.opn
            && self.executed_digest == other.executed_digest
            && self.app_len == other.app_len
            && self.cache_entries == other.cache_entries
    }
}

/// How far a reader of a snapshot has got: application bytes, then cache entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SnapshotPos {
    /// The next application byte.
    pub app_offset: u64,
    /// The next reply-cache entry.
    pub cache_index: u32,
}

/// One piece of a state-transfer answer: part of a snapshot, or one executed batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SupplyPart<'a> {
    /// Application snapshot bytes starting at `offset`.
    App {
        /// The snapshot they belong to.
        id: SnapshotId,
        /// Byte offset in the application snapshot.
        offset: u64,
        /// The bytes.
        #[serde(borrow)]
        bytes: Bytes<'a>,
    },
    /// Whole reply-cache entries starting at entry `index`.
    Cache {
        /// The snapshot they belong to.
        id: SnapshotId,
        /// Index of the first entry.
        index: u32,
        /// Encoded entries, back to back.
        #[serde(borrow)]
        entries: Bytes<'a>,
    },
    /// The decided batch of operation `opn`, from the supplier's retained tail.
    Executed {
        /// Its operation number.
        opn: u64,
        /// The ballot it was decided in.
        bal: Ballot,
        /// The batch.
        #[serde(borrow)]
        batch: Bytes<'a>,
    },
}

/// Where a receiver's partial snapshot stands: a supplier holding the same snapshot
/// continues from here instead of from the start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resume {
    /// The snapshot being received.
    pub id: SnapshotId,
    /// How much of it arrived.
    pub pos: SnapshotPos,
}

/// A message between RSL replicas and clients. Variant order is the wire tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RslMsg<'a> {
    /// 0: a client request.
    Request {
        /// The client's sequence number.
        seqno: u64,
        /// Opaque request bytes.
        #[serde(borrow)]
        request: Bytes<'a>,
    },
    /// 1: phase 1a, a proposer asks for promises.
    OneA {
        /// The ballot being prepared.
        bal: Ballot,
    },
    /// 2: phase 1b, one datagram of an acceptor's promise: at most one vote each.
    OneB {
        /// The ballot promised.
        bal: Ballot,
        /// The acceptor's log truncation point.
        log_truncation_point: u64,
        /// Identifies one reply (all its chunks share it).
        reply_id: u64,
        /// This chunk's index, `< chunks`.
        chunk: u8,
        /// How many chunks the reply has (1 when there is no vote).
        chunks: u8,
        /// The vote this chunk carries.
        #[serde(borrow)]
        vote: Option<Vote<'a>>,
    },
    /// 3: phase 2a, a proposal.
    TwoA {
        /// The proposer's ballot.
        bal: Ballot,
        /// The operation number.
        opn: u64,
        /// The proposed batch.
        #[serde(borrow)]
        batch: Bytes<'a>,
    },
    /// 4: phase 2b, an acceptor's vote, sent to every learner. Without the batch (IronRSL's
    /// carries it): the one 2a of the ballot for the operation names it, and every learner's
    /// own acceptor holds it (`rsl::learner`).
    TwoB {
        /// The ballot voted in.
        bal: Ballot,
        /// The operation number.
        opn: u64,
        /// The sender's executed-operation count (its checkpoint).
        opn_ckpt: u64,
    },
    /// 5: heartbeat, carrying the view, suspicion and checkpoint.
    Heartbeat {
        /// The sender's current view.
        bal: Ballot,
        /// Whether the sender suspects that view.
        suspicious: bool,
        /// The sender's executed-operation count.
        opn_ckpt: u64,
    },
    /// 6: a reply to a client.
    Reply {
        /// The request's sequence number.
        seqno: u64,
        /// Opaque reply bytes.
        #[serde(borrow)]
        reply: Bytes<'a>,
    },
    /// 7: ask for the decisions from `have` on: the executed batches themselves when the
    /// supplier still retains them, else a snapshot and the batches after it.
    AppStateRequest {
        /// The asker's view.
        bal: Ballot,
        /// Operations the asker has executed (the first one it lacks).
        have: u64,
        /// The partial snapshot the asker holds, to resume it.
        resume: Option<Resume>,
    },
    /// 8: one piece of an answer to [`RslMsg::AppStateRequest`].
    AppStateSupply {
        /// The last piece the supplier emits for this request: the asker asks again at
        /// once if it still lacks decisions (one request's answer is bounded).
        last: bool,
        /// The piece carried.
        #[serde(borrow)]
        part: SupplyPart<'a>,
    },
    /// 9: a new leader enters phase 2 with this truncation point.
    StartingPhase2 {
        /// The leader's ballot.
        bal: Ballot,
        /// Operations below this are truncated everywhere that matters.
        log_truncation_point: u64,
    },
    /// 10: a client request a replica received and passes to the leader of its view
    /// (Fleet addition: a request sent only to followers reaches the leader, instead of
    /// making them suspect it). Accepted only from replicas.
    ForwardedRequest {
        /// The client that sent it (the reply goes there).
        client: Endpoint,
        /// The client's sequence number.
        seqno: u64,
        /// Opaque request bytes (a group's encoding, or a membership change).
        #[serde(borrow)]
        request: Bytes<'a>,
        /// What the client sent ([`RslMsg::Request`], [`RslMsg::Requests`] or
        /// [`RslMsg::Change`]).
        kind: super::batch::EntryKind,
    },
    /// 11: a replica that started without its state asks every other replica where the
    /// protocol stands (Fleet addition, see [`crate::rsl::rejoin`]).
    RecoverRequest {
        /// Identifies this incarnation: answers to an earlier one are not taken.
        nonce: u64,
        /// Every answer is in and the sender waits for operations to be decided: sent to
        /// the leader only, which proposes an empty batch if it has nothing else to
        /// propose (an operation lost on every path is then filled by the next view).
        catching_up: bool,
    },
    /// 12: the answer to [`RslMsg::RecoverRequest`].
    RecoverReply {
        /// The request's nonce.
        nonce: u64,
        /// The answering replica's own nonce while it rejoins (0 otherwise).
        incarnation: u64,
        /// The answering replica is rejoining itself: it knows no more than the asker.
        rejoining: bool,
        /// The answering replica has no protocol state at all (a new cluster).
        fresh: bool,
        /// The highest ballot it promised, started or knows as a view.
        ballot: Ballot,
        /// An operation number above every operation it voted on, proposed, executed or
        /// truncated.
        next_opn: u64,
    },
    /// 13: the leader asks whether its ballot still stands, to answer the queries that
    /// arrived before this round (Fleet addition, see [`crate::rsl::reads`]).
    ReadConfirm {
        /// The leader's ballot.
        bal: Ballot,
        /// The round, counted from 1 within the ballot.
        round: u64,
    },
    /// 14: an acceptor that has promised nothing higher than `bal` acknowledges `round`.
    ReadAck {
        /// The leader's ballot, as in the round.
        bal: Ballot,
        /// The round acknowledged.
        round: u64,
    },
    /// 15: a group of requests from a pipelined client session, under one seqno
    /// (Fleet addition, see [`crate::rsl::group`]).
    Requests {
        /// The client's sequence number for the whole group.
        seqno: u64,
        /// The group's encoding.
        #[serde(borrow)]
        requests: Bytes<'a>,
    },
    /// 16: the reply to [`RslMsg::Requests`]: one sub-reply per request.
    Replies {
        /// The group's sequence number.
        seqno: u64,
        /// The group reply's encoding.
        #[serde(borrow)]
        replies: Bytes<'a>,
    },
    /// 17: anyone (an operator's tool) asks a replica where it stands (Fleet addition).
    /// Answered at once, changes nothing.
    StatusRequest {
        /// Echoed in the answer.
        nonce: u64,
    },
    /// 18: the answer to [`RslMsg::StatusRequest`].
    StatusReply {
        /// The request's nonce.
        nonce: u64,
        /// The answering replica's index.
        replica: u8,
        /// Its state.
        status: super::replica::Status,
    },
    /// 19: an operator's membership change ([`crate::rsl::membership`]), executed through
    /// the log like a request; the reply is a [`crate::rsl::membership::Outcome`].
    Change {
        /// The client's sequence number.
        seqno: u64,
        /// The encoded [`crate::rsl::membership::Change`].
        #[serde(borrow)]
        change: Bytes<'a>,
    },
    /// 20: anyone asks a replica for the cluster's current membership. Answered at once.
    MembersRequest {
        /// Echoed in the answer.
        nonce: u64,
    },
    /// 21: the membership a replica knows: the answer to [`RslMsg::MembersRequest`], or
    /// (nonce 0) sent unasked to a replica or client of an ended epoch.
    Members {
        /// The request's nonce, or 0.
        nonce: u64,
        /// The epoch.
        epoch: u64,
        /// Its cluster identity ([`super::config::RslConfig::identity`]), for clients to
        /// name.
        cluster: u32,
        /// Its first operation.
        start: u64,
        /// Its replicas, encoded endpoints back to back.
        #[serde(borrow)]
        replicas: Bytes<'a>,
    },
}
