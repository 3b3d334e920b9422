//! An operation's life: the [`Request`] a caller submits, the [`ClientError`] that keeps it
//! from starting, the [`Event`]s and [`Outcome`] it ends with, and the client's record of
//! the one outstanding ([`Op`]).

use crate::endpoint::Endpoint;
use crate::kv::msg::{KeyRange, KvError};
use crate::kv::reliable::Refusal;
use crate::time::Instant;

/// An operation a client may submit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// Read a key.
    Get(u64),
    /// Write a key.
    Set(u64, &'a [u8]),
    /// Remove a key.
    Delete(u64),
    /// Admin: move `range` to the host at the endpoint.
    Shard(KeyRange, Endpoint),
}

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'d> {
    /// A Get's value (`None`: absent), borrowed from the datagram.
    Value(Option<&'d [u8]>),
    /// A Set or Delete took effect.
    Written,
    /// A Shard was carried out.
    Sharded,
    /// The host refused; nothing changed.
    Failed(KvError),
}

/// A completed operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completed<'d> {
    /// The operation's id ([`KvClient::submit`](super::KvClient::submit)'s return value).
    pub op: u64,
    /// Its outcome.
    pub outcome: Outcome<'d>,
    /// Redirects followed.
    pub redirects: u32,
    /// The host that answered.
    pub host: Endpoint,
}

/// What a received datagram meant to the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'d> {
    /// The outstanding operation completed.
    Completed(Completed<'d>),
    /// The host that had the outstanding operation's request gave up on this client's
    /// channel (it acknowledged nothing for long) and may have executed the request and
    /// dropped its reply: the operation is over and its outcome is unknown, as after
    /// [`KvClient::cancel`](super::KvClient::cancel). Never a second execution: the request
    /// is not sent again.
    Lost {
        /// The operation.
        op: u64,
        /// The host.
        host: Endpoint,
    },
    /// A host refused the outstanding operation's request for now (back-pressure); the
    /// client retransmits it with backoff. The operation stays outstanding.
    Refused {
        /// The operation.
        op: u64,
        /// The host that pushed back.
        host: Endpoint,
        /// Why.
        reason: Refusal,
    },
}

/// Why an operation was not submitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ClientError {
    /// An operation is already outstanding.
    Busy,
    /// The value is longer than `max_value_bytes`.
    TooLarge,
    /// The channel to the target host is full (back-pressure): retry later.
    QueueFull,
}

/// What the outstanding operation does (its key and value are in [`Op`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    Get,
    Set,
    Delete,
    Shard(KeyRange, Endpoint),
}

/// The outstanding operation, built in its slot and worked on there (it holds a `D`-byte value).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Op<const D: usize> {
    pub(super) id: u64,
    pub(super) kind: Kind,
    pub(super) key: u64,
    pub(super) value: heapless::Vec<u8, D>,
    pub(super) target: usize,
    /// Seqno of the request on the channel to `target`; `None` while waiting to send.
    pub(super) seqno: Option<u64>,
    pub(super) resend_at: Option<Instant>,
    pub(super) redirects: u32,
    pub(super) streak: u32,
}
