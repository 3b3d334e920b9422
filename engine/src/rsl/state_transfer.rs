//! State transfer, the receiver's side (IronRSL `AppStateRequest` / `AppStateSupply`).
//!
//! A replica whose executed-operation count is below what it must reach (the truncation
//! point, or a point another replica reached a while ago) asks a supplier for the decisions
//! from its own count on. The supplier answers with the executed batches themselves while
//! its retained tail still holds them (the receiver executes them in order), and otherwise
//! with its frozen snapshot in pieces followed by the batches after it (see
//! `rsl::snapshot` and `Replica`'s catch-up). One request gets a bounded answer whose last
//! piece says so; the receiver then asks again at once, from where it now is, so a transfer
//! runs at the network's pace with one request per answer. A lost piece is recovered by
//! the retry timer. Snapshot pieces are accepted only in order, staged apart from the live
//! state, resumed after a loss (from any supplier holding the same snapshot), and installed
//! only when every byte arrived and the application validated them.

use super::app::{App, SnapshotError};
use super::executor::Executor;
use super::msg::{Resume, SupplyPart};
use super::reply_cache::{CacheEntryWire, ReplyCache};
use super::snapshot::{SnapshotId, SnapshotPos};
use crate::time::Instant;

/// Bytes of a supply message besides its payload (envelope, tags, snapshot identity,
/// offsets, length prefixes; or the operation and ballot of an executed batch).
pub const SUPPLY_OVERHEAD_BYTES: usize = 96;

/// A snapshot being received.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Incoming {
    /// The replica sending it.
    pub supplier: usize,
    /// Which snapshot.
    pub id: SnapshotId,
    /// How much of it is staged (contiguous from the start).
    pub pos: SnapshotPos,
}

/// What a supply chunk did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Not usable now (stale, out of order, another snapshot): dropped.
    Ignored,
    /// Staged; more to come.
    Staged,
    /// The last piece arrived: ready to install.
    Complete,
    /// The bytes were refused (the application's staging, bad entries): the transfer restarts.
    Corrupt,
}

/// Receiver side of state transfer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Transfer<A: App, const C: usize, const RB: usize> {
    /// The snapshot being received, if any.
    pub incoming: Option<Incoming>,
    /// The replica that answered last (asked again while it makes progress).
    pub supplier: Option<usize>,
    /// Operations this replica must reach (the highest truncation point it has heard of).
    pub target_opn: u64,
    /// When to ask (again) for state, while one is needed.
    pub retry_at: Instant,
    /// Rotates suppliers between retries.
    pub attempts: u32,
    /// Snapshots installed so far.
    pub installed: u64,
    /// Where the replica stood when state was last requested (see [`Transfer::on_request`]).
    mark: Option<(u64, SnapshotPos)>,
    /// Requests in a row that found no progress.
    stalls: u32,
    /// A point another replica had executed while this one was below it, and since when (see
    /// `Replica::watch_lag`): if the log has not brought the replica there after a grace
    /// period, it fetches the state.
    pub behind: Option<(u64, Instant)>,
    staging: A::Staging,
    staged_cache: ReplyCache<C, RB>,
}

impl<A: App, const C: usize, const RB: usize> Transfer<A, C, RB> {
    /// No transfer needed yet.
    pub fn new() -> Self {
        Transfer {
            incoming: None,
            supplier: None,
            target_opn: 0,
            retry_at: Instant::ZERO,
            attempts: 0,
            installed: 0,
            mark: None,
            stalls: 0,
            behind: None,
            staging: A::new_staging(),
            staged_cache: ReplyCache::default(),
        }
    }

    /// Whether state must be fetched to reach `target_opn`.
    pub fn needed(&self, ops_complete: u64) -> bool {
        self.target_opn > ops_complete
    }

    /// Called on each (re)request with the replica's executed count. If the replica
    /// progressed since the previous request (executed batches, or staged snapshot pieces),
    /// returns the supplier that answered: keep asking it. Otherwise counts a stall (the
    /// caller then tries another supplier; a snapshot resumes from any replica holding the
    /// same one) and, after `max_stalls` stalls in a row, drops the partial snapshot so the
    /// next request starts afresh rather than waiting on content nobody has any more.
    pub fn on_request(&mut self, ops_complete: u64, max_stalls: u32) -> Option<usize> {
        let pos = (ops_complete, self.incoming.map(|i| i.pos).unwrap_or_default());
        let progressed = self.mark.is_some_and(|m| m != pos);
        self.mark = Some(pos);
        if progressed {
            self.stalls = 0;
            return self.supplier;
        }
        self.stalls = self.stalls.saturating_add(1);
        if self.stalls > max_stalls {
            self.incoming = None;
            self.supplier = None;
            self.stalls = 0;
        }
        None
    }

    /// The partial snapshot to resume, if any.
    pub fn resume(&self) -> Option<Resume> {
        self.incoming.map(|i| Resume { id: i.id, pos: i.pos })
    }

    /// Takes one snapshot piece (`App` or `Cache`) from `supplier`. `ops_complete` is the
    /// live executor's count.
    pub fn receive(&mut self, supplier: usize, part: SupplyPart<'_>, ops_complete: u64) -> Progress {
        let (id, starts) = match part {
            SupplyPart::App { id, offset, .. } => (id, offset == 0),
            SupplyPart::Cache { id, index, .. } => (id, id.app_len == 0 && index == 0),
            SupplyPart::Executed { .. } => return Progress::Ignored,
        };
        if id.opn <= ops_complete {
            return Progress::Ignored;
        }
        // The same snapshot content may come from any supplier: replicas at the same `opn`
        // with the same digest chain hold the same state.
        let same = self.incoming.is_some_and(|i| i.id.same_content(&id));
        if !same {
            // Only a piece at the very start can begin a (newer) snapshot.
            if !starts || self.incoming.is_some_and(|i| i.id.opn > id.opn) {
                return Progress::Ignored;
            }
            self.staging = A::new_staging();
            self.staged_cache.clear();
            self.incoming = Some(Incoming { supplier, id, pos: SnapshotPos::default() });
        }
        self.supplier = Some(supplier);
        let Some(inc) = self.incoming.as_mut() else { return Progress::Ignored };
        inc.supplier = supplier;
        inc.id.bal = inc.id.bal.max(id.bal);
        match part {
            SupplyPart::App { offset, bytes, .. } => {
                if offset != inc.pos.app_offset || offset + bytes.0.len() as u64 > id.app_len {
                    return Progress::Ignored;
                }
                if A::stage(&mut self.staging, offset, bytes.0).is_err() {
                    self.incoming = None;
                    return Progress::Corrupt;
                }
                inc.pos.app_offset += bytes.0.len() as u64;
            }
            SupplyPart::Cache { index, entries, .. } => {
                if index != inc.pos.cache_index || inc.pos.app_offset != id.app_len {
                    return Progress::Ignored;
                }
                let mut rest = entries.0;
                while !rest.is_empty() {
                    let parsed = postcard::take_from_bytes::<CacheEntryWire<'_>>(rest);
                    let Ok((entry, tail)) = parsed else {
                        self.incoming = None;
                        return Progress::Corrupt;
                    };
                    // A cached reply from an operation the snapshot has not executed cannot be true.
                    if inc.pos.cache_index >= id.cache_entries
                        || entry.opn >= id.opn
                        || self.staged_cache.push_sorted(entry).is_err()
                    {
                        self.incoming = None;
                        return Progress::Corrupt;
                    }
                    inc.pos.cache_index += 1;
                    rest = tail;
                }
            }
            SupplyPart::Executed { .. } => return Progress::Ignored,
        }
        if inc.pos.app_offset < id.app_len || inc.pos.cache_index < id.cache_entries {
            return Progress::Staged;
        }
        Progress::Complete
    }

    /// Installs the completed snapshot into `ex`. The live state changes only on success.
    pub fn install(&mut self, ex: &mut Executor<A, C, RB>) -> Result<SnapshotId, SnapshotError> {
        let Some(inc) = self.incoming.take() else { return Err(SnapshotError::Corrupt) };
        ex.app.install(&mut self.staging, inc.id.app_len)?;
        core::mem::swap(&mut ex.reply_cache, &mut self.staged_cache);
        self.staged_cache.clear();
        self.staging = A::new_staging();
        ex.ops_complete = inc.id.opn;
        ex.executed_digest = inc.id.executed_digest;
        ex.max_bal_reflected = ex.max_bal_reflected.max(inc.id.bal);
        self.attempts = 0;
        self.installed += 1;
        Ok(inc.id)
    }

    /// Local invariants (checked after every step in debug builds and by the checkers): a
    /// transfer under way has staged no more than its snapshot holds, cache entries only
    /// after every application byte, and exactly the cache entries it counts.
    pub fn invariant(&self) -> Result<(), &'static str> {
        if let Some(inc) = &self.incoming {
            if inc.pos.app_offset > inc.id.app_len || inc.pos.cache_index > inc.id.cache_entries {
                return Err("state transfer staged more than its snapshot holds");
            }
            if inc.pos.cache_index > 0 && inc.pos.app_offset != inc.id.app_len {
                return Err("state transfer staged cache entries before the application bytes");
            }
            if self.staged_cache.len() != inc.pos.cache_index as usize {
                return Err("state transfer staged cache entries it did not count");
            }
        }
        Ok(())
    }
}

impl<A: App, const C: usize, const RB: usize> Default for Transfer<A, C, RB> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rsl::app::App as _;
    use crate::rsl::apps::kv::{KvApp, KvOp};
    use crate::rsl::ballot::Ballot;
    use crate::rsl::snapshot::Frozen;
    use crate::wire::Bytes;
    use crate::Endpoint;

    type App = KvApp<8, 4, 8>;
    type Ex = Executor<App, 4, 16>;

    fn source() -> Ex {
        let mut ex = Ex::new(App::new());
        for k in 0..5u8 {
            let mut req = [0u8; 32];
            let n = KvOp::Put(Bytes(&[k]), Bytes(b"value")).encode(&mut req).unwrap();
            let mut reply = [0u8; 16];
            ex.app.apply(&req[..n], &mut reply);
        }
        ex.ops_complete = 9;
        ex
    }

    /// Application bytes `[offset, offset + len)` of `f`'s snapshot as an `App` piece.
    fn app_piece<'b>(
        f: &Frozen<App, 4, 16>,
        id: SnapshotId,
        offset: u64,
        len: usize,
        buf: &'b mut [u8],
    ) -> SupplyPart<'b> {
        let n = <App as crate::rsl::app::App>::snapshot_read(&f.app, offset, &mut buf[..len]);
        SupplyPart::App { id, offset, bytes: Bytes(&buf[..n]) }
    }

    #[test]
    fn a_transfer_resumes_from_another_supplier_with_the_same_content() {
        let src = source();
        let f = Frozen::of(&src);
        let id_a = f.id;
        let id_b = SnapshotId { bal: Ballot { seqno: 7, proposer: 2 }, ..id_a };
        let mut t: Transfer<App, 4, 16> = Transfer::new();
        let mut buf = [0u8; 64];
        assert_eq!(t.receive(1, app_piece(&f, id_a, 0, 20, &mut buf), 0), Progress::Staged);
        let mut off = 20;
        let mut last = Progress::Staged;
        while off < id_a.app_len {
            last = t.receive(2, app_piece(&f, id_b, off, 20, &mut buf), 0);
            off += 20;
        }
        assert_eq!(last, Progress::Complete, "supplier 2 continued supplier 1's snapshot");
        let mut dst = Ex::new(App::new());
        let installed = t.install(&mut dst).unwrap();
        assert_eq!(dst.app, src.app);
        assert_eq!(dst.ops_complete, 9);
        assert_eq!(installed.bal, id_b.bal, "the highest supplier ballot is reflected");
    }

    #[test]
    fn pieces_out_of_order_or_not_newer_or_executed_batches_are_ignored() {
        let f = Frozen::of(&source());
        let mut t: Transfer<App, 4, 16> = Transfer::new();
        let mut buf = [0u8; 64];
        assert_eq!(t.receive(1, app_piece(&f, f.id, 20, 20, &mut buf), 0), Progress::Ignored, "not at the start");
        assert_eq!(t.receive(1, app_piece(&f, f.id, 0, 20, &mut buf), 9), Progress::Ignored, "not newer");
        let batch = SupplyPart::Executed { opn: 0, bal: Ballot::INITIAL, batch: Bytes(b"") };
        assert_eq!(t.receive(1, batch, 0), Progress::Ignored, "batches are executed, not staged");
    }

    #[test]
    fn bytes_the_application_refuses_install_nothing() {
        let f = Frozen::of(&source());
        let mut t: Transfer<App, 4, 16> = Transfer::new();
        let mut buf = [0u8; 512];
        let n = <App as crate::rsl::app::App>::snapshot_read(&f.app, 0, &mut buf);
        buf[0] = 200; // a count above the map's capacity
        let part = SupplyPart::App { id: f.id, offset: 0, bytes: Bytes(&buf[..n]) };
        assert_eq!(t.receive(1, part, 0), Progress::Corrupt);
        assert!(t.incoming.is_none());
        let mut dst = Ex::new(App::new());
        assert!(t.install(&mut dst).is_err());
        assert_eq!(dst.ops_complete, 0);
    }

    #[test]
    fn a_stalled_partial_snapshot_is_abandoned_on_the_next_retry() {
        let f = Frozen::of(&source());
        let mut t: Transfer<App, 4, 16> = Transfer::new();
        let mut buf = [0u8; 64];
        assert_eq!(t.on_request(0, 2), None);
        t.receive(1, app_piece(&f, f.id, 0, 20, &mut buf), 0);
        assert_eq!(t.on_request(0, 2), Some(1), "progress: keep asking the supplier that answers");
        assert_eq!(t.resume().map(|r| r.pos.app_offset), Some(20));
        assert_eq!(t.on_request(0, 2), None, "a stall: try another supplier");
        assert_eq!(t.on_request(0, 2), None);
        assert!(t.incoming.is_some(), "resumable while stalls <= max_stalls");
        assert_eq!(t.on_request(0, 2), None);
        assert!(t.incoming.is_none(), "too many stalls: start afresh");
        assert_eq!(t.resume(), None);
        assert_eq!(t.on_request(3, 2), None, "first request after the reset");
        assert_eq!(t.on_request(4, 2), None, "executed batches are progress, but nobody answered yet");
        t.supplier = Some(2);
        assert_eq!(t.on_request(5, 2), Some(2));
    }

    #[test]
    fn invariant_rejects_each_broken_clause() {
        const MORE: &str = "state transfer staged more than its snapshot holds";
        const EARLY: &str = "state transfer staged cache entries before the application bytes";
        const UNCOUNTED: &str = "state transfer staged cache entries it did not count";
        let f = Frozen::of(&source());
        let mut ok: Transfer<App, 4, 16> = Transfer::new();
        let mut buf = [0u8; 64];
        assert_eq!(ok.receive(1, app_piece(&f, f.id, 0, 20, &mut buf), 0), Progress::Staged);
        assert_eq!(ok.invariant(), Ok(()), "part of the application staged, no cache entry");
        let check = |g: &dyn Fn(&mut Incoming)| {
            let mut t = ok.clone();
            g(t.incoming.as_mut().unwrap());
            t.invariant()
        };
        assert_eq!(check(&|i| i.pos.app_offset = i.id.app_len), Ok(()), "every application byte");
        assert_eq!(check(&|i| i.pos.app_offset = i.id.app_len + 1), Err(MORE));
        let cache_over = |i: &mut Incoming| {
            i.pos.app_offset = i.id.app_len;
            i.pos.cache_index = i.id.cache_entries + 1;
        };
        assert_eq!(check(&cache_over), Err(MORE));
        let early = |i: &mut Incoming| {
            i.pos.cache_index = 1;
            i.id.cache_entries = 1;
        };
        assert_eq!(check(&early), Err(EARLY));
        let uncounted = |i: &mut Incoming| {
            i.pos.app_offset = i.id.app_len;
            i.pos.cache_index = 1;
            i.id.cache_entries = 1;
        };
        assert_eq!(check(&uncounted), Err(UNCOUNTED));
    }

    #[test]
    fn snapshot_identity_compares_every_field_but_the_ballot() {
        let id = Frozen::<App, 4, 16>::of(&source()).id;
        assert!(id.same_content(&SnapshotId { bal: Ballot { seqno: 9, proposer: 1 }, ..id }));
        let others = [
            SnapshotId { opn: id.opn + 1, ..id },
            SnapshotId { app_len: id.app_len + 1, ..id },
            SnapshotId { cache_entries: id.cache_entries + 1, ..id },
            SnapshotId { executed_digest: id.executed_digest ^ 1, ..id },
        ];
        for other in others {
            assert!(!id.same_content(&other), "{other:?}");
        }
    }

    fn entry_bytes(opn: u64) -> heapless::Vec<u8, 64> {
        let e = CacheEntryWire { client: Endpoint::v4([10, 0, 0, 7], 1), seqno: 1, opn, reply: Bytes(b"r") };
        let mut v = heapless::Vec::new();
        crate::wire::append(&mut v, &e).unwrap();
        v
    }

    #[test]
    fn an_older_snapshot_never_replaces_a_newer_one_in_progress() {
        let f9 = Frozen::of(&source());
        let mut older = source();
        older.ops_complete = 8;
        let f8 = Frozen::of(&older);
        let mut t: Transfer<App, 4, 16> = Transfer::new();
        let mut buf = [0u8; 64];
        assert_eq!(t.receive(1, app_piece(&f9, f9.id, 0, 20, &mut buf), 0), Progress::Staged);
        assert_eq!(t.receive(2, app_piece(&f8, f8.id, 0, 20, &mut buf), 0), Progress::Ignored);
        assert_eq!(t.incoming.map(|i| (i.id.opn, i.pos.app_offset)), Some((9, 20)));
    }

    #[test]
    fn cache_entries_come_after_the_application_and_only_from_executed_operations() {
        let mut src = source();
        src.reply_cache.insert(Endpoint::v4([10, 0, 0, 7], 1), 1, 3, b"r");
        let f = Frozen::of(&src);
        let id = f.id;
        assert_eq!(id.cache_entries, 1);
        let mut t: Transfer<App, 4, 16> = Transfer::new();
        let mut buf = [0u8; 512];
        assert_eq!(t.receive(1, app_piece(&f, id, 0, 20, &mut buf), 0), Progress::Staged);
        let good = entry_bytes(3);
        let early = SupplyPart::Cache { id, index: 0, entries: Bytes(&good) };
        assert_eq!(t.receive(1, early, 0), Progress::Ignored, "the application is not complete");
        assert_eq!(t.receive(1, app_piece(&f, id, 20, 512, &mut buf), 0), Progress::Staged);
        let unexecuted = entry_bytes(id.opn);
        let forged = SupplyPart::Cache { id, index: 0, entries: Bytes(&unexecuted) };
        assert_eq!(t.receive(1, forged, 0), Progress::Corrupt, "a reply from an operation not executed");
        assert!(t.incoming.is_none());
    }

    #[test]
    fn a_snapshot_without_application_bytes_starts_at_cache_entry_zero() {
        let id = SnapshotId { bal: Ballot::INITIAL, opn: 5, app_len: 0, cache_entries: 2, executed_digest: 1 };
        let good = entry_bytes(3);
        let mut t: Transfer<App, 4, 16> = Transfer::new();
        assert_eq!(t.receive(1, SupplyPart::Cache { id, index: 1, entries: Bytes(&good) }, 0), Progress::Ignored);
        assert!(t.incoming.is_none(), "entry 1 cannot begin a snapshot");
        assert_eq!(t.receive(1, SupplyPart::Cache { id, index: 0, entries: Bytes(&good) }, 0), Progress::Staged);
        assert_eq!(t.incoming.map(|i| i.pos.cache_index), Some(1));
    }
}
