//! Durable KV hosts (`fleet kv serve --data-dir DIR`): a host whose complete state (store,
//! delegation map, transfers, reliable channels, unacknowledged messages, eviction floors)
//! survives a SIGKILL and comes back from its data directory; nothing acknowledged is lost.
//!
//! **The log is the inputs** (`fleet_engine::kv::durable` has the design): after every step
//! that changed the host's state ([`Step::log_input`]) its input, the datagram and its
//! sender or a tick, with the step's `now` and number, is appended to a write-ahead log
//! ([`Wal`]); replaying the inputs rebuilds the host exactly.
//!
//! **The ordering rule:** every datagram a KV host emits waits for the sync of every input
//! logged before it ([`fleet_engine::Outbox::waits_for_sync`]). [`Host::commit`] runs after
//! each burst of steps: with datagrams waiting and inputs not yet synced it asks the sync
//! thread for one `fdatasync` covering the whole burst, and the event loop holds the burst's
//! datagrams until that is done (meanwhile it goes on receiving and handling: the next sync
//! covers everything logged by then, so the groups grow with the load). With everything
//! logged already asked for, the datagrams wait for the last sync asked for (a reply to a
//! retransmitted request reveals what an earlier input did). Inputs whose steps sent
//! nothing (an ack that made progress) are synced with the next sync, or after
//! [`LAZY_SYNC`] at the latest: losing them loses nothing anyone was told.
//!
//! **Images:** once the log written since the last image passes [`COMPACT_AFTER_BYTES`] (or
//! `--compact-after-bytes`, or the size of the last image file if larger), the host is
//! cloned at a step boundary, the log starts a new segment there, and a writer thread writes
//! the clone's image ([`write_image`]) while the host goes on serving. Then it becomes
//! `kv.image` and the one it replaces `kv.image.prev` (renames, directory synced), and the
//! segments only the image before that needed are deleted: the previous image and the log
//! since it stay usable, so a damaged newest image falls back on the previous one. A new
//! data directory gets its first image before the host serves, so recovery is always an
//! image and the inputs logged after it.
//!
//! **Clock:** logged inputs carry the engine's `now`, and the event loop's clock starts at
//! zero in every process. A restarted host's clock goes on from its last logged `now`
//! (plus 1 ms): every `now` handed to the engine is the loop's plus that offset, and the
//! engine's deadlines are handed back minus it.
//!
//! **Damage:** a torn log tail is cut (a crash mid-write; nothing acknowledged depended on
//! it); a damaged image is moved aside and the previous one serves ([`super::image`]);
//! damage inside the log stops the start naming the file and byte offset. A write or sync
//! error (a full disk) stops the host: it must not speak once it cannot persist.

use std::os::fd::BorrowedFd;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use fleet_engine::kv::storage::Storage;
use fleet_engine::kv::{KvHost, Step};
use fleet_engine::{Endpoint, Instant, Outbox};

use super::host::{host_stats, note_if_joined, warn_if_foreign, KvServerHost};
use super::image::{rebuild, write_image, Origin, IMAGE_FILE, RECORD_BUF_BYTES};
use crate::config::KvSetup;
use crate::error::ServerError;
use crate::net::event_loop::Host;
use crate::storage::syncer::SyncMode;
use crate::storage::wal::{compact_after_bytes, segment_prealloc_bytes, LogOptions, Wal};
use crate::storage::{snapshot_file, DataDir, StorageError};

/// The log is compacted (an image written, older segments deleted) once this many bytes were
/// logged since the last image, or as many as the last image file if larger.
pub const COMPACT_AFTER_BYTES: u64 = 64 << 20;
/// How a host keeps its log unless told otherwise: every datagram a KV host sends waits for
/// the sync, so the loop syncs inline as Redis does, without a hand-off to a thread and back
/// (25-40 % more writes per second than a sync thread on the 2-core bench machine:
/// docs/performance.md).
pub const DEFAULT_LOG: LogOptions = LogOptions { compact_after_bytes: COMPACT_AFTER_BYTES, sync: SyncMode::Inline };
/// Inputs no datagram waits for wait at most this long for a sync.
pub const LAZY_SYNC: Duration = Duration::from_millis(2);
/// How often a running image writer is looked at.
const JOB_POLL: Duration = Duration::from_millis(10);
/// The restarted host's clock starts this long after its last logged step.
const CLOCK_GAP_US: u64 = 1_000;

/// An image being written by a writer thread.
struct ImageJob {
    /// The log segment started when the host was frozen: older ones go once the image
    /// after this one is installed.
    segment: u64,
    handle: JoinHandle<Result<u64, StorageError>>,
}

/// A KV host in durable mode (see the module docs).
pub struct DurableKvHost {
    host: Box<KvServerHost>,
    wal: Wal,
    record: Vec<u8>,
    /// Added to the event loop's clock to give the engine's: the host's clock goes on across
    /// restarts.
    offset_us: u64,
    /// Inputs are queued or written, unsynced, since then (loop clock).
    lazy_since: Option<Instant>,
    /// The last sync ticket asked for, and the highest known done.
    last_ticket: u64,
    durable: u64,
    /// Syncs asked for inputs no datagram waited for (stats lines).
    lazy_syncs: u64,
    /// The latest loop clock reading.
    now: Instant,
    job: Option<ImageJob>,
    last_image_bytes: u64,
    /// Log bytes since the newest image that an earlier process wrote (replayed at the
    /// start): they count towards the next compaction, so restarts do not let the log grow.
    carried_bytes: u64,
    /// Images written by this process.
    images: u64,
    /// The log segment the newest image was taken at (unknown after a restart): the
    /// segments before it are what the previous image needs, and they go when the next
    /// image is installed.
    newest_segment: Option<u64>,
    compact_after: u64,
    failed: Option<String>,
    /// Declared last, so dropped last: the directory's lock is released only once the
    /// log's threads and the image writer have stopped (see `Drop`).
    dir: DataDir,
}

impl DurableKvHost {
    /// Opens `dir` for host `id` of `setup` and recovers the host from it (the newest usable
    /// image, then the logged inputs after it); a new or empty directory starts the host as
    /// configured and writes its first image before this returns. `now` is the event loop's
    /// clock.
    pub fn open(setup: &KvSetup, id: usize, dir: &Path, now: Instant) -> Result<Self, ServerError> {
        Self::open_with(setup, id, dir, now, DEFAULT_LOG)
    }

    /// Like [`DurableKvHost::open`], with the log kept as `log` says (compacted once it has
    /// grown by `log.compact_after_bytes` since the last image, or by the last image's size
    /// if larger).
    pub fn open_with(
        setup: &KvSetup,
        id: usize,
        dir: &Path,
        now: Instant,
        log: LogOptions,
    ) -> Result<Self, ServerError> {
        let compact_after = log.compact_after_bytes;
        if id >= setup.addrs.len() {
            return Err(ServerError::Config(format!("--id {id} is not a KV host")));
        }
        let addrs: Vec<String> = setup.addrs.iter().map(|a| a.to_string()).collect();
        let identity = format!(
            "kv host {id} of cluster {:08x} ({} hosts): {}",
            setup.config.identity(),
            addrs.len(),
            addrs.join(" ")
        );
        let data = DataDir::open(dir, &identity).map_err(ServerError::Storage)?;
        let (wal, found) =
            Wal::open(&data, segment_prealloc_bytes(compact_after), log.sync).map_err(ServerError::Storage)?;
        if found.dropped_tail_bytes > 0 {
            tracing::warn!(
                "{}: cut off a torn log tail of {} bytes (a crash during a write; never acknowledged)",
                found.segment.display(),
                found.dropped_tail_bytes
            );
        }
        let rebuilt = rebuild(setup, id, &data, &found, now)?;
        let mut host = rebuilt.host;
        host.set_durable(true);
        let mut newest_segment = None;
        match &rebuilt.origin {
            Origin::New => {
                // Recovery is always an image and the inputs after it: the first image
                // goes down before the host says anything.
                write_image(data.path(), &host).map_err(ServerError::Storage)?;
                snapshot_file::install(&data, IMAGE_FILE).map_err(ServerError::Storage)?;
                newest_segment = Some(wal.segment());
                tracing::info!("kv host {id}: new data directory {}", dir.display());
            }
            Origin::Image(name) => tracing::info!(
                "kv host {id} recovered from {}: {} keys, {} logged steps (image {name}, {} inputs replayed)",
                dir.display(),
                host.storage().len(),
                host.logged_steps(),
                rebuilt.replayed
            ),
        }
        let offset_us = host.last_logged_now().as_micros().saturating_add(CLOCK_GAP_US).saturating_sub(now.as_micros());
        let last_image_bytes = std::fs::metadata(data.file(IMAGE_FILE)).map_or(0, |m| m.len());
        Ok(DurableKvHost {
            host,
            dir: data,
            wal,
            record: vec![0u8; RECORD_BUF_BYTES],
            offset_us,
            lazy_since: None,
            last_ticket: 0,
            durable: 0,
            lazy_syncs: 0,
            now,
            job: None,
            last_image_bytes,
            carried_bytes: rebuilt.replayed_bytes,
            images: 0,
            newest_segment,
            compact_after,
            failed: None,
        })
    }

    /// The engine host.
    pub fn host(&self) -> &KvServerHost {
        &self.host
    }

    /// Whether an image is being written (a writer thread runs; [`Host::commit`] installs
    /// it once done).
    pub fn image_in_progress(&self) -> bool {
        self.job.is_some()
    }

    /// Images this process wrote and installed (the first one of a new directory not
    /// counted).
    pub fn images_written(&self) -> u64 {
        self.images
    }

    /// The engine's `now` at the event loop's `now`.
    pub fn engine_now(&self, now: Instant) -> Instant {
        now.plus_us(self.offset_us)
    }

    /// Writes the queued inputs and waits until everything logged is on disk.
    pub fn sync(&mut self) -> Result<(), ServerError> {
        self.wal.sync().map_err(ServerError::Storage)?;
        self.lazy_since = None;
        self.durable = self.wal.synced().map_err(ServerError::Storage)?;
        self.last_ticket = self.durable;
        Ok(())
    }

    /// Appends the input of the step that just ran at engine time `t`, if it changed the
    /// host.
    fn log(&mut self, step: Step, t: Instant, input: Option<(Endpoint, &[u8])>) {
        if !step.log_input {
            return;
        }
        match self.host.input_record(t, input, &mut self.record) {
            Ok(r) => self.wal.append(r),
            // The buffer holds the largest datagram: an engine bug if ever seen. Fail stop.
            Err(_) => self.failed = Some("a logged input did not fit its record buffer".into()),
        }
        if self.lazy_since.is_none() {
            self.lazy_since = Some(self.now);
        }
    }

    /// Asks the sync thread for everything logged; returns the ticket.
    fn sync_async(&mut self) -> Result<u64, ServerError> {
        self.last_ticket = self.wal.sync_async().map_err(ServerError::Storage)?;
        self.lazy_since = None;
        Ok(self.last_ticket)
    }

    /// Finishes an image the writer completed; starts one when the log has grown enough.
    fn manage_images(&mut self) -> Result<(), ServerError> {
        if self.job.as_ref().is_some_and(|j| j.handle.is_finished()) {
            if let Some(job) = self.job.take() {
                let written = job.handle.join().map_err(|_| ServerError::Config("the image writer panicked".into()))?;
                self.last_image_bytes = written.map_err(ServerError::Storage)?;
                snapshot_file::install(&self.dir, IMAGE_FILE).map_err(ServerError::Storage)?;
                self.images += 1;
                // The previous image (the one just replaced) needs the log from its own
                // segment on; older segments go.
                if let Some(older) = self.newest_segment.replace(job.segment) {
                    self.wal.remove_before(&self.dir, older).map_err(ServerError::Storage)?;
                }
            }
        }
        let logged = self.wal.rotated_bytes().saturating_add(self.carried_bytes);
        let grown = logged >= compact_after_bytes(self.compact_after, self.last_image_bytes);
        if self.job.is_some() || !grown {
            return Ok(());
        }
        self.start_image()
    }

    /// Starts a new log segment at this step boundary, freezes a copy of the host and hands
    /// it to a writer thread. Out of line: the copy is megabytes, which every `commit` would
    /// otherwise reserve on the stack.
    #[inline(never)]
    fn start_image(&mut self) -> Result<(), ServerError> {
        // Every input logged so far is in the older segments and in the copy; the new
        // segment holds only inputs after it.
        let segment = self.wal.rotate(&[]).map_err(ServerError::Storage)?;
        self.lazy_since = None;
        self.carried_bytes = 0;
        let frozen: Box<KvServerHost> = Box::new((*self.host).clone());
        let dir = self.dir.path().to_path_buf();
        let handle = std::thread::Builder::new()
            .name("kv-image".into())
            .spawn(move || write_image(&dir, &frozen))
            .map_err(ServerError::Io)?;
        self.job = Some(ImageJob { segment, handle });
        Ok(())
    }
}

impl Drop for DurableKvHost {
    /// Waits for an image being written: a writer that outlived its host would still be
    /// writing the image's temporary file while the next host opened on this directory
    /// writes its own there. The finished image is not installed: the next open recovers
    /// from the one before it and the log, as after a crash.
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            let _ = job.handle.join();
        }
    }
}

impl Host for DurableKvHost {
    fn handle(&mut self, now: Instant, from: Endpoint, datagram: &[u8], out: &mut Outbox<'_>) {
        self.now = now;
        let t = self.engine_now(now);
        let refused = self.host.stats().foreign_cluster;
        let joining = self.host.joining().is_some();
        let step = KvHost::handle(self.host.as_mut(), t, from, datagram, out);
        warn_if_foreign(&self.host, refused);
        note_if_joined(&self.host, joining);
        self.log(step, t, Some((from, datagram)));
    }

    fn tick(&mut self, now: Instant, out: &mut Outbox<'_>) {
        self.now = now;
        let t = self.engine_now(now);
        let joining = self.host.joining().is_some();
        let step = KvHost::tick(self.host.as_mut(), t, out);
        note_if_joined(&self.host, joining);
        self.log(step, t, None);
    }

    fn next_deadline(&self) -> Instant {
        let engine = KvHost::next_deadline(self.host.as_ref());
        let host = match engine {
            Instant::NEVER => Instant::NEVER,
            d => Instant::from_micros(d.as_micros().saturating_sub(self.offset_us)),
        };
        let lazy = self.lazy_since.map(|t| t.plus_us(LAZY_SYNC.as_micros() as u64));
        // While an image is being written, look every poll period for its end.
        let job = self.job.as_ref().map(|_| self.now.plus_us(JOB_POLL.as_micros() as u64));
        [lazy, job].into_iter().flatten().fold(host, Instant::min)
    }

    fn stats_line(&self) -> String {
        format!(
            "{} fsyncs={} lazy_syncs={} logged_steps={} log_bytes={} images={} preallocated={} direct_io={}",
            host_stats(&self.host),
            self.wal.syncs(),
            self.lazy_syncs,
            self.host.logged_steps(),
            self.wal.rotated_bytes().saturating_add(self.carried_bytes),
            self.images,
            self.wal.preallocated(),
            self.wal.direct()
        )
    }

    fn commit(&mut self, now: Instant, waiting: bool) -> Result<Option<u64>, ServerError> {
        if let Some(why) = self.failed.take() {
            return Err(ServerError::Config(why));
        }
        self.now = self.now.max(now);
        let need = if waiting {
            // Every datagram waits for every input logged before it.
            if self.wal.has_unsynced() {
                Some(self.sync_async()?)
            } else if self.last_ticket > self.durable {
                Some(self.last_ticket)
            } else {
                None
            }
        } else {
            let lazy_due = self.lazy_since.is_some_and(|t| now.micros_since(t) >= LAZY_SYNC.as_micros() as u64);
            if lazy_due && self.wal.has_unsynced() {
                self.lazy_syncs += 1;
                self.sync_async()?;
                // An inline sync runs here; a sync thread's is only looked at.
                Host::durable(self)?;
            } else {
                // Into the page cache now, synced with the next sync.
                self.wal.write().map_err(ServerError::Storage)?;
                if !self.wal.has_unsynced() {
                    self.lazy_since = None;
                }
            }
            None
        };
        self.manage_images()?;
        Ok(need)
    }

    fn durable(&mut self) -> Result<u64, ServerError> {
        self.durable = self.wal.synced().map_err(ServerError::Storage)?;
        Ok(self.durable)
    }

    fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        self.wal.wake_fd()
    }
}
