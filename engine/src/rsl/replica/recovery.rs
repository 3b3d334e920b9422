//! Crash recovery: a durable replica started fresh ([`Replica::new_durable`]) or rebuilt
//! from its latest snapshot and its log ([`Replica::recover`]), and the acceptor's
//! compacted image a binding may replace its acceptor records with (see
//! [`crate::rsl::durable`] for what is durable and why).

use super::Replica;
use crate::config::ConfigError;
use crate::rsl::app::App;
use crate::rsl::ballot::Ballot;
use crate::rsl::batch;
use crate::rsl::config::RslConfig;
use crate::rsl::durable::{AcceptorRecord, DurableRecord, RecoverError};
use crate::rsl::journal::Journal;
use crate::rsl::msg::{SupplyPart, Vote};
use crate::rsl::state_transfer::Progress;
use crate::time::Instant;
use crate::wire::{self, Bytes, EncodeError, Protocol};

impl<
        A: App,
        const R: usize,
        const W: usize,
        const D: usize,
        const QB: usize,
        const C: usize,
        const RB: usize,
        const TB: usize,
    > Replica<A, R, W, D, QB, C, RB, TB>
{
    /// Replica number `me` in durable mode, starting with nothing stored: a first start, or
    /// a disk wiped or replaced, which cannot be told apart. It rejoins as
    /// [`Replica::new_rejoining`] does (with `nonce`), hands its binding records to persist
    /// ([`Replica::next_record`]) and reports as its checkpoint only what the binding
    /// confirmed durable.
    pub fn new_durable(config: RslConfig<R>, me: usize, app: A, now: Instant, nonce: u64) -> Result<Self, ConfigError> {
        let mut replica = Replica::new_rejoining(config, me, app, now, nonce)?;
        replica.journal = Journal::durable_at(0);
        Ok(replica)
    }

    /// How many records [`Replica::durable_image_record`] yields: a log of exactly these
    /// acceptor records (the header, then one per held vote) replays to the current
    /// acceptor state, so a binding may replace every acceptor record with them. None
    /// while rejoining: a log without acceptor records recovers to a rejoining replica.
    pub fn durable_image_len(&self) -> usize {
        match self.rejoin.is_some() {
            true => 0,
            false => 1 + self.acceptor().vote_count(),
        }
    }

    /// Record `index` of the acceptor's compacted image (`index < durable_image_len()`).
    pub fn durable_image_record<'b>(&self, index: usize, buf: &'b mut [u8]) -> Result<&'b [u8], EncodeError> {
        let vote = match index {
            0 => None,
            i => match self.acceptor().votes().nth(i - 1) {
                Some(v) => Some(Vote { opn: v.opn, bal: v.bal, batch: Bytes(&v.batch) }),
                None => return Err(EncodeError::BufferFull),
            },
        };
        let len = wire::encode(Protocol::Durable, &DurableRecord::Acceptor(self.acceptor_record(vote)), buf)?;
        Ok(&buf[..len])
    }

    /// The acceptor's durable state now, with `vote`.
    pub(super) fn acceptor_record<'v>(&self, vote: Option<Vote<'v>>) -> AcceptorRecord<'v> {
        AcceptorRecord {
            max_bal: self.acceptor().max_bal,
            max_ballot_sent_1a: self.proposer().max_ballot_sent_1a,
            log_truncation_point: self.acceptor().log_truncation_point,
            replies_sent: self.acceptor().replies_sent(),
            vote,
        }
    }

    /// Replica `me` restarted after a crash, in durable mode: the application and reply
    /// cache from `snapshot` (the records of the latest whole snapshot the binding
    /// persisted, in order; empty if none), then `log` replayed in write order (possibly
    /// compacted): acceptor records restore the promise, votes, truncation point and
    /// ballots; executed batches after the snapshot are executed again. `app` is the
    /// application's initial state. Empty inputs are a first start.
    ///
    /// An executed batch is executed again when it is the next operation; one further on
    /// (after a snapshot that was required but never persisted, or one set aside as
    /// damaged) is skipped, as its state cannot be rebuilt here, and one already covered is
    /// skipped too. The replica then catches up from its peers from where replay stops.
    /// Every record is validated against the protocol's bounds and the records before it;
    /// the first bad one is reported and no replica is returned.
    ///
    /// A log without an acceptor record (nothing stored, or only executed state: the
    /// replica never took part since it last started without state) recovers to a
    /// rejoining replica with `nonce`, as [`Replica::new_rejoining`].
    pub fn recover<'s, 'l, S, L>(
        config: RslConfig<R>,
        me: usize,
        app: A,
        now: Instant,
        nonce: u64,
        snapshot: S,
        log: L,
    ) -> Result<Self, RecoverError>
    where
        S: IntoIterator<Item = &'s [u8]>,
        L: IntoIterator<Item = &'l [u8]>,
    {
        let mut recovery = Recovery::new(config, me, app, now)?;
        for bytes in snapshot {
            recovery.snapshot_piece(bytes)?;
        }
        for bytes in log {
            recovery.log_record(bytes)?;
        }
        recovery.finish(nonce)
    }

    /// Recovery: one piece of the stored snapshot.
    fn restore_piece(&mut self, part: SupplyPart<'_>) -> Result<Progress, RecoverError> {
        if let SupplyPart::App { id, .. } | SupplyPart::Cache { id, .. } = part {
            if id.opn == 0 {
                return Ok(Progress::Ignored); // The initial state: nothing to restore.
            }
        }
        match self.transfer.receive(self.me, part, self.executor.ops_complete) {
            Progress::Corrupt => Err(RecoverError::Snapshot("the application refused a piece")),
            Progress::Ignored => Err(RecoverError::Snapshot("a piece out of order or of another snapshot")),
            p => Ok(p),
        }
    }

    /// Recovery: the stored snapshot is whole; install it.
    fn restore_snapshot(&mut self) -> Result<(), RecoverError> {
        let id = self
            .transfer
            .install(&mut self.executor)
            .map_err(|_| RecoverError::Snapshot("the application refused it"))?;
        self.frozen.take(&self.executor);
        self.retained.reset(id.opn);
        Ok(())
    }

    /// Recovery: an executed batch's bounds.
    fn check_batch(&self, bal: Ballot, batch: &[u8]) -> Result<(), &'static str> {
        let bounded = batch.len() <= self.config.max_batch_bytes()
            && batch::validate(batch, self.config.params.max_batch_size).is_ok();
        match bal.is_valid_for(self.config.n()) && bounded {
            true => Ok(()),
            false => Err("executed batch malformed, too large, or of an invalid ballot"),
        }
    }

    /// Recovery: one acceptor record.
    fn restore_acceptor(&mut self, r: &AcceptorRecord<'_>) -> Result<(), &'static str> {
        let n = self.config.n();
        if !r.max_bal.is_valid_for(n) && r.max_bal != Ballot::default() {
            return Err("promise names a replica outside the configuration");
        }
        if r.max_ballot_sent_1a != Ballot::default() && usize::from(r.max_ballot_sent_1a.proposer) != self.me {
            return Err("proposer ballot belongs to another replica");
        }
        if let Some(v) = r.vote {
            if !v.bal.is_valid_for(n) || v.bal > r.max_bal {
                return Err("vote ballot invalid or above the promise");
            }
            let max_bytes = self.config.max_batch_bytes();
            if v.batch.0.len() > max_bytes || batch::validate(v.batch.0, self.config.params.max_batch_size).is_err() {
                return Err("vote batch malformed or too large");
            }
            self.acceptor.restore_vote(v.bal, v.opn, v.batch.0, self.config.params.max_log_length)?;
        }
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
    fn catch_up_after_recovery(&mut self, now: Instant) {
        self.note_target(self.acceptor.log_truncation_point, now);
    }
}

/// A replica rebuilt one record at a time: [`Replica::recover`] for a binding that reads
/// its storage record by record into one buffer (a flash queue on a microcontroller cannot
/// hold the whole log in RAM). Feed the snapshot's pieces ([`Recovery::snapshot_piece`]),
/// then the log ([`Recovery::log_record`]), then [`Recovery::finish`]; the rules and errors
/// are [`Replica::recover`]'s. After an error the recovery is spent: drop it.
pub struct Recovery<
    A: App,
    const R: usize,
    const W: usize,
    const D: usize,
    const QB: usize,
    const C: usize,
    const RB: usize,
    const TB: usize,
> {
    replica: Replica<A, R, W, D, QB, C, RB, TB>,
    now: Instant,
    /// Records taken so far (snapshot pieces, then log records): the index errors name.
    record: usize,
    /// The state transfer's progress after the last snapshot piece.
    staged: Option<Progress>,
    /// The snapshot was installed (or found absent): only log records from here on.
    snapshot_done: bool,
    acceptor_records: usize,
}

impl<
        A: App,
        const R: usize,
        const W: usize,
        const D: usize,
        const QB: usize,
        const C: usize,
        const RB: usize,
        const TB: usize,
    > Recovery<A, R, W, D, QB, C, RB, TB>
{
    /// Replica `me` of `config` about to be rebuilt at `now`; `app` is the application's
    /// initial state.
    pub fn new(config: RslConfig<R>, me: usize, app: A, now: Instant) -> Result<Self, RecoverError> {
        let replica = Replica::new(config, me, app, now)?;
        Ok(Recovery { replica, now, record: 0, staged: None, snapshot_done: false, acceptor_records: 0 })
    }

    /// The next piece of the stored snapshot (pieces come before every log record).
    pub fn snapshot_piece(&mut self, bytes: &[u8]) -> Result<(), RecoverError> {
        let record = self.record;
        if self.snapshot_done {
            return Err(RecoverError::Inconsistent { record, reason: "a snapshot piece after the log began" });
        }
        let r: DurableRecord<'_> =
            wire::decode(Protocol::Durable, bytes).map_err(|error| RecoverError::Undecodable { record, error })?;
        let DurableRecord::Snapshot(part) = r else {
            return Err(RecoverError::Inconsistent { record, reason: "a snapshot holds a record of another kind" });
        };
        self.staged = Some(self.replica.restore_piece(part)?);
        self.record += 1;
        Ok(())
    }

    /// The next log record, in write order (possibly compacted).
    pub fn log_record(&mut self, bytes: &[u8]) -> Result<(), RecoverError> {
        self.end_snapshot()?;
        let record = self.record;
        let bad = |reason| RecoverError::Inconsistent { record, reason };
        let r: DurableRecord<'_> =
            wire::decode(Protocol::Durable, bytes).map_err(|error| RecoverError::Undecodable { record, error })?;
        let replica = &mut self.replica;
        match r {
            DurableRecord::Acceptor(a) => {
                replica.restore_acceptor(&a).map_err(bad)?;
                self.acceptor_records += 1;
            }
            DurableRecord::Executed { opn, bal, batch } => {
                replica.check_batch(bal, batch.0).map_err(bad)?;
                if opn == replica.executor.ops_complete {
                    let (_, mut exec) = replica.execution();
                    exec.run(bal, batch.0, None);
                }
            }
            DurableRecord::Snapshot(_) => return Err(bad("a snapshot piece in the log")),
        }
        replica.check_invariants().map_err(bad)?;
        self.record += 1;
        Ok(())
    }

    /// Operations the replica being rebuilt has executed so far.
    pub fn ops_complete(&self) -> u64 {
        self.replica.executor.ops_complete
    }

    /// The rebuilt replica, which then catches up from its peers. With no acceptor record
    /// taken it rejoins with `nonce`, as [`Replica::new_rejoining`].
    pub fn finish(mut self, nonce: u64) -> Result<Replica<A, R, W, D, QB, C, RB, TB>, RecoverError> {
        self.end_snapshot()?;
        let mut replica = self.replica;
        let ops = replica.executor.ops_complete;
        replica.learner.forget_below(ops);
        replica.journal = Journal::durable_at(ops);
        replica.acceptor.record_checkpoint(replica.me, ops);
        replica.catch_up_after_recovery(self.now);
        if self.acceptor_records == 0 {
            replica.rejoin = Some(crate::rsl::rejoin::Rejoin::new(nonce.max(1), self.now));
        }
        Ok(replica)
    }

    /// Installs the snapshot once its pieces are all in (a no-op the second time).
    fn end_snapshot(&mut self) -> Result<(), RecoverError> {
        if self.snapshot_done {
            return Ok(());
        }
        self.snapshot_done = true;
        match self.staged {
            None | Some(Progress::Ignored) => Ok(()),
            Some(Progress::Complete) => self.replica.restore_snapshot(),
            Some(_) => Err(RecoverError::Snapshot("its records stop before its end")),
        }
    }
}

#[cfg(test)]
mod tests;
