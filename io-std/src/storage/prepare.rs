//! Log segments written full of zeros ahead of time, so that appending a record overwrites
//! allocated blocks instead of growing the file.
//!
//! Why: `fdatasync` after an append that grows a file must also commit the new size and
//! block allocation to the filesystem's journal; after an overwrite of blocks already
//! written it only flushes the data. On these machines (ext4 on virtio) that is 83 µs
//! against 132 µs at the median, and the journal commit is a second serial step every
//! replica on the disk shares. `fallocate` is not enough: it leaves *unwritten* extents,
//! whose first write is again a metadata change. So segments are zero-filled for real, by
//! a thread, one segment ahead (TigerBeetle and etcd preallocate their logs the same way).
//!
//! A prepared segment is `wal-prepared.tmp`, zero-filled and synced; the log renames it
//! into place when it starts a segment. A leftover one from before a crash may be half
//! written: it is deleted at open and prepared again. If preparing fails (a full disk), the
//! log starts plain segments that grow as they are written: slower syncs, same contents.
//! A segment is prepared only while the file system has room for two more: zeros must
//! never take the space the log itself is about to need.
//!
//! Dropping a [`Preparer`] stops its thread and waits for it: nothing writes in the data
//! directory once its owner is gone (a host reopened on the same directory in the same
//! process must not share its next segment with a writer of zeros).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The prepared segment's file name in the data directory.
pub const PREPARED_FILE: &str = "wal-prepared.tmp";
/// Zeros written (and synced) per step while preparing: small enough that a log write
/// queued behind one on the device waits little (with 1 MiB steps, and a snapshot synced
/// only at its end, a durable run's p99 was 5.2-6.9 ms; with 256 KiB and 1 MiB snapshot
/// steps 3.4-3.7 ms, same throughput: docs/performance.md).
const ZERO_CHUNK_BYTES: usize = 256 << 10;

/// Prepares one segment at a time on a thread.
#[derive(Debug)]
pub struct Preparer {
    path: PathBuf,
    bytes: u64,
    job: Option<JoinHandle<io::Result<()>>>,
    ready: bool,
    /// Set when the preparer is dropped: the thread stops after its current step.
    stop: Arc<AtomicBool>,
}

impl Preparer {
    /// A preparer of `bytes`-long segments in `dir`: deletes a leftover prepared segment
    /// and starts preparing a fresh one (none when `bytes` is 0).
    pub fn start(dir: &Path, bytes: u64) -> io::Result<Preparer> {
        let path = dir.join(PREPARED_FILE);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut p = Preparer { path, bytes, job: None, ready: false, stop: Arc::new(AtomicBool::new(false)) };
        p.prepare_next();
        Ok(p)
    }

    /// Segments this long are prepared (0: none).
    pub fn segment_bytes(&self) -> u64 {
        self.bytes
    }

    fn prepare_next(&mut self) {
        if self.bytes == 0 {
            return;
        }
        let (path, bytes, stop) = (self.path.clone(), self.bytes, Arc::clone(&self.stop));
        // A thread that cannot start means plain segments (see the module docs).
        self.job =
            std::thread::Builder::new().name("wal-prepare".into()).spawn(move || zero_fill(&path, bytes, &stop)).ok();
    }

    /// Moves the prepared segment to `to` (waiting for it if it is still being written),
    /// then starts preparing the next. False when there is none (preparing failed or is
    /// off): the caller creates a plain segment instead.
    pub fn take(&mut self, to: &Path) -> bool {
        if let Some(job) = self.job.take() {
            self.ready = matches!(job.join(), Ok(Ok(())));
        }
        let moved = self.ready && fs::rename(&self.path, to).is_ok();
        self.ready = false;
        self.prepare_next();
        moved
    }
}

impl Drop for Preparer {
    /// Stops the thread after its current step (it removes its unfinished segment) and
    /// waits for it.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(job) = self.job.take() {
            let _ = job.join();
        }
    }
}

/// Writes `bytes` zeros to a new file at `path` and syncs it; on failure, or when `stop`
/// is set before it is done, removes it (a full disk must not stay full of zeros, and an
/// unfinished segment is of no use).
fn zero_fill(path: &Path, bytes: u64, stop: &AtomicBool) -> io::Result<()> {
    let free = free_bytes(path.parent().unwrap_or(Path::new(".")))?;
    if free < bytes.saturating_mul(2) {
        return Err(io::Error::new(io::ErrorKind::StorageFull, "no room to prepare a log segment"));
    }
    let result = write_zeros(path, bytes, stop);
    if result.is_err() {
        let _ = fs::remove_file(path);
    }
    result
}

/// Bytes an unprivileged writer may still use on the file system holding `dir`.
fn free_bytes(dir: &Path) -> io::Result<u64> {
    let s = nix::sys::statvfs::statvfs(dir).map_err(io::Error::from)?;
    Ok(s.blocks_available().saturating_mul(s.fragment_size()))
}

fn write_zeros(path: &Path, bytes: u64, stop: &AtomicBool) -> io::Result<()> {
    let file = OpenOptions::new().create(true).truncate(true).write(true).open(path)?;
    let zeros = vec![0u8; ZERO_CHUNK_BYTES];
    let mut at = 0u64;
    while at < bytes {
        if stop.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "preparer dropped"));
        }
        let n = (bytes - at).min(ZERO_CHUNK_BYTES as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
        // A chunk at a time, synced, with a pause: one big flush of the whole segment would
        // hold up every log sync queued behind it on the device.
        file.sync_data()?;
        // 80 MiB takes one to two seconds, well within the seconds a segment lasts under
        // full load.
        std::thread::sleep(super::BACKGROUND_STEP_PAUSE);
    }
    file.sync_all()
}

/// True if `file` is at least `bytes` long (a prepared segment, or one grown that far).
pub fn is_preallocated(file: &File, bytes: u64) -> bool {
    bytes > 0 && file.metadata().is_ok_and(|m| m.len() >= bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prepared_segment_is_zeros_of_the_asked_length_and_the_next_follows() {
        let dir = std::env::temp_dir().join(format!("fleet-prepare-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(PREPARED_FILE), b"half written before a crash").unwrap();
        let mut p = Preparer::start(&dir, 3 << 20).unwrap();
        assert!(p.take(&dir.join("a")));
        let bytes = fs::read(dir.join("a")).unwrap();
        assert_eq!(bytes.len(), 3 << 20);
        assert!(bytes.iter().all(|&b| b == 0), "the leftover was not reused");
        assert!(p.take(&dir.join("b")), "the next one was prepared meanwhile");
        assert!(is_preallocated(&File::open(dir.join("b")).unwrap(), 3 << 20));
        let mut off = Preparer::start(&dir, 0).unwrap();
        assert!(!off.take(&dir.join("c")), "no preparing at 0 bytes");
        drop(p);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_dropped_preparer_stops_writing_and_leaves_no_unfinished_segment() {
        let dir = std::env::temp_dir().join(format!("fleet-prepare-drop-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        // 64 MiB takes the thread a second or more, in 2 ms pauses between 256 KiB steps.
        let p = Preparer::start(&dir, 64 << 20).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        drop(p);
        let prepared = dir.join(PREPARED_FILE);
        assert!(!prepared.exists(), "the unfinished segment was left, or is still being written");
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!prepared.exists(), "something wrote in the directory after the drop");
        fs::remove_dir(&dir).unwrap();
    }
}
