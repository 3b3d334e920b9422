//! Durable mode for std replicas: a write-ahead log of the engine's durable records in a
//! data directory, group-committed with one `fdatasync` per burst of steps, compacted by
//! rewriting it as the replica's current image.
//!
//! The rule (see `fleet_engine::rsl::durable`): a step's record is on disk before any
//! datagram of that step leaves. The server loop appends records while it handles a burst
//! of datagrams, calls [`Wal::commit`] once, and only then sends the burst's datagrams.
//!
//! Layout of `DIR`:
//! * `identity`: `replica <id> of <n>` and the replica addresses, written on first start
//!   and checked on every later start (a data directory belongs to one replica).
//! * `rsl.wal`: frames `[len: u32 LE][crc32 of payload: u32 LE][payload]`. A torn tail (a
//!   crash in the middle of a write) is cut off with a warning; it was never acknowledged,
//!   because nothing of its step was sent.
//! * `LOCK`: held with an exclusive file lock while a server runs, so that two servers never
//!   share one log.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Bytes of a frame header (length and checksum).
pub const FRAME_HEADER_BYTES: usize = 8;
/// Largest record the log accepts (a vote of the largest batch, with room to spare).
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// The log is compacted once it holds this many records more than the last image did.
pub const COMPACT_AFTER_RECORDS: usize = 16_384;
const WAL_FILE: &str = "rsl.wal";
const WAL_TMP_FILE: &str = "rsl.wal.tmp";
const IDENTITY_FILE: &str = "identity";
const LOCK_FILE: &str = "LOCK";

/// A data-directory error a user sees.
#[derive(Debug)]
pub enum WalError {
    /// A file operation failed.
    Io(PathBuf, io::Error),
    /// Another process holds the directory's lock.
    Locked(PathBuf),
    /// The directory belongs to another replica or cluster.
    WrongIdentity {
        /// The directory.
        dir: PathBuf,
        /// What the directory says.
        found: String,
        /// What this server is.
        expected: String,
    },
}

impl std::fmt::Display for WalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WalError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            WalError::Locked(p) => write!(f, "{} is in use by another running server", p.display()),
            WalError::WrongIdentity { dir, found, expected } => write!(
                f,
                "{} holds the state of a different replica ({found:?}); this server is {expected:?}: \
                 use that replica's own data directory, or an empty one",
                dir.display()
            ),
        }
    }
}

impl std::error::Error for WalError {}

/// What opening a log found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The records, in write order.
    pub records: Vec<Vec<u8>>,
    /// Bytes of a torn or corrupt tail that were cut off.
    pub dropped_tail_bytes: u64,
}

/// An open write-ahead log.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    file: File,
    _lock: File,
    pending: Vec<u8>,
    pending_records: usize,
    records_since_image: usize,
    syncs: u64,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |e| WalError::Io(path.to_path_buf(), e)
}

impl Wal {
    /// Opens (creating if needed) the log in `dir` for the server described by `identity`;
    /// returns it with every intact record. A torn tail is truncated away on disk.
    pub fn open(dir: &Path, identity: &str) -> Result<(Wal, Recovered), WalError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock =
            OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(WalError::Locked(dir.to_path_buf())),
            Err(fs::TryLockError::Error(e)) => return Err(WalError::Io(lock_path, e)),
        }
        check_identity(dir, identity)?;
        let path = dir.join(WAL_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_err(&path))?;
        let (records, good_len) = parse_frames(&bytes);
        let dropped = bytes.len() as u64 - good_len as u64;
        if dropped > 0 {
            file.set_len(good_len as u64).map_err(io_err(&path))?;
            file.sync_all().map_err(io_err(&path))?;
        }
        let records_since_image = records.len();
        let wal = Wal {
            dir: dir.to_path_buf(),
            file,
            _lock: lock,
            pending: Vec::new(),
            pending_records: 0,
            records_since_image,
            syncs: 0,
        };
        Ok((wal, Recovered { records, dropped_tail_bytes: dropped }))
    }

    /// Queues one record; it is durable after the next [`Wal::commit`].
    pub fn append(&mut self, record: &[u8]) {
        debug_assert!(record.len() <= MAX_RECORD_BYTES, "engine records are bounded by the datagram size");
        self.pending.extend_from_slice(&(record.len() as u32).to_le_bytes());
        self.pending.extend_from_slice(&crc32fast::hash(record).to_le_bytes());
        self.pending.extend_from_slice(record);
        self.pending_records += 1;
    }

    /// True if records wait for [`Wal::commit`].
    pub fn has_pending(&self) -> bool {
        self.pending_records > 0
    }

    /// Writes the queued records and waits until they are on disk (one `fdatasync`).
    pub fn commit(&mut self) -> Result<(), WalError> {
        if self.pending_records == 0 {
            return Ok(());
        }
        let path = self.dir.join(WAL_FILE);
        self.file.write_all(&self.pending).map_err(io_err(&path))?;
        self.file.sync_data().map_err(io_err(&path))?;
        self.records_since_image += self.pending_records;
        self.pending.clear();
        self.pending_records = 0;
        self.syncs += 1;
        Ok(())
    }

    /// True when the log has grown enough to be worth compacting.
    pub fn wants_compaction(&self) -> bool {
        self.records_since_image >= COMPACT_AFTER_RECORDS
    }

    /// Replaces the log with `image` (records that replay to the current state): written
    /// to a temporary file, synced, renamed over the log, and the directory synced, so a
    /// crash at any point leaves either the old log or the new one. Call after `commit`.
    pub fn compact(&mut self, image: &[Vec<u8>]) -> Result<(), WalError> {
        debug_assert!(self.pending_records == 0, "compact after commit");
        let tmp = self.dir.join(WAL_TMP_FILE);
        let path = self.dir.join(WAL_FILE);
        let mut frames = Vec::new();
        for r in image {
            frames.extend_from_slice(&(r.len() as u32).to_le_bytes());
            frames.extend_from_slice(&crc32fast::hash(r).to_le_bytes());
            frames.extend_from_slice(r);
        }
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&frames).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io_err(&self.dir))?;
        self.file = OpenOptions::new().append(true).open(&path).map_err(io_err(&path))?;
        self.records_since_image = image.len();
        Ok(())
    }

    /// How many `fdatasync`s this log has done (for stats lines).
    pub fn syncs(&self) -> u64 {
        self.syncs
    }
}

/// The intact frames of `bytes` and the length they cover; parsing stops at the first
/// frame that is short, too long or fails its checksum.
fn parse_frames(bytes: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + FRAME_HEADER_BYTES) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_RECORD_BYTES {
            break;
        }
        let start = at + FRAME_HEADER_BYTES;
        let Some(payload) = bytes.get(start..start + len) else { break };
        if crc32fast::hash(payload) != crc {
            break;
        }
        records.push(payload.to_vec());
        at = start + len;
    }
    (records, at)
}

fn check_identity(dir: &Path, identity: &str) -> Result<(), WalError> {
    let path = dir.join(IDENTITY_FILE);
    match fs::read_to_string(&path) {
        Ok(found) if found.trim_end() == identity => Ok(()),
        Ok(found) => Err(WalError::WrongIdentity {
            dir: dir.to_path_buf(),
            found: found.trim_end().to_string(),
            expected: identity.to_string(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let tmp = dir.join("identity.tmp");
            fs::write(&tmp, format!("{identity}\n")).map_err(io_err(&tmp))?;
            File::open(&tmp).and_then(|f| f.sync_all()).map_err(io_err(&tmp))?;
            fs::rename(&tmp, &path).map_err(io_err(&path))?;
            File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
        }
        Err(e) => Err(WalError::Io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fleet-wal-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn records_survive_a_reopen_in_order() {
        let dir = scratch("reopen");
        {
            let (mut wal, rec) = Wal::open(&dir, "replica 0 of 3").unwrap();
            assert!(rec.records.is_empty());
            wal.append(b"one");
            wal.append(b"two");
            wal.commit().unwrap();
            wal.append(b"never committed");
        }
        let (_, rec) = Wal::open(&dir, "replica 0 of 3").unwrap();
        assert_eq!(rec.records, vec![b"one".to_vec(), b"two".to_vec()]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_torn_or_corrupt_tail_is_cut_off() {
        let dir = scratch("torn");
        {
            let (mut wal, _) = Wal::open(&dir, "id").unwrap();
            wal.append(b"kept");
            wal.append(b"torn away");
            wal.commit().unwrap();
        }
        let path = dir.join(WAL_FILE);
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 3).unwrap();
        let (_, rec) = Wal::open(&dir, "id").unwrap();
        assert_eq!(rec.records, vec![b"kept".to_vec()]);
        assert_eq!(rec.dropped_tail_bytes, (FRAME_HEADER_BYTES + b"torn away".len() - 3) as u64);
        // Flip a payload byte of the last record: its checksum fails.
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let (_, rec) = Wal::open(&dir, "id").unwrap();
        assert!(rec.records.is_empty());
        assert_eq!(fs::metadata(&path).unwrap().len(), 0, "the corrupt frame is gone from disk");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn compaction_replaces_the_log() {
        let dir = scratch("compact");
        let (mut wal, _) = Wal::open(&dir, "id").unwrap();
        for i in 0..10u8 {
            wal.append(&[i]);
        }
        wal.commit().unwrap();
        wal.compact(&[b"image".to_vec()]).unwrap();
        wal.append(b"after");
        wal.commit().unwrap();
        drop(wal);
        let (_, rec) = Wal::open(&dir, "id").unwrap();
        assert_eq!(rec.records, vec![b"image".to_vec(), b"after".to_vec()]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_directory_serves_one_replica_and_one_process() {
        let dir = scratch("identity");
        let (wal, _) = Wal::open(&dir, "replica 0 of 3").unwrap();
        assert!(matches!(Wal::open(&dir, "replica 0 of 3"), Err(WalError::Locked(_))));
        drop(wal);
        let err = Wal::open(&dir, "replica 1 of 3").unwrap_err();
        assert!(matches!(err, WalError::WrongIdentity { .. }), "{err}");
        assert!(err.to_string().contains("different replica"));
        let _ = fs::remove_dir_all(&dir);
    }
}
