//! The executor (IronRSL `Executor.i.dfy`): applies decided batches in operation order and
//! keeps the reply cache.

use super::app::App;
use super::ballot::Ballot;
use super::batch::{self, EntryKind};
use super::group;
use super::reply_cache::ReplyCache;
use crate::endpoint::Endpoint;

pub use super::digest::{chain_digest, INITIAL_EXECUTED_DIGEST};

/// What executing one request produced, for the replica to send.
pub struct ReplyOut<'r> {
    /// The client.
    pub client: Endpoint,
    /// The request's seqno.
    pub seqno: u64,
    /// The reply bytes (a group's reply when `group`).
    pub reply: &'r [u8],
    /// The request was a group ([`super::group`]).
    pub group: bool,
}

/// Executor state around the application `A`, with a reply cache of `C` clients and
/// replies of at most `RB` bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Executor<A, const C: usize, const RB: usize> {
    /// The replicated application.
    pub app: A,
    /// Operations executed so far; the next batch to execute has this operation number.
    pub ops_complete: u64,
    /// The highest ballot of any executed batch.
    pub max_bal_reflected: Ballot,
    /// Each client's last reply.
    pub reply_cache: ReplyCache<C, RB>,
    /// The digest chain over every executed `(opn, batch)` ([`chain_digest`]): two replicas
    /// with the same `ops_complete` and different digests have diverged (the agreement
    /// checker reads it).
    pub executed_digest: u64,
}

impl<A: App, const C: usize, const RB: usize> Executor<A, C, RB> {
    /// An executor that has executed nothing.
    pub fn new(app: A) -> Self {
        Executor {
            app,
            ops_complete: 0,
            max_bal_reflected: Ballot::default(),
            reply_cache: ReplyCache::default(),
            executed_digest: INITIAL_EXECUTED_DIGEST,
        }
    }

    /// Executes the decided batch of operation `ops_complete`, in ballot `bal`.
    ///
    /// Each request whose seqno is above the client's cached seqno is applied and cached;
    /// one at or below it was already executed and is not applied again (exactly-once for
    /// cached clients). A group's requests are all applied, in order, and their replies
    /// cached together as one ([`super::group`]). `on_reply` is called for every request
    /// that has a reply to send, the cached one for an exact duplicate. A group's reply takes
    /// at most `group_reply_bytes` (see [`group::reply_room`]); the same on every replica.
    ///
    /// A membership change ([`EntryKind::Change`]) is decided by `on_change`, which writes
    /// its outcome as the reply and returns the reply's length and whether the change is
    /// this epoch's stop-sign; returns true if the batch held one. The batch executes
    /// whole either way: it was decided as one value in the epoch it ends.
    ///
    /// `on_entry` sees every entry's client and seqno, executed now or before (the batch
    /// is parsed once, here).
    pub fn execute(
        &mut self,
        bal: Ballot,
        batch_bytes: &[u8],
        group_reply_bytes: usize,
        mut on_entry: impl FnMut(Endpoint, u64),
        mut on_reply: impl FnMut(ReplyOut<'_>),
        mut on_change: impl FnMut(&[u8], &mut [u8]) -> (usize, bool),
    ) -> bool {
        let opn = self.ops_complete;
        let mut reply = [0u8; RB];
        let mut stopped = false;
        for entry in batch::entries(batch_bytes) {
            let (client, seqno, group) = (entry.client, entry.seqno, entry.kind == EntryKind::Group);
            on_entry(client, seqno);
            let slot = self.reply_cache.slot(client);
            if let Some(cached) = self.reply_cache.at(slot) {
                if seqno <= cached.seqno {
                    if seqno == cached.seqno {
                        on_reply(ReplyOut { client, seqno, reply: &cached.reply, group });
                    }
                    continue;
                }
            }
            let n = match entry.kind {
                EntryKind::Single => self.app.apply(entry.request.0, &mut reply).min(RB),
                EntryKind::Group => self.apply_group(entry.request.0, &mut reply[..group_reply_bytes.min(RB)]),
                EntryKind::Change => {
                    let (n, stop) = on_change(entry.request.0, &mut reply);
                    stopped |= stop;
                    n.min(RB)
                }
            };
            // The application does not touch the cache: `slot` still holds.
            self.reply_cache.insert_at(slot, client, seqno, opn, &reply[..n]);
            on_reply(ReplyOut { client, seqno, reply: &reply[..n], group });
        }
        self.executed_digest = chain_digest(self.executed_digest, opn, batch_bytes);
        self.ops_complete = self.ops_complete.saturating_add(1);
        self.max_bal_reflected = self.max_bal_reflected.max(bal);
        stopped
    }

    /// Applies every request of a (validated) group in order and writes their replies
    /// into `group_reply`; returns its length.
    fn apply_group(&mut self, requests: &[u8], group_reply: &mut [u8]) -> usize {
        let count = group::requests(requests).count();
        let mut one = [0u8; RB];
        let mut writer = group::ReplyWriter::new(group_reply);
        for (i, request) in group::requests(requests).enumerate() {
            let n = self.app.apply(request, &mut one).min(RB);
            writer.push(&one[..n], count - i - 1);
        }
        writer.written().len()
    }

    /// Local invariants: the reply cache holds only executed requests (see
    /// [`ReplyCache::invariant`]), and nothing executed means the initial state of the
    /// cache, digest and ballot. `ops_complete` only grows: see `replica::Monotone`.
    pub fn invariant(&self) -> Result<(), &'static str> {
        self.reply_cache.invariant(self.ops_complete)?;
        if self.ops_complete == 0
            && (self.executed_digest != INITIAL_EXECUTED_DIGEST || self.max_bal_reflected != Ballot::default())
        {
            return Err("executor changed without executing anything");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rsl::apps::counter::Counter;
    use crate::rsl::batch::BatchEntry;
    use crate::wire::{append, Bytes};

    fn batch_of(reqs: &[(u16, u64)]) -> heapless::Vec<u8, 256> {
        let mut b = heapless::Vec::new();
        for (port, seqno) in reqs {
            let e = BatchEntry {
                client: Endpoint::v4([10, 0, 0, 1], *port),
                seqno: *seqno,
                request: Bytes(b""),
                kind: EntryKind::Single,
            };
            append(&mut b, &e).unwrap();
        }
        b
    }

    /// Executes one batch and returns the (seqno, counter value) of every reply it produced.
    fn run(ex: &mut Executor<Counter, 4, 8>, reqs: &[(u16, u64)]) -> heapless::Vec<(u64, u64), 8> {
        let mut replies = heapless::Vec::new();
        ex.execute(
            Ballot::INITIAL,
            &batch_of(reqs),
            8,
            |_, _| {},
            |r| {
                let v = u64::from_le_bytes(r.reply.try_into().unwrap());
                replies.push((r.seqno, v)).unwrap();
            },
            |_, _| (0, false),
        );
        replies
    }

    #[test]
    fn executor_applies_each_request_once_and_replays_the_cached_reply() {
        let mut ex: Executor<Counter, 4, 8> = Executor::new(Counter::default());
        assert_eq!(&run(&mut ex, &[(1, 1), (2, 1)])[..], &[(1, 1), (1, 2)]);
        assert_eq!(&run(&mut ex, &[(1, 1), (2, 2)])[..], &[(1, 1), (2, 3)], "(1,1) answered from the cache");
        assert_eq!(&run(&mut ex, &[(1, 0)])[..], &[], "an older request gets no reply: its own is gone");
        assert_eq!(ex.app.value, 3, "the retried (1,1) and the old (1,0) were not applied");
        assert_eq!(ex.ops_complete, 3);
    }

    #[test]
    fn a_group_applies_every_request_in_order_once_and_caches_their_replies_as_one() {
        let mut ex: Executor<Counter, 4, 32> = Executor::new(Counter::default());
        let client = Endpoint::v4([10, 0, 0, 1], 7);
        let mut requests = [0u8; 16];
        let (len, count) = group::encode(&[b"", b"", b""], &mut requests);
        assert_eq!(count, 3);
        let mut b: heapless::Vec<u8, 64> = heapless::Vec::new();
        let entry = BatchEntry { client, seqno: 4, request: Bytes(&requests[..len]), kind: EntryKind::Group };
        append(&mut b, &entry).unwrap();
        let mut sent: heapless::Vec<(u64, bool, heapless::Vec<u8, 32>), 4> = heapless::Vec::new();
        for _ in 0..2 {
            ex.execute(
                Ballot::INITIAL,
                &b,
                24,
                |_, _| {},
                |r| {
                    sent.push((r.seqno, r.group, heapless::Vec::from_slice(r.reply).unwrap())).unwrap();
                },
                |_, _| (0, false),
            );
        }
        assert_eq!(ex.app.value, 3, "applied once, though decided twice");
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0], sent[1], "the duplicate gets the cached group reply");
        assert!(sent[0].1, "answered as a group");
        // A 24-byte group reply: a counter reply takes 10 (marker, length, 8 bytes), and
        // each later request keeps SHORT_REPLY_BYTES; the first has 24 - 16 = 8, too few.
        let replies: heapless::Vec<Option<u64>, 4> =
            group::replies(&sent[0].2).map(|r| r.map(|v| u64::from_le_bytes(v.try_into().unwrap()))).collect();
        assert_eq!(&replies[..], &[None, Some(2), Some(3)]);
        assert_eq!(ex.reply_cache.get(client).unwrap().seqno, 4);
    }

    #[test]
    fn invariant_rejects_a_change_without_execution() {
        let ok: Executor<Counter, 4, 8> = Executor::new(Counter::default());
        assert_eq!(ok.invariant(), Ok(()));
        let mut ballot = ok.clone();
        ballot.max_bal_reflected = Ballot::INITIAL;
        assert!(ballot.invariant().is_err(), "a reflected ballot with nothing executed");
        let mut digest = ok.clone();
        digest.executed_digest ^= 1;
        assert!(digest.invariant().is_err(), "a digest with nothing executed");
        digest.ops_complete = 1;
        assert_eq!(digest.invariant(), Ok(()));
    }
}
