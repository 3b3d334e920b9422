//! Polling a little longer before sleeping: the event loop's spin window.
//!
//! Why: a datagram that reaches a thread asleep in `poll` must wake it, and on these
//! machines (virtual CPUs, where waking a thread on another CPU is an interrupt through
//! the hypervisor) that is most of a loopback hop. One client's request crosses four hops
//! (client, leader, follower, leader, client), each ending in a wake-up: 86 µs at the median
//! for a write, against Redis's 55 µs for one TCP round trip (docs/performance.md, session
//! 41). A loop that just did work and keeps receiving for a few tens of microseconds is
//! usually awake when the next datagram of the exchange comes.
//!
//! The cost is CPU: while one client keeps a cluster busy, each member polls instead of
//! sleeping. Each empty round gives the CPU away (`sched_yield`) to anything else that
//! wants it, so on a loaded machine the spin takes what would be idle time; a loop idle
//! for longer than the window sleeps as before and costs nothing. `--spin-us 0` turns it
//! off (a machine shared with others, or a battery).

use std::time::{Duration, Instant};

/// The spin window the `fleet` servers use unless told otherwise: near the gap between the
/// hops of one request on a loopback cluster (docs/performance.md, session 41).
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);

/// When the loop, with nothing to do, polls again instead of sleeping; and how often
/// that paid.
#[derive(Clone, Debug)]
pub struct Spin {
    window: Duration,
    /// When the loop last did work.
    last_work: Option<Instant>,
    /// Polling since the last work, without having slept.
    spinning: bool,
    /// Spins a datagram ended (the wake-up it saved).
    pub hits: u64,
    /// Spins that ran out of window and went to sleep.
    pub misses: u64,
}

impl Spin {
    /// Spins for up to `window` after each round that did work (`Duration::ZERO`: never).
    pub fn new(window: Duration) -> Spin {
        Spin { window, last_work: None, spinning: false, hits: 0, misses: 0 }
    }

    /// The loop did work at `now`.
    pub fn worked(&mut self, now: Instant) {
        if self.spinning {
            self.hits += 1;
            self.spinning = false;
        }
        self.last_work = Some(now);
    }

    /// The loop has nothing to do at `now`: `true` to poll again at once (the caller
    /// yields the CPU first), `false` to sleep.
    pub fn keep_polling(&mut self, now: Instant) -> bool {
        let within = self.last_work.is_some_and(|at| now.saturating_duration_since(at) < self.window);
        if within {
            self.spinning = true;
        } else if self.spinning {
            self.misses += 1;
            self.spinning = false;
        }
        within
    }

    /// The spin counters as stats-line fields.
    pub fn fields(&self) -> String {
        format!("spin_hits={} spin_misses={}", self.hits, self.misses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    #[test]
    fn polls_within_the_window_after_work_then_sleeps_and_counts_both_ends() {
        let t0 = Instant::now();
        let mut s = Spin::new(50 * US);
        assert!(!s.keep_polling(t0), "no work yet: sleep");
        s.worked(t0);
        assert!(s.keep_polling(t0 + 10 * US));
        assert!(s.keep_polling(t0 + 49 * US));
        // A datagram came while polling: a hit, and a new window from there.
        s.worked(t0 + 49 * US);
        assert_eq!((s.hits, s.misses), (1, 0));
        assert!(s.keep_polling(t0 + 98 * US));
        assert!(!s.keep_polling(t0 + 99 * US), "the window is over: sleep");
        assert_eq!((s.hits, s.misses), (1, 1));
        // Asleep, then woken by a datagram: neither.
        assert!(!s.keep_polling(t0 + 500 * US));
        s.worked(t0 + 600 * US);
        assert_eq!((s.hits, s.misses), (1, 1));
        assert_eq!(s.fields(), "spin_hits=1 spin_misses=1");
    }

    #[test]
    fn a_zero_window_never_polls() {
        let t0 = Instant::now();
        let mut s = Spin::new(Duration::ZERO);
        s.worked(t0);
        assert!(!s.keep_polling(t0));
        s.worked(t0);
        assert_eq!((s.hits, s.misses), (0, 0));
    }

    #[test]
    fn a_clock_that_seems_to_go_back_keeps_the_window_and_does_not_panic() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let mut s = Spin::new(50 * US);
        s.worked(t0);
        assert!(s.keep_polling(t0 - 10 * US));
    }
}
