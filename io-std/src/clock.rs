//! The monotonic clock the bindings hand to the engine.

use std::time::Instant as StdInstant;

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
