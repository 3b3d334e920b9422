//! Caller-supplied monotonic time.
//!
//! The engine never reads a clock: every entry point takes `now: Instant`, read by the
//! binding once per step (after the receive), exactly as IronFleet's one-step discipline
//! requires. Time is plain microseconds so that a simulator can drive it deterministically.

use serde::{Deserialize, Serialize};

/// A point on the caller's monotonic clock, in microseconds since an arbitrary origin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Instant {
    micros: u64,
}

impl Instant {
    /// The clock's origin.
    pub const ZERO: Instant = Instant { micros: 0 };
    /// A deadline that never comes: `next_deadline` returns it when no timer is armed.
    pub const NEVER: Instant = Instant { micros: u64::MAX };

    /// An instant `micros` microseconds after the origin.
    pub const fn from_micros(micros: u64) -> Instant {
        Instant { micros }
    }

    /// An instant `millis` milliseconds after the origin (saturating).
    pub const fn from_millis(millis: u64) -> Instant {
        Instant { micros: millis.saturating_mul(1000) }
    }

    /// Microseconds since the origin.
    pub const fn as_micros(self) -> u64 {
        self.micros
    }

    /// This instant plus `ms` milliseconds, saturating at [`Instant::NEVER`].
    pub const fn plus_ms(self, ms: u64) -> Instant {
        Instant { micros: self.micros.saturating_add(ms.saturating_mul(1000)) }
    }

    /// This instant plus `us` microseconds, saturating at [`Instant::NEVER`].
    pub const fn plus_us(self, us: u64) -> Instant {
        Instant { micros: self.micros.saturating_add(us) }
    }

    /// Microseconds elapsed from `earlier` to `self`, or 0 if `earlier` is later.
    pub const fn micros_since(self, earlier: Instant) -> u64 {
        self.micros.saturating_sub(earlier.micros)
    }
}

/// The earlier of two optional deadlines, for folding a timer table into one `next_deadline`.
pub(crate) fn earliest(a: Instant, b: Option<Instant>) -> Instant {
    match b {
        Some(b) if b < a => b,
        _ => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_overflowing() {
        assert_eq!(Instant::NEVER.plus_ms(5), Instant::NEVER);
        assert_eq!(Instant::from_millis(u64::MAX), Instant::NEVER);
        assert_eq!(Instant::from_micros(3).micros_since(Instant::from_micros(9)), 0);
        assert_eq!(Instant::from_millis(2).micros_since(Instant::from_millis(1)), 1000);
    }

    #[test]
    fn earliest_picks_the_smaller_deadline() {
        let a = Instant::from_micros(10);
        assert_eq!(earliest(a, None), a);
        assert_eq!(earliest(a, Some(Instant::from_micros(4))), Instant::from_micros(4));
        assert_eq!(earliest(a, Some(Instant::from_micros(40))), a);
    }
}
