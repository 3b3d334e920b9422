//! The parser of an incoming [`KvApp`](super::KvApp) snapshot: records parsed straight
//! into pairs as the bytes arrive in order (no carry buffer), checked whole before the map
//! takes them.

use super::Pair;
use crate::rsl::app::SnapshotError;

/// Where the parser of an incoming snapshot is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Field {
    /// The count's byte `.0`.
    Count(u8),
    /// The key length's byte `.0` of the next record.
    KeyLen(u8),
    /// `.1` of `.0` key bytes read.
    Key(u16, u16),
    /// The value length's byte `.0`.
    ValueLen(u8),
    /// `.1` of `.0` value bytes read.
    Value(u16, u16),
}

/// Staging area for an incoming [`KvApp`](super::KvApp) snapshot: the records parsed so far.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KvStaging<const K: usize, const KB: usize, const VB: usize> {
    count: [u8; 4],
    /// The pairs parsed so far; the map takes them when the snapshot is whole.
    pub(super) pairs: heapless::Vec<Pair<KB, VB>, K>,
    field: Field,
    len_bytes: [u8; 2],
    received: u64,
    corrupt: bool,
}

impl<const K: usize, const KB: usize, const VB: usize> KvStaging<K, KB, VB> {
    /// Nothing received yet.
    pub(super) fn new() -> Self {
        KvStaging {
            count: [0; 4],
            pairs: heapless::Vec::new(),
            field: Field::Count(0),
            len_bytes: [0; 2],
            received: 0,
            corrupt: false,
        }
    }

    /// Parses `bytes`, which start at `offset` of the snapshot (the next byte expected).
    pub(super) fn receive(&mut self, offset: u64, bytes: &[u8]) -> Result<(), SnapshotError> {
        if offset != self.received {
            return Err(SnapshotError::OutOfRange);
        }
        for &b in bytes {
            if self.corrupt || !self.push(b) {
                self.corrupt = true;
                return Err(SnapshotError::Corrupt);
            }
        }
        self.received += bytes.len() as u64;
        Ok(())
    }

    /// True if the `len` bytes received are a whole snapshot: every record complete, as
    /// many as the count says, keys strictly ascending.
    pub(super) fn is_whole(&self, len: u64) -> bool {
        self.received == len
            && !self.corrupt
            && self.field == Field::KeyLen(0)
            && self.pairs.len() == self.count() as usize
            && self.pairs.windows(2).all(|w| w[0].key.as_slice() < w[1].key.as_slice())
    }

    fn count(&self) -> u32 {
        u32::from_le_bytes(self.count)
    }

    /// Parses one byte; false when the bytes cannot be a snapshot of this map.
    fn push(&mut self, b: u8) -> bool {
        self.field = match self.field {
            Field::Count(i) => {
                self.count[usize::from(i)] = b;
                match i {
                    3 if self.count() as usize > K => return false,
                    3 => Field::KeyLen(0),
                    _ => Field::Count(i + 1),
                }
            }
            Field::KeyLen(i) => {
                if self.pairs.len() >= self.count() as usize {
                    return false; // A record past the count.
                }
                self.len_bytes[usize::from(i)] = b;
                if i == 0 {
                    Field::KeyLen(1)
                } else {
                    let len = u16::from_le_bytes(self.len_bytes);
                    if usize::from(len) > KB || self.pairs.push(Pair::EMPTY).is_err() {
                        return false;
                    }
                    match len {
                        0 => Field::ValueLen(0),
                        _ => Field::Key(len, 0),
                    }
                }
            }
            Field::Key(len, i) => {
                let Some(pair) = self.pairs.last_mut() else { return false };
                if !pair.key.push(b) {
                    return false;
                }
                if i + 1 == len {
                    Field::ValueLen(0)
                } else {
                    Field::Key(len, i + 1)
                }
            }
            Field::ValueLen(i) => {
                self.len_bytes[usize::from(i)] = b;
                if i == 0 {
                    Field::ValueLen(1)
                } else {
                    let len = u16::from_le_bytes(self.len_bytes);
                    if usize::from(len) > VB {
                        return false;
                    }
                    match len {
                        0 => Field::KeyLen(0),
                        _ => Field::Value(len, 0),
                    }
                }
            }
            Field::Value(len, i) => {
                let Some(pair) = self.pairs.last_mut() else { return false };
                if pair.value.push(b).is_err() {
                    return false;
                }
                if i + 1 == len {
                    Field::KeyLen(0)
                } else {
                    Field::Value(len, i + 1)
                }
            }
        };
        true
    }
}
