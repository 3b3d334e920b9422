//! The monotonic clock the bindings hand to the engine.

use std::time::{Instant as StdInstant, SystemTime, UNIX_EPOCH};

use fleet_engine::Instant;

/// A monotonic clock in engine `Instant`s, counted from when it was started.
#[derive(Clone, Copy, Debug)]
pub struct Clock(StdInstant);

impl Clock {
    /// A clock starting now.
    pub fn start() -> Clock {
        Clock(StdInstant::now())
    }

    /// The current instant.
    pub fn now(&self) -> Instant {
        Instant::from_micros(self.0.elapsed().as_micros() as u64)
    }
}

/// A nonce for a replica that starts without its state (see
/// `fleet_engine::rsl::Replica::new_rejoining`): the wall clock in microseconds, larger than
/// any earlier incarnation's nonce and 1b reply ids as long as the clock does not go back
/// by more than the process lived; never 0.
pub fn incarnation_nonce() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_micros() as u64).max(1)
}
