//! Per-host simulated clocks: offset (skew), rate error (drift) and forward jumps, always
//! monotone.
//!
//! The simulator keeps one global time (microseconds); each host reads its own clock,
//! `local(g) = offset + g + g * drift_ppm / 10^6`. A host's timer deadline (local) is mapped
//! back to the first global instant at which the host's clock reaches it.

/// `x * num / den`, truncated toward zero as 128-bit arithmetic does, in 64 bits when the
/// product fits (every realistic run): 128-bit division was a tenth of the simulator's time.
fn mul_div(x: u64, num: i64, den: i64) -> i128 {
    match i64::try_from(x).ok().and_then(|x| x.checked_mul(num)) {
        Some(product) => i128::from(product / den),
        None => i128::from(x) * i128::from(num) / i128::from(den),
    }
}

/// One host's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostClock {
    /// Local reading at global time zero, plus every forward jump so far.
    pub offset_us: u64,
    /// Rate error in parts per million (> -1,000,000).
    pub drift_ppm: i64,
}

impl HostClock {
    /// A perfect clock.
    pub const EXACT: HostClock = HostClock { offset_us: 0, drift_ppm: 0 };

    /// The host's reading at global time `g`.
    pub fn local(&self, g: u64) -> u64 {
        if self.drift_ppm == 0 {
            return self.offset_us.saturating_add(g);
        }
        let scaled = mul_div(g, self.drift_ppm, 1_000_000);
        (i128::from(self.offset_us) + i128::from(g) + scaled).max(0) as u64
    }

    /// The first global time at or after which the host's clock reads at least `l`
    /// (`u64::MAX` for `u64::MAX`, the engine's "never").
    pub fn global(&self, l: u64) -> u64 {
        if l == u64::MAX {
            return u64::MAX;
        }
        if l <= self.offset_us {
            return 0;
        }
        if self.drift_ppm == 0 {
            return l - self.offset_us;
        }
        // `drift_ppm > -1,000,000`: the rate is positive.
        let rate = 1_000_000i64.saturating_add(self.drift_ppm);
        let mut g = mul_div(l - self.offset_us, 1_000_000, rate).max(0) as u64;
        while g > 0 && self.local(g - 1) >= l {
            g -= 1;
        }
        while self.local(g) < l {
            g += 1;
        }
        g
    }

    /// Whether the host's clock reads at least `l` at global time `g`: the same as
    /// `global(l) <= g`, because a reading never decreases, without `global`'s search
    /// (the simulator asks this of every host on every step).
    pub fn reached(&self, l: u64, g: u64) -> bool {
        l != u64::MAX && l <= self.local(g)
    }

    /// The clock jumps forward by `us` (an NTP step): monotone, never backwards.
    pub fn jump(&mut self, us: u64) {
        self.offset_us = self.offset_us.saturating_add(us);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_is_the_first_instant_the_local_clock_reaches() {
        for clock in [
            HostClock::EXACT,
            HostClock { offset_us: 5_000_000, drift_ppm: 40_000 },
            HostClock { offset_us: 17, drift_ppm: -30_000 },
        ] {
            for l in [0u64, 1, 999, 5_000_000, 5_000_001, 123_456_789] {
                let g = clock.global(l);
                assert!(clock.local(g) >= l);
                assert!(g == 0 || clock.local(g - 1) < l);
            }
            for g in [0u64, 1, 16, 5_000_000, 123_456_789] {
                for l in [0u64, 1, 999, 5_000_000, 5_000_001, 123_456_789, u64::MAX] {
                    assert_eq!(clock.reached(l, g), clock.global(l) <= g, "{clock:?} l {l} g {g}");
                }
            }
            // The 64-bit fast paths read as the 128-bit formula does, huge instants included.
            for g in [0u64, 1, 999_999, 123_456_789_012, i64::MAX as u64 / 1_000_000 + 7, u64::MAX / 3] {
                let exact = i128::from(clock.offset_us)
                    + i128::from(g)
                    + i128::from(g) * i128::from(clock.drift_ppm) / 1_000_000;
                assert_eq!(clock.local(g), exact.clamp(0, i128::from(u64::MAX)) as u64, "{clock:?} g {g}");
            }
            let mut prev = 0;
            for g in (0..10_000_000).step_by(99_991) {
                assert!(clock.local(g) >= prev, "monotone");
                prev = clock.local(g);
            }
        }
    }
}
