//! Sending helpers shared by the RSL and KV hosts: encode into the outbox, count the result.

use serde::Serialize;

use crate::endpoint::Endpoint;
use crate::kv::Frame;
use crate::outbox::{Outbox, PushError};
use crate::rsl::msg::RslMsg;
use crate::rsl::msg_codec;
use crate::stats::Stats;
use crate::wire::{self, EncodeError, Protocol};

/// How a message is wrapped: a protocol's plain envelope, or an RSL datagram naming the
/// sender's cluster.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Envelope {
    /// `wire::encode(protocol, ..)`.
    Plain(Protocol),
    /// `wire::encode_rsl(cluster, ..)`.
    Rsl(u32),
    /// `wire::encode_in_cluster(Protocol::Kv, cluster, ..)`.
    Kv(u32),
}

impl From<Protocol> for Envelope {
    fn from(p: Protocol) -> Self {
        Envelope::Plain(p)
    }
}

/// A message the engine sends: its body, as postcard writes it.
pub(crate) trait Body: Serialize {
    /// Writes the body into `buf`; returns its length.
    fn write_body(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        wire::to_slice(self, buf)
    }
}

/// The kinds every operation sends are written by hand (`rsl::msg_codec`).
impl Body for RslMsg<'_> {
    fn write_body(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        msg_codec::encode_body(self, buf)
    }
}

impl Body for Frame<'_> {}

fn encode_in<T: Body>(envelope: Envelope, msg: &T, buf: &mut [u8]) -> Result<usize, EncodeError> {
    let (protocol, cluster) = match envelope {
        Envelope::Plain(p) if !wire::carries_cluster(p) => return wire::encode(p, msg, buf),
        Envelope::Plain(p) => (p, wire::ANY_CLUSTER),
        Envelope::Rsl(cluster) => (Protocol::Rsl, cluster),
        Envelope::Kv(cluster) => (Protocol::Kv, cluster),
    };
    wire::encode_in_cluster_with(protocol, cluster, buf, |body| msg.write_body(body))
}

fn count(stats: &mut Stats, r: Result<usize, PushError>) -> Option<usize> {
    match r {
        Ok(i) => {
            Stats::bump(&mut stats.datagrams_out);
            Some(i)
        }
        Err(PushError::Full) => {
            Stats::bump(&mut stats.outbox_full);
            None
        }
        Err(PushError::TooLarge) => {
            Stats::bump(&mut stats.oversize_messages);
            None
        }
    }
}

/// Encodes `msg` for `dst`, at most `max` bytes; true if it was queued.
pub(crate) fn send<T: Body>(
    out: &mut Outbox<'_>,
    stats: &mut Stats,
    envelope: impl Into<Envelope>,
    max: usize,
    dst: Endpoint,
    msg: &T,
) -> bool {
    let envelope = envelope.into();
    count(stats, out.push(dst, max, |buf| encode_in(envelope, msg, buf))).is_some()
}

/// Encodes `msg` once and queues a copy for every endpoint in `dsts`.
pub(crate) fn broadcast<T: Body>(
    out: &mut Outbox<'_>,
    stats: &mut Stats,
    envelope: impl Into<Envelope>,
    max: usize,
    dsts: &[Endpoint],
    msg: &T,
) {
    let envelope = envelope.into();
    let mut first: Option<usize> = None;
    for dst in dsts {
        let r = match first {
            Some(i) => out.push_copy(*dst, i),
            None => out.push(*dst, max, |buf| encode_in(envelope, msg, buf)),
        };
        let queued = count(stats, r);
        if first.is_none() {
            first = queued;
        }
    }
}
