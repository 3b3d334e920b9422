//! The durable binding's side of a replica: the records to append after every step, what
//! the binding confirms durable, and the snapshot it persists (see [`crate::rsl::durable`]).

use super::Replica;
use crate::rsl::app::App;
use crate::rsl::config::RslConfig;
use crate::rsl::durable::DurableRecord;
use crate::rsl::membership::{self, MAX_ENDPOINT_BYTES};
use crate::rsl::msg::Vote;
use crate::rsl::snapshot::SnapshotId;
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
    /// The next record a durable binding must append to its log, encoded into `buf` (a
    /// buffer of `D + DURABLE_RECORD_OVERHEAD_BYTES` holds any record); `None` once every
    /// record was handed out (always, for an in-memory replica). Call it after every step
    /// until `None`. Acceptor records come first; sync them before sending any datagram the
    /// step marked ([`crate::Outbox::waits_for_sync`]). Executed batches follow; they need
    /// no sync before sending, only before [`Replica::persisted`] is told about them.
    ///
    /// An encoding error (a buffer too small) hands nothing out.
    pub fn next_record<'b>(&mut self, buf: &'b mut [u8]) -> Option<Result<&'b [u8], EncodeError>> {
        if !self.journal.durable {
            return None;
        }
        // The incarnation first: nothing may reveal it before it is durable.
        if let Some(nonce) = self.journal.incarnation_pending {
            let record = DurableRecord::Incarnation { nonce };
            return Some(self.hand_out(&record, buf).inspect(|_| self.journal.incarnation_pending = None));
        }
        // Then the epoch it moved to, once the batches executed below that epoch's start
        // are out: every record after it is the new epoch's.
        if self.journal.epoch_pending {
            let (config, start) = self.epoch_config();
            if self.journal.handed_out >= self.executor.ops_complete.min(start) {
                let mut list = [0u8; 64 * MAX_ENDPOINT_BYTES];
                let record = epoch_record(config, start, &mut list[..R * MAX_ENDPOINT_BYTES]);
                return Some(self.hand_out(&record, buf).inspect(|_| self.journal.epoch_pending = false));
            }
            // Votes of the old epoch may never be handed out (`Journal::enter_epoch`; a
            // retired replica keeps that acceptor and executes nothing after its epoch
            // record): these batches are written whole.
            return self.next_executed(buf, false);
        }
        // Then whom it was born with, ahead of the acceptor record of its birth.
        if self.journal.born_pending != 0 {
            let r = self.journal.born_pending.trailing_zeros() as usize;
            let bit = 1u64 << r;
            let nonce = self.born_with.get(r).copied().unwrap_or(0);
            let record = DurableRecord::BornWith { replica: r as u8, nonce };
            return Some(self.hand_out(&record, buf).inspect(|_| self.journal.born_pending &= !bit));
        }
        while self.journal.acceptor_dirty {
            if self.journal.votes == 0 {
                let header = DurableRecord::Acceptor(self.acceptor_record(None));
                return Some(self.hand_out(&header, buf).inspect(|_| self.journal.acceptor_dirty = false));
            }
            let slot = self.journal.votes.trailing_zeros() as usize;
            let bit = 1u64 << slot;
            // A vote truncated away since it was cast is no longer needed. (Votes held are
            // in one log window, so they restore in any order.)
            let Some(v) = self.acceptor.vote_in_slot(slot) else {
                self.journal.votes &= !bit;
                continue;
            };
            let vote = Vote { opn: v.opn, bal: v.bal, batch: Bytes(&v.batch) };
            let record = DurableRecord::Acceptor(self.acceptor_record(Some(vote)));
            let encoded = wire::encode(Protocol::Durable, &record, buf);
            if encoded.is_ok() {
                self.journal.votes &= !bit;
                self.journal.acceptor_dirty = self.journal.votes != 0;
            }
            return Some(encoded.map(|n| &buf[..n]));
        }
        self.next_executed(buf, true)
    }

    /// The next executed batch to hand out, if any; as a reference to this replica's vote
    /// when `by_vote` allows and the vote holds the same batch.
    fn next_executed<'b>(&mut self, buf: &'b mut [u8], by_vote: bool) -> Option<Result<&'b [u8], EncodeError>> {
        let opn = self.journal.handed_out;
        if opn >= self.executor.ops_complete {
            return None;
        }
        let Some(e) = self.retained.get(opn) else {
            // Dropped before it was handed out (`retain` prevents it): the frozen snapshot
            // replaces it.
            self.journal.skip_to(self.frozen.id.opn.max(opn + 1).min(self.executor.ops_complete));
            return None;
        };
        // A batch this replica voted for is in the log already, as that vote: with every
        // acceptor record out, a replay holds the same vote when it reaches this record.
        debug_assert!(!by_vote || !self.journal.acceptor_dirty, "acceptor records go first");
        let voted = by_vote && self.acceptor.vote_at(opn).is_some_and(|v| v.batch.as_slice() == e.batch);
        let record = match voted {
            true => DurableRecord::ExecutedVote { opn, bal: e.bal },
            false => DurableRecord::Executed { opn, bal: e.bal, batch: Bytes(e.batch) },
        };
        let encoded = wire::encode(Protocol::Durable, &record, buf);
        if encoded.is_ok() {
            self.journal.handed_out += 1;
        }
        Some(encoded.map(|n| &buf[..n]))
    }

    /// The configuration and start of the epoch this replica is in, or of the one it retired
    /// into: what its epoch record says.
    pub(super) fn epoch_config(&self) -> (&RslConfig<R>, u64) {
        match &self.retired {
            Some(r) => (&r.next, r.start),
            None => (&self.config, self.epoch_start),
        }
    }

    fn hand_out<'b>(&self, record: &DurableRecord<'_>, buf: &'b mut [u8]) -> Result<&'b [u8], EncodeError> {
        wire::encode(Protocol::Durable, record, buf).map(|n| &buf[..n])
    }

    /// The mark to confirm with [`Replica::persisted`] once every record handed out so far
    /// is synced.
    pub fn durable_mark(&self) -> u64 {
        self.journal.handed_out
    }

    /// The binding synced every record handed out before it read `mark`
    /// ([`Replica::durable_mark`]): the checkpoint this replica reports may move there.
    pub fn persisted(&mut self, mark: u64) {
        // The acceptor records the new checkpoint at the next step, and truncates with it.
        self.journal.persisted(mark);
    }

    /// The binding persisted the whole snapshot `id` (read from [`Replica::frozen`]).
    pub fn snapshot_persisted(&mut self, id: SnapshotId) {
        self.journal.snapshot_persisted(id.opn);
    }

    /// A snapshot at this operation must be persisted before this replica's checkpoint
    /// moves on (after a snapshot was installed from another replica); the frozen snapshot
    /// is it, or a newer one that serves as well.
    pub fn snapshot_required(&self) -> Option<u64> {
        self.journal.required
    }

    /// Freezes a snapshot of the current state (what [`Replica::frozen`] returns from now
    /// on). A durable binding freezes one before it writes a snapshot, after taking every
    /// record: the snapshot then covers every record handed out so far (and a required
    /// one), so once it is persisted the log before it may go.
    pub fn freeze_snapshot(&mut self) {
        self.frozen.take(&self.executor);
    }
}

/// The epoch record of `config` starting at `start`, its replicas encoded into `list`
/// (`MAX_ENDPOINT_BYTES` per replica).
pub(super) fn epoch_record<'l, const R: usize>(
    config: &RslConfig<R>,
    start: u64,
    list: &'l mut [u8],
) -> DurableRecord<'l> {
    let used = membership::encode_replicas(&config.replicas, list).unwrap_or(0);
    DurableRecord::Epoch { epoch: config.epoch, start, replicas: Bytes(&list[..used]) }
}
