//! Log writes that are durable when they return: a preallocated segment opened with
//! `O_DIRECT | O_DSYNC`, written in whole aligned blocks.
//!
//! Why: `pwrite` into the page cache and then `fdatasync` is two trips through the block
//! layer (write-back, then a cache flush); a direct write with `O_DSYNC` is one (a write the
//! device makes durable, FUA where it has it). On these machines (ext4 on virtio, three
//! processes syncing at once, as three replicas do) 155 µs against 231 µs at the median for
//! a 3,000-byte record (docs/performance.md). Only zero-filled segments are written this way:
//! their blocks are allocated, so a write changes no file metadata.
//!
//! Direct IO moves whole blocks from aligned memory to aligned offsets. The log keeps the
//! bytes of its last, partly filled block, and each write starts there: that block again,
//! then the new bytes, then zeros up to the next block boundary (the segment is zeros there
//! already). A file system without `O_DIRECT` (tmpfs) gets `None` from [`DirectLog::open`],
//! and the log writes through the page cache and syncs as before. A device that refuses
//! the writes themselves (`EINVAL`: logical blocks larger than 4 KiB) gets the same from
//! then on: the bytes go through the page cache and are synced, nothing lost.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;

/// The unit of direct writes: offsets, lengths and memory are multiples of it (4 KiB covers
/// devices of 512-byte and of 4 KiB logical blocks).
pub const BLOCK_BYTES: usize = 4096;

/// A segment written with direct, synchronous writes (see the module docs).
#[derive(Debug)]
pub struct DirectLog {
    file: File,
    path: PathBuf,
    /// The alignment of offsets, lengths and memory ([`BLOCK_BYTES`]).
    block: usize,
    /// The file through the page cache, once direct writes were refused.
    fallback: Option<File>,
    /// Bytes of the segment that are on disk (where the next write's bytes go).
    written: u64,
    /// The bytes of the block holding `written`, from the block's start up to `written`.
    tail: Vec<u8>,
    /// Memory for writes, over-allocated by a block so that an aligned window fits.
    buf: Vec<u8>,
}

/// Where the block of `block` bytes holding byte `offset` starts.
fn block_start(offset: u64, block: usize) -> u64 {
    offset - offset % block as u64
}

impl DirectLog {
    /// Opens `path`, whose first `written` bytes are on disk and end with `tail` (the bytes
    /// from the start of the block holding `written`), for direct writes from `written` on.
    /// `None` if the file system refuses `O_DIRECT`.
    pub fn open(path: &Path, written: u64, tail: &[u8]) -> io::Result<Option<DirectLog>> {
        Self::open_aligned(path, written, tail, BLOCK_BYTES)
    }

    /// [`DirectLog::open`] with blocks of `block` bytes (a power of two).
    fn open_aligned(path: &Path, written: u64, tail: &[u8], block: usize) -> io::Result<Option<DirectLog>> {
        debug_assert_eq!(
            tail.len() as u64,
            written - block_start(written, block),
            "the tail is the last block's bytes"
        );
        let flags = OFlag::O_DIRECT.bits() | OFlag::O_DSYNC.bits();
        match OpenOptions::new().write(true).custom_flags(flags).open(path) {
            Ok(file) => Ok(Some(DirectLog {
                file,
                path: path.to_path_buf(),
                block,
                fallback: None,
                written,
                tail: tail.to_vec(),
                buf: Vec::new(),
            })),
            Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The tail of `bytes` that a [`DirectLog`] over a segment holding them keeps: the bytes
    /// of the block holding their end.
    pub fn tail_of(bytes: &[u8]) -> &[u8] {
        let start = block_start(bytes.len() as u64, BLOCK_BYTES) as usize;
        bytes.get(start..).unwrap_or_default()
    }

    /// Writes `bytes` after everything written so far; they are durable when this returns.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if let Some(file) = &self.fallback {
            file.write_all_at(bytes, self.written)?;
            file.sync_data()?;
            self.written += bytes.len() as u64;
            return Ok(());
        }
        match self.write_direct(bytes) {
            Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {
                tracing::warn!(
                    "{}: the device refuses direct writes of {} bytes ({e}); writing through the page cache and syncing",
                    self.path.display(),
                    self.block
                );
                self.fallback = Some(OpenOptions::new().write(true).open(&self.path)?);
                self.write(bytes)
            }
            other => other,
        }
    }

    /// True while writes go directly to the device (not after a refusal).
    pub fn is_direct(&self) -> bool {
        self.fallback.is_none()
    }

    fn write_direct(&mut self, bytes: &[u8]) -> io::Result<()> {
        let block = self.block;
        let data_len = self.tail.len() + bytes.len();
        let padded = data_len.div_ceil(block) * block;
        if self.buf.len() < padded + block {
            self.buf.resize(padded + block, 0);
        }
        let skip = self.buf.as_ptr().align_offset(block);
        let window = self.buf.get_mut(skip..skip + padded).ok_or_else(|| io::Error::other("direct write buffer"))?;
        let (old, rest) = window.split_at_mut(self.tail.len());
        old.copy_from_slice(&self.tail);
        let (new, zeros) = rest.split_at_mut(bytes.len());
        new.copy_from_slice(bytes);
        zeros.fill(0);
        let start = self.written - self.tail.len() as u64;
        self.file.write_all_at(window, start)?;
        self.written += bytes.len() as u64;
        let keep = data_len - data_len % block;
        self.tail.clear();
        self.tail.extend_from_slice(window.get(keep..data_len).unwrap_or_default());
        Ok(())
    }

    /// Bytes of the segment on disk.
    pub fn written(&self) -> u64 {
        self.written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zero-filled 512 KiB segment under /var/tmp (kept on disk, where O_DIRECT works; a
    /// tmpfs /tmp would only show the fallback), its first 5,000 bytes written; opened
    /// with blocks of `block` bytes. `None` without O_DIRECT.
    fn segment(tag: &str, block: usize) -> Option<(DirectLog, PathBuf, Vec<u8>)> {
        let base = Path::new("/var/tmp");
        let base = if base.is_dir() { base.to_path_buf() } else { std::env::temp_dir() };
        let dir = base.join(format!("fleet-direct-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("segment");
        std::fs::write(&path, vec![0u8; 512 << 10]).unwrap();
        let head = vec![9u8; 5000];
        std::fs::File::options().write(true).open(&path).unwrap().write_all_at(&head, 0).unwrap();
        let tail = &head[block_start(head.len() as u64, block) as usize..];
        let Some(log) = DirectLog::open_aligned(&path, head.len() as u64, tail, block).unwrap() else {
            eprintln!("no O_DIRECT on this file system: nothing to test");
            let _ = std::fs::remove_dir_all(&dir);
            return None;
        };
        Some((log, dir, head))
    }

    /// Writes 60 records of lengths around and across block boundaries; checks that every
    /// byte landed where a buffered write would have put it.
    fn write_and_check(log: &mut DirectLog, dir: &Path, head: &[u8]) {
        let mut expected = head.to_vec();
        let mut seed = 7u64;
        for round in 0..60 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let len = match round % 4 {
                0 => 1 + (seed >> 33) as usize % 40,
                1 => BLOCK_BYTES - expected.len() % BLOCK_BYTES,
                2 => BLOCK_BYTES + 1,
                _ => (seed >> 40) as usize % (3 * BLOCK_BYTES),
            };
            let bytes: Vec<u8> = (0..len).map(|i| (round * 31 + i) as u8 | 1).collect();
            log.write(&bytes).unwrap();
            expected.extend_from_slice(&bytes);
            assert_eq!(log.written(), expected.len() as u64);
        }
        let on_disk = std::fs::read(dir.join("segment")).unwrap();
        assert_eq!(&on_disk[..expected.len()], &expected[..], "every byte where it was written");
        assert!(on_disk[expected.len()..].iter().all(|&b| b == 0), "zeros after the end");
        assert_eq!(on_disk.len(), 512 << 10, "the segment did not grow");
    }

    #[test]
    fn writes_of_any_length_land_where_buffered_writes_would() {
        let Some((mut log, dir, head)) = segment("aligned", BLOCK_BYTES) else { return };
        write_and_check(&mut log, &dir, &head);
        assert!(log.is_direct(), "4 KiB blocks suit this disk");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_device_that_refuses_the_alignment_gets_buffered_synced_writes_instead() {
        // 256-byte blocks: below any disk's logical block, so some write is refused (EINVAL)
        // and every byte must still land.
        let Some((mut log, dir, head)) = segment("refused", 256) else { return };
        write_and_check(&mut log, &dir, &head);
        assert!(!log.is_direct(), "a write at a 256-byte boundary was refused");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_tail_is_the_last_blocks_bytes() {
        assert!(DirectLog::tail_of(&[]).is_empty());
        assert_eq!(DirectLog::tail_of(&[1u8; 10]).len(), 10);
        assert!(DirectLog::tail_of(&[1u8; BLOCK_BYTES]).is_empty());
        assert_eq!(DirectLog::tail_of(&[1u8; BLOCK_BYTES + 3]).len(), 3);
    }
}
