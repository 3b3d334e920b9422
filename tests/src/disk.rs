//! A simulated disk for one host: an append-only log whose unsynced tail may be lost at a
//! crash, and two generations of snapshot files (the newest and the one before), each
//! replaced atomically; the newest may be found damaged at a restart, and the binding then
//! falls back on the previous one and the longer log kept for it. Protocol-agnostic:
//! records are opaque bytes.
//!
//! What a crash does, as on a real machine: the log keeps every synced record and a random
//! prefix of the unsynced ones (the kernel may have written some; a torn record is cut by the
//! binding's checksums, so it is the same as not written); a snapshot being written is lost
//! (its temporary file never got renamed).

use crate::rng::Rng;

/// A snapshot being written: its records, when the write finishes, and the log position the
/// binding started a new segment at (older records go once the snapshot is durable).
#[derive(Clone, Debug)]
pub struct SnapshotWrite {
    /// The snapshot's records.
    pub records: Vec<Vec<u8>>,
    /// Global time (µs) when the write completes.
    pub done_at_us: u64,
    /// Log records before this index are covered by the snapshot and the records after it.
    pub segment_start: usize,
}

/// One host's disk.
#[derive(Clone, Debug, Default)]
pub struct SimDisk {
    /// The log, synced prefix first.
    pub log: Vec<Vec<u8>>,
    /// Records `[0, synced)` are durable.
    pub synced: usize,
    /// The last whole snapshot written.
    pub snapshot: Option<Vec<Vec<u8>>>,
    /// The snapshot before it: with the log from its segment on, it is a second way back.
    pub previous: Option<Vec<Vec<u8>>>,
    /// Where the newest snapshot's segment starts in the log: records before it are kept
    /// for the previous snapshot, and go when the next snapshot is written.
    pub newest_segment: usize,
    /// The newest snapshot's bytes were damaged on disk (found by its checksums at a
    /// restart).
    pub snapshot_damaged: bool,
    /// A snapshot write in progress.
    pub writing: Option<SnapshotWrite>,
    /// Syncs done.
    pub syncs: u64,
}

impl SimDisk {
    /// Appends a record (not yet durable).
    pub fn append(&mut self, record: &[u8]) {
        self.log.push(record.to_vec());
    }

    /// Makes every record durable.
    pub fn sync(&mut self) {
        if self.synced < self.log.len() {
            self.synced = self.log.len();
            self.syncs += 1;
        }
    }

    /// True if records wait for a sync.
    pub fn has_unsynced(&self) -> bool {
        self.synced < self.log.len()
    }

    /// The snapshot write finished: it becomes the newest, the newest becomes the previous,
    /// and the log records only the old previous needed go.
    pub fn finish_snapshot(&mut self) -> bool {
        let Some(w) = self.writing.take() else { return false };
        let cut = self.newest_segment.min(self.synced);
        self.log.drain(..cut);
        self.synced -= cut;
        self.newest_segment = w.segment_start - cut;
        self.previous = self.snapshot.take();
        self.snapshot = Some(w.records);
        self.snapshot_damaged = false;
        true
    }

    /// At a restart: the snapshot to recover from and whether the newest was damaged (then
    /// it is set aside, and the previous one serves).
    pub fn usable_snapshot(&mut self) -> (Option<Vec<Vec<u8>>>, bool) {
        if !self.snapshot_damaged {
            return (self.snapshot.clone(), false);
        }
        self.snapshot_damaged = false;
        self.snapshot = self.previous.take();
        self.newest_segment = 0;
        (self.snapshot.clone(), true)
    }

    /// A crash: unsynced records survive as a random prefix, a snapshot being written is
    /// lost.
    pub fn crash(&mut self, rng: &mut Rng) {
        let unsynced = (self.log.len() - self.synced) as u64;
        let kept = self.synced + rng.below(unsynced + 1) as usize;
        self.log.truncate(kept);
        self.synced = kept;
        self.writing = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_keeps_synced_records_and_a_prefix_of_the_rest() {
        let mut rng = Rng::new(7);
        for _ in 0..50 {
            let mut d = SimDisk::default();
            d.append(b"a");
            d.sync();
            for r in [b"b", b"c", b"d"] {
                d.append(r);
            }
            d.crash(&mut rng);
            assert!(!d.log.is_empty() && d.log.len() <= 4);
            assert_eq!(d.log[0], b"a");
            assert!(d.log.iter().zip([b"a", b"b", b"c", b"d"]).all(|(x, y)| x == y), "a prefix, in order");
            assert!(!d.has_unsynced());
        }
    }

    #[test]
    fn snapshots_keep_two_generations_and_the_log_the_older_one_needs() {
        let mut d = SimDisk::default();
        for r in [b"1", b"2", b"3"] {
            d.append(r);
        }
        d.sync();
        d.writing = Some(SnapshotWrite { records: vec![b"s1".to_vec()], done_at_us: 0, segment_start: 2 });
        assert!(d.finish_snapshot());
        assert_eq!(d.snapshot, Some(vec![b"s1".to_vec()]));
        assert_eq!(d.log.len(), 3, "nothing goes yet: there was no snapshot before");
        d.append(b"4");
        d.sync();
        d.writing = Some(SnapshotWrite { records: vec![b"s2".to_vec()], done_at_us: 0, segment_start: 4 });
        assert!(d.finish_snapshot());
        assert_eq!(d.log, vec![b"3".to_vec(), b"4".to_vec()], "what s1 needs stays");
        assert_eq!(d.previous, Some(vec![b"s1".to_vec()]));
        d.writing = Some(SnapshotWrite { records: vec![b"lost".to_vec()], done_at_us: 0, segment_start: 2 });
        d.snapshot_damaged = true;
        d.crash(&mut Rng::new(1));
        assert!(d.writing.is_none() && !d.finish_snapshot(), "a write in progress is lost");
        assert_eq!(d.usable_snapshot(), (Some(vec![b"s1".to_vec()]), true), "the damaged newest is set aside");
    }
}
