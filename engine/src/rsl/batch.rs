//! Request batches: the value Paxos agrees on for one operation number.
//!
//! A batch is stored and sent as its encoding: postcard [`BatchEntry`] values back to back.
//! The proposer's queue already holds entries in this form, so nominating a batch copies a
//! prefix of bytes and never re-encodes. The empty batch is IronRSL's no-op.

use serde::{Deserialize, Serialize};

use crate::endpoint::Endpoint;
use crate::wire::Bytes;

/// What a batch entry's request bytes are. Encoded as `false`/`true` were before
/// membership changes, so batches without a change keep their bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum EntryKind {
    /// One request for the application.
    Single,
    /// A group of requests from a pipelined session ([`super::group`]).
    Group,
    /// A membership change ([`super::membership`]), executed by the replica itself.
    Change,
}

/// One client request inside a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BatchEntry<'a> {
    /// Where the client receives its reply; also the client's identity.
    pub client: Endpoint,
    /// The client's sequence number for this request.
    pub seqno: u64,
    /// Opaque request bytes for the application, or a group of them ([`super::group`]).
    #[serde(borrow)]
    pub request: Bytes<'a>,
    /// What `request` is.
    pub kind: EntryKind,
}

/// Why batch bytes were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidBatch;

/// Iterates the entries of batch bytes that [`validate`] accepted.
#[derive(Clone, Debug)]
pub struct Entries<'a> {
    items: crate::wire::Items<'a, BatchEntry<'a>>,
}

impl<'a> Iterator for Entries<'a> {
    type Item = BatchEntry<'a>;
    fn next(&mut self) -> Option<BatchEntry<'a>> {
        // Validated batches always parse; an unvalidated tail simply ends the iteration.
        self.items.next()?.ok()
    }
}

/// The entries of `batch`.
pub fn entries(batch: &[u8]) -> Entries<'_> {
    Entries { items: crate::wire::items(batch) }
}

/// Checks that `batch` is whole entries, at most `max_entries` of them, each group a valid
/// one; returns the count.
pub fn validate(batch: &[u8], max_entries: usize) -> Result<usize, InvalidBatch> {
    let valid = |e: &BatchEntry<'_>| match e.kind {
        EntryKind::Single => true,
        EntryKind::Group => super::group::validate(e.request.0).is_ok(),
        EntryKind::Change => super::membership::well_formed(e.request.0),
    };
    crate::wire::count_valid(batch, max_entries, valid).ok_or(InvalidBatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::append;

    #[test]
    fn entries_round_trip_and_count() {
        let mut buf: heapless::Vec<u8, 128> = heapless::Vec::new();
        let c = Endpoint::v4([10, 0, 0, 1], 9);
        for s in 1..=3u64 {
            append(&mut buf, &BatchEntry { client: c, seqno: s, request: Bytes(b"xy"), kind: EntryKind::Single })
                .unwrap();
        }
        assert_eq!(validate(&buf, 3), Ok(3));
        assert_eq!(validate(&buf, 2), Err(InvalidBatch), "more entries than allowed");
        let seqnos: heapless::Vec<u64, 4> = entries(&buf).map(|e| e.seqno).collect();
        assert_eq!(&seqnos[..], &[1, 2, 3]);
        assert_eq!(validate(&buf[..buf.len() - 1], 3), Err(InvalidBatch), "truncated entry");
        assert_eq!(validate(&[], 0), Ok(0), "the empty batch is the no-op");
        let mut groups: heapless::Vec<u8, 64> = heapless::Vec::new();
        append(&mut groups, &BatchEntry { client: c, seqno: 1, request: Bytes(&[1, b'a']), kind: EntryKind::Group })
            .unwrap();
        assert_eq!(validate(&groups, 1), Ok(1));
        append(&mut groups, &BatchEntry { client: c, seqno: 2, request: Bytes(&[]), kind: EntryKind::Group }).unwrap();
        assert_eq!(validate(&groups, 2), Err(InvalidBatch), "an empty group");
    }
}
