//! Specs and checkers for Fleet.
//!
//! * [`spec`]: the trusted sequential specifications (IronKV's hash table, IronRSL's
//!   replicated state machine service, and the apps it hosts).
//! * [`linearizability`]: a memoising Wing–Gong/Lowe linearizability checker over any spec,
//!   with per-key partitioning and a work budget.
//! * [`checkers`]: per-step checkers a simulator feeds (agreement, Paxos invariants,
//!   refinement, liveness) and a linearizability verdict on client histories.
//! * [`rsl_invariants`]: IronRSL's cross-host invariants (agreement, 2a consistency,
//!   executed state = chosen sequence, replies justified) over the set of sent packets.
//! * [`history`]: the JSON-lines history format written by benchmarks, and a one-call check
//!   of such a file.
#![forbid(unsafe_code)]

mod bitset;
pub mod budget;
pub mod checkers;
pub mod history;
pub mod linearizability;
pub mod rsl_invariants;
pub mod spec;

pub use budget::Budget;
