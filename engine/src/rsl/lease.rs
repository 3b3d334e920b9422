//! Leader leases (an option, `Params::lease_ms`): queries answered by the leader from its
//! own state without a confirmation round per query, while a lease it holds says that no
//! other leader can have chosen anything (Paxos Made Live §5.2, Raft §6.4's lease reads).
//!
//! The rule, on top of [`crate::rsl::reads`]:
//!
//! 1. **An acceptor's hold.** An acceptor that acknowledges a leader's confirmation round
//!    ([`RslMsg::ReadAck`](super::msg::RslMsg::ReadAck)) at local time `t` promises no higher
//!    ballot (it drops every 1a above the leader's ballot) until `t + lease_ms` on its own
//!    clock. The leader's own acceptor holds from when it sends the round. A replica that
//!    starts — new, recovered from disk or rejoining — holds against every ballot for
//!    `lease_ms`: it may have acknowledged a round before it stopped and forgotten.
//! 2. **The leader's lease.** When a quorum (the leader included) acknowledged the round it
//!    first sent at local time `s`, it holds a lease until `s + lease_ms·(1−ε)/(1+ε)`, where
//!    ε is `clock_drift_ppm`: measured in real time that ends no later than the earliest
//!    hold of the quorum, which began after `s` and lasts at least `lease_ms/(1+ε)`. A new
//!    ballot needs promises from a quorum, which meets the leased one in an acceptor that
//!    drops its 1a until then, so no other ballot can choose anything before the lease ends.
//!    The leader sends a round every heartbeat period to keep its lease.
//! 3. **Answering.** A query is answered while the lease holds (checked at the moment of the
//!    answer) once execution reached the operation number the leader had when the query
//!    arrived, exactly as after a confirmation round; without a lease it waits for one.
//!
//! **Assumption**: every replica's clock runs at a rate within ±ε of real time and never
//! jumps (the engine's `Instant` is a monotonic clock; io-std reads `CLOCK_MONOTONIC`). A
//! machine suspended, or a clock stepped forward, breaks it: run without leases there. A
//! leader paused (SIGSTOP, a long GC) is safe: it checks the lease on its clock when it
//! answers. The cost: after a leader fails, followers take up to `lease_ms` longer to elect
//! another, and a new cluster its first leader.

use super::ballot::Ballot;
use crate::time::Instant;

/// An acceptor's promise not to promise a higher ballot for a while (rule 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Hold {
    /// Ballots above this one are refused (`None`: every ballot, after a start).
    pub above: Option<Ballot>,
    /// Until this local instant.
    pub until: Instant,
}

impl Hold {
    /// The hold of a replica that starts at `now` (every ballot refused for `lease_ms`), or
    /// none without leases.
    pub fn at_start(now: Instant, lease_ms: u64) -> Hold {
        match lease_ms {
            0 => Hold { above: None, until: Instant::ZERO },
            ms => Hold { above: None, until: now.plus_ms(ms) },
        }
    }

    /// True if a 1a for `bal` must be dropped at `now`.
    pub fn refuses(&self, now: Instant, bal: Ballot) -> bool {
        now < self.until && self.above.is_none_or(|held| bal > held)
    }

    /// Acknowledging leader ballot `bal` at `now`: hold for `lease_ms` from now (never
    /// shortening a hold for that ballot).
    pub fn grant(&mut self, bal: Ballot, now: Instant, lease_ms: u64) {
        let until = now.plus_ms(lease_ms);
        *self = match self.above {
            Some(held) if held == bal && self.until > until => *self,
            // A start-up hold still running keeps refusing every ballot until it ends.
            None if self.until > now => Hold { above: None, until: self.until.max(until) },
            _ => Hold { above: Some(bal), until },
        };
    }
}

/// The leader's lease length in microseconds for `lease_ms` and a drift bound of
/// `drift_ppm`: `lease_ms·(1−ε)/(1+ε)`, rounded down.
pub fn leader_lease_us(lease_ms: u64, drift_ppm: u32) -> u64 {
    let ppm = u128::from(drift_ppm.min(999_999));
    let us = u128::from(lease_ms) * 1000;
    (us * (1_000_000 - ppm) / (1_000_000 + ppm)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const B1: Ballot = Ballot { seqno: 1, proposer: 0 };
    const B2: Ballot = Ballot { seqno: 2, proposer: 1 };

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn a_start_refuses_every_ballot_for_the_lease_and_nothing_without_leases() {
        let h = Hold::at_start(at(100), 300);
        assert!(h.refuses(at(399), Ballot::INITIAL) && h.refuses(at(399), B2));
        assert!(!h.refuses(at(400), B2), "the hold ends");
        let none = Hold::at_start(at(100), 0);
        assert!(!none.refuses(at(100), B2));
    }

    #[test]
    fn a_grant_refuses_only_higher_ballots_until_it_ends() {
        let mut h = Hold::default();
        h.grant(B1, at(1000), 300);
        assert!(h.refuses(at(1299), B2));
        assert!(!h.refuses(at(1299), B1), "the leased ballot itself is not refused");
        assert!(!h.refuses(at(1300), B2));
        // A later grant extends; an earlier one (a reordered round) does not shorten it.
        h.grant(B1, at(1100), 300);
        h.grant(B1, at(1050), 300);
        assert_eq!(h.until, at(1400));
        // A start-up hold is not narrowed to one ballot before it ends.
        let mut s = Hold::at_start(at(0), 300);
        s.grant(B1, at(100), 300);
        assert!(s.refuses(at(350), B1), "every ballot refused until the start-up hold's end, extended");
    }

    #[test]
    fn the_leaders_lease_is_shorter_by_the_drift_on_both_clocks() {
        assert_eq!(leader_lease_us(1000, 0), 1_000_000);
        // 5 % either way: 1000 · 0.95 / 1.05 ms.
        assert_eq!(leader_lease_us(1000, 50_000), 904_761);
        assert!(leader_lease_us(u64::MAX / 1000, 999_999) < u64::MAX);
    }
}
