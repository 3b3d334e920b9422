//! Client requests a host serves: Get, Set and Delete for the keys it owns, a Redirect for
//! the others, and the reply and error answers every request ends with.

use super::{bump, KvHost};
use crate::kv::msg::{Body, KvError};
use crate::kv::storage::{Storage, StorageError};
use crate::outbox::Outbox;
use crate::stats::Stats;
use crate::time::Instant;
use crate::wire::Bytes;

impl<S: Storage, const H: usize, const M: usize, const P: usize, const U: usize, const D: usize>
    KvHost<S, H, M, P, U, D>
{
    pub(super) fn reply(&mut self, now: Instant, peer: usize, body: &Body<'_>, out: &mut Outbox<'_>) {
        // Room was checked before the request was accepted; a failure here is a bug.
        let sent = self.rel.send(now, peer, body, out, &mut self.stats);
        debug_assert!(sent.is_ok(), "reply refused after its room was checked: {sent:?}");
        if sent.is_err() {
            Stats::bump(&mut self.stats.oversize_messages);
        }
    }

    fn redirect(&mut self, now: Instant, peer: usize, req: u64, key: u64, out: &mut Outbox<'_>) {
        let Some(owner) = self.config.hosts.get(usize::from(self.map.owner(key))).copied() else {
            // No host holds the key (`LOST`).
            return self.error(now, peer, req, KvError::Lost, out);
        };
        bump(&mut self.counters.redirects);
        self.reply(now, peer, &Body::Redirect { req, key, owner }, out);
    }

    pub(super) fn error(&mut self, now: Instant, peer: usize, req: u64, error: KvError, out: &mut Outbox<'_>) {
        bump(&mut self.counters.errors);
        self.reply(now, peer, &Body::Error { req, error }, out);
    }

    pub(super) fn on_get(&mut self, now: Instant, peer: usize, req: u64, key: u64, out: &mut Outbox<'_>) {
        if !self.owns(key) {
            return self.redirect(now, peer, req, key, out);
        }
        bump(&mut self.counters.gets);
        let value = self.store.get(key).map(Bytes);
        let sent = self.rel.send(now, peer, &Body::Reply { req, key, value }, out, &mut self.stats);
        debug_assert!(sent.is_ok(), "reply refused after its room was checked: {sent:?}");
    }

    pub(super) fn on_set(
        &mut self,
        now: Instant,
        peer: usize,
        req: u64,
        key: u64,
        value: Option<&[u8]>,
        out: &mut Outbox<'_>,
    ) {
        if !self.owns(key) {
            return self.redirect(now, peer, req, key, out);
        }
        match value {
            Some(v) if v.len() > self.config.params.max_value_bytes => {
                return self.error(now, peer, req, KvError::ValueTooLarge, out);
            }
            Some(v) => {
                let new_key = self.store.get(key).is_none();
                if new_key && self.store.len() + self.reserved_pairs >= self.store.capacity() {
                    return self.error(now, peer, req, KvError::StorageFull, out);
                }
                match self.store.set(key, v) {
                    Ok(()) => {}
                    Err(StorageError::Full) => return self.error(now, peer, req, KvError::StorageFull, out),
                    Err(StorageError::TooLarge) => return self.error(now, peer, req, KvError::ValueTooLarge, out),
                }
            }
            None => {
                self.store.delete(key);
            }
        }
        self.changed = true;
        bump(&mut self.counters.sets);
        self.reply(now, peer, &Body::Reply { req, key, value: None }, out);
    }
}
