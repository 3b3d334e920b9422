//! Bounding a checker's work: a step and wall-clock budget, and the meter that enforces it.

use std::time::{Duration, Instant};

/// How much work a check may do before giving up with an
/// [`Unknown`](crate::linearizability::CheckError::Unknown) outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Maximum search steps (one step = one visit of a history entry) over the whole call.
    pub max_steps: u64,
    /// Maximum wall-clock time over the whole call, if any.
    pub max_time: Option<Duration>,
}

impl Budget {
    /// A budget of `max_steps` steps and no time limit.
    pub fn steps(max_steps: u64) -> Self {
        Self { max_steps, max_time: None }
    }

    /// A budget of `max_time` wall-clock time; steps are still capped at `u64::MAX`.
    pub fn time(max_time: Duration) -> Self {
        Self { max_steps: u64::MAX, max_time: Some(max_time) }
    }
}

impl Default for Budget {
    /// 100 million steps or 60 seconds, whichever comes first.
    fn default() -> Self {
        Self { max_steps: 100_000_000, max_time: Some(Duration::from_secs(60)) }
    }
}

/// Why a budgeted check stopped without a verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exhausted {
    /// Steps spent when it stopped.
    pub steps: u64,
    /// Wall-clock time spent when it stopped.
    pub elapsed: Duration,
    /// Which limit was hit.
    pub reason: String,
}

/// Counts steps against a [`Budget`]; the clock is read every 1024 steps.
#[derive(Debug)]
pub(crate) struct Meter {
    budget: Budget,
    start: Instant,
    steps: u64,
    /// Set once a limit is hit; every later tick fails with the same reason.
    spent: Option<String>,
}

impl Meter {
    pub(crate) fn new(budget: &Budget) -> Self {
        Self { budget: *budget, start: Instant::now(), steps: 0, spent: None }
    }

    /// Spends one step; `Err` once the budget is used up (and on every later call).
    pub(crate) fn tick(&mut self) -> Result<(), Exhausted> {
        if self.spent.is_none() {
            if self.steps >= self.budget.max_steps {
                self.spent = Some(format!("step budget of {} exhausted", self.budget.max_steps));
            } else if let Some(max) = self.budget.max_time {
                if self.steps.is_multiple_of(1024) && self.start.elapsed() >= max {
                    self.spent = Some(format!("time budget of {max:?} exhausted"));
                }
            }
        }
        match &self.spent {
            Some(reason) => Err(Exhausted { steps: self.steps, elapsed: self.start.elapsed(), reason: reason.clone() }),
            None => {
                self.steps += 1;
                Ok(())
            }
        }
    }
}
