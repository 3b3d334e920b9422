//! The key-value application for std servers: the engine's `KvOp`/`KvReply` protocol and
//! snapshot format over a persistent sorted map, so snapshots are O(1).
//!
//! The engine's `KvApp` keeps fixed arrays for firmware; a server wants many more keys than
//! fit a static arena, and must be able to take a point-in-time snapshot of millions of keys
//! without stopping. This type keeps the map in an `imbl::OrdMap` (a B-tree whose nodes are
//! shared between copies): a snapshot is a clone of the root, and writes after it copy only
//! the nodes they touch. Requests, replies and the snapshot bytes are the engine's
//! (`fleet_engine::rsl::apps::kv::SNAPSHOT_FORMAT`: a count, then one variable-size record
//! per pair in key order), so a std replica and a firmware replica with the same key and
//! value bounds exchange snapshots byte for byte.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::ops::Bound;
use std::sync::Arc;

use equivalent::{Comparable, Equivalent};
use fleet_engine::rsl::app::{App, SnapshotError};
use fleet_engine::rsl::apps::kv::{
    key_order_with_words, short_word, KvAppError, KvOp, KvReply, COUNT_BYTES, RECORD_OVERHEAD_BYTES,
};
use fleet_engine::wire::Bytes;
use imbl::OrdMap;

/// A key or value: shared, so copying a map's node copies pointers, not bytes.
type Shared = Arc<[u8]>;

/// A key of the map: its bytes in their lexicographic order. The first eight bytes are
/// also kept beside the pointer as a number ([`short_word`]), so a comparison
/// ([`key_order_with_words`]) reads the shared bytes only when the numbers are equal, and not
/// at all when both keys are that short (their lengths sit in the pointer). With `[u8]`'s order every probe followed both
/// pointers and called `memcmp`: half of a pipelined replica's time in the map.
#[derive(Clone, Debug)]
struct Key {
    word: u64,
    bytes: Shared,
}

impl Key {
    fn new(bytes: &[u8]) -> Key {
        Key { word: short_word(bytes), bytes: Shared::from(bytes) }
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.word == other.word && self.bytes == other.bytes
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bytes.hash(state);
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        key_order_with_words(self.word, &self.bytes, other.word, &other.bytes)
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Borrowed bytes to look a [`Key`] up by, in the same order, without building one.
#[derive(Clone, Copy, Debug)]
struct KeyRef<'a> {
    word: u64,
    bytes: &'a [u8],
}

impl KeyRef<'_> {
    fn new(bytes: &[u8]) -> KeyRef<'_> {
        KeyRef { word: short_word(bytes), bytes }
    }
}

impl Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.word == key.word && *self.bytes == *key.bytes
    }
}

impl Comparable<Key> for KeyRef<'_> {
    fn compare(&self, key: &Key) -> Ordering {
        key_order_with_words(self.word, self.bytes, key.word, &key.bytes)
    }
}

/// Reads of a snapshot leave a mark every this many bytes, so a read at any offset starts
/// at most this far from where its bytes are.
const MARK_EVERY_BYTES: u64 = 1 << 20;

/// A replicated map of at most `max_keys` pairs; keys ≤ `KB` bytes, values ≤ `VB` bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StdKvApp<const KB: usize, const VB: usize> {
    map: OrdMap<Key, Shared>,
    max_keys: usize,
    /// Length of the snapshot encoding, kept up to date with every write.
    snapshot_bytes: u64,
}

/// A point-in-time snapshot of a [`StdKvApp`]: the map as it was (sharing its nodes), and
/// where reads of it have got to.
#[derive(Clone, Debug)]
pub struct StdKvSnapshot {
    map: OrdMap<Key, Shared>,
    len: u64,
    /// Record offsets with their keys: the last read's position, and one mark per
    /// [`MARK_EVERY_BYTES`] passed, so reads in increasing order cost only what they copy.
    marks: RefCell<Marks>,
}

#[derive(Clone, Debug, Default)]
struct Marks {
    /// `(offset of a record, its key)` in increasing offset, one per mark interval.
    every: Vec<(u64, Shared)>,
    /// Where the last read stopped: the record it was in.
    last: Option<(u64, Shared)>,
}

fn record_len(k: &[u8], v: &[u8]) -> u64 {
    RECORD_OVERHEAD_BYTES + k.len() as u64 + v.len() as u64
}

impl<const KB: usize, const VB: usize> StdKvApp<KB, VB> {
    /// An empty map holding at most `max_keys` pairs.
    pub fn new(max_keys: usize) -> Self {
        StdKvApp { map: OrdMap::new(), max_keys: max_keys.min(u32::MAX as usize), snapshot_bytes: COUNT_BYTES }
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The value under `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(&KeyRef::new(key)).map(|v| &v[..])
    }

    fn execute(&mut self, op: KvOp<'_>) -> KvReply<'_> {
        match op {
            KvOp::Get(k) => KvReply::Value(self.map.get(&KeyRef::new(k.0)).map(|v| Bytes(&v[..]))),
            KvOp::Put(k, v) => {
                if k.0.len() > KB {
                    return KvReply::Error(KvAppError::KeyTooLarge);
                }
                if v.0.len() > VB {
                    return KvReply::Error(KvAppError::ValueTooLarge);
                }
                // One search for a key already there (the value replaced in place, the key
                // kept); a new key is searched again to be inserted.
                if let Some(old) = self.map.get_mut(&KeyRef::new(k.0)) {
                    self.snapshot_bytes = self.snapshot_bytes + v.0.len() as u64 - old.len() as u64;
                    *old = Shared::from(v.0);
                    return KvReply::Done;
                }
                if self.map.len() >= self.max_keys {
                    return KvReply::Error(KvAppError::Full);
                }
                self.map.insert(Key::new(k.0), Shared::from(v.0));
                self.snapshot_bytes += record_len(k.0, v.0);
                KvReply::Done
            }
            KvOp::Delete(k) => {
                if let Some(old) = self.map.remove(&KeyRef::new(k.0)) {
                    self.snapshot_bytes -= record_len(k.0, &old);
                }
                KvReply::Done
            }
        }
    }
}

impl StdKvSnapshot {
    /// The record to start reading from for `offset`: its offset and key (`None`: the
    /// first record).
    fn start_for(&self, offset: u64) -> Option<(u64, Shared)> {
        let marks = self.marks.borrow();
        let i = marks.every.partition_point(|(o, _)| *o <= offset);
        let mark = i.checked_sub(1).map(|i| marks.every[i].clone());
        match (&marks.last, mark) {
            (Some(last), Some(mark)) if last.0 <= offset && last.0 >= mark.0 => Some(last.clone()),
            (Some(last), None) if last.0 <= offset => Some(last.clone()),
            (_, mark) => mark,
        }
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> usize {
        let n = self.len.saturating_sub(offset).min(out.len() as u64) as usize;
        let out = &mut out[..n];
        let end = offset + n as u64;
        let count = (self.map.len() as u32).to_le_bytes();
        for (i, b) in count.iter().enumerate() {
            let at = i as u64;
            if at >= offset && at < end {
                out[(at - offset) as usize] = *b;
            }
        }
        let (mut at, from) = match self.start_for(offset) {
            Some((at, key)) => (at, Some(key)),
            None => (COUNT_BYTES, None),
        };
        let pairs: Box<dyn Iterator<Item = (&Key, &Shared)>> = match &from {
            Some(key) => Box::new(self.map.range((Bound::Included(KeyRef::new(key)), Bound::Unbounded))),
            None => Box::new(self.map.iter()),
        };
        let mut marks = self.marks.borrow_mut();
        for (Key { bytes: k, .. }, v) in pairs {
            if at >= end {
                marks.last = Some((at, k.clone()));
                break;
            }
            let size = record_len(k, v);
            if marks.every.last().map_or(MARK_EVERY_BYTES <= at, |(o, _)| at >= o + MARK_EVERY_BYTES) {
                marks.every.push((at, k.clone()));
            }
            if at + size > offset {
                let pieces: [&[u8]; 4] = [&(k.len() as u16).to_le_bytes(), k, &(v.len() as u16).to_le_bytes(), v];
                let mut p = at;
                for piece in pieces {
                    for b in piece {
                        if p >= offset && p < end {
                            out[(p - offset) as usize] = *b;
                        }
                        p += 1;
                    }
                }
            }
            marks.last = Some((at, k.clone()));
            at += size;
        }
        n
    }
}

impl<const KB: usize, const VB: usize> App for StdKvApp<KB, VB> {
    /// The whole snapshot's bytes, assembled in order and parsed when installed.
    type Staging = Vec<u8>;
    type Snapshot = StdKvSnapshot;

    fn apply(&mut self, request: &[u8], reply: &mut [u8]) -> usize {
        let answer = match KvOp::decode(request) {
            Some(op) => self.execute(op),
            None => KvReply::Error(KvAppError::Malformed),
        };
        answer.encode_into(reply)
    }

    fn is_query(request: &[u8]) -> bool {
        matches!(KvOp::decode(request), Some(KvOp::Get(_)))
    }

    fn query(&self, request: &[u8], reply: &mut [u8]) -> usize {
        let answer = match KvOp::decode(request) {
            Some(KvOp::Get(k)) => KvReply::Value(self.map.get(&KeyRef::new(k.0)).map(|v| Bytes(&v[..]))),
            _ => KvReply::Error(KvAppError::Malformed),
        };
        answer.encode_into(reply)
    }

    fn new_snapshot() -> StdKvSnapshot {
        StdKvSnapshot { map: OrdMap::new(), len: COUNT_BYTES, marks: RefCell::default() }
    }

    fn snapshot(&self, into: &mut StdKvSnapshot) {
        *into = StdKvSnapshot { map: self.map.clone(), len: self.snapshot_bytes, marks: RefCell::default() };
    }

    fn snapshot_len(snapshot: &StdKvSnapshot) -> u64 {
        snapshot.len
    }

    fn snapshot_read(snapshot: &StdKvSnapshot, offset: u64, out: &mut [u8]) -> usize {
        snapshot.read(offset, out)
    }

    fn new_staging() -> Vec<u8> {
        Vec::new()
    }

    fn stage(staging: &mut Vec<u8>, offset: u64, bytes: &[u8]) -> Result<(), SnapshotError> {
        if offset != staging.len() as u64 {
            return Err(SnapshotError::OutOfRange);
        }
        staging.extend_from_slice(bytes);
        Ok(())
    }

    fn install(&mut self, staging: &mut Vec<u8>, len: u64) -> Result<(), SnapshotError> {
        if staging.len() as u64 != len || len < COUNT_BYTES {
            return Err(SnapshotError::Corrupt);
        }
        let bytes = &staging[..];
        let count = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        if count > self.max_keys {
            return Err(SnapshotError::Corrupt);
        }
        let field = |at: &mut usize, max: usize| -> Result<&[u8], SnapshotError> {
            let l = bytes.get(*at..*at + 2).ok_or(SnapshotError::Corrupt)?;
            let l = u16::from_le_bytes([l[0], l[1]]) as usize;
            let f = bytes.get(*at + 2..*at + 2 + l).filter(|_| l <= max).ok_or(SnapshotError::Corrupt)?;
            *at += 2 + l;
            Ok(f)
        };
        let mut map = OrdMap::new();
        let mut at = COUNT_BYTES as usize;
        let mut last: Option<&[u8]> = None;
        for _ in 0..count {
            let k = field(&mut at, KB)?;
            let v = field(&mut at, VB)?;
            if last.is_some_and(|l| l >= k) {
                return Err(SnapshotError::Corrupt);
            }
            last = Some(k);
            map.insert(Key::new(k), Shared::from(v));
        }
        if at != bytes.len() {
            return Err(SnapshotError::Corrupt);
        }
        self.map = map;
        self.snapshot_bytes = len;
        staging.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_engine::rsl::apps::kv::KvApp;

    fn put<A: App>(app: &mut A, k: &[u8], v: &[u8]) {
        let mut req = [0u8; 128];
        let n = KvOp::Put(Bytes(k), Bytes(v)).encode(&mut req).unwrap();
        let mut reply = [0u8; 64];
        app.apply(&req[..n], &mut reply);
    }

    #[test]
    fn snapshots_match_the_engine_kv_app_byte_for_byte() {
        let mut std_app: StdKvApp<8, 16> = StdKvApp::new(100);
        let mut fw_app: KvApp<100, 8, 16> = KvApp::new();
        for (k, v) in [(&b"b"[..], &b"two"[..]), (b"a", b"one"), (b"zz", b""), (b"a", b"uno")] {
            put(&mut std_app, k, v);
            put(&mut fw_app, k, v);
        }
        let s = snapshot_of(&std_app);
        let mut f = KvApp::<100, 8, 16>::new_snapshot();
        fw_app.snapshot(&mut f);
        assert_eq!(StdKvApp::<8, 16>::snapshot_len(&s), KvApp::<100, 8, 16>::snapshot_len(&f));
        let len = StdKvApp::<8, 16>::snapshot_len(&s) as usize;
        let (mut a, mut b) = (vec![0u8; len], vec![0u8; len]);
        for off in (0..len).step_by(7) {
            let end = (off + 7).min(len);
            StdKvApp::<8, 16>::snapshot_read(&s, off as u64, &mut a[off..end]);
            KvApp::<100, 8, 16>::snapshot_read(&f, off as u64, &mut b[off..end]);
        }
        assert_eq!(a, b);
        let mut staging = StdKvApp::<8, 16>::new_staging();
        StdKvApp::<8, 16>::stage(&mut staging, 0, &a).unwrap();
        let mut copy: StdKvApp<8, 16> = StdKvApp::new(100);
        copy.install(&mut staging, len as u64).unwrap();
        assert_eq!(copy, std_app);
        // And a firmware map installs a server's snapshot (a firmware replica catching up).
        let mut fw_staging = KvApp::<100, 8, 16>::new_staging();
        KvApp::<100, 8, 16>::stage(&mut fw_staging, 0, &a).unwrap();
        let mut fw_copy: KvApp<100, 8, 16> = KvApp::new();
        fw_copy.install(&mut fw_staging, len as u64).unwrap();
        assert_eq!(fw_copy, fw_app);
    }

    fn snapshot_of(app: &StdKvApp<8, 16>) -> StdKvSnapshot {
        let mut s = StdKvApp::<8, 16>::new_snapshot();
        app.snapshot(&mut s);
        s
    }

    fn read_all(s: &StdKvSnapshot, chunk: usize) -> Vec<u8> {
        let len = StdKvApp::<8, 16>::snapshot_len(s) as usize;
        let mut bytes = vec![0u8; len];
        for off in (0..len).step_by(chunk) {
            let end = (off + chunk).min(len);
            assert_eq!(StdKvApp::<8, 16>::snapshot_read(s, off as u64, &mut bytes[off..end]), end - off);
        }
        bytes
    }

    #[test]
    fn a_snapshot_stays_put_while_the_map_moves_on_and_reads_in_any_order() {
        let mut app: StdKvApp<8, 16> = StdKvApp::new(10_000);
        for i in 0..3000u32 {
            put(&mut app, &i.to_be_bytes(), &[(i % 251) as u8; 5]);
        }
        let s = snapshot_of(&app);
        let before = read_all(&s, 4096);
        for i in 0..3000u32 {
            put(&mut app, &i.to_be_bytes(), b"changed");
        }
        assert_eq!(read_all(&s, 4096), before, "the snapshot did not move");
        assert_eq!(read_all(&s, 13), before, "small reads in order");
        let mut backwards = vec![0u8; before.len()];
        for off in (0..before.len()).step_by(997).rev() {
            let end = (off + 997).min(before.len());
            StdKvApp::<8, 16>::snapshot_read(&s, off as u64, &mut backwards[off..end]);
        }
        assert_eq!(backwards, before, "reads out of order");
        assert_eq!(before.len() as u64, 4 + 3000 * (4 + 4 + 5), "variable-size records: 13 bytes a pair");
        let mut staging = Vec::new();
        StdKvApp::<8, 16>::stage(&mut staging, 0, &before).unwrap();
        let mut copy: StdKvApp<8, 16> = StdKvApp::new(10_000);
        copy.install(&mut staging, before.len() as u64).unwrap();
        assert_eq!(copy.len(), 3000);
        assert_eq!(copy.get(&7u32.to_be_bytes()), Some(&[7u8; 5][..]));
    }

    #[test]
    fn staging_takes_bytes_in_order_and_install_refuses_what_is_not_a_map() {
        let mut app: StdKvApp<8, 16> = StdKvApp::new(100);
        put(&mut app, b"a", b"1");
        put(&mut app, b"b", b"2");
        let bytes = read_all(&snapshot_of(&app), 64);
        let mut staging = Vec::new();
        assert_eq!(StdKvApp::<8, 16>::stage(&mut staging, 3, &bytes), Err(SnapshotError::OutOfRange));
        let install = |patch: &dyn Fn(&mut Vec<u8>), max_keys: usize| {
            let mut b = bytes.clone();
            patch(&mut b);
            let len = b.len() as u64;
            StdKvApp::<8, 16>::new(max_keys).install(&mut b, len)
        };
        assert_eq!(install(&|_| {}, 100), Ok(()));
        assert_eq!(install(&|_| {}, 1), Err(SnapshotError::Corrupt), "more pairs than this map holds");
        assert_eq!(install(&|b| b.swap(6, 12), 100), Err(SnapshotError::Corrupt), "keys out of order");
        assert_eq!(install(&|b| b[0] = 3, 100), Err(SnapshotError::Corrupt), "count says 3");
        assert_eq!(
            install(
                &|b| {
                    b.pop();
                },
                100
            ),
            Err(SnapshotError::Corrupt),
            "cut short"
        );
        assert_eq!(install(&|b| b.push(0), 100), Err(SnapshotError::Corrupt), "trailing byte");
    }

    #[test]
    fn a_full_map_refuses_new_keys_but_updates_old_ones() {
        let mut app: StdKvApp<8, 16> = StdKvApp::new(1);
        put(&mut app, b"a", b"1");
        put(&mut app, b"b", b"2");
        put(&mut app, b"a", b"3");
        assert_eq!(app.len(), 1);
        assert_eq!(app.get(b"a"), Some(&b"3"[..]));
    }

    /// The map against a `BTreeMap` of byte strings (slice order) under random puts,
    /// overwrites and deletes of keys 0-20 bytes long built from few byte values (so keys
    /// share prefixes, end in zeros and are each other's prefixes): the same pairs, found by
    /// `get`, and a snapshot in the same order with the length the map kept count of.
    #[test]
    fn the_map_keeps_the_byte_order_of_its_keys() {
        let mut app: StdKvApp<20, 4> = StdKvApp::new(100_000);
        let mut model = std::collections::BTreeMap::<Vec<u8>, Vec<u8>>::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..20_000 {
            let len = next(21) as usize;
            let key: Vec<u8> = (0..len).map(|_| [0u8, 1, 0x7f, 0x80, 0xff][next(5) as usize]).collect();
            let mut req = [0u8; 64];
            let n = if next(4) == 0 {
                model.remove(&key);
                KvOp::Delete(Bytes(&key)).encode(&mut req).unwrap()
            } else {
                let value = vec![next(256) as u8; next(5) as usize];
                let n = KvOp::Put(Bytes(&key), Bytes(&value)).encode(&mut req).unwrap();
                model.insert(key.clone(), value);
                n
            };
            let mut reply = [0u8; 16];
            let r = app.apply(&req[..n], &mut reply);
            assert_eq!(&reply[..r], &[1u8][..], "Done: {key:?}");
            assert_eq!(app.get(&key), model.get(&key).map(|v| &v[..]));
        }
        assert_eq!(app.len(), model.len());
        let mut expected = (model.len() as u32).to_le_bytes().to_vec();
        for (k, v) in &model {
            expected.extend_from_slice(&(k.len() as u16).to_le_bytes());
            expected.extend_from_slice(k);
            expected.extend_from_slice(&(v.len() as u16).to_le_bytes());
            expected.extend_from_slice(v);
        }
        let mut s = StdKvApp::<20, 4>::new_snapshot();
        app.snapshot(&mut s);
        assert_eq!(StdKvApp::<20, 4>::snapshot_len(&s), expected.len() as u64, "the counted length");
        let mut bytes = vec![0u8; expected.len()];
        assert_eq!(StdKvApp::<20, 4>::snapshot_read(&s, 0, &mut bytes), expected.len());
        assert!(bytes == expected, "the snapshot lists the pairs in byte order");
    }
}
