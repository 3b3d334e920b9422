//! The unacked queue: messages waiting for their acks, each in a fixed `D`-byte slot.
//!
//! Slots are reused, not rebuilt: a new message is encoded into the first free slot as it
//! was left, and only the slots the queue ever grew to were zero-filled, once. Zeroing a
//! fresh `D`-byte slot for every message (8 KiB in io-std) was a `memset` per message sent,
//! on the client for every request and on the host for every reply.

use core::hash::{Hash, Hasher};

/// An unacked message. Only `body[..len]` is the message: nothing past it counts.
#[derive(Clone, Debug)]
pub(super) struct Pending<const D: usize> {
    pub(super) peer: u32,
    pub(super) seqno: u64,
    pub(super) len: usize,
    pub(super) body: [u8; D],
}

impl<const D: usize> Pending<D> {
    pub(super) fn body(&self) -> &[u8] {
        &self.body[..self.len]
    }
}

impl<const D: usize> PartialEq for Pending<D> {
    fn eq(&self, other: &Self) -> bool {
        self.peer == other.peer && self.seqno == other.seqno && self.body() == other.body()
    }
}

impl<const D: usize> Eq for Pending<D> {}

impl<const D: usize> Hash for Pending<D> {
    fn hash<Hs: Hasher>(&self, state: &mut Hs) {
        self.peer.hash(state);
        self.seqno.hash(state);
        self.body().hash(state);
    }
}

/// Why [`Pool::push_with`] queued nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PushError {
    /// Every slot holds a live message.
    Full,
    /// The encoder refused the body (it does not fit).
    Refused,
}

/// At most `U` unacked messages, in the order they were queued except where a removal
/// moved the last one into the gap. The live messages are `slots[..live]`; slots past
/// `live` are free and keep their old bytes, which nothing reads. Equality, hashing,
/// cloning and debug output see the live messages only.
pub(super) struct Pool<const D: usize, const U: usize> {
    slots: heapless::Vec<Pending<D>, U>,
    live: usize,
}

impl<const D: usize, const U: usize> Pool<D, U> {
    pub(super) const fn new() -> Self {
        Pool { slots: heapless::Vec::new(), live: 0 }
    }

    /// Live messages.
    pub(super) fn len(&self) -> usize {
        self.live
    }

    /// The message queued last (the last live slot).
    pub(super) fn last(&self) -> Option<&Pending<D>> {
        self.as_slice().last()
    }

    pub(super) fn get(&self, k: usize) -> Option<&Pending<D>> {
        self.as_slice().get(k)
    }

    pub(super) fn iter(&self) -> core::slice::Iter<'_, Pending<D>> {
        self.as_slice().iter()
    }

    pub(super) fn iter_mut(&mut self) -> core::slice::IterMut<'_, Pending<D>> {
        let live = self.live;
        self.slots[..live].iter_mut()
    }

    fn as_slice(&self) -> &[Pending<D>] {
        &self.slots[..self.live]
    }

    /// Queues a message for `peer` with `seqno` whose body `encode` writes into the slot
    /// (at most `max` bytes) and measures; `None` from it leaves the pool as it was.
    /// Returns the queued message.
    pub(super) fn push_with(
        &mut self,
        peer: u32,
        seqno: u64,
        max: usize,
        encode: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Result<&Pending<D>, PushError> {
        if self.live == self.slots.len() {
            // The first use of this slot: the only time it is zero-filled.
            self.slots.push(Pending { peer, seqno, len: 0, body: [0; D] }).map_err(|_| PushError::Full)?;
        }
        let slot = &mut self.slots[self.live];
        let len = encode(&mut slot.body[..max.min(D)]).ok_or(PushError::Refused)?;
        (slot.peer, slot.seqno, slot.len) = (peer, seqno, len);
        self.live += 1;
        Ok(slot)
    }

    /// Removes message `k`, moving the last live message into its place.
    pub(super) fn swap_remove(&mut self, k: usize) {
        let Some(last) = self.live.checked_sub(1) else { return };
        if k < last {
            let (head, tail) = self.slots.split_at_mut(last);
            let (slot, moved) = (&mut head[k], &tail[0]);
            slot.peer = moved.peer;
            slot.seqno = moved.seqno;
            slot.len = moved.len;
            slot.body[..moved.len].copy_from_slice(moved.body());
        }
        if k <= last {
            self.live = last;
        }
    }
}

impl<const D: usize, const U: usize> core::ops::Index<usize> for Pool<D, U> {
    type Output = Pending<D>;
    /// Live message `k` (below [`Pool::len`]).
    fn index(&self, k: usize) -> &Pending<D> {
        &self.as_slice()[k]
    }
}

impl<const D: usize, const U: usize> core::ops::IndexMut<usize> for Pool<D, U> {
    fn index_mut(&mut self, k: usize) -> &mut Pending<D> {
        let live = self.live;
        &mut self.slots[..live][k]
    }
}

impl<'p, const D: usize, const U: usize> IntoIterator for &'p Pool<D, U> {
    type Item = &'p Pending<D>;
    type IntoIter = core::slice::Iter<'p, Pending<D>>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<const D: usize, const U: usize> Clone for Pool<D, U> {
    /// The live messages only, each copied up to its length.
    fn clone(&self) -> Self {
        let mut copy = Pool::new();
        for m in self.iter() {
            // Cannot fail: the copy has the same capacity and a message fits its slot.
            let _ = copy.push_with(m.peer, m.seqno, m.len, |body| {
                body.copy_from_slice(m.body());
                Some(m.len)
            });
        }
        copy
    }
}

impl<const D: usize, const U: usize> PartialEq for Pool<D, U> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<const D: usize, const U: usize> Eq for Pool<D, U> {}

impl<const D: usize, const U: usize> Hash for Pool<D, U> {
    fn hash<Hs: Hasher>(&self, state: &mut Hs) {
        self.as_slice().hash(state);
    }
}

impl<const D: usize, const U: usize> core::fmt::Debug for Pool<D, U> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.iter().map(|m| (m.peer, m.seqno, m.len))).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::{Pool, PushError};

    fn push(p: &mut Pool<8, 3>, seqno: u64, body: &[u8]) -> Result<(), PushError> {
        p.push_with(0, seqno, 8, |slot| {
            slot.get_mut(..body.len())?.copy_from_slice(body);
            Some(body.len())
        })
        .map(|_| ())
    }

    #[test]
    fn a_reused_slot_shows_only_its_new_message_and_equals_a_fresh_pool() {
        let mut used = Pool::<8, 3>::new();
        push(&mut used, 1, b"longer!!").unwrap();
        push(&mut used, 2, b"two").unwrap();
        used.swap_remove(0);
        used.swap_remove(0);
        assert_eq!(used.len(), 0);
        push(&mut used, 3, b"abc").unwrap();
        assert_eq!(used.get(0).map(|m| m.body()), Some(&b"abc"[..]), "no bytes of the old message");
        let mut fresh = Pool::<8, 3>::new();
        push(&mut fresh, 3, b"abc").unwrap();
        assert!(used == fresh, "free slots are not compared");
        let hash = crate::rsl::app::hash_of::<Pool<8, 3>>;
        assert_eq!(hash(&used), hash(&fresh), "nor hashed");
        assert!(used.clone() == fresh && used.clone().slots.len() == 1, "a clone copies live messages only");
    }

    #[test]
    fn a_full_pool_and_a_refused_encoding_change_nothing() {
        let mut p = Pool::<8, 3>::new();
        for s in 1..=3 {
            push(&mut p, s, b"x").unwrap();
        }
        assert_eq!(push(&mut p, 4, b"y"), Err(PushError::Full));
        p.swap_remove(1);
        assert_eq!(push(&mut p, 5, b"too long!"), Err(PushError::Refused));
        assert_eq!(p.len(), 2);
        let seqnos: heapless::Vec<u64, 3> = p.iter().map(|m| m.seqno).collect();
        assert_eq!(&seqnos[..], &[1, 3], "the last moved into the gap");
    }
}
