//! Where a host keeps its pairs: a small trait, and a heap-free bounded implementation.
//!
//! The protocol code ([`super::KvHost`]) only calls [`Storage`]; a std binding can plug a
//! `BTreeMap` or a disk-backed store without touching it. The trait is ordered
//! ([`Storage::next_at_or_after`]) because Shard must enumerate the pairs of a key range.

/// Why a write was refused; the store is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum StorageError {
    /// No room for another key.
    Full,
    /// The value is longer than the store can hold.
    TooLarge,
}

/// An ordered map from `u64` keys to byte values, with a fixed capacity.
pub trait Storage {
    /// The value of `key`.
    fn get(&self, key: u64) -> Option<&[u8]>;
    /// Writes `key`; on error nothing changed.
    fn set(&mut self, key: u64, value: &[u8]) -> Result<(), StorageError>;
    /// Removes `key`; true if it was present.
    fn delete(&mut self, key: u64) -> bool;
    /// The pair with the smallest key `>= key`.
    fn next_at_or_after(&self, key: u64) -> Option<(u64, &[u8])>;
    /// Keys stored.
    fn len(&self) -> usize;
    /// Most keys the store can hold.
    fn capacity(&self) -> usize;
    /// Longest value the store can hold.
    fn max_value_bytes(&self) -> usize;
    /// True when no key is stored.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone, Debug)]
struct Slot<const V: usize> {
    key: u64,
    len: usize,
    value: [u8; V],
}

impl<const V: usize> Slot<V> {
    fn new(key: u64, value: &[u8]) -> Option<Slot<V>> {
        let mut slot = Slot { key, len: value.len(), value: [0; V] };
        slot.value.get_mut(..value.len())?.copy_from_slice(value);
        Some(slot)
    }

    fn value(&self) -> &[u8] {
        &self.value[..self.len]
    }
}

/// A heap-free ordered map of at most `N` keys with values of at most `V` bytes.
///
/// Values live in unordered slots (never moved except by one swap on delete); a sorted
/// index of `(key, slot)` gives `O(log N)` lookups and ordered iteration. An insert or
/// delete shifts index entries (12 bytes each), never values.
///
/// Equality and hashing are by content (the keys in order with their values), not by
/// where the values sit: a store rebuilt from an image equals the one that wrote it.
#[derive(Clone, Debug)]
pub struct HeaplessStore<const N: usize, const V: usize> {
    slots: heapless::Vec<Slot<V>, N>,
    index: heapless::Vec<(u64, u32), N>,
}

impl<const N: usize, const V: usize> HeaplessStore<N, V> {
    /// The entries in key order.
    fn entries(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.index.iter().map(|&(key, slot)| (key, self.slots.get(slot as usize).map_or(&[][..], Slot::value)))
    }
}

impl<const N: usize, const V: usize> PartialEq for HeaplessStore<N, V> {
    fn eq(&self, other: &Self) -> bool {
        self.index.len() == other.index.len() && self.entries().eq(other.entries())
    }
}

impl<const N: usize, const V: usize> Eq for HeaplessStore<N, V> {}

impl<const N: usize, const V: usize> core::hash::Hash for HeaplessStore<N, V> {
    fn hash<Hs: core::hash::Hasher>(&self, state: &mut Hs) {
        self.index.len().hash(state);
        for (key, value) in self.entries() {
            (key, value).hash(state);
        }
    }
}

impl<const N: usize, const V: usize> HeaplessStore<N, V> {
    /// An empty store.
    pub const fn new() -> Self {
        HeaplessStore { slots: heapless::Vec::new(), index: heapless::Vec::new() }
    }

    fn find(&self, key: u64) -> Result<usize, usize> {
        self.index.binary_search_by_key(&key, |e| e.0)
    }

    /// Index sorted and consistent with the slots (for tests and host invariants).
    pub fn invariant(&self) -> Result<(), &'static str> {
        if self.index.len() != self.slots.len() {
            return Err("storage index and slots differ in length");
        }
        for w in self.index.windows(2) {
            if w[0].0 >= w[1].0 {
                return Err("storage index not strictly sorted");
            }
        }
        for (k, s) in &self.index {
            if self.slots.get(*s as usize).map(|s| s.key) != Some(*k) {
                return Err("storage index points at the wrong slot");
            }
        }
        Ok(())
    }
}

impl<const N: usize, const V: usize> Default for HeaplessStore<N, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize, const V: usize> Storage for HeaplessStore<N, V> {
    fn get(&self, key: u64) -> Option<&[u8]> {
        let i = self.find(key).ok()?;
        let slot = self.index[i].1 as usize;
        self.slots.get(slot).map(|s| s.value())
    }

    fn set(&mut self, key: u64, value: &[u8]) -> Result<(), StorageError> {
        if value.len() > V {
            return Err(StorageError::TooLarge);
        }
        match self.find(key) {
            Ok(i) => {
                let slot = self.index[i].1 as usize;
                if let Some(s) = self.slots.get_mut(slot) {
                    s.value[..value.len()].copy_from_slice(value);
                    s.len = value.len();
                }
                Ok(())
            }
            Err(i) => {
                if self.slots.is_full() || N > u32::MAX as usize {
                    return Err(StorageError::Full);
                }
                let slot = self.slots.len() as u32;
                let new = Slot::new(key, value).ok_or(StorageError::TooLarge)?;
                self.slots.push(new).map_err(|_| StorageError::Full)?;
                if self.index.insert(i, (key, slot)).is_err() {
                    self.slots.pop();
                    return Err(StorageError::Full);
                }
                Ok(())
            }
        }
    }

    fn delete(&mut self, key: u64) -> bool {
        let Ok(i) = self.find(key) else { return false };
        let (_, slot) = self.index.remove(i);
        let slot = slot as usize;
        self.slots.swap_remove(slot);
        // The last slot moved into `slot`: re-point its index entry.
        if let Some(moved) = self.slots.get(slot) {
            if let Ok(j) = self.find(moved.key) {
                self.index[j].1 = slot as u32;
            }
        }
        true
    }

    fn next_at_or_after(&self, key: u64) -> Option<(u64, &[u8])> {
        let i = match self.find(key) {
            Ok(i) | Err(i) => i,
        };
        let (k, slot) = *self.index.get(i)?;
        self.slots.get(slot as usize).map(|s| (k, s.value()))
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    fn capacity(&self) -> usize {
        N
    }

    fn max_value_bytes(&self) -> usize {
        V
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn set_get_delete_and_order() {
        let mut s = HeaplessStore::<4, 8>::new();
        s.set(30, b"c").unwrap();
        s.set(10, b"a").unwrap();
        s.set(20, b"b").unwrap();
        s.set(10, b"A").unwrap();
        assert_eq!(s.get(10), Some(&b"A"[..]));
        assert_eq!(s.len(), 3);
        assert!(s.delete(10));
        assert!(!s.delete(10));
        assert_eq!(s.get(30), Some(&b"c"[..]), "moved slot still found");
        assert_eq!(s.next_at_or_after(0), Some((20, &b"b"[..])));
        assert_eq!(s.next_at_or_after(21), Some((30, &b"c"[..])));
        assert_eq!(s.next_at_or_after(31), None);
        assert_eq!(s.invariant(), Ok(()));
    }

    #[test]
    fn a_full_store_refuses_new_keys_but_overwrites_old_ones() {
        let mut s = HeaplessStore::<2, 4>::new();
        s.set(1, b"x").unwrap();
        s.set(2, b"y").unwrap();
        assert_eq!(s.set(3, b"z"), Err(StorageError::Full));
        assert_eq!(s.set(1, b"toolong"), Err(StorageError::TooLarge));
        assert_eq!(s.get(1), Some(&b"x"[..]));
        s.set(1, b"w").unwrap();
        assert_eq!(s.get(1), Some(&b"w"[..]));
        assert_eq!(s.invariant(), Ok(()));
    }

    #[test]
    fn stores_with_the_same_content_are_equal_whatever_the_layout() {
        use core::hash::{Hash, Hasher};
        fn hash(s: &HeaplessStore<4, 8>) -> u64 {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            s.hash(&mut h);
            h.finish()
        }
        let (mut a, mut b) = (HeaplessStore::<4, 8>::new(), HeaplessStore::<4, 8>::new());
        a.set(1, b"longer").unwrap();
        a.set(2, b"two").unwrap();
        a.set(3, b"three").unwrap();
        assert!(a.delete(1), "3 moves into 1's slot");
        a.set(2, b"2").unwrap();
        b.set(2, b"2").unwrap();
        b.set(3, b"three").unwrap();
        assert_eq!(a, b, "same keys and values, other slots and stale bytes");
        assert_eq!(hash(&a), hash(&b));
        b.set(3, b"THREE").unwrap();
        assert_ne!(a, b, "a value differs");
        assert_ne!(hash(&a), hash(&b), "and so does the hash");
        b.set(3, b"three").unwrap();
        b.set(4, b"").unwrap();
        assert_ne!(a, b, "a key differs");
    }

    #[test]
    fn the_invariant_refuses_a_broken_index() {
        let mut good = HeaplessStore::<4, 8>::new();
        for k in [5, 1, 3] {
            good.set(k, b"v").unwrap();
        }
        assert_eq!(good.invariant(), Ok(()));
        let broken = |f: &dyn Fn(&mut HeaplessStore<4, 8>)| {
            let mut s = good.clone();
            f(&mut s);
            s.invariant().err().unwrap_or("no error")
        };
        assert_eq!(broken(&|s| s.index.truncate(2)), "storage index and slots differ in length");
        assert_eq!(broken(&|s| s.index.swap(0, 1)), "storage index not strictly sorted");
        assert_eq!(broken(&|s| s.index[1].0 = s.index[0].0), "storage index not strictly sorted", "a repeated key");
        assert_eq!(broken(&|s| s.slots[0].key = 9), "storage index points at the wrong slot");
        assert_eq!(broken(&|s| s.index[2].1 = 7), "storage index points at the wrong slot", "no such slot");
    }
}
