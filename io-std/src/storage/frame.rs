//! Checksummed frames: how records sit in log and snapshot files.
//!
//! A frame is `[magic: 4 bytes "FLf1"][len: u32 LE][crc32 of payload: u32 LE][payload]`.
//! Parsing stops at the first frame that is short, too long, or fails its checksum, and
//! then tells the two ways that can happen apart: a **torn tail** (nothing valid follows:
//! a crash cut the last write short, and nothing of that write was acknowledged) or
//! **corruption** (a valid frame follows the bad one: bytes that were once written and
//! synced changed on disk). The magic number lets that search skip bytes cheaply. Zeros
//! from the stopping point to the end are no damage: a log segment is written full of zeros
//! ahead of time ([`crate::storage::prepare`]), and the zeros are where it ends.

use std::ops::Range;

/// First bytes of every frame.
pub const FRAME_MAGIC: [u8; 4] = *b"FLf1";
/// Bytes of a frame's header.
pub const FRAME_HEADER_BYTES: usize = 12;
/// Largest payload a frame may carry (the largest record is a 64 KiB batch plus a header).
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// Appends `payload` as one frame to `out`.
pub fn push(out: &mut Vec<u8>, payload: &[u8]) {
    debug_assert!(payload.len() <= MAX_PAYLOAD_BYTES, "records are bounded by the datagram size");
    out.extend_from_slice(&FRAME_MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// What went wrong where parsing stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// A torn tail from this offset to the end: safe to cut.
    TornTail {
        /// Where the torn frame starts.
        at: u64,
    },
    /// A bad frame at this offset with a valid frame after it.
    Corrupt {
        /// Where the bad frame starts.
        at: u64,
    },
}

/// The frames of a file.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Payload ranges of the intact frames before any damage, in order.
    pub payloads: Vec<Range<usize>>,
    /// Bytes the intact frames cover.
    pub good_len: usize,
    /// What stopped the parse, if it did not reach the end.
    pub damage: Option<Damage>,
}

/// The frame at `at`, if one is intact there: its payload range and total length.
fn frame_at(bytes: &[u8], at: usize) -> Option<(Range<usize>, usize)> {
    let header = bytes.get(at..at + FRAME_HEADER_BYTES)?;
    if header[0..4] != FRAME_MAGIC {
        return None;
    }
    let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let crc = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    if len > MAX_PAYLOAD_BYTES {
        return None;
    }
    let start = at + FRAME_HEADER_BYTES;
    let payload = bytes.get(start..start + len)?;
    (crc32fast::hash(payload) == crc).then_some((start..start + len, FRAME_HEADER_BYTES + len))
}

/// Parses `bytes` as frames back to back.
pub fn parse(bytes: &[u8]) -> Parsed {
    let mut parsed = Parsed::default();
    let mut at = 0;
    while at < bytes.len() {
        match frame_at(bytes, at) {
            Some((payload, len)) => {
                parsed.payloads.push(payload);
                at += len;
            }
            None if bytes[at..].iter().all(|&b| b == 0) => break,
            None => {
                let later = (at + 1..bytes.len())
                    .filter(|&i| bytes[i..].starts_with(&FRAME_MAGIC))
                    .any(|i| frame_at(bytes, i).is_some());
                parsed.damage = Some(match later {
                    true => Damage::Corrupt { at: at as u64 },
                    false => Damage::TornTail { at: at as u64 },
                });
                break;
            }
        }
    }
    parsed.good_len = at;
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            push(&mut out, p);
        }
        out
    }

    #[test]
    fn frames_round_trip() {
        let bytes = frames(&[b"one", b"", b"three"]);
        let p = parse(&bytes);
        let got: Vec<&[u8]> = p.payloads.iter().map(|r| &bytes[r.clone()]).collect();
        assert_eq!(got, [&b"one"[..], b"", b"three"]);
        assert_eq!(p.good_len, bytes.len());
        assert_eq!(p.damage, None);
    }

    #[test]
    fn a_cut_last_frame_is_a_torn_tail() {
        let mut bytes = frames(&[b"kept", b"cut short"]);
        let kept = FRAME_HEADER_BYTES + 4;
        for cut in 1..bytes.len() - kept {
            let p = parse(&bytes[..bytes.len() - cut]);
            assert_eq!(p.payloads.len(), 1, "cut {cut}");
            assert_eq!(p.damage, Some(Damage::TornTail { at: kept as u64 }));
        }
        let last = bytes.len() - 1;
        bytes[last] ^= 1; // a bad checksum with nothing after it: also the tail
        assert_eq!(parse(&bytes).damage, Some(Damage::TornTail { at: kept as u64 }));
    }

    #[test]
    fn zeros_after_the_frames_are_the_end_and_garbage_before_them_a_torn_tail() {
        let mut bytes = frames(&[b"one", b"two"]);
        let end = bytes.len();
        bytes.resize(end + 4096, 0);
        let p = parse(&bytes);
        assert_eq!((p.payloads.len(), p.good_len, p.damage), (2, end, None));
        bytes[end + 100] = 7; // half a write that never finished
        let p = parse(&bytes);
        assert_eq!((p.payloads.len(), p.damage), (2, Some(Damage::TornTail { at: end as u64 })));
    }

    #[test]
    fn a_bad_frame_followed_by_a_good_one_is_corruption() {
        let mut bytes = frames(&[b"first", b"second", b"third"]);
        let second = FRAME_HEADER_BYTES + 5;
        bytes[second + FRAME_HEADER_BYTES] ^= 0x40; // flip a payload bit of the second frame
        let p = parse(&bytes);
        assert_eq!(p.payloads.len(), 1);
        assert_eq!(p.damage, Some(Damage::Corrupt { at: second as u64 }));
        let mut header = frames(&[b"first", b"second", b"third"]);
        header[second + 5] = 0xff; // a length far beyond the file
        assert_eq!(parse(&header).damage, Some(Damage::Corrupt { at: second as u64 }));
    }
}
