//! IronRSL's counter: every request increments a `u64`; the reply is the new value. Fleet
//! adds one query, [`Counter::QUERY`], which reads the value without changing it.

use crate::rsl::app::{App, SnapshotError};

/// The counter application of the IronFleet paper.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Counter {
    /// The current value.
    pub value: u64,
}

/// Staging for an incoming counter snapshot: its 8 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CounterStaging([u8; 8]);

impl Counter {
    /// The one query: replies with the value and leaves it unchanged.
    pub const QUERY: &'static [u8] = b"?";

    fn reply_value(&self, reply: &mut [u8]) -> usize {
        let bytes = self.value.to_le_bytes();
        let n = bytes.len().min(reply.len());
        reply[..n].copy_from_slice(&bytes[..n]);
        n
    }
}

impl App for Counter {
    type Staging = CounterStaging;
    type Snapshot = Counter;

    fn apply(&mut self, request: &[u8], reply: &mut [u8]) -> usize {
        if !Self::is_query(request) {
            // IronRSL caps at 2^63-1 rather than wrapping; saturating keeps the same spirit.
            self.value = self.value.saturating_add(1);
        }
        self.reply_value(reply)
    }

    fn is_query(request: &[u8]) -> bool {
        request == Self::QUERY
    }

    fn query(&self, _request: &[u8], reply: &mut [u8]) -> usize {
        self.reply_value(reply)
    }

    fn new_snapshot() -> Counter {
        Counter::default()
    }

    fn snapshot(&self, into: &mut Counter) {
        *into = *self;
    }

    fn snapshot_len(_snapshot: &Counter) -> u64 {
        8
    }

    fn snapshot_read(snapshot: &Counter, offset: u64, out: &mut [u8]) -> usize {
        let bytes = snapshot.value.to_le_bytes();
        let start = (offset as usize).min(8);
        let n = (8 - start).min(out.len());
        out[..n].copy_from_slice(&bytes[start..start + n]);
        n
    }

    fn new_staging() -> CounterStaging {
        CounterStaging::default()
    }

    fn stage(staging: &mut CounterStaging, offset: u64, bytes: &[u8]) -> Result<(), SnapshotError> {
        let end = offset.checked_add(bytes.len() as u64).ok_or(SnapshotError::OutOfRange)?;
        if end > 8 {
            return Err(SnapshotError::OutOfRange);
        }
        staging.0[offset as usize..end as usize].copy_from_slice(bytes);
        Ok(())
    }

    fn install(&mut self, staging: &mut CounterStaging, len: u64) -> Result<(), SnapshotError> {
        if len != 8 {
            return Err(SnapshotError::Corrupt);
        }
        self.value = u64::from_le_bytes(staging.0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_increments_and_replies_with_the_new_value() {
        let mut c = Counter::default();
        let mut reply = [0u8; 8];
        assert_eq!(c.apply(b"", &mut reply), 8);
        assert_eq!(c.apply(b"anything", &mut reply), 8);
        assert_eq!(u64::from_le_bytes(reply), 2);
    }

    #[test]
    fn the_query_reads_without_incrementing_through_either_path() {
        let mut c = Counter { value: 5 };
        let mut reply = [0u8; 8];
        assert!(Counter::is_query(Counter::QUERY) && !Counter::is_query(b"??"));
        assert_eq!(c.query(Counter::QUERY, &mut reply), 8);
        assert_eq!(u64::from_le_bytes(reply), 5);
        assert_eq!(c.apply(Counter::QUERY, &mut reply), 8);
        assert_eq!((c.value, u64::from_le_bytes(reply)), (5, 5));
    }

    #[test]
    fn snapshot_round_trips_in_chunks() {
        let mut src = Counter { value: 0x0102_0304_0506_0708 };
        let mut snap = Counter::new_snapshot();
        src.snapshot(&mut snap);
        src.value += 1; // the live state moves on; the snapshot does not
        assert_ne!(src.value, snap.value);
        let mut staging = Counter::new_staging();
        let mut buf = [0u8; 3];
        let mut off = 0;
        while off < Counter::snapshot_len(&snap) {
            let n = Counter::snapshot_read(&snap, off, &mut buf);
            Counter::stage(&mut staging, off, &buf[..n]).unwrap();
            off += n as u64;
        }
        let mut dst = Counter::default();
        dst.install(&mut staging, 8).unwrap();
        assert_eq!(dst.value, 0x0102_0304_0506_0708);
        assert_eq!(Counter::stage(&mut staging, 7, b"ab"), Err(SnapshotError::OutOfRange));
        assert_eq!(dst.install(&mut staging, 7), Err(SnapshotError::Corrupt));
    }
}
