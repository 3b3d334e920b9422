//! Linearizability of a recorded client history as a checker verdict.
//!
//! IronFleet's top-level theorem for both systems is refinement of a sequential spec as seen
//! by clients; on a client history that is linearizability. This wraps the
//! [`crate::linearizability`] search (whole-history or per key) so that a driver gets a
//! [`Violation`] or an explicit "unknown" when the budget runs out. It needs nothing but the
//! history, so it works as well on histories recorded from real processes.

use super::Violation;
use crate::budget::Budget;
use crate::linearizability::{check, check_partitioned, CheckError, Operation};
use crate::spec::{KeyedOp, SeqSpec};

/// The verdict on one history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinVerdict {
    /// Linearizable (a witness was found).
    Linearizable,
    /// Not linearizable.
    Violation(Violation),
    /// The budget ran out (not a failure, but nothing was shown).
    Unknown(String),
}

/// Checks a history of a keyed spec one key at a time (P-compositionality).
pub fn check_keyed<S>(init: &S, history: &[Operation<S::Op, S::Ret>], budget: &Budget) -> LinVerdict
where
    S: SeqSpec,
    S::Op: KeyedOp,
{
    match check_partitioned(init, history, budget) {
        Err(e) => violation(format!("invalid history: operation #{}: {}", e.index, e.message)),
        Ok(outcome) => {
            if let Some((key, v)) = outcome.violations.iter().next() {
                return violation(format!("key {key:?}: {v}"));
            }
            if let Some((key, u)) = outcome.unknown.iter().next() {
                return LinVerdict::Unknown(format!("key {key:?}: {}", u.exhausted.reason));
            }
            LinVerdict::Linearizable
        }
    }
}

/// Checks a whole history against any spec.
pub fn check_whole<S: SeqSpec>(init: &S, history: &[Operation<S::Op, S::Ret>], budget: &Budget) -> LinVerdict {
    match check(init, history, budget) {
        Ok(_) => LinVerdict::Linearizable,
        Err(CheckError::Unknown(u)) => LinVerdict::Unknown(u.exhausted.reason),
        Err(e) => violation(e.to_string()),
    }
}

fn violation(message: String) -> LinVerdict {
    LinVerdict::Violation(Violation::new("linearizability", "service spec (linearizable state machine)", message))
}
