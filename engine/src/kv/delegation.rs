//! The delegation map: which host owns each key (IronKV's `DelegationMap`).
//!
//! Stored as IronKV stores it: a sorted list of range lower bounds, each with the host that
//! owns keys from that bound up to the next one. The first bound is always key 0, so every
//! key has exactly one owner. Adjacent entries never name the same host (they are merged),
//! so the list is as short as the ownership allows. Capacity is the const `M`; a change that
//! would need more entries is refused with [`MapFull`] and leaves the map unchanged.

use super::msg::KeyRange;

/// A host's index in the configuration's host list.
pub type HostId = u8;

/// The owner of keys whose owner restarted without its state (`kv::join`): no host holds
/// them, and no host serves them; a request for one is answered `KvError::Lost`.
pub const LOST: HostId = HostId::MAX;

/// The change would need more than `M` entries; the map is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MapFull;

/// One entry: keys from `lo` (inclusive) up to the next entry's `lo` belong to `owner`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Entry {
    /// First key of the run.
    pub lo: u64,
    /// Its owner.
    pub owner: HostId,
}

/// Key-range ownership for up to `M` runs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DelegationMap<const M: usize> {
    entries: heapless::Vec<Entry, M>,
}

impl<const M: usize> DelegationMap<M> {
    /// Every key owned by `root` (IronKV: the first host). `M` must be at least 1.
    pub fn new(root: HostId) -> Self {
        let mut entries = heapless::Vec::new();
        // M >= 1 is checked by the host's configuration; with M == 0 the map stays empty
        // and `owner` reports the root for every key.
        let _ = entries.push(Entry { lo: 0, owner: root });
        DelegationMap { entries }
    }

    /// The host that owns `key`.
    pub fn owner(&self, key: u64) -> HostId {
        let i = self.entries.partition_point(|e| e.lo <= key);
        match i.checked_sub(1).and_then(|i| self.entries.get(i)) {
            Some(e) => e.owner,
            None => 0,
        }
    }

    /// True if `host` owns every key of `range` (false for an empty range).
    pub fn owns_all(&self, range: &KeyRange, host: HostId) -> bool {
        let Some(start) = range.first_key() else { return false };
        let end = range.end_key();
        let first = self.entries.partition_point(|e| e.lo <= start).saturating_sub(1);
        for e in &self.entries[first..] {
            if end.is_some_and(|end| e.lo >= end) {
                break;
            }
            if e.owner != host {
                return false;
            }
        }
        true
    }

    /// Assigns every key of `range` to `owner`. An empty range changes nothing.
    pub fn set(&mut self, range: &KeyRange, owner: HostId) -> Result<(), MapFull> {
        let next = self.with(range, owner)?;
        self.entries = next;
        Ok(())
    }

    /// How many entries the map would have after [`DelegationMap::set`], or `MapFull`.
    pub fn len_after(&self, range: &KeyRange, owner: HostId) -> Result<usize, MapFull> {
        self.with(range, owner).map(|m| m.len())
    }

    fn with(&self, range: &KeyRange, owner: HostId) -> Result<heapless::Vec<Entry, M>, MapFull> {
        let Some(start) = range.first_key() else { return Ok(self.entries.clone()) };
        let end = range.end_key();
        let mut next: heapless::Vec<Entry, M> = heapless::Vec::new();
        let mut push = |e: Entry| -> Result<(), MapFull> {
            match next.last() {
                Some(last) if last.owner == e.owner => Ok(()),
                _ => next.push(e).map_err(|_| MapFull),
            }
        };
        for e in self.entries.iter().filter(|e| e.lo < start) {
            push(*e)?;
        }
        push(Entry { lo: start, owner })?;
        if let Some(end) = end {
            push(Entry { lo: end, owner: self.owner(end) })?;
            for e in self.entries.iter().filter(|e| e.lo > end) {
                push(*e)?;
            }
        }
        Ok(next)
    }

    /// A map of exactly these entries (a durable image's), if they are a valid map for
    /// `hosts` hosts and fit.
    pub fn from_entries(entries: &[Entry], hosts: usize) -> Result<Self, &'static str> {
        let entries = heapless::Vec::from_slice(entries).map_err(|_| "more delegation runs than the map holds")?;
        let map = DelegationMap { entries };
        map.invariant(hosts)?;
        Ok(map)
    }

    /// Entries in use.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Never true for a constructed map (key 0 always has an owner); for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries left before the map is full.
    pub fn free(&self) -> usize {
        M - self.entries.len()
    }

    /// The runs, in key order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The run containing `key` as a range, with its owner.
    pub fn run_of(&self, key: u64) -> (KeyRange, HostId) {
        let i = self.entries.partition_point(|e| e.lo <= key).saturating_sub(1);
        let lo = self.entries.get(i).map_or(0, |e| e.lo);
        let hi = match self.entries.get(i + 1) {
            Some(e) => super::msg::KeyBound::Key(e.lo),
            None => super::msg::KeyBound::Inf,
        };
        (KeyRange { lo: super::msg::KeyBound::Key(lo), hi }, self.owner(key))
    }

    /// Sorted, starting at key 0, no two adjacent runs with one owner, owners below `hosts`.
    pub fn invariant(&self, hosts: usize) -> Result<(), &'static str> {
        match self.entries.first() {
            Some(e) if e.lo == 0 => {}
            _ => return Err("delegation map does not start at key 0"),
        }
        for w in self.entries.windows(2) {
            if w[0].lo >= w[1].lo {
                return Err("delegation map bounds not strictly increasing");
            }
            if w[0].owner == w[1].owner {
                return Err("delegation map has two adjacent runs with one owner");
            }
        }
        if self.entries.iter().any(|e| e.owner != LOST && usize::from(e.owner) >= hosts) {
            return Err("delegation map names an unknown host");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::msg::KeyBound;

    #[test]
    fn initially_the_root_owns_every_key() {
        let m = DelegationMap::<4>::new(0);
        assert_eq!(m.owner(0), 0);
        assert_eq!(m.owner(u64::MAX), 0);
        assert!(m.owns_all(&KeyRange::ALL, 0));
        assert_eq!(m.invariant(1), Ok(()));
    }

    #[test]
    fn set_splits_runs_and_merges_neighbours() {
        let mut m = DelegationMap::<8>::new(0);
        m.set(&KeyRange::keys(10, 20), 1).unwrap();
        assert_eq!((m.owner(9), m.owner(10), m.owner(19), m.owner(20)), (0, 1, 1, 0));
        assert_eq!(m.len(), 3);
        m.set(&KeyRange::keys(20, 30), 1).unwrap();
        assert_eq!(m.len(), 3, "adjacent runs of host 1 merged");
        m.set(&KeyRange::keys(10, 30), 0).unwrap();
        assert_eq!(m.len(), 1, "back to one run");
        m.set(&KeyRange::from(u64::MAX), 2).unwrap();
        assert_eq!((m.owner(u64::MAX - 1), m.owner(u64::MAX)), (0, 2));
        m.set(&KeyRange { lo: KeyBound::Zero, hi: KeyBound::Key(1) }, 1).unwrap();
        assert_eq!((m.owner(0), m.owner(1)), (1, 0));
        assert_eq!(m.invariant(3), Ok(()));
    }

    #[test]
    fn overflow_is_refused_and_changes_nothing() {
        let mut m = DelegationMap::<3>::new(0);
        m.set(&KeyRange::keys(10, 20), 1).unwrap();
        let before = m.clone();
        assert_eq!(m.set(&KeyRange::keys(30, 40), 1), Err(MapFull));
        assert_eq!(m, before);
        assert_eq!(m.len_after(&KeyRange::keys(15, 25), 1), Ok(3));
    }

    #[test]
    fn owns_all_needs_every_key_of_the_range() {
        let mut m = DelegationMap::<8>::new(0);
        m.set(&KeyRange::keys(10, 20), 1).unwrap();
        assert!(m.owns_all(&KeyRange::keys(10, 20), 1));
        assert!(!m.owns_all(&KeyRange::keys(9, 20), 1));
        assert!(!m.owns_all(&KeyRange::keys(10, 21), 1));
        assert!(m.owns_all(&KeyRange::keys(0, 10), 0));
        assert!(!m.owns_all(&KeyRange::keys(5, 5), 0), "empty range");
        assert_eq!(m.run_of(15), (KeyRange::keys(10, 20), 1));
        assert_eq!(m.run_of(25), (KeyRange::from(20), 0));
    }

    #[test]
    fn a_map_from_entries_is_checked_clause_by_clause() {
        let e = |lo, owner| Entry { lo, owner };
        let ok = DelegationMap::<4>::from_entries(&[e(0, 0), e(10, LOST), e(20, 1)], 2).unwrap();
        assert!(!ok.is_empty());
        assert_eq!((ok.len(), ok.free()), (3, 1));
        let bad = |entries: &[Entry]| DelegationMap::<4>::from_entries(entries, 2).err();
        assert_eq!(bad(&[]), Some("delegation map does not start at key 0"));
        assert_eq!(bad(&[e(1, 0)]), Some("delegation map does not start at key 0"));
        assert_eq!(bad(&[e(0, 0), e(5, 1), e(5, 0)]), Some("delegation map bounds not strictly increasing"));
        assert_eq!(bad(&[e(0, 0), e(5, 0)]), Some("delegation map has two adjacent runs with one owner"));
        assert_eq!(bad(&[e(0, 0), e(5, 2)]), Some("delegation map names an unknown host"));
        assert_eq!(
            bad(&[e(0, 0), e(1, 1), e(2, 0), e(3, 1), e(4, 0)]),
            Some("more delegation runs than the map holds")
        );
    }
}
