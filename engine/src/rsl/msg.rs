//! The RSL wire messages: IronRSL's ten, in its tag order, with the fields Fleet adds.
//!
//! Additions over IronRSL, each for a bound IronRSL did not have: 1b replies are split into
//! one datagram per vote (`reply_id`, `chunk`, `chunks`) so that a window of full batches
//! never needs a datagram larger than the configured bound; 2b carries the sender's
//! checkpoint so the log window slides at message rate, not heartbeat rate; state transfer
//! is chunked (`SupplyPart`) and resumable.

use serde::{Deserialize, Serialize};

use super::ballot::Ballot;
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

/// One piece of a state-transfer answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SupplyPart<'a> {
    /// Application snapshot bytes starting at `offset`.
    App {
        /// Byte offset in the application snapshot.
        offset: u64,
        /// The bytes.
        #[serde(borrow)]
        bytes: Bytes<'a>,
    },
    /// Whole reply-cache entries starting at entry `index`.
    Cache {
        /// Index of the first entry.
        index: u32,
        /// Encoded entries, back to back.
        #[serde(borrow)]
        entries: Bytes<'a>,
    },
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
    /// 4: phase 2b, an acceptor's vote, sent to every learner.
    TwoB {
        /// The ballot voted in.
        bal: Ballot,
        /// The operation number.
        opn: u64,
        /// The batch voted for.
        #[serde(borrow)]
        batch: Bytes<'a>,
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
    /// 7: ask for application state reaching at least `opn`, resuming at the given offsets.
    AppStateRequest {
        /// The asker's view.
        bal: Ballot,
        /// The operation count the asker needs to reach.
        opn: u64,
        /// First application-snapshot byte wanted.
        app_offset: u64,
        /// First reply-cache entry wanted.
        cache_index: u32,
        /// Resume token of the partial snapshot being resumed (0 when starting afresh): the
        /// supplier restarts from zero unless its snapshot has the same token.
        resume_digest: u64,
    },
    /// 8: one chunk of a state snapshot.
    AppStateSupply {
        /// The supplier's `max_bal_reflected`.
        bal: Ballot,
        /// Operations the snapshot reflects (the supplier's `ops_complete`).
        opn: u64,
        /// FNV-1a digest of the application bytes then the cache entries.
        digest: u64,
        /// Total application snapshot bytes.
        app_len: u64,
        /// Total reply-cache entries.
        cache_entries: u32,
        /// The supplier's executed-batch digest chain (carried so the receiver's chain
        /// continues; it is part of the replicated state).
        executed_digest: u64,
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
}
