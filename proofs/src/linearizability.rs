//! A linearizability checker in the style of Wing & Gong with Lowe's just-in-time
//! linearization and memoisation (as in Porcupine), generic over any [`SeqSpec`].
//!
//! The search walks the history's call/return entries in real-time order. At a call it tries
//! to linearize that operation next (its spec result must equal the observed result); at a
//! return of an operation not yet linearized it backtracks. A cache of (set of linearized
//! operations, spec state) pairs already explored prunes repeated work. Every loop is bounded
//! by a [`Budget`]; running out yields [`CheckError::Unknown`].

use core::fmt;

use crate::budget::{Budget, Exhausted, Meter};
use crate::spec::SeqSpec;

mod entries;
mod partition;
mod search;

pub use partition::{check_partitioned, PartitionedOutcome};

/// One operation of a concurrent history, as one client observed it.
///
/// Operations of one client never overlap (a client waits for a response before invoking
/// again, or gives up and records the operation as pending); the checker relies only on the
/// timestamps, so this is not enforced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<Op, Ret> {
    /// The client that invoked it (used for reports only).
    pub client: u64,
    /// What was invoked.
    pub op: Op,
    /// When it was invoked, in microseconds on a clock shared by all clients.
    pub invoke_us: u64,
    /// `Some((complete_us, result))` if a response arrived. `None` if the outcome is unknown
    /// (timeout, lost response): it may have taken effect at any point after `invoke_us`, or
    /// never. Operations known not to have taken effect must be left out of the history.
    pub complete: Option<(u64, Ret)>,
}

/// An [`Operation`] of spec `S`.
pub type SpecOperation<S> = Operation<<S as SeqSpec>::Op, <S as SeqSpec>::Ret>;

/// An operation paired with its index in the checked history.
type Indexed<'a, S> = (usize, &'a SpecOperation<S>);

/// A witness that a history is linearizable: history indices in linearization order.
/// Pending operations appear only if the witness needed them to take effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Linearization {
    /// Indices into the checked history, in the order they take effect.
    pub order: Vec<usize>,
}

/// Proof that a history is not linearizable: the search exhausted every order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Human-readable account of the deepest point the search reached.
    pub explanation: String,
    /// The longest prefix of a linearization found (history indices).
    pub longest_prefix: Vec<usize>,
    /// The completed operation that could not take effect after that prefix (history index).
    pub stuck_op: Option<usize>,
}

/// The budget ran out before a verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unknown {
    /// Steps, time and the limit that was hit.
    pub exhausted: Exhausted,
}

/// The history itself is malformed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidHistory {
    /// Index of the offending operation.
    pub index: usize,
    /// What is wrong with it.
    pub message: String,
}

/// Why a check did not produce a [`Linearization`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckError {
    /// The history is not linearizable.
    Violation(Violation),
    /// The budget was exhausted: no verdict.
    Unknown(Unknown),
    /// The history is malformed (e.g. an operation completes before it is invoked).
    InvalidHistory(InvalidHistory),
}

/// Checks whether `history` is linearizable with respect to the spec starting in `init`.
///
/// Returns a linearization on success. Cost is roughly linear in the history length when few
/// operations overlap; it can grow exponentially with the number of mutually concurrent
/// operations, which `budget` bounds.
pub fn check<S: SeqSpec>(
    init: &S,
    history: &[Operation<S::Op, S::Ret>],
    budget: &Budget,
) -> Result<Linearization, CheckError> {
    validate(history).map_err(CheckError::InvalidHistory)?;
    let ops: Vec<Indexed<'_, S>> = history.iter().enumerate().collect();
    let mut meter = Meter::new(budget);
    search::run(init, &ops, false, &mut meter)
}

/// Checks that every completed operation completes no earlier than it is invoked.
pub(crate) fn validate<Op, Ret>(history: &[Operation<Op, Ret>]) -> Result<(), InvalidHistory> {
    for (index, o) in history.iter().enumerate() {
        if let Some((done, _)) = &o.complete {
            if *done < o.invoke_us {
                return Err(InvalidHistory {
                    index,
                    message: format!("completes at {done} us, before its invocation at {} us", o.invoke_us),
                });
            }
        }
    }
    Ok(())
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.explanation)
    }
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Violation(v) => write!(f, "not linearizable: {v}"),
            CheckError::Unknown(u) => write!(
                f,
                "unknown: {} after {} steps in {:?}",
                u.exhausted.reason, u.exhausted.steps, u.exhausted.elapsed
            ),
            CheckError::InvalidHistory(e) => {
                write!(f, "invalid history: operation #{}: {}", e.index, e.message)
            }
        }
    }
}

impl std::error::Error for CheckError {}
