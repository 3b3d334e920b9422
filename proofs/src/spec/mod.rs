//! Sequential specifications: the trusted, short state machines that the implementations
//! must refine (IronFleet's `.s.dfy` layer, rewritten in Rust).
//!
//! Every spec here is meant to be checkable by eye: a handful of lines per operation.

use core::fmt::Debug;
use core::hash::Hash;

pub mod bytes_kv;
pub mod kv;
pub mod rsl;

/// A sequential specification: a deterministic state machine stepped by one operation at a
/// time. `Clone + Eq + Hash` lets the linearizability checker memoise states it has seen.
pub trait SeqSpec: Clone + Eq + Hash + Debug {
    /// An operation a client may invoke.
    type Op: Clone + Debug;
    /// What the operation returns to the client.
    type Ret: Clone + Eq + Debug;

    /// Applies `op` atomically and returns its result.
    fn step(&mut self, op: &Self::Op) -> Self::Ret;

    /// Optional hint for the linearizability checker: `true` only if `step(op)` leaves
    /// *every* state unchanged (a pure read). The checker then linearizes a matching read as
    /// soon as it can without trying alternatives, which is sound only under that contract.
    /// The default, `false`, is always sound.
    fn is_read_only(op: &Self::Op) -> bool {
        let _ = op;
        false
    }
}

/// An operation that touches exactly one key of a keyed state.
///
/// A spec whose operations implement this, and in which an operation reads and writes only
/// the part of the state belonging to its key, is a product of independent per-key objects;
/// linearizability is then checkable one key at a time (P-compositionality).
pub trait KeyedOp {
    /// The key type; ordered so that reports are deterministic.
    type Key: Ord + Clone + Debug;

    /// The single key this operation reads or writes.
    fn key(&self) -> Self::Key;

    /// Optional hint for the partitioned checker: `true` only if this is a *blind write* of
    /// its key: its result is the same in every state, and afterwards its key's part of the
    /// state does not depend on what it was before (KV's Set and Delete). When every
    /// operation on a key is a pure read ([`SeqSpec::is_read_only`]) or a blind write, a
    /// pending write matters only if a read sees it, which lets the checker skip placements
    /// of pending writes that no read observes. The default, `false`, is always sound.
    fn is_blind_write(&self) -> bool {
        false
    }
}
