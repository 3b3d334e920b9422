//! A write-ahead log in segments: records appended to the newest segment file, written and
//! synced in groups, and a new segment started when a snapshot is taken so that older
//! segments can be deleted once the snapshot is durable.
//!
//! Segments are `wal-<number>.log` in the data directory, numbered upwards; recovery reads
//! them all in order. Each is a sequence of frames ([`crate::storage::frame`]), then zeros:
//! a segment is zero-filled to its full length before it is used ([`crate::storage::prepare`])
//! and records overwrite the zeros, which keeps `fdatasync` to a data flush. A segment that
//! is full is synced and the next one started. A torn tail of the newest segment (a crash
//! in the middle of a write, which nothing acknowledged depended on) is zeroed; any other
//! damage is corruption, reported with the file and offset, because acknowledged state may
//! be in it.
//!
//! The binding decides what a sync covers: [`Wal::append`] queues, [`Wal::write`] hands the
//! queued bytes to the kernel, [`Wal::sync_async`] asks the sync thread ([`Syncer`]) to make
//! everything written durable and returns a ticket ([`Wal::synced`] says which tickets are
//! done), and [`Wal::sync`] does the same and waits. One `fdatasync` covers every record
//! written before it starts: under load the groups grow by themselves.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::dir::{io_err, DataDir, StorageError};
use super::direct::DirectLog;
use super::frame::{self, Damage};
use super::prepare::{is_preallocated, Preparer};
use super::syncer::{SyncMode, Syncer};

const SEGMENT_PREFIX: &str = "wal-";
const SEGMENT_SUFFIX: &str = ".log";

/// What opening a log found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Every intact record, in write order across segments.
    pub records: Vec<Vec<u8>>,
    /// Bytes of a torn tail that were zeroed in the newest segment.
    pub dropped_tail_bytes: u64,
    /// The newest segment (appended to from now on).
    pub segment: PathBuf,
    /// The segments read, oldest first.
    pub segments: Vec<PathBuf>,
    /// Where each record's frame starts: an index into `segments`, and a byte offset.
    pub positions: Vec<(usize, u64)>,
}

impl Recovered {
    /// The segment and byte offset of record `i` (for errors that must name them).
    pub fn locate(&self, i: usize) -> Option<(&Path, u64)> {
        let (segment, offset) = *self.positions.get(i)?;
        Some((self.segments.get(segment)?.as_path(), offset))
    }
}

/// An open segmented log.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    /// The newest segment's number.
    number: u64,
    file: Arc<File>,
    path: PathBuf,
    pending: Vec<u8>,
    /// Bytes written to the kernel and not yet asked to be synced.
    unsynced: bool,
    /// Bytes appended to the newest segment.
    segment_bytes: u64,
    /// Bytes appended since the last [`Wal::rotate`] (or the open).
    rotated_bytes: u64,
    /// The newest segment was zero-filled ahead (its syncs are data flushes only).
    preallocated: bool,
    /// The newest segment is written directly ([`crate::storage::direct`]): records go to
    /// the syncer at [`Wal::sync_async`] and are durable when its write returns.
    direct: bool,
    syncer: Syncer,
    preparer: Preparer,
}

/// How a durable host keeps its log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogOptions {
    /// Compact (write a snapshot or image, drop older segments) once this many bytes were
    /// logged since the last one (see [`compact_after_bytes`]).
    pub compact_after_bytes: u64,
    /// Where the log's syncs run.
    pub sync: SyncMode,
}

impl LogOptions {
    /// These options with what a command line named in their place.
    pub fn overridden(self, compact_after_bytes: Option<u64>, sync: Option<SyncMode>) -> LogOptions {
        LogOptions {
            compact_after_bytes: compact_after_bytes.unwrap_or(self.compact_after_bytes),
            sync: sync.unwrap_or(self.sync),
        }
    }
}

/// Log segments are zero-filled to this length ahead of use: a quarter more than the
/// compaction threshold (a segment usually ends with a snapshot or image, not full), within
/// [1 MiB, 256 MiB].
pub fn segment_prealloc_bytes(compact_after: u64) -> u64 {
    compact_after.saturating_add(compact_after / 4).clamp(1 << 20, 256 << 20)
}

/// When a log is compacted: once `threshold` bytes were written since the last snapshot (or
/// image), or as many as the last snapshot file if that is larger (so snapshots cost at most
/// as much disk bandwidth as the log itself).
pub fn compact_after_bytes(threshold: u64, last_snapshot_bytes: u64) -> u64 {
    threshold.max(last_snapshot_bytes)
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

fn segment_name(number: u64) -> String {
    format!("{SEGMENT_PREFIX}{number:010}{SEGMENT_SUFFIX}")
}

/// The segment numbers in `dir`, in order.
fn segments(dir: &DataDir) -> Result<Vec<u64>, StorageError> {
    segments_in(dir.path())
}

/// The segment numbers in directory `path`, in order.
fn segments_in(path: &Path) -> Result<Vec<u64>, StorageError> {
    let mut numbers = Vec::new();
    for entry in fs::read_dir(path).map_err(io_err(path))? {
        let entry = entry.map_err(io_err(path))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name.strip_prefix(SEGMENT_PREFIX).and_then(|s| s.strip_suffix(SEGMENT_SUFFIX)) {
            if let Ok(n) = n.parse::<u64>() {
                numbers.push(n);
            }
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// The intact records of the log in directory `path`, oldest first, read without locking
/// or changing anything (no torn tail is cut): a look at a data directory before a server
/// opens it. Reading stops at the first damage; [`Wal::open`] reports it.
pub fn peek(path: &Path) -> Result<Vec<Vec<u8>>, StorageError> {
    if !path.is_dir() {
        return Ok(Vec::new());
    }
    let mut records = Vec::new();
    for n in segments_in(path)? {
        let file = path.join(segment_name(n));
        let mut bytes = Vec::new();
        File::open(&file).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(io_err(&file))?;
        let parsed = frame::parse(&bytes);
        records.extend(parsed.payloads.iter().map(|r| bytes[r.clone()].to_vec()));
        if parsed.damage.is_some() {
            break;
        }
    }
    Ok(records)
}

impl Wal {
    /// Opens the log in `dir` (a first segment if there is none) and returns every intact
    /// record. A torn tail of the newest segment is zeroed on disk; damage anywhere else is
    /// [`StorageError::Corrupt`]. Segments are zero-filled to `segment_bytes` ahead of use
    /// (0: plain segments that grow as written, never started anew when long). `sync` says
    /// where its syncs run.
    pub fn open(dir: &DataDir, segment_bytes: u64, sync: SyncMode) -> Result<(Wal, Recovered), StorageError> {
        let numbers = segments(dir)?;
        let mut found = Recovered::default();
        let newest = numbers.last().copied().unwrap_or(1);
        let mut write_at = 0;
        let mut newest_tail = Vec::new();
        for &n in &numbers {
            let path = dir.file(&segment_name(n));
            let mut bytes = Vec::new();
            File::open(&path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(io_err(&path))?;
            let parsed = frame::parse(&bytes);
            found.records.extend(parsed.payloads.iter().map(|r| bytes[r.clone()].to_vec()));
            let index = found.segments.len();
            found
                .positions
                .extend(parsed.payloads.iter().map(|r| (index, (r.start - frame::FRAME_HEADER_BYTES) as u64)));
            found.segments.push(path.clone());
            match parsed.damage {
                None => {}
                Some(Damage::TornTail { at }) if n == newest => {
                    // Zeros over the torn bytes: the next records go there, and nothing of
                    // the torn write may be read after them.
                    let end = bytes.iter().rposition(|&b| b != 0).map_or(at, |i| i as u64 + 1);
                    found.dropped_tail_bytes = end - at;
                    let f = OpenOptions::new().write(true).open(&path).map_err(io_err(&path))?;
                    f.write_all_at(&vec![0u8; (end - at) as usize], at).map_err(io_err(&path))?;
                    f.sync_all().map_err(io_err(&path))?;
                }
                Some(Damage::TornTail { at }) | Some(Damage::Corrupt { at }) => {
                    return Err(StorageError::Corrupt { file: path, offset: at });
                }
            }
            write_at = parsed.good_len as u64;
            newest_tail = DirectLog::tail_of(bytes.get(..parsed.good_len).unwrap_or_default()).to_vec();
        }
        let mut preparer = Preparer::start(dir.path(), segment_bytes).map_err(io_err(dir.path()))?;
        let path = dir.file(&segment_name(newest));
        if numbers.is_empty() {
            preparer.take(&path);
        }
        let file = OpenOptions::new().create(true).write(true).truncate(false).open(&path).map_err(io_err(&path))?;
        if numbers.is_empty() {
            dir.sync()?;
        }
        found.segment = path.clone();
        let syncer = Syncer::start(sync).map_err(io_err(dir.path()))?;
        let preallocated = is_preallocated(&file, segment_bytes);
        let mut wal = Wal {
            dir: dir.path().to_path_buf(),
            number: newest,
            preallocated,
            direct: false,
            file: Arc::new(file),
            path,
            pending: Vec::new(),
            unsynced: false,
            segment_bytes: write_at,
            rotated_bytes: 0,
            syncer,
            preparer,
        };
        wal.write_directly_if_possible(&newest_tail)?;
        Ok((wal, found))
    }

    /// Queues one record.
    pub fn append(&mut self, record: &[u8]) {
        frame::push(&mut self.pending, record);
    }

    /// True if records are queued or written but not synced.
    pub fn has_unsynced(&self) -> bool {
        !self.pending.is_empty() || self.unsynced
    }

    /// Writes the newest segment directly from now on if it is zero-filled and its file
    /// system takes direct IO; `tail` is its last block's bytes up to the end of its
    /// records. Only with nothing outstanding.
    fn write_directly_if_possible(&mut self, tail: &[u8]) -> Result<(), StorageError> {
        let direct = if self.preallocated {
            DirectLog::open(&self.path, self.segment_bytes, tail).map_err(io_err(&self.path))?
        } else {
            None
        };
        self.direct = direct.is_some();
        self.syncer.set_direct(direct.map(|log| (log, self.path.clone())));
        Ok(())
    }

    /// True if the newest segment is written with direct, synchronous writes.
    pub fn direct(&self) -> bool {
        self.direct
    }

    /// Hands the queued records to the kernel (not yet durable), or with a direct segment
    /// to the syncer, which writes them at the next sync. A segment that would grow past its
    /// prepared length is synced and the next one started first.
    pub fn write(&mut self) -> Result<(), StorageError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let limit = self.preparer.segment_bytes();
        if limit > 0 && self.segment_bytes > 0 && self.segment_bytes + self.pending.len() as u64 > limit {
            self.sync_written()?;
            self.start_segment(&[])?;
        }
        if self.direct {
            self.syncer.stage(&self.pending);
        } else {
            self.file.write_all_at(&self.pending, self.segment_bytes).map_err(io_err(&self.path))?;
        }
        self.segment_bytes += self.pending.len() as u64;
        self.rotated_bytes += self.pending.len() as u64;
        self.pending.clear();
        self.unsynced = true;
        Ok(())
    }

    /// Waits until everything written so far is on disk (the queued records stay queued).
    fn sync_written(&mut self) -> Result<(), StorageError> {
        if self.unsynced {
            self.unsynced = false;
            self.request_sync();
        }
        self.syncer.wait_all()
    }

    /// Asks the syncer to make everything written durable: a direct write of what was
    /// staged, or a sync of the file.
    fn request_sync(&mut self) -> u64 {
        if self.direct {
            self.syncer.request_direct()
        } else {
            self.syncer.request(&self.file, &self.path)
        }
    }

    /// Starts the next segment holding `image` first, synced with the directory: a
    /// prepared one if there is one, else a plain one.
    fn start_segment(&mut self, image: &[Vec<u8>]) -> Result<(), StorageError> {
        let number = self.number + 1;
        let path = self.dir.join(segment_name(number));
        let prepared = self.preparer.take(&path);
        let file =
            OpenOptions::new().create(true).write(true).truncate(!prepared).open(&path).map_err(io_err(&path))?;
        let mut bytes = Vec::new();
        for r in image {
            frame::push(&mut bytes, r);
        }
        file.write_all_at(&bytes, 0).map_err(io_err(&path))?;
        file.sync_all().map_err(io_err(&path))?;
        sync_dir(&self.dir)?;
        self.number = number;
        self.preallocated = prepared;
        self.file = Arc::new(file);
        self.path = path;
        self.segment_bytes = bytes.len() as u64;
        self.write_directly_if_possible(DirectLog::tail_of(&bytes))
    }

    /// Writes the queued records and asks for everything written to be synced; returns the
    /// ticket to look for in [`Wal::synced`] (the last one again if nothing new was written).
    pub fn sync_async(&mut self) -> Result<u64, StorageError> {
        self.write()?;
        if self.unsynced {
            self.unsynced = false;
            return Ok(self.request_sync());
        }
        Ok(self.syncer.issued())
    }

    /// The highest ticket whose records are on disk; a failed sync is an error from then on.
    pub fn synced(&mut self) -> Result<u64, StorageError> {
        self.syncer.done()
    }

    /// With [`SyncMode::Auto`]: whether the next syncs run on the caller's thread (see
    /// [`Syncer::set_inline`]).
    pub fn set_inline_syncs(&mut self, inline: bool) {
        self.syncer.set_inline(inline);
    }

    /// Becomes readable when a sync thread finishes a sync (an event loop polls it); inline
    /// syncs have none.
    pub fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        self.syncer.wake_fd()
    }

    /// Writes the queued records and waits until everything written is on disk.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.sync_async()?;
        self.syncer.wait_all()
    }

    /// Bytes in the newest segment.
    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes
    }

    /// The newest segment's number.
    pub fn segment(&self) -> u64 {
        self.number
    }

    /// Syncs the newest segment, then starts a new one holding `image` first (records that
    /// make the older segments' acceptor records unnecessary), synced with the directory.
    /// Returns the new segment's number.
    pub fn rotate(&mut self, image: &[Vec<u8>]) -> Result<u64, StorageError> {
        self.sync()?;
        self.start_segment(image)?;
        self.rotated_bytes = self.segment_bytes;
        Ok(self.number)
    }

    /// Bytes written since the last [`Wal::rotate`] (what a snapshot would compact).
    pub fn rotated_bytes(&self) -> u64 {
        self.rotated_bytes
    }

    /// True if the newest segment was zero-filled ahead of use.
    pub fn preallocated(&self) -> bool {
        self.preallocated
    }

    /// Deletes every segment numbered below `number` (their records are in a durable
    /// snapshot and the newer segments), then syncs the directory.
    pub fn remove_before(&mut self, dir: &DataDir, number: u64) -> Result<(), StorageError> {
        let mut removed = false;
        for n in segments(dir)?.into_iter().filter(|&n| n < number) {
            let path = dir.file(&segment_name(n));
            fs::remove_file(&path).map_err(io_err(&path))?;
            removed = true;
        }
        if removed {
            dir.sync()?;
        }
        Ok(())
    }

    /// How many times this log was synced (for stats lines): one sync covers every
    /// request made while the one before it ran.
    pub fn syncs(&self) -> u64 {
        self.syncer.syncs()
    }
}

impl Drop for Wal {
    /// Records handed over with [`Wal::write`] outlive the process, as they do through the
    /// page cache: a direct segment's staged records are written (and synced) here. Records
    /// only queued are not, either way. A failure has nobody left to tell; recovery sees
    /// whatever reached the disk.
    fn drop(&mut self) {
        if self.direct && self.unsynced {
            self.unsynced = false;
            self.request_sync();
            let _ = self.syncer.wait_all();
        }
    }
}

#[cfg(test)]
mod tests;
