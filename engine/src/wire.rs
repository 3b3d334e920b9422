//! The versioned envelope every datagram carries, and the byte-slice type messages borrow.
//!
//! Layout of a datagram: `[MAGIC, WIRE_VERSION, protocol] ++ postcard(message)`; an RSL or
//! KV datagram also carries its sender's cluster identity after the envelope:
//! `[MAGIC, WIRE_VERSION, protocol, cluster (u32 LE)] ++ postcard(message)` (see
//! [`encode_in_cluster`]).
//! Decoding borrows from the datagram (no copies, no heap) and never panics: every failure
//! is a [`DecodeError`] the caller counts and drops. A message must be consumed exactly;
//! trailing bytes are an error so that one byte string has one meaning.

use core::fmt;
use serde::de::{Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, Serializer};

/// First byte of every Fleet datagram: filters stray traffic cheaply.
pub const MAGIC: u8 = 0xF1;
/// Version of the wire format. Bumped on any incompatible change (2: RSL datagrams carry
/// the cluster identity; 3: batch entries and forwarded requests say whether they hold a
/// request group; 4: a 2b carries no batch).
pub const WIRE_VERSION: u8 = 4;
/// Bytes of the envelope header before the postcard body.
pub const HEADER_BYTES: usize = 3;
/// Bytes before an RSL or KV datagram's body: the envelope and the cluster identity.
pub const RSL_HEADER_BYTES: usize = HEADER_BYTES + 4;
/// The cluster identity sent by a client or tool that does not know it: replicas and hosts
/// accept it from clients only (`RslConfig::identity`, `KvConfig::identity`).
pub const ANY_CLUSTER: u32 = 0;

/// Whether `protocol`'s datagrams carry a cluster identity (RSL and KV do; durable
/// records, which are never sent, do not).
pub fn carries_cluster(protocol: Protocol) -> bool {
    matches!(protocol, Protocol::Rsl | Protocol::Kv)
}
/// The payload of one UDP datagram on a 1500-byte MTU: the default datagram bound.
pub const DEFAULT_MAX_DATAGRAM_BYTES: usize = 1472;
/// The largest UDP payload over IPv4: the upper bound any configuration may choose.
pub const MAX_UDP_PAYLOAD_BYTES: usize = 65507;

/// Which protocol a datagram belongs to; the third header byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Protocol {
    /// IronRSL replicas and their clients.
    Rsl = b'R',
    /// IronKV hosts and their clients.
    Kv = b'K',
    /// A replica's durable-state record (written to storage, never sent).
    Durable = b'D',
    /// A KV host's durable record: a logged input or a piece of its image (written to
    /// storage, never sent; `kv::durable`).
    KvDurable = b'S',
}

/// Why an incoming datagram was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DecodeError {
    /// Shorter than the envelope header.
    TooShort,
    /// The first byte is not [`MAGIC`]: not a Fleet datagram.
    BadMagic,
    /// A wire version this build does not speak.
    UnsupportedVersion(u8),
    /// A Fleet datagram for another protocol (e.g. a KV message sent to an RSL replica).
    WrongProtocol(u8),
    /// The body is not a valid postcard encoding of the expected message.
    Malformed,
    /// The body decoded but bytes were left over.
    TrailingBytes,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooShort => f.write_str("datagram shorter than the Fleet header"),
            DecodeError::BadMagic => f.write_str("not a Fleet datagram (bad magic byte)"),
            DecodeError::UnsupportedVersion(v) => write!(f, "unsupported wire version {v}"),
            DecodeError::WrongProtocol(p) => write!(f, "datagram for another protocol ({p:#04x})"),
            DecodeError::Malformed => f.write_str("malformed message body"),
            DecodeError::TrailingBytes => f.write_str("trailing bytes after the message"),
        }
    }
}

/// Why a message could not be written into a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum EncodeError {
    /// The buffer (the datagram bound, or what is left of the outbox) is too small.
    BufferFull,
}

/// Writes the envelope and `msg` into `buf`; returns the datagram length. An RSL or KV
/// datagram carries [`ANY_CLUSTER`] (use [`encode_in_cluster`] to name the cluster).
pub fn encode<T: Serialize>(protocol: Protocol, msg: &T, buf: &mut [u8]) -> Result<usize, EncodeError> {
    if carries_cluster(protocol) {
        return encode_in_cluster(protocol, ANY_CLUSTER, msg, buf);
    }
    if buf.len() < HEADER_BYTES {
        return Err(EncodeError::BufferFull);
    }
    buf[0] = MAGIC;
    buf[1] = WIRE_VERSION;
    buf[2] = protocol as u8;
    Ok(HEADER_BYTES + to_slice(msg, &mut buf[HEADER_BYTES..])?)
}

/// Writes an RSL datagram from a member of cluster `cluster` into `buf`; returns its length.
pub fn encode_rsl<T: Serialize>(cluster: u32, msg: &T, buf: &mut [u8]) -> Result<usize, EncodeError> {
    encode_in_cluster(Protocol::Rsl, cluster, msg, buf)
}

/// Writes a datagram of `protocol` (RSL or KV) from a member of cluster `cluster`.
pub fn encode_in_cluster<T: Serialize>(
    protocol: Protocol,
    cluster: u32,
    msg: &T,
    buf: &mut [u8],
) -> Result<usize, EncodeError> {
    encode_in_cluster_with(protocol, cluster, buf, |body| to_slice(msg, body))
}

/// [`encode_in_cluster`] with the body written by `body` (into the buffer after the
/// header; it returns the body's length).
pub(crate) fn encode_in_cluster_with(
    protocol: Protocol,
    cluster: u32,
    buf: &mut [u8],
    body: impl FnOnce(&mut [u8]) -> Result<usize, EncodeError>,
) -> Result<usize, EncodeError> {
    if buf.len() < RSL_HEADER_BYTES {
        return Err(EncodeError::BufferFull);
    }
    buf[0] = MAGIC;
    buf[1] = WIRE_VERSION;
    buf[2] = protocol as u8;
    buf[HEADER_BYTES..RSL_HEADER_BYTES].copy_from_slice(&cluster.to_le_bytes());
    Ok(RSL_HEADER_BYTES + body(&mut buf[RSL_HEADER_BYTES..])?)
}

/// Checks an RSL datagram's envelope and decodes it: the sender's cluster identity and the
/// message.
pub fn decode_rsl<'a, T: Deserialize<'a>>(datagram: &'a [u8]) -> Result<(u32, T), DecodeError> {
    decode_in_cluster(Protocol::Rsl, datagram)
}

/// Checks a `protocol` (RSL or KV) datagram's envelope and decodes it: the sender's cluster
/// identity and the message.
pub fn decode_in_cluster<'a, T: Deserialize<'a>>(
    protocol: Protocol,
    datagram: &'a [u8],
) -> Result<(u32, T), DecodeError> {
    let (cluster, body) = cluster_body(protocol, datagram)?;
    decode_exact(body).map(|m| (cluster, m))
}

/// Checks a `protocol` (RSL or KV) datagram's envelope: the sender's cluster identity and
/// the message body.
pub(crate) fn cluster_body(protocol: Protocol, datagram: &[u8]) -> Result<(u32, &[u8]), DecodeError> {
    let body = check_envelope(protocol, datagram)?;
    let Some((id, body)) = body.split_at_checked(RSL_HEADER_BYTES - HEADER_BYTES) else {
        return Err(DecodeError::TooShort);
    };
    Ok((u32::from_le_bytes([id[0], id[1], id[2], id[3]]), body))
}

/// Checks the envelope and decodes the body, borrowing byte fields from `datagram` (for
/// RSL and KV, whatever the cluster identity: replicas and hosts use [`decode_in_cluster`]).
pub fn decode<'a, T: Deserialize<'a>>(protocol: Protocol, datagram: &'a [u8]) -> Result<T, DecodeError> {
    if carries_cluster(protocol) {
        return decode_in_cluster(protocol, datagram).map(|(_, m)| m);
    }
    decode_exact(check_envelope(protocol, datagram)?)
}

/// The body after a valid envelope for `protocol`.
fn check_envelope(protocol: Protocol, datagram: &[u8]) -> Result<&[u8], DecodeError> {
    let (header, body) = match datagram.split_at_checked(HEADER_BYTES) {
        Some(parts) => parts,
        None => return Err(DecodeError::TooShort),
    };
    if header[0] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if header[1] != WIRE_VERSION {
        return Err(DecodeError::UnsupportedVersion(header[1]));
    }
    if header[2] != protocol as u8 {
        return Err(DecodeError::WrongProtocol(header[2]));
    }
    Ok(body)
}

/// Decodes a postcard value that must use all of `bytes`.
pub(crate) fn decode_exact<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, DecodeError> {
    match postcard::take_from_bytes(bytes) {
        Ok((value, [])) => Ok(value),
        Ok(_) => Err(DecodeError::TrailingBytes),
        Err(_) => Err(DecodeError::Malformed),
    }
}

/// The postcard values of type `T` written back to back in `bytes` (batch entries, a
/// group's requests, transfer pairs, join runs), in order; a value that does not decode
/// ends the sequence with [`DecodeError::Malformed`].
pub(crate) fn items<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Items<'a, T> {
    Items { rest: bytes, item: core::marker::PhantomData }
}

/// The iterator [`items`] returns.
#[derive(Clone, Debug)]
pub(crate) struct Items<'a, T> {
    rest: &'a [u8],
    item: core::marker::PhantomData<T>,
}

impl<'a, T: Deserialize<'a>> Iterator for Items<'a, T> {
    type Item = Result<T, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match postcard::take_from_bytes::<T>(self.rest) {
            Ok((value, rest)) => {
                self.rest = rest;
                Some(Ok(value))
            }
            Err(_) => {
                self.rest = &[];
                Some(Err(DecodeError::Malformed))
            }
        }
    }
}

/// How many values [`items`] finds in `bytes` if every one decodes and passes `valid` and
/// there are at most `max`; `None` otherwise.
pub(crate) fn count_valid<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
    max: usize,
    valid: impl Fn(&T) -> bool,
) -> Option<usize> {
    let mut count = 0;
    for item in items::<T>(bytes) {
        match item {
            Ok(value) if count < max && valid(&value) => count += 1,
            _ => return None,
        }
    }
    Some(count)
}

/// A borrowed byte string on the wire (a length prefix, then the bytes).
///
/// serde would otherwise treat `&[u8]` as a sequence on the way out; this newtype pins
/// both directions to postcard's byte-string form and keeps decoding zero-copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Bytes<'a>(pub &'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Bytes<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BorrowedBytes;
        impl<'de> Visitor<'de> for BorrowedBytes {
            type Value = &'de [u8];
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a borrowed byte string")
            }
            fn visit_borrowed_bytes<E: serde::de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(v)
            }
        }
        deserializer.deserialize_bytes(BorrowedBytes).map(Bytes)
    }
}

/// A postcard output that appends to a `heapless::Vec` in place.
struct AppendFlavor<'v, const N: usize>(&'v mut heapless::Vec<u8, N>);

impl<const N: usize> postcard::ser_flavors::Flavor for AppendFlavor<'_, N> {
    type Output = ();
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data).map_err(|_| postcard::Error::SerializeBufferFull)
    }
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if data.len() <= SHORT_BYTES {
            // Varints and small fields: a byte loop, not a `memcpy` call.
            return data.iter().try_for_each(|&b| self.try_push(b));
        }
        self.0.extend_from_slice(data).map_err(|_| postcard::Error::SerializeBufferFull)
    }
    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Pieces up to this long are copied byte by byte when encoding: postcard writes every
/// varint as a slice, and a `memcpy` call for two bytes costs more than the copy.
const SHORT_BYTES: usize = 8;

/// A postcard output into a slice, like postcard's own `Slice` but copying short pieces
/// byte by byte ([`SHORT_BYTES`]). `finalize` returns the length written.
struct SliceFlavor<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl postcard::ser_flavors::Flavor for SliceFlavor<'_> {
    type Output = usize;
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        let slot = self.buf.get_mut(self.len).ok_or(postcard::Error::SerializeBufferFull)?;
        *slot = data;
        self.len += 1;
        Ok(())
    }
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if data.len() <= SHORT_BYTES {
            return data.iter().try_for_each(|&b| self.try_push(b));
        }
        let end = self.len.checked_add(data.len()).ok_or(postcard::Error::SerializeBufferFull)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(postcard::Error::SerializeBufferFull)?;
        dst.copy_from_slice(data);
        self.len = end;
        Ok(())
    }
    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.len)
    }
}

/// Encodes `msg` into `buf` (postcard); returns the length written.
pub(crate) fn to_slice<T: Serialize + ?Sized>(msg: &T, buf: &mut [u8]) -> Result<usize, EncodeError> {
    postcard::serialize_with_flavor(msg, SliceFlavor { buf, len: 0 }).map_err(|_| EncodeError::BufferFull)
}

/// Encodes `value` at the end of `vec` (postcard), leaving `vec` unchanged if it does not fit.
///
/// Costs only the bytes written: it never touches the vector's unused capacity (the
/// request queue's capacity is a megabyte on servers).
pub(crate) fn append<T: Serialize, const N: usize>(
    vec: &mut heapless::Vec<u8, N>,
    value: &T,
) -> Result<(), EncodeError> {
    let start = vec.len();
    match postcard::serialize_with_flavor(value, AppendFlavor(vec)) {
        Ok(()) => Ok(()),
        Err(_) => {
            vec.truncate(start);
            Err(EncodeError::BufferFull)
        }
    }
}

/// Encodes `value` (postcard) at the start of `buf`; returns the bytes written, or `None`
/// if it does not fit.
pub(crate) fn append_slice<T: Serialize>(buf: &mut [u8], value: &T) -> Option<usize> {
    to_slice(value, buf).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Sample<'a> {
        n: u64,
        #[serde(borrow)]
        b: Bytes<'a>,
    }

    #[test]
    fn both_flavors_write_what_postcard_writes_or_report_a_full_buffer() {
        let long = [5u8; 40];
        for (n, b) in [(0, &long[..0]), (127, &long[..3]), (300, &long[..8]), (u64::MAX, &long[..9]), (9, &long[..])] {
            let sample = Sample { n, b: Bytes(b) };
            let mut expected = [0u8; 64];
            let len = postcard::to_slice(&sample, &mut expected).unwrap().len();
            for room in 0..=len + 1 {
                let mut buf = [0xaau8; 64];
                let got = to_slice(&sample, &mut buf[..room]);
                if room < len {
                    assert_eq!(got, Err(EncodeError::BufferFull), "n {n}, room {room}");
                    continue;
                }
                assert_eq!(got, Ok(len));
                assert_eq!(&buf[..len], &expected[..len]);
                let mut vec: heapless::Vec<u8, 64> = heapless::Vec::from_slice(&[1]).unwrap();
                append(&mut vec, &sample).unwrap();
                assert_eq!(&vec[1..], &expected[..len]);
            }
        }
        let mut small: heapless::Vec<u8, 4> = heapless::Vec::from_slice(&[1]).unwrap();
        assert_eq!(append(&mut small, &Sample { n: 1, b: Bytes(&long[..3]) }), Err(EncodeError::BufferFull));
        assert_eq!(&small[..], &[1], "a value that does not fit leaves the vector as it was");
    }

    #[test]
    fn round_trip_borrows_the_bytes() {
        let mut buf = [0u8; 64];
        let n = encode(Protocol::Rsl, &Sample { n: 300, b: Bytes(b"abc") }, &mut buf).unwrap();
        let got: Sample<'_> = decode(Protocol::Rsl, &buf[..n]).unwrap();
        assert_eq!(got, Sample { n: 300, b: Bytes(b"abc") });
    }

    #[test]
    fn envelope_errors_are_reported_not_panicked() {
        let mut buf = [0u8; 64];
        let n = encode(Protocol::Rsl, &Sample { n: 1, b: Bytes(b"") }, &mut buf).unwrap();
        assert_eq!(decode::<Sample<'_>>(Protocol::Rsl, &buf[..2]), Err(DecodeError::TooShort));
        assert_eq!(decode::<Sample<'_>>(Protocol::Kv, &buf[..n]), Err(DecodeError::WrongProtocol(b'R')));
        let mut bad = buf;
        bad[0] = 0;
        assert_eq!(decode::<Sample<'_>>(Protocol::Rsl, &bad[..n]), Err(DecodeError::BadMagic));
        bad = buf;
        bad[1] = 9;
        assert_eq!(decode::<Sample<'_>>(Protocol::Rsl, &bad[..n]), Err(DecodeError::UnsupportedVersion(9)));
        assert_eq!(decode::<Sample<'_>>(Protocol::Rsl, &buf[..n - 1]), Err(DecodeError::Malformed));
        let mut long = [0u8; 65];
        long[..n].copy_from_slice(&buf[..n]);
        assert_eq!(decode::<Sample<'_>>(Protocol::Rsl, &long[..n + 1]), Err(DecodeError::TrailingBytes));
    }

    #[test]
    fn encode_into_a_small_buffer_fails_cleanly() {
        let mut buf = [0u8; 5];
        assert_eq!(
            encode(Protocol::Rsl, &Sample { n: 1, b: Bytes(b"abcdef") }, &mut buf),
            Err(EncodeError::BufferFull)
        );
        assert_eq!(encode(Protocol::Rsl, &Sample { n: 1, b: Bytes(b"") }, &mut buf[..2]), Err(EncodeError::BufferFull));
    }

    #[test]
    fn append_leaves_the_vec_unchanged_when_full() {
        let mut v: heapless::Vec<u8, 8> = heapless::Vec::new();
        append(&mut v, &Bytes(b"abc")).unwrap();
        assert_eq!(&v[..], &[3, b'a', b'b', b'c']);
        assert_eq!(append(&mut v, &Bytes(b"abcd")), Err(EncodeError::BufferFull));
        assert_eq!(&v[..], &[3, b'a', b'b', b'c']);
    }
}
