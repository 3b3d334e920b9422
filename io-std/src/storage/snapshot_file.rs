//! Snapshot files: the latest whole snapshot as frames (`<name>`), and the one before it
//! (`<name>.prev`), each replaced atomically.
//!
//! A new snapshot is written to `<name>.tmp` and synced ([`write`](fn@write), from a thread of its own
//! while the server runs); then [`install`] renames `<name>` to `<name>.prev` and the
//! temporary file to `<name>`, and syncs the directory: a crash leaves whole files only, and
//! at least one of the two snapshots. Any damaged frame makes a whole file unusable
//! ([`StorageError::Corrupt`] names it); the caller moves it aside ([`quarantine`]) and
//! falls back on the previous snapshot rather than serve from it.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;

use super::dir::{io_err, DataDir, StorageError};
use super::frame;

/// The records of the snapshot file `name` in `dir`, or `None` if there is none.
pub fn read(dir: &DataDir, name: &str) -> Result<Option<Vec<Vec<u8>>>, StorageError> {
    let path = dir.file(name);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::Io(path, e)),
    };
    let parsed = frame::parse(&bytes);
    match parsed.damage {
        None => Ok(Some(parsed.payloads.iter().map(|r| bytes[r.clone()].to_vec()).collect())),
        Some(frame::Damage::TornTail { at } | frame::Damage::Corrupt { at }) => {
            Err(StorageError::Corrupt { file: path, offset: at })
        }
    }
}

/// The name of the snapshot before `name`.
pub fn previous(name: &str) -> String {
    format!("{name}.prev")
}

/// A snapshot is synced every this many bytes as it is written.
const SYNC_STEP_BYTES: u64 = 1 << 20;

/// Writes `records` to `<name>.tmp` in the directory `dir` and syncs it (the directory is a
/// path so a writer thread can do this while the server runs); returns its length.
/// [`install`] then makes it the snapshot.
pub fn write<I>(dir: &Path, name: &str, records: I) -> Result<u64, StorageError>
where
    I: IntoIterator<Item = Result<Vec<u8>, StorageError>>,
{
    let tmp = dir.join(format!("{name}.tmp"));
    let file = File::create(&tmp).map_err(io_err(&tmp))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut bytes = 0u64;
    let mut frame_buf = Vec::new();
    let mut synced = 0u64;
    for r in records {
        frame_buf.clear();
        frame::push(&mut frame_buf, &r?);
        out.write_all(&frame_buf).map_err(io_err(&tmp))?;
        bytes += frame_buf.len() as u64;
        if bytes - synced >= SYNC_STEP_BYTES {
            // A step at a time, synced, with a pause: one flush of the whole file at the
            // end would hold up every log write queued behind it on the device.
            out.flush().map_err(io_err(&tmp))?;
            out.get_ref().sync_data().map_err(io_err(&tmp))?;
            synced = bytes;
            std::thread::sleep(super::BACKGROUND_STEP_PAUSE);
        }
    }
    let file = out.into_inner().map_err(|e| StorageError::Io(tmp.clone(), e.into_error()))?;
    file.sync_all().map_err(io_err(&tmp))?;
    Ok(bytes)
}

/// Makes the written `<name>.tmp` the snapshot `name`, keeping the one it replaces as
/// `<name>.prev`, and syncs the directory.
pub fn install(dir: &DataDir, name: &str) -> Result<(), StorageError> {
    let tmp = dir.file(&format!("{name}.tmp"));
    let path = dir.file(name);
    if path.exists() {
        let prev = dir.file(&previous(name));
        fs::rename(&path, &prev).map_err(io_err(&path))?;
    }
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    dir.sync()
}

/// Moves a damaged snapshot file aside (to `<name>.corrupt`), so the next snapshot can be
/// written and the damaged bytes are kept for inspection.
pub fn quarantine(dir: &DataDir, name: &str) -> Result<(), StorageError> {
    let path = dir.file(name);
    let aside = dir.file(&format!("{name}.corrupt"));
    fs::rename(&path, &aside).map_err(io_err(&path))?;
    dir.sync()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fleet-snapfile-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn snapshots_keep_two_generations_and_a_damaged_one_is_refused_then_set_aside() {
        let path = scratch("replace");
        let dir = DataDir::open(&path, "id").unwrap();
        assert!(read(&dir, "snap").unwrap().is_none());
        write(dir.path(), "snap", [Ok(b"old".to_vec())]).unwrap();
        assert!(read(&dir, "snap").unwrap().is_none(), "written but not installed");
        install(&dir, "snap").unwrap();
        write(dir.path(), "snap", [Ok(b"new 1".to_vec()), Ok(b"new 2".to_vec())]).unwrap();
        install(&dir, "snap").unwrap();
        assert_eq!(read(&dir, "snap").unwrap().unwrap(), vec![b"new 1".to_vec(), b"new 2".to_vec()]);
        assert_eq!(read(&dir, &previous("snap")).unwrap().unwrap(), vec![b"old".to_vec()]);
        let file = path.join("snap");
        let mut bytes = fs::read(&file).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&file, &bytes).unwrap();
        let err = read(&dir, "snap").unwrap_err();
        assert!(matches!(&err, StorageError::Corrupt { file: f, .. } if *f == file), "{err}");
        quarantine(&dir, "snap").unwrap();
        assert!(read(&dir, "snap").unwrap().is_none());
        assert!(path.join("snap.corrupt").exists());
        let failed = write(dir.path(), "snap", [Err(StorageError::Locked(path.clone()))]);
        assert!(failed.is_err(), "an error while writing installs nothing");
        assert!(read(&dir, "snap").unwrap().is_none());
        let _ = fs::remove_dir_all(&path);
    }
}
