//! Catching up: noticing that decisions this replica misses are gone from the log, asking
//! another replica for its state, supplying state in bounded chunks, and installing it.

use super::Replica;
use crate::emit;
use crate::endpoint::Endpoint;
use crate::outbox::Outbox;
use crate::rsl::app::App;
use crate::rsl::msg::{RslMsg, SupplyPart};
use crate::rsl::proposer::Phase;
use crate::rsl::state_transfer::{self, SnapshotId, STATE_CHUNK_BYTES, SUPPLY_OVERHEAD_BYTES};
use crate::stats::Stats;
use crate::time::Instant;
use crate::wire::{self, Bytes, Protocol};

impl<A: App, const R: usize, const W: usize, const D: usize, const QB: usize, const C: usize, const RB: usize>
    Replica<A, R, W, D, QB, C, RB>
{
    /// A truncation point past our execution means the decisions we miss are gone: fetch state.
    pub(super) fn note_target(&mut self, opn: u64, now: Instant) {
        if opn > self.transfer.target_opn {
            self.transfer.target_opn = opn;
            if self.transfer.needed(self.executor.ops_complete) && self.transfer.incoming.is_none() {
                self.transfer.retry_at = now;
            }
        }
    }

    /// How long the log may take to bring a replica up to a point another replica reached.
    pub(super) fn lag_grace_ms(&self) -> u64 {
        self.config.params.retransmit_period_ms.saturating_mul(2)
    }

    /// Another replica has executed past this one. The log may never bring this replica
    /// there: acceptors truncate up to the quorum-th highest checkpoint, followers without
    /// waiting for anyone, and a leader re-sends 2a only for votes its own acceptor holds.
    /// Found by the simulator's catch-up check: a leader whose 2bs were lost stayed behind
    /// its truncating followers for good, as did a follower behind a quorum's truncation, and
    /// in 5-replica clusters with crashes, replicas whose missing votes only the executing
    /// replicas held. The log gets [`Replica::lag_grace_ms`] to close the gap, plenty for a
    /// replica a round trip behind; a point someone reached longer ago than that is fetched
    /// by state transfer (from a replica known to have it).
    pub(super) fn watch_lag(&mut self, now: Instant) {
        let ops = self.executor.ops_complete;
        if let Some((opn, since)) = self.transfer.behind {
            if ops >= opn {
                self.transfer.behind = None;
            } else if now >= since.plus_ms(self.lag_grace_ms()) {
                self.transfer.behind = None;
                self.note_target(opn, now);
            }
        }
        // This replica's own checkpoint never exceeds its `ops_complete`: a larger maximum
        // is another replica's.
        let ahead = self.acceptor.max_checkpoint();
        if self.transfer.behind.is_none() && ahead > ops && !self.transfer.needed(ops) {
            self.transfer.behind = Some((ahead, now));
        }
    }

    pub(super) fn install_state(&mut self) {
        match self.transfer.install(&mut self.executor) {
            Ok(id) => {
                self.learner.forget_below(id.opn);
                self.acceptor.record_checkpoint(self.me, id.opn);
                if self.proposer.phase == Phase::Two && self.proposer.next_opn < id.opn {
                    self.proposer.next_opn = id.opn;
                }
            }
            Err(_) => Stats::bump(&mut self.stats.invalid_messages),
        }
    }

    pub(super) fn request_state(&mut self, now: Instant, out: &mut Outbox<'_>) {
        let target = self.transfer.target_opn;
        let n = self.config.n();
        self.transfer.retry_at = now.plus_ms(self.config.params.retransmit_period_ms);
        // Keep asking the replica that is answering; on a stall rotate among replicas known
        // to have executed far enough (any other replica if none is known).
        let supplier = match self.transfer.on_request(2 * n as u32) {
            Some(s) => s,
            None => {
                let attempt = self.transfer.attempts as usize;
                self.transfer.attempts = self.transfer.attempts.wrapping_add(1);
                let candidates = (0..n).filter(|&r| r != self.me && self.acceptor.checkpoint_of(r) >= target);
                match candidates.clone().count() {
                    0 => (self.me + 1 + attempt % (n - 1).max(1)) % n,
                    count => candidates.clone().nth(attempt % count).unwrap_or(self.me),
                }
            }
        };
        if supplier == self.me {
            return;
        }
        let (app_offset, cache_index, resume_digest) = self.transfer.resume_point();
        let msg = RslMsg::AppStateRequest {
            bal: self.election.current_view,
            opn: target.max(self.executor.ops_complete + 1),
            app_offset,
            cache_index,
            resume_digest,
        };
        let dst = self.config.replicas[supplier];
        emit::send(out, &mut self.stats, Protocol::Rsl, self.config.params.max_datagram_bytes, dst, &msg);
    }

    /// Emits this replica's snapshot to `dst` from the requested offsets, all in this step.
    pub(super) fn supply_state(
        &mut self,
        dst: Endpoint,
        app_offset: u64,
        cache_index: u32,
        resume_digest: u64,
        out: &mut Outbox<'_>,
    ) {
        let id = state_transfer::snapshot_id(&self.executor);
        let (mut offset, mut index) = match resume_digest == id.resume_token() {
            true => (app_offset.min(id.app_len), cache_index.min(id.cache_entries)),
            false => (0, 0),
        };
        let max = self.config.params.max_datagram_bytes;
        let room = max - SUPPLY_OVERHEAD_BYTES;
        let mut budget = self.config.params.state_chunks_per_step;
        let mut chunk = [0u8; STATE_CHUNK_BYTES];
        while offset < id.app_len && budget > 0 {
            let take = room.min(STATE_CHUNK_BYTES);
            let n = self.executor.app.snapshot_read(offset, &mut chunk[..take]);
            if n == 0 {
                return;
            }
            let msg = supply_msg(&id, SupplyPart::App { offset, bytes: Bytes(&chunk[..n]) });
            if !emit::send(out, &mut self.stats, Protocol::Rsl, max, dst, &msg) {
                return;
            }
            offset += n as u64;
            budget -= 1;
        }
        let mut entries: heapless::Vec<u8, D> = heapless::Vec::new();
        while index < id.cache_entries && budget > 0 {
            entries.clear();
            let first = index;
            while let Some(e) = self.executor.reply_cache.wire(index as usize) {
                let before = entries.len();
                if wire::append(&mut entries, &e).is_err() || entries.len() > room {
                    entries.truncate(before);
                    break;
                }
                index += 1;
            }
            if index == first {
                return; // An entry larger than a datagram: ruled out by `new`'s RB check.
            }
            let msg = supply_msg(&id, SupplyPart::Cache { index: first, entries: Bytes(&entries) });
            if !emit::send(out, &mut self.stats, Protocol::Rsl, max, dst, &msg) {
                return;
            }
            budget -= 1;
        }
    }
}

fn supply_msg<'a>(id: &SnapshotId, part: SupplyPart<'a>) -> RslMsg<'a> {
    RslMsg::AppStateSupply {
        bal: id.bal,
        opn: id.opn,
        digest: id.digest,
        app_len: id.app_len,
        cache_entries: id.cache_entries,
        executed_digest: id.executed_digest,
        part,
    }
}
