//! What a durable replica has handed to its binding to persist, and what the binding has
//! confirmed durable (see `rsl::durable` for the records and the ordering rule).
//!
//! The replica reports as its checkpoint only operations whose effects are durable:
//! `persisted_ops`, which moves when the binding confirms a sync of the executed-batch
//! records handed out ([`Journal::persisted`]) or a snapshot ([`Journal::snapshot_persisted`]).
//! After a snapshot was installed from another replica (or executed records were dropped
//! before the binding took them), the records below it never reach the log: that snapshot
//! is then *required*, and nothing past `persisted_ops` counts until it is persisted.

/// Durable bookkeeping of one replica.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Journal {
    /// Durable mode: records are handed out and the checkpoint is `persisted_ops`.
    pub durable: bool,
    /// The next executed batch to hand out.
    pub handed_out: u64,
    /// Every operation below this is in a persisted snapshot or a persisted record.
    pub persisted_ops: u64,
    /// A snapshot at this operation must be persisted before anything past
    /// `persisted_ops` counts.
    pub required: Option<u64>,
    /// The highest mark confirmed while a snapshot was required.
    persisted_mark: u64,
    /// The acceptor's durable state changed since the last acceptor record handed out.
    pub acceptor_dirty: bool,
    /// Acceptor slots whose vote was cast since the last acceptor records were handed out
    /// (bit `opn % W`; a slot reused by a newer vote holds the one to hand out).
    pub votes: u64,
    /// The rejoining incarnation whose record is still to be handed out.
    pub incarnation_pending: Option<u64>,
    /// Replicas whose born-with record is still to be handed out (bit `r`).
    pub born_pending: u64,
    /// The replica entered an epoch or retired, and the epoch record is still to be handed
    /// out (after the executed batches below the epoch's start).
    pub epoch_pending: bool,
}

impl Journal {
    /// An in-memory replica's: nothing is handed out; the checkpoint is the executed count.
    pub const fn in_memory() -> Self {
        Journal {
            durable: false,
            handed_out: 0,
            persisted_ops: 0,
            required: None,
            persisted_mark: 0,
            acceptor_dirty: false,
            votes: 0,
            incarnation_pending: None,
            born_pending: 0,
            epoch_pending: false,
        }
    }

    /// A durable replica's whose every operation below `ops` is already durable.
    pub const fn durable_at(ops: u64) -> Self {
        Journal {
            durable: true,
            handed_out: ops,
            persisted_ops: ops,
            required: None,
            persisted_mark: 0,
            acceptor_dirty: false,
            votes: 0,
            incarnation_pending: None,
            born_pending: 0,
            epoch_pending: false,
        }
    }

    /// Records a vote cast into acceptor slot `slot` (to hand out with the acceptor's state).
    pub fn note_vote(&mut self, slot: usize) {
        if !self.durable {
            return;
        }
        self.acceptor_dirty = true;
        self.votes |= 1u64 << (slot % 64);
    }

    /// The replica entered an epoch starting at `start` (or retired from its epoch): the
    /// epoch record is to be handed out; votes of the old epoch not handed out yet are not
    /// (see [`crate::rsl::durable`]: the old epoch never needs them); with `fresh_acceptor`,
    /// the new epoch's empty acceptor is; with `state_at_start`, the replica dropped the
    /// batches up to `start` and the snapshot frozen there replaces them.
    pub fn enter_epoch(&mut self, start: u64, fresh_acceptor: bool, state_at_start: bool) {
        if !self.durable {
            return;
        }
        self.epoch_pending = true;
        self.votes = 0;
        self.acceptor_dirty = fresh_acceptor;
        self.born_pending = 0;
        if state_at_start {
            self.skip_to(start);
        }
    }

    /// Everything below `opn` will never be handed out as records (a snapshot at `opn`
    /// replaces them): that snapshot is required.
    pub fn skip_to(&mut self, opn: u64) {
        if !self.durable || opn <= self.handed_out {
            return;
        }
        self.handed_out = opn;
        self.required = Some(self.required.map_or(opn, |r| r.max(opn)));
    }

    /// The binding synced every record handed out before it read `mark`
    /// ([`Journal::handed_out`] then).
    pub fn persisted(&mut self, mark: u64) {
        match self.required {
            None => self.persisted_ops = self.persisted_ops.max(mark),
            Some(_) => self.persisted_mark = self.persisted_mark.max(mark),
        }
    }

    /// The binding persisted a whole snapshot at `opn`: every operation below it is
    /// durable, and records below it need not be handed out any more.
    pub fn snapshot_persisted(&mut self, opn: u64) {
        if !self.durable || self.required.is_some_and(|r| opn < r) {
            return;
        }
        // Records handed out after a required snapshot, and confirmed since, count too.
        let from_records = match self.required.take() {
            Some(_) if self.persisted_mark >= opn => self.persisted_mark,
            Some(_) => 0,
            None => self.persisted_ops,
        };
        self.handed_out = self.handed_out.max(opn);
        self.persisted_ops = self.persisted_ops.max(opn).max(from_records);
    }

    /// The checkpoint to report, given the executed count.
    pub fn checkpoint(&self, ops_complete: u64) -> u64 {
        match self.durable {
            true => self.persisted_ops.min(ops_complete),
            false => ops_complete,
        }
    }

    /// Local invariant, given the executed count.
    pub fn invariant(&self, ops_complete: u64) -> Result<(), &'static str> {
        if !self.durable {
            return Ok(());
        }
        if self.handed_out > ops_complete {
            return Err("journal handed out a batch not executed");
        }
        if self.persisted_ops > self.handed_out {
            return Err("journal counts as durable what was not handed out");
        }
        if self.required.is_some_and(|r| r > self.handed_out) {
            return Err("journal requires a snapshot past what it handed out");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_count_once_synced_and_a_required_snapshot_holds_them_back() {
        let mut j = Journal::durable_at(0);
        j.handed_out = 10;
        j.persisted(10);
        assert_eq!(j.checkpoint(12), 10);
        j.skip_to(50); // a snapshot at 50 was installed
        j.handed_out = 55;
        j.persisted(55);
        assert_eq!(j.checkpoint(55), 10, "records 50..55 mean nothing without the snapshot at 50");
        j.snapshot_persisted(40);
        assert_eq!(j.checkpoint(55), 10, "an older snapshot does not satisfy the requirement");
        j.snapshot_persisted(50);
        assert_eq!(j.checkpoint(55), 55, "snapshot 50 plus the records confirmed since");
        assert_eq!(j.invariant(55), Ok(()));
    }

    #[test]
    fn an_in_memory_journal_reports_what_was_executed() {
        let j = Journal::in_memory();
        assert_eq!(j.checkpoint(7), 7);
        let mut d = Journal::durable_at(3);
        assert_eq!(d.checkpoint(7), 3);
        d.persisted(2);
        assert_eq!(d.checkpoint(7), 3, "never backwards");
    }

    #[test]
    fn invariant_refuses_durable_counts_past_what_was_handed_out() {
        let mut j = Journal::durable_at(5);
        assert_eq!(j.invariant(5), Ok(()));
        assert!(j.invariant(4).is_err(), "handed out past the executed count");
        j.persisted_ops = 6;
        j.handed_out = 5;
        assert!(j.invariant(9).is_err());
    }
}
