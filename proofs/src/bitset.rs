//! A fixed-size bitset, hashable so it can key the checker's memo cache.

/// A set of indices below the size it was created with.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct BitSet(Box<[u64]>);

impl BitSet {
    pub(crate) fn new(len: usize) -> Self {
        Self(vec![0; len.div_ceil(64)].into_boxed_slice())
    }

    pub(crate) fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    pub(crate) fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }

    /// True iff every element of `self` is in `other` (same length assumed).
    pub(crate) fn is_subset_of(&self, other: &BitSet) -> bool {
        self.0.iter().zip(other.0.iter()).all(|(a, b)| a & !b == 0)
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::BitSet;

    #[test]
    fn set_and_clear_across_words() {
        let mut b = BitSet::new(130);
        for i in [0, 63, 64, 129] {
            assert!(!b.contains(i));
            b.set(i);
            assert!(b.contains(i));
        }
        b.clear(64);
        assert!(!b.contains(64) && b.contains(63) && b.contains(129));
        let mut c = BitSet::new(130);
        for i in [0, 63, 129] {
            c.set(i);
        }
        assert_eq!(b, c);
        assert!(b.is_subset_of(&c) && c.is_subset_of(&b));
        c.clear(0);
        assert!(c.is_subset_of(&b) && !b.is_subset_of(&c));
    }
}
