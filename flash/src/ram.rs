//! [`RamFlash`]: NOR flash simulated in a byte slice, that can lose power mid-operation.
//!
//! It behaves as NOR flash does: an erase sets a whole page to `0xFF`; a write can only
//! clear bits (the stored byte becomes `old & new`, so writing a word twice is allowed, as
//! [`MultiwriteNorFlash`] promises). Host tests use it to cut power at every write and erase
//! boundary ([`RamFlash::cut_after`]); a firmware without a flash controller (the emulated
//! MPS2 board) uses it over a memory region that survives a reset. Cuts are compiled in only
//! with `CUTS = true` (a firmware carries none of their code).
//!
//! A cut tears the operation it lands on and fails it and everything after:
//! * a torn **write** stores a prefix of its words, and in the next word only some of the
//!   bits it would have cleared;
//! * a torn **erase** leaves the page half-erased: a prefix reads `0xFF`, the rest reads the
//!   old bytes with random bits set (cells part-way to erased).

use embedded_storage_async::nor_flash::{
    ErrorType, MultiwriteNorFlash, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// The write granule, in bytes (a word, as on most MCU flash controllers).
pub const RAM_FLASH_WRITE_BYTES: usize = 4;

/// Why a [`RamFlash`] operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RamFlashError {
    /// The range is outside the flash.
    OutOfBounds,
    /// The offset or length is not a multiple of the write or erase size.
    NotAligned,
    /// The power was cut ([`RamFlash::cut_after`]): nothing more is written or read.
    PowerCut,
}

impl NorFlashError for RamFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            RamFlashError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            RamFlashError::NotAligned => NorFlashErrorKind::NotAligned,
            RamFlashError::PowerCut => NorFlashErrorKind::Other,
        }
    }
}

/// NOR flash in `bytes`, with `PAGE`-byte erase pages (the slice's length must be a
/// multiple of `PAGE`; the tail beyond the last whole page is not used). With `CUTS`, a
/// power cut can be planned ([`RamFlash::cut_after`]).
pub struct RamFlash<'a, const PAGE: usize, const CUTS: bool = false> {
    bytes: &'a mut [u8],
    /// Writes and erases done so far.
    ops: u64,
    /// Erases done so far.
    erases: u64,
    /// The operation (counted from 0) that the power cut tears, if one is planned.
    cut_at: Option<u64>,
    /// The power is off: every operation fails.
    dead: bool,
    /// xorshift64 state for torn contents.
    noise: u64,
}

impl<const PAGE: usize> RamFlash<'_, PAGE, true> {
    /// Plans a power cut: the write or erase after `ops` more of them is torn, with
    /// contents drawn from `seed`, and every operation from then on fails with
    /// [`RamFlashError::PowerCut`].
    pub fn cut_after(&mut self, ops: u64, seed: u64) {
        self.cut_at = Some(self.ops.saturating_add(ops));
        self.noise = seed | 1;
    }
}

impl<'a, const PAGE: usize, const CUTS: bool> RamFlash<'a, PAGE, CUTS> {
    /// Flash over `bytes`, whose current contents are the flash's (all `0xFF` is erased).
    pub fn new(bytes: &'a mut [u8]) -> Self {
        RamFlash { bytes, ops: 0, erases: 0, cut_at: None, dead: false, noise: 0x9e37_79b9_7f4a_7c15 }
    }

    /// Writes and erases done so far (each is one boundary a cut can land on).
    pub fn ops(&self) -> u64 {
        self.ops
    }

    /// Erases done so far.
    pub fn erases(&self) -> u64 {
        self.erases
    }

    /// True once a planned cut has happened.
    pub fn is_cut(&self) -> bool {
        self.dead
    }

    /// The flash contents.
    pub fn bytes(&self) -> &[u8] {
        self.bytes
    }

    /// The memory back (to open it again, as after a reset).
    pub fn into_bytes(self) -> &'a mut [u8] {
        self.bytes
    }

    fn pages_len(&self) -> usize {
        self.bytes.len() / PAGE * PAGE
    }

    fn random(&mut self) -> u64 {
        let mut x = self.noise;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.noise = x;
        x
    }

    /// Counts one write or erase; true if the power is cut during it.
    fn begin_op(&mut self) -> Result<bool, RamFlashError> {
        if CUTS && self.dead {
            return Err(RamFlashError::PowerCut);
        }
        let torn = CUTS && self.cut_at == Some(self.ops);
        self.ops += 1;
        Ok(torn)
    }

    fn range(&self, offset: u32, len: usize) -> Result<core::ops::Range<usize>, RamFlashError> {
        let start = usize::try_from(offset).map_err(|_| RamFlashError::OutOfBounds)?;
        let end = start.checked_add(len).ok_or(RamFlashError::OutOfBounds)?;
        match end <= self.pages_len() {
            true => Ok(start..end),
            false => Err(RamFlashError::OutOfBounds),
        }
    }
}

impl<const PAGE: usize, const CUTS: bool> ErrorType for RamFlash<'_, PAGE, CUTS> {
    type Error = RamFlashError;
}

impl<const PAGE: usize, const CUTS: bool> ReadNorFlash for RamFlash<'_, PAGE, CUTS> {
    const READ_SIZE: usize = 1;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        if CUTS && self.dead {
            return Err(RamFlashError::PowerCut);
        }
        let range = self.range(offset, bytes.len())?;
        bytes.copy_from_slice(&self.bytes[range]);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.pages_len()
    }
}

impl<const PAGE: usize, const CUTS: bool> NorFlash for RamFlash<'_, PAGE, CUTS> {
    const WRITE_SIZE: usize = RAM_FLASH_WRITE_BYTES;
    const ERASE_SIZE: usize = PAGE;

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        let len = to.checked_sub(from).ok_or(RamFlashError::OutOfBounds)? as usize;
        let range = self.range(from, len)?;
        if !range.start.is_multiple_of(PAGE) || !len.is_multiple_of(PAGE) {
            return Err(RamFlashError::NotAligned);
        }
        self.erases += 1;
        if self.begin_op()? {
            let split = range.start + (self.random() as usize) % (len + 1);
            self.bytes[range.start..split].fill(0xFF);
            for i in split..range.end {
                let bits = self.random() as u8;
                self.bytes[i] |= bits;
            }
            self.dead = true;
            return Err(RamFlashError::PowerCut);
        }
        self.bytes[range].fill(0xFF);
        Ok(())
    }

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        let range = self.range(offset, bytes.len())?;
        if !range.start.is_multiple_of(RAM_FLASH_WRITE_BYTES) || !bytes.len().is_multiple_of(RAM_FLASH_WRITE_BYTES) {
            return Err(RamFlashError::NotAligned);
        }
        if self.begin_op()? {
            let words = bytes.len() / RAM_FLASH_WRITE_BYTES;
            let done = (self.random() as usize) % (words + 1) * RAM_FLASH_WRITE_BYTES;
            for (i, b) in bytes.iter().enumerate().take(done) {
                self.bytes[range.start + i] &= *b;
            }
            // The word being written when the power went: some of its cleared bits land.
            for (i, b) in bytes.iter().enumerate().skip(done).take(RAM_FLASH_WRITE_BYTES) {
                let landed = !*b & self.random() as u8;
                self.bytes[range.start + i] &= !landed;
            }
            self.dead = true;
            return Err(RamFlashError::PowerCut);
        }
        for (stored, b) in self.bytes[range].iter_mut().zip(bytes) {
            *stored &= *b;
        }
        Ok(())
    }
}

impl<const PAGE: usize, const CUTS: bool> MultiwriteNorFlash for RamFlash<'_, PAGE, CUTS> {}

#[cfg(test)]
mod tests {
    use super::*;
    use embassy_futures::block_on;

    #[test]
    fn writes_only_clear_bits_and_erases_set_them() {
        let mut mem = [0xFFu8; 64];
        let mut f = RamFlash::<'_, 32>::new(&mut mem);
        block_on(f.write(0, &[0xF0, 0x0F, 0xAA, 0x55])).unwrap();
        block_on(f.write(0, &[0x3C, 0xFF, 0xFF, 0xFF])).unwrap();
        let mut out = [0u8; 4];
        block_on(f.read(0, &mut out)).unwrap();
        assert_eq!(out, [0x30, 0x0F, 0xAA, 0x55]);
        assert_eq!(block_on(f.write(2, &[0; 4])), Err(RamFlashError::NotAligned));
        assert_eq!(block_on(f.erase(0, 16)), Err(RamFlashError::NotAligned));
        assert_eq!(block_on(f.write(64, &[0; 4])), Err(RamFlashError::OutOfBounds));
        block_on(f.erase(0, 32)).unwrap();
        block_on(f.read(0, &mut out)).unwrap();
        assert_eq!(out, [0xFF; 4]);
        assert_eq!(f.ops(), 3);
    }

    #[test]
    fn a_cut_tears_one_operation_and_stops_everything_after() {
        let mut mem = [0xFFu8; 64];
        let mut f = RamFlash::<'_, 32, true>::new(&mut mem);
        f.cut_after(1, 7);
        block_on(f.write(0, &[0; 8])).unwrap();
        assert_eq!(block_on(f.write(8, &[0; 16])), Err(RamFlashError::PowerCut));
        assert!(f.is_cut());
        let mut out = [0u8; 4];
        assert_eq!(block_on(f.read(0, &mut out)), Err(RamFlashError::PowerCut));
        assert_eq!(block_on(f.erase(0, 32)), Err(RamFlashError::PowerCut));
        // What landed before the cut stays; the torn write landed at most its 16 bytes.
        assert_eq!(&mem[..8], &[0; 8]);
        assert!(mem[24..].iter().all(|b| *b == 0xFF));
    }
}
