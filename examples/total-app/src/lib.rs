//! **Your application**, as Fleet replicates it: a running total.
//!
//! This crate stands for the code a user of Fleet writes: a type that implements the
//! engine's [`App`] trait. Fleet's examples replicate it twice with no change to it: in a std
//! program through `fleet-io-std` (`io-std/examples/replicated_total.rs`) and in firmware on
//! an STM32 board through `fleet-io-embassy` (`examples/nucleo-f429zi`). It is `no_std`, has
//! no heap and no dependency but the engine, which is what lets the same code run in both.
//!
//! The protocol is the application's own, Fleet only carries its bytes: a request is 8
//! big-endian bytes to add ([`Total::request`]), the reply is the new total, 8 big-endian
//! bytes ([`Total::decode_reply`]). An empty request reads the total without adding.
#![no_std]

use fleet_engine::rsl::app::{App, SnapshotError};

/// Bytes of a request, of a reply and of a snapshot: one big-endian `u64`.
pub const TOTAL_BYTES: usize = 8;

/// The replicated state: a running total (wrapping at `u64::MAX`).
///
/// Every replica applies the same requests in the same order, so [`App::apply`] must be
/// deterministic: it depends only on the total and the request's bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Total(u64);

impl Total {
    /// A total of zero: the state every replica starts from.
    pub const fn new() -> Total {
        Total(0)
    }

    /// The current total.
    pub const fn value(&self) -> u64 {
        self.0
    }

    /// The request that adds `amount` to the total.
    pub const fn request(amount: u64) -> [u8; TOTAL_BYTES] {
        amount.to_be_bytes()
    }

    /// The total a reply carries, or `None` if `reply` is not a reply of this application.
    pub fn decode_reply(reply: &[u8]) -> Option<u64> {
        <[u8; TOTAL_BYTES]>::try_from(reply).ok().map(u64::from_be_bytes)
    }

    /// Writes the total into `reply`; its length, or 0 if `reply` cannot hold it.
    fn write_reply(&self, reply: &mut [u8]) -> usize {
        match reply.get_mut(..TOTAL_BYTES) {
            Some(r) => {
                r.copy_from_slice(&self.0.to_be_bytes());
                TOTAL_BYTES
            }
            None => 0,
        }
    }
}

impl App for Total {
    /// A snapshot arriving from another replica is assembled here before it replaces the
    /// live state.
    type Staging = [u8; TOTAL_BYTES];
    /// A point-in-time copy of the state, read while the total moves on (a copy is cheap
    /// here; a large state would use a persistent data structure).
    type Snapshot = u64;

    /// Adds a request's 8 bytes to the total and replies with the new total. A request of
    /// any other length adds nothing (it still gets the total as its reply: `apply` must not
    /// fail, and an error reply would be this application's own encoding).
    fn apply(&mut self, request: &[u8], reply: &mut [u8]) -> usize {
        let amount = <[u8; TOTAL_BYTES]>::try_from(request).map_or(0, u64::from_be_bytes);
        self.0 = self.0.wrapping_add(amount);
        self.write_reply(reply)
    }

    /// An empty request only reads the total, so the leader may answer it without a log
    /// write (`fleet_engine::rsl::reads`).
    fn is_query(request: &[u8]) -> bool {
        request.is_empty()
    }

    /// The total, as [`App::apply`] would reply to an empty request.
    fn query(&self, _request: &[u8], reply: &mut [u8]) -> usize {
        self.write_reply(reply)
    }

    fn new_snapshot() -> u64 {
        0
    }

    fn snapshot(&self, into: &mut u64) {
        *into = self.0;
    }

    fn snapshot_len(_snapshot: &u64) -> u64 {
        TOTAL_BYTES as u64
    }

    fn snapshot_read(snapshot: &u64, offset: u64, out: &mut [u8]) -> usize {
        let bytes = snapshot.to_be_bytes();
        let from = usize::try_from(offset).unwrap_or(TOTAL_BYTES).min(TOTAL_BYTES);
        let n = out.len().min(TOTAL_BYTES - from);
        out[..n].copy_from_slice(&bytes[from..from + n]);
        n
    }

    fn new_staging() -> [u8; TOTAL_BYTES] {
        [0; TOTAL_BYTES]
    }

    fn stage(staging: &mut [u8; TOTAL_BYTES], offset: u64, bytes: &[u8]) -> Result<(), SnapshotError> {
        let start = usize::try_from(offset).map_err(|_| SnapshotError::OutOfRange)?;
        let end = start.checked_add(bytes.len()).ok_or(SnapshotError::OutOfRange)?;
        let slot = staging.get_mut(start..end).ok_or(SnapshotError::OutOfRange)?;
        slot.copy_from_slice(bytes);
        Ok(())
    }

    /// Installs a staged snapshot: exactly 8 bytes, else the live total stays as it was.
    fn install(&mut self, staging: &mut [u8; TOTAL_BYTES], len: u64) -> Result<(), SnapshotError> {
        if len != TOTAL_BYTES as u64 {
            return Err(SnapshotError::Corrupt);
        }
        self.0 = u64::from_be_bytes(*staging);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies a request with a reply buffer as large as the replica's.
    fn apply(total: &mut Total, request: &[u8]) -> Option<u64> {
        let mut reply = [0u8; 16];
        let n = total.apply(request, &mut reply);
        Total::decode_reply(&reply[..n])
    }

    #[test]
    fn apply_adds_and_replies_with_the_new_total() {
        let mut total = Total::new();
        assert_eq!(apply(&mut total, &Total::request(5)), Some(5));
        assert_eq!(apply(&mut total, &Total::request(37)), Some(42));
        assert_eq!(total.value(), 42);
        // Not 8 bytes: adds nothing, still answers.
        assert_eq!(apply(&mut total, &[1, 2, 3]), Some(42));
        // Wraps instead of overflowing: every replica wraps alike.
        assert_eq!(apply(&mut total, &Total::request(u64::MAX)), Some(41));
        // A reply buffer too small for the total gets nothing.
        assert_eq!(total.apply(&Total::request(1), &mut [0u8; 4]), 0);
        assert_eq!(total.value(), 42);
    }

    #[test]
    fn an_empty_request_is_a_query_answered_as_apply_would() {
        let mut total = Total::new();
        apply(&mut total, &Total::request(9));
        assert!(Total::is_query(&[]));
        assert!(!Total::is_query(&Total::request(0)));
        let mut reply = [0u8; 8];
        let n = total.query(&[], &mut reply);
        assert_eq!(Total::decode_reply(&reply[..n]), Some(9));
        let mut copy = total;
        assert_eq!(apply(&mut copy, &[]), Some(9));
    }

    #[test]
    fn a_snapshot_round_trips_through_staging_in_pieces() {
        let mut source = Total::new();
        apply(&mut source, &Total::request(0x0102_0304_0506_0708));
        let mut snapshot = Total::new_snapshot();
        source.snapshot(&mut snapshot);
        // The state moves on; the snapshot keeps the point in time.
        apply(&mut source, &Total::request(1));

        let len = Total::snapshot_len(&snapshot);
        let mut staging = Total::new_staging();
        let mut offset = 0u64;
        let mut piece = [0u8; 3];
        loop {
            let n = Total::snapshot_read(&snapshot, offset, &mut piece);
            if n == 0 {
                break;
            }
            assert_eq!(Total::stage(&mut staging, offset, &piece[..n]), Ok(()));
            offset += n as u64;
        }
        assert_eq!(offset, len);

        let mut replica = Total::new();
        assert_eq!(replica.install(&mut staging, len), Ok(()));
        assert_eq!(replica.value(), 0x0102_0304_0506_0708);
    }

    #[test]
    fn a_wrong_length_is_refused_and_the_total_kept() {
        let mut replica = Total::new();
        apply(&mut replica, &Total::request(7));
        let mut staging = Total::new_staging();
        assert_eq!(Total::stage(&mut staging, 0, &Total::request(99)), Ok(()));
        assert_eq!(replica.install(&mut staging, 7), Err(SnapshotError::Corrupt));
        assert_eq!(replica.install(&mut staging, 9), Err(SnapshotError::Corrupt));
        assert_eq!(replica.value(), 7);
        // Bytes past the 8 a total has never land in the staging area.
        assert_eq!(Total::stage(&mut staging, 6, &[0; 3]), Err(SnapshotError::OutOfRange));
        assert_eq!(Total::stage(&mut staging, u64::MAX, &[0]), Err(SnapshotError::OutOfRange));
    }
}
