//! The proposer (IronRSL `Proposer.i.dfy`): phase 1 with re-proposal of the highest-ballot
//! vote, phase 2 with batching from a bounded request queue.
//!
//! Two refinements over IronRSL, both for bounded datagrams: a 1b reply arrives as one
//! datagram per vote, so promises are tracked per reply as a bitmask of chunks; and the
//! votes of all 1b replies are merged as they arrive into one table holding, per operation,
//! the highest-ballot vote seen. Merging more replies than a quorum is safe: any vote at a
//! ballot at or above a chosen value's ballot carries that value, so the highest of a
//! superset of a quorum's votes is still the one Paxos requires.

use super::acceptor::StoredVote;
use super::ballot::Ballot;
use super::batch::{self, BatchEntry, EntryKind};
use super::msg::Vote;
use crate::endpoint::{search_sorted, Endpoint};
use crate::time::Instant;
use crate::wire::Bytes;

/// Where the proposer is in the protocol for its ballot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Phase {
    /// Not leading (IronRSL state 0).
    Idle,
    /// Gathering promises (state 1).
    One,
    /// Proposing (state 2).
    Two,
}

/// The 1b chunks received from one acceptor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct Promise {
    reply_id: u64,
    mask: u64,
    chunks: u8,
    complete: bool,
}

/// A client's request as it arrives: its seqno, bytes, and what they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientRequest<'a> {
    /// The client's sequence number.
    pub seqno: u64,
    /// The request bytes, a group's encoding ([`super::group`]), or a membership change.
    pub request: &'a [u8],
    /// What the bytes are.
    pub kind: EntryKind,
}

impl<'a> ClientRequest<'a> {
    /// One request, not a group.
    pub fn single(seqno: u64, request: &'a [u8]) -> Self {
        ClientRequest { seqno, request, kind: EntryKind::Single }
    }
}

/// What happened to a client request offered to the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queued {
    /// Added.
    Added,
    /// Already queued or proposed in this view.
    Duplicate,
    /// The queue has no room: back-pressure (the client will retry).
    Full,
}

/// What [`Proposer::take_batch`] took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Taken {
    /// How many requests.
    pub entries: usize,
    /// One of them is a membership change.
    pub has_change: bool,
}

/// Proposer state; `R` replicas, window `W`, batches of `D` bytes, a `QB`-byte request
/// queue, and per-client deduplication of at most `C` clients.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Proposer<const R: usize, const W: usize, const D: usize, const QB: usize, const C: usize> {
    /// Current phase.
    pub phase: Phase,
    /// The ballot this proposer last started (sent 1a for).
    pub max_ballot_sent_1a: Ballot,
    /// The next operation number to propose.
    pub next_opn: u64,
    /// Deadline of the incomplete batch (IronRSL's `incomplete_batch_timer`).
    pub batch_deadline: Option<Instant>,
    queue: heapless::Vec<u8, QB>,
    queued: usize,
    highest_seqno: heapless::Vec<(Endpoint, u64), C>,
    promises: heapless::Vec<Promise, R>,
    max_1b_truncation_point: u64,
    merged: heapless::Vec<StoredVote<D>, W>,
}

impl<const R: usize, const W: usize, const D: usize, const QB: usize, const C: usize> Proposer<R, W, D, QB, C> {
    /// An idle proposer for a cluster of `n` replicas.
    pub fn new(n: usize) -> Self {
        let mut promises = heapless::Vec::new();
        let _ = promises.resize(n.min(R), Promise::default());
        Proposer {
            phase: Phase::Idle,
            max_ballot_sent_1a: Ballot::default(),
            next_opn: 0,
            batch_deadline: None,
            queue: heapless::Vec::new(),
            queued: 0,
            highest_seqno: heapless::Vec::new(),
            promises,
            max_1b_truncation_point: 0,
            merged: heapless::Vec::new(),
        }
    }

    fn clear_requests(&mut self) {
        self.queue.clear();
        self.queued = 0;
        self.highest_seqno.clear();
        self.batch_deadline = None;
    }

    /// Stops leading (the view moved on).
    pub fn step_down(&mut self) {
        self.phase = Phase::Idle;
        self.clear_requests();
        self.merged.clear();
    }

    /// Starts phase 1 for `view` (IronRSL `ProposerMaybeEnterNewViewAndSend1a`).
    pub fn start_phase1(&mut self, view: Ballot) {
        self.phase = Phase::One;
        self.max_ballot_sent_1a = view;
        self.clear_requests();
        self.promises.iter_mut().for_each(|p| *p = Promise::default());
        self.max_1b_truncation_point = 0;
        self.merged.clear();
    }

    /// Takes one 1b chunk from acceptor `sender`. Returns true if it was used.
    #[allow(clippy::too_many_arguments)]
    pub fn process_1b(
        &mut self,
        sender: usize,
        bal: Ballot,
        log_truncation_point: u64,
        reply_id: u64,
        chunk: u8,
        chunks: u8,
        vote: Option<Vote<'_>>,
    ) -> bool {
        if self.phase != Phase::One || bal != self.max_ballot_sent_1a || chunk >= chunks || chunks > 64 {
            return false;
        }
        if let Some(v) = vote {
            if !self.merge_vote(log_truncation_point, v) {
                // No room to remember the vote: treat the chunk as lost rather than
                // count a promise whose votes we did not keep.
                return false;
            }
        } else {
            self.raise_truncation_point(log_truncation_point);
        }
        let Some(p) = self.promises.get_mut(sender) else { return false };
        if p.reply_id != reply_id || p.chunks != chunks {
            *p = Promise { reply_id, mask: 0, chunks, complete: p.complete };
        }
        p.mask |= 1u64 << chunk;
        if p.mask.count_ones() == u32::from(chunks) {
            p.complete = true;
        }
        true
    }

    fn raise_truncation_point(&mut self, opn: u64) {
        if opn > self.max_1b_truncation_point {
            self.max_1b_truncation_point = opn;
            self.merged.retain(|v| v.opn >= opn);
        }
    }

    fn merge_vote(&mut self, log_truncation_point: u64, v: Vote<'_>) -> bool {
        self.raise_truncation_point(log_truncation_point);
        if v.opn < self.max_1b_truncation_point {
            return true; // Below a quorum's checkpoint: decided and executed already.
        }
        match self.merged.binary_search_by_key(&v.opn, |m| m.opn) {
            Ok(i) => {
                if v.bal > self.merged[i].bal {
                    let Ok(batch) = heapless::Vec::from_slice(v.batch.0) else { return false };
                    self.merged[i] = StoredVote { opn: v.opn, bal: v.bal, batch };
                }
                true
            }
            Err(i) => {
                let Ok(batch) = heapless::Vec::from_slice(v.batch.0) else { return false };
                self.merged.insert(i, StoredVote { opn: v.opn, bal: v.bal, batch }).is_ok()
            }
        }
    }

    /// Acceptors whose whole 1b reply has arrived.
    pub fn promised(&self) -> usize {
        self.promises.iter().filter(|p| p.complete).count()
    }

    /// Enters phase 2 (IronRSL `ProposerMaybeEnterPhase2`); proposing resumes at the highest
    /// truncation point known. Returns that point, to announce in StartingPhase2.
    pub fn enter_phase2(&mut self, own_truncation_point: u64) -> u64 {
        self.phase = Phase::Two;
        self.next_opn = self.max_1b_truncation_point.max(own_truncation_point);
        self.next_opn
    }

    /// True while some operation at or after `next_opn` had a vote reported in phase 1:
    /// those must be re-proposed (or filled with no-ops) before new batches.
    pub fn has_old_values(&self) -> bool {
        self.merged.last().is_some_and(|v| v.opn >= self.next_opn)
    }

    /// The value to re-propose at `next_opn`: the highest-ballot vote reported for it, or
    /// the empty batch (a no-op) if none was.
    pub fn old_value(&self) -> &[u8] {
        match self.merged.binary_search_by_key(&self.next_opn, |v| v.opn) {
            Ok(i) => &self.merged[i].batch,
            Err(_) => &[],
        }
    }

    /// Offers a client request (IronRSL `ProposerProcessRequest`): queued once per view,
    /// deduplicated by the highest seqno seen from the client (a binary search over the
    /// clients seen, O(log n); a new client's entry is inserted in order, O(n) once).
    pub fn queue_request(&mut self, client: Endpoint, req: ClientRequest<'_>, now: Instant, delay_ms: u64) -> Queued {
        let ClientRequest { seqno, request, kind } = req;
        let slot = search_sorted(&self.highest_seqno, client, |(c, _)| *c);
        if let Ok(i) = slot {
            if seqno <= self.highest_seqno[i].1 {
                return Queued::Duplicate;
            }
        }
        let entry = BatchEntry { client, seqno, request: Bytes(request), kind };
        if batch::append_entry(&mut self.queue, &entry).is_err() {
            return Queued::Full;
        }
        match slot {
            Ok(i) => self.highest_seqno[i].1 = seqno,
            Err(i) => {
                if self.highest_seqno.is_full() {
                    // Forgetting dedup state only risks proposing a request twice; the
                    // executor's reply cache then skips the second execution.
                    self.highest_seqno.clear();
                    let _ = self.highest_seqno.push((client, seqno));
                } else {
                    let _ = self.highest_seqno.insert(i, (client, seqno));
                }
            }
        }
        self.queued += 1;
        if self.batch_deadline.is_none() {
            self.batch_deadline = Some(now.plus_ms(delay_ms));
        }
        Queued::Added
    }

    /// Requests waiting to be proposed.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Moves up to `max_entries` queued requests, at most `max_bytes` of them, into `out`
    /// as a batch; says how many, and whether one is a membership change. A request too
    /// large for any batch is dropped here (it is refused on arrival, so this is only a
    /// guard).
    pub fn take_batch(&mut self, max_entries: usize, max_bytes: usize, out: &mut heapless::Vec<u8, D>) -> Taken {
        out.clear();
        let mut end = 0;
        let mut taken = 0;
        let mut has_change = false;
        let mut rest: &[u8] = &self.queue;
        while taken < max_entries {
            let Some((entry, tail)) = batch::take_entry(rest) else { break };
            let entry_len = rest.len() - tail.len();
            if end + entry_len > max_bytes.min(D) {
                if taken == 0 {
                    end += entry_len; // Skip an entry that can never fit.
                    self.queued = self.queued.saturating_sub(1);
                }
                break;
            }
            end += entry_len;
            taken += 1;
            has_change |= entry.kind == EntryKind::Change;
            rest = tail;
        }
        if taken > 0 {
            // Cannot fail: end <= min(max_bytes, D) was checked for the taken entries.
            let _ = out.extend_from_slice(&self.queue[..end]);
        }
        let len = self.queue.len();
        self.queue.copy_within(end..len, 0);
        self.queue.truncate(len - end);
        self.queued = self.queued.saturating_sub(taken);
        Taken { entries: taken, has_change }
    }

    /// The merged phase-1 votes still to be re-proposed.
    pub fn merged_votes(&self) -> &[StoredVote<D>] {
        &self.merged
    }

    /// Local invariants for `n` replicas: the queue is whole entries and its count matches;
    /// an idle proposer holds no requests; the deduplication table is sorted by client;
    /// the merged phase-1 votes are one per operation, sorted, none below the highest
    /// truncation point reported; promises come only from known replicas.
    pub fn invariant(&self, n: usize) -> Result<(), &'static str> {
        match batch::validate(&self.queue, usize::MAX) {
            Ok(count) if count == self.queued => {}
            _ => return Err("proposer queue count does not match its entries"),
        }
        if self.phase == Phase::Idle && self.queued > 0 {
            return Err("idle proposer holds requests");
        }
        if self.phase != Phase::Idle && self.max_ballot_sent_1a == Ballot::default() {
            return Err("active proposer without a ballot");
        }
        for pair in self.highest_seqno.windows(2) {
            if pair[0].0 >= pair[1].0 {
                return Err("proposer dedup table not sorted by client");
            }
        }
        for pair in self.merged.windows(2) {
            if pair[0].opn >= pair[1].opn {
                return Err("merged phase-1 votes not strictly increasing");
            }
        }
        if self.merged.iter().any(|v| v.opn < self.max_1b_truncation_point || v.bal >= self.max_ballot_sent_1a) {
            return Err("merged vote below the truncation point or not below the proposer's ballot");
        }
        if self.promises.len() > n || self.promised() > n {
            return Err("promises from unknown replicas");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type P = Proposer<3, 8, 128, 256, 4>;
    const B1: Ballot = Ballot { seqno: 1, proposer: 0 };
    const B2: Ballot = Ballot { seqno: 2, proposer: 0 };

    fn vote(opn: u64, bal: Ballot, batch: &'static [u8]) -> Option<Vote<'static>> {
        Some(Vote { opn, bal, batch: Bytes(batch) })
    }

    #[test]
    fn phase1_counts_a_promise_only_when_all_its_chunks_arrived() {
        let mut p = P::new(3);
        p.start_phase1(B2);
        assert!(p.process_1b(1, B2, 0, 7, 0, 2, vote(0, B1, b"a")));
        assert_eq!(p.promised(), 0);
        assert!(p.process_1b(1, B2, 0, 7, 0, 2, vote(0, B1, b"a")), "duplicate chunk");
        assert_eq!(p.promised(), 0);
        assert!(p.process_1b(1, B2, 0, 7, 1, 2, vote(1, B1, b"b")));
        assert_eq!(p.promised(), 1);
        assert!(!p.process_1b(2, B1, 0, 1, 0, 1, None), "1b for another ballot");
        assert!(!p.process_1b(2, B2, 0, 1, 3, 2, None), "chunk index out of range");
    }

    #[test]
    fn phase1_reproposes_the_highest_ballot_vote() {
        let mut p = P::new(3);
        let b5 = Ballot { seqno: 5, proposer: 0 };
        let (b2, b3, b4) =
            (Ballot { seqno: 2, proposer: 1 }, Ballot { seqno: 3, proposer: 2 }, Ballot { seqno: 4, proposer: 1 });
        p.start_phase1(b5);
        // Opn 0: the lower ballot arrives first; opn 1: the higher one does.
        p.process_1b(1, b5, 0, 1, 0, 2, vote(0, b2, b"low"));
        p.process_1b(1, b5, 0, 1, 1, 2, vote(1, b4, b"high1"));
        p.process_1b(2, b5, 0, 1, 0, 3, vote(0, b3, b"high"));
        p.process_1b(2, b5, 0, 1, 1, 3, vote(1, B1, b"low1"));
        p.process_1b(2, b5, 0, 1, 2, 3, vote(3, B1, b"later"));
        assert_eq!(p.promised(), 2);
        assert_eq!(p.enter_phase2(0), 0);
        assert!(p.has_old_values());
        assert_eq!(p.old_value(), b"high");
        p.next_opn = 1;
        assert_eq!(p.old_value(), b"high1", "a later lower-ballot vote does not replace a higher one");
        p.next_opn = 2;
        assert_eq!(p.old_value(), b"", "a gap is filled with the no-op batch");
        p.next_opn = 3;
        assert_eq!(p.old_value(), b"later");
        p.next_opn = 4;
        assert!(!p.has_old_values());
    }

    #[test]
    fn phase2_starts_at_the_highest_truncation_point_reported() {
        let mut p = P::new(3);
        p.start_phase1(B1);
        p.process_1b(1, B1, 4, 1, 0, 1, vote(2, B1, b"gone"));
        p.process_1b(2, B1, 6, 1, 0, 1, None);
        assert_eq!(p.enter_phase2(3), 6);
        assert!(!p.has_old_values(), "votes below the truncation point are dropped");
    }

    #[test]
    fn queue_deduplicates_per_client_and_batches_in_order() {
        let mut p = P::new(3);
        p.start_phase1(B1);
        let c = Endpoint::v4([10, 0, 0, 1], 5);
        let d = Endpoint::v4([10, 0, 0, 2], 5);
        assert_eq!(p.queue_request(c, ClientRequest::single(1, b"x"), Instant::ZERO, 10), Queued::Added);
        assert_eq!(p.queue_request(c, ClientRequest::single(1, b"x"), Instant::ZERO, 10), Queued::Duplicate);
        assert_eq!(p.queue_request(d, ClientRequest::single(9, b"y"), Instant::ZERO, 10), Queued::Added);
        assert_eq!(p.queue_request(c, ClientRequest::single(2, b"z"), Instant::ZERO, 10), Queued::Added);
        assert_eq!(p.batch_deadline, Some(Instant::from_millis(10)));
        let mut out = heapless::Vec::new();
        assert_eq!(p.take_batch(2, 128, &mut out).entries, 2);
        let got: heapless::Vec<u64, 4> = batch::entries(&out).map(|e| e.seqno).collect();
        assert_eq!(&got[..], &[1, 9]);
        assert_eq!(p.queued(), 1);
        assert!(p.invariant(3).is_ok());
    }

    #[test]
    fn a_full_queue_refuses_without_changing() {
        let mut p: Proposer<3, 8, 128, 16, 4> = Proposer::new(3);
        p.start_phase1(B1);
        let c = Endpoint::v4([10, 0, 0, 1], 5);
        assert_eq!(p.queue_request(c, ClientRequest::single(1, b"12345"), Instant::ZERO, 10), Queued::Added);
        assert_eq!(p.queue_request(c, ClientRequest::single(2, b"12345"), Instant::ZERO, 10), Queued::Full);
        assert_eq!(p.queued(), 1);
        assert_eq!(p.queue_request(c, ClientRequest::single(2, b"1"), Instant::ZERO, 10), Queued::Full);
        assert!(p.invariant(3).is_ok());
    }

    #[test]
    fn batches_respect_the_byte_bound() {
        let mut p = P::new(3);
        p.start_phase1(B1);
        for s in 0..4u64 {
            let c = Endpoint::v4([10, 0, 0, s as u8], 5);
            p.queue_request(c, ClientRequest::single(1, &[7u8; 20]), Instant::ZERO, 10);
        }
        let mut out = heapless::Vec::new();
        let taken = p.take_batch(32, 50, &mut out).entries;
        assert_eq!(taken, 1, "each entry is ~30 bytes");
        assert!(out.len() <= 50);
    }

    #[test]
    fn chunks_of_two_different_1b_replies_never_make_one_promise() {
        let mut p = P::new(3);
        p.start_phase1(B1);
        assert!(p.process_1b(1, B1, 0, 7, 0, 2, None));
        assert!(p.process_1b(1, B1, 0, 8, 1, 2, None), "a newer reply restarts the count");
        assert_eq!(p.promised(), 0, "chunk 0 of reply 7 and chunk 1 of reply 8 are not one reply");
        assert!(p.process_1b(1, B1, 0, 8, 0, 2, None));
        assert_eq!(p.promised(), 1);
        assert!(p.process_1b(2, B1, 0, 1, 63, 64, None), "64 chunks is the most a mask holds");
        assert!(!p.process_1b(2, B1, 0, 1, 0, 65, None), "65 chunks cannot be counted");
    }

    #[test]
    fn invariant_rejects_each_broken_clause() {
        let mut ok = P::new(3);
        ok.start_phase1(B2);
        let c = Endpoint::v4([10, 0, 0, 1], 5);
        ok.queue_request(c, ClientRequest::single(1, b"x"), Instant::ZERO, 10);
        ok.process_1b(1, B2, 0, 1, 0, 2, vote(1, B1, b"a"));
        ok.process_1b(1, B2, 0, 1, 1, 2, vote(3, B1, b"b"));
        for r in 0..3 {
            ok.process_1b(r, B2, 0, 9, 0, 1, None);
        }
        assert_eq!(ok.promised(), 3);
        assert_eq!(ok.invariant(3), Ok(()), "three promises from three replicas");
        assert_eq!(ok.invariant(4), Ok(()));
        assert!(ok.invariant(2).is_err(), "promises from more replicas than the cluster has");
        let broken = |f: &dyn Fn(&mut P)| {
            let mut p = ok.clone();
            f(&mut p);
            p.invariant(3)
        };
        assert!(broken(&|p| p.queued += 1).is_err(), "queue count");
        assert!(broken(&|p| p.phase = Phase::Idle).is_err(), "an idle proposer holding a request");
        assert!(broken(&|p| p.max_ballot_sent_1a = Ballot::default()).is_err(), "active without a ballot");
        assert!(broken(&|p| p.merged.swap(0, 1)).is_err(), "merged votes out of order");
        assert!(broken(&|p| p.max_1b_truncation_point = 2).is_err(), "a merged vote below the truncation point");
        assert!(broken(&|p| p.merged[1].bal = B2).is_err(), "a merged vote not below the proposer's ballot");
        let d = Endpoint::v4([10, 0, 0, 2], 5);
        let unsorted = |p: &mut P| {
            p.queue_request(d, ClientRequest::single(1, b"y"), Instant::ZERO, 10);
            p.highest_seqno.swap(0, 1);
        };
        assert!(broken(&unsorted).is_err(), "dedup table out of order");
    }

    #[test]
    fn an_entry_that_fills_the_bound_exactly_is_taken_and_one_that_never_fits_is_dropped() {
        let mut p = P::new(3);
        p.start_phase1(B1);
        let c = Endpoint::v4([10, 0, 0, 1], 5);
        let d = Endpoint::v4([10, 0, 0, 2], 5);
        p.queue_request(c, ClientRequest::single(1, &[7u8; 60]), Instant::ZERO, 10);
        p.queue_request(d, ClientRequest::single(1, b"y"), Instant::ZERO, 10);
        let mut out = heapless::Vec::new();
        assert_eq!(p.take_batch(4, 20, &mut out).entries, 0, "the 60-byte request never fits 20 bytes");
        assert!(out.is_empty(), "a dropped entry is not proposed");
        assert_eq!(p.queued(), 1);
        assert!(p.invariant(3).is_ok());
        let mut probe = heapless::Vec::<u8, 128>::new();
        let entry = BatchEntry { client: d, seqno: 1, request: Bytes(b"y"), kind: EntryKind::Single };
        crate::wire::append(&mut probe, &entry).unwrap();
        assert_eq!(p.take_batch(4, probe.len(), &mut out).entries, 1, "exactly the bound");
        assert_eq!(&out[..], &probe[..]);
        assert_eq!(p.queued(), 0);
    }

    #[test]
    fn a_batch_says_whether_it_took_a_membership_change() {
        let mut p = P::new(3);
        p.start_phase1(B1);
        let c = Endpoint::v4([10, 0, 0, 1], 5);
        let d = Endpoint::v4([10, 0, 0, 2], 5);
        p.queue_request(c, ClientRequest::single(1, b"x"), Instant::ZERO, 10);
        let change = ClientRequest { seqno: 1, request: b"change", kind: EntryKind::Change };
        p.queue_request(d, change, Instant::ZERO, 10);
        let mut out = heapless::Vec::new();
        assert_eq!(p.take_batch(1, 128, &mut out), Taken { entries: 1, has_change: false });
        assert_eq!(p.take_batch(1, 128, &mut out), Taken { entries: 1, has_change: true });
        assert_eq!(p.take_batch(1, 128, &mut out), Taken { entries: 0, has_change: false });
    }

    #[test]
    fn stepping_down_forgets_the_queue_and_phase_one_votes() {
        let mut p = P::new(3);
        p.start_phase1(B2);
        p.queue_request(Endpoint::v4([10, 0, 0, 1], 5), ClientRequest::single(1, b"x"), Instant::ZERO, 10);
        p.process_1b(1, B2, 0, 1, 0, 1, vote(0, B1, b"a"));
        p.step_down();
        assert_eq!((p.phase, p.queued(), p.merged.len()), (Phase::Idle, 0, 0));
        assert!(p.invariant(3).is_ok());
    }

    #[test]
    fn more_promise_slots_than_replicas_break_the_invariant_even_when_none_is_complete() {
        let p = P::new(3);
        assert_eq!(p.promised(), 0);
        assert!(p.invariant(2).is_err());
    }
}
