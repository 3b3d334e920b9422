//! The replica's storage: four 16 KiB sectors of the STM32F429ZI's own flash, as the
//! [`MultiwriteNorFlash`] that `fleet-flash`'s `FlashLog` needs.
//!
//! The region is embassy-stm32's `Bank2Region1`: sectors 12-15, 0x0810_0000..0x0811_0000
//! (`memory.x` keeps it out of the linker's map, so no code or data is ever placed there).
//! - **Bank 2** because the F42x/F43x flash reads one bank while it programs or erases the
//!   other (read-while-write, RM0090 "Erase and program operations"; the 2 MiB part is
//!   always dual-bank), so the code running
//!   from bank 1 does not stall while a sector of the log is erased: the network task goes on
//!   receiving.
//! - **16 KiB sectors** because a sector is erased inside a step's persist, and the run loop
//!   waits for it: a 16 KiB sector erases in 0.4 s typically, 0.8 s at most, at x8
//!   parallelism (datasheet DS9405, "Flash memory programming"; embassy-stm32 leaves
//!   `FLASH_CR.PSIZE` at its reset value, x8, for an erase), under the 1 s view timeout. A
//!   128 KiB sector takes 2-4 s at x8: a leader would be voted out on every page turn.

use embassy_stm32::flash::{Async, Bank2Region1, Error};
use embedded_storage_async::nor_flash::{ErrorType, MultiwriteNorFlash, NorFlash, ReadNorFlash};

/// Bytes of the region: sectors 12-15 of bank 2.
pub const STORAGE_BYTES: u32 = 64 * 1024;
/// The region's erase unit: one 16 KiB sector (the log's page).
pub const SECTOR_BYTES: usize = 16 * 1024;

/// Bank 2's first four sectors, through embassy-stm32's async flash driver.
///
/// # Why `MultiwriteNorFlash` is sound on the STM32F4
///
/// `sequential-storage` pops a queue item by programming its CRC word a second time, to all
/// zeroes; `MultiwriteNorFlash` promises that a word may be programmed again and the flash
/// then holds the AND of the two values (bits only go from 1 to 0), and that a cut during
/// that write leaves the bits being cleared undefined and every other bit as it was.
/// - The F4's main flash has no ECC (RM0090, "Embedded Flash memory interface": no ECC
///   bits and no ECC error flag; unlike the STM32L4/G4/H7, where a second write to a word
///   fails or breaks its ECC). Programming drives cells from 1 to 0 and leaves a cell at 1
///   alone, so a second program of a word can only clear more bits.
/// - The F4's flash controller does not refuse it: `FLASH_SR` has no "address not erased"
///   error (the F1's `PGERR`); its error flags are operation, write protection, alignment,
///   parallelism, sequence and (F42x/F43x) read protection, none of which a rewrite raises.
/// - ST's own EEPROM emulation for the STM32F4 (AN3969) relies on it: a page's status
///   half-word goes from ERASED (0xFFFF) to RECEIVE_DATA (0xEEEE) to VALID_PAGE (0x0000) by
///   programming the same half-word again.
/// - embassy-stm32 programs 32-bit words one at a time (`WRITE_SIZE` = 4, `PSIZE` x32), the
///   word `sequential-storage` rewrites, so a torn write tears one word at most.
pub struct F4Storage(Bank2Region1<'static, Async>);

impl F4Storage {
    /// The storage region, from embassy-stm32's flash layout.
    pub fn new(region: Bank2Region1<'static, Async>) -> F4Storage {
        F4Storage(region)
    }
}

impl ErrorType for F4Storage {
    type Error = Error;
}

impl ReadNorFlash for F4Storage {
    const READ_SIZE: usize = <Bank2Region1<'static, Async> as ReadNorFlash>::READ_SIZE;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Error> {
        ReadNorFlash::read(&mut self.0, offset, bytes).await
    }

    fn capacity(&self) -> usize {
        ReadNorFlash::capacity(&self.0)
    }
}

impl NorFlash for F4Storage {
    const WRITE_SIZE: usize = <Bank2Region1<'static, Async> as NorFlash>::WRITE_SIZE;
    const ERASE_SIZE: usize = <Bank2Region1<'static, Async> as NorFlash>::ERASE_SIZE;

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Error> {
        NorFlash::write(&mut self.0, offset, bytes).await
    }

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), Error> {
        NorFlash::erase(&mut self.0, from, to).await
    }
}

/// Sound on the STM32F4: see [`F4Storage`].
impl MultiwriteNorFlash for F4Storage {}

const _: () = assert!(<F4Storage as NorFlash>::ERASE_SIZE == SECTOR_BYTES, "bank 2 region 1 has 16 KiB sectors");
const _: () = assert!(STORAGE_BYTES as usize == 4 * SECTOR_BYTES, "sectors 12-15");
