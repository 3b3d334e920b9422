//! A bounded key-value application over byte keys and values, replicated by RSL.
//!
//! Requests and replies are postcard-encoded [`KvOp`] / [`KvReply`]. The map holds at most
//! `K` pairs, keys up to `KB` bytes and values up to `VB` bytes, in sorted order so that
//! its snapshot is deterministic. The snapshot ([`SNAPSHOT_FORMAT`]) is a 4-byte
//! little-endian count followed by one record per pair in key order,
//! `[key_len: u16 LE][key][value_len: u16 LE][value]`: a pair costs its own bytes plus 4, so
//! a map of many small pairs has a small snapshot. io-std's map writes the same bytes, so a
//! firmware replica and a server replica exchange snapshots. The staging area parses the
//! records as the bytes arrive in order, straight into its pairs (no carry buffer).

use serde::{Deserialize, Serialize};

use crate::reader::Reader;
use crate::rsl::app::{copy_segment, App, SnapshotError};
use crate::wire::{decode_exact, Bytes, EncodeError};
use crate::writer::{put_bytes, put_varint};

mod key;
mod order;
mod staging;

use key::Key;

pub use order::{key_order, key_order_with_words, short_word};
pub use staging::KvStaging;

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
    /// Encodes this request into `buf`; returns the length. Written by hand
    /// (`engine::writer`; the same bytes as postcard's, held to them by a test): every
    /// client encodes every request.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let (variant, key, value) = match *self {
            KvOp::Get(key) => (0, key.0, None),
            KvOp::Put(key, value) => (1, key.0, Some(value.0)),
            KvOp::Delete(key) => (2, key.0, None),
        };
        let mut at = put_varint(buf, 0, variant)?;
        at = put_varint(buf, at, key.len() as u64)?;
        at = put_bytes(buf, at, key)?;
        if let Some(value) = value {
            at = put_varint(buf, at, value.len() as u64)?;
            at = put_bytes(buf, at, value)?;
        }
        Ok(at)
    }
    /// Decodes a request: postcard's encoding of a `KvOp`, all of `bytes`. Read by hand
    /// (`engine::reader`; the same verdicts as postcard's, held to them by a test): every
    /// replica decodes every request it executes.
    pub fn decode(bytes: &'a [u8]) -> Option<KvOp<'a>> {
        let mut r = Reader::new(bytes);
        let op = match r.u32()? {
            0 => KvOp::Get(Bytes(r.bytes()?)),
            1 => KvOp::Put(Bytes(r.bytes()?), Bytes(r.bytes()?)),
            2 => KvOp::Delete(Bytes(r.bytes()?)),
            _ => return None,
        };
        r.rest.is_empty().then_some(op)
    }
}

impl<'a> KvReply<'a> {
    /// Encodes this reply into `reply` (an application's reply buffer); returns the length.
    /// A reply too large for the buffer becomes `Error(ReplyTooLarge)` (2 bytes: always fits).
    pub fn encode_into(&self, reply: &mut [u8]) -> usize {
        match crate::wire::to_slice(self, &mut *reply) {
            Ok(n) => n,
            Err(_) => crate::wire::to_slice(&KvReply::Error(KvAppError::ReplyTooLarge), reply).unwrap_or(0),
        }
    }

    /// Decodes a reply.
    pub fn decode(bytes: &'a [u8]) -> Option<KvReply<'a>> {
        decode_exact(bytes).ok()
    }
}

/// The snapshot layout, documented once: `[count: u32 LE]` then, per pair in key order,
/// `[key_len: u16 LE][key][value_len: u16 LE][value]`.
pub const SNAPSHOT_FORMAT: &str =
    "count u32 LE, then per pair in key order: key_len u16 LE, key, value_len u16 LE, value";
/// Bytes of the snapshot's pair count.
pub const COUNT_BYTES: u64 = 4;
/// Bytes a pair's record adds to its key and value (the two lengths).
pub const RECORD_OVERHEAD_BYTES: u64 = 4;

/// One stored pair.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Pair<const KB: usize, const VB: usize> {
    key: Key<KB>,
    value: heapless::Vec<u8, VB>,
}

impl<const KB: usize, const VB: usize> Pair<KB, VB> {
    const EMPTY: Pair<KB, VB> = Pair { key: Key::EMPTY, value: heapless::Vec::new() };

    /// Makes this pair a copy of `src` in place (one `memcpy` each for key and value).
    fn copy_from(&mut self, src: &Self) {
        self.value.clear();
        // Cannot fail: both pairs have the same capacities.
        let _ = self.key.set(src.key.as_slice());
        let _ = self.value.extend_from_slice(&src.value);
    }

    fn record_bytes(&self) -> u64 {
        RECORD_OVERHEAD_BYTES + self.key.len() as u64 + self.value.len() as u64
    }
}

/// The key-value application: at most `K` pairs, keys ≤ `KB` bytes, values ≤ `VB` bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KvApp<const K: usize, const KB: usize, const VB: usize> {
    pairs: heapless::Vec<Pair<KB, VB>, K>,
}

impl<const K: usize, const KB: usize, const VB: usize> KvApp<K, KB, VB> {
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

    /// The pair of `key`, or where it would go. The key's word is taken once, not per probe.
    fn find(&self, key: &[u8]) -> Result<usize, usize> {
        let word = short_word(key);
        self.pairs.binary_search_by(|p| match p.key.word().cmp(&word) {
            // Only a tie of words needs the lengths or the bytes.
            core::cmp::Ordering::Equal => key_order_with_words(word, p.key.as_slice(), word, key),
            unequal => unequal,
        })
    }

    fn execute<'r>(&'r mut self, op: KvOp<'_>) -> KvReply<'r> {
        match op {
            KvOp::Get(key) => KvReply::Value(self.get(key.0).map(Bytes)),
            KvOp::Put(key, value) => {
                if key.0.len() > KB {
                    return KvReply::Error(KvAppError::KeyTooLarge);
                }
                if value.0.len() > VB {
                    return KvReply::Error(KvAppError::ValueTooLarge);
                }
                let i = match self.find(key.0) {
                    Ok(i) => i,
                    Err(i) => {
                        if self.pairs.insert(i, Pair::EMPTY).is_err() {
                            return KvReply::Error(KvAppError::Full);
                        }
                        // Cannot fail: the length was checked above.
                        let _ = self.pairs[i].key.set(key.0);
                        i
                    }
                };
                // In place: one copy of the value, none of the pair.
                let stored = &mut self.pairs[i].value;
                stored.clear();
                // Cannot fail: the length was checked above.
                let _ = stored.extend_from_slice(value.0);
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
    /// A copy: the map is small and fixed-size (firmware).
    type Snapshot = KvApp<K, KB, VB>;

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
            Some(KvOp::Get(key)) => KvReply::Value(self.get(key.0).map(Bytes)),
            _ => KvReply::Error(KvAppError::Malformed),
        };
        answer.encode_into(reply)
    }

    fn new_snapshot() -> Self::Snapshot {
        KvApp::new()
    }

    fn snapshot(&self, into: &mut Self::Snapshot) {
        // Pair by pair in place: `clone_from` would build a whole `K`-pair map on the
        // stack and move it, copying the capacity rather than the pairs.
        into.pairs.truncate(self.pairs.len());
        let kept = into.pairs.len();
        for (dst, src) in into.pairs.iter_mut().zip(&self.pairs) {
            dst.copy_from(src);
        }
        for src in &self.pairs[kept..] {
            // Cannot fail: `into` has the same capacity as `self`.
            let _ = into.pairs.push(Pair::EMPTY);
            if let Some(dst) = into.pairs.last_mut() {
                dst.copy_from(src);
            }
        }
    }

    fn snapshot_len(snapshot: &Self::Snapshot) -> u64 {
        snapshot.pairs.iter().fold(COUNT_BYTES, |n, p| n + p.record_bytes())
    }

    fn snapshot_read(snapshot: &Self::Snapshot, offset: u64, out: &mut [u8]) -> usize {
        let total = Self::snapshot_len(snapshot);
        let n = (total.saturating_sub(offset)).min(out.len() as u64) as usize;
        let out = &mut out[..n];
        let end = offset + n as u64;
        copy_segment(&(snapshot.pairs.len() as u32).to_le_bytes(), COUNT_BYTES, 0, offset, out);
        let mut base = COUNT_BYTES;
        for pair in &snapshot.pairs {
            let size = pair.record_bytes();
            if base >= end {
                break;
            }
            if base + size > offset {
                let (kl, vl) = (pair.key.len() as u64, pair.value.len() as u64);
                copy_segment(&(kl as u16).to_le_bytes(), 2, base, offset, out);
                copy_segment(pair.key.as_slice(), kl, base + 2, offset, out);
                copy_segment(&(vl as u16).to_le_bytes(), 2, base + 2 + kl, offset, out);
                copy_segment(&pair.value, vl, base + 4 + kl, offset, out);
            }
            base += size;
        }
        n
    }

    fn new_staging() -> Self::Staging {
        KvStaging::new()
    }

    fn stage(staging: &mut Self::Staging, offset: u64, bytes: &[u8]) -> Result<(), SnapshotError> {
        staging.receive(offset, bytes)
    }

    fn install(&mut self, staging: &mut Self::Staging, len: u64) -> Result<(), SnapshotError> {
        // Validated whole before the live map is touched.
        if !staging.is_whole(len) {
            return Err(SnapshotError::Corrupt);
        }
        core::mem::swap(&mut self.pairs, &mut staging.pairs);
        staging.pairs.clear();
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
    fn the_map_agrees_with_a_sorted_model_under_random_operations() {
        let mut rng = crate::test_rng::TestRng(0x1234_5678_9abc_def1);
        let mut app: KvApp<16, 10, 4> = KvApp::new();
        // The model: (key, value) sorted by key, as slices compare.
        let mut model: heapless::Vec<(heapless::Vec<u8, 10>, heapless::Vec<u8, 4>), 16> = heapless::Vec::new();
        let mut req = [0u8; 32];
        let mut reply = [0u8; 32];
        for step in 0..20_000 {
            let mut key = [0u8; 11];
            key.iter_mut().for_each(|b| *b = [0, 1, 0xff][rng.below(3) as usize]);
            if rng.below(2) == 0 {
                // Keys sharing their first eight bytes: whole words compare equal.
                key[..8].copy_from_slice(b"prefix:/");
            }
            let key = &key[..rng.below(12) as usize];
            let value = [step as u8; 5];
            let value = &value[..rng.below(6) as usize];
            let op = match rng.below(3) {
                0 => KvOp::Get(Bytes(key)),
                1 => KvOp::Put(Bytes(key), Bytes(value)),
                _ => KvOp::Delete(Bytes(key)),
            };
            let n = op.encode(&mut req).unwrap();
            let m = app.apply(&req[..n], &mut reply);
            let found = model.binary_search_by(|(k, _)| k[..].cmp(key));
            let expected = match op {
                KvOp::Get(_) => KvReply::Value(found.ok().map(|i| Bytes(&model[i].1[..]))),
                KvOp::Put(..) if key.len() > 10 => KvReply::Error(KvAppError::KeyTooLarge),
                KvOp::Put(..) if value.len() > 4 => KvReply::Error(KvAppError::ValueTooLarge),
                KvOp::Put(..) => match found {
                    Ok(i) => {
                        model[i].1 = heapless::Vec::from_slice(value).unwrap();
                        KvReply::Done
                    }
                    Err(_) if model.is_full() => KvReply::Error(KvAppError::Full),
                    Err(i) => {
                        let pair = (heapless::Vec::from_slice(key).unwrap(), heapless::Vec::from_slice(value).unwrap());
                        model.insert(i, pair).unwrap();
                        KvReply::Done
                    }
                },
                KvOp::Delete(_) => {
                    if let Ok(i) = found {
                        model.remove(i);
                    }
                    KvReply::Done
                }
            };
            assert_eq!(KvReply::decode(&reply[..m]), Some(expected), "step {step}: {op:?}");
            assert_eq!(app.len(), model.len());
        }
        for (pair, (k, v)) in app.pairs.iter().zip(&model) {
            assert_eq!((pair.key.as_slice(), &pair.value), (&k[..], v));
        }
    }

    #[test]
    fn the_hand_decoder_gives_postcards_verdict_on_any_request_bytes() {
        let mut rng = crate::test_rng::TestRng(0x2545_f491_4f6c_dd1d);
        let (mut accepted, mut refused) = (0, 0);
        let mut buf = [0u8; 64];
        for case in 0..100_000 {
            let (key, value) = ([7u8; 20], [9u8; 20]);
            let key = &key[..rng.below(21) as usize];
            let value = &value[..rng.below(21) as usize];
            let op = match rng.below(3) {
                0 => KvOp::Get(Bytes(key)),
                1 => KvOp::Put(Bytes(key), Bytes(value)),
                _ => KvOp::Delete(Bytes(key)),
            };
            let mut n = op.encode(&mut buf).unwrap();
            match case % 4 {
                0 => {}
                1 => n = rng.below(n as u64 + 1) as usize,
                2 => buf[rng.below(n as u64) as usize] = rng.next() as u8,
                _ => {
                    n = rng.below(12) as usize;
                    buf[..n].iter_mut().for_each(|b| *b = [0, 1, 2, 3, 0x80, rng.next() as u8][rng.below(6) as usize]);
                }
            }
            let ours = KvOp::decode(&buf[..n]);
            assert_eq!(ours, decode_exact::<KvOp<'_>>(&buf[..n]).ok(), "case {case}: {:02x?}", &buf[..n]);
            if ours.is_some() {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
        assert!(accepted > 30_000 && refused > 30_000, "both verdicts exercised: {accepted} / {refused}");
    }

    #[test]
    fn the_hand_encoder_writes_postcards_bytes_and_refuses_a_short_buffer() {
        let data = [5u8; 200];
        for (k, v) in [(0, 0), (1, 0), (3, 128), (127, 1), (128, 200), (200, 127)] {
            let (key, value) = (Bytes(&data[..k]), Bytes(&data[..v]));
            for op in [KvOp::Get(key), KvOp::Put(key, value), KvOp::Delete(key)] {
                let mut want = [0u8; 512];
                let want = postcard::to_slice(&op, &mut want).unwrap();
                let mut ours = [0u8; 512];
                let n = op.encode(&mut ours).unwrap();
                assert_eq!(&ours[..n], &*want, "{op:?}");
                for short in 0..n {
                    assert_eq!(op.encode(&mut ours[..short]), Err(EncodeError::BufferFull), "{op:?} in {short}");
                }
            }
        }
    }

    fn snapshot_of(app: &Small) -> Small {
        let mut s = Small::new_snapshot();
        app.snapshot(&mut s);
        s
    }

    /// Moves a snapshot into a fresh staging area in chunks of `chunk` bytes.
    fn staged(snap: &Small, chunk: usize) -> KvStaging<4, 8, 16> {
        let mut staging = Small::new_staging();
        let mut buf = [0u8; 64];
        let mut off = 0;
        while off < Small::snapshot_len(snap) {
            let n = Small::snapshot_read(snap, off, &mut buf[..chunk]);
            assert!(n > 0);
            Small::stage(&mut staging, off, &buf[..n]).unwrap();
            off += n as u64;
        }
        staging
    }

    #[test]
    fn a_snapshot_retaken_in_place_equals_the_map_whether_it_grew_or_shrank() {
        let mut src = Small::new();
        run(&mut src, KvOp::Put(Bytes(b"a"), Bytes(b"a long value")));
        run(&mut src, KvOp::Put(Bytes(b"bb"), Bytes(b"2")));
        run(&mut src, KvOp::Put(Bytes(b"c"), Bytes(b"3")));
        let mut snap = snapshot_of(&src);
        assert_eq!(snap, src);
        run(&mut src, KvOp::Delete(Bytes(b"a")));
        run(&mut src, KvOp::Put(Bytes(b"bb"), Bytes(b"")));
        src.snapshot(&mut snap);
        assert_eq!(snap, src, "fewer pairs, shorter values: nothing of the older snapshot is left");
        run(&mut src, KvOp::Put(Bytes(b"a"), Bytes(b"back")));
        run(&mut src, KvOp::Put(Bytes(b"d"), Bytes(b"4")));
        src.snapshot(&mut snap);
        assert_eq!(snap, src, "more pairs");
    }

    #[test]
    fn snapshot_is_the_documented_layout_and_stays_put_while_the_map_moves_on() {
        let mut src = Small::new();
        run(&mut src, KvOp::Put(Bytes(b"b"), Bytes(b"two")));
        run(&mut src, KvOp::Put(Bytes(b"a"), Bytes(b"1")));
        let snap = snapshot_of(&src);
        run(&mut src, KvOp::Put(Bytes(b"c"), Bytes(b"later")));
        let mut buf = [0u8; 64];
        let n = Small::snapshot_read(&snap, 0, &mut buf);
        let expected: &[u8] = &[2, 0, 0, 0, 1, 0, b'a', 1, 0, b'1', 1, 0, b'b', 3, 0, b't', b'w', b'o'];
        assert_eq!(&buf[..n], expected);
        assert_eq!(Small::snapshot_len(&snap), expected.len() as u64);
        assert_eq!(Small::snapshot_read(&snap, 5, &mut buf[..3]), 3);
        assert_eq!(&buf[..3], &expected[5..8], "a read from the middle of a record");
    }

    #[test]
    fn snapshot_moves_in_odd_sized_chunks_and_installs_whole() {
        let mut src = Small::new();
        run(&mut src, KvOp::Put(Bytes(b"b"), Bytes(b"two")));
        run(&mut src, KvOp::Put(Bytes(b"a"), Bytes(b"one")));
        run(&mut src, KvOp::Put(Bytes(b"c"), Bytes(b"")));
        let snap = snapshot_of(&src);
        for chunk in [1, 2, 7, 64] {
            let mut dst = Small::new();
            run(&mut dst, KvOp::Put(Bytes(b"zz"), Bytes(b"old")));
            dst.install(&mut staged(&snap, chunk), Small::snapshot_len(&snap)).unwrap();
            assert_eq!(dst, src, "chunks of {chunk}");
        }
    }

    #[test]
    fn corrupt_snapshot_is_refused_and_leaves_the_map_alone() {
        let mut src = Small::new();
        run(&mut src, KvOp::Put(Bytes(b"a"), Bytes(b"1")));
        run(&mut src, KvOp::Put(Bytes(b"b"), Bytes(b"2")));
        let snap = snapshot_of(&src);
        let total = Small::snapshot_len(&snap);
        let mut buf = [0u8; 64];
        let n = Small::snapshot_read(&snap, 0, &mut buf);
        // Swap the two keys: no longer sorted.
        buf[6] = b'b';
        buf[6 + 6] = b'a';
        let mut staging = Small::new_staging();
        Small::stage(&mut staging, 0, &buf[..n]).unwrap();
        let mut dst = Small::new();
        run(&mut dst, KvOp::Put(Bytes(b"keep"), Bytes(b"me")));
        assert_eq!(dst.install(&mut staging, total), Err(SnapshotError::Corrupt));
        assert_eq!(dst.get(b"keep"), Some(&b"me"[..]));
        assert_eq!(dst.install(&mut staging, total - 1), Err(SnapshotError::Corrupt));
        assert_eq!(Small::stage(&mut staging, total + 100, b"x"), Err(SnapshotError::OutOfRange), "out of order");
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
        let snap = snapshot_of(&full);
        let total = Small::snapshot_len(&snap);
        assert_eq!(total, COUNT_BYTES + 4 * (RECORD_OVERHEAD_BYTES + 8 + 16), "four records of the largest pair");
        for chunk in [1, 7, 31, 64] {
            let mut dst = Small::new();
            dst.install(&mut staged(&snap, chunk), total).unwrap();
            assert_eq!(dst, full, "chunks of {chunk}");
        }
        let mut bytes = [0u8; 128];
        let n = Small::snapshot_read(&snap, 0, &mut bytes);
        let refused = |patch: &dyn Fn(&mut [u8]), len: usize| {
            let mut b = bytes;
            patch(&mut b[..]);
            let mut s = Small::new_staging();
            let staged = Small::stage(&mut s, 0, &b[..len]);
            staged.is_err() || Small::new().install(&mut s, len as u64).is_err()
        };
        assert!(!refused(&|_| {}, n), "the unpatched snapshot installs");
        assert!(refused(&|b| b[4..6].copy_from_slice(&9u16.to_le_bytes()), n), "key of 9 > 8 bytes");
        assert!(refused(&|b| b[14..16].copy_from_slice(&17u16.to_le_bytes()), n), "value of 17 > 16 bytes");
        assert!(refused(&|b| b[0..4].copy_from_slice(&3u32.to_le_bytes()), n), "count 3 but four records");
        assert!(refused(&|b| b[0..4].copy_from_slice(&5u32.to_le_bytes()), n), "count 5 > K");
        assert!(refused(&|_| {}, n - 1), "a record cut short");
        let mut short = Small::new_staging();
        Small::stage(&mut short, 0, &2u32.to_le_bytes()).unwrap();
        assert_eq!(Small::new().install(&mut short, 4), Err(SnapshotError::Corrupt), "count 2 but no records staged");
    }
}
