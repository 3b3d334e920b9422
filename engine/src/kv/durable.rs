//! Durable KV hosts: what a binding stores so that a host restarted from its storage is the
//! host that crashed, and how that host is rebuilt.
//!
//! **The log is the inputs.** A host's state changes only in its steps, and a step is a
//! pure function of the state, its `now` and its input (a datagram and its sender, or a
//! tick). So a binding logs the input of every step that changed the state
//! ([`Step::log_input`](super::Step::log_input)), numbered ([`KvHost::logged_steps`]), and
//! recovery replays them ([`KvHost::replay`]): the replayed host equals the one that ran,
//! channels, unacknowledged queues, store, delegation map, transfers and eviction floors
//! included, without a record type per field. Steps that changed nothing but counters (a
//! duplicate, a refusal, a datagram that failed a check) are not logged: a forged or stray
//! datagram costs no write.
//!
//! **The ordering rule** (etcd's: nothing that depends on a write leaves before the write is
//! durable): every datagram a host sends is marked
//! [`Outbox::waits_for_sync`](crate::Outbox::waits_for_sync), and a durable binding sends a
//! marked datagram only once every input logged before it was produced is synced. A reply
//! therefore never reveals a Set, a channel position or a Delegate that a crash could undo;
//! an input whose step sent nothing (an ack that made progress) may be synced lazily, since
//! losing it loses nothing anyone was told (the peer's retransmission or ack comes again).
//!
//! **The image** compacts the log: every field of the host's protocol state as a sequence
//! of small records ([`KvHost::image_record`]; one per map run, transfer, peer, unacked
//! message, closed-channel bucket and stored pair, each at most a datagram plus
//! [`KV_RECORD_OVERHEAD_BYTES`]), so a firmware can write it page by page. It names the
//! number of logged steps it includes; [`KvHost::recover`] rebuilds the host from an image
//! and replays the log records after it, skipping those the image covers and refusing a
//! gap. A replayed step must change the state again (else the log does not belong to this
//! host or this build): [`RecoverError::Diverged`].
//!
//! Clocks: logged inputs carry the `now` they ran at, and replay uses it, so timers and
//! last-activity times come back exactly. A binding continues the host's clock from the
//! last logged `now` ([`KvHost::last_logged_now`]), not from zero.

use serde::{Deserialize, Serialize};

use super::delegation::{Entry, HostId};
use super::host::{Incoming, Outgoing};
use super::join::{HostMeta, JoinProgress};
use super::reliable::evict::Closed;
use super::reliable::Peer;
use crate::config::ConfigError;
use crate::endpoint::Endpoint;
use crate::time::Instant;
use crate::wire::{self, Bytes, DecodeError, EncodeError, Protocol};

#[cfg(doc)]
use super::host::KvHost;

/// Most bytes a record adds around the datagram or value it carries (envelope, tag, step,
/// instant, endpoint, length prefix).
pub const KV_RECORD_OVERHEAD_BYTES: usize = 64;

/// One durable record: a logged input, or a piece of an image. Variant order is the tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvRecord<'a> {
    /// 0: logged input number `step`: a datagram from `from`, handled at `now`.
    Datagram {
        /// The step's number ([`KvHost::logged_steps`] after it).
        step: u64,
        /// When it was handled.
        now: Instant,
        /// Its sender.
        from: Endpoint,
        /// The datagram.
        #[serde(borrow)]
        datagram: Bytes<'a>,
    },
    /// 1: logged input number `step`: a tick at `now`.
    Tick {
        /// The step's number.
        step: u64,
        /// When it ran.
        now: Instant,
    },
    /// 2: the first record of an image.
    ImageStart(ImageHeader),
    /// 3: one run of the delegation map, in key order.
    MapRun(Entry),
    /// 4: the transfer being received from host `from`.
    Incoming {
        /// The sending host.
        from: HostId,
        /// The transfer's progress.
        incoming: Incoming,
    },
    /// 5: the number of the last transfer completed from host `from` (nonzero only).
    Completed {
        /// The sending host.
        from: HostId,
        /// Its transfer number.
        transfer: u64,
    },
    /// 6: a transfer sent and not fully acknowledged.
    Outgoing(Outgoing),
    /// 7: peer `index` of the channel table, in table order.
    Peer {
        /// Its index.
        index: u32,
        /// Its channel state, both directions.
        peer: Peer,
    },
    /// 8: an unacknowledged message, in pool order.
    Pending {
        /// The peer's index.
        peer: u32,
        /// Its seqno.
        seqno: u64,
        /// The message.
        #[serde(borrow)]
        body: Bytes<'a>,
    },
    /// 9: the floors of a closed-channel bucket (nonzero only).
    Closed {
        /// The bucket.
        bucket: u32,
        /// Its floors.
        floors: Closed,
    },
    /// 10: a stored pair, in key order.
    Pair {
        /// The key.
        key: u64,
        /// The value.
        #[serde(borrow)]
        value: Bytes<'a>,
    },
    /// 11: the last record of an image: how many records came before it.
    ImageEnd {
        /// Records from `ImageStart` up to this one, exclusive.
        records: u64,
    },
    /// 12: the host is joining ([`crate::kv::join`]) as incarnation `nonce`.
    Joining {
        /// Its nonce.
        nonce: u64,
        /// When it asks again.
        retry_at: Instant,
    },
    /// 13: what host `host` answered the joining host so far, in host order.
    JoinHost {
        /// The host.
        host: HostId,
        /// Its answers.
        progress: JoinProgress,
    },
    /// 14: what this host remembers of host `host`'s incarnations (non-default only).
    HostMeta {
        /// The host.
        host: HostId,
        /// What it remembers.
        meta: HostMeta,
    },
}

/// The scalar fields of an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageHeader {
    /// The cluster identity ([`crate::kv::KvConfig::identity`]): an image of another cluster is refused.
    pub cluster: u32,
    /// The host's index.
    pub me: HostId,
    /// Logged steps the image includes.
    pub steps: u64,
    /// The `now` of the last of them.
    pub last_now: Instant,
    /// The next outgoing transfer's number.
    pub next_transfer: u64,
    /// Pairs reserved for incoming transfers.
    pub reserved_pairs: u64,
    /// The channel table's send floor.
    pub send_floor: u64,
    /// The first seqno of this host's channels (1, or a joining incarnation's nonce).
    pub first_seqno: u64,
    /// Retransmissions so far.
    pub retransmits: u64,
}

/// Where [`KvHost::image_record`] is in the image; start from `ImageCursor::default()`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImageCursor {
    pub(crate) section: u8,
    pub(crate) index: usize,
    /// The next key to look at in the pairs section.
    pub(crate) key: Option<u64>,
    pub(crate) records: u64,
}

/// Why a host could not be rebuilt from its records. Nothing is served from such a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RecoverError {
    /// The configuration does not make a host.
    Config(ConfigError),
    /// Record number `record` (0-based, image first) does not decode.
    Undecodable {
        /// Its position.
        record: u64,
        /// Why.
        error: DecodeError,
    },
    /// The image was made by another cluster or another host.
    OtherHost,
    /// The records are not an image then inputs, or the image is inconsistent.
    Malformed(&'static str),
    /// The log skips inputs: record `found` follows step `expected - 1`.
    Gap {
        /// The step that should come next.
        expected: u64,
        /// The step found.
        found: u64,
    },
    /// Replaying step `step` changed nothing: the log is not this host's (or not this
    /// build's).
    Diverged {
        /// The step.
        step: u64,
    },
}

impl core::fmt::Display for RecoverError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RecoverError::Config(e) => write!(f, "configuration: {e}"),
            RecoverError::Undecodable { record, error } => write!(f, "record {record} does not decode: {error}"),
            RecoverError::OtherHost => write!(f, "the image belongs to another cluster or another host"),
            RecoverError::Malformed(why) => write!(f, "malformed image: {why}"),
            RecoverError::Gap { expected, found } => {
                write!(f, "the log skips inputs: step {found} where step {expected} was expected")
            }
            RecoverError::Diverged { step } => {
                write!(f, "replaying logged step {step} changed nothing: the log is not this host's")
            }
        }
    }
}

/// What the recovery of one log record did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replayed {
    /// The step ran again.
    Applied,
    /// The image already includes the step.
    Covered,
}

pub(crate) const SECTION_START: u8 = 0;
pub(crate) const SECTION_JOIN: u8 = 1;
pub(crate) const SECTION_SEEN: u8 = 2;
pub(crate) const SECTION_MAP: u8 = 3;
pub(crate) const SECTION_INCOMING: u8 = 4;
pub(crate) const SECTION_COMPLETED: u8 = 5;
pub(crate) const SECTION_OUTGOING: u8 = 6;
pub(crate) const SECTION_PEERS: u8 = 7;
pub(crate) const SECTION_PENDING: u8 = 8;
pub(crate) const SECTION_CLOSED: u8 = 9;
pub(crate) const SECTION_PAIRS: u8 = 10;
pub(crate) const SECTION_END: u8 = 11;
pub(crate) const SECTION_DONE: u8 = 12;

pub(crate) fn encode<'b>(record: &KvRecord<'_>, out: &'b mut [u8]) -> Result<&'b [u8], EncodeError> {
    let n = wire::encode(Protocol::KvDurable, record, out)?;
    Ok(&out[..n])
}
