//! State transfer (IronRSL `AppStateRequest` / `AppStateSupply`), chunked and resumable.
//!
//! A replica whose executed-operation count is below the truncation point can no longer
//! learn the missing decisions (acceptors discarded those votes), so it fetches a snapshot.
//! The snapshot is the application's bytes followed by the reply-cache entries. One request
//! makes the supplier emit, in one step, every chunk from the requested offsets (up to a
//! per-step bound): all chunks of one answer describe the same state. The receiver accepts
//! chunks only in order, stages them apart from its live state, resumes from where it is
//! after a loss (the supplier restarts from zero if its snapshot changed since), and
//! installs only when every byte arrived and the digest matches.

use serde::Serialize;

use super::app::{App, Fnv64, SnapshotError};
use super::ballot::Ballot;
use super::executor::Executor;
use super::msg::SupplyPart;
use super::reply_cache::{CacheEntryWire, ReplyCache};
use crate::time::Instant;

/// Application bytes per supply chunk at most (kept small so the scratch buffer is too).
pub const STATE_CHUNK_BYTES: usize = 1024;
/// Bytes of a supply message besides its payload (envelope, ballot, numbers, tags).
pub const SUPPLY_OVERHEAD_BYTES: usize = 96;

/// Feeds postcard output straight into a digest, so nothing is buffered to hash it.
struct HashFlavor<'h>(&'h mut Fnv64);

impl postcard::ser_flavors::Flavor for HashFlavor<'_> {
    type Output = ();
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.write(&[data]);
        Ok(())
    }
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.write(data);
        Ok(())
    }
    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

fn hash_value<T: Serialize>(h: &mut Fnv64, value: &T) {
    // Hashing cannot fail: the flavor accepts every byte.
    let _ = postcard::serialize_with_flavor(value, HashFlavor(h));
}

/// Identity and size of a snapshot: what every supply chunk repeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SnapshotId {
    /// The supplier's `max_bal_reflected`.
    pub bal: Ballot,
    /// Operations the snapshot reflects.
    pub opn: u64,
    /// Digest of the application bytes then the encoded cache entries.
    pub digest: u64,
    /// Application bytes.
    pub app_len: u64,
    /// Reply-cache entries.
    pub cache_entries: u32,
    /// The supplier's executed-batch digest chain at `opn`.
    pub executed_digest: u64,
}

impl SnapshotId {
    /// A token naming this snapshot's content, sent by a receiver that resumes: the supplier
    /// resumes from the requested offsets only if its own snapshot has the same token.
    pub fn resume_token(&self) -> u64 {
        let mut h = Fnv64::new();
        for x in [self.opn, self.digest, self.app_len, u64::from(self.cache_entries), self.executed_digest] {
            h.write(&x.to_le_bytes());
        }
        // 0 means "start afresh" on the wire.
        h.finish().max(1)
    }

    /// True when both describe the same bytes (ignoring the supplier's ballot).
    pub fn same_content(&self, other: &SnapshotId) -> bool {
        self.opn == other.opn
            && self.digest == other.digest
            && self.app_len == other.app_len
            && self.cache_entries == other.cache_entries
            && self.executed_digest == other.executed_digest
    }
}

/// Describes the executor's current state as a snapshot (reads all of it once).
pub fn snapshot_id<A: App, const C: usize, const RB: usize>(ex: &Executor<A, C, RB>) -> SnapshotId {
    let mut h = Fnv64::new();
    let app_len = ex.app.snapshot_len();
    let mut buf = [0u8; 256];
    let mut off = 0;
    while off < app_len {
        let n = ex.app.snapshot_read(off, &mut buf);
        if n == 0 {
            break; // An application that under-reports: the receiver's check will fail.
        }
        h.write(&buf[..n]);
        off += n as u64;
    }
    let mut i = 0;
    while let Some(e) = ex.reply_cache.wire(i) {
        hash_value(&mut h, &e);
        i += 1;
    }
    SnapshotId {
        bal: ex.max_bal_reflected,
        opn: ex.ops_complete,
        digest: h.finish(),
        app_len,
        cache_entries: ex.reply_cache.len() as u32,
        executed_digest: ex.executed_digest,
    }
}

/// A snapshot being received.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Incoming {
    /// The replica sending it.
    pub supplier: usize,
    /// Which snapshot.
    pub id: SnapshotId,
    /// Application bytes staged so far (contiguous from 0).
    pub app_received: u64,
    /// Cache entries staged so far.
    pub cache_received: u32,
    hasher: Fnv64,
}

/// What a supply chunk did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Not usable now (stale, out of order, another snapshot): dropped.
    Ignored,
    /// Staged; more to come.
    Staged,
    /// The last piece arrived and the digest matched: ready to install.
    Complete,
    /// The bytes were refused (digest mismatch, bad entries): the transfer restarts.
    Corrupt,
}

/// Receiver side of state transfer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Transfer<A: App, const C: usize, const RB: usize> {
    /// The transfer under way.
    pub incoming: Option<Incoming>,
    /// Operations this replica must reach (the highest truncation point it has heard of).
    pub target_opn: u64,
    /// When to ask (again) for state, while one is needed.
    pub retry_at: Instant,
    /// Rotates suppliers between retries.
    pub attempts: u32,
    /// Snapshots installed so far.
    pub installed: u64,
    /// Where the transfer stood when state was last requested (see [`Transfer::on_request`]).
    mark: Option<(u64, u32)>,
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

    /// Called on each (re)request. If the transfer progressed since the previous request,
    /// returns its supplier: keep asking the replica that is answering. Otherwise counts a
    /// stall (the caller then tries another supplier; the same content resumes from any of
    /// them) and, after `max_stalls` stalls in a row, drops the partial snapshot so the next
    /// request starts afresh rather than waiting forever on content nobody has any more.
    pub fn on_request(&mut self, max_stalls: u32) -> Option<usize> {
        let pos = self.incoming.map(|i| (i.app_received, i.cache_received));
        let progressed = pos.is_some() && pos != self.mark;
        self.mark = pos;
        if progressed {
            self.stalls = 0;
            return self.incoming.map(|i| i.supplier);
        }
        self.stalls = self.stalls.saturating_add(1);
        if self.stalls > max_stalls {
            self.incoming = None;
            self.mark = None;
            self.stalls = 0;
        }
        None
    }

    /// Offsets to ask for next: resume the transfer under way, else start afresh.
    pub fn resume_point(&self) -> (u64, u32, u64) {
        match &self.incoming {
            Some(i) => (i.app_received, i.cache_received, i.id.resume_token()),
            None => (0, 0, 0),
        }
    }

    /// Takes one supply chunk from `supplier`. `ops_complete` is the live executor's count.
    pub fn receive(&mut self, supplier: usize, id: SnapshotId, part: SupplyPart<'_>, ops_complete: u64) -> Progress {
        if id.opn <= ops_complete {
            return Progress::Ignored;
        }
        // The same snapshot content may come from any supplier: replicas at the same `opn`
        // hold the same state, but their `max_bal_reflected` may differ, so it is not part
        // of the identity. Resuming with another supplier continues where we are.
        let same = self.incoming.is_some_and(|i| i.id.same_content(&id));
        if !same {
            // Only a chunk at the very start can begin a (newer) snapshot.
            let starts = match part {
                SupplyPart::App { offset, .. } => offset == 0,
                SupplyPart::Cache { index, .. } => id.app_len == 0 && index == 0,
            };
            if !starts || self.incoming.is_some_and(|i| i.id.opn > id.opn) {
                return Progress::Ignored;
            }
            self.staged_cache.clear();
            self.incoming = Some(Incoming { supplier, id, app_received: 0, cache_received: 0, hasher: Fnv64::new() });
        }
        let Some(inc) = self.incoming.as_mut() else { return Progress::Ignored };
        inc.supplier = supplier;
        inc.id.bal = inc.id.bal.max(id.bal);
        match part {
            SupplyPart::App { offset, bytes } => {
                if offset != inc.app_received || offset + bytes.0.len() as u64 > id.app_len {
                    return Progress::Ignored;
                }
                if A::stage(&mut self.staging, offset, bytes.0).is_err() {
                    self.incoming = None;
                    return Progress::Corrupt;
                }
                inc.hasher.write(bytes.0);
                inc.app_received += bytes.0.len() as u64;
            }
            SupplyPart::Cache { index, entries } => {
                if index != inc.cache_received || inc.app_received != id.app_len {
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
                    if inc.cache_received >= id.cache_entries
                        || entry.opn >= id.opn
                        || self.staged_cache.push_sorted(entry).is_err()
                    {
                        self.incoming = None;
                        return Progress::Corrupt;
                    }
                    inc.hasher.write(&rest[..rest.len() - tail.len()]);
                    inc.cache_received += 1;
                    rest = tail;
                }
            }
        }
        if inc.app_received < id.app_len || inc.cache_received < id.cache_entries {
            return Progress::Staged;
        }
        if inc.hasher.finish() != id.digest {
            self.incoming = None;
            return Progress::Corrupt;
        }
        Progress::Complete
    }

    /// Installs the completed snapshot into `ex`. The live state changes only on success.
    pub fn install(&mut self, ex: &mut Executor<A, C, RB>) -> Result<SnapshotId, SnapshotError> {
        let Some(inc) = self.incoming.take() else { return Err(SnapshotError::Corrupt) };
        ex.app.install(&self.staging, inc.id.app_len)?;
        core::mem::swap(&mut ex.reply_cache, &mut self.staged_cache);
        self.staged_cache.clear();
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
            if inc.app_received > inc.id.app_len || inc.cache_received > inc.id.cache_entries {
                return Err("state transfer staged more than its snapshot holds");
            }
            if inc.cache_received > 0 && inc.app_received != inc.id.app_len {
                return Err("state transfer staged cache entries before the application bytes");
            }
            if self.staged_cache.len() != inc.cache_received as usize {
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

    fn chunk(ex: &Ex, offset: u64, len: usize, buf: &mut [u8]) -> usize {
        ex.app.snapshot_read(offset, &mut buf[..len])
    }

    #[test]
    fn a_transfer_resumes_from_another_supplier_with_the_same_content() {
        let src = source();
        let id_a = snapshot_id(&src);
        let id_b = SnapshotId { bal: Ballot { seqno: 7, proposer: 2 }, ..id_a };
        let mut t: Transfer<App, 4, 16> = Transfer::new();
        let mut buf = [0u8; 64];
        let n = chunk(&src, 0, 20, &mut buf);
        assert_eq!(t.receive(1, id_a, SupplyPart::App { offset: 0, bytes: Bytes(&buf[..n]) }, 0), Progress::Staged);
        let mut off = n as u64;
        let mut last = Progress::Staged;
        while off < id_a.app_len {
            let n = chunk(&src, off, 20, &mut buf);
            last = t.receive(2, id_b, SupplyPart::App { offset: off, bytes: Bytes(&buf[..n]) }, 0);
            off += n as u64;
        }
        assert_eq!(last, Progress::Complete, "supplier 2 continued supplier 1's snapshot");
        let mut dst = Ex::new(App::new());
        let installed = t.install(&mut dst).unwrap();
        assert_eq!(dst.app, src.app);
        assert_eq!(dst.ops_complete, 9);
        assert_eq!(installed.bal, id_b.bal, "the highest supplier ballot is reflected");
    }

    #[test]
    fn chunks_out_of_order_or_of_an_unknown_snapshot_are_ignored() {
        let src = source();
        let id = snapshot_id(&src);
        let mut t: Transfer<App, 4, 16> = Transfer::new();
        let mut buf = [0u8; 64];
        let n = chunk(&src, 20, 20, &mut buf);
        assert_eq!(t.receive(1, id, SupplyPart::App { offset: 20, bytes: Bytes(&buf[..n]) }, 0), Progress::Ignored);
        assert_eq!(
            t.receive(1, id, SupplyPart::App { offset: 0, bytes: Bytes(&buf[..0]) }, 9),
            Progress::Ignored,
            "not newer"
        );
    }

    #[test]
    fn a_digest_mismatch_installs_nothing() {
        let src = source();
        let id = SnapshotId { digest: snapshot_id(&src).digest ^ 1, ..snapshot_id(&src) };
        let mut t: Transfer<App, 4, 16> = Transfer::new();
        let mut buf = [0u8; 512];
        let n = chunk(&src, 0, 512, &mut buf);
        assert_eq!(t.receive(1, id, SupplyPart::App { offset: 0, bytes: Bytes(&buf[..n]) }, 0), Progress::Corrupt);
        assert!(t.incoming.is_none());
        let mut dst = Ex::new(App::new());
        assert!(t.install(&mut dst).is_err());
        assert_eq!(dst.ops_complete, 0);
    }

    #[test]
    fn a_stalled_partial_snapshot_is_abandoned_on_the_next_retry() {
        let src = source();
        let id = snapshot_id(&src);
        let mut t: Transfer<App, 4, 16> = Transfer::new();
        let mut buf = [0u8; 64];
        let n = chunk(&src, 0, 20, &mut buf);
        assert_eq!(t.on_request(2), None);
        t.receive(1, id, SupplyPart::App { offset: 0, bytes: Bytes(&buf[..n]) }, 0);
        assert_eq!(t.on_request(2), Some(1), "progress: keep asking the supplier that answers");
        assert_eq!(t.resume_point().0, n as u64);
        assert_eq!(t.on_request(2), None, "a stall: try another supplier");
        assert_eq!(t.on_request(2), None);
        assert!(t.incoming.is_some(), "resumable while stalls <= max_stalls");
        assert_eq!(t.on_request(2), None);
        assert!(t.incoming.is_none(), "too many stalls: start afresh");
        assert_eq!(t.resume_point(), (0, 0, 0));
    }

    #[test]
    fn invariant_rejects_each_broken_clause() {
        const MORE: &str = "state transfer staged more than its snapshot holds";
        const EARLY: &str = "state transfer staged cache entries before the application bytes";
        const UNCOUNTED: &str = "state transfer staged cache entries it did not count";
        let src = source();
        let id = snapshot_id(&src);
        let mut ok: Transfer<App, 4, 16> = Transfer::new();
        let mut buf = [0u8; 64];
        let n = chunk(&src, 0, 20, &mut buf);
        assert_eq!(ok.receive(1, id, SupplyPart::App { offset: 0, bytes: Bytes(&buf[..n]) }, 0), Progress::Staged);
        assert_eq!(ok.invariant(), Ok(()), "part of the application staged, no cache entry");
        let check = |f: &dyn Fn(&mut Incoming)| {
            let mut t = ok.clone();
            f(t.incoming.as_mut().unwrap());
            t.invariant()
        };
        assert_eq!(check(&|i| i.app_received = i.id.app_len), Ok(()), "every application byte");
        assert_eq!(check(&|i| i.app_received = i.id.app_len + 1), Err(MORE));
        let cache_over = |i: &mut Incoming| {
            i.app_received = i.id.app_len;
            i.cache_received = i.id.cache_entries + 1;
        };
        assert_eq!(check(&cache_over), Err(MORE));
        let early = |i: &mut Incoming| {
            i.cache_received = 1;
            i.id.cache_entries = 1;
        };
        assert_eq!(check(&early), Err(EARLY));
        let uncounted = |i: &mut Incoming| {
            i.app_received = i.id.app_len;
            i.cache_received = 1;
            i.id.cache_entries = 1;
        };
        assert_eq!(check(&uncounted), Err(UNCOUNTED));
    }

    #[test]
    fn snapshot_identity_compares_every_field_but_the_ballot_and_tokens_tell_snapshots_apart() {
        let id = snapshot_id(&source());
        assert!(id.same_content(&SnapshotId { bal: Ballot { seqno: 9, proposer: 1 }, ..id }));
        let others = [
            SnapshotId { opn: id.opn + 1, ..id },
            SnapshotId { digest: id.digest ^ 1, ..id },
            SnapshotId { app_len: id.app_len + 1, ..id },
            SnapshotId { cache_entries: id.cache_entries + 1, ..id },
            SnapshotId { executed_digest: id.executed_digest ^ 1, ..id },
        ];
        for other in others {
            assert!(!id.same_content(&other), "{other:?}");
            assert_ne!(other.resume_token(), id.resume_token(), "{other:?}");
        }
        assert_ne!(id.resume_token(), 0, "0 asks for a fresh start");
    }

    fn entry_bytes(opn: u64) -> heapless::Vec<u8, 64> {
        let e = CacheEntryWire { client: Endpoint::v4([10, 0, 0, 7], 1), seqno: 1, opn, reply: Bytes(b"r") };
        let mut v = heapless::Vec::new();
        crate::wire::append(&mut v, &e).unwrap();
        v
    }

    #[test]
    fn an_older_snapshot_never_replaces_a_newer_one_in_progress() {
        let src = source();
        let id9 = snapshot_id(&src);
        let mut older = source();
        older.ops_complete = 8;
        let id8 = snapshot_id(&older);
        let mut t: Transfer<App, 4, 16> = Transfer::new();
        let mut buf = [0u8; 64];
        let n = chunk(&src, 0, 20, &mut buf);
        assert_eq!(t.receive(1, id9, SupplyPart::App { offset: 0, bytes: Bytes(&buf[..n]) }, 0), Progress::Staged);
        assert_eq!(t.receive(2, id8, SupplyPart::App { offset: 0, bytes: Bytes(&buf[..n]) }, 0), Progress::Ignored);
        assert_eq!(t.incoming.map(|i| (i.id.opn, i.app_received)), Some((9, n as u64)));
    }

    #[test]
    fn cache_entries_come_after_the_application_and_only_from_executed_operations() {
        let mut src = source();
        let client = Endpoint::v4([10, 0, 0, 7], 1);
        src.reply_cache.insert(client, 1, 3, b"r");
        let id = snapshot_id(&src);
        assert_eq!(id.cache_entries, 1);
        let mut t: Transfer<App, 4, 16> = Transfer::new();
        let mut buf = [0u8; 512];
        let n = chunk(&src, 0, 20, &mut buf);
        assert_eq!(t.receive(1, id, SupplyPart::App { offset: 0, bytes: Bytes(&buf[..n]) }, 0), Progress::Staged);
        let good = entry_bytes(3);
        let early = SupplyPart::Cache { index: 0, entries: Bytes(&good) };
        assert_eq!(t.receive(1, id, early, 0), Progress::Ignored, "the application is not complete");
        let rest = chunk(&src, n as u64, 512, &mut buf);
        let app = SupplyPart::App { offset: n as u64, bytes: Bytes(&buf[..rest]) };
        assert_eq!(t.receive(1, id, app, 0), Progress::Staged);
        let unexecuted = entry_bytes(id.opn);
        let forged = SupplyPart::Cache { index: 0, entries: Bytes(&unexecuted) };
        assert_eq!(t.receive(1, id, forged, 0), Progress::Corrupt, "a reply from an operation not executed");
        assert!(t.incoming.is_none());
    }

    #[test]
    fn a_snapshot_without_application_bytes_starts_at_cache_entry_zero() {
        let id =
            SnapshotId { bal: Ballot::INITIAL, opn: 5, digest: 1, app_len: 0, cache_entries: 2, executed_digest: 1 };
        let good = entry_bytes(3);
        let mut t: Transfer<App, 4, 16> = Transfer::new();
        assert_eq!(t.receive(1, id, SupplyPart::Cache { index: 1, entries: Bytes(&good) }, 0), Progress::Ignored);
        assert!(t.incoming.is_none(), "entry 1 cannot begin a snapshot");
        assert_eq!(t.receive(1, id, SupplyPart::Cache { index: 0, entries: Bytes(&good) }, 0), Progress::Staged);
        assert_eq!(t.incoming.map(|i| i.cache_received), Some(1));
    }

    #[test]
    fn a_cache_entry_from_an_unexecuted_operation_is_refused_even_when_the_digest_agrees() {
        // A forger can compute the (non-cryptographic) digest over a bad entry: the rule
        // itself must refuse it.
        let mut src = source();
        src.reply_cache.insert(Endpoint::v4([10, 0, 0, 7], 1), 1, 9, b"r");
        let id = snapshot_id(&src);
        let mut t: Transfer<App, 4, 16> = Transfer::new();
        let mut buf = [0u8; 512];
        let n = chunk(&src, 0, 512, &mut buf);
        assert_eq!(n as u64, id.app_len);
        assert_eq!(t.receive(1, id, SupplyPart::App { offset: 0, bytes: Bytes(&buf[..n]) }, 0), Progress::Staged);
        let bad = entry_bytes(9);
        assert_eq!(t.receive(1, id, SupplyPart::Cache { index: 0, entries: Bytes(&bad) }, 0), Progress::Corrupt);
    }
}
