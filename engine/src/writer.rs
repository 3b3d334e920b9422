//! Writing postcard's encoding by hand, for the messages written for every request: a
//! client's request and its reply ([`crate::rsl::msg_codec`]). The counterpart of
//! [`crate::reader`]; differential tests beside each writer hold it to postcard's bytes.
//!
//! An unsigned integer is a varint: seven bits a byte, least significant first, the high
//! bit set on every byte but the last.

use crate::wire::EncodeError;

/// Writes `value` as a varint at `buf[at..]`; returns where it ends.
#[inline]
pub(crate) fn put_varint(buf: &mut [u8], mut at: usize, mut value: u64) -> Result<usize, EncodeError> {
    loop {
        let slot = buf.get_mut(at).ok_or(EncodeError::BufferFull)?;
        at += 1;
        if value < 0x80 {
            *slot = value as u8;
            return Ok(at);
        }
        *slot = (value as u8) | 0x80;
        value >>= 7;
    }
}

/// Writes `bytes` at `buf[at..]`; returns where they end.
#[inline]
pub(crate) fn put_bytes(buf: &mut [u8], at: usize, bytes: &[u8]) -> Result<usize, EncodeError> {
    let end = at.checked_add(bytes.len()).ok_or(EncodeError::BufferFull)?;
    buf.get_mut(at..end).ok_or(EncodeError::BufferFull)?.copy_from_slice(bytes);
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_postcards_and_a_short_buffer_is_refused() {
        let edges = [0, 1, 127, 128, 16_383, 16_384, (1 << 21) - 1, 1 << 21, 1 << 56, (1 << 63) - 1, 1 << 63, u64::MAX];
        for value in edges {
            let mut ours = [0u8; 10];
            let n = put_varint(&mut ours, 0, value).unwrap();
            let mut theirs = [0u8; 10];
            let want = postcard::to_slice(&value, &mut theirs).unwrap();
            assert_eq!(&ours[..n], &*want, "{value}");
            assert_eq!(put_varint(&mut ours[..n - 1], 0, value), Err(EncodeError::BufferFull));
        }
        let mut buf = [0u8; 4];
        assert_eq!(put_bytes(&mut buf, 1, b"abc"), Ok(4));
        assert_eq!(&buf, b"\0abc");
        assert_eq!(put_bytes(&mut buf, 2, b"abc"), Err(EncodeError::BufferFull));
    }
}
