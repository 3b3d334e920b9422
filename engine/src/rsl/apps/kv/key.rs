//! A stored key: its bytes in a zero-padded array, so that the first eight read as one
//! number ([`short_word`](super::short_word)) without looking at the length: the map's
//! binary search compares those numbers (a byte loop per probe was a tenth of the engine
//! bench).

/// A key of at most `KB` bytes. Invariant: every byte past `len` is zero.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Key<const KB: usize> {
    len: usize,
    bytes: [u8; KB],
}

impl<const KB: usize> Key<KB> {
    /// The empty key.
    pub(super) const EMPTY: Key<KB> = Key { len: 0, bytes: [0; KB] };

    /// The key's bytes.
    pub(super) fn as_slice(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }

    /// The key's length in bytes.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Makes this key `key`; false (and nothing changed) if it is longer than `KB`.
    pub(super) fn set(&mut self, key: &[u8]) -> bool {
        if key.len() > KB {
            return false;
        }
        self.clear();
        self.extend(key)
    }

    /// Appends one byte; false (and nothing changed) if the key is full.
    pub(super) fn push(&mut self, b: u8) -> bool {
        self.extend(&[b])
    }

    fn extend(&mut self, more: &[u8]) -> bool {
        match self.bytes.get_mut(self.len..self.len + more.len()) {
            Some(room) => {
                room.copy_from_slice(more);
                self.len += more.len();
                true
            }
            None => false,
        }
    }

    /// The empty key again (its bytes zeroed, as the invariant wants).
    pub(super) fn clear(&mut self) {
        if let Some(used) = self.bytes.get_mut(..self.len) {
            used.fill(0);
        }
        self.len = 0;
    }

    /// [`short_word`](super::short_word) of the key: with room for eight bytes, the first
    /// eight as they are stored (zeros past the end).
    #[inline]
    pub(super) fn word(&self) -> u64 {
        match self.bytes.first_chunk::<8>() {
            Some(first) => u64::from_be_bytes(*first),
            None => super::short_word(self.as_slice()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_reused_for_shorter_keys_reads_as_they_do() {
        let mut key = Key::<16>::EMPTY;
        assert!(key.set(b"a long key 12345"));
        assert_eq!(key.word(), super::super::short_word(b"a long k"));
        for short in [&b"abc"[..], b"", b"\x01", b"abcdefgh", b"abcdefghi"] {
            assert!(key.set(short));
            assert_eq!(key.as_slice(), short);
            assert_eq!(key.word(), super::super::short_word(short), "{short:?}");
            assert_eq!(
                key,
                {
                    let mut fresh = Key::<16>::EMPTY;
                    fresh.set(short);
                    fresh
                },
                "equal keys are equal"
            );
        }
        assert!(!key.set(&[1u8; 17]), "too long");
        assert_eq!(key.as_slice(), b"abcdefghi", "and nothing changed");
        key.clear();
        assert!((0..16).all(|_| key.push(7)) && !key.push(7), "sixteen bytes fit, not seventeen");
        let mut tiny = Key::<3>::EMPTY;
        assert!(tiny.set(b"xy"));
        assert_eq!(tiny.word(), super::super::short_word(b"xy"), "keys shorter than a word");
    }
}
