//! A slot of the unacked queue: one message waiting for its ack, in a fixed `D`-byte buffer.

/// An unacked message. Only `body[..len]` is the message: equality and hashing look at
/// nothing past it, because [`Reliable::remove_pending`](super::Reliable::remove_pending)
/// moves only the message bytes.
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

impl<const D: usize> core::hash::Hash for Pending<D> {
    fn hash<Hs: core::hash::Hasher>(&self, state: &mut Hs) {
        self.peer.hash(state);
        self.seqno.hash(state);
        self.body().hash(state);
    }
}
