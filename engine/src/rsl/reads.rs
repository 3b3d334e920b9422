//! Linearizable reads without a log write: the leader confirms it still leads, then answers
//! from its executed state (ReadIndex, as in Raft §6.4, in Paxos terms).
//!
//! A query ([`crate::rsl::App::is_query`]) that reaches the leader of the current view in
//! phase 2 is not proposed. The leader notes the operation number it would give the next
//! proposal (`opn`: every operation that can have been chosen before the query arrived is
//! below it, because the leader's phase 1 learned every choice of earlier ballots and it
//! proposed everything since) and waits for two things:
//!
//! 1. **A confirmation round sent after the query arrived** ([`RslMsg::ReadConfirm`]): a
//!    quorum of acceptors, the leader's own included, answers ([`RslMsg::ReadAck`]) that it
//!    has promised nothing higher than the leader's ballot. A higher ballot that could have
//!    chosen an operation before the query arrived had a quorum of promises by then;
//!    promises only grow, so one of the acknowledging acceptors would have refused. No
//!    operation outside the leader's log can have completed before the query. (A leader
//!    whose own acceptor promised a higher ballot, before its election heard of that view,
//!    takes no query this way.)
//! 2. **Execution up to `opn`**: the answer then reflects every operation that completed
//!    before the query arrived, and nothing that was not chosen.
//!
//! The query is answered from the application at that moment ([`crate::rsl::App::query`]):
//! it is linearized between its arrival and its answer. Rounds are batched: while one is in
//! flight, newly arrived queries wait for the next, which starts when it is confirmed, so a
//! busy leader sends one round per round trip whatever the read rate. A query the leader
//! cannot take this way (it does not lead, has old proposals to redo, the request is longer
//! than [`MAX_QUERY_BYTES`] or the queue is full) goes through the log like any request.
//! Queries are not recorded in the reply cache: they change nothing, so answering one twice
//! is harmless.

use core::hash::{Hash, Hasher};

use super::ballot::Ballot;
#[cfg(doc)]
use super::msg::RslMsg;
use crate::endpoint::Endpoint;
use crate::time::Instant;

/// The longest query request taken without a log write; longer ones go through the log.
pub const MAX_QUERY_BYTES: usize = 32;

/// A query waiting for its confirmation round and for execution to reach its operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PendingRead {
    /// The client to answer.
    pub client: Endpoint,
    /// The client's sequence number for it.
    pub seqno: u64,
    /// Operations that must be executed before it is answered.
    pub opn: u64,
    /// The confirmation round that must be acknowledged by a quorum (sent after it arrived).
    pub round: u64,
    /// The query request.
    pub request: heapless::Vec<u8, MAX_QUERY_BYTES>,
}

/// What a query needs next, returned by [`Reads::admit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admitted {
    /// Queued; no round is in flight, so round `round` must be sent now.
    SendRound(u64),
    /// Queued behind the round in flight; the next round is sent when that one is confirmed.
    Queued,
    /// Not taken (the queue is full or the request too long): propose it instead.
    Refused,
}

/// The leader's queries in arrival order and its confirmation rounds, for at most `C`
/// queries and `R` replicas.
///
/// Rounds and acknowledgements belong to one ballot ([`Reads::ballot`]); a leader that
/// changes ballot or stops leading drops every pending query ([`Reads::reset`]); the
/// clients retry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reads<const R: usize, const C: usize> {
    bal: Ballot,
    /// The last round sent (0: none yet in this ballot).
    sent_round: u64,
    /// When the last round was first sent (leases count from there).
    sent_at: Instant,
    /// With leases: until when (local clock) the leader may answer without a round
    /// ([`crate::rsl::lease`]); `Instant::ZERO`: no lease.
    lease_until: Instant,
    /// The highest round each replica acknowledged in this ballot.
    acked: [u64; R],
    pending: heapless::Deque<PendingRead, C>,
}

impl<const R: usize, const C: usize> Default for Reads<R, C> {
    fn default() -> Self {
        Reads {
            bal: Ballot::default(),
            sent_round: 0,
            sent_at: Instant::ZERO,
            lease_until: Instant::ZERO,
            acked: [0; R],
            pending: heapless::Deque::new(),
        }
    }
}

impl<const R: usize, const C: usize> Hash for Reads<R, C> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.bal.hash(state);
        self.sent_round.hash(state);
        self.sent_at.hash(state);
        self.lease_until.hash(state);
        self.acked.hash(state);
        self.pending.len().hash(state);
        for p in self.pending.iter() {
            p.hash(state);
        }
    }
}

impl<const R: usize, const C: usize> Reads<R, C> {
    /// The ballot the pending queries and rounds belong to.
    pub fn ballot(&self) -> Ballot {
        self.bal
    }

    /// Queries waiting.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The last round sent in this ballot (0: none).
    pub fn sent_round(&self) -> u64 {
        self.sent_round
    }

    /// Drops every pending query and round and starts over in ballot `bal`.
    pub fn reset(&mut self, bal: Ballot) {
        *self = Reads { bal, ..Reads::default() };
    }

    /// The highest round a quorum of `quorum` replicas acknowledged (the leader `me`
    /// acknowledges every round it sends).
    pub fn confirmed(&self, me: usize, n: usize, quorum: usize) -> u64 {
        let ack = |i: usize| if i == me { self.sent_round } else { self.acked[i] };
        let n = n.min(R);
        // The highest round that `quorum` replicas reached; O(R²) without a sort (firmware
        // flash: `core`'s sort is 4 KiB).
        (0..n).map(ack).filter(|round| (0..n).filter(|j| ack(*j) >= *round).count() >= quorum).max().unwrap_or(0)
    }

    /// True while a round is sent and not yet confirmed by a quorum.
    pub fn in_flight(&self, me: usize, n: usize, quorum: usize) -> bool {
        self.confirmed(me, n, quorum) < self.sent_round
    }

    /// The round just started (by [`Reads::admit`], [`Reads::next_round`] or
    /// [`Reads::renew`]) leaves now: a lease it confirms counts from here.
    pub fn note_sent(&mut self, now: Instant) {
        self.sent_at = now;
    }

    /// A round with no query, to renew the lease: started if none is in flight.
    pub fn renew(&mut self, me: usize, n: usize, quorum: usize) -> Option<u64> {
        if self.in_flight(me, n, quorum) {
            return None;
        }
        self.sent_round += 1;
        Some(self.sent_round)
    }

    /// Once a quorum confirmed the last round sent, the lease runs `lease_us` from when it
    /// was first sent (it never moves back).
    pub fn extend_lease(&mut self, (me, n, quorum): (usize, usize, usize), lease_us: u64) {
        if self.sent_round > 0 && self.confirmed(me, n, quorum) == self.sent_round {
            self.lease_until = self.lease_until.max(self.sent_at.plus_us(lease_us));
        }
    }

    /// True if the leader holds a lease at `now`.
    pub fn leased(&self, now: Instant) -> bool {
        now < self.lease_until
    }

    /// Queues a query that arrived now, needing `opn` operations executed. Under a lease
    /// (`leased`) it starts no round: the lease answers it (a lease that ends first leaves
    /// it to the next round).
    pub fn admit(
        &mut self,
        client: Endpoint,
        seqno: u64,
        opn: u64,
        request: &[u8],
        (me, n, quorum): (usize, usize, usize),
        leased: bool,
    ) -> Admitted {
        let Ok(request) = heapless::Vec::from_slice(request) else { return Admitted::Refused };
        let in_flight = self.in_flight(me, n, quorum);
        // A round already sent may have been answered before this query arrived: the query
        // needs the next one.
        let round = self.sent_round + 1;
        if self.pending.push_back(PendingRead { client, seqno, opn, round, request }).is_err() {
            return Admitted::Refused;
        }
        match in_flight || leased {
            true => Admitted::Queued,
            false => {
                self.sent_round = round;
                Admitted::SendRound(round)
            }
        }
    }

    /// Records replica `from`'s acknowledgement of `round` in ballot `bal`; false if it is
    /// not for this ballot or acknowledges a round never sent.
    pub fn acknowledge(&mut self, from: usize, bal: Ballot, round: u64) -> bool {
        if bal != self.bal || round > self.sent_round || from >= R {
            return false;
        }
        self.acked[from] = self.acked[from].max(round);
        true
    }

    /// After a confirmation: the round to send next if queries wait for one and none is in
    /// flight.
    pub fn next_round(&mut self, me: usize, n: usize, quorum: usize) -> Option<u64> {
        let waiting = self.pending.back().is_some_and(|p| p.round > self.sent_round);
        if waiting && !self.in_flight(me, n, quorum) {
            self.sent_round += 1;
            return Some(self.sent_round);
        }
        None
    }

    /// The oldest query if it can be answered now: its round confirmed and `executed`
    /// operations done. Queries are answered in arrival order.
    pub fn pop_ready(&mut self, executed: u64, confirmed: u64) -> Option<PendingRead> {
        let ready = self.pending.front().is_some_and(|p| p.round <= confirmed && p.opn <= executed);
        if ready {
            self.pending.pop_front()
        } else {
            None
        }
    }

    /// The pending queries, oldest first (for checkers and tests).
    pub fn iter(&self) -> impl Iterator<Item = &PendingRead> {
        self.pending.iter()
    }

    /// Structural invariant: rounds and operations never decrease along the queue, no query
    /// waits for a round beyond the next, and no replica acknowledged an unsent round.
    pub fn invariant(&self) -> Result<(), &'static str> {
        let mut prev: Option<&PendingRead> = None;
        for p in self.pending.iter() {
            if p.round == 0 || p.round > self.sent_round + 1 {
                return Err("reads: a query waits for a round that is neither sent nor next");
            }
            if prev.is_some_and(|q| q.round > p.round || q.opn > p.opn) {
                return Err("reads: queries out of arrival order");
            }
            prev = Some(p);
        }
        if self.acked.iter().any(|a| *a > self.sent_round) {
            return Err("reads: an acknowledgement for a round never sent");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::IpAddr;

    fn ep(port: u16) -> Endpoint {
        Endpoint { ip: IpAddr::V4([127, 0, 0, 1]), port }
    }

    const SHAPE: (usize, usize, usize) = (0, 3, 2);

    #[test]
    fn the_first_query_starts_a_round_and_later_ones_wait_for_the_next() {
        let mut r: Reads<3, 4> = Reads::default();
        r.reset(Ballot::INITIAL);
        assert_eq!(r.admit(ep(1), 1, 5, b"q", SHAPE, false), Admitted::SendRound(1));
        assert_eq!(r.admit(ep(2), 1, 6, b"q", SHAPE, false), Admitted::Queued);
        assert_eq!(r.pop_ready(10, r.confirmed(0, 3, 2)), None, "round 1 not confirmed");
        assert!(r.acknowledge(2, Ballot::INITIAL, 1));
        assert_eq!(r.confirmed(0, 3, 2), 1);
        assert_eq!(r.pop_ready(4, 1), None, "operation 5 not executed yet");
        assert_eq!(r.pop_ready(5, 1).map(|p| p.client), Some(ep(1)));
        assert_eq!(r.pop_ready(10, 1), None, "the second query needs round 2, sent after it arrived");
        assert_eq!(r.next_round(0, 3, 2), Some(2));
        assert_eq!(r.next_round(0, 3, 2), None, "one round in flight at a time");
        assert!(r.acknowledge(1, Ballot::INITIAL, 2));
        assert_eq!(r.pop_ready(6, r.confirmed(0, 3, 2)).map(|p| p.client), Some(ep(2)));
        r.invariant().unwrap();
    }

    #[test]
    fn acknowledgements_of_another_ballot_or_an_unsent_round_are_refused() {
        let mut r: Reads<3, 4> = Reads::default();
        r.reset(Ballot { seqno: 2, proposer: 0 });
        assert_eq!(r.admit(ep(1), 1, 0, b"q", SHAPE, false), Admitted::SendRound(1));
        assert!(!r.acknowledge(1, Ballot::INITIAL, 1));
        assert!(!r.acknowledge(1, Ballot { seqno: 2, proposer: 0 }, 2));
        assert_eq!(r.confirmed(0, 3, 2), 0);
        // One replica acknowledging is not a quorum of five.
        assert!(r.acknowledge(1, Ballot { seqno: 2, proposer: 0 }, 1));
        assert_eq!(r.confirmed(0, 5, 3), 0);
        assert_eq!(r.confirmed(0, 3, 2), 1);
    }

    #[test]
    fn a_full_queue_or_a_long_query_is_refused_without_change() {
        let mut r: Reads<3, 1> = Reads::default();
        assert_eq!(r.admit(ep(1), 1, 0, &[0; MAX_QUERY_BYTES + 1], SHAPE, false), Admitted::Refused);
        assert_eq!(r.pending(), 0);
        assert_eq!(r.admit(ep(1), 1, 0, b"q", SHAPE, false), Admitted::SendRound(1));
        let before = r.clone();
        assert_eq!(r.admit(ep(2), 1, 0, b"q", SHAPE, false), Admitted::Refused);
        assert_eq!(r, before);
    }

    #[test]
    fn a_single_replica_confirms_its_own_rounds() {
        let mut r: Reads<1, 2> = Reads::default();
        assert_eq!(r.admit(ep(1), 1, 0, b"q", (0, 1, 1), false), Admitted::SendRound(1));
        assert_eq!(r.confirmed(0, 1, 1), 1);
        assert!(r.pop_ready(0, 1).is_some());
    }

    #[test]
    fn invariant_rejects_out_of_order_queries_and_unsent_acknowledgements() {
        let mut r: Reads<3, 4> = Reads::default();
        assert_eq!(r.admit(ep(1), 1, 7, b"q", SHAPE, false), Admitted::SendRound(1));
        assert_eq!(r.admit(ep(2), 1, 6, b"q", SHAPE, false), Admitted::Queued);
        assert!(r.invariant().is_err(), "operations decrease along the queue");
        let mut r: Reads<3, 4> = Reads::default();
        r.acked[1] = 1;
        assert!(r.invariant().is_err());
    }
}
