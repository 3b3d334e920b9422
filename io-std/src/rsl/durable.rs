//! Durable mode (`fleet rsl serve --data-dir DIR`): a replica whose acceptor state and
//! executed batches go to a write-ahead log and whose state is snapshotted to a file, so
//! that any number of replicas, the whole cluster included, may be killed and restarted
//! without losing an acknowledged operation.
//!
//! The event loop hands every step's records to [`Host::handle`]/[`Host::tick`], which
//! queue them in the log, and calls [`Host::commit`] after each burst:
//! * when the burst has datagrams the engine marked ([`fleet_engine::Outbox::waits_for_sync`]:
//!   1a, 1b and 2b, which reveal a started ballot, a promise or a vote), the records are
//!   written and a sync thread is asked to sync them; the loop holds the marked datagrams
//!   until that sync is done, and meanwhile goes on receiving and handling (the next sync
//!   covers everything written by then: group commit that grows with the load). The
//!   burst's other datagrams (2a, replies, heartbeats) leave at once;
//! * records no datagram waits for (executed batches: the reply's operation is decided by
//!   a quorum of durable votes; a moved truncation point) go with the next sync, or after
//!   [`LAZY_SYNC`] at the latest; only once that sync is done is the replica told, and only
//!   then does the checkpoint it reports (on which acceptors truncate their logs) move.
//!
//! Snapshots: when the log written since the last snapshot has grown past
//! [`compact_after_bytes`] (or the replica installed a snapshot from another replica, which
//! it must persist before its checkpoint moves), the replica freezes a point-in-time
//! snapshot; the log starts a new segment beginning with the acceptor's image, and a writer
//! thread writes the snapshot (a temporary file, synced) while the replica keeps serving.
//! Then it becomes `rsl.snapshot` and the one it replaces `rsl.snapshot.prev` (renames,
//! directory sync), the replica is told, and the segments only the replaced-before-that
//! snapshot needed are deleted. Disk use is bounded by about two snapshots and the log
//! since the older one (two compaction thresholds), plus one prepared segment
//! ([`segment_prealloc_bytes`]) and the unused end of the newest.
//!
//! Damage: a torn log tail is zeroed (nothing acknowledged depended on it). A damaged snapshot
//! file is moved aside (`rsl.snapshot.corrupt`) and the replica recovers from the previous
//! snapshot and the longer log kept for it; with both unusable it starts from the log alone
//! and fetches the application state it lacks from the other replicas (safe: its acceptor
//! state is in the log). Damage inside the log stops the start with the file and offset: the acceptor's
//! promises and votes may be in it, and a replica that forgot them could break agreement.
//! A write or sync error (a full disk) stops the replica: it must not speak once it cannot
//! persist.

use std::collections::VecDeque;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use fleet_engine::rsl::durable::{snapshot_record, DURABLE_RECORD_OVERHEAD_BYTES};
use fleet_engine::rsl::snapshot::{SnapshotId, SnapshotPos};
use fleet_engine::rsl::{App, DurableRecord, Replica};
use fleet_engine::wire::EncodeError;
use fleet_engine::{Endpoint, Instant, Outbox};

use super::members::Membership;
use super::replica::{check_id, status_line, StdReplica};
use crate::capacity::{MAX_REPLICAS, SERVER_DATAGRAM_BYTES};
use crate::clock::incarnation_nonce;
use crate::config::RslSetup;
use crate::error::ServerError;
use crate::net::event_loop::Host;
use crate::net::to_socket_addr;
use crate::storage::syncer::SyncMode;
pub use crate::storage::wal::{compact_after_bytes, segment_prealloc_bytes};
use crate::storage::wal::{peek, LogOptions, Wal};
use crate::storage::{snapshot_file, DataDir, StorageError};

/// The snapshot file in the data directory.
pub const SNAPSHOT_FILE: &str = "rsl.snapshot";
/// Records no datagram waits for wait at most this long for a sync (one for a vote usually
/// comes first).
pub const LAZY_SYNC: Duration = Duration::from_millis(2);
/// The log is compacted (a snapshot taken, older segments deleted) once this many bytes
/// were written since the last snapshot, or as many as the last snapshot file if larger.
pub const COMPACT_AFTER_BYTES: u64 = 64 << 20;
/// How a replica keeps its log unless told otherwise: while it leads, syncs on a thread of
/// their own, so that it goes on taking requests and counting votes while its own vote is
/// synced; while it follows, inline, because a follower has nothing to do before its vote
/// leaves and a hand-off costs two wake-ups per vote ([`SyncMode::Auto`]; on the 2-core
/// bench machine 5 % more durable puts than syncs on a thread everywhere, and 3 % more
/// than inline everywhere: docs/performance.md).
pub const DEFAULT_LOG: LogOptions = LogOptions { compact_after_bytes: COMPACT_AFTER_BYTES, sync: SyncMode::Auto };
/// How often a running snapshot writer is looked at.
const JOB_POLL: Duration = Duration::from_millis(10);
/// Application bytes per snapshot record.
const SNAPSHOT_PIECE_BYTES: usize = 60 << 10;
const RECORD_BUF_BYTES: usize = SERVER_DATAGRAM_BYTES + DURABLE_RECORD_OVERHEAD_BYTES;

/// A snapshot being written by a writer thread.
struct SnapshotJob {
    id: SnapshotId,
    /// The log segment started when it was frozen: older ones go once it is durable.
    segment: u64,
    handle: JoinHandle<Result<u64, StorageError>>,
}

/// A replica in durable mode (see the module docs).
pub struct DurableReplica<A: App> {
    replica: Box<StdReplica<A>>,
    wal: Wal,
    record: Vec<u8>,
    /// Records are queued or written, unsynced, since then.
    lazy_since: Option<Instant>,
    /// Syncs in flight: the ticket, and the replica's durable mark when it was asked for.
    pending_marks: VecDeque<(u64, u64)>,
    /// Syncs asked for executed batches alone (for stats lines).
    lazy_syncs: u64,
    /// The latest step's clock reading.
    now: Instant,
    job: Option<SnapshotJob>,
    last_snapshot_bytes: u64,
    /// The log segment the newest snapshot was taken at (unknown after a restart): the
    /// segments before it are what the previous snapshot needs, and they go when the next
    /// snapshot is installed.
    newest_segment: Option<u64>,
    /// The log's compaction threshold ([`COMPACT_AFTER_BYTES`] unless configured).
    compact_after: u64,
    failed: Option<String>,
    /// Declared last, so dropped last: the directory's lock is released only once the
    /// log's threads and the snapshot writer have stopped (see `Drop`).
    dir: DataDir,
}

impl<A> DurableReplica<A>
where
    A: App + Send + 'static,
    A::Snapshot: Clone + Send + 'static,
{
    /// Opens `dir` for replica `id` of `setup` and recovers from it, with `app` as the
    /// application's initial state: the latest snapshot, then the log. A first start when
    /// the directory is new or empty. The state the directory lacks comes from the other
    /// replicas.
    pub fn open(setup: &RslSetup, id: usize, dir: &Path, app: A, now: Instant) -> Result<Self, ServerError>
    where
        A: Clone,
    {
        Self::open_with(setup, id, dir, app, now, DEFAULT_LOG)
    }

    /// Like [`DurableReplica::open`], with the log kept as `log` says.
    pub fn open_with(
        setup: &RslSetup,
        id: usize,
        dir: &Path,
        app: A,
        now: Instant,
        log: LogOptions,
    ) -> Result<Self, ServerError>
    where
        A: Clone,
    {
        check_id(setup, id)?;
        let data = DataDir::open(dir, &data_identity(setup, id)).map_err(ServerError::Storage)?;
        let (wal, found) = Wal::open(&data, segment_prealloc_bytes(log.compact_after_bytes), log.sync)
            .map_err(ServerError::Storage)?;
        if found.dropped_tail_bytes > 0 {
            tracing::warn!(
                "{}: cut off a torn log tail of {} bytes (a crash during a write; never acknowledged)",
                found.segment.display(),
                found.dropped_tail_bytes
            );
        }
        // The newest snapshot, else the previous one (the log reaches back to it), else
        // none: a damaged or unusable file is moved aside, never served from.
        let mut recovered = None;
        let mut snapshot_used = false;
        for name in [SNAPSHOT_FILE.to_string(), snapshot_file::previous(SNAPSHOT_FILE)] {
            let pieces = match snapshot_file::read(&data, &name) {
                Ok(Some(pieces)) => pieces,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!("{e}; moved aside");
                    snapshot_file::quarantine(&data, &name).map_err(ServerError::Storage)?;
                    continue;
                }
            };
            match recover_boxed(setup, id, app.clone(), now, &pieces, &found.records) {
                Ok(r) => {
                    recovered = Some(r);
                    snapshot_used = true;
                    break;
                }
                Err(fleet_engine::rsl::RecoverError::Snapshot(why)) => {
                    tracing::warn!("{}: {why}; moved aside", data.file(&name).display());
                    snapshot_file::quarantine(&data, &name).map_err(ServerError::Storage)?;
                }
                Err(e) => return Err(ServerError::Recover(dir.to_path_buf(), e.to_string())),
            }
        }
        let replica = match recovered {
            Some(r) => r,
            None => recover_boxed(setup, id, app, now, &[], &found.records)
                .map_err(|e| ServerError::Recover(dir.to_path_buf(), e.to_string()))?,
        };
        if replica.rejoining().is_some() {
            tracing::info!(
                "replica {id}: no promise or vote stored in {} (a new cluster, or a lost disk): rejoining; \
                 it takes part once every other replica has answered",
                dir.display()
            );
        } else if !found.records.is_empty() || snapshot_used {
            let s = replica.status();
            let epoch = match (s.epoch, s.retired) {
                (_, true) => " (removed from the cluster: it only redirects)".to_string(),
                (0, false) => String::new(),
                (e, false) => format!(", epoch {e}"),
            };
            tracing::info!(
                "replica {id} recovered from {}: {} operations executed, promise ({},{}), truncation {}{epoch}",
                dir.display(),
                s.ops_complete,
                s.max_bal.seqno,
                s.max_bal.proposer,
                s.log_truncation_point
            );
        }
        Ok(Self::assemble(replica, data, wal, now, log.compact_after_bytes))
    }

    /// A durable learner at `own` of the epoch `setup` describes, in `dir` (the directory
    /// of the replica it becomes: `replica ADDR joined cluster X`): it follows the log in
    /// memory and writes its records from the moment a change makes it a member. Whatever
    /// the directory held without naming a membership (a learner that crashed) is ignored.
    pub fn open_learner(
        setup: &RslSetup,
        own: std::net::SocketAddr,
        dir: &Path,
        app: A,
        now: Instant,
        log: LogOptions,
    ) -> Result<Self, ServerError> {
        let data = DataDir::open(dir, &joined_identity(own, setup.auth_cluster)).map_err(ServerError::Storage)?;
        let (wal, _) = Wal::open(&data, segment_prealloc_bytes(log.compact_after_bytes), log.sync)
            .map_err(ServerError::Storage)?;
        let replica = super::replica::build_learner(setup, own, app, now, true)?;
        Ok(Self::assemble(replica, data, wal, now, log.compact_after_bytes))
    }

    /// The durable replica around `replica`, its directory and log.
    fn assemble(replica: Box<StdReplica<A>>, data: DataDir, wal: Wal, now: Instant, compact_after: u64) -> Self {
        let last_snapshot_bytes = std::fs::metadata(data.file(SNAPSHOT_FILE)).map_or(0, |m| m.len());
        DurableReplica {
            replica,
            dir: data,
            wal,
            record: vec![0u8; RECORD_BUF_BYTES],
            lazy_since: None,
            pending_marks: VecDeque::new(),
            lazy_syncs: 0,
            now,
            job: None,
            last_snapshot_bytes,
            newest_segment: None,
            compact_after,
            failed: None,
        }
    }

    /// The replica.
    pub fn replica(&self) -> &StdReplica<A> {
        &self.replica
    }

    /// Queues the records of the step that just ran at `now`.
    fn collect(&mut self, now: Instant) {
        self.now = now;
        let mut any = false;
        loop {
            match self.replica.next_record(&mut self.record) {
                None => break,
                Some(Ok(r)) => {
                    self.wal.append(r);
                    any = true;
                }
                // The buffer holds the largest record: an engine bug if ever seen. Fail stop.
                Some(Err(EncodeError::BufferFull)) => {
                    self.failed = Some("a durable record did not fit its buffer".into());
                    break;
                }
            }
        }
        if any && self.lazy_since.is_none() {
            self.lazy_since = Some(now);
        }
    }

    /// Syncs everything queued, waits for it, and tells the replica.
    fn sync(&mut self) -> Result<(), ServerError> {
        let mark = self.replica.durable_mark();
        self.wal.sync().map_err(ServerError::Storage)?;
        self.replica.persisted(mark);
        self.pending_marks.clear();
        self.lazy_since = None;
        Ok(())
    }

    /// Asks the sync thread for everything queued; returns the ticket. The replica is told
    /// its mark is durable when the ticket is ([`Host::durable`]).
    fn sync_async(&mut self) -> Result<u64, ServerError> {
        let mark = self.replica.durable_mark();
        let ticket = self.wal.sync_async().map_err(ServerError::Storage)?;
        self.pending_marks.push_back((ticket, mark));
        self.lazy_since = None;
        Ok(ticket)
    }

    /// Finishes a snapshot the writer completed; starts one when the log has grown enough
    /// or the replica needs one.
    fn manage_snapshots(&mut self) -> Result<(), ServerError> {
        if self.job.as_ref().is_some_and(|j| j.handle.is_finished()) {
            if let Some(job) = self.job.take() {
                let written =
                    job.handle.join().map_err(|_| ServerError::Config("the snapshot writer panicked".into()))?;
                self.last_snapshot_bytes = written.map_err(ServerError::Storage)?;
                snapshot_file::install(&self.dir, SNAPSHOT_FILE).map_err(ServerError::Storage)?;
                self.replica.snapshot_persisted(job.id);
                // The previous snapshot (the one just replaced) needs the log from its own
                // segment on; older segments go.
                if let Some(older) = self.newest_segment.replace(job.segment) {
                    self.wal.remove_before(&self.dir, older).map_err(ServerError::Storage)?;
                }
            }
        }
        let grown = self.wal.rotated_bytes() >= compact_after_bytes(self.compact_after, self.last_snapshot_bytes);
        if self.job.is_some() || !(grown || self.replica.snapshot_required().is_some()) {
            return Ok(());
        }
        self.start_snapshot()
    }

    /// Freezes a snapshot, starts a new log segment, and hands the snapshot to a writer
    /// thread. Out of line: the snapshot's copy is megabytes of stack, which the event
    /// loop's every `commit` would otherwise reserve and probe.
    #[inline(never)]
    fn start_snapshot(&mut self) -> Result<(), ServerError> {
        // A fresh snapshot covers every record handed out so far, which is all the older
        // segments hold; the new one starts with the acceptor's image, so the older ones
        // are only needed while the snapshot before this one is.
        self.replica.freeze_snapshot();
        self.sync()?;
        let image = (0..self.replica.durable_image_len())
            .map(|i| self.replica.durable_image_record(i, &mut self.record).map(<[u8]>::to_vec))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| ServerError::Config("a durable record did not fit its buffer".into()))?;
        let segment = self.wal.rotate(&image).map_err(ServerError::Storage)?;
        // Boxed: the reply cache's copy is megabytes, too much for a new thread's stack.
        let frozen = Box::new(self.replica.frozen().clone());
        let id = frozen.id;
        let dir = self.dir.path().to_path_buf();
        let handle = std::thread::Builder::new()
            .name("rsl-snapshot".into())
            .spawn(move || {
                let mut scratch = vec![0u8; SERVER_DATAGRAM_BYTES];
                let mut out = vec![0u8; RECORD_BUF_BYTES];
                let mut pos = SnapshotPos::default();
                let file = dir.join(SNAPSHOT_FILE);
                let records = std::iter::from_fn(|| {
                    let r = snapshot_record(&*frozen, pos, SNAPSHOT_PIECE_BYTES, &mut scratch, &mut out)?;
                    Some(match r {
                        Ok((n, next)) => {
                            pos = next;
                            Ok(out[..n].to_vec())
                        }
                        Err(_) => Err(StorageError::Io(file.clone(), std::io::Error::other("record too large"))),
                    })
                });
                snapshot_file::write(&dir, SNAPSHOT_FILE, records)
            })
            .map_err(ServerError::Io)?;
        self.job = Some(SnapshotJob { id, segment, handle });
        Ok(())
    }
}

/// What a data directory says it belongs to. A replica of the configuration file: its id
/// and the file's replicas. A replica that joined a later epoch (`fleet rsl serve --join`):
/// its address and the file's cluster, which stay the same whatever epochs follow.
fn data_identity(setup: &RslSetup, id: usize) -> String {
    let addrs: Vec<String> = setup.addrs.iter().map(|a| a.to_string()).collect();
    match setup.config.epoch {
        0 => format!("replica {id} of {}: {}", addrs.len(), addrs.join(" ")),
        _ => joined_identity(setup.addrs[id], setup.auth_cluster),
    }
}

/// The identity of a joined replica's directory (learner first, or not).
fn joined_identity(own: std::net::SocketAddr, cluster: u32) -> String {
    format!("replica {own} joined cluster {cluster:08x}")
}

/// The memberships a joined replica's data directory `dir` names: the first (the epoch it
/// joined, or the one its latest compaction was in: where its log starts) and the last
/// (where it went since, possibly an epoch without it); `None` when the directory holds no
/// log yet (a first start: the membership is learned from the cluster). Reads without
/// changing anything; opening the directory checks the rest.
pub fn stored_membership(dir: &Path) -> Result<Option<(Membership, Membership)>, ServerError> {
    let records = peek(dir).map_err(ServerError::Storage)?;
    let mut found: Option<(Membership, Membership)> = None;
    for bytes in &records {
        let record = fleet_engine::wire::decode::<DurableRecord<'_>>(fleet_engine::wire::Protocol::Durable, bytes);
        let Ok(DurableRecord::Epoch { epoch, start, replicas }) = record else { continue };
        let replicas = fleet_engine::rsl::membership::replicas_of::<MAX_REPLICAS>(replicas.0)
            .map_err(|_| ServerError::Recover(dir.to_path_buf(), "an epoch record names no valid cluster".into()))?;
        let replicas = replicas.iter().map(|e| to_socket_addr(*e)).collect();
        let m = Membership { epoch, start, replicas };
        found = Some(match found {
            None => (m.clone(), m),
            Some((first, _)) => (first, m),
        });
    }
    Ok(found)
}

/// Recovers replica `id` from `snapshot` and `log` straight into a box: a replica is tens of
/// megabytes, and a debug build keeps a copy per call site in the caller's frame.
#[inline(never)]
fn recover_boxed<A: App>(
    setup: &RslSetup,
    id: usize,
    app: A,
    now: Instant,
    snapshot: &[Vec<u8>],
    log: &[Vec<u8>],
) -> Result<Box<StdReplica<A>>, fleet_engine::rsl::RecoverError> {
    let pieces = snapshot.iter().map(Vec::as_slice);
    let log = log.iter().map(Vec::as_slice);
    StdReplica::recover(setup.config.clone(), id, app, now, incarnation_nonce(), pieces, log).map(Box::new)
}

impl<A: App> Drop for DurableReplica<A> {
    /// Waits for a snapshot being written: a writer that outlived its replica would still
    /// be writing the snapshot's temporary file while the next replica opened on this
    /// directory writes its own there. The finished snapshot is not installed: the next open
    /// recovers from the one before it and the log, as after a crash.
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            let _ = job.handle.join();
        }
    }
}

impl<A> Host for DurableReplica<A>
where
    A: App + Send + 'static,
    A::Snapshot: Clone + Send + 'static,
{
    fn handle(&mut self, now: Instant, from: Endpoint, datagram: &[u8], out: &mut Outbox<'_>) {
        let refused = self.replica.stats().foreign_cluster;
        let rejoining = self.replica.rejoining().is_some();
        // The datagrams the step marked, not its `Step`, say what waits for a sync.
        let _ = Replica::handle(self.replica.as_mut(), now, from, datagram, out);
        super::replica::warn_if_foreign(&self.replica, refused);
        super::replica::note_if_rejoined(&self.replica, rejoining);
        self.collect(now);
    }
    fn tick(&mut self, now: Instant, out: &mut Outbox<'_>) {
        // The event loop asks for finished syncs only while datagrams wait for one: lazily
        // synced records (executed batches) are confirmed here, at the latest one timer
        // period late, so the checkpoint moves without votes (a replica catching up after
        // a start without state casts none until it has).
        if !self.pending_marks.is_empty() {
            if let Err(e) = Host::durable(self) {
                self.failed = Some(e.to_string());
            }
        }
        let rejoining = self.replica.rejoining().is_some();
        let _ = Replica::tick(self.replica.as_mut(), now, out);
        super::replica::note_if_rejoined(&self.replica, rejoining);
        self.collect(now);
    }
    fn next_deadline(&self) -> Instant {
        let replica = Replica::next_deadline(self.replica.as_ref());
        let lazy = self.lazy_since.map(|t| t.plus_us(LAZY_SYNC.as_micros() as u64));
        // While a snapshot is being written, look every poll period for its end.
        let job = self.job.as_ref().map(|_| self.now.plus_us(JOB_POLL.as_micros() as u64));
        [lazy, job].into_iter().flatten().fold(replica, Instant::min)
    }
    fn stats_line(&self) -> String {
        format!(
            "{} fsyncs={} lazy_syncs={} durable={} log_bytes={} preallocated={} direct_io={}",
            status_line(&self.replica),
            self.wal.syncs(),
            self.lazy_syncs,
            self.replica.checkpoint(),
            self.wal.rotated_bytes(),
            self.wal.preallocated(),
            self.wal.direct()
        )
    }
    fn membership_generation(&self) -> u64 {
        super::replica::membership_generation(&self.replica)
    }
    fn known_members(&self) -> Vec<Endpoint> {
        super::replica::known_members(&self.replica)
    }
    fn commit(&mut self, now: Instant, waiting: bool) -> Result<Option<u64>, ServerError> {
        if let Some(why) = self.failed.take() {
            return Err(ServerError::Config(why));
        }
        self.now = self.now.max(now);
        // Only a sync mode of `Auto` listens: a leader's syncs on the thread, a follower's
        // inline.
        self.wal.set_inline_syncs(!self.replica.status().is_leader);
        let lazy_due = self.lazy_since.is_some_and(|t| now.micros_since(t) >= LAZY_SYNC.as_micros() as u64);
        // Promises, votes and ballots wait for the sync of every record before them; with
        // none waiting (executed batches, a truncation), the records wait for the next sync
        // or at most LAZY_SYNC.
        let need = if waiting {
            Some(self.sync_async()?)
        } else {
            if lazy_due {
                // Nothing sent waits for these records.
                self.lazy_syncs += 1;
                self.sync_async()?;
                // An inline sync runs here; a sync thread's is only looked at.
                Host::durable(self)?;
            } else {
                // Into the page cache now, synced with the next sync.
                self.wal.write().map_err(ServerError::Storage)?;
            }
            None
        };
        self.manage_snapshots()?;
        Ok(need)
    }

    fn durable(&mut self) -> Result<u64, ServerError> {
        let done = self.wal.synced().map_err(ServerError::Storage)?;
        while self.pending_marks.front().is_some_and(|(ticket, _)| *ticket <= done) {
            if let Some((_, mark)) = self.pending_marks.pop_front() {
                self.replica.persisted(mark);
            }
        }
        Ok(done)
    }

    fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        self.wal.wake_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rsl::replica::ServerApp;
    use crate::ClusterFile;

    #[test]
    fn a_dropped_replica_leaves_nothing_writing_in_its_directory() {
        // A replica is megabytes, built in place: a server's stack.
        let run = || {
            let file = "[rsl]\nreplicas = [\"127.0.0.1:1\", \"127.0.0.1:2\", \"127.0.0.1:3\"]\n";
            let setup = ClusterFile::parse(file).unwrap().rsl().unwrap();
            let dir = std::env::temp_dir().join(format!("fleet-rsl-durable-drop-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            // The default threshold: the next log segment takes a thread a second or more
            // to zero-fill, and is still being written when the replica is dropped.
            let replica = DurableReplica::open(&setup, 0, &dir, ServerApp::new(64), Instant::ZERO).unwrap();
            drop(replica);
            let listing = || {
                let mut files: Vec<(std::path::PathBuf, u64)> = std::fs::read_dir(&dir)
                    .unwrap()
                    .map(|e| e.unwrap())
                    .map(|e| (e.path(), e.metadata().unwrap().len()))
                    .collect();
                files.sort();
                files
            };
            let at_drop = listing();
            std::thread::sleep(Duration::from_millis(100));
            assert_eq!(listing(), at_drop, "a thread of the dropped replica wrote on");
            std::fs::remove_dir_all(&dir).unwrap();
        };
        std::thread::Builder::new().stack_size(256 << 20).spawn(run).unwrap().join().unwrap();
    }
}
