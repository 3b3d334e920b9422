//! Reading postcard's encoding by hand, for the values decoded on every replica for every
//! request: batch entries ([`crate::rsl::batch`]) and the KV application's requests
//! (`rsl::apps::kv::KvOp`). serde's generic path through postcard cost about a sixth of
//! the engine bench; this reads the same bytes with the same verdicts (differential tests
//! beside each reader hold them to postcard's on random bytes), and everything else keeps
//! using postcard.
//!
//! postcard's rules, as `postcard::de::Deserializer` applies them: unsigned integers are
//! varints of seven bits a byte, least significant first, at most `ceil(bits / 7)` bytes,
//! the last of which may not carry bits beyond the type (longer-than-needed encodings are
//! accepted); enum variants are a `u32` varint; byte strings a `usize` varint length and
//! the bytes; arrays their elements back to back.

/// A cursor over bytes being decoded.
pub(crate) struct Reader<'a> {
    /// What is left to read.
    pub(crate) rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    /// A varint of a `bits`-bit unsigned integer (`bits >= 8`: the one-byte fast path has
    /// no last-byte limit to check).
    #[inline]
    fn varint(&mut self, bits: u32) -> Option<u64> {
        debug_assert!(bits >= 8, "a one-byte varint has a last-byte limit");
        // Most varints here are one byte (small lengths, kinds, variants) or two (ports,
        // sequence numbers below 16,384); neither can exceed a type of 16 bits or more.
        match *self.rest {
            [b0, ref rest @ ..] if b0 & 0x80 == 0 => {
                self.rest = rest;
                Some(u64::from(b0))
            }
            [b0, b1, ref rest @ ..] if b1 & 0x80 == 0 && bits >= 16 => {
                self.rest = rest;
                Some(u64::from(b0 & 0x7f) | u64::from(b1) << 7)
            }
            _ => self.long_varint(bits),
        }
    }

    /// A varint of more than one byte, or a refusal.
    fn long_varint(&mut self, bits: u32) -> Option<u64> {
        let max_bytes = bits.div_ceil(7);
        let last_byte_max = (1u8 << (bits % 7)) - 1;
        let mut value = 0u64;
        for i in 0..max_bytes {
            let (&byte, rest) = self.rest.split_first()?;
            self.rest = rest;
            // Bits shifted beyond 64 are lost, as in postcard; the last-byte check below
            // refuses every encoding where that matters.
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                if i == max_bytes - 1 && byte > last_byte_max {
                    return None;
                }
                return Some(value);
            }
        }
        None
    }

    /// A `u16`.
    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.varint(16).map(|v| v as u16)
    }

    /// A `u32` (also an enum's variant index).
    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.varint(32).map(|v| v as u32)
    }

    /// A `u64`.
    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.varint(64)
    }

    /// A byte string: its `usize` length, then as many bytes.
    pub(crate) fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = self.varint(usize::BITS)?;
        let (bytes, rest) = self.rest.split_at_checked(usize::try_from(len).ok()?)?;
        self.rest = rest;
        Some(bytes)
    }

    /// `N` raw bytes (an array of `u8`).
    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (bytes, rest) = self.rest.split_first_chunk::<N>()?;
        self.rest = rest;
        Some(*bytes)
    }
}
