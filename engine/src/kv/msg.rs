//! The KV wire messages: IronKV's key ranges and inner messages, carried as the body of a
//! reliable [`Frame::Single`](super::reliable::Frame).
//!
//! IronKV wraps every inner message as `SingleMessage(seqno, dst, msg)` or `Ack(seqno)`.
//! Here the wrapper is [`super::reliable::Frame`] (protocol-agnostic, reusable) and the
//! inner message is a [`Body`], postcard-encoded inside the frame's byte string. Replies
//! carry `req`: the seqno of the request they answer on the requester's channel, so a
//! client can match a reply to its request without guessing by key.

use serde::{Deserialize, Serialize};

use crate::endpoint::Endpoint;
#[cfg(test)]
use crate::wire;
use crate::wire::{Bytes, DecodeError};

/// One end of a key range: below every key, a key, or above every key (IronKV's `KeyPlus`).
///
/// Ordered `Zero < Key(0) < Key(1) < ... < Key(u64::MAX) < Inf`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum KeyBound {
    /// Below every key.
    Zero,
    /// The key itself.
    Key(u64),
    /// Above every key (so `[lo, Inf)` includes `u64::MAX`).
    Inf,
}

/// The half-open key range `[lo, hi)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct KeyRange {
    /// Inclusive lower bound.
    pub lo: KeyBound,
    /// Exclusive upper bound.
    pub hi: KeyBound,
}

impl KeyRange {
    /// Every key: `[Zero, Inf)`.
    pub const ALL: KeyRange = KeyRange { lo: KeyBound::Zero, hi: KeyBound::Inf };

    /// `[lo, hi)` over keys.
    pub const fn keys(lo: u64, hi: u64) -> KeyRange {
        KeyRange { lo: KeyBound::Key(lo), hi: KeyBound::Key(hi) }
    }

    /// `[lo, Inf)`: from `lo` to the end of the key space.
    pub const fn from(lo: u64) -> KeyRange {
        KeyRange { lo: KeyBound::Key(lo), hi: KeyBound::Inf }
    }

    /// True if `key` lies in the range.
    pub fn contains(&self, key: u64) -> bool {
        self.lo <= KeyBound::Key(key) && KeyBound::Key(key) < self.hi
    }

    /// The smallest key in the range, or `None` if the range holds no key.
    pub fn first_key(&self) -> Option<u64> {
        let first = match self.lo {
            KeyBound::Zero => 0,
            KeyBound::Key(k) => k,
            KeyBound::Inf => return None,
        };
        self.contains(first).then_some(first)
    }

    /// The exclusive end as a key: `Some(k)` for `Key(k)` (and `Some(0)` for `Zero`),
    /// `None` for `Inf` (the range runs through `u64::MAX`).
    pub fn end_key(&self) -> Option<u64> {
        match self.hi {
            KeyBound::Zero => Some(0),
            KeyBound::Key(k) => Some(k),
            KeyBound::Inf => None,
        }
    }

    /// True if the range holds no key (IronKV's `EmptyKeyRange`, over keys).
    pub fn is_empty(&self) -> bool {
        self.first_key().is_none()
    }
}

/// Why a Shard command was refused. Nothing changed at the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ShardError {
    /// The recipient is not one of the configured hosts.
    UnknownRecipient,
    /// The recipient is the host itself.
    RecipientIsSelf,
    /// The range holds no key.
    EmptyRange,
    /// The host does not own every key of the range.
    NotOwner,
    /// The range holds more pairs than the largest transfer (`max_unacked_per_peer`
    /// Delegate datagrams) can carry: shard a smaller range.
    TooManyPairs,
    /// The unacked queue towards the recipient has no room for the transfer now: retry later.
    QueueFull,
    /// The delegation map would overflow (or eat room reserved for incoming transfers).
    MapFull,
    /// Too many of this host's transfers are still unacknowledged: retry later.
    TooManyTransfers,
}

/// An error reply: the request was refused and changed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum KvError {
    /// The value is longer than the configured `max_value_bytes`.
    ValueTooLarge,
    /// The host's storage (less room reserved for incoming transfers) is full.
    StorageFull,
    /// A Shard command was refused.
    Shard(ShardError),
    /// The key's owner restarted without its state: the key's value is gone, and no host
    /// serves it (`kv::join`).
    Lost,
}

impl core::fmt::Display for KvError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            KvError::ValueTooLarge => write!(f, "the value is longer than the cluster's max_value_bytes"),
            KvError::StorageFull => write!(f, "the host's storage is full"),
            KvError::Shard(e) => write!(f, "shard refused: {e:?}"),
            KvError::Lost => write!(
                f,
                "the key is lost: the host that held it restarted without its state (no --data-dir, or an empty \
                 one), and no host serves it"
            ),
        }
    }
}

/// IronKV's inner messages, plus Fleet's error reply. Variant order is the wire tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Body<'a> {
    /// 0: read `key` (client to host).
    GetRequest {
        /// The key.
        key: u64,
    },
    /// 1: write `key`; `None` deletes it (client to host).
    SetRequest {
        /// The key.
        key: u64,
        /// The new value, or `None` to delete.
        #[serde(borrow)]
        value: Option<Bytes<'a>>,
    },
    /// 2: the answer to a Get (the value, `None` if absent) or a Set (always `None`).
    Reply {
        /// Seqno of the request answered, on the requester's channel.
        req: u64,
        /// The key.
        key: u64,
        /// The value read.
        #[serde(borrow)]
        value: Option<Bytes<'a>>,
    },
    /// 3: this host does not own `key`; as far as it knows, `owner` does.
    Redirect {
        /// Seqno of the request answered.
        req: u64,
        /// The key.
        key: u64,
        /// The host to ask instead.
        owner: Endpoint,
    },
    /// 4: admin command: move ownership of `range` to `recipient`.
    Shard {
        /// The range to move.
        range: KeyRange,
        /// The host to move it to.
        recipient: Endpoint,
    },
    /// 5: one datagram of a transfer of `range` (host to host). Part `part` of `parts`;
    /// the recipient owns the range once the last part is applied.
    Delegate {
        /// The sender's transfer number (grows per sender).
        transfer: u64,
        /// The range being moved.
        range: KeyRange,
        /// This part's index, `< parts`.
        part: u16,
        /// How many parts the transfer has (at least 1).
        parts: u16,
        /// Pairs in the whole transfer.
        total_pairs: u32,
        /// This part's pairs: postcard `(u64, Bytes)` back to back, keys ascending.
        #[serde(borrow)]
        pairs: Bytes<'a>,
    },
    /// 6: a Shard command was carried out.
    Sharded {
        /// Seqno of the request answered.
        req: u64,
    },
    /// 7: the request was refused; nothing changed.
    Error {
        /// Seqno of the request answered.
        req: u64,
        /// Why.
        error: KvError,
    },
}

/// Largest encoding of a [`Body`] apart from its value or pairs bytes (Delegate's header:
/// tag, transfer, range, part, parts, total and the pairs' length prefix).
pub const BODY_OVERHEAD_BYTES: usize = 48;
/// Largest encoding of one Delegate pair apart from its value (key and length prefix).
pub const PAIR_OVERHEAD_BYTES: usize = 13;

/// Iterates the pairs of a Delegate's `pairs` bytes; an error ends the iteration.
#[derive(Clone, Debug)]
pub struct Pairs<'a> {
    items: crate::wire::Items<'a, (u64, Bytes<'a>)>,
}

/// The pairs encoded in `bytes`.
pub fn pairs(bytes: &[u8]) -> Pairs<'_> {
    Pairs { items: crate::wire::items(bytes) }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = Result<(u64, &'a [u8]), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.items.next()?.map(|(k, v)| (k, v.0)))
    }
}

/// Appends one pair to a Delegate's pairs buffer; unchanged if it does not fit.
#[cfg(test)]
pub(crate) fn append_pair<const N: usize>(
    buf: &mut heapless::Vec<u8, N>,
    key: u64,
    value: &[u8],
) -> Result<(), wire::EncodeError> {
    wire::append(buf, &(key, Bytes(value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_is_wrong() {
        extern crate std;
        use std::string::ToString;
        assert!(KvError::Lost.to_string().contains("restarted without its state"));
        assert!(KvError::StorageFull.to_string().contains("storage is full"));
        assert!(KvError::ValueTooLarge.to_string().contains("max_value_bytes"));
        assert!(KvError::Shard(ShardError::NotOwner).to_string().contains("NotOwner"));
    }

    #[test]
    fn key_bounds_order_zero_keys_inf() {
        assert!(KeyBound::Zero < KeyBound::Key(0));
        assert!(KeyBound::Key(u64::MAX) < KeyBound::Inf);
        assert!(KeyRange::ALL.contains(0) && KeyRange::ALL.contains(u64::MAX));
        assert!(!KeyRange::keys(5, u64::MAX).contains(u64::MAX));
        assert!(KeyRange::from(5).contains(u64::MAX));
    }

    #[test]
    fn empty_ranges_hold_no_key() {
        assert!(KeyRange::keys(5, 5).is_empty());
        assert!(KeyRange::keys(6, 5).is_empty());
        assert!(KeyRange { lo: KeyBound::Zero, hi: KeyBound::Zero }.is_empty());
        assert!(KeyRange { lo: KeyBound::Inf, hi: KeyBound::Inf }.is_empty());
        assert!(KeyRange { lo: KeyBound::Zero, hi: KeyBound::Key(0) }.is_empty());
        assert_eq!(KeyRange { lo: KeyBound::Zero, hi: KeyBound::Key(1) }.first_key(), Some(0));
    }

    #[test]
    fn pairs_round_trip_and_stop_on_garbage() {
        let mut buf: heapless::Vec<u8, 64> = heapless::Vec::new();
        append_pair(&mut buf, 7, b"ab").unwrap();
        append_pair(&mut buf, 300, b"").unwrap();
        let got: heapless::Vec<(u64, &[u8]), 4> = pairs(&buf).map(|p| p.unwrap()).collect();
        assert_eq!(&got[..], &[(7, &b"ab"[..]), (300, &b""[..])]);
        let bad = [0xFFu8; 3];
        let mut it = pairs(&bad);
        assert_eq!(it.next(), Some(Err(DecodeError::Malformed)));
        assert_eq!(it.next(), None);
    }
}
