//! Durable acceptor state: what a replica must keep across a crash so that Paxos stays safe
//! when it restarts, and how a restarted replica is rebuilt from it.
//!
//! IronRSL assumes crash-stop: a replica that loses its memory must never come back with
//! the same identity, because an acceptor that forgets a promise or a vote lets two
//! leaders choose different values for one operation (the `AmnesiacAcceptor` planted bug in
//! `proofs/` is exactly that). Fleet adds crash-*recovery*: the binding persists one
//! [`DurableRecord`] after every step whose [`Step::durable_state_changed`] is set, before
//! any datagram of that step leaves, and [`Replica::recover`] replays them.
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
//! the order written. A log can be compacted to [`Replica::durable_image_record`]s, which
//! replay to the same acceptor state.

use serde::{Deserialize, Serialize};

use super::app::App;
use super::ballot::Ballot;
use super::batch;
use super::config::RslConfig;
use super::msg::Vote;
use super::replica::{Replica, Step};
use crate::config::ConfigError;
use crate::time::Instant;
use crate::wire::{self, Bytes, DecodeError, EncodeError, Protocol};

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
    /// The configuration or capacities are invalid (as for [`Replica::new`]).
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

impl<A: App, const R: usize, const W: usize, const D: usize, const QB: usize, const C: usize, const RB: usize>
    Replica<A, R, W, D, QB, C, RB>
{
    /// The record to persist after a step that returned `durable_state_changed`: the
    /// acceptor state now, and the vote of that step. Encoded into `buf`, which needs
    /// `D + DURABLE_RECORD_OVERHEAD_BYTES` bytes at most.
    pub fn durable_record<'b>(&self, step: &Step, buf: &'b mut [u8]) -> Result<&'b [u8], EncodeError> {
        let vote = match step.durable_state_changed {
            true => self.step_vote().and_then(|opn| self.acceptor().vote_at(opn)),
            false => None,
        };
        let vote = vote.map(|v| Vote { opn: v.opn, bal: v.bal, batch: Bytes(&v.batch) });
        let len = wire::encode(Protocol::Durable, &self.durable_header(vote), buf)?;
        Ok(&buf[..len])
    }

    /// How many records [`Replica::durable_image_record`] yields: a log of exactly these
    /// records (the header, then one per held vote) replays to the current acceptor state,
    /// so a binding may replace its whole log with them (compaction).
    pub fn durable_image_len(&self) -> usize {
        1 + self.acceptor().vote_count()
    }

    /// Record `index` of the compacted image (`index < durable_image_len()`).
    pub fn durable_image_record<'b>(&self, index: usize, buf: &'b mut [u8]) -> Result<&'b [u8], EncodeError> {
        let vote = match index {
            0 => None,
            i => match self.acceptor().votes().nth(i - 1) {
                Some(v) => Some(Vote { opn: v.opn, bal: v.bal, batch: Bytes(&v.batch) }),
                None => return Err(EncodeError::BufferFull),
            },
        };
        let len = wire::encode(Protocol::Durable, &self.durable_header(vote), buf)?;
        Ok(&buf[..len])
    }

    fn durable_header<'v>(&self, vote: Option<Vote<'v>>) -> DurableRecord<'v> {
        DurableRecord {
            max_bal: self.acceptor().max_bal,
            max_ballot_sent_1a: self.proposer().max_ballot_sent_1a,
            log_truncation_point: self.acceptor().log_truncation_point,
            replies_sent: self.acceptor().replies_sent(),
            vote,
        }
    }

    /// Replica `me` restarted after a crash: the acceptor and proposer ballot replayed from
    /// `records` (the log in write order, possibly compacted), everything else fresh, with
    /// `app` as the application (normally empty: its state comes back by state transfer).
    /// An empty log is a first start, the same as [`Replica::new`].
    ///
    /// Every record is validated against the protocol's bounds and the records before it;
    /// the first bad one is reported and no replica is returned.
    pub fn recover<'r, I>(
        config: RslConfig<R>,
        me: usize,
        app: A,
        now: Instant,
        records: I,
    ) -> Result<Self, RecoverError>
    where
        I: IntoIterator<Item = &'r [u8]>,
    {
        let mut replica = Replica::new(config, me, app, now)?;
        let n = replica.config().n();
        let max_entries = replica.config().params.max_batch_size;
        let max_bytes = replica.config().max_batch_bytes();
        for (record, bytes) in records.into_iter().enumerate() {
            let bad = |reason| RecoverError::Inconsistent { record, reason };
            let r: DurableRecord<'_> =
                wire::decode(Protocol::Durable, bytes).map_err(|error| RecoverError::Undecodable { record, error })?;
            if !r.max_bal.is_valid_for(n) && r.max_bal != Ballot::default() {
                return Err(bad("promise names a replica outside the configuration"));
            }
            if r.max_ballot_sent_1a != Ballot::default() && usize::from(r.max_ballot_sent_1a.proposer) != me {
                return Err(bad("proposer ballot belongs to another replica"));
            }
            if let Some(v) = r.vote {
                if !v.bal.is_valid_for(n) || v.bal > r.max_bal {
                    return Err(bad("vote ballot invalid or above the promise"));
                }
                if v.batch.0.len() > max_bytes || batch::validate(v.batch.0, max_entries).is_err() {
                    return Err(bad("vote batch malformed or too large"));
                }
                replica.restore_vote(v.bal, v.opn, v.batch.0).map_err(bad)?;
            }
            replica.restore_header(&r).map_err(bad)?;
            replica.check_invariants().map_err(bad)?;
        }
        replica.rejoin(now);
        Ok(replica)
    }
}

#[cfg(test)]
mod tests;
