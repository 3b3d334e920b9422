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
//! retransmission) is a binary search, O(log n); a client's first reply inserts its entry in
//! order (O(n) moves, once per client), and a full cache finds the oldest entry to evict in
//! O(n), once per new client.

use serde::{Deserialize, Serialize};

use crate::endpoint::{search_sorted, Endpoint};
use crate::wire::Bytes;

/// One client's cached reply.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CachedReply<const RB: usize> {
    /// The client.
    pub client: Endpoint,
    /// Sequence number of its last executed request.
    pub seqno: u64,
    /// Operation number whose batch executed it (drives eviction).
    pub opn: u64,
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

/// At most `C` clients' last replies of at most `RB` bytes, sorted by client.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ReplyCache<const C: usize, const RB: usize> {
    entries: heapless::Vec<CachedReply<RB>, C>,
}

/// Where a client's entry is (`Ok`) or would be inserted (`Err`): one search serves a
/// lookup and the insert after it, as long as the cache does not change in between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot(Result<usize, usize>);

impl<const C: usize, const RB: usize> Default for ReplyCache<C, RB> {
    fn default() -> Self {
        ReplyCache { entries: heapless::Vec::new() }
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
        self.entries.truncate(source.entries.len());
        let kept = self.entries.len();
        for (dst, src) in self.entries.iter_mut().zip(&source.entries) {
            dst.set(src.client, src.seqno, src.opn, &src.reply);
        }
        for src in &source.entries[kept..] {
            // Cannot fail: both caches hold at most `C` entries.
            let _ = self.entries.push(CachedReply::new(src.client, src.seqno, src.opn, &src.reply));
        }
    }
}

impl<const RB: usize> CachedReply<RB> {
    /// An entry; a reply longer than `RB` is cut.
    fn new(client: Endpoint, seqno: u64, opn: u64, reply: &[u8]) -> Self {
        let reply = heapless::Vec::from_slice(&reply[..reply.len().min(RB)]).unwrap_or_default();
        CachedReply { client, seqno, opn, reply }
    }

    /// Overwrites this entry in place; a reply longer than `RB` is cut.
    fn set(&mut self, client: Endpoint, seqno: u64, opn: u64, reply: &[u8]) {
        self.client = client;
        self.seqno = seqno;
        self.opn = opn;
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
        Slot(search_sorted(&self.entries, client, |e| e.client))
    }

    /// The entry at `slot`, if it holds one.
    pub(crate) fn at(&self, slot: Slot) -> Option<&CachedReply<RB>> {
        slot.0.ok().and_then(|i| self.entries.get(i))
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
        match slot.0 {
            Ok(i) => self.entries[i].set(client, seqno, opn, reply),
            Err(mut i) => {
                if self.entries.is_full() {
                    let Some(victim) = self.oldest() else { return };
                    self.entries.remove(victim);
                    if victim < i {
                        i -= 1;
                    }
                }
                // Cannot fail: a slot was freed above when full (C > 0 by type use).
                let _ = self.entries.insert(i, CachedReply::new(client, seqno, opn, reply));
            }
        }
    }

    fn oldest(&self) -> Option<usize> {
        self.entries.iter().enumerate().min_by_key(|(_, e)| (e.opn, e.client)).map(|(i, _)| i)
    }

    /// Number of clients cached.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no client is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in client order.
    pub fn iter(&self) -> impl Iterator<Item = &CachedReply<RB>> {
        self.entries.iter()
    }

    /// Forgets every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Appends an entry received in state transfer; entries must arrive in client order,
    /// with replies of at most `RB` bytes, and at most `C` of them.
    pub fn push_sorted(&mut self, e: CacheEntryWire<'_>) -> Result<(), BadCacheEntry> {
        if self.entries.last().is_some_and(|last| last.client >= e.client) {
            return Err(BadCacheEntry);
        }
        let reply = heapless::Vec::from_slice(e.reply.0).map_err(|_| BadCacheEntry)?;
        self.entries
            .push(CachedReply { client: e.client, seqno: e.seqno, opn: e.opn, reply })
            .map_err(|_| BadCacheEntry)
    }

    /// Local invariants, given the executor's `ops_complete`: one entry per client, sorted,
    /// and only replies of executed operations (`opn < ops_complete`).
    pub fn invariant(&self, ops_complete: u64) -> Result<(), &'static str> {
        for pair in self.entries.windows(2) {
            if pair[0].client >= pair[1].client {
                return Err("reply cache not sorted by client, or a client twice");
            }
        }
        if self.entries.iter().any(|e| e.opn >= ops_complete) {
            return Err("reply cache holds a reply from an unexecuted operation");
        }
        Ok(())
    }

    /// The state-transfer form of entry `i`.
    pub fn wire(&self, i: usize) -> Option<CacheEntryWire<'_>> {
        self.entries.get(i).map(|e| CacheEntryWire {
            client: e.client,
            seqno: e.seqno,
            opn: e.opn,
            reply: Bytes(&e.reply),
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
        c.entries.swap(0, 1);
        assert!(c.invariant(5).is_err(), "unsorted");
        assert!(!c.is_empty());
        c.clear();
        assert!(c.is_empty());
    }
}
