//! The key-value application for std servers: the engine's `KvOp`/`KvReply` protocol and
//! snapshot format over a heap-backed sorted map.
//!
//! The engine's `KvApp` keeps fixed arrays for firmware; a server wants many more keys than
//! fit a static arena. This type implements the same [`App`] contract with the same request,
//! reply and snapshot encodings (fixed records of `KB`-byte keys and `VB`-byte values), so a
//! std replica and a firmware replica built with the same `KB`/`VB` agree byte for byte.

use fleet_engine::rsl::app::{App, SnapshotError};
use fleet_engine::rsl::apps::kv::{KvAppError, KvOp, KvReply};
use fleet_engine::wire::Bytes;

/// A replicated map of at most `max_keys` pairs; keys ≤ `KB` bytes, values ≤ `VB` bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StdKvApp<const KB: usize, const VB: usize> {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
    max_keys: usize,
}

const COUNT_BYTES: u64 = 4;

impl<const KB: usize, const VB: usize> StdKvApp<KB, VB> {
    const RECORD: u64 = (2 + KB + 2 + VB) as u64;

    /// An empty map holding at most `max_keys` pairs.
    pub fn new(max_keys: usize) -> Self {
        StdKvApp { pairs: Vec::new(), max_keys: max_keys.min(u32::MAX as usize) }
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The value under `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.find(key).ok().map(|i| &self.pairs[i].1[..])
    }

    fn find(&self, key: &[u8]) -> Result<usize, usize> {
        self.pairs.binary_search_by(|(k, _)| k[..].cmp(key))
    }

    fn execute<'r>(&'r mut self, op: KvOp<'_>) -> KvReply<'r> {
        match op {
            KvOp::Get(k) => KvReply::Value(self.get(k.0).map(Bytes)),
            KvOp::Put(k, v) => {
                if k.0.len() > KB {
                    return KvReply::Error(KvAppError::KeyTooLarge);
                }
                if v.0.len() > VB {
                    return KvReply::Error(KvAppError::ValueTooLarge);
                }
                match self.find(k.0) {
                    Ok(i) => self.pairs[i].1 = v.0.to_vec(),
                    Err(_) if self.pairs.len() >= self.max_keys => return KvReply::Error(KvAppError::Full),
                    Err(i) => self.pairs.insert(i, (k.0.to_vec(), v.0.to_vec())),
                }
                KvReply::Done
            }
            KvOp::Delete(k) => {
                if let Ok(i) = self.find(k.0) {
                    self.pairs.remove(i);
                }
                KvReply::Done
            }
        }
    }

    fn record_into(&self, i: usize, rec: &mut Vec<u8>) {
        let (k, v) = &self.pairs[i];
        rec.clear();
        rec.extend_from_slice(&(k.len() as u16).to_le_bytes());
        rec.extend_from_slice(k);
        rec.resize(2 + KB, 0);
        rec.extend_from_slice(&(v.len() as u16).to_le_bytes());
        rec.extend_from_slice(v);
        rec.resize(Self::RECORD as usize, 0);
    }
}

impl<const KB: usize, const VB: usize> App for StdKvApp<KB, VB> {
    type Staging = Vec<u8>;

    fn apply(&mut self, request: &[u8], reply: &mut [u8]) -> usize {
        let answer = match KvOp::decode(request) {
            Some(op) => self.execute(op),
            None => KvReply::Error(KvAppError::Malformed),
        };
        match postcard::to_slice(&answer, &mut *reply) {
            Ok(b) => b.len(),
            Err(_) => postcard::to_slice(&KvReply::Error(KvAppError::ReplyTooLarge), reply).map_or(0, |b| b.len()),
        }
    }

    fn snapshot_len(&self) -> u64 {
        COUNT_BYTES + self.pairs.len() as u64 * Self::RECORD
    }

    fn snapshot_read(&self, offset: u64, out: &mut [u8]) -> usize {
        let total = self.snapshot_len();
        let n = total.saturating_sub(offset).min(out.len() as u64) as usize;
        let count = (self.pairs.len() as u32).to_le_bytes();
        let mut rec = Vec::with_capacity(Self::RECORD as usize);
        let mut pos = offset;
        let end = offset + n as u64;
        while pos < end {
            let o = (pos - offset) as usize;
            if pos < COUNT_BYTES {
                out[o] = count[pos as usize];
                pos += 1;
                continue;
            }
            let i = ((pos - COUNT_BYTES) / Self::RECORD) as usize;
            self.record_into(i, &mut rec);
            let within = ((pos - COUNT_BYTES) % Self::RECORD) as usize;
            let take = (rec.len() - within).min((end - pos) as usize);
            out[o..o + take].copy_from_slice(&rec[within..within + take]);
            pos += take as u64;
        }
        n
    }

    fn new_staging() -> Vec<u8> {
        Vec::new()
    }

    fn stage(staging: &mut Vec<u8>, offset: u64, bytes: &[u8]) -> Result<(), SnapshotError> {
        // Chunks of one snapshot arrive in order (the engine checks), so staging appends. The
        // engine reuses one staging area for every transfer and does not clear it: a chunk at
        // offset 0 begins a new snapshot (a second transfer, or one restarted afresh), so the
        // bytes of an earlier one go.
        if offset == 0 {
            staging.clear();
        }
        if offset != staging.len() as u64 {
            return Err(SnapshotError::OutOfRange);
        }
        staging.extend_from_slice(bytes);
        Ok(())
    }

    fn install(&mut self, staging: &Vec<u8>, len: u64) -> Result<(), SnapshotError> {
        if staging.len() as u64 != len || len < COUNT_BYTES {
            return Err(SnapshotError::Corrupt);
        }
        let count = u32::from_le_bytes([staging[0], staging[1], staging[2], staging[3]]) as usize;
        if count > self.max_keys || len != COUNT_BYTES + count as u64 * Self::RECORD {
            return Err(SnapshotError::Corrupt);
        }
        let mut pairs = Vec::with_capacity(count);
        for rec in staging[COUNT_BYTES as usize..].chunks_exact(Self::RECORD as usize) {
            let kl = u16::from_le_bytes([rec[0], rec[1]]) as usize;
            let vl = u16::from_le_bytes([rec[2 + KB], rec[3 + KB]]) as usize;
            if kl > KB || vl > VB {
                return Err(SnapshotError::Corrupt);
            }
            let key = rec[2..2 + kl].to_vec();
            if pairs.last().is_some_and(|(last, _): &(Vec<u8>, Vec<u8>)| *last >= key) {
                return Err(SnapshotError::Corrupt);
            }
            pairs.push((key, rec[4 + KB..4 + KB + vl].to_vec()));
        }
        self.pairs = pairs;
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
        assert_eq!(std_app.snapshot_len(), fw_app.snapshot_len());
        let len = std_app.snapshot_len() as usize;
        let (mut a, mut b) = (vec![0u8; len], vec![0u8; len]);
        for off in (0..len).step_by(7) {
            let end = (off + 7).min(len);
            std_app.snapshot_read(off as u64, &mut a[off..end]);
            fw_app.snapshot_read(off as u64, &mut b[off..end]);
        }
        assert_eq!(a, b);
        let mut staging = StdKvApp::<8, 16>::new_staging();
        StdKvApp::<8, 16>::stage(&mut staging, 0, &a).unwrap();
        let mut copy: StdKvApp<8, 16> = StdKvApp::new(100);
        copy.install(&staging, len as u64).unwrap();
        assert_eq!(copy, std_app);
    }

    /// Regression: staging only appended, so once one snapshot had been staged (installed,
    /// or dropped part-way), every later transfer failed at its first chunk and a replica
    /// that fell behind the truncation point a second time never caught up.
    #[test]
    fn a_second_snapshot_stages_over_the_first() {
        type A = StdKvApp<8, 16>;
        let mut src: A = StdKvApp::new(100);
        put(&mut src, b"a", b"1");
        let read = |app: &A| {
            let mut bytes = vec![0u8; app.snapshot_len() as usize];
            app.snapshot_read(0, &mut bytes);
            bytes
        };
        let mut staging = A::new_staging();
        let first = read(&src);
        A::stage(&mut staging, 0, &first[..3]).unwrap(); // a transfer abandoned part-way
        A::stage(&mut staging, 0, &first).unwrap();
        let mut dst: A = StdKvApp::new(100);
        dst.install(&staging, first.len() as u64).unwrap();
        put(&mut src, b"b", b"2");
        let second = read(&src);
        A::stage(&mut staging, 0, &second).unwrap();
        dst.install(&staging, second.len() as u64).unwrap();
        assert_eq!(dst, src);
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
}
