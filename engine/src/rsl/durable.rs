//! Durable state: what a replica must keep across a crash so that Paxos stays safe and no
//! acknowledged operation is lost when it (or the whole cluster) restarts, and the order in
//! which it must reach storage.
//!
//! IronRSL assumes crash-stop: a replica that loses its memory must never come back with
//! the same identity, because an acceptor that forgets a promise or a vote lets two
//! leaders choose different values for one operation (the `AmnesiacAcceptor` planted bug in
//! `proofs/` is exactly that). Fleet adds crash-*recovery*. In durable mode
//! ([`Replica::new_durable`](crate::rsl::Replica::new_durable),
//! [`Replica::recover`](crate::rsl::Replica::recover)) the replica hands its binding
//! [`DurableRecord`]s to append to a log ([`Replica::next_record`](crate::rsl::Replica::next_record)),
//! and a point-in-time snapshot to write in pieces (`Replica::frozen`, [`snapshot_record`]);
//! recovery replays the latest complete snapshot, then the log. A replica with nothing
//! stored, or a log without an acceptor record, cannot tell a first start from a lost disk:
//! it rejoins ([`crate::rsl::rejoin`]) before it promises or votes, and writes its first
//! acceptor record when it takes part.
//!
//! What is durable, and why:
//! * **The acceptor** ([`AcceptorRecord`]): the promise `max_bal` (forgetting it lets a
//!   lower ballot's 2a in); each vote (a forgotten vote may be the one that made a value
//!   chosen); `log_truncation_point` (votes below it are gone, and a 1b must say so);
//!   `max_ballot_sent_1a` (a leader that forgot the ballot it started could propose twice
//!   in it); `replies_sent` (1b replies are told apart by it).
//! * **Every executed batch** ([`DurableRecord::Executed`], or [`DurableRecord::ExecutedVote`]
//!   when the batch is the replica's own vote, already in the log), and from time to time a
//!   **snapshot** of the application and reply cache ([`DurableRecord::Snapshot`] pieces):
//!   acceptors discard votes below the truncation point, which only moves up to what a
//!   quorum reported executed; with executions durable, a whole-cluster power loss keeps
//!   every decided operation in the logs and snapshots of that quorum.
//!
//! The ordering rule (etcd's: nothing that depends on a write leaves before the write is
//! durable), and where each part is enforced:
//! * a 1a (the ballot this replica's proposer started), a 1b (promise, truncation point,
//!   votes) and a 2b (vote) reveal acceptor state: the replica marks them in the outbox
//!   ([`Outbox::waits_for_sync`](crate::Outbox::waits_for_sync)), and the binding sends a
//!   marked datagram only once every record handed out before it is synced. A step that
//!   changed that state sets [`Step::durable_state_changed`](crate::rsl::Step::durable_state_changed);
//! * every other datagram may leave at once. A 2a or StartingPhase2 of ballot `b` follows a
//!   quorum of 1b for `b`, which follow this replica's 1a for `b`, which waited for the
//!   record of `b`; so a leader sends its 2a before its own vote is synced, as raft leaders
//!   append in parallel with replication (its own 2b, to itself, still waits). Heartbeats
//!   carry the election view (not acceptor state) and a durable checkpoint (below);
//!   replies and state transfer carry decided operations only. An acceptor record that no
//!   marked datagram waits for (a truncation, say) may be synced lazily: losing it at a
//!   crash loses nothing anyone was told;
//! * the checkpoint a replica reports (heartbeat and 2b `opn_ckpt`), on which acceptors
//!   truncate their logs, depends on its executions being durable: in durable mode it is
//!   the count the binding confirmed ([`Replica::persisted`](crate::rsl::Replica::persisted),
//!   [`Replica::snapshot_persisted`](crate::rsl::Replica::snapshot_persisted)), never more;
//! * a reply to a client depends on nothing of the replica's own: the operation is decided
//!   (a quorum of durable votes), so executed-batch records need no sync before the reply
//!   (the binding may sync them lazily, at its next sync or when idle).
//!
//! * **The incarnation** ([`DurableRecord::Incarnation`]) of a replica that started without
//!   state, and, once it is born, **the incarnations it was born with**
//!   ([`DurableRecord::BornWith`]). A power cut while a new cluster is being born can leave
//!   one replica born and two with nothing stored; with fresh nonces after the restart the
//!   two would each see the other rejoining and wait forever (the rejoin rule cannot tell
//!   them from replicas that lost a disk). With these records, a restart that finds its
//!   incarnation and no acceptor record rejoins as that same incarnation (it never promised
//!   or voted: those records come first), and the born replica still vouches for it. Rejoin
//!   messages wait for the incarnation record's sync, so no peer learns a nonce a restart
//!   could forget.
//!
//! * **The epoch** ([`DurableRecord::Epoch`]) after a membership change: the configuration
//!   the replica is in (or that it retired), and where that epoch starts. Entering an epoch
//!   starts its Paxos afresh, so the acceptor records before the epoch record are the old
//!   epoch's and replay drops them there. Votes of the old epoch not yet handed out when
//!   the replica entered are never written: a 2b carrying one waits for the epoch record's
//!   sync, and a replica recovered past that record never takes part in the old epoch
//!   again (its peers' quorums there never need it: a majority without one replica still
//!   meets every majority with it). The batches executed up to the stop-sign in that step
//!   are not written either: the snapshot frozen at the epoch's start replaces them and is
//!   required before the checkpoint moves. Batches of the old epoch executed before and not
//!   yet handed out go ahead of the epoch record, so every record after it is the new
//!   epoch's; a stop-sign that retired the replica is written as executed, and replaying it
//!   retires the replica as executing it did. A compacted image starts with the epoch
//!   record.
//!
//! Everything else (learner, election, queued requests, stats) is rebuilt from peers: a
//! restarted replica is a replica that is behind, and catches up like any lagging replica.
//!
//! Records are self-contained envelopes (`Protocol::Durable`); a log is their sequence in
//! the order written. A log can be compacted: the acceptor's image
//! ([`Replica::durable_image_record`](crate::rsl::Replica::durable_image_record)s) replaces
//! every acceptor record, and executed records below a persisted snapshot are dropped.

use serde::{Deserialize, Serialize};

use super::app::App;
use super::ballot::Ballot;
use super::msg::{SupplyPart, Vote};
use super::snapshot::{Frozen, SnapshotPos};
use crate::config::ConfigError;
use crate::wire::{self, Bytes, DecodeError, EncodeError, Protocol};

/// Bytes a record adds around its payload (a vote's batch, an executed batch, or a
/// snapshot piece): a buffer of `D + DURABLE_RECORD_OVERHEAD_BYTES` holds any record.
pub const DURABLE_RECORD_OVERHEAD_BYTES: usize = 128;

/// The acceptor state after one step, and the vote that step cast (if any).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AcceptorRecord<'a> {
    /// The acceptor's promise.
    pub max_bal: Ballot,
    /// The last ballot this replica's proposer started.
    pub max_ballot_sent_1a: Ballot,
    /// The acceptor's truncation point.
    pub log_truncation_point: u64,
    /// The last 1b reply id used.
    pub replies_sent: u64,
    /// The vote cast in this step.
    #[serde(borrow)]
    pub vote: Option<Vote<'a>>,
}

/// One durable record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DurableRecord<'a> {
    /// The acceptor's state (and a vote).
    Acceptor(#[serde(borrow)] AcceptorRecord<'a>),
    /// Operation `opn` was executed: its decided batch.
    Executed {
        /// Its operation number.
        opn: u64,
        /// The ballot it was decided in.
        bal: Ballot,
        /// The batch.
        #[serde(borrow)]
        batch: Bytes<'a>,
    },
    /// One piece of a snapshot (`SupplyPart::App` or `SupplyPart::Cache`), in order.
    Snapshot(#[serde(borrow)] SupplyPart<'a>),
    /// A replica that started without state rejoins as incarnation `nonce`. Written before
    /// any rejoin message leaves: a restart that finds it and no acceptor record never
    /// promised or voted since, so it rejoins as the same incarnation (the one its peers
    /// may have seen without state when they were born).
    Incarnation {
        /// The incarnation's nonce.
        nonce: u64,
    },
    /// This replica was born (a new cluster) while `replica` was incarnation `nonce`
    /// without state; it still answers that incarnation as new after a restart.
    BornWith {
        /// The other replica.
        replica: u8,
        /// Its incarnation's nonce then.
        nonce: u64,
    },
    /// This replica's cluster moved to epoch `epoch` ([`crate::rsl::membership`]), whose
    /// first operation is `start`, with `replicas` (encoded endpoints back to back, as in
    /// a membership change). Written when it enters that epoch or retires from the one
    /// before, before any record of the new epoch: the records after it (acceptor state,
    /// executed batches) are that epoch's. A compacted log starts with the latest one.
    Epoch {
        /// The epoch entered.
        epoch: u64,
        /// Its first operation.
        start: u64,
        /// Its replicas, in order; this replica retired if its address is not among them.
        #[serde(borrow)]
        replicas: Bytes<'a>,
    },
    /// The identities of the epochs this replica passed through before its own, newest
    /// first ([`crate::rsl::membership::EarlierEpochs`]: 4-byte little-endian identities
    /// back to back). Only in a compacted image, right after its epoch record: a log keeps
    /// them as its epoch records, which compaction drops, and a replica that forgot them
    /// could not tell a replica of those epochs where the cluster went.
    EarlierEpochs {
        /// The identities.
        #[serde(borrow)]
        ids: Bytes<'a>,
    },
    /// Operation `opn` was executed, decided in ballot `bal`, and its batch is this
    /// replica's vote for `opn`, which the log holds before this record: an
    /// [`DurableRecord::Executed`] without the batch written a second time. Handed out
    /// only when every acceptor record is out, so a replay has restored that vote when it
    /// reaches this record (the log is a prefix-closed sequence, and a compacted log starts
    /// with the acceptor's image, votes included).
    ExecutedVote {
        /// Its operation number.
        opn: u64,
        /// The ballot it was decided in.
        bal: Ballot,
    },
}

/// Encodes the piece of `frozen` at `pos` as a [`DurableRecord::Snapshot`] into `out`, with
/// at most `room` application bytes, read through `scratch` (which needs `room` bytes and
/// must hold the largest reply-cache entry). Returns
/// the record's length and the position after it; `None` once the snapshot is written.
/// Pieces from position `SnapshotPos::default()` until `None` are the whole snapshot; a
/// snapshot with no bytes at all is one empty piece.
pub fn snapshot_record<A: App, const C: usize, const RB: usize>(
    frozen: &Frozen<A, C, RB>,
    pos: SnapshotPos,
    room: usize,
    scratch: &mut [u8],
    out: &mut [u8],
) -> Option<Result<(usize, SnapshotPos), EncodeError>> {
    let (piece, next) = frozen.piece(pos, room, scratch)?;
    Some(wire::encode(Protocol::Durable, &DurableRecord::Snapshot(piece), out).map(|n| (n, next)))
}

/// Why a durable log could not be replayed. Nothing is half-recovered: the caller gets
/// either a consistent replica or this error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RecoverError {
    /// The configuration or capacities are invalid (as for [`Replica::new`](crate::rsl::Replica::new)).
    Config(ConfigError),
    /// The snapshot's records do not make a whole snapshot the application accepts.
    Snapshot(&'static str),
    /// Record number `record` (0-based, in the snapshot's records then the log's) does
    /// not decode.
    Undecodable {
        /// Index of the record in the log.
        record: usize,
        /// What was wrong with its bytes.
        error: DecodeError,
    },
    /// Record number `record` decodes but contradicts the protocol or the log before it.
    Inconsistent {
        /// Index of the record in the log.
        record: usize,
        /// Which rule it breaks.
        reason: &'static str,
    },
}

impl core::fmt::Display for RecoverError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RecoverError::Config(e) => write!(f, "invalid configuration: {e}"),
            RecoverError::Snapshot(why) => write!(f, "the snapshot does not install: {why}"),
            RecoverError::Undecodable { record, error } => write!(f, "durable record {record} is unreadable: {error}"),
            RecoverError::Inconsistent { record, reason } => {
                write!(f, "durable record {record} is inconsistent: {reason}")
            }
        }
    }
}

impl From<ConfigError> for RecoverError {
    fn from(e: ConfigError) -> Self {
        RecoverError::Config(e)
    }
}
