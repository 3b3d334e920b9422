//! The RSL messages every operation sends, written and read by hand: a client's `Request`
//! and its `Reply`, and a pipelined session's `Requests` and `Replies`. Each is a `seqno`
//! and a byte string. Through serde's generic path, encoding the request on the client and
//! the reply on the leader and decoding both cost about a tenth of the engine bench.
//!
//! The bytes are postcard's, both ways: the variant index and the seqno as varints, then
//! the length-prefixed bytes (see `engine/src/reader.rs` for postcard's rules). Differential
//! tests below hold the writer to `postcard::to_slice` and the reader to postcard's
//! verdicts on random, cut and corrupted bodies. Every other kind goes through postcard.

use super::msg::RslMsg;
use crate::reader::Reader;
use crate::wire::{self, Bytes, DecodeError, EncodeError, Protocol};
use crate::writer::{put_bytes, put_varint};

/// Variant indices of the four kinds (their order in [`RslMsg`]).
const REQUEST: u32 = 0;
const REPLY: u32 = 6;
const REQUESTS: u32 = 15;
const REPLIES: u32 = 16;

/// The kind, seqno and bytes of `msg`, if it is one of the four.
fn parts<'a>(msg: &RslMsg<'a>) -> Option<(u32, u64, &'a [u8])> {
    match *msg {
        RslMsg::Request { seqno, request } => Some((REQUEST, seqno, request.0)),
        RslMsg::Reply { seqno, reply } => Some((REPLY, seqno, reply.0)),
        RslMsg::Requests { seqno, requests } => Some((REQUESTS, seqno, requests.0)),
        RslMsg::Replies { seqno, replies } => Some((REPLIES, seqno, replies.0)),
        _ => None,
    }
}

/// Writes `msg`'s body (postcard's encoding) into `buf`; returns its length.
pub(crate) fn encode_body(msg: &RslMsg<'_>, buf: &mut [u8]) -> Result<usize, EncodeError> {
    let Some((kind, seqno, bytes)) = parts(msg) else { return wire::to_slice(msg, buf) };
    let mut at = put_varint(buf, 0, u64::from(kind))?;
    at = put_varint(buf, at, seqno)?;
    at = put_varint(buf, at, bytes.len() as u64)?;
    put_bytes(buf, at, bytes)
}

/// Reads an RSL message body, which must be used up.
pub(crate) fn decode_body(body: &[u8]) -> Result<RslMsg<'_>, DecodeError> {
    let mut r = Reader::new(body);
    let kind = r.u32().ok_or(DecodeError::Malformed)?;
    if !matches!(kind, REQUEST | REPLY | REQUESTS | REPLIES) {
        return wire::decode_exact(body);
    }
    let seqno = r.u64().ok_or(DecodeError::Malformed)?;
    let bytes = Bytes(r.bytes().ok_or(DecodeError::Malformed)?);
    if !r.rest.is_empty() {
        return Err(DecodeError::TrailingBytes);
    }
    Ok(match kind {
        REQUEST => RslMsg::Request { seqno, request: bytes },
        REPLY => RslMsg::Reply { seqno, reply: bytes },
        REQUESTS => RslMsg::Requests { seqno, requests: bytes },
        _ => RslMsg::Replies { seqno, replies: bytes },
    })
}

/// [`wire::decode_rsl`] for [`RslMsg`]: the sender's cluster identity and the message.
pub fn decode_rsl(datagram: &[u8]) -> Result<(u32, RslMsg<'_>), DecodeError> {
    let (cluster, body) = wire::cluster_body(Protocol::Rsl, datagram)?;
    decode_body(body).map(|m| (cluster, m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rsl::ballot::Ballot;
    use crate::test_rng::TestRng;

    fn postcard_body(msg: &RslMsg<'_>) -> heapless::Vec<u8, 512> {
        let mut buf = [0u8; 512];
        let n = postcard::to_slice(msg, &mut buf).unwrap().len();
        heapless::Vec::from_slice(&buf[..n]).unwrap()
    }

    fn samples<'a>(seqno: u64, bytes: &'a [u8]) -> [RslMsg<'a>; 4] {
        let b = Bytes(bytes);
        [
            RslMsg::Request { seqno, request: b },
            RslMsg::Reply { seqno, reply: b },
            RslMsg::Requests { seqno, requests: b },
            RslMsg::Replies { seqno, replies: b },
        ]
    }

    #[test]
    fn the_writer_writes_postcards_bytes_and_refuses_a_short_buffer() {
        let data = [7u8; 300];
        let seqnos = [0, 1, 127, 128, 16_383, 16_384, u64::from(u32::MAX), u64::MAX];
        for seqno in seqnos {
            for len in [0, 1, 127, 128, 300] {
                for msg in samples(seqno, &data[..len]) {
                    let want = postcard_body(&msg);
                    let mut buf = [0u8; 512];
                    let n = encode_body(&msg, &mut buf).unwrap();
                    assert_eq!(&buf[..n], want.as_slice(), "{msg:?}");
                    for short in 0..want.len() {
                        assert_eq!(encode_body(&msg, &mut buf[..short]), Err(EncodeError::BufferFull));
                    }
                }
            }
        }
        // Another kind goes through postcard.
        let other = RslMsg::OneA { bal: Ballot { seqno: 3, proposer: 1 } };
        let mut buf = [0u8; 64];
        let n = encode_body(&other, &mut buf).unwrap();
        assert_eq!(&buf[..n], postcard_body(&other).as_slice());
    }

    /// The reader's verdict equals postcard's (`wire::decode_exact`) on `body`.
    fn same_verdict(body: &[u8]) {
        let by_hand = decode_body(body);
        let by_postcard = wire::decode_exact::<RslMsg<'_>>(body);
        assert_eq!(by_hand, by_postcard, "{body:02x?}");
    }

    #[test]
    fn the_reader_agrees_with_postcard_on_valid_cut_corrupted_and_random_bodies() {
        let mut rng = TestRng(0x5eed_c0de);
        let data: [u8; 200] = core::array::from_fn(|i| i as u8);
        for round in 0..20_000u32 {
            let seqno = match round % 4 {
                0 => rng.below(128),
                1 => rng.below(1 << 20),
                2 => rng.next(),
                _ => u64::MAX - rng.below(4),
            };
            let len = rng.below(200) as usize;
            let which = rng.below(4) as usize;
            let msg = samples(seqno, &data[..len])[which];
            let body = postcard_body(&msg);
            same_verdict(&body);
            assert_eq!(decode_body(&body), Ok(msg));
            // Cut anywhere, one byte flipped, one byte too many.
            same_verdict(&body[..rng.below(body.len() as u64) as usize]);
            let mut flipped = body.clone();
            let at = rng.below(flipped.len() as u64) as usize;
            flipped[at] ^= 1 << rng.below(8);
            same_verdict(&flipped);
            let mut longer = body.clone();
            let _ = longer.push(rng.below(256) as u8);
            same_verdict(&longer);
            // Random bytes behind one of the four kinds (and a few others).
            let mut random = [0u8; 24];
            random.iter_mut().for_each(|b| *b = rng.below(256) as u8);
            random[0] = [0, 6, 15, 16, 1, 5, 21, 22, 0x80][rng.below(9) as usize];
            same_verdict(&random[..rng.below(24) as usize + 1]);
        }
        // Non-shortest varints are accepted, as postcard accepts them.
        same_verdict(&[0x80, 0x00, 0x85, 0x00, 0x01, 0xaa]);
        assert_eq!(decode_body(&[0x80, 0x00, 0x85, 0x00, 0x01, 0xaa]), Ok(samples(5, &[0xaa])[0]));
        // An empty body, and a kind past the last.
        same_verdict(&[]);
        same_verdict(&[99]);
    }

    #[test]
    fn a_datagram_round_trips_with_its_cluster() {
        let mut buf = [0u8; 64];
        let n = wire::encode_rsl(0xabcd, &RslMsg::Reply { seqno: 9, reply: Bytes(b"ok") }, &mut buf).unwrap();
        assert_eq!(decode_rsl(&buf[..n]), Ok((0xabcd, RslMsg::Reply { seqno: 9, reply: Bytes(b"ok") })));
        assert_eq!(decode_rsl(&buf[..2]), Err(DecodeError::TooShort));
        buf[1] ^= 0xff;
        assert!(matches!(decode_rsl(&buf[..n]), Err(DecodeError::UnsupportedVersion(_))));
    }
}
