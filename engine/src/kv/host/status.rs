//! Answering an operator's status request ([`crate::kv::status`]).

use super::KvHost;
use crate::endpoint::Endpoint;
use crate::kv::reliable::Frame;
use crate::kv::status::{KvStatus, STATUS_REPLY_OVERHEAD_BYTES};
use crate::kv::storage::Storage;
use crate::outbox::Outbox;
use crate::wire::Bytes;

/// Narrows a count to the status field's width (counts here are bounded by capacities far
/// below `u32::MAX`; saturating keeps an absurd one from wrapping).
fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl<S: Storage, const H: usize, const M: usize, const P: usize, const U: usize, const D: usize>
    KvHost<S, H, M, P, U, D>
{
    /// Records whether the binding persists this host's inputs before their effects leave;
    /// only reported ([`KvStatus::durable`]), it changes no behaviour.
    pub fn set_durable(&mut self, durable: bool) {
        self.durable = durable;
    }

    /// Where this host stands now.
    pub fn status(&self) -> KvStatus {
        KvStatus {
            joining: self.join.is_some(),
            durable: self.durable,
            keys: self.store.len() as u64,
            key_capacity: self.store.capacity() as u64,
            map_runs: count(self.map.len()),
            channels: count(self.rel.peers().len()),
            unacked: count(self.rel.pending()),
            transfers_out: count(self.outgoing.len()),
            transfers_in: count(self.incoming.iter().flatten().count()),
            logged_steps: self.logged_steps,
            datagrams_in: self.stats.datagrams_in,
            counters: self.counters,
        }
    }

    /// Answers a status request from anyone with this host's status and the page of its
    /// ranges from `from_key` (none while joining: it owns nothing yet). Changes nothing.
    pub(super) fn answer_status(&mut self, to: Endpoint, nonce: u64, from_key: u64, out: &mut Outbox<'_>) {
        let mut buf = [0u8; D];
        let room = self.config.params.max_datagram_bytes.saturating_sub(STATUS_REPLY_OVERHEAD_BYTES).min(D);
        let (len, next) = match self.join {
            Some(_) => (0, None),
            None => self.page_of_runs(from_key, &mut buf[..room]),
        };
        let frame = Frame::StatusReply {
            nonce,
            host: self.me,
            status: self.status(),
            from_key,
            next,
            runs: Bytes(&buf[..len]),
        };
        self.rel.send_unreliable(to, &frame, out, &mut self.stats);
    }
}
