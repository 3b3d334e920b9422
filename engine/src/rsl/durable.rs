//! Durable acceptor state: what a replica must keep across a crash so that Paxos stays safe
//! when it restarts, and how a restarted replica is rebuilt from it.
//!
//! IronRSL assumes crash-stop: a replica that loses its memory must never come back with
//! the same identity, because an acceptor that forgets a promise or a vote lets two
//! leaders choose different values for one operation (the `AmnesiacAcceptor` planted bug in
//! `proofs/` is exactly that). Fleet adds crash-*recovery*: the binding persists one
//! [`DurableRecord`] after every step whose [`Step::durable_state_changed`](crate::rsl::Step::durable_state_changed) is set, before
//! any datagram of that step leaves, and [`Replica::recover`](crate::rsl::Replica::recover) replays them.
//!
//! What is durable, and why each field:
//! * `max_bal`: the promise (IronRSL `max_bal`); forgetting it lets a lower ballot's 2a in.
//! * the votes (`votes` in IronRSL), one per record: a vote the acceptor forgets may be
//!   the one that made a value chosen, and a new leader would not learn it.
//! * `log_truncation_point`: votes below it are gone, and a 1b must say so.
//! * `max_ballot_sent_1a`: a leader that forgets which ballot it started would start it
//!   again and could propose a second value for an operation in the same ballot.
//! * `replies_sent`: 1b replies are told apart by this counter; reusing an id after a
//!   restart could let a proposer splice chunks of two different 1b replies.
//!
//! Everything else (learner, executor and application, election, queued requests, stats)
//! is rebuilt from peers: the restarted replica is simply a replica that is behind, and
//! catches up through 2a retransmission and state transfer like any lagging replica.
//!
//! Records are self-contained envelopes (`Protocol::Durable`); a log is their sequence in
//! the order written. A log can be compacted to [`Replica::durable_image_record`](crate::rsl::Replica::durable_image_record)s, which
//! replay to the same acceptor state.

use serde::{Deserialize, Serialize};

use super::ballot::Ballot;
use super::msg::Vote;
use crate::config::ConfigError;
use crate::wire::DecodeError;

/// Bytes a record adds around the batch of its vote (ballots, counters, length prefixes).
pub const DURABLE_RECORD_OVERHEAD_BYTES: usize = 72;

/// The acceptor state after one step, and the vote that step cast (if any).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DurableRecord<'a> {
    /// The acceptor's promise.
    pub max_bal: Ballot,
    /// The last ballot this replica's proposer started.
    pub max_ballot_sent_1a: Ballot,
    /// The acceptor's truncation point.
    pub log_truncation_point: u64,
    /// The last 1b reply id used.
    pub replies_sent: u64,
    /// The vote cast in this step.
    #[serde(borrow)]
    pub vote: Option<Vote<'a>>,
}

/// Why a durable log could not be replayed. Nothing is half-recovered: the caller gets
/// either a consistent replica or this error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RecoverError {
    /// The configuration or capacities are invalid (as for [`Replica::new`](crate::rsl::Replica::new)).
    Config(ConfigError),
    /// Record number `record` (0-based) does not decode.
    Undecodable {
        /// Index of the record in the log.
        record: usize,
        /// What was wrong with its bytes.
        error: DecodeError,
    },
    /// Record number `record` decodes but contradicts the protocol or the log before it.
    Inconsistent {
        /// Index of the record in the log.
        record: usize,
        /// Which rule it breaks.
        reason: &'static str,
    },
}

impl core::fmt::Display for RecoverError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RecoverError::Config(e) => write!(f, "invalid configuration: {e}"),
            RecoverError::Undecodable { record, error } => write!(f, "durable record {record} is unreadable: {error}"),
            RecoverError::Inconsistent { record, reason } => {
                write!(f, "durable record {record} is inconsistent: {reason}")
            }
        }
    }
}

impl From<ConfigError> for RecoverError {
    fn from(e: ConfigError) -> Self {
        RecoverError::Config(e)
    }
}
