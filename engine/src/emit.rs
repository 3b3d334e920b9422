//! Sending helpers shared by the RSL and KV hosts: encode into the outbox, count the result.

use serde::Serialize;

use crate::endpoint::Endpoint;
use crate::outbox::{Outbox, PushError};
use crate::stats::Stats;
use crate::wire::{self, Protocol};

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
    protocol: Protocol,
    max: usize,
    dst: Endpoint,
    msg: &T,
) -> bool {
    count(stats, out.push(dst, max, |buf| wire::encode(protocol, msg, buf))).is_some()
}

/// Encodes `msg` once and queues a copy for every endpoint in `dsts`.
pub(crate) fn broadcast<T: Serialize>(
    out: &mut Outbox<'_>,
    stats: &mut Stats,
    protocol: Protocol,
    max: usize,
    dsts: &[Endpoint],
    msg: &T,
) {
    let mut first: Option<usize> = None;
    for dst in dsts {
        let r = match first {
            Some(i) => out.push_copy(*dst, i),
            None => out.push(*dst, max, |buf| wire::encode(protocol, msg, buf)),
        };
        let queued = count(stats, r);
        if first.is_none() {
            first = queued;
        }
    }
}
