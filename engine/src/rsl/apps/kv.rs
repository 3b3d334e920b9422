//! A bounded key-value application over byte keys and values, replicated by RSL.
//!
//! Requests and replies are postcard-encoded [`KvOp`] / [`KvReply`]. The map holds at most
//! `K` pairs, keys up to `KB` bytes and values up to `VB` bytes, in sorted order so that
//! its snapshot is deterministic. The snapshot is a 4-byte little-endian count followed by
//! fixed-size records `[key_len: u16 LE][key, zero-padded to KB][value_len: u16 LE]
//! [value, zero-padded to VB]`: fixed records let a chunk land straight in the staging
//! area at its offset, with no carry buffer for records split across datagrams.

use serde::{Deserialize, Serialize};

use crate::rsl::app::{copy_segment, stage_segment, App, SnapshotError};
use crate::wire::{decode_exact, Bytes, EncodeError};

/// A request to the key-value application.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KvOp<'a> {
    /// Read a key.
    Get(#[serde(borrow)] Bytes<'a>),
    /// Write a key.
    Put(#[serde(borrow)] Bytes<'a>, #[serde(borrow)] Bytes<'a>),
    /// Remove a key.
    Delete(#[serde(borrow)] Bytes<'a>),
}

/// Why the application refused an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum KvAppError {
    /// The request bytes are not a [`KvOp`].
    Malformed,
    /// The key is longer than the map's key capacity.
    KeyTooLarge,
    /// The value is longer than the map's value capacity.
    ValueTooLarge,
    /// The map holds its maximum number of pairs.
    Full,
    /// The value does not fit the replica's reply buffer.
    ReplyTooLarge,
}

/// The application's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KvReply<'a> {
    /// The value of a Get (`None` if absent).
    Value(#[serde(borrow)] Option<Bytes<'a>>),
    /// A Put or Delete took effect.
    Done,
    /// The operation was refused and changed nothing.
    Error(KvAppError),
}

impl<'a> KvOp<'a> {
    /// Encodes this request into `buf`; returns the length.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        postcard::to_slice(self, buf).map(|b| b.len()).map_err(|_| EncodeError::BufferFull)
    }
    /// Decodes a request.
    pub fn decode(bytes: &'a [u8]) -> Option<KvOp<'a>> {
        decode_exact(bytes).ok()
    }
}

impl<'a> KvReply<'a> {
    /// Decodes a reply.
    pub fn decode(bytes: &'a [u8]) -> Option<KvReply<'a>> {
        decode_exact(bytes).ok()
    }
}

/// One stored pair.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Pair<const KB: usize, const VB: usize> {
    key: heapless::Vec<u8, KB>,
    value: heapless::Vec<u8, VB>,
}

/// The key-value application: at most `K` pairs, keys ≤ `KB` bytes, values ≤ `VB` bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KvApp<const K: usize, const KB: usize, const VB: usize> {
    pairs: heapless::Vec<Pair<KB, VB>, K>,
}

/// One fixed-size snapshot record being assembled.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct RawRecord<const KB: usize, const VB: usize> {
    key_len: [u8; 2],
    key: [u8; KB],
    value_len: [u8; 2],
    value: [u8; VB],
}

/// Staging area for an incoming [`KvApp`] snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KvStaging<const K: usize, const KB: usize, const VB: usize> {
    count: [u8; 4],
    records: heapless::Vec<RawRecord<KB, VB>, K>,
}

const COUNT_BYTES: u64 = 4;

impl<const K: usize, const KB: usize, const VB: usize> KvApp<K, KB, VB> {
    const RECORD_BYTES: u64 = (2 + KB + 2 + VB) as u64;

    /// An empty map.
    pub const fn new() -> Self {
        KvApp { pairs: heapless::Vec::new() }
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// True when the map is empty.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.find(key).ok().map(|i| &self.pairs[i].value[..])
    }

    fn find(&self, key: &[u8]) -> Result<usize, usize> {
        self.pairs.binary_search_by(|p| p.key[..].cmp(key))
    }

    fn execute<'r>(&'r mut self, op: KvOp<'_>) -> KvReply<'r> {
        match op {
            KvOp::Get(key) => KvReply::Value(self.get(key.0).map(Bytes)),
            KvOp::Put(key, value) => {
                let Ok(k) = heapless::Vec::from_slice(key.0) else { return KvReply::Error(KvAppError::KeyTooLarge) };
                let Ok(v) = heapless::Vec::from_slice(value.0) else {
                    return KvReply::Error(KvAppError::ValueTooLarge);
                };
                match self.find(key.0) {
                    Ok(i) => self.pairs[i].value = v,
                    Err(i) => {
                        if self.pairs.insert(i, Pair { key: k, value: v }).is_err() {
                            return KvReply::Error(KvAppError::Full);
                        }
                    }
                }
                KvReply::Done
            }
            KvOp::Delete(key) => {
                if let Ok(i) = self.find(key.0) {
                    self.pairs.remove(i);
                }
                KvReply::Done
            }
        }
    }
}

impl<const K: usize, const KB: usize, const VB: usize> App for KvApp<K, KB, VB> {
    type Staging = KvStaging<K, KB, VB>;

    fn apply(&mut self, request: &[u8], reply: &mut [u8]) -> usize {
        let answer = match KvOp::decode(request) {
            Some(op) => self.execute(op),
            None => KvReply::Error(KvAppError::Malformed),
        };
        match postcard::to_slice(&answer, &mut *reply) {
            Ok(b) => b.len(),
            // A value larger than the reply buffer: say so (always fits: 2 bytes).
            Err(_) => postcard::to_slice(&KvReply::Error(KvAppError::ReplyTooLarge), reply).map_or(0, |b| b.len()),
        }
    }

    fn snapshot_len(&self) -> u64 {
        COUNT_BYTES + self.pairs.len() as u64 * Self::RECORD_BYTES
    }

    fn snapshot_read(&self, offset: u64, out: &mut [u8]) -> usize {
        let total = self.snapshot_len();
        let n = (total.saturating_sub(offset)).min(out.len() as u64) as usize;
        let out = &mut out[..n];
        copy_segment(&(self.pairs.len() as u32).to_le_bytes(), COUNT_BYTES, 0, offset, out);
        let end = offset + n as u64;
        let first = offset.saturating_sub(COUNT_BYTES) / Self::RECORD_BYTES;
        for (i, pair) in self.pairs.iter().enumerate().skip(first as usize) {
            let base = COUNT_BYTES + i as u64 * Self::RECORD_BYTES;
            if base >= end {
                break;
            }
            let kl = (pair.key.len() as u16).to_le_bytes();
            let vl = (pair.value.len() as u16).to_le_bytes();
            copy_segment(&kl, 2, base, offset, out);
            copy_segment(&pair.key, KB as u64, base + 2, offset, out);
            copy_segment(&vl, 2, base + 2 + KB as u64, offset, out);
            copy_segment(&pair.value, VB as u64, base + 4 + KB as u64, offset, out);
        }
        n
    }

    fn new_staging() -> Self::Staging {
        KvStaging { count: [0; 4], records: heapless::Vec::new() }
    }

    fn stage(staging: &mut Self::Staging, offset: u64, bytes: &[u8]) -> Result<(), SnapshotError> {
        let end = offset.checked_add(bytes.len() as u64).ok_or(SnapshotError::OutOfRange)?;
        if end > COUNT_BYTES + K as u64 * Self::RECORD_BYTES {
            return Err(SnapshotError::OutOfRange);
        }
        stage_segment(&mut staging.count, 0, offset, bytes);
        if end <= COUNT_BYTES {
            return Ok(());
        }
        let last = ((end - 1 - COUNT_BYTES) / Self::RECORD_BYTES) as usize;
        while staging.records.len() <= last {
            let blank = RawRecord { key_len: [0; 2], key: [0; KB], value_len: [0; 2], value: [0; VB] };
            // Bounded: `last < K` by the range check above.
            staging.records.push(blank).map_err(|_| SnapshotError::OutOfRange)?;
        }
        let first = (offset.saturating_sub(COUNT_BYTES) / Self::RECORD_BYTES) as usize;
        for i in first..=last {
            let base = COUNT_BYTES + i as u64 * Self::RECORD_BYTES;
            let r = &mut staging.records[i];
            stage_segment(&mut r.key_len, base, offset, bytes);
            stage_segment(&mut r.key, base + 2, offset, bytes);
            stage_segment(&mut r.value_len, base + 2 + KB as u64, offset, bytes);
            stage_segment(&mut r.value, base + 4 + KB as u64, offset, bytes);
        }
        Ok(())
    }

    fn install(&mut self, staging: &Self::Staging, len: u64) -> Result<(), SnapshotError> {
        let count = u32::from_le_bytes(staging.count) as usize;
        if count > K || count > staging.records.len() || len != COUNT_BYTES + count as u64 * Self::RECORD_BYTES {
            return Err(SnapshotError::Corrupt);
        }
        // Validate everything before touching the live map.
        let records = &staging.records[..count];
        for (i, r) in records.iter().enumerate() {
            let kl = u16::from_le_bytes(r.key_len) as usize;
            let vl = u16::from_le_bytes(r.value_len) as usize;
            if kl > KB || vl > VB {
                return Err(SnapshotError::Corrupt);
            }
            if i > 0 {
                let prev = &records[i - 1];
                if prev.key[..u16::from_le_bytes(prev.key_len) as usize] >= r.key[..kl] {
                    return Err(SnapshotError::Corrupt);
                }
            }
        }
        self.pairs.clear();
        for r in records {
            let kl = u16::from_le_bytes(r.key_len) as usize;
            let vl = u16::from_le_bytes(r.value_len) as usize;
            // Cannot fail: lengths and count were checked against the capacities above.
            let key = heapless::Vec::from_slice(&r.key[..kl]).map_err(|_| SnapshotError::Corrupt)?;
            let value = heapless::Vec::from_slice(&r.value[..vl]).map_err(|_| SnapshotError::Corrupt)?;
            self.pairs.push(Pair { key, value }).map_err(|_| SnapshotError::Corrupt)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Small = KvApp<4, 8, 16>;

    fn run(app: &mut Small, op: KvOp<'_>) -> heapless::Vec<u8, 64> {
        let mut req = [0u8; 64];
        let n = op.encode(&mut req).unwrap();
        let mut reply = [0u8; 64];
        let m = app.apply(&req[..n], &mut reply);
        heapless::Vec::from_slice(&reply[..m]).unwrap()
    }

    #[test]
    fn put_get_delete() {
        let mut app = Small::new();
        assert_eq!(KvReply::decode(&run(&mut app, KvOp::Put(Bytes(b"k"), Bytes(b"v1")))), Some(KvReply::Done));
        assert_eq!(KvReply::decode(&run(&mut app, KvOp::Get(Bytes(b"k")))), Some(KvReply::Value(Some(Bytes(b"v1")))));
        assert_eq!(KvReply::decode(&run(&mut app, KvOp::Delete(Bytes(b"k")))), Some(KvReply::Done));
        assert_eq!(KvReply::decode(&run(&mut app, KvOp::Get(Bytes(b"k")))), Some(KvReply::Value(None)));
    }

    #[test]
    fn refusals_change_nothing() {
        let mut app = Small::new();
        let too_long_key = [1u8; 9];
        let r = run(&mut app, KvOp::Put(Bytes(&too_long_key), Bytes(b"v")));
        assert_eq!(KvReply::decode(&r), Some(KvReply::Error(KvAppError::KeyTooLarge)));
        let r = run(&mut app, KvOp::Put(Bytes(b"k"), Bytes(&[0u8; 17])));
        assert_eq!(KvReply::decode(&r), Some(KvReply::Error(KvAppError::ValueTooLarge)));
        for k in 0..4u8 {
            run(&mut app, KvOp::Put(Bytes(&[k]), Bytes(b"v")));
        }
        let r = run(&mut app, KvOp::Put(Bytes(b"new"), Bytes(b"v")));
        assert_eq!(KvReply::decode(&r), Some(KvReply::Error(KvAppError::Full)));
        assert_eq!(app.len(), 4);
        let mut reply = [0u8; 8];
        let n = app.apply(&[0xff, 0xff], &mut reply);
        assert_eq!(KvReply::decode(&reply[..n]), Some(KvReply::Error(KvAppError::Malformed)));
    }

    #[test]
    fn snapshot_moves_in_odd_sized_chunks_and_installs_whole() {
        let mut src = Small::new();
        run(&mut src, KvOp::Put(Bytes(b"b"), Bytes(b"two")));
        run(&mut src, KvOp::Put(Bytes(b"a"), Bytes(b"one")));
        run(&mut src, KvOp::Put(Bytes(b"c"), Bytes(b"")));
        let total = src.snapshot_len();
        let mut staging = Small::new_staging();
        let mut off = 0;
        let mut buf = [0u8; 7];
        while off < total {
            let n = src.snapshot_read(off, &mut buf);
            assert!(n > 0);
            Small::stage(&mut staging, off, &buf[..n]).unwrap();
            off += n as u64;
        }
        let mut dst = Small::new();
        run(&mut dst, KvOp::Put(Bytes(b"zz"), Bytes(b"old")));
        dst.install(&staging, total).unwrap();
        assert_eq!(dst, src);
    }

    #[test]
    fn corrupt_snapshot_is_refused_and_leaves_the_map_alone() {
        let mut src = Small::new();
        run(&mut src, KvOp::Put(Bytes(b"a"), Bytes(b"1")));
        run(&mut src, KvOp::Put(Bytes(b"b"), Bytes(b"2")));
        let total = src.snapshot_len();
        let mut buf = [0u8; 128];
        let n = src.snapshot_read(0, &mut buf);
        // Swap the two keys: no longer sorted.
        let rec = Small::RECORD_BYTES as usize;
        buf[4 + 2] = b'b';
        buf[4 + rec + 2] = b'a';
        let mut staging = Small::new_staging();
        Small::stage(&mut staging, 0, &buf[..n]).unwrap();
        let mut dst = Small::new();
        run(&mut dst, KvOp::Put(Bytes(b"keep"), Bytes(b"me")));
        assert_eq!(dst.install(&staging, total), Err(SnapshotError::Corrupt));
        assert_eq!(dst.get(b"keep"), Some(&b"me"[..]));
        assert_eq!(dst.install(&staging, total - 1), Err(SnapshotError::Corrupt));
        assert_eq!(Small::stage(&mut staging, total + 100, b"x"), Err(SnapshotError::OutOfRange));
    }

    /// Moves `src`'s snapshot into a fresh staging area in chunks of `chunk` bytes.
    fn staged(src: &Small, chunk: usize) -> KvStaging<4, 8, 16> {
        let mut staging = Small::new_staging();
        let mut buf = [0u8; 64];
        let mut off = 0;
        while off < src.snapshot_len() {
            let n = src.snapshot_read(off, &mut buf[..chunk]);
            assert!(n > 0);
            Small::stage(&mut staging, off, &buf[..n]).unwrap();
            off += n as u64;
        }
        staging
    }

    #[test]
    fn a_snapshot_at_every_bound_moves_and_installs_and_one_past_any_is_refused() {
        let mut full = Small::new();
        assert!(full.is_empty());
        for k in 0..4u8 {
            let key = [k; 8];
            let r = run(&mut full, KvOp::Put(Bytes(&key), Bytes(&[k; 16])));
            assert_eq!(KvReply::decode(&r), Some(KvReply::Done));
        }
        assert!(!full.is_empty());
        let total = full.snapshot_len();
        assert_eq!(total, COUNT_BYTES + 4 * Small::RECORD_BYTES, "four records of the largest key and value");
        for chunk in [1, 7, 31, 64] {
            let mut dst = Small::new();
            dst.install(&staged(&full, chunk), total).unwrap();
            assert_eq!(dst, full, "chunks of {chunk}");
        }
        let mut staging = Small::new_staging();
        assert_eq!(Small::stage(&mut staging, total, b"x"), Err(SnapshotError::OutOfRange), "one byte past the end");
        let rec = Small::RECORD_BYTES;
        let patched = |at: u64, bytes: &[u8]| {
            let mut s = staged(&full, 64);
            Small::stage(&mut s, at, bytes).unwrap();
            let mut dst = Small::new();
            dst.install(&s, total)
        };
        assert_eq!(patched(COUNT_BYTES, &9u16.to_le_bytes()), Err(SnapshotError::Corrupt), "key of 9 > 8 bytes");
        let value_len_at = COUNT_BYTES + rec + 2 + 8;
        assert_eq!(patched(value_len_at, &17u16.to_le_bytes()), Err(SnapshotError::Corrupt), "value of 17 > 16 bytes");
        assert_eq!(patched(0, &3u32.to_le_bytes()), Err(SnapshotError::Corrupt), "count 3 but four records long");
        let mut five = staged(&full, 64);
        Small::stage(&mut five, 0, &5u32.to_le_bytes()).unwrap();
        assert_eq!(Small::new().install(&five, COUNT_BYTES + 5 * rec), Err(SnapshotError::Corrupt), "count 5 > K");
        let mut short = Small::new_staging();
        Small::stage(&mut short, 0, &2u32.to_le_bytes()).unwrap();
        assert_eq!(
            Small::new().install(&short, COUNT_BYTES + 2 * rec),
            Err(SnapshotError::Corrupt),
            "count 2 but no records staged"
        );
    }
}
