//! # fleet-flash
//!
//! Fleet's durable state on NOR flash, for firmware: `no_std`, no heap, every buffer the
//! caller's.
//!
//! - [`FlashLog`]: the engine's durable records in a power-fail-safe queue
//!   (`sequential-storage` over `embedded-storage-async`'s [`MultiwriteNorFlash`]), compacted
//!   by image groups; recovery replays the latest complete image and the log after it;
//! - [`RslFlash`]: an RSL replica's records (acceptor state, executed batches, snapshots)
//!   persisted after every step, and the replica recovered from them;
//! - [`KvFlash`]: the same for a KV host (logged inputs and images);
//! - [`RamFlash`]: NOR flash simulated in a byte slice that can lose power in the middle of
//!   any write or erase, for host tests and for boards without a flash controller.
//!
//! The host a persister works on is reached through [`HostCell`] (a `RefCell`, or an
//! embassy node's mutex), one synchronous call at a time, never across an `.await`.
//!
//! [`MultiwriteNorFlash`]: embedded_storage_async::nor_flash::MultiwriteNorFlash
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod kv;
mod log;
mod ram;
mod rsl;

pub use kv::{KvFlash, KvRecoverFailure};
pub use log::{FlashLog, FlashLogError, Found, Kind, FORMAT, FRAME_BYTES};
pub use ram::{RamFlash, RamFlashError, RAM_FLASH_WRITE_BYTES};
pub use rsl::{RecoverFailure, RslFlash};

use core::cell::RefCell;

use fleet_engine::Endpoint;

/// Somewhere a host lives that a persister can reach between steps.
pub trait HostCell<H> {
    /// Runs `f` on the host. Never called from inside `f`.
    fn with_host<R>(&self, f: impl FnOnce(&mut H) -> R) -> R;
}

impl<H> HostCell<H> for RefCell<H> {
    fn with_host<R>(&self, f: impl FnOnce(&mut H) -> R) -> R {
        f(&mut self.borrow_mut())
    }
}

/// The input of the step that just ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input<'a> {
    /// A datagram from `from`.
    Datagram {
        /// Its sender.
        from: Endpoint,
        /// Its bytes.
        datagram: &'a [u8],
    },
    /// A tick.
    Tick,
}

/// Why a persister stopped: its host must not speak again (its next datagram could reveal
/// state a reset would lose).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Halt(pub &'static str);

impl core::fmt::Display for Halt {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.0)
    }
}

impl<E> From<FlashLogError<E>> for Halt {
    fn from(e: FlashLogError<E>) -> Self {
        Halt(match e {
            FlashLogError::Flash(_) => "the flash failed",
            FlashLogError::Full => "the flash region is full",
            FlashLogError::TooBig => "a record is larger than a flash page holds",
            FlashLogError::Damaged { .. } => "the flash log is damaged",
            FlashLogError::WrongFormat { .. } => "the flash log was written in another storage format",
            FlashLogError::Malformed { .. } => "the flash log holds an item it did not write",
        })
    }
}
