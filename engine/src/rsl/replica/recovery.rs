//! Crash recovery of the acceptor: the record a durable binding persists after a step, the
//! compacted image of the acceptor, and [`Replica::recover`], which replays them (see
//! [`crate::rsl::durable`] for what is durable and why).

use super::{Replica, Step};
use crate::rsl::app::App;
use crate::rsl::ballot::Ballot;
use crate::rsl::batch;
use crate::rsl::config::RslConfig;
use crate::rsl::durable::{DurableRecord, RecoverError};
use crate::rsl::msg::Vote;
use crate::time::Instant;
use crate::wire::{self, Bytes, EncodeError, Protocol};

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

    /// The operation the last step voted on (see `rsl::durable`).
    fn step_vote(&self) -> Option<u64> {
        self.durable_vote
    }

    /// Recovery: one durable record's vote.
    fn restore_vote(&mut self, bal: Ballot, opn: u64, batch: &[u8]) -> Result<(), &'static str> {
        self.acceptor.restore_vote(bal, opn, batch, self.config.params.max_log_length)
    }

    /// Recovery: one durable record's promise, truncation point and ballots.
    fn restore_header(&mut self, r: &DurableRecord<'_>) -> Result<(), &'static str> {
        self.acceptor.restore_header(r.max_bal, r.log_truncation_point, r.replies_sent)?;
        if r.max_ballot_sent_1a < self.proposer.max_ballot_sent_1a {
            return Err("proposer ballot went down");
        }
        self.proposer.max_ballot_sent_1a = r.max_ballot_sent_1a;
        // The view is at least every ballot this replica promised or started, so that the
        // proposer never re-starts a ballot it already used (action 1 needs view > sent).
        let view = self.election.current_view.max(r.max_bal).max(r.max_ballot_sent_1a);
        self.election.current_view = view;
        Ok(())
    }

    /// Recovery done: behind by everything below the truncation point, fetch it.
    fn rejoin(&mut self, now: Instant) {
        self.note_target(self.acceptor.log_truncation_point, now);
    }
}

#[cfg(test)]
mod tests;
