//! Checkers: pure, reusable judges of a run, fed by a simulator (or by logs of real processes).
//!
//! IronFleet proves that every step of the distributed system refines its spec. These
//! checkers test the same obligations on the real engine's behaviour, one observed step at a
//! time. They know nothing about the engine: a driver (the simulator in `fleet-tests`)
//! translates what it sees into *events*, and each checker judges the event stream.
//!
//! * [`Checker`] is the generic interface: a checker consumes events of type `E` and reports
//!   [`Violation`]s. KV events can reuse it with their own event type.
//! * [`rsl`]: the RSL event type and the RSL checkers (agreement, Paxos invariants,
//!   monotonicity, refinement), bundled by [`rsl::RslChecker`].
//! * [`liveness`]: after healing (the simulated GST), every pending request completes within
//!   a bound.
//! * [`linearizable`]: the linearizability checker on a recorded client history, as a
//!   violation-producing checker.
//!
//! Every rule names the IronFleet lemma it stands for (`rule`), so a failure reads as "this
//! proof obligation does not hold on this run".

use core::fmt;

pub mod linearizable;
pub mod liveness;
pub mod rsl;

/// One broken rule, found by one checker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The checker that found it (`agreement`, `refinement`, `invariant`, `liveness`,
    /// `linearizability`).
    pub checker: &'static str,
    /// The rule, named after the IronFleet lemma (or spec clause) it stands for.
    pub rule: &'static str,
    /// What was seen.
    pub message: String,
}

impl Violation {
    /// A violation of `rule` found by `checker`.
    pub fn new(checker: &'static str, rule: &'static str, message: impl Into<String>) -> Self {
        Self { checker, rule, message: message.into() }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}: {}", self.checker, self.rule, self.message)
    }
}

/// A checker that judges a stream of events of type `E`, one at a time.
///
/// `observe` must be cheap: a simulator calls it after every step. Whatever needs the whole
/// run (a history, a deadline) goes in `finish`.
pub trait Checker<E: ?Sized> {
    /// The checker's name, as used in [`Violation::checker`].
    fn name(&self) -> &'static str;

    /// Judges one event; appends what it breaks to `out`.
    fn observe(&mut self, event: &E, out: &mut Vec<Violation>);

    /// Called once at the end of a run.
    fn finish(&mut self, out: &mut Vec<Violation>) {
        let _ = out;
    }
}
