//! Moving key ranges between hosts: a Shard request planned, checked and carried out as
//! Delegate datagrams, and an incoming Delegate admitted (room reserved) and applied.

use super::{bump, Incoming, KvHost, Outgoing};
use crate::endpoint::Endpoint;
use crate::kv::delegation::HostId;
use crate::kv::msg::{self, Body, KeyRange, KvError, ShardError};
use crate::kv::storage::Storage;
use crate::outbox::Outbox;
use crate::time::Instant;
use crate::wire::Bytes;

/// How a Shard will be cut into Delegate datagrams.
#[derive(Clone, Copy, Debug)]
struct Plan {
    parts: u16,
    pairs: u32,
}

/// Whether an incoming Delegate part can be accepted now ([`KvHost::delegate_admissible`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Admit {
    Yes,
    NoRoom,
    Invalid,
}

impl<S: Storage, const H: usize, const M: usize, const P: usize, const U: usize, const D: usize>
    KvHost<S, H, M, P, U, D>
{
    /// The pairs of `range`, in key order, bounded by the store's size.
    fn for_each_pair(&self, range: &KeyRange, mut f: impl FnMut(u64, &[u8])) {
        let Some(mut cursor) = range.first_key() else { return };
        for _ in 0..self.store.len() {
            let Some((k, v)) = self.store.next_at_or_after(cursor) else { return };
            if !range.contains(k) {
                return;
            }
            f(k, v);
            match k.checked_add(1) {
                Some(c) => cursor = c,
                None => return,
            }
        }
    }

    /// Cuts the pairs of `range` into Delegate datagrams; `None` if more than `u16::MAX` parts.
    fn plan(&self, range: &KeyRange) -> Option<Plan> {
        let budget = self.config.params.delegate_pair_bytes();
        let (mut parts, mut pairs, mut used) = (1u32, 0u32, 0usize);
        self.for_each_pair(range, |k, v| {
            let size = pair_size(k, v);
            if used + size > budget && used > 0 {
                parts += 1;
                used = 0;
            }
            used += size;
            pairs += 1;
        });
        Some(Plan { parts: u16::try_from(parts).ok()?, pairs })
    }

    fn check_shard(
        &self,
        requester: usize,
        range: &KeyRange,
        recipient: Endpoint,
    ) -> Result<(HostId, Plan), ShardError> {
        let to = self.config.index_of(recipient).ok_or(ShardError::UnknownRecipient)?;
        if to == usize::from(self.me) {
            return Err(ShardError::RecipientIsSelf);
        }
        if range.is_empty() {
            return Err(ShardError::EmptyRange);
        }
        if !self.map.owns_all(range, self.me) {
            return Err(ShardError::NotOwner);
        }
        let plan = self.plan(range).ok_or(ShardError::TooManyPairs)?;
        let parts = usize::from(plan.parts);
        if parts > self.rel.max_unacked_per_peer() {
            return Err(ShardError::TooManyPairs);
        }
        if self.outgoing.is_full() {
            return Err(ShardError::TooManyTransfers);
        }
        let in_progress = self.incoming.iter().flatten().count();
        let len_after = self.map.len_after(range, to as HostId).map_err(|_| ShardError::MapFull)?;
        if M - len_after < 2 * in_progress {
            return Err(ShardError::MapFull);
        }
        // The parts and the reply to the requester must all fit the unacked queues.
        let reply_to_recipient = usize::from(requester == to);
        if self.rel.room(to) < parts + reply_to_recipient || U - self.rel.pending() < parts + 1 {
            return Err(ShardError::QueueFull);
        }
        Ok((to as HostId, plan))
    }

    pub(super) fn on_shard(
        &mut self,
        now: Instant,
        peer: usize,
        req: u64,
        range: KeyRange,
        recipient: Endpoint,
        out: &mut Outbox<'_>,
    ) {
        let (to, plan) = match self.check_shard(peer, &range, recipient) {
            Ok(ok) => ok,
            Err(e) => return self.error(now, peer, req, KvError::Shard(e), out),
        };
        let transfer = self.next_transfer;
        self.next_transfer += 1;
        let budget = self.config.params.delegate_pair_bytes();
        let (parts, total_pairs) = (plan.parts, plan.pairs);
        let mut last_seqno = 0;
        let mut cursor = range.first_key();
        for part in 0..parts {
            let mut buf = [0u8; D];
            let mut used = 0usize;
            // Fill this part with the next pairs, exactly as `plan` cut them.
            for _ in 0..self.store.len() {
                let Some(c) = cursor else { break };
                let Some((k, v)) = self.store.next_at_or_after(c) else { break };
                if !range.contains(k) {
                    break;
                }
                let size = pair_size(k, v);
                if used + size > budget && used > 0 {
                    break;
                }
                match crate::wire::append_slice(&mut buf[used..budget.min(D)], &(k, Bytes(v))) {
                    Some(w) => used += w,
                    None => break,
                }
                cursor = k.checked_add(1);
            }
            let body = Body::Delegate { transfer, range, part, parts, total_pairs, pairs: Bytes(&buf[..used]) };
            match self.rel.send(now, usize::from(to), &body, out, &mut self.stats) {
                Ok(s) => last_seqno = s,
                Err(e) => debug_assert!(false, "Delegate part refused after its room was checked: {e:?}"),
            }
        }
        // Ownership leaves now: the range belongs to the in-flight Delegate until the
        // recipient applies its last part.
        let mut cursor = range.first_key();
        for _ in 0..=total_pairs {
            let Some(c) = cursor else { break };
            let Some((k, _)) = self.store.next_at_or_after(c) else { break };
            if !range.contains(k) {
                break;
            }
            self.store.delete(k);
            cursor = k.checked_add(1);
        }
        let set = self.map.set(&range, to);
        debug_assert!(set.is_ok(), "map change refused after it was checked");
        let record = Outgoing { transfer, recipient: to, range, last_seqno, pairs: total_pairs };
        let pushed = self.outgoing.push(record);
        debug_assert!(pushed.is_ok(), "outgoing table full after it was checked");
        self.changed = true;
        bump(&mut self.counters.shards);
        self.reply(now, peer, &Body::Sharded { req }, out);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_delegate(
        &mut self,
        src: usize,
        transfer: u64,
        range: KeyRange,
        part: u16,
        parts: u16,
        total_pairs: u32,
        pairs: &[u8],
    ) {
        if part == 0 {
            let inc = Incoming { transfer, range, parts, next_part: 0, total_pairs, applied: 0 };
            self.incoming[src] = Some(inc);
            self.reserved_pairs += total_pairs as usize;
        }
        let Some(mut inc) = self.incoming[src] else { return };
        for (k, v) in msg::pairs(pairs).flatten() {
            // Room was reserved when part 0 was admitted.
            let set = self.store.set(k, v);
            debug_assert!(set.is_ok(), "reserved storage refused a delegated pair");
            inc.applied += 1;
            self.reserved_pairs = self.reserved_pairs.saturating_sub(1);
        }
        inc.next_part = part + 1;
        bump(&mut self.counters.delegate_parts);
        self.changed = true;
        if inc.next_part == parts {
            let set = self.map.set(&range, self.me);
            debug_assert!(set.is_ok(), "map room reserved for an incoming transfer was not there");
            self.incoming[src] = None;
            self.completed[src] = transfer;
            bump(&mut self.counters.transfers_in);
        } else {
            self.incoming[src] = Some(inc);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn delegate_admissible(
        &self,
        src: usize,
        transfer: u64,
        range: &KeyRange,
        part: u16,
        parts: u16,
        total: u32,
        count: u32,
    ) -> Admit {
        if src == usize::from(self.me) {
            return Admit::Invalid;
        }
        let last = part + 1 == parts;
        match self.incoming.get(src).copied().flatten() {
            None if part == 0 => {
                if transfer <= self.completed_from(src) || (last && count != total) {
                    return Admit::Invalid;
                }
                // A sender delegates only what it owns, so the range is neither ours nor
                // arriving from another host: anything else is forged (found by fuzzing:
                // accepting it broke the "not owning what we are receiving" invariant, and
                // a one-part one would overwrite our values with the sender's).
                let overlaps = |r: &KeyRange| r.lo < range.hi && range.lo < r.hi;
                if self.owns_any(range) || self.incoming.iter().flatten().any(|i| overlaps(&i.range)) {
                    return Admit::Invalid;
                }
                let in_progress = self.incoming.iter().flatten().count();
                let storage_ok = self.store.len() + self.reserved_pairs + total as usize <= self.store.capacity();
                let map_ok = self.map.free() >= 2 * (in_progress + 1);
                match storage_ok && map_ok {
                    true => Admit::Yes,
                    false => Admit::NoRoom,
                }
            }
            Some(inc)
                if part > 0
                    && inc.transfer == transfer
                    && inc.range == *range
                    && inc.parts == parts
                    && inc.total_pairs == total
                    && inc.next_part == part
                    && inc.applied + count <= total
                    && (!last || inc.applied + count == total) =>
            {
                Admit::Yes
            }
            _ => Admit::Invalid,
        }
    }
}

/// Bytes postcard uses for `v` as a varint.
fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Exact encoded size of one Delegate pair.
fn pair_size(key: u64, value: &[u8]) -> usize {
    varint_len(key) + varint_len(value.len() as u64) + value.len()
}
