//! A data directory: locked by one process, named for one server, in one storage format,
//! and the errors its files can give.
//!
//! * `LOCK`: an exclusive file lock held while a server runs, so two servers never share
//!   one directory.
//! * `identity`: which server the directory belongs to (written on first start, checked on
//!   every later start), so a directory is never replayed by another server.
//! * `format`: the storage format version; a directory of another version is refused, not
//!   misread.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// The storage format this build writes and reads: "fleet storage" and the engine's
/// [`fleet_engine::RECORD_FORMAT`] (a unit test keeps the two in step).
pub const FORMAT: &str = "fleet storage 5";
const LOCK_FILE: &str = "LOCK";
const IDENTITY_FILE: &str = "identity";
const FORMAT_FILE: &str = "format";

/// A storage error a user sees: every variant names the file.
#[derive(Debug)]
pub enum StorageError {
    /// A file operation failed (a full disk shows up here as ENOSPC).
    Io(PathBuf, io::Error),
    /// Another process holds the directory's lock.
    Locked(PathBuf),
    /// The directory belongs to another server or cluster.
    WrongIdentity {
        /// The directory.
        dir: PathBuf,
        /// What the directory says.
        found: String,
        /// What this server is.
        expected: String,
    },
    /// The directory was written by another storage format.
    WrongFormat {
        /// The directory.
        dir: PathBuf,
        /// What its `format` file says.
        found: String,
    },
    /// A file's bytes changed after they were written: a checksum failed with intact
    /// records after it.
    Corrupt {
        /// The file.
        file: PathBuf,
        /// Where the bad record starts.
        offset: u64,
    },
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageError::Io(p, e) if e.raw_os_error() == Some(28) => {
                write!(
                    f,
                    "{}: the disk is full ({e}); nothing acknowledged is lost, but this server stops",
                    p.display()
                )
            }
            StorageError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            StorageError::Locked(p) => write!(f, "{} is in use by another running server", p.display()),
            StorageError::WrongIdentity { dir, found, expected } => write!(
                f,
                "{} holds the state of a different server ({found:?}); this server is {expected:?}: \
                 use that server's own data directory, or an empty one",
                dir.display()
            ),
            StorageError::WrongFormat { dir, found } => write!(
                f,
                "{} was written in storage format {found:?}, this build reads {FORMAT:?}: \
                 use an empty directory",
                dir.display()
            ),
            StorageError::Corrupt { file, offset } => write!(
                f,
                "{} is corrupt at byte {offset}: a record's checksum fails and intact records follow it \
                 (the disk changed data that had been written)",
                file.display()
            ),
        }
    }
}

impl std::error::Error for StorageError {}

/// The error of a failed operation on `path`.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |e| StorageError::Io(path.to_path_buf(), e)
}

/// An open data directory: locked for as long as this value lives.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Opens (creating if needed) `path` for the server described by `identity`.
    pub fn open(path: &Path, identity: &str) -> Result<DataDir, StorageError> {
        fs::create_dir_all(path).map_err(io_err(path))?;
        let lock_path = path.join(LOCK_FILE);
        let lock =
            OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(StorageError::Locked(path.to_path_buf())),
            Err(fs::TryLockError::Error(e)) => return Err(StorageError::Io(lock_path, e)),
        }
        let dir = DataDir { path: path.to_path_buf(), _lock: lock };
        dir.check_or_write(IDENTITY_FILE, identity, |found| StorageError::WrongIdentity {
            dir: path.to_path_buf(),
            found,
            expected: identity.to_string(),
        })?;
        dir.check_or_write(FORMAT_FILE, FORMAT, |found| StorageError::WrongFormat { dir: path.to_path_buf(), found })?;
        Ok(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A file in the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Makes the directory's entries (files created, renamed, removed) durable.
    pub fn sync(&self) -> Result<(), StorageError> {
        File::open(&self.path).and_then(|d| d.sync_all()).map_err(io_err(&self.path))
    }

    /// Writes `name` atomically: a temporary file, synced, renamed over `name`, and the
    /// directory synced; a crash leaves the old file or the new one.
    pub fn replace(&self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let tmp = self.file(&format!("{name}.tmp"));
        let path = self.file(name);
        fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
        File::open(&tmp).and_then(|f| f.sync_all()).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        self.sync()
    }

    /// Checks that `name` holds `content`, or writes it there when the file is new.
    fn check_or_write(
        &self,
        name: &str,
        content: &str,
        mismatch: impl FnOnce(String) -> StorageError,
    ) -> Result<(), StorageError> {
        let path = self.file(name);
        match fs::read_to_string(&path) {
            Ok(found) if found.trim_end() == content => Ok(()),
            Ok(found) => Err(mismatch(found.trim_end().to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.replace(name, format!("{content}\n").as_bytes()),
            Err(e) => Err(StorageError::Io(path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_names_the_engines_record_format() {
        assert_eq!(FORMAT, format!("fleet storage {}", fleet_engine::RECORD_FORMAT));
    }

    pub(crate) fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fleet-dir-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_directory_serves_one_server_one_process_and_one_format() {
        let path = scratch("identity");
        let dir = DataDir::open(&path, "replica 0 of 3").unwrap();
        assert!(matches!(DataDir::open(&path, "replica 0 of 3"), Err(StorageError::Locked(_))));
        drop(dir);
        let err = DataDir::open(&path, "replica 1 of 3").unwrap_err();
        assert!(matches!(err, StorageError::WrongIdentity { .. }), "{err}");
        assert!(err.to_string().contains("different server"));
        fs::write(path.join(FORMAT_FILE), "fleet storage 1\n").unwrap();
        let err = DataDir::open(&path, "replica 0 of 3").unwrap_err();
        assert!(matches!(err, StorageError::WrongFormat { .. }), "{err}");
        assert!(err.to_string().contains("\"fleet storage 1\""), "{err}");
        let _ = fs::remove_dir_all(&path);
    }

    #[test]
    fn errors_name_the_file_and_a_full_disk_says_so() {
        let full = StorageError::Io(PathBuf::from("/data/wal-1.log"), io::Error::from_raw_os_error(28));
        let text = full.to_string();
        assert!(text.starts_with("/data/wal-1.log: the disk is full"), "{text}");
        let corrupt = StorageError::Corrupt { file: PathBuf::from("/data/rsl.snapshot"), offset: 4096 };
        assert!(corrupt.to_string().starts_with("/data/rsl.snapshot is corrupt at byte 4096"), "{corrupt}");
    }
}
