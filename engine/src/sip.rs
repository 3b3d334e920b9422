//! SipHash-2-4 over a few byte slices, in one place: the datagram MAC (`auth`) and the
//! executed-batch digest chain (`rsl::executor`) share this code (on firmware, one copy of the
//! rounds instead of two).

use core::hash::Hasher;

use siphasher::sip::SipHasher24;

/// SipHash-2-4 under `key` of the concatenation of `parts`.
#[inline(never)]
pub(crate) fn sip24(key: &[u8; 16], parts: &[&[u8]]) -> u64 {
    let mut h = SipHasher24::new_with_key(key);
    for part in parts {
        h.write(part);
    }
    h.finish()
}
