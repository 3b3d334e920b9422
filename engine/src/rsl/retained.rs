//! The retained tail: executed batches `[first_opn, next_opn)` kept in a bounded byte ring.
//!
//! It serves two readers. A lagging replica is brought up by replaying the batches it
//! missed (cheap) instead of by a whole snapshot, whenever the tail still reaches back to
//! it; and a durable binding reads each executed batch from here to log it. Together with
//! the replica's frozen snapshot at `S` (`first_opn <= S <= next_opn`, kept by the replica)
//! it describes every state from `S` to the present.
//!
//! Entries are `[opn: u64 LE][ballot seqno: u64 LE][ballot proposer: u8][len: u32 LE][batch]`,
//! written contiguously (an entry that does not fit before the end of the buffer starts at
//! offset 0). Pushing drops the oldest entries to make room, but never one at or above the
//! `keep_from` operation the caller names: it refuses instead and changes nothing, and the
//! caller takes a new snapshot (which makes the older entries unnecessary). Lookups of the
//! next operation after the last one found are O(1); any other lookup walks the entries
//! from the oldest, at most `TB / ENTRY_HEADER_BYTES` of them.

use super::ballot::Ballot;

/// Bytes of an entry's header.
pub const ENTRY_HEADER_BYTES: usize = 21;

/// One retained executed batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Its operation number.
    pub opn: u64,
    /// The ballot it was decided in.
    pub bal: Ballot,
    /// The encoded batch.
    pub batch: &'a [u8],
}

/// Why a push was refused (nothing changed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushError {
    /// Making room would drop an entry the caller still needs.
    Full,
    /// Not the next operation, or an entry larger than the whole ring.
    Invalid,
}

/// Where the entries are: `[head, tail)`, or when wrapped `[head, wrap_end)` then `[0, tail)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Positions {
    head: usize,
    tail: usize,
    wrap_end: Option<usize>,
    first_opn: u64,
    count: u64,
}

impl Positions {
    const EMPTY: Positions = Positions { head: 0, tail: 0, wrap_end: None, first_opn: 0, count: 0 };

    /// Forgets the oldest entry.
    fn drop_oldest(&mut self, buf: &[u8]) {
        let mut next = self.head + ENTRY_HEADER_BYTES + len_at(buf, self.head);
        if self.wrap_end == Some(next) {
            next = 0;
            self.wrap_end = None;
        }
        self.head = next;
        self.first_opn += 1;
        self.count -= 1;
        if self.count == 0 {
            *self = Positions { first_opn: self.first_opn, ..Positions::EMPTY };
        }
    }

    /// Plans room for an entry of `size` bytes (`size <= TB`): drops the oldest entries
    /// while needed, refusing to drop one at or above `keep_from`. Returns the offset.
    fn make_room(&mut self, size: usize, cap: usize, keep_from: u64, buf: &[u8]) -> Result<usize, PushError> {
        loop {
            if self.count == 0 {
                return Ok(0);
            }
            match self.wrap_end {
                None if self.tail + size <= cap => return Ok(self.tail),
                None if size <= self.head => {
                    self.wrap_end = Some(self.tail);
                    return Ok(0);
                }
                Some(_) if self.tail + size <= self.head => return Ok(self.tail),
                _ => {}
            }
            if self.first_opn >= keep_from {
                return Err(PushError::Full);
            }
            self.drop_oldest(buf);
        }
    }
}

fn len_at(buf: &[u8], at: usize) -> usize {
    let b = &buf[at + 17..at + 21];
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
}

/// Executed batches in a ring of `TB` bytes.
#[derive(Clone, Debug)]
pub struct Retained<const TB: usize> {
    /// The ring's bytes; grows to `TB` the first time round, so unused capacity is never
    /// written (nor, on a server, committed to memory).
    buf: heapless::Vec<u8, TB>,
    /// Operation number the next entry must have.
    next_opn: u64,
    at: Positions,
    /// Entries found lately, `(opn, offset)`, most recent first: each reader (the
    /// executor at the head, a supplier walking a lagging replica's gap, the durable
    /// hand-out) goes forward from its own, instead of walking from the oldest entry.
    cursors: [Option<(u64, usize)>; CURSORS],
}

/// Remembered positions in a [`Retained`] ring.
const CURSORS: usize = 4;

impl<const TB: usize> Retained<TB> {
    /// An empty tail whose next entry will be operation `next_opn`.
    pub const fn new(next_opn: u64) -> Self {
        Retained {
            buf: heapless::Vec::new(),
            next_opn,
            at: Positions { first_opn: next_opn, ..Positions::EMPTY },
            cursors: [None; CURSORS],
        }
    }

    /// Oldest retained operation (`== next_opn()` when empty).
    pub fn first_opn(&self) -> u64 {
        self.at.first_opn
    }

    /// The operation the next push must carry.
    pub fn next_opn(&self) -> u64 {
        self.next_opn
    }

    /// Number of retained entries.
    pub fn len(&self) -> u64 {
        self.at.count
    }

    /// True when nothing is retained.
    pub fn is_empty(&self) -> bool {
        self.at.count == 0
    }

    /// Bytes in use.
    pub fn used_bytes(&self) -> usize {
        match (self.at.count, self.at.wrap_end) {
            (0, _) => 0,
            (_, None) => self.at.tail - self.at.head,
            (_, Some(end)) => end - self.at.head + self.at.tail,
        }
    }

    /// Forgets every entry; the next push must be operation `next_opn`.
    pub fn reset(&mut self, next_opn: u64) {
        self.next_opn = next_opn;
        self.at = Positions { first_opn: next_opn, ..Positions::EMPTY };
        self.cursors = [None; CURSORS];
    }

    /// Appends the batch of operation `opn` (which must be `next_opn()`), dropping the
    /// oldest entries below `keep_from` as needed. Refused, changing nothing, if that is
    /// not enough.
    pub fn push(&mut self, opn: u64, bal: Ballot, batch: &[u8], keep_from: u64) -> Result<(), PushError> {
        let size = ENTRY_HEADER_BYTES + batch.len();
        if opn != self.next_opn || size > TB || batch.len() > u32::MAX as usize {
            return Err(PushError::Invalid);
        }
        let mut plan = self.at;
        let at = plan.make_room(size, TB, keep_from, &self.buf)?;
        if self.buf.len() < at + size {
            // Cannot fail: at + size <= TB.
            let _ = self.buf.resize(at + size, 0);
        }
        let e = &mut self.buf[at..at + size];
        e[0..8].copy_from_slice(&opn.to_le_bytes());
        e[8..16].copy_from_slice(&bal.seqno.to_le_bytes());
        e[16] = bal.proposer;
        e[17..21].copy_from_slice(&(batch.len() as u32).to_le_bytes());
        e[21..].copy_from_slice(batch);
        if plan.count == 0 {
            plan.head = at;
            plan.first_opn = opn;
        }
        plan.tail = at + size;
        plan.count += 1;
        self.at = plan;
        self.next_opn += 1;
        let first = self.at.first_opn;
        for c in self.cursors.iter_mut() {
            if c.is_some_and(|(opn, _)| opn < first) {
                *c = None;
            }
        }
        Ok(())
    }

    /// The entry of operation `opn`, if retained.
    pub fn get(&mut self, opn: u64) -> Option<Entry<'_>> {
        if opn < self.at.first_opn || opn >= self.next_opn {
            return None;
        }
        // The nearest remembered position at or before `opn`, else the oldest entry.
        let (slot, (mut at_opn, mut at)) = self
            .cursors
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.filter(|(c, _)| *c <= opn).map(|c| (i, c)))
            .max_by_key(|(_, (c, _))| *c)
            .unwrap_or((CURSORS - 1, (self.at.first_opn, self.at.head)));
        while at_opn < opn {
            at = self.after(at);
            at_opn += 1;
        }
        // Most recent first: the used slot moves to the front, the others shift down.
        self.cursors[..=slot].rotate_right(1);
        self.cursors[0] = Some((opn, at));
        Some(self.entry_at(at))
    }

    /// Offset of the entry after the one at `at`.
    fn after(&self, at: usize) -> usize {
        let next = at + ENTRY_HEADER_BYTES + len_at(&self.buf, at);
        match self.at.wrap_end {
            Some(end) if next == end => 0,
            _ => next,
        }
    }

    fn entry_at(&self, at: usize) -> Entry<'_> {
        let h = &self.buf[at..at + ENTRY_HEADER_BYTES];
        let opn = u64::from_le_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]);
        let seqno = u64::from_le_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]);
        let start = at + ENTRY_HEADER_BYTES;
        Entry { opn, bal: Ballot { seqno, proposer: h[16] }, batch: &self.buf[start..start + len_at(&self.buf, at)] }
    }

    /// Every entry, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = Entry<'_>> + '_ {
        let mut at = self.at.head;
        (0..self.at.count).map(move |_| {
            let e = self.entry_at(at);
            at = self.after(at);
            e
        })
    }

    /// Local invariant, in O(1) (it runs after every step): the positions describe
    /// `next_opn - first_opn` entries inside the buffer.
    pub fn invariant(&self) -> Result<(), &'static str> {
        if self.at.first_opn + self.at.count != self.next_opn {
            return Err("retained tail does not end at its next operation");
        }
        let within = match self.at.wrap_end {
            None => self.at.head <= self.at.tail && self.at.tail <= self.buf.len(),
            Some(end) => self.at.tail <= self.at.head && self.at.head < end && end <= self.buf.len(),
        };
        if self.at.count > 0 && !within {
            return Err("retained positions outside the buffer");
        }
        Ok(())
    }

    /// Walks every entry: they are the consecutive operations `[first_opn, next_opn)` and
    /// fill exactly the bytes the positions say. O(entries): for tests.
    pub fn check_entries(&self) -> Result<(), &'static str> {
        self.invariant()?;
        let mut bytes = 0;
        for (i, e) in self.iter().enumerate() {
            if e.opn != self.at.first_opn + i as u64 {
                return Err("retained entries are not consecutive operations");
            }
            bytes += ENTRY_HEADER_BYTES + e.batch.len();
        }
        if bytes != self.used_bytes() {
            return Err("retained entries do not fill the bytes in use");
        }
        Ok(())
    }
}

impl<const TB: usize> PartialEq for Retained<TB> {
    /// Two tails are equal when they retain the same entries (wherever the ring put them).
    fn eq(&self, other: &Self) -> bool {
        self.at.first_opn == other.at.first_opn && self.next_opn == other.next_opn && self.iter().eq(other.iter())
    }
}

impl<const TB: usize> Eq for Retained<TB> {}

impl<const TB: usize> core::hash::Hash for Retained<TB> {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.at.first_opn.hash(state);
        self.next_opn.hash(state);
        for e in self.iter() {
            e.bal.hash(state);
            e.batch.hash(state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Ballot = Ballot { seqno: 1, proposer: 0 };

    fn batch(opn: u64, len: usize) -> heapless::Vec<u8, 64> {
        (0..len).map(|i| (opn as u8).wrapping_add(i as u8)).collect()
    }

    #[test]
    fn entries_come_back_in_order_and_the_oldest_go_first() {
        let mut r: Retained<128> = Retained::new(5);
        for opn in 5..30 {
            r.push(opn, B, &batch(opn, 10), opn).unwrap();
            r.check_entries().unwrap();
            // Everything pushed that is still retained reads back.
            for o in r.first_opn()..=opn {
                assert_eq!(r.get(o).unwrap().batch, &batch(o, 10)[..], "opn {o} after pushing {opn}");
            }
        }
        assert!(r.first_opn() > 5, "old entries were dropped to make room");
        assert_eq!(r.next_opn(), 30);
        assert!(r.used_bytes() <= 128);
        assert!(r.get(r.first_opn() - 1).is_none());
        assert!(r.get(30).is_none());
    }

    #[test]
    fn a_push_that_would_drop_a_kept_entry_is_refused_and_changes_nothing() {
        let mut r: Retained<100> = Retained::new(0);
        r.push(0, B, &batch(0, 20), 0).unwrap();
        r.push(1, B, &batch(1, 20), 0).unwrap();
        let before = r.clone();
        assert_eq!(r.push(2, B, &batch(2, 40), 1), Err(PushError::Full), "would drop opn 1, which is kept");
        assert_eq!(r, before);
        r.push(2, B, &batch(2, 40), 2).unwrap();
        assert_eq!(r.first_opn(), 2, "both older entries dropped");
        assert_eq!(r.get(2).unwrap().batch, &batch(2, 40)[..]);
    }

    #[test]
    fn pushes_out_of_order_or_larger_than_the_ring_are_invalid() {
        let mut r: Retained<64> = Retained::new(3);
        assert_eq!(r.push(4, B, b"x", 0), Err(PushError::Invalid));
        assert_eq!(r.push(3, B, &[0; 44], 0), Err(PushError::Invalid), "21 + 44 > 64");
        r.push(3, B, &[0; 43], 3).unwrap();
        assert_eq!(r.len(), 1);
        r.reset(10);
        assert!(r.is_empty());
        assert_eq!(r.push(10, B, b"y", 10), Ok(()));
    }

    #[test]
    fn a_random_workload_keeps_the_invariant_and_every_retained_entry_reads_back() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rng = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut r: Retained<200> = Retained::new(0);
        let mut keep = 0;
        for opn in 0..2000u64 {
            let len = (rng() % 60) as usize;
            if rng() % 7 == 0 {
                keep = opn; // a "snapshot" at opn: older entries may go
            }
            match r.push(opn, B, &batch(opn, len), keep) {
                Ok(()) => {}
                Err(PushError::Full) => {
                    keep = opn;
                    r.push(opn, B, &batch(opn, len), keep).unwrap();
                }
                Err(e) => panic!("{e:?}"),
            }
            r.check_entries().unwrap();
            assert!(r.first_opn() <= keep, "an entry at or above {keep} was dropped");
            let probe = r.first_opn() + rng() % r.len();
            let got = r.get(probe).unwrap();
            assert_eq!(got.opn, probe);
            assert_eq!(got.batch, &batch(probe, got.batch.len())[..]);
        }
    }

    #[test]
    fn readers_walking_apart_each_keep_their_place() {
        // A supplier walks an old gap forward while the executor reads the newest entry
        // and the ring wraps under both: every read is right, and the supplier's walk
        // resumes from its own position (its slot stays among the remembered ones).
        let mut r: Retained<4096> = Retained::new(0);
        for opn in 0..40 {
            r.push(opn, B, &[opn as u8; 30], 0).unwrap();
        }
        let mut supplier = r.first_opn();
        for opn in 40..200u64 {
            r.push(opn, B, &[opn as u8; 30], opn).unwrap();
            assert_eq!(r.get(opn).map(|e| e.opn), Some(opn), "the executor's read");
            supplier = supplier.max(r.first_opn());
            let e = r.get(supplier).unwrap();
            assert_eq!((e.opn, e.batch[0]), (supplier, supplier as u8), "the supplier's read");
            assert!(r.cursors.iter().flatten().any(|(c, _)| *c == supplier));
            supplier += 1;
        }
    }
}
