//! Request batches: the value Paxos agrees on for one operation number.
//!
//! A batch is stored and sent as its encoding: postcard [`BatchEntry`] values back to back.
//! The proposer's queue already holds entries in this form, so nominating a batch copies a
//! prefix of bytes and never re-encodes. The empty batch is IronRSL's no-op.

use serde::{Deserialize, Serialize};

use crate::endpoint::{Endpoint, IpAddr};
use crate::reader::Reader;
use crate::wire::{Bytes, EncodeError};
use crate::writer::{put_bytes, put_varint};

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
    rest: &'a [u8],
}

impl<'a> Iterator for Entries<'a> {
    type Item = BatchEntry<'a>;
    fn next(&mut self) -> Option<BatchEntry<'a>> {
        // Validated batches always parse; an unvalidated tail simply ends the iteration.
        let (entry, rest) = take_entry(self.rest)?;
        self.rest = rest;
        Some(entry)
    }
}

/// The entries of `batch`.
pub fn entries(batch: &[u8]) -> Entries<'_> {
    Entries { rest: batch }
}

/// The entry at the front of `bytes` and what follows it, or `None` if they do not start
/// with one. The same verdicts as postcard's `take_from_bytes::<BatchEntry>`, read by hand
/// ([`crate::reader`]): every replica parses every entry, and serde's generic path was a
/// sixth of the engine's time.
#[inline]
pub(crate) fn take_entry(bytes: &[u8]) -> Option<(BatchEntry<'_>, &[u8])> {
    let mut r = Reader::new(bytes);
    let ip = match r.u32()? {
        0 => IpAddr::V4(r.array()?),
        1 => IpAddr::V6(r.array()?),
        _ => return None,
    };
    let client = Endpoint { ip, port: r.u16()? };
    let seqno = r.u64()?;
    let request = Bytes(r.bytes()?);
    let kind = match r.u32()? {
        0 => EntryKind::Single,
        1 => EntryKind::Group,
        2 => EntryKind::Change,
        _ => return None,
    };
    Some((BatchEntry { client, seqno, request, kind }, r.rest))
}

/// Appends `entry`'s encoding to `out`: postcard's bytes, written by hand, since the leader
/// encodes every request it queues and postcard's serializer was 3 % of the engine bench.
/// A full `out` is left as it was.
pub(crate) fn append_entry<const N: usize>(
    out: &mut heapless::Vec<u8, N>,
    entry: &BatchEntry<'_>,
) -> Result<(), EncodeError> {
    // Everything but the request: the address's variant and octets, the port, the seqno
    // and the request's length, each varint at its longest.
    let mut head = [0u8; 1 + 16 + 3 + 10 + 10];
    // The variant index is a one-byte varint.
    let mut at = match entry.client.ip {
        IpAddr::V4(octets) => put_bytes(&mut head, 1, &octets)?,
        IpAddr::V6(octets) => {
            head[0] = 1;
            put_bytes(&mut head, 1, &octets)?
        }
    };
    at = put_varint(&mut head, at, u64::from(entry.client.port))?;
    at = put_varint(&mut head, at, entry.seqno)?;
    at = put_varint(&mut head, at, entry.request.0.len() as u64)?;
    let kind = match entry.kind {
        EntryKind::Single => 0,
        EntryKind::Group => 1,
        EntryKind::Change => 2,
    };
    if out.capacity() - out.len() < at + entry.request.0.len() + 1 {
        return Err(EncodeError::BufferFull);
    }
    // Cannot fail: the room was checked above.
    let _ = out.extend_from_slice(&head[..at]);
    let _ = out.extend_from_slice(entry.request.0);
    let _ = out.push(kind);
    Ok(())
}

/// Checks that `batch` is whole entries, at most `max_entries` of them, each group a valid
/// one; returns the count.
pub fn validate(batch: &[u8], max_entries: usize) -> Result<usize, InvalidBatch> {
    let mut rest = batch;
    let mut count = 0;
    while !rest.is_empty() {
        let (entry, after) = take_entry(rest).ok_or(InvalidBatch)?;
        let valid = match entry.kind {
            EntryKind::Single => true,
            EntryKind::Group => super::group::validate(entry.request.0).is_ok(),
            EntryKind::Change => super::membership::well_formed(entry.request.0),
        };
        if count >= max_entries || !valid {
            return Err(InvalidBatch);
        }
        count += 1;
        rest = after;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::TestRng;
    use crate::wire::append;

    /// A random entry's encoding, its integers spread over every varint length.
    fn random_entry(rng: &mut TestRng, out: &mut heapless::Vec<u8, 512>, request: &mut [u8; 300]) {
        let ip = if rng.below(2) == 0 {
            IpAddr::V4(rng.next().to_le_bytes()[..4].try_into().unwrap())
        } else {
            let mut o = [0u8; 16];
            o[..8].copy_from_slice(&rng.next().to_le_bytes());
            o[8..].copy_from_slice(&rng.next().to_le_bytes());
            IpAddr::V6(o)
        };
        let port = (rng.next() >> rng.below(64)) as u16;
        let seqno = rng.next() >> rng.below(64);
        let len = rng.below(request.len() as u64 + 1) as usize;
        request.iter_mut().for_each(|b| *b = rng.next() as u8);
        let kind = [EntryKind::Single, EntryKind::Group, EntryKind::Change][rng.below(3) as usize];
        let e = BatchEntry { client: Endpoint { ip, port }, seqno, request: Bytes(&request[..len]), kind };
        out.clear();
        append(out, &e).unwrap();
    }

    #[test]
    fn the_hand_reader_gives_postcards_verdict_on_any_bytes() {
        let mut rng = TestRng(0x2545_f491_4f6c_dd1d);
        let mut buf: heapless::Vec<u8, 512> = heapless::Vec::new();
        let mut request = [0u8; 300];
        let (mut accepted, mut refused) = (0, 0);
        for case in 0..200_000 {
            random_entry(&mut rng, &mut buf, &mut request);
            match case % 4 {
                0 => {}
                // Cut anywhere.
                1 => buf.truncate(rng.below(buf.len() as u64 + 1) as usize),
                // Bytes changed, mostly within the short header fields.
                2 => {
                    for _ in 0..1 + rng.below(3) {
                        let at = rng.below(buf.len().min(40) as u64) as usize;
                        buf[at] = rng.next() as u8;
                    }
                }
                // Random bytes, biased to small values and continuation bits.
                _ => {
                    buf.clear();
                    for _ in 0..rng.below(40) {
                        let b = match rng.below(3) {
                            0 => rng.below(4) as u8,
                            1 => 0x80 | rng.next() as u8,
                            _ => rng.next() as u8,
                        };
                        buf.push(b).unwrap();
                    }
                }
            }
            let ours = take_entry(&buf);
            let postcards = postcard::take_from_bytes::<BatchEntry<'_>>(&buf).ok();
            assert_eq!(ours, postcards, "case {case}: {:02x?}", &buf[..]);
            if ours.is_some() {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
        assert!(accepted > 60_000 && refused > 60_000, "both verdicts exercised: {accepted} / {refused}");
        // Longer-than-needed varints are accepted; bits beyond the type are not.
        for bytes in
            [&[0, 1, 2, 3, 4, 0x85, 0x80, 0x00, 0x80, 0x00, 0, 0][..], &[0, 1, 2, 3, 4, 0xff, 0xff, 0x04, 0, 0, 0]]
        {
            assert_eq!(take_entry(bytes), postcard::take_from_bytes::<BatchEntry<'_>>(bytes).ok(), "{bytes:02x?}");
        }
    }

    #[test]
    fn entries_are_appended_as_postcard_appends_them() {
        let mut rng = TestRng(0x9e37_79b9_7f4a_7c15);
        let mut theirs: heapless::Vec<u8, 512> = heapless::Vec::new();
        let mut request = [0u8; 300];
        for case in 0..20_000 {
            random_entry(&mut rng, &mut theirs, &mut request);
            let (entry, _) = take_entry(&theirs).unwrap();
            let mut ours: heapless::Vec<u8, 512> = heapless::Vec::new();
            ours.extend_from_slice(b"kept").unwrap();
            append_entry(&mut ours, &entry).unwrap();
            assert_eq!(&ours[4..], &theirs[..], "case {case}");
            // One byte short of room: refused, and what was there stays.
            let mut short: heapless::Vec<u8, 512> = heapless::Vec::new();
            let filler = 512 - theirs.len() + 1;
            short.extend_from_slice(&[7u8; 512][..filler]).unwrap();
            assert_eq!(append_entry(&mut short, &entry), Err(EncodeError::BufferFull), "case {case}");
            assert_eq!(&short[..], &[7u8; 512][..filler], "case {case}");
        }
    }

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
