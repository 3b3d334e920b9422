//! Protocol-state equality and hashing of [`KvHost`], for model checkers: everything that
//! decides future behaviour, leaving out the counters and the per-step change flag.

use super::KvHost;
use crate::kv::storage::Storage;

impl<S: Storage + PartialEq, const H: usize, const M: usize, const P: usize, const U: usize, const D: usize> PartialEq
    for KvHost<S, H, M, P, U, D>
{
    fn eq(&self, other: &Self) -> bool {
        self.me == other.me
            && self.config == other.config
            && self.map == other.map
            && self.store == other.store
            && self.rel == other.rel
            && self.incoming == other.incoming
            && self.completed == other.completed
            && self.outgoing == other.outgoing
            && self.next_transfer == other.next_transfer
            && self.reserved_pairs == other.reserved_pairs
            && self.join == other.join
            && self.host_meta == other.host_meta
    }
}

impl<S: Storage + Eq, const H: usize, const M: usize, const P: usize, const U: usize, const D: usize> Eq
    for KvHost<S, H, M, P, U, D>
{
}

impl<S: Storage + core::hash::Hash, const H: usize, const M: usize, const P: usize, const U: usize, const D: usize>
    core::hash::Hash for KvHost<S, H, M, P, U, D>
{
    fn hash<Hs: core::hash::Hasher>(&self, state: &mut Hs) {
        self.me.hash(state);
        self.config.hash(state);
        self.map.hash(state);
        self.store.hash(state);
        self.rel.hash(state);
        self.incoming.hash(state);
        self.completed.hash(state);
        self.outgoing.hash(state);
        self.next_transfer.hash(state);
        self.reserved_pairs.hash(state);
        self.join.hash(state);
        self.host_meta.hash(state);
    }
}
