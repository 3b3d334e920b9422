//! The executor (IronRSL `Executor.i.dfy`): applies decided batches in operation order and
//! keeps the reply cache.

use super::app::App;
use super::ballot::Ballot;
use super::batch;
use super::reply_cache::ReplyCache;
use crate::endpoint::Endpoint;

/// What executing one request produced, for the replica to send.
pub struct ReplyOut<'r> {
    /// The client.
    pub client: Endpoint,
    /// The request's seqno.
    pub seqno: u64,
    /// The reply bytes.
    pub reply: &'r [u8],
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

/// The executed-batch digest of a replica that has executed nothing.
pub const INITIAL_EXECUTED_DIGEST: u64 = 0xcbf2_9ce4_8422_2325;

/// The key of the digest chain's SipHash: a public constant, not a secret. The chain tells
/// histories apart among members (accidental divergence, snapshot pieces of one history);
/// it is not a defence against a member that lies (`docs/security.md`).
const DIGEST_KEY: [u8; 16] = *b"fleet-digest-ch1";

/// The digest after executing `batch` as operation `opn` on a history whose digest is
/// `prev`: SipHash-2-4 of `prev ++ opn ++ batch` (little-endian), eight bytes a round
/// (FNV-1a, a byte at a time, was a fifth of the engine's time at 500k operations/s). The
/// same code as the datagram MAC's, so firmware holds one copy of it.
pub fn chain_digest(prev: u64, opn: u64, batch: &[u8]) -> u64 {
    let mut head = [0u8; 16];
    head[..8].copy_from_slice(&prev.to_le_bytes());
    head[8..].copy_from_slice(&opn.to_le_bytes());
    crate::sip::sip24(&DIGEST_KEY, &[&head, batch])
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
    /// cached clients). `on_reply` is called for every request that has a reply to send,
    /// the cached one for an exact duplicate.
    pub fn execute(&mut self, bal: Ballot, batch_bytes: &[u8], mut on_reply: impl FnMut(ReplyOut<'_>)) {
        let opn = self.ops_complete;
        let mut reply = [0u8; RB];
        for entry in batch::entries(batch_bytes) {
            if let Some(cached) = self.reply_cache.get(entry.client) {
                if entry.seqno <= cached.seqno {
                    if entry.seqno == cached.seqno {
                        on_reply(ReplyOut { client: entry.client, seqno: cached.seqno, reply: &cached.reply });
                    }
                    continue;
                }
            }
            let n = self.app.apply(entry.request.0, &mut reply).min(RB);
            self.reply_cache.insert(entry.client, entry.seqno, opn, &reply[..n]);
            on_reply(ReplyOut { client: entry.client, seqno: entry.seqno, reply: &reply[..n] });
        }
        self.executed_digest = chain_digest(self.executed_digest, opn, batch_bytes);
        self.ops_complete = self.ops_complete.saturating_add(1);
        self.max_bal_reflected = self.max_bal_reflected.max(bal);
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
            let e = BatchEntry { client: Endpoint::v4([10, 0, 0, 1], *port), seqno: *seqno, request: Bytes(b"") };
            append(&mut b, &e).unwrap();
        }
        b
    }

    /// Executes one batch and returns the (seqno, counter value) of every reply it produced.
    fn run(ex: &mut Executor<Counter, 4, 8>, reqs: &[(u16, u64)]) -> heapless::Vec<(u64, u64), 8> {
        let mut replies = heapless::Vec::new();
        ex.execute(Ballot::INITIAL, &batch_of(reqs), |r| {
            let v = u64::from_le_bytes(r.reply.try_into().unwrap());
            replies.push((r.seqno, v)).unwrap();
        });
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
