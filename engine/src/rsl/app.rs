//! The replicated application: what an RSL cluster agrees to run, in order.
//!
//! Every replica applies the same requests in the same order, so [`App::apply`] must be
//! deterministic: the same state and request give the same new state and reply, on every
//! machine. State transfer moves snapshots in datagram-sized chunks into a separate
//! staging area, and installs only a complete, digest-checked snapshot; the live state is
//! never half-overwritten.

use core::fmt;

/// Why a staged snapshot was refused. The live state is untouched when this is returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SnapshotError {
    /// Bytes beyond the largest snapshot this application can hold.
    OutOfRange,
    /// The bytes do not describe a valid state (bad lengths, unsorted keys, ...).
    Corrupt,
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::OutOfRange => f.write_str("snapshot larger than the application can hold"),
            SnapshotError::Corrupt => f.write_str("snapshot bytes do not describe a valid state"),
        }
    }
}

/// A deterministic state machine replicated by RSL.
///
/// Besides applying requests, an application hands out **point-in-time snapshots**
/// ([`App::snapshot`]): a value that keeps describing the state of one moment while the live
/// state moves on. The replica reads a snapshot in chunks to send it to a lagging replica and
/// to let a durable binding write it to storage, both over many steps; taking one must be
/// cheap (O(1) with a persistent data structure, a copy for small states). The snapshot's
/// bytes must be a function of the state alone (sorted keys, no addresses, no hash-map
/// order): replicas at the same operation send interchangeable chunks.
pub trait App {
    /// Where chunks of an incoming snapshot are assembled before installation.
    type Staging;
    /// A point-in-time copy of the state, read after the live state has moved on.
    type Snapshot;

    /// Applies one request and writes the reply into `reply` (its length is the replica's
    /// reply capacity); returns the reply length. Must be deterministic and must not fail:
    /// a request the application cannot accept gets an error reply of its own encoding.
    fn apply(&mut self, request: &[u8], reply: &mut [u8]) -> usize;

    /// True if `request` is a **query**: applying it would change nothing, so the leader
    /// may answer it from its state with [`App::query`] instead of proposing it (see
    /// [`crate::rsl::reads`]). Decided from the bytes alone. The default, false, sends
    /// every request through the log.
    fn is_query(_request: &[u8]) -> bool {
        false
    }

    /// Answers a query (a request for which [`App::is_query`] is true) from the current
    /// state into `reply`; returns the reply length. Must give the reply [`App::apply`]
    /// would give for the same request in this state. Called only for queries; the default
    /// answers nothing (an empty reply), which is right only for an application without
    /// queries.
    fn query(&self, _request: &[u8], _reply: &mut [u8]) -> usize {
        0
    }

    /// A snapshot value to take snapshots into (its content is replaced by [`App::snapshot`]).
    fn new_snapshot() -> Self::Snapshot;

    /// Takes a snapshot of the current state into `into`, replacing what it held.
    fn snapshot(&self, into: &mut Self::Snapshot);

    /// Length in bytes of a snapshot's encoding.
    fn snapshot_len(snapshot: &Self::Snapshot) -> u64;

    /// Copies the snapshot's bytes starting at `offset` into `out`; returns how many were
    /// copied (fewer than `out.len()` only at the end of the snapshot). Reads usually come
    /// in increasing offsets; an application may make those cheapest.
    fn snapshot_read(snapshot: &Self::Snapshot, offset: u64, out: &mut [u8]) -> usize;

    /// An empty staging area.
    fn new_staging() -> Self::Staging;

    /// Writes received snapshot bytes at `offset` into the staging area. Bytes arrive in
    /// order from offset 0; a staging area is used for one snapshot, then replaced.
    fn stage(staging: &mut Self::Staging, offset: u64, bytes: &[u8]) -> Result<(), SnapshotError>;

    /// Validates the staged snapshot of `len` bytes and, only if it is valid, replaces the
    /// live state with it (the staging area may be emptied).
    fn install(&mut self, staging: &mut Self::Staging, len: u64) -> Result<(), SnapshotError>;
}

/// FNV-1a over a stream of byte slices (tests: a stable `Hash` of model-checker states).
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Fnv64(pub(crate) u64);

#[cfg(test)]
impl Fnv64 {
    pub(crate) const fn new() -> Fnv64 {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    pub(crate) const fn finish(self) -> u64 {
        self.0
    }
}

/// `value`'s `Hash` through FNV-1a: tests that check what model-checker state identity
/// (`Eq` + `Hash`) sees.
#[cfg(test)]
pub(crate) fn hash_of<T: core::hash::Hash>(value: &T) -> u64 {
    struct Hasher(Fnv64);
    impl core::hash::Hasher for Hasher {
        fn finish(&self) -> u64 {
            self.0.finish()
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.write(bytes);
        }
    }
    let mut h = Hasher(Fnv64::new());
    value.hash(&mut h);
    h.0.finish()
}

/// Copies the part of a virtual byte segment that falls in the window `[offset, offset+out.len())`.
///
/// The segment occupies `[seg_start, seg_start + seg_len)` of a snapshot and holds `data`
/// followed by zero padding. Returns the bytes written into `out` at their window position.
pub(crate) fn copy_segment(data: &[u8], seg_len: u64, seg_start: u64, offset: u64, out: &mut [u8]) {
    let win_end = offset.saturating_add(out.len() as u64);
    let from = seg_start.max(offset);
    let to = (seg_start + seg_len).min(win_end);
    let mut pos = from;
    while pos < to {
        let in_seg = (pos - seg_start) as usize;
        out[(pos - offset) as usize] = data.get(in_seg).copied().unwrap_or(0);
        pos += 1;
    }
}
