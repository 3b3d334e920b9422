//! The reply cache: each client's last executed request and its reply.
//!
//! It gives exactly-once execution for every client it remembers: a retried request whose
//! seqno is at or below the cached one is never applied again, and the cached reply is only
//! ever sent for the exact seqno it belongs to. The cache holds `C` clients; when a new
//! client arrives and it is full, the client whose last execution is oldest (lowest
//! operation number, ties by endpoint) is evicted. Eviction is deterministic, so every
//! replica evicts the same entry and the caches stay identical.
//!
//! What eviction means for a client: after `C` other clients have executed requests since
//! its last one, a retry of that last request is no longer recognised and would be applied
//! a second time. Size `C` above the number of clients active at once. The cache is part of
//! the replicated state and moves with state transfer.
//!
//! Cost in the number `n` of clients cached: a lookup (every executed request, every
//! retransmission) is a binary search, O(log n), over the clients alone; a client's first
//! reply inserts its client, operation number and slot number in order (O(n) moves of 32
//! bytes each, once per client), and a full cache finds the oldest client to evict in O(n)
//! over the operation numbers, once per new client. Replies stay where they were written:
//! sorting whole entries in place moved half the cache per new client, 2.3 MB of replies in
//! a full std cache (docs/performance.md, session 47).

use serde::{Deserialize, Serialize};

use crate::endpoint::{search_sorted, Endpoint};
use crate::wire::Bytes;

/// One client's cached reply: what a retransmitted request is answered with.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CachedReply<const RB: usize> {
    /// Sequence number of the client's last executed request.
    pub seqno: u64,
    /// The reply.
    pub reply: heapless::Vec<u8, RB>,
}

/// A cache entry as it travels in state transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntryWire<'a> {
    /// The client.
    pub client: Endpoint,
    /// Its last executed seqno.
    pub seqno: u64,
    /// The operation that executed it.
    pub opn: u64,
    /// The reply.
    #[serde(borrow)]
    pub reply: Bytes<'a>,
}

/// A state-transfer cache entry out of order, too long, or beyond capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadCacheEntry;

/// At most `C` clients' last replies of at most `RB` bytes, read in client order. `C` is
/// at most 65,536 (slots are `u16`).
///
/// Each client's reply stays in its slot until the client is evicted (the slot is then
/// reused); the clients, the operations that executed their last requests and their slot
/// numbers are kept in client order, in arrays of their own. A lookup's 12 probes in a full
/// std cache stay within 80 KB of endpoints, not 4.7 MB of replies, and a new client moves
/// 32 bytes per client after it, not a 1.15 KB entry.
#[derive(Debug)]
pub struct ReplyCache<const C: usize, const RB: usize> {
    /// Each slot's reply; its length is the number of clients cached, `n`.
    entries: heapless::Vec<CachedReply<RB>, C>,
    /// The clients cached, in order (the first `n`).
    clients: [Endpoint; C],
    /// Each client's last executed operation (the first `n`, in client order): drives
    /// eviction.
    opns: [u64; C],
    /// Each client's slot in `entries` (the first `n`, in client order).
    slots: [u16; C],
}

/// Where a client's entry is (`Ok`) or would be inserted (`Err`) in client order: one
/// search serves a lookup and the insert after it, as long as the cache does not change in
/// between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot(Result<usize, usize>);

impl<const C: usize, const RB: usize> Default for ReplyCache<C, RB> {
    fn default() -> Self {
        const { assert!(C <= 1 << 16, "slots are u16") };
        ReplyCache { entries: heapless::Vec::new(), clients: [Endpoint::v4([0; 4], 0); C], opns: [0; C], slots: [0; C] }
    }
}

/// Equal when they hold the same entries, whichever slots they are in.
impl<const C: usize, const RB: usize> PartialEq for ReplyCache<C, RB> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<const C: usize, const RB: usize> Eq for ReplyCache<C, RB> {}

/// Hashes the entries in client order, as [`PartialEq`] compares them.
impl<const C: usize, const RB: usize> core::hash::Hash for ReplyCache<C, RB> {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.len().hash(state);
        for e in self.iter() {
            (e.client, e.seqno, e.opn, e.reply.0).hash(state);
        }
    }
}

impl<const C: usize, const RB: usize> Clone for ReplyCache<C, RB> {
    fn clone(&self) -> Self {
        let mut copy = ReplyCache::default();
        copy.clone_from(self);
        copy
    }

    /// Entry by entry in place: the derived version builds a whole `C`-entry cache and
    /// moves it, copying the capacity rather than the entries (a replica freezes its cache
    /// for every snapshot).
    fn clone_from(&mut self, source: &Self) {
        let n = source.len();
        self.clients[..n].copy_from_slice(&source.clients[..n]);
        self.opns[..n].copy_from_slice(&source.opns[..n]);
        self.slots[..n].copy_from_slice(&source.slots[..n]);
        self.entries.truncate(n);
        let kept = self.entries.len();
        for (dst, src) in self.entries.iter_mut().zip(&source.entries) {
            dst.set(src.seqno, &src.reply);
        }
        for src in &source.entries[kept..] {
            // Cannot fail: both caches hold at most `C` entries.
            let _ = self.entries.push(CachedReply::new(src.seqno, &src.reply));
        }
    }
}

impl<const RB: usize> CachedReply<RB> {
    /// An entry; a reply longer than `RB` is cut.
    fn new(seqno: u64, reply: &[u8]) -> Self {
        let reply = heapless::Vec::from_slice(&reply[..reply.len().min(RB)]).unwrap_or_default();
        CachedReply { seqno, reply }
    }

    /// Overwrites this entry in place; a reply longer than `RB` is cut.
    fn set(&mut self, seqno: u64, reply: &[u8]) {
        self.seqno = seqno;
        self.reply.clear();
        // Cannot fail: cut to the capacity.
        let _ = self.reply.extend_from_slice(&reply[..reply.len().min(RB)]);
    }
}

impl<const C: usize, const RB: usize> ReplyCache<C, RB> {
    /// The cached entry of `client`. O(log n).
    pub fn get(&self, client: Endpoint) -> Option<&CachedReply<RB>> {
        self.at(self.slot(client))
    }

    /// Where `client`'s entry is or would go. O(log n).
    pub(crate) fn slot(&self, client: Endpoint) -> Slot {
        Slot(search_sorted(&self.clients[..self.len()], client, |&c| c))
    }

    /// The entry at `slot`, if it holds one.
    pub(crate) fn at(&self, slot: Slot) -> Option<&CachedReply<RB>> {
        let i = slot.0.ok().filter(|&i| i < self.len())?;
        self.entries.get(usize::from(self.slots[i]))
    }

    /// Records `client`'s reply for `seqno`, executed in operation `opn`, evicting the
    /// oldest client if the cache is full. Replies longer than `RB` are cut (the executor
    /// hands out an `RB`-byte buffer, so this does not happen).
    pub fn insert(&mut self, client: Endpoint, seqno: u64, opn: u64, reply: &[u8]) {
        self.insert_at(self.slot(client), client, seqno, opn, reply);
    }

    /// [`Self::insert`] at `slot`, found by [`Self::slot`] for `client` on the cache as
    /// it is now.
    pub(crate) fn insert_at(&mut self, slot: Slot, client: Endpoint, seqno: u64, opn: u64, reply: &[u8]) {
        debug_assert_eq!(slot, self.slot(client), "a slot from an older cache");
        let n = self.len();
        let i = match slot.0 {
            Ok(i) => i,
            Err(mut i) => {
                let free = if self.entries.is_full() {
                    // The oldest client's slot is this one's now; its place in order goes.
                    let Some(victim) = self.oldest() else { return };
                    let free = self.slots[victim];
                    self.clients.copy_within(victim + 1..n, victim);
                    self.opns.copy_within(victim + 1..n, victim);
                    self.slots.copy_within(victim + 1..n, victim);
                    i -= usize::from(victim < i);
                    free
                } else {
                    // Cannot fail: not full.
                    let _ = self.entries.push(CachedReply::new(seqno, reply));
                    // `n < C <= 65,536`.
                    n as u16
                };
                // `len() - 1` clients are in order, and `len() <= C`: room for one more.
                let ordered = self.len() - 1;
                self.clients.copy_within(i..ordered, i + 1);
                self.opns.copy_within(i..ordered, i + 1);
                self.slots.copy_within(i..ordered, i + 1);
                self.clients[i] = client;
                self.slots[i] = free;
                i
            }
        };
        self.opns[i] = opn;
        self.entries[usize::from(self.slots[i])].set(seqno, reply);
    }

    /// The place in client order of the client whose last execution is oldest (lowest
    /// `opn`, then endpoint).
    fn oldest(&self) -> Option<usize> {
        // The first of the lowest `opn`s: clients are in order.
        let opns = &self.opns[..self.len()];
        let lowest = opns.iter().min()?;
        opns.iter().position(|opn| opn == lowest)
    }

    /// Number of clients cached.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no client is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in client order, in their state-transfer form.
    pub fn iter(&self) -> impl Iterator<Item = CacheEntryWire<'_>> {
        (0..self.len()).filter_map(|i| self.wire(i))
    }

    /// Forgets every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Appends an entry received in state transfer; entries must arrive in client order,
    /// with replies of at most `RB` bytes, and at most `C` of them.
    pub fn push_sorted(&mut self, e: CacheEntryWire<'_>) -> Result<(), BadCacheEntry> {
        let n = self.len();
        let last = n.checked_sub(1).map(|i| self.clients[i]);
        if last.is_some_and(|last| last >= e.client) {
            return Err(BadCacheEntry);
        }
        let reply = heapless::Vec::from_slice(e.reply.0).map_err(|_| BadCacheEntry)?;
        self.entries.push(CachedReply { seqno: e.seqno, reply }).map_err(|_| BadCacheEntry)?;
        self.clients[n] = e.client;
        self.opns[n] = e.opn;
        // `n < C <= 65,536`: the push above had room.
        self.slots[n] = n as u16;
        Ok(())
    }

    /// Local invariants, given the executor's `ops_complete`: one entry per client, in
    /// client order, each slot once, and only replies of executed operations
    /// (`opn < ops_complete`).
    pub fn invariant(&self, ops_complete: u64) -> Result<(), &'static str> {
        let n = self.len();
        let slots = &self.slots[..n];
        if slots.iter().any(|&slot| usize::from(slot) >= n) {
            return Err("reply cache names a slot beyond its entries");
        }
        // Each slot once: marked in a bitmap of 1,024 slots per pass (128 bytes of stack).
        // Debug builds only: nothing but `insert_at` gives out slots (state transfer and
        // recovery number them in order), and the firmware has no flash to spare.
        for base in (0..n).step_by(1024).filter(|_| cfg!(debug_assertions)) {
            let mut seen = [0u64; 16];
            for slot in slots.iter().map(|&s| usize::from(s)).filter(|s| (base..base + 1024).contains(s)) {
                let (word, bit) = ((slot - base) / 64, 1u64 << ((slot - base) % 64));
                if seen[word] & bit != 0 {
                    return Err("reply cache gives two clients one slot");
                }
                seen[word] |= bit;
            }
        }
        if self.clients[..n].windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err("reply cache not sorted by client, or a client twice");
        }
        if self.opns[..n].iter().any(|&opn| opn >= ops_complete) {
            return Err("reply cache holds a reply from an unexecuted operation");
        }
        Ok(())
    }

    /// The state-transfer form of entry `i` in client order.
    pub fn wire(&self, i: usize) -> Option<CacheEntryWire<'_>> {
        let slot = usize::from(*self.slots[..self.len()].get(i)?);
        Some(CacheEntryWire {
            client: self.clients[i],
            seqno: self.entries[slot].seqno,
            opn: self.opns[i],
            reply: Bytes(&self.entries[slot].reply),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(p: u16) -> Endpoint {
        Endpoint::v4([10, 0, 0, 1], p)
    }

    #[test]
    fn full_cache_evicts_the_client_executed_longest_ago() {
        let mut c: ReplyCache<2, 8> = ReplyCache::default();
        c.insert(ep(1), 1, 10, b"a");
        c.insert(ep(2), 1, 11, b"b");
        c.insert(ep(1), 2, 12, b"c");
        c.insert(ep(3), 1, 13, b"d");
        assert!(c.get(ep(2)).is_none(), "client 2 executed at opn 11, the oldest");
        assert_eq!(c.get(ep(1)).unwrap().seqno, 2);
        assert_eq!(&c.get(ep(3)).unwrap().reply[..], b"d");
        assert!(c.invariant(14).is_ok());
        // The victim (client 1, opn 12) sits at the insertion point of client 0.
        c.insert(ep(0), 1, 14, b"e");
        assert!(c.get(ep(1)).is_none());
        assert_eq!(c.iter().map(|e| e.client).collect::<heapless::Vec<_, 2>>()[..], [ep(0), ep(3)]);
        assert!(c.invariant(15).is_ok());
    }

    #[test]
    fn a_cache_cloned_over_another_equals_its_source() {
        let ep = |p| Endpoint::v4([10, 0, 0, 1], p);
        let mut big: ReplyCache<4, 8> = ReplyCache::default();
        for (p, reply) in [(1, &b"one long"[..]), (2, b"2"), (3, b"three")] {
            big.insert(ep(p), 5, 1, reply);
        }
        let mut small: ReplyCache<4, 8> = ReplyCache::default();
        small.insert(ep(2), 9, 2, b"nine");
        let mut copy = big.clone();
        assert_eq!(copy, big);
        copy.clone_from(&small);
        assert_eq!(copy, small, "fewer entries: none of the older ones is left");
        copy.clone_from(&big);
        assert_eq!(copy, big, "more entries, replies of other lengths");
    }

    #[test]
    fn lookups_find_every_client_among_ipv4_and_ipv6_endpoints() {
        let mut rng = crate::test_rng::TestRng(0xfeed_face_cafe_beef);
        for _ in 0..200 {
            let mut c: ReplyCache<64, 8> = ReplyCache::default();
            let mut seen: heapless::Vec<(Endpoint, u64), 64> = heapless::Vec::new();
            for opn in 0..40u64 {
                let client = match rng.below(3) {
                    0 => Endpoint::v4([10, 0, 0, rng.below(4) as u8], rng.below(3) as u16),
                    _ => {
                        let mut o = [0xfe; 16];
                        o[15] = rng.below(4) as u8;
                        Endpoint::v6(o, rng.below(3) as u16)
                    }
                };
                c.insert(client, opn, opn, &opn.to_le_bytes());
                match seen.iter_mut().find(|(e, _)| *e == client) {
                    Some(entry) => entry.1 = opn,
                    None => seen.push((client, opn)).unwrap(),
                }
            }
            assert_eq!(c.invariant(40), Ok(()));
            assert_eq!(c.len(), seen.len());
            for (client, seqno) in &seen {
                assert_eq!(c.get(*client).map(|e| e.seqno), Some(*seqno), "{client}");
            }
            assert!(c.get(Endpoint::v6([0xfe; 16], 9)).is_none());
        }
    }

    /// The cache against the sorted list of entries it replaced (evicting the oldest when
    /// full): the same entries in the same order after every insert. A copy rebuilt in
    /// client order, its entries in other slots, is equal and hashes alike.
    #[test]
    fn the_cache_holds_what_a_sorted_list_with_eviction_holds() {
        use core::hash::{Hash, Hasher};
        /// FNV-1a: enough to compare two hashes without std.
        struct Fnv(u64);
        impl Hasher for Fnv {
            fn finish(&self) -> u64 {
                self.0
            }
            fn write(&mut self, bytes: &[u8]) {
                for &b in bytes {
                    self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
                }
            }
        }
        let hash = |c: &ReplyCache<8, 8>| {
            let mut h = Fnv(0xcbf2_9ce4_8422_2325);
            c.hash(&mut h);
            h.finish()
        };
        let mut rng = crate::test_rng::TestRng(0x5eed_0fca_4e11);
        let mut scrambled = 0;
        for _ in 0..200 {
            let mut c: ReplyCache<8, 8> = ReplyCache::default();
            // (client, seqno, opn, reply) in client order.
            let mut model: heapless::Vec<(Endpoint, u64, u64, [u8; 8]), 8> = heapless::Vec::new();
            for step in 0..60u64 {
                // Three requests per batch share its operation number: eviction breaks the
                // tie by endpoint.
                let opn = step / 3;
                let client = ep(rng.below(20) as u16);
                let entry = (client, step + 1, opn, step.to_le_bytes());
                c.insert(client, step + 1, opn, &step.to_le_bytes());
                match model.binary_search_by(|e| e.0.cmp(&client)) {
                    Ok(i) => model[i] = entry,
                    Err(mut i) => {
                        if model.is_full() {
                            let victim = (0..model.len()).min_by_key(|&j| (model[j].2, model[j].0)).unwrap();
                            model.remove(victim);
                            i -= usize::from(victim < i);
                        }
                        model.insert(i, entry).unwrap();
                    }
                }
                let same = |e: CacheEntryWire<'_>, m: &(Endpoint, u64, u64, [u8; 8])| {
                    (e.client, e.seqno, e.opn, e.reply.0) == (m.0, m.1, m.2, &m.3[..])
                };
                assert_eq!(c.len(), model.len());
                assert!(c.iter().zip(model.iter()).all(|(e, m)| same(e, m)), "after step {step}");
                assert_eq!(c.invariant(opn + 1), Ok(()));
            }
            let mut rebuilt: ReplyCache<8, 8> = ReplyCache::default();
            for i in 0..c.len() {
                rebuilt.push_sorted(c.wire(i).unwrap()).unwrap();
            }
            scrambled += usize::from(rebuilt.slots[..c.len()] != c.slots[..c.len()]);
            assert_eq!(rebuilt, c);
            assert_eq!(hash(&rebuilt), hash(&c));
        }
        assert!(scrambled > 100, "most caches keep their entries out of client order: {scrambled}");
    }

    #[test]
    fn push_sorted_refuses_out_of_order_entries() {
        let mut c: ReplyCache<4, 8> = ReplyCache::default();
        let e = |p| CacheEntryWire { client: ep(p), seqno: 1, opn: 1, reply: Bytes(b"r") };
        assert!(c.push_sorted(e(2)).is_ok());
        assert!(c.push_sorted(e(1)).is_err());
        assert!(c.push_sorted(e(2)).is_err());
        assert!(c.push_sorted(CacheEntryWire { reply: Bytes(&[0; 9]), ..e(3) }).is_err(), "reply too long");
    }

    #[test]
    fn invariant_rejects_unsorted_entries_and_unexecuted_replies() {
        let mut c: ReplyCache<4, 8> = ReplyCache::default();
        c.insert(ep(1), 1, 3, b"a");
        c.insert(ep(2), 1, 4, b"b");
        assert_eq!(c.invariant(5), Ok(()));
        assert!(c.invariant(4).is_err(), "opn 4 is not executed yet");
        c.clients.swap(0, 1);
        assert!(c.invariant(5).is_err(), "unsorted");
        c.clients.swap(0, 1);
        c.slots[1] = c.slots[0];
        // Checked in debug builds only (flash, see `invariant`).
        assert_eq!(c.invariant(5).is_err(), cfg!(debug_assertions), "one slot twice");
        c.slots[1] = 2;
        assert!(c.invariant(5).is_err(), "a slot beyond the entries");
        assert!(!c.is_empty());
        c.clear();
        assert!(c.is_empty());
    }
}
