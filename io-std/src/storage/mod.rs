//! Files that hold durable state, shared by every durable host.
//!
//! - [`dir`]: a data directory (lock, owner identity, format version) and [`StorageError`];
//! - [`frame`]: checksummed frames, telling a torn tail from corruption;
//! - [`wal`]: a segmented write-ahead log with group commit;
//! - [`prepare`]: log segments zero-filled ahead of use, so syncs are data flushes;
//! - [`direct`]: writes to such a segment that are durable when they return;
//! - [`syncer`]: where and when the log's syncs (or direct writes) run;
//! - [`snapshot_file`]: the latest snapshot, replaced atomically.

pub mod dir;
pub mod direct;
pub mod frame;
pub mod prepare;
pub mod snapshot_file;
pub mod syncer;
pub mod wal;

pub use dir::{DataDir, StorageError};

/// The pause after each synced step of a background write (a segment zero-filled ahead, a
/// snapshot file): log writes queued on the device behind one step get their turn.
pub(crate) const BACKGROUND_STEP_PAUSE: std::time::Duration = std::time::Duration::from_millis(2);
