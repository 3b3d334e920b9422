//! View change (IronRSL `Election.i.dfy`): epochs, suspicion, and a quorum of suspicions
//! moving every replica to the successor view with a doubled epoch length.
//!
//! A replica tracks the requests it has received. At the end of an epoch, if a request
//! from an earlier epoch is still unexecuted, it suspects the current view and says so in
//! its heartbeats. A quorum of suspicions of the current view moves to the next view.

use super::ballot::Ballot;
use crate::endpoint::Endpoint;
use crate::time::Instant;

/// Election state; tracks at most `T` (client, seqno) requests per epoch list.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Election<const T: usize> {
    /// The view this replica believes in.
    pub current_view: Ballot,
    /// Bitmask of replicas known to suspect `current_view`.
    pub suspectors: u64,
    /// When the current epoch ends.
    pub epoch_end: Instant,
    /// Current epoch length; doubles on each view change up to the configured cap.
    pub epoch_length_ms: u64,
    this_epoch: heapless::Vec<(Endpoint, u64), T>,
    prev_epochs: heapless::Vec<(Endpoint, u64), T>,
}

impl<const T: usize> Election<T> {
    /// Election state at start-up: view `(1, 0)`, the first epoch starting `now`.
    pub fn new(now: Instant, baseline_ms: u64) -> Self {
        Election {
            current_view: Ballot::INITIAL,
            suspectors: 0,
            epoch_end: now.plus_ms(baseline_ms),
            epoch_length_ms: baseline_ms,
            this_epoch: heapless::Vec::new(),
            prev_epochs: heapless::Vec::new(),
        }
    }

    /// Whether replica `me` suspects the current view.
    pub fn suspects(&self, me: usize) -> bool {
        self.suspectors & (1u64 << (me % 64)) != 0
    }

    /// Notes a received, not yet executed request. Returns false if the tracking list is
    /// full (the request still proceeds; it only cannot drive suspicion).
    pub fn reflect_received(&mut self, client: Endpoint, seqno: u64) -> bool {
        let known = |l: &heapless::Vec<(Endpoint, u64), T>| l.iter().any(|&(c, s)| c == client && s >= seqno);
        if known(&self.this_epoch) || known(&self.prev_epochs) {
            return true;
        }
        if let Some(slot) = self.this_epoch.iter_mut().find(|(c, _)| *c == client) {
            slot.1 = seqno;
            return true;
        }
        self.this_epoch.push((client, seqno)).is_ok()
    }

    /// Forgets tracked requests of `client` up to `seqno`: they executed.
    pub fn reflect_executed(&mut self, client: Endpoint, seqno: u64) {
        self.this_epoch.retain(|&(c, s)| c != client || s > seqno);
        self.prev_epochs.retain(|&(c, s)| c != client || s > seqno);
    }

    fn start_epoch(&mut self, now: Instant) {
        for r in self.this_epoch.iter() {
            if !self.prev_epochs.contains(r) {
                // Bounded: when full, the oldest tracking is enough to keep suspecting.
                let _ = self.prev_epochs.push(*r);
            }
        }
        self.this_epoch.clear();
        self.epoch_end = now.plus_ms(self.epoch_length_ms);
    }

    fn enter_view(&mut self, view: Ballot, now: Instant) {
        self.current_view = view;
        self.suspectors = 0;
        self.start_epoch(now);
    }

    /// A heartbeat from replica `sender` in view `bal`: adopt a higher view; record a
    /// suspicion of the current one.
    pub fn process_heartbeat(&mut self, now: Instant, sender: usize, bal: Ballot, suspicious: bool) {
        if bal > self.current_view {
            self.enter_view(bal, now);
        }
        if bal == self.current_view && suspicious {
            self.suspectors |= 1u64 << (sender % 64);
        }
    }

    /// End of epoch: suspect the view if a request from an earlier epoch is unexecuted.
    /// Returns true if this replica started suspecting.
    pub fn check_timeout(&mut self, now: Instant, me: usize) -> bool {
        if now < self.epoch_end {
            return false;
        }
        let suspect = !self.prev_epochs.is_empty();
        if suspect {
            self.suspectors |= 1u64 << (me % 64);
        } else {
            // Nothing overdue: this epoch's requests become the ones to watch next time.
            self.prev_epochs.clear();
        }
        self.start_epoch(now);
        suspect
    }

    /// A quorum suspects the view: move to its successor and double the epoch length.
    /// Returns true if the view changed.
    pub fn check_quorum(&mut self, now: Instant, quorum: usize, replicas: usize, max_epoch_ms: u64) -> bool {
        if (self.suspectors.count_ones() as usize) < quorum {
            return false;
        }
        self.epoch_length_ms = self.epoch_length_ms.saturating_mul(2).min(max_epoch_ms);
        let next = self.current_view.successor(replicas);
        self.enter_view(next, now);
        true
    }

    /// Requests tracked for suspicion (this epoch, earlier epochs).
    pub fn tracked(&self) -> (usize, usize) {
        (self.this_epoch.len(), self.prev_epochs.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c() -> Endpoint {
        Endpoint::v4([10, 0, 0, 9], 1)
    }

    #[test]
    fn an_unexecuted_request_from_an_earlier_epoch_causes_suspicion() {
        let mut e: Election<4> = Election::new(Instant::ZERO, 1000);
        e.reflect_received(c(), 1);
        assert!(!e.check_timeout(Instant::from_millis(999), 0), "epoch not over");
        assert!(!e.check_timeout(Instant::from_millis(1000), 0), "request is from this epoch");
        assert!(e.check_timeout(Instant::from_millis(2000), 0), "now it is overdue");
        assert!(e.suspects(0));
    }

    #[test]
    fn executed_requests_do_not_cause_suspicion() {
        let mut e: Election<4> = Election::new(Instant::ZERO, 1000);
        e.reflect_received(c(), 1);
        e.check_timeout(Instant::from_millis(1000), 0);
        e.reflect_executed(c(), 1);
        assert!(!e.check_timeout(Instant::from_millis(2000), 0));
    }

    #[test]
    fn a_quorum_of_suspicions_moves_to_the_successor_view_and_doubles_the_epoch() {
        let mut e: Election<4> = Election::new(Instant::ZERO, 1000);
        e.process_heartbeat(Instant::ZERO, 1, Ballot::INITIAL, true);
        assert!(!e.check_quorum(Instant::ZERO, 2, 3, 8000));
        e.process_heartbeat(Instant::ZERO, 2, Ballot::INITIAL, true);
        assert!(e.check_quorum(Instant::from_millis(5), 2, 3, 8000));
        assert_eq!(e.current_view, Ballot { seqno: 1, proposer: 1 });
        assert_eq!(e.epoch_length_ms, 2000);
        assert_eq!(e.suspectors, 0);
        assert_eq!(e.epoch_end, Instant::from_millis(2005));
    }

    #[test]
    fn suspicion_of_an_old_view_does_not_count() {
        let mut e: Election<4> = Election::new(Instant::ZERO, 1000);
        e.process_heartbeat(Instant::ZERO, 1, Ballot { seqno: 3, proposer: 0 }, false);
        e.process_heartbeat(Instant::ZERO, 2, Ballot::INITIAL, true);
        assert_eq!(e.suspectors, 0);
        assert_eq!(e.current_view, Ballot { seqno: 3, proposer: 0 });
    }

    #[test]
    fn epoch_length_is_capped() {
        let mut e: Election<4> = Election::new(Instant::ZERO, 1000);
        for _ in 0..10 {
            e.suspectors = 0b11;
            e.check_quorum(Instant::ZERO, 2, 3, 4000);
        }
        assert_eq!(e.epoch_length_ms, 4000);
    }
}
