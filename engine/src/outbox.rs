//! Caller-provided, bounded storage for the datagrams one step emits.
//!
//! The engine encodes straight into the outbox's byte arena; the binding then sends each
//! `(destination, bytes)` pair and clears it. A full outbox behaves like a lossy network:
//! the datagram is dropped and counted (the protocols already tolerate loss), never a panic.

use crate::endpoint::Endpoint;
use crate::wire::EncodeError;

/// Where one queued datagram lives in the arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    dst: Endpoint,
    start: usize,
    len: usize,
    after_sync: bool,
}

impl Slot {
    /// An unused slot, to initialise caller-provided slot arrays.
    pub const EMPTY: Slot = Slot { dst: Endpoint::v4([0, 0, 0, 0], 0), start: 0, len: 0, after_sync: false };
}

/// Why a datagram did not go into the outbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PushError {
    /// No slot or not enough arena bytes left in this step.
    Full,
    /// The message does not fit the configured datagram bound (an engine bug if ever seen).
    TooLarge,
}

/// The datagrams of one step: a view over caller-provided arena and slot storage.
#[derive(Debug)]
pub struct Outbox<'a> {
    bytes: &'a mut [u8],
    slots: &'a mut [Slot],
    len: usize,
    used: usize,
}

impl<'a> Outbox<'a> {
    /// An empty outbox over `bytes` (datagram payloads) and `slots` (one per datagram).
    pub fn new(bytes: &'a mut [u8], slots: &'a mut [Slot]) -> Outbox<'a> {
        Outbox { bytes, slots, len: 0, used: 0 }
    }

    /// Number of datagrams queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no datagram is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Arena bytes still free: a binding that gathers several steps into one outbox checks
    /// this (and [`Outbox::free_slots`]) before each step.
    pub fn free_bytes(&self) -> usize {
        self.bytes.len() - self.used
    }

    /// Datagram slots still free.
    pub fn free_slots(&self) -> usize {
        self.slots.len() - self.len
    }

    /// Forgets every queued datagram (call after sending them).
    pub fn clear(&mut self) {
        self.len = 0;
        self.used = 0;
    }

    /// The queued datagrams, in the order the engine emitted them.
    pub fn iter(&self) -> impl Iterator<Item = (Endpoint, &[u8])> + '_ {
        self.slots[..self.len].iter().map(|s| (s.dst, &self.bytes[s.start..s.start + s.len]))
    }

    /// The queued datagrams with whether each must wait for the sync
    /// ([`Outbox::waits_for_sync`]), in the order the engine emitted them.
    pub fn iter_marked(&self) -> impl Iterator<Item = (Endpoint, &[u8], bool)> + '_ {
        self.slots[..self.len].iter().map(|s| (s.dst, &self.bytes[s.start..s.start + s.len], s.after_sync))
    }

    /// True if datagram `i` reveals durable state (an RSL promise, vote or ballot): a durable
    /// binding sends it only once every record handed out before it is synced. Other
    /// datagrams may leave at once. See `fleet_engine::rsl::durable`.
    pub fn waits_for_sync(&self, i: usize) -> bool {
        self.slots[..self.len].get(i).is_some_and(|s| s.after_sync)
    }

    /// True if any queued datagram waits for the sync.
    pub fn any_waits_for_sync(&self) -> bool {
        self.slots[..self.len].iter().any(|s| s.after_sync)
    }

    /// Marks every datagram queued from index `from` on as waiting for the sync.
    pub(crate) fn mark_after_sync(&mut self, from: usize) {
        let len = self.len;
        for s in self.slots[from.min(len)..len].iter_mut() {
            s.after_sync = true;
        }
    }

    /// Encodes one datagram of at most `max_len` bytes for `dst`; returns its slot index.
    pub(crate) fn push(
        &mut self,
        dst: Endpoint,
        max_len: usize,
        encode: impl FnOnce(&mut [u8]) -> Result<usize, EncodeError>,
    ) -> Result<usize, PushError> {
        if self.len == self.slots.len() {
            return Err(PushError::Full);
        }
        let room = self.bytes.len() - self.used;
        let limit = room.min(max_len);
        match encode(&mut self.bytes[self.used..self.used + limit]) {
            Ok(n) => Ok(self.commit(dst, n)),
            // Failing with less than a full datagram of room is a full outbox, not a big message.
            Err(EncodeError::BufferFull) if room < max_len => Err(PushError::Full),
            Err(EncodeError::BufferFull) => Err(PushError::TooLarge),
        }
    }

    /// Queues an already queued datagram for another destination (broadcast). The new slot
    /// shares the first one's bytes: no copy and no arena bytes (queued bytes never change,
    /// so sharing is invisible to the binding). A 2b broadcast carried a whole batch to
    /// every replica, and copying it was a tenth of the engine bench's `memmove`.
    pub(crate) fn push_copy(&mut self, dst: Endpoint, of: usize) -> Result<usize, PushError> {
        let src = match self.slots[..self.len].get(of) {
            Some(s) => *s,
            None => return Err(PushError::Full),
        };
        let Some(slot) = self.slots.get_mut(self.len) else { return Err(PushError::Full) };
        *slot = Slot { dst, after_sync: false, ..src };
        self.len += 1;
        Ok(self.len - 1)
    }

    fn commit(&mut self, dst: Endpoint, n: usize) -> usize {
        self.slots[self.len] = Slot { dst, start: self.used, len: n, after_sync: false };
        self.used += n;
        self.len += 1;
        self.len - 1
    }
}

/// Owned outbox storage with compile-time capacity: `SLOTS` datagrams, `BYTES` arena bytes.
#[derive(Debug)]
pub struct OutboxBuf<const SLOTS: usize, const BYTES: usize> {
    bytes: [u8; BYTES],
    slots: [Slot; SLOTS],
}

impl<const SLOTS: usize, const BYTES: usize> OutboxBuf<SLOTS, BYTES> {
    /// Zeroed storage.
    pub const fn new() -> Self {
        OutboxBuf { bytes: [0; BYTES], slots: [Slot::EMPTY; SLOTS] }
    }

    /// An empty outbox over this storage.
    pub fn outbox(&mut self) -> Outbox<'_> {
        Outbox::new(&mut self.bytes, &mut self.slots)
    }
}

impl<const SLOTS: usize, const BYTES: usize> Default for OutboxBuf<SLOTS, BYTES> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(n: usize) -> impl FnOnce(&mut [u8]) -> Result<usize, EncodeError> {
        move |buf: &mut [u8]| {
            if buf.len() < n {
                return Err(EncodeError::BufferFull);
            }
            buf[..n].fill(n as u8);
            Ok(n)
        }
    }

    #[test]
    fn full_outbox_drops_instead_of_panicking() {
        let mut store = OutboxBuf::<2, 16>::new();
        let mut out = store.outbox();
        let a = Endpoint::v4([127, 0, 0, 1], 1);
        assert_eq!(out.push(a, 10, fill(4)), Ok(0));
        assert_eq!(out.push(a, 10, fill(4)), Ok(1));
        assert_eq!(out.push(a, 10, fill(1)), Err(PushError::Full), "no slot left");
        out.clear();
        assert_eq!(out.push(a, 16, fill(12)), Ok(0));
        assert_eq!(out.push(a, 16, fill(8)), Err(PushError::Full), "arena has 4 bytes left");
    }

    #[test]
    fn oversize_message_is_told_apart_from_a_full_outbox() {
        let mut store = OutboxBuf::<4, 64>::new();
        let mut out = store.outbox();
        let a = Endpoint::v4([127, 0, 0, 1], 1);
        assert_eq!(out.push(a, 8, fill(9)), Err(PushError::TooLarge));
        assert!(out.is_empty());
    }

    #[test]
    fn copies_share_bytes_and_keep_order() {
        let mut store = OutboxBuf::<4, 64>::new();
        let mut out = store.outbox();
        let a = Endpoint::v4([127, 0, 0, 1], 1);
        let b = Endpoint::v4([127, 0, 0, 1], 2);
        let first = out.push(a, 64, fill(3)).unwrap();
        out.push_copy(b, first).unwrap();
        let sent: heapless::Vec<(Endpoint, heapless::Vec<u8, 8>), 4> =
            out.iter().map(|(d, p)| (d, heapless::Vec::from_slice(p).unwrap())).collect();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].0, a);
        assert_eq!(sent[1].0, b);
        assert_eq!(&sent[1].1[..], &[3, 3, 3]);
        assert_eq!(out.push_copy(b, 7), Err(PushError::Full));
        assert_eq!(out.free_bytes(), 61, "the copy took no arena bytes");
    }

    #[test]
    fn a_copy_needs_a_free_slot_but_no_free_bytes() {
        let mut store = OutboxBuf::<3, 8>::new();
        let mut out = store.outbox();
        let (a, b, c) =
            (Endpoint::v4([10, 0, 0, 1], 1), Endpoint::v4([10, 0, 0, 2], 1), Endpoint::v4([10, 0, 0, 3], 1));
        let first = out.push(a, 8, fill(8)).unwrap();
        assert_eq!(out.free_bytes(), 0);
        assert_eq!(out.push_copy(b, first), Ok(1), "a full arena still takes a copy");
        out.mark_after_sync(1);
        assert_eq!(out.push_copy(c, first), Ok(2));
        assert!(!out.waits_for_sync(0) && out.waits_for_sync(1) && !out.waits_for_sync(2), "marks are per slot");
        assert_eq!(out.push_copy(c, first), Err(PushError::Full), "no slot left");
        let sent: heapless::Vec<(Endpoint, heapless::Vec<u8, 8>), 3> =
            out.iter().map(|(d, p)| (d, heapless::Vec::from_slice(p).unwrap())).collect();
        assert_eq!(sent.iter().map(|s| s.0).collect::<heapless::Vec<_, 3>>()[..], [a, b, c]);
        assert!(sent.iter().all(|s| s.1[..] == [8; 8]));
    }
}
