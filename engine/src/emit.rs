//! Sending helpers shared by the RSL and KV hosts: encode into the outbox, count the result.

use serde::Serialize;

use crate::endpoint::Endpoint;
use crate::outbox::{Outbox, PushError};
use crate::stats::Stats;
use crate::wire::{self, Protocol};

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

fn encode_in<T: Serialize>(envelope: Envelope, msg: &T, buf: &mut [u8]) -> Result<usize, crate::wire::EncodeError> {
    match envelope {
        Envelope::Plain(p) => wire::encode(p, msg, buf),
        Envelope::Rsl(cluster) => wire::encode_rsl(cluster, msg, buf),
        Envelope::Kv(cluster) => wire::encode_in_cluster(Protocol::Kv, cluster, msg, buf),
    }
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
pub(crate) fn send<T: Serialize>(
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
pub(crate) fn broadcast<T: Serialize>(
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
