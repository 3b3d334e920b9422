//! Crash recovery: a durable replica started fresh ([`Replica::new_durable`]) or rebuilt
//! from its latest snapshot and its log ([`Replica::recover`]), and the acceptor's
//! compacted image a binding may replace its acceptor records with (see
//! [`crate::rsl::durable`] for what is durable and why).

use super::journal::epoch_record;
use super::Replica;
use crate::config::ConfigError;
use crate::rsl::app::App;
use crate::rsl::ballot::Ballot;
use crate::rsl::batch;
use crate::rsl::config::RslConfig;
use crate::rsl::durable::{AcceptorRecord, DurableRecord, RecoverError};
use crate::rsl::journal::Journal;
use crate::rsl::membership::{self, EarlierEpochs, MAX_EARLIER_EPOCHS, MAX_ENDPOINT_BYTES};
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
        replica.journal.incarnation_pending = Some(nonce.max(1));
        // A replica started for a later epoch (a new machine joining it) says which: its
        // log is that epoch's from the first record on.
        replica.journal.epoch_pending = replica.config.epoch > 0;
        Ok(replica)
    }

    /// How many records [`Replica::durable_image_record`] yields: a log of exactly these
    /// records replays to the current durable state, so a binding may replace every
    /// incarnation, born-with and acceptor record with them. While rejoining: the
    /// incarnation record alone (a log without acceptor records recovers to a replica
    /// rejoining as that incarnation). Else: whom it was born with, the acceptor's header,
    /// then one record per held vote.
    pub fn durable_image_len(&self) -> usize {
        let epoch = self.image_epoch_records();
        match (self.retired.is_some(), self.rejoin.is_some()) {
            (true, _) => epoch,
            (false, true) => epoch + 1,
            (false, false) => epoch + self.born_with_count() + 1 + self.acceptor().vote_count(),
        }
    }

    /// The records the image starts with after a membership change: the epoch record, then
    /// the earlier epochs' identities if it knows any; none before one.
    fn image_epoch_records(&self) -> usize {
        match self.config.epoch > 0 || self.retired.is_some() {
            true => 1 + usize::from(!self.earlier_epochs.is_empty()),
            false => 0,
        }
    }

    /// The replicas this one was born with, and their incarnations then.
    pub(super) fn born_with_entries(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.born_with.iter().enumerate().filter(|(_, &b)| b != 0).map(|(r, &b)| (r, b))
    }

    fn born_with_count(&self) -> usize {
        self.born_with_entries().count()
    }

    /// Record `index` of the compacted image (`index < durable_image_len()`): after a
    /// membership change the epoch record first, then as described there.
    pub fn durable_image_record<'b>(&self, index: usize, buf: &'b mut [u8]) -> Result<&'b [u8], EncodeError> {
        let epoch = self.image_epoch_records();
        if index == 1 && index < epoch {
            let mut ids = [0u8; 4 * MAX_EARLIER_EPOCHS];
            let used = self.earlier_epochs.encode(&mut ids);
            let record = DurableRecord::EarlierEpochs { ids: Bytes(&ids[..used]) };
            let len = wire::encode(Protocol::Durable, &record, buf)?;
            return Ok(&buf[..len]);
        }
        if index < epoch {
            let (config, start) = self.epoch_config();
            let mut list = [0u8; 64 * MAX_ENDPOINT_BYTES];
            let record = epoch_record(config, start, &mut list[..R * MAX_ENDPOINT_BYTES]);
            let len = wire::encode(Protocol::Durable, &record, buf)?;
            return Ok(&buf[..len]);
        }
        if self.retired.is_some() {
            return Err(EncodeError::BufferFull);
        }
        let index = index - epoch;
        let record = match (&self.rejoin, index) {
            (Some(rejoin), 0) => DurableRecord::Incarnation { nonce: rejoin.nonce },
            (Some(_), _) => return Err(EncodeError::BufferFull),
            (None, i) if i < self.born_with_count() => {
                let Some((r, nonce)) = self.born_with_entries().nth(i) else {
                    return Err(EncodeError::BufferFull);
                };
                DurableRecord::BornWith { replica: r as u8, nonce }
            }
            (None, i) => {
                let vote = match i - self.born_with_count() {
                    0 => None,
                    v => match self.acceptor().votes().nth(v - 1) {
                        Some(v) => Some(Vote { opn: v.opn, bal: v.bal, batch: Bytes(&v.batch) }),
                        None => return Err(EncodeError::BufferFull),
                    },
                };
                DurableRecord::Acceptor(self.acceptor_record(vote))
            }
        };
        let len = wire::encode(Protocol::Durable, &record, buf)?;
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
    /// rejoining replica: as the incarnation its log names, else with `nonce` (then handed
    /// out as its first record), as [`Replica::new_durable`].
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
        // Rebuilt in place (not through `Recovery`): a server's replica is megabytes, and a
        // debug build copies every value it moves.
        let mut replica = Replica::new(config, me, app, now)?;
        let mut replay = Replay::at(now);
        for bytes in snapshot {
            replica.replay_snapshot_piece(&mut replay, bytes)?;
        }
        for bytes in log {
            replica.replay_log_record(&mut replay, bytes)?;
        }
        replica.finish_replay(&mut replay, now, nonce)?;
        Ok(replica)
    }

    /// Recovery: the next piece of the stored snapshot.
    fn replay_snapshot_piece(&mut self, replay: &mut Replay, bytes: &[u8]) -> Result<(), RecoverError> {
        let record = replay.record;
        if replay.snapshot_done {
            return Err(RecoverError::Inconsistent { record, reason: "a snapshot piece after the log began" });
        }
        let r: DurableRecord<'_> =
            wire::decode(Protocol::Durable, bytes).map_err(|error| RecoverError::Undecodable { record, error })?;
        let DurableRecord::Snapshot(part) = r else {
            return Err(RecoverError::Inconsistent { record, reason: "a snapshot holds a record of another kind" });
        };
        replay.staged = Some(self.restore_piece(part)?);
        replay.record += 1;
        Ok(())
    }

    /// Recovery: the next log record.
    fn replay_log_record(&mut self, replay: &mut Replay, bytes: &[u8]) -> Result<(), RecoverError> {
        self.end_replayed_snapshot(replay)?;
        let record = replay.record;
        let bad = |reason| RecoverError::Inconsistent { record, reason };
        let r: DurableRecord<'_> =
            wire::decode(Protocol::Durable, bytes).map_err(|error| RecoverError::Undecodable { record, error })?;
        match r {
            DurableRecord::Acceptor(a) => {
                self.restore_acceptor(&a).map_err(bad)?;
                replay.acceptor_records += 1;
            }
            DurableRecord::Executed { opn, bal, batch } => {
                self.check_batch(bal, batch.0).map_err(bad)?;
                self.replay_executed(replay, opn, bal, Some(batch.0))?;
            }
            DurableRecord::ExecutedVote { opn, bal } => {
                if !bal.is_valid_for(self.config.n()) {
                    return Err(bad("executed vote of an invalid ballot"));
                }
                self.replay_executed(replay, opn, bal, None)?;
            }
            DurableRecord::Epoch { epoch, start, replicas } => self.replay_epoch(replay, epoch, start, replicas.0)?,
            // A compacted image's, after its epoch record: what the epochs it dropped said.
            DurableRecord::EarlierEpochs { ids } => {
                let earlier = EarlierEpochs::decode(ids.0).ok_or(bad("malformed earlier epochs"))?;
                if earlier.contains(self.cluster) {
                    return Err(bad("an earlier epoch is the replica's own"));
                }
                self.earlier_epochs = earlier;
            }
            DurableRecord::Snapshot(_) => return Err(bad("a snapshot piece in the log")),
            DurableRecord::Incarnation { nonce } => {
                if nonce == 0 {
                    return Err(bad("incarnation nonce 0"));
                }
                replay.incarnation = Some(nonce);
            }
            DurableRecord::BornWith { replica: r, nonce } => {
                let n = self.config.n();
                let slot = self.born_with.get_mut(usize::from(r)).filter(|_| usize::from(r) < n);
                *slot.ok_or(bad("born with a replica outside the configuration"))? = nonce;
            }
        }
        self.check_invariants().map_err(bad)?;
        replay.record += 1;
        Ok(())
    }

    /// Recovery: operation `opn`, decided in `bal`, was executed with `batch`, or with this
    /// replica's vote for it when `None`. Executed again when it is the next operation.
    fn replay_executed(
        &mut self,
        replay: &Replay,
        opn: u64,
        bal: Ballot,
        batch: Option<&[u8]>,
    ) -> Result<(), RecoverError> {
        let bad = |reason| RecoverError::Inconsistent { record: replay.record, reason };
        if self.retired.is_some() {
            return Err(bad("an executed batch after the replica retired"));
        }
        if opn != self.executor.ops_complete {
            return Ok(());
        }
        let mut decision = self.decision();
        let (_, acceptor, mut exec) = self.execution_parts();
        let batch = match batch {
            Some(batch) => batch,
            None => match acceptor.vote_at(opn) {
                Some(vote) => vote.batch.as_slice(),
                None => return Err(bad("an executed vote the log does not hold")),
            },
        };
        if exec.run(bal, batch, None, &mut decision) {
            // A stop-sign that retired this replica (one it entered the next epoch with is
            // never written: the snapshot at the start replaces it).
            let Some(next) = decision.next else {
                return Err(bad("an epoch ended without its next replicas"));
            };
            let next = self.config.next_epoch(next);
            if self.move_to_epoch(replay.now, next, opn.saturating_add(1)) {
                return Err(bad("an executed stop-sign of an epoch this replica entered"));
            }
        }
        Ok(())
    }

    /// Recovery: an epoch record. The first of an epoch moves the replica there (after the
    /// state restored so far, which may be past the epoch's start); a repeat (a compacted
    /// image's, or one after the stop-sign that retired it) must say the same.
    fn replay_epoch(&mut self, replay: &Replay, epoch: u64, start: u64, replicas: &[u8]) -> Result<(), RecoverError> {
        let bad = |reason| RecoverError::Inconsistent { record: replay.record, reason };
        let replicas = membership::replicas_of::<R>(replicas).map_err(|_| bad("an epoch's replicas are malformed"))?;
        let next = self.config.at_epoch(epoch, replicas);
        let (current, current_start) = self.epoch_config();
        if epoch == current.epoch && (self.retired.is_some() || epoch > 0) {
            if *current != next || (self.retired.is_some() && current_start != start) {
                return Err(bad("two epoch records of one epoch disagree"));
            }
            // A replica started for its epoch knows only where its first state was (at or
            // past the epoch's start; unknown before it held any): the earliest any record
            // or the restored snapshot says.
            if self.retired.is_none() && start < self.epoch_start {
                self.epoch_start = start;
            }
            return Ok(());
        }
        let known_start = self.epoch_start != membership::EPOCH_START_UNKNOWN;
        if self.retired.is_some()
            || epoch <= self.config.epoch
            || start == membership::EPOCH_START_UNKNOWN
            || (known_start && start < self.epoch_start)
        {
            return Err(bad("an epoch record goes back, or follows the replica's retirement"));
        }
        self.move_to_epoch(replay.now, next, start);
        Ok(())
    }

    /// Recovery: installs the snapshot once its pieces are all in (a no-op the second time).
    fn end_replayed_snapshot(&mut self, replay: &mut Replay) -> Result<(), RecoverError> {
        if replay.snapshot_done {
            return Ok(());
        }
        replay.snapshot_done = true;
        match replay.staged {
            None | Some(Progress::Ignored) => Ok(()),
            Some(Progress::Complete) => self.restore_snapshot(),
            Some(_) => Err(RecoverError::Snapshot("its records stop before its end")),
        }
    }

    /// Recovery done: the journal, the checkpoint, catching up, and rejoining if the log
    /// held no acceptor record.
    fn finish_replay(&mut self, replay: &mut Replay, now: Instant, nonce: u64) -> Result<(), RecoverError> {
        self.end_replayed_snapshot(replay)?;
        let ops = self.executor.ops_complete;
        self.learner.forget_below(ops);
        self.journal = Journal::durable_at(ops);
        self.acceptor.record_checkpoint(self.me, ops);
        self.catch_up_after_recovery(now);
        if replay.acceptor_records == 0 && self.retired.is_none() {
            // Never promised or voted since it started without state: the same incarnation
            // (a peer may have been born with it). With no record of one, a new one, made
            // durable before it is revealed.
            let nonce = replay.incarnation.unwrap_or(nonce.max(1));
            self.rejoin = Some(crate::rsl::rejoin::Rejoin::new(nonce, now));
            self.journal.incarnation_pending = replay.incarnation.is_none().then_some(nonce);
        }
        Ok(())
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
        // As when it was installed: a replica started for its epoch holds state of it.
        if self.epoch_start == membership::EPOCH_START_UNKNOWN {
            self.epoch_start = id.opn;
        }
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

/// Where a replay stands: what [`Replica::recover`] and [`Recovery`] carry from record to
/// record.
#[derive(Clone, Copy, Debug)]
struct Replay {
    /// The clock reading the replica is rebuilt at.
    now: Instant,
    /// Records taken so far (snapshot pieces, then log records): the index errors name.
    record: usize,
    /// The state transfer's progress after the last snapshot piece.
    staged: Option<Progress>,
    /// The snapshot was installed (or found absent): only log records from here on.
    snapshot_done: bool,
    acceptor_records: usize,
    /// The incarnation a log without acceptor records rejoins as.
    incarnation: Option<u64>,
}

impl Replay {
    /// Nothing taken yet, rebuilding at `now`.
    fn at(now: Instant) -> Self {
        Replay { now, record: 0, staged: None, snapshot_done: false, acceptor_records: 0, incarnation: None }
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
    replay: Replay,
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
        Ok(Recovery { replica, now, replay: Replay::at(now) })
    }

    /// The next piece of the stored snapshot (pieces come before every log record).
    pub fn snapshot_piece(&mut self, bytes: &[u8]) -> Result<(), RecoverError> {
        self.replica.replay_snapshot_piece(&mut self.replay, bytes)
    }

    /// The next log record, in write order (possibly compacted).
    pub fn log_record(&mut self, bytes: &[u8]) -> Result<(), RecoverError> {
        self.replica.replay_log_record(&mut self.replay, bytes)
    }

    /// Operations the replica being rebuilt has executed so far.
    pub fn ops_complete(&self) -> u64 {
        self.replica.executor.ops_complete
    }

    /// The rebuilt replica, which then catches up from its peers. With no acceptor record
    /// taken it rejoins: as the incarnation the log names, else with `nonce`.
    pub fn finish(mut self, nonce: u64) -> Result<Replica<A, R, W, D, QB, C, RB, TB>, RecoverError> {
        self.replica.finish_replay(&mut self.replay, self.now, nonce)?;
        Ok(self.replica)
    }
}

#[cfg(test)]
mod tests;
