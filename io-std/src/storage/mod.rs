//! Files that hold durable state.
//!
//! - [`wal`]: a checksummed, length-framed write-ahead log in a locked data directory that
//!   names its owner, group-committed with one `fdatasync`, compacted by atomic replace.

pub mod wal;
