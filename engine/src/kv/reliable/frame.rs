//! The reliable channel's wire frame: a message, a cumulative ack, or a refusal, and the
//! bytes a frame adds around a message body.

use serde::{Deserialize, Serialize};

use crate::kv::status::KvStatus;
use crate::wire::Bytes;

/// Largest encoding of a [`Frame::Single`] around its body, envelope included (header 3,
/// cluster identity 4, tag 1, base, seqno and ack 10 each, body length prefix 3).
pub const FRAME_OVERHEAD_BYTES: usize = 41;

/// Why a receiver did not accept a message it could have accepted otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Refusal {
    /// The receiver's unacked queue towards the sender is full (it could not queue its answer).
    QueueFull,
    /// The receiver tracks as many peers as it can.
    TooManyPeers,
    /// The receiver has no room to apply the message now (storage or map reservations).
    NoRoom,
    /// The channel the message belongs to is closed at the receiver for good: the receiver
    /// evicted it (or gave up on it), and nothing of it it did not accept before will ever be
    /// accepted. The sender restarts its channel with a base above `above`. A message the
    /// sender got no reply to was never executed, unless its seqno is at or below `lost`:
    /// the receiver gave up on a channel of this endpoint (or of one sharing its bucket)
    /// with replies undelivered up to that seqno, so such a message may have been executed.
    /// Unlike the other refusals this one is final: retransmitting on the channel is useless.
    ChannelClosed {
        /// Every channel base at or below this is closed for the sender's endpoint.
        above: u64,
        /// Messages at or below this seqno of a closed channel may have been executed with
        /// their reply never delivered (0: none).
        lost: u64,
    },
}

/// What travels in a datagram. Variant order is the wire tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Frame<'a> {
    /// 0: a message of a reliable channel.
    Single {
        /// The channel's first seqno (identifies the sender's incarnation).
        base: u64,
        /// This message's seqno, `>= base`.
        seqno: u64,
        /// Cumulative ack of the reverse channel (the receiver's messages to the sender):
        /// the highest seqno the sender accepted from the receiver, 0 for none.
        ack: u64,
        /// The encoded protocol message.
        #[serde(borrow)]
        body: Bytes<'a>,
    },
    /// 1: cumulative acknowledgement: every seqno up to this one arrived.
    Ack {
        /// The highest seqno accepted in order.
        seqno: u64,
    },
    /// 2: the message `seqno` was **not** accepted. Back-pressure (`QueueFull`,
    /// `TooManyPeers`, `NoRoom`): the sender keeps it and retransmits with backoff; a closed
    /// channel ([`Refusal::ChannelClosed`]): the sender restarts its channel. Not reliable
    /// itself (a lost refusal looks like loss).
    Refused {
        /// The seqno refused.
        seqno: u64,
        /// Why.
        reason: Refusal,
    },
    /// 3: a KV host that started without its state asks another host where it stands
    /// (`kv::join`): its incarnation `nonce`, and the key from which it wants the other
    /// host's ranges. Unreliable; repeated until answered.
    Join {
        /// The asking host's incarnation (the base of its channels to the hosts).
        nonce: u64,
        /// Ranges ending above this key are wanted.
        from_key: u64,
    },
    /// 4: the answer to a [`Frame::Join`]. Unreliable.
    JoinReply {
        /// The asker's nonce.
        nonce: u64,
        /// The base of the answering host's channel to the asker from now on.
        base: u64,
        /// The answering host is joining itself, or was born counting this incarnation of the
        /// asker as joining (they form a new cluster together).
        joining: bool,
        /// It answered another incarnation of the asker before this one.
        seen_other: bool,
        /// The `from_key` answered.
        from_key: u64,
        /// More ranges follow from this key (ask again with it), or none.
        next: Option<u64>,
        /// Ranges the answering host owns or is moving, with their owners (`kv::join`).
        #[serde(borrow)]
        runs: Bytes<'a>,
    },
    /// 5: anyone (an operator's tool) asks a host where it stands (`kv::status`), and for
    /// its ranges from `from_key` on. Answered at once; changes nothing. Unreliable.
    StatusRequest {
        /// Echoed in the answer.
        nonce: u64,
        /// Ranges ending above this key are wanted.
        from_key: u64,
    },
    /// 6: the answer to a [`Frame::StatusRequest`]. Unreliable.
    StatusReply {
        /// The request's nonce.
        nonce: u64,
        /// The answering host's index.
        host: u8,
        /// Where it stands.
        status: KvStatus,
        /// The `from_key` answered.
        from_key: u64,
        /// More ranges follow from this key (ask again with it), or none.
        next: Option<u64>,
        /// Ranges it owns, and on the first page the ranges it is moving with their
        /// recipients, as a [`Frame::JoinReply`]'s runs (`kv::join::runs` decodes them).
        #[serde(borrow)]
        runs: Bytes<'a>,
    },
}
