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
//! wants it, so on a loaded machine the spin takes what would be idle time. And it spins
//! only while it pays: each round that finds work notes whether it came within the window
//! of the previous one (measured whether the loop was polling or asleep), and while
//! recent work mostly came later than that (an idle cluster's heartbeats, peers a slow
//! network away) the loop sleeps at once, as without a window, until work comes close
//! together again. `--spin-us 0` turns it off (a machine shared with others, or a
//! battery).

use std::time::{Duration, Instant};

/// The spin window the `fleet` servers use unless told otherwise: near the gap between the
/// hops of one request on a loopback cluster (docs/performance.md, session 41).
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);

/// Bound of [`Spin::score`]: after a long run of close work, one more than this many
/// rounds of work that came late turn spinning off; after a quiet spell, this many close
/// ones turn it back on.
const SCORE_LIMIT: i8 = 8;

/// When the loop, with nothing to do, polls again instead of sleeping; and how often
/// that paid.
#[derive(Clone, Debug)]
pub struct Spin {
    window: Duration,
    /// When the loop last finished work.
    last_work: Option<Instant>,
    /// Recent rounds of work that began within the window of the previous one (+1 each)
    /// against those that began later (-1 each), within ±[`SCORE_LIMIT`]: the loop spins
    /// only while this is not negative.
    score: i8,
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
        Spin { window, last_work: None, score: 0, spinning: false, hits: 0, misses: 0 }
    }

    /// The loop did work: the round began at `started` (when what it handled was there)
    /// and ended at `finished`.
    pub fn worked(&mut self, started: Instant, finished: Instant) {
        if let Some(at) = self.last_work {
            self.score = if started.saturating_duration_since(at) < self.window {
                (self.score + 1).min(SCORE_LIMIT)
            } else {
                (self.score - 1).max(-SCORE_LIMIT)
            };
        }
        if self.spinning {
            self.hits += 1;
            self.spinning = false;
        }
        self.last_work = Some(finished);
    }

    /// The loop has nothing to do at `now`: `true` to poll again at once (the caller
    /// yields the CPU first), `false` to sleep.
    pub fn keep_polling(&mut self, now: Instant) -> bool {
        let within =
            self.score >= 0 && self.last_work.is_some_and(|at| now.saturating_duration_since(at) < self.window);
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
        s.worked(t0, t0);
        assert!(s.keep_polling(t0 + 10 * US));
        assert!(s.keep_polling(t0 + 49 * US));
        // A datagram came while polling: a hit, and a new window from the end of its round.
        s.worked(t0 + 49 * US, t0 + 50 * US);
        assert_eq!((s.hits, s.misses), (1, 0));
        assert!(s.keep_polling(t0 + 99 * US));
        assert!(!s.keep_polling(t0 + 100 * US), "the window is over: sleep");
        assert_eq!((s.hits, s.misses), (1, 1));
        // Asleep, then woken by a datagram: neither.
        assert!(!s.keep_polling(t0 + 500 * US));
        s.worked(t0 + 600 * US, t0 + 600 * US);
        assert_eq!((s.hits, s.misses), (1, 1));
        assert_eq!(s.fields(), "spin_hits=1 spin_misses=1");
    }

    #[test]
    fn a_zero_window_never_polls() {
        let t0 = Instant::now();
        let mut s = Spin::new(Duration::ZERO);
        s.worked(t0, t0);
        assert!(!s.keep_polling(t0));
        s.worked(t0, t0);
        assert_eq!((s.hits, s.misses), (0, 0));
    }

    #[test]
    fn a_clock_that_seems_to_go_back_keeps_the_window_and_does_not_panic() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let mut s = Spin::new(50 * US);
        s.worked(t0, t0);
        assert!(s.keep_polling(t0 - 10 * US));
    }

    #[test]
    fn work_that_comes_later_than_the_window_turns_spinning_off_until_it_comes_close_again() {
        let t0 = Instant::now();
        let mut s = Spin::new(50 * US);
        let mut t = t0;
        s.worked(t, t);
        // Heartbeats 100 ms apart: each round of work came late.
        for _ in 0..SCORE_LIMIT {
            t += Duration::from_millis(100);
            s.worked(t, t);
        }
        assert!(!s.keep_polling(t + US), "work keeps coming late: sleep at once");
        // Nothing spun, so nothing counted.
        assert_eq!((s.hits, s.misses), (0, 0));
        // A client starts: work every 20 µs, found by a loop that sleeps at once.
        let mut turned_on = None;
        for round in 1..=2 * SCORE_LIMIT as u32 {
            t += 20 * US;
            s.worked(t, t);
            if turned_on.is_none() && s.keep_polling(t + US) {
                turned_on = Some(round);
            }
        }
        assert_eq!(turned_on, Some(SCORE_LIMIT as u32), "close work turns it back on");
        // Close work keeps it on; the score stays bounded, so a quiet spell turns it off
        // again after one late round more than the bound.
        for _ in 0..SCORE_LIMIT {
            t += Duration::from_millis(100);
            s.worked(t, t);
        }
        assert!(s.keep_polling(t + US), "still on at a score of 0");
        t += Duration::from_millis(100);
        s.worked(t, t);
        assert!(!s.keep_polling(t + US));
    }
}
