//! Snapshots of the replicated state: what identifies one ([`SnapshotId`]), the replica's
//! frozen point-in-time snapshot ([`Frozen`]), and how it is read out in bounded pieces.
//!
//! A snapshot is the application's snapshot bytes followed by the reply-cache entries, at
//! one operation number. The replica keeps one frozen snapshot: taken in O(1) (or a copy,
//! for a small application) when the retained tail of executed batches must let go of older
//! entries, after a snapshot was installed, at recovery, or when a durable binding asks for
//! one to compact its log. The frozen snapshot plus the retained tail describe every state
//! from the snapshot's operation to the present, so a lagging replica receives the snapshot
//! and then the batches after it, and a durable binding writes the snapshot over as many
//! steps as it likes: the bytes never change under either reader.
//!
//! Integrity: replicas at the same operation with the same executed-batch digest chain hold
//! the same state (every application is deterministic, and snapshot bytes are a function of
//! the state), so pieces of one [`SnapshotId`] are interchangeable between suppliers; the
//! application validates the whole when it installs it.

use super::app::App;
use super::executor::Executor;
use super::msg::SupplyPart;
pub use super::msg::{SnapshotId, SnapshotPos};
use super::reply_cache::ReplyCache;
use crate::wire::{self, Bytes};

/// A point-in-time snapshot of a replica's executor: the application's frozen snapshot and
/// a copy of the reply cache, with their identity.
pub struct Frozen<A: App, const C: usize, const RB: usize> {
    /// Which snapshot.
    pub id: SnapshotId,
    /// The application's point-in-time snapshot.
    pub app: A::Snapshot,
    /// The reply cache at the same operation.
    pub cache: ReplyCache<C, RB>,
}

impl<A: App, const C: usize, const RB: usize> Frozen<A, C, RB> {
    /// A snapshot of `ex` now.
    pub fn of(ex: &Executor<A, C, RB>) -> Self {
        let mut f = Frozen { id: SnapshotId::default(), app: A::new_snapshot(), cache: ReplyCache::default() };
        f.take(ex);
        f
    }

    /// Replaces this snapshot with one of `ex` now.
    pub fn take(&mut self, ex: &Executor<A, C, RB>) {
        ex.app.snapshot(&mut self.app);
        self.cache.clone_from(&ex.reply_cache);
        self.id = SnapshotId {
            opn: ex.ops_complete,
            bal: ex.max_bal_reflected,
            executed_digest: ex.executed_digest,
            app_len: A::snapshot_len(&self.app),
            cache_entries: self.cache.len() as u32,
        };
    }

    /// The piece of this snapshot at `pos`, read into `buf`: at most `room` application
    /// bytes, or as many whole reply-cache entries as fit `buf` (which must hold the
    /// largest entry: `RB` plus a few dozen bytes); `None` once `pos` is past the end.
    /// Returns the piece and the position after it.
    pub fn piece<'b>(&self, pos: SnapshotPos, room: usize, buf: &'b mut [u8]) -> Option<(SupplyPart<'b>, SnapshotPos)> {
        let app_room = room.min(buf.len());
        if pos == SnapshotPos::default() && self.id.app_len == 0 && self.id.cache_entries == 0 {
            // An empty snapshot is one empty piece (a transfer and a file need one).
            let done = SnapshotPos { app_offset: 0, cache_index: 1 };
            return Some((SupplyPart::App { id: self.id, offset: 0, bytes: Bytes(&buf[..0]) }, done));
        }
        if pos.app_offset < self.id.app_len {
            let n = A::snapshot_read(&self.app, pos.app_offset, &mut buf[..app_room]);
            if n == 0 {
                return None; // An application that under-reports: the receiver's install fails.
            }
            let next = SnapshotPos { app_offset: pos.app_offset + n as u64, cache_index: pos.cache_index };
            let part = SupplyPart::App { id: self.id, offset: pos.app_offset, bytes: Bytes(&buf[..n]) };
            return Some((part, next));
        }
        let first = pos.cache_index;
        let mut index = first;
        let mut used = 0;
        while let Some(e) = self.cache.wire(index as usize) {
            match wire::append_slice(&mut buf[used..], &e) {
                Some(n) => used += n,
                None => break,
            }
            index += 1;
        }
        if index == first {
            return None; // Past the end (or an entry larger than `room`: ruled out by `new`).
        }
        let next = SnapshotPos { app_offset: pos.app_offset, cache_index: index };
        Some((SupplyPart::Cache { id: self.id, index: first, entries: Bytes(&buf[..used]) }, next))
    }
}

impl<A, const C: usize, const RB: usize> Clone for Frozen<A, C, RB>
where
    A: App,
    A::Snapshot: Clone,
{
    fn clone(&self) -> Self {
        Frozen { id: self.id, app: self.app.clone(), cache: self.cache.clone() }
    }
}

impl<A, const C: usize, const RB: usize> PartialEq for Frozen<A, C, RB>
where
    A: App,
    A::Snapshot: PartialEq,
{
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.app == other.app && self.cache == other.cache
    }
}

impl<A, const C: usize, const RB: usize> Eq for Frozen<A, C, RB>
where
    A: App,
    A::Snapshot: Eq,
{
}

impl<A, const C: usize, const RB: usize> core::hash::Hash for Frozen<A, C, RB>
where
    A: App,
    A::Snapshot: core::hash::Hash,
{
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.id.hash(state);
        self.app.hash(state);
        self.cache.hash(state);
    }
}

impl<A, const C: usize, const RB: usize> core::fmt::Debug for Frozen<A, C, RB>
where
    A: App,
    A::Snapshot: core::fmt::Debug,
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Frozen").field("id", &self.id).field("app", &self.app).finish_non_exhaustive()
    }
}
