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
//! and the log writes through the page cache and syncs as before.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::OFlag;

/// The unit of direct writes: offsets, lengths and memory are multiples of it (4 KiB covers
/// devices of 512-byte and of 4 KiB logical blocks).
pub const BLOCK_BYTES: usize = 4096;

/// A segment written with direct, synchronous writes (see the module docs).
#[derive(Debug)]
pub struct DirectLog {
    file: File,
    /// Bytes of the segment that are on disk (where the next write's bytes go).
    written: u64,
    /// The bytes of the block holding `written`, from the block's start up to `written`.
    tail: Vec<u8>,
    /// Memory for writes, over-allocated by a block so that an aligned window fits.
    buf: Vec<u8>,
}

/// Where the block holding byte `offset` starts.
fn block_start(offset: u64) -> u64 {
    offset - offset % BLOCK_BYTES as u64
}

impl DirectLog {
    /// Opens `path`, whose first `written` bytes are on disk and end with `tail` (the bytes
    /// from the start of the block holding `written`), for direct writes from `written` on.
    /// `None` if the file system refuses `O_DIRECT`.
    pub fn open(path: &Path, written: u64, tail: &[u8]) -> io::Result<Option<DirectLog>> {
        debug_assert_eq!(tail.len() as u64, written - block_start(written), "the tail is the last block's bytes");
        let flags = OFlag::O_DIRECT.bits() | OFlag::O_DSYNC.bits();
        match OpenOptions::new().write(true).custom_flags(flags).open(path) {
            Ok(file) => Ok(Some(DirectLog { file, written, tail: tail.to_vec(), buf: Vec::new() })),
            Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The tail of `bytes` that a [`DirectLog`] over a segment holding them keeps: the bytes
    /// of the block holding their end.
    pub fn tail_of(bytes: &[u8]) -> &[u8] {
        let start = block_start(bytes.len() as u64) as usize;
        bytes.get(start..).unwrap_or_default()
    }

    /// Writes `bytes` after everything written so far; they are durable when this returns.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let data_len = self.tail.len() + bytes.len();
        let padded = data_len.div_ceil(BLOCK_BYTES) * BLOCK_BYTES;
        if self.buf.len() < padded + BLOCK_BYTES {
            self.buf.resize(padded + BLOCK_BYTES, 0);
        }
        let skip = self.buf.as_ptr().align_offset(BLOCK_BYTES);
        let window = self.buf.get_mut(skip..skip + padded).ok_or_else(|| io::Error::other("direct write buffer"))?;
        let (old, rest) = window.split_at_mut(self.tail.len());
        old.copy_from_slice(&self.tail);
        let (new, zeros) = rest.split_at_mut(bytes.len());
        new.copy_from_slice(bytes);
        zeros.fill(0);
        let start = self.written - self.tail.len() as u64;
        self.file.write_all_at(window, start)?;
        self.written += bytes.len() as u64;
        let keep = data_len - data_len % BLOCK_BYTES;
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

    #[test]
    fn writes_of_any_length_land_where_buffered_writes_would() {
        // /var/tmp is kept on disk, where O_DIRECT works (a tmpfs /tmp would only show the
        // fallback).
        let base = Path::new("/var/tmp");
        let base = if base.is_dir() { base.to_path_buf() } else { std::env::temp_dir() };
        let dir = base.join(format!("fleet-direct-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("segment");
        std::fs::write(&path, vec![0u8; 512 << 10]).unwrap();
        let head = vec![9u8; 5000];
        std::fs::File::options().write(true).open(&path).unwrap().write_all_at(&head, 0).unwrap();
        let Some(mut log) = DirectLog::open(&path, head.len() as u64, DirectLog::tail_of(&head)).unwrap() else {
            eprintln!("no O_DIRECT on this file system: nothing to test");
            return;
        };
        let mut expected = head.clone();
        let mut seed = 7u64;
        for round in 0..60 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            // Lengths around and across block boundaries, and one of several blocks.
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
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(&on_disk[..expected.len()], &expected[..], "every byte where it was written");
        assert!(on_disk[expected.len()..].iter().all(|&b| b == 0), "zeros after the end");
        assert_eq!(on_disk.len(), 512 << 10, "the segment did not grow");
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
