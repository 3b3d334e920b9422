//! The durable binding, crash and restart: after every step each replica's records go to its
//! simulated disk and are synced as a binding must: the datagrams the engine marked (1a, 1b,
//! 2b) leave only after a sync, which happens at once or completes later (as io-std's sync
//! thread does, the marked datagrams held meanwhile and the others sent); records nothing
//! waits for are synced lazily. Snapshots are written over simulated time and replace the
//! log they cover; a crash loses what was not synced (and a snapshot being written, and the
//! datagrams held for a sync), a power cut crashes every replica at once, and a restart
//! recovers from the disk.
//! The planted binding bugs (`SendBeforeSync`, `EarlyCheckpoint`, `TornSnapshot`,
//! `AmnesiacRestart`) act here.

use fleet_engine::rsl::durable::{snapshot_record, DURABLE_RECORD_OVERHEAD_BYTES};
use fleet_engine::rsl::snapshot::SnapshotPos;
use fleet_engine::rsl::{Ballot, DurableRecord, RecoverError, Step};
use fleet_proofs::checkers::rsl::RslEvent;
use fleet_proofs::checkers::{Checker, Violation};

use super::plants::Plant;
use super::{RslSim, SimApp, SimReplica, SpecKv};
use crate::disk::SnapshotWrite;
use crate::trace::TraceKind;

/// What a replica's durable acceptor state is: promise, truncation point, 1b reply counter,
/// votes and the proposer's ballot. A restart must bring back exactly this.
pub(super) type DurableView = (Ballot, u64, u64, Vec<(u64, Ballot, Vec<u8>)>, Ballot);

pub(super) fn durable_view(r: &SimReplica) -> DurableView {
    let a = r.acceptor();
    let votes = a.votes().map(|v| (v.opn, v.bal, v.batch.to_vec())).collect();
    (a.max_bal, a.log_truncation_point, a.replies_sent(), votes, r.proposer().max_ballot_sent_1a)
}

/// A replica's log gets a new snapshot (and drops what it covers) after this many records.
const COMPACT_AFTER_RECORDS: usize = 256;
const RECORD_BYTES: usize = 1472 + DURABLE_RECORD_OVERHEAD_BYTES;

/// A sync in progress: when it completes, and the marked datagrams waiting for it.
#[derive(Clone, Debug, Default)]
pub(super) struct PendingSync {
    due_us: u64,
    pub(super) held: Vec<(fleet_engine::Endpoint, Vec<u8>)>,
}

/// The longest a simulated sync takes to complete (µs).
const MAX_SYNC_US: u64 = 3_000;

/// Why a recovered acceptor state is not between the last synced one and the one at the
/// crash, if it is not: it must keep everything synced, and invent nothing.
fn recovered_between(synced: &DurableView, got: &DurableView, at_crash: &DurableView) -> Option<String> {
    let (lo, hi) = (synced, at_crash);
    if !(lo.0 <= got.0 && got.0 <= hi.0) {
        return Some(format!("promise {:?} outside [{:?}, {:?}]", got.0, lo.0, hi.0));
    }
    if !(lo.1 <= got.1 && got.1 <= hi.1) {
        return Some(format!("truncation point {} outside [{}, {}]", got.1, lo.1, hi.1));
    }
    if !(lo.2 <= got.2 && got.2 <= hi.2) {
        return Some(format!("1b reply counter {} outside [{}, {}]", got.2, lo.2, hi.2));
    }
    if !(lo.4 <= got.4 && got.4 <= hi.4) {
        return Some(format!("started ballot {:?} outside [{:?}, {:?}]", got.4, lo.4, hi.4));
    }
    for (opn, bal, batch) in lo.3.iter().filter(|v| v.0 >= got.1) {
        let kept = got.3.iter().find(|v| v.0 == *opn);
        match kept {
            Some((_, b, x)) if b > bal || (b == bal && x == batch) => {}
            _ => return Some(format!("synced vote at {opn} in {bal:?} lost (now {:?})", kept.map(|v| v.1))),
        }
    }
    None
}

fn decoded(record: &[u8]) -> Option<DurableRecord<'_>> {
    fleet_engine::wire::decode(fleet_engine::wire::Protocol::Durable, record).ok()
}

fn is_incarnation_record(record: &[u8]) -> bool {
    matches!(decoded(record), Some(DurableRecord::Incarnation { .. } | DurableRecord::BornWith { .. }))
}

fn is_acceptor_record(record: &[u8]) -> bool {
    matches!(decoded(record), Some(DurableRecord::Acceptor(_)))
}

/// What a replica was at its crash: its durable acceptor state, and the checkpoint it had
/// reported (a restart must come back at least there).
#[derive(Clone, Debug)]
pub(super) struct AtCrash {
    view: DurableView,
    checkpoint: u64,
}

impl RslSim {
    /// Crashes replica `i`: its memory is gone, its disk keeps what was synced (and some of
    /// what was not); a snapshot being written is lost. Sometimes (not in a power cut) its
    /// snapshot file is found damaged at the restart.
    pub fn crash(&mut self, i: usize) {
        self.crash_one(i, true);
    }

    fn crash_one(&mut self, i: usize, may_damage: bool) {
        if let Some(r) = self.replicas[i].take() {
            self.at_crash[i] = Some(AtCrash { view: durable_view(&r), checkpoint: r.checkpoint() });
            self.disks[i].crash(&mut self.rng);
            self.writing_ids[i] = None;
            self.paused_until[i] = 0;
            // Votes whose records were never synced are lost with them.
            self.unsynced_votes[i].clear();
            // Held for a sync that never completed: never sent.
            if let Some(p) = self.pending_syncs[i].take() {
                self.fault_counts.held_lost += p.held.len() as u64;
            }
            if may_damage && self.disks[i].snapshot.is_some() && self.rng.below(4) == 0 {
                self.disks[i].snapshot_damaged = true;
            }
        }
    }

    /// A power cut: every replica crashes at once.
    pub fn crash_all(&mut self) {
        for i in 0..self.replicas.len() {
            self.crash_one(i, false);
        }
    }

    /// Syncs replica `i`'s disk now: the replica is told, the checkers see its durable
    /// state, and the datagrams held for a pending sync leave.
    pub(super) fn sync_now(&mut self, i: usize) {
        let Some(r) = self.replicas[i].as_deref_mut() else { return };
        let mark = r.durable_mark();
        self.disks[i].sync();
        r.persisted(mark);
        self.report_durable(i);
        if let Some(pending) = self.pending_syncs[i].take() {
            let from = self.replica_eps[i];
            for (to, bytes) in pending.held {
                self.replica_sends(i, from, to, &bytes);
            }
        }
    }

    /// The earliest pending sync's completion time.
    pub(super) fn next_sync_due(&self) -> Option<u64> {
        // A frozen replica's sync thread is frozen too: its sync completes once it runs.
        let due = |(i, p): (usize, &Option<PendingSync>)| p.as_ref().map(|p| p.due_us.max(self.paused_until[i]));
        self.pending_syncs.iter().enumerate().filter_map(due).min()
    }

    /// Completes every pending sync due by now; true if one was.
    pub(super) fn complete_due_syncs(&mut self) -> bool {
        let due: Vec<usize> = (0..self.pending_syncs.len())
            .filter(|&i| self.pending_syncs[i].as_ref().is_some_and(|p| p.due_us <= self.now))
            .collect();
        for &i in &due {
            self.record(TraceKind::Synced(i));
            self.sync_now(i);
        }
        !due.is_empty()
    }

    /// The durable binding after replica `i`'s step, before its datagrams leave: append the
    /// records; when some datagram waits for them (`waiting`), sync now or start a sync that
    /// completes later (the marked datagrams are then held); otherwise sync lazily. Also
    /// writes snapshots. Returns whether the marked datagrams may leave now.
    pub(super) fn persist(&mut self, i: usize, step: Step, waiting: bool) -> bool {
        let _ = step;
        let plant = self.options.plant;
        let now = self.now;
        let Some(r) = self.replicas[i].as_deref_mut() else { return true };
        for v in r.acceptor().votes() {
            let cast = &mut self.unsynced_votes[i];
            if !cast.iter().any(|(opn, bal, _)| *opn == v.opn && *bal == v.bal) {
                cast.push((v.opn, v.bal, v.batch.to_vec()));
            }
        }
        let disk = &mut self.disks[i];
        let mut buf = vec![0u8; RECORD_BYTES];
        while let Some(rec) = r.next_record(&mut buf) {
            match rec {
                Ok(bytes) => disk.append(bytes),
                Err(e) => {
                    let v = Violation::new("invariant", "durable record fits", format!("replica {i}: {e:?}"));
                    self.violations.push(v);
                    return true;
                }
            }
        }
        let mut planted = false;
        let skip_sync = plant == Plant::SendBeforeSync && waiting && self.rng.below(2) == 0;
        planted |= skip_sync;
        if plant == Plant::EarlyCheckpoint && disk.has_unsynced() {
            r.persisted(r.durable_mark());
            planted = true;
        }
        let mut marked_may_go = true;
        if waiting && !skip_sync {
            if self.pending_syncs[i].is_some() {
                // The sync in flight finishes after these records: it covers them.
                marked_may_go = false;
            } else if self.rng.below(2) == 0 {
                self.sync_now(i);
            } else {
                let due_us = now + self.rng.range(20, MAX_SYNC_US);
                self.pending_syncs[i] = Some(PendingSync { due_us, held: Vec::new() });
                self.fault_counts.deferred_syncs += 1;
                marked_may_go = false;
            }
        } else if self.rng.below(4) == 0 {
            self.sync_now(i);
            marked_may_go = true;
        }
        let Some(r) = self.replicas[i].as_deref_mut() else { return marked_may_go };
        let disk = &mut self.disks[i];
        let mut sync_report = false;
        if disk.writing.as_ref().is_some_and(|w| now >= w.done_at_us) {
            disk.finish_snapshot();
            if let Some(id) = self.writing_ids[i].take() {
                r.snapshot_persisted(id);
            }
        }
        let grown = disk.log.len() >= COMPACT_AFTER_RECORDS;
        if disk.writing.is_none() && (grown || r.snapshot_required().is_some()) {
            // A fresh snapshot covers every record handed out so far: the old segment's.
            r.freeze_snapshot();
            let mark = r.durable_mark();
            disk.sync();
            r.persisted(mark);
            sync_report = true;
            // A new segment starts with the acceptor's image.
            let segment_start = disk.log.len();
            for k in 0..r.durable_image_len() {
                match r.durable_image_record(k, &mut buf) {
                    Ok(rec) => disk.append(rec),
                    Err(e) => {
                        self.violations.push(Violation::new("invariant", "durable image fits", format!("{e:?}")));
                        return marked_may_go;
                    }
                }
            }
            disk.sync();
            let frozen = r.frozen();
            let piece = self.rng.range(16, 600) as usize;
            let mut scratch = vec![0u8; 1472];
            let mut records = Vec::new();
            let mut pos = SnapshotPos::default();
            while let Some(rec) = snapshot_record(frozen, pos, piece, &mut scratch, &mut buf) {
                match rec {
                    Ok((n, next)) => {
                        records.push(buf[..n].to_vec());
                        pos = next;
                    }
                    Err(e) => {
                        self.violations.push(Violation::new("invariant", "snapshot record fits", format!("{e:?}")));
                        return marked_may_go;
                    }
                }
            }
            if plant == Plant::TornSnapshot {
                // Written in place: the old snapshots and the log they covered are gone now,
                // the new one is whole only when the write ends.
                let torn = self.rng.below(records.len() as u64) as usize;
                disk.snapshot = Some(records[..torn].to_vec());
                disk.previous = None;
                disk.newest_segment = 0;
                disk.log.drain(..segment_start);
                disk.synced -= segment_start;
                planted = true;
                let done_at_us = now + self.rng.below(50_000);
                disk.writing = Some(SnapshotWrite { records, done_at_us, segment_start: 0 });
            } else {
                let done_at_us = now + self.rng.below(50_000);
                disk.writing = Some(SnapshotWrite { records, done_at_us, segment_start });
            }
            self.writing_ids[i] = Some(frozen.id);
        }
        if sync_report {
            // The snapshot's sync covered everything: report it, release what waited.
            self.sync_now(i);
            marked_may_go = true;
        }
        if planted {
            self.fault_counts.planted += 1;
        }
        marked_may_go
    }

    /// Restarts crashed replica `i` from its disk: its snapshot (set aside if damaged) and its
    /// log. The planted `AmnesiacRestart` bug replays nothing; `TornSnapshot` falls back to
    /// the log alone when the snapshot does not install. A disk that does not recover is a
    /// violation (the engine wrote it), and so is a restart that comes back with less
    /// acceptor state than it had, or below the checkpoint it had reported.
    pub fn restart(&mut self, i: usize) {
        if self.replicas[i].is_some() {
            return;
        }
        if self.wiped[i] {
            return self.restart_without_state(i);
        }
        let plant = self.options.plant;
        let disk = &mut self.disks[i];
        let amnesia = plant == Plant::AmnesiacRestart && !disk.log.is_empty();
        if amnesia {
            self.fault_counts.planted += 1;
            self.record(TraceKind::Planted("replica restarted without its durable log"));
        }
        // A damaged newest snapshot fails its checksums: the binding sets it aside and
        // recovers from the previous one and the log kept for it.
        let (kept, damaged) = self.disks[i].usable_snapshot();
        if damaged {
            self.fault_counts.corrupt_snapshots += 1;
        }
        let now = self.local(i);
        let disk = &self.disks[i];
        let empty = Vec::new();
        let kept = kept.unwrap_or_default();
        // The planted `ForgetIncarnation` binding never kept these records.
        let forgetful: Vec<Vec<u8>>;
        let log = match plant {
            Plant::ForgetIncarnation => {
                let before = disk.log.len();
                forgetful = disk.log.iter().filter(|r| !is_incarnation_record(r)).cloned().collect();
                if forgetful.len() < before && !forgetful.iter().any(|r| is_acceptor_record(r)) {
                    self.fault_counts.planted += 1;
                }
                &forgetful
            }
            _ => &disk.log,
        };
        let (snapshot, log) = match amnesia {
            true => (&empty, &empty),
            false => (&kept, log),
        };
        let nonce = self.nonce();
        let recover = |snapshot: &[Vec<u8>]| {
            let pieces = snapshot.iter().map(Vec::as_slice);
            SimReplica::recover(
                self.config.clone(),
                i,
                SimApp::new(),
                now,
                nonce,
                pieces,
                log.iter().map(Vec::as_slice),
            )
        };
        let recovered = match recover(snapshot) {
            Err(RecoverError::Snapshot(_)) if plant == Plant::TornSnapshot => recover(&[]),
            other => other,
        };
        match recovered {
            Ok(r) => {
                if let Some(before) = self.at_crash[i].as_ref() {
                    let view = durable_view(&r);
                    let synced = self.synced_views[i].clone().unwrap_or_default();
                    if let Some(why) = recovered_between(&synced, &view, &before.view) {
                        self.violations.push(Violation::new(
                            "invariant",
                            "a restarted replica recovers its synced state and invents none (rsl::durable)",
                            format!("replica {i}: {why}"),
                        ));
                    }
                    // A damaged snapshot is a disk fault: what only it held (a snapshot
                    // installed from a peer) is gone from this replica, and the others hold it.
                    let ops = r.status().ops_complete;
                    if ops < before.checkpoint && !damaged {
                        self.violations.push(Violation::new(
                            "invariant",
                            "a replica reports only durable checkpoints (rsl::durable)",
                            format!("replica {i}: reported {} before the crash, recovered {ops}", before.checkpoint),
                        ));
                    }
                }
                self.install_restarted(i, r, RslEvent::Restarted { replica: i });
            }
            Err(e) => self.violations.push(Violation::new(
                "invariant",
                "a durable log and snapshot recover (Replica::recover)",
                format!("replica {i}: {e}"),
            )),
        }
    }

    /// Puts restarted replica `i` in place and tells the checkers (`event`). What it
    /// recovered is on disk: durable; and it is reported at once, so the monotonicity
    /// checks apply to it.
    fn install_restarted(&mut self, i: usize, r: SimReplica, event: RslEvent<'_, SpecKv>) {
        // A durable log without acceptor records (a crash before the first was synced, as
        // when a start-up lease hold kept the replica from promising) also recovers to a
        // replica that rejoins: it needs every other replica up, as a wiped one does.
        if r.rejoining().is_some() {
            self.rejoining[i] = true;
        }
        self.replicas[i] = Some(Box::new(r));
        self.last_ops[i] = 0;
        self.checker.observe(&event, &mut self.violations);
        self.report_durable(i);
        let mut buf = self.outbox.take().expect("outbox present between steps");
        let out = buf.outbox();
        self.after_replica_step(i, Step::default(), &out);
        self.outbox = Some(buf);
    }

    /// A nonce for a new incarnation: the global time in µs, shifted so that no earlier
    /// incarnation can have used as many 1b reply ids (one per µs at most, far fewer).
    fn nonce(&self) -> u64 {
        (self.now + 1) << 16
    }

    /// Restarts wiped replica `i` from an empty disk: it rejoins (`Replica::recover` of
    /// nothing). The planted `RejoinAtOnce` bug gives it a blank acceptor record instead,
    /// which makes it take part at once.
    fn restart_without_state(&mut self, i: usize) {
        self.wiped[i] = false;
        let now = self.local(i);
        let nonce = self.nonce();
        let mut blank = Vec::new();
        if self.options.plant == Plant::RejoinAtOnce {
            let record = fleet_engine::rsl::AcceptorRecord {
                max_bal: Ballot::default(),
                max_ballot_sent_1a: Ballot::default(),
                log_truncation_point: 0,
                replies_sent: nonce,
                vote: None,
            };
            let mut buf = [0u8; 128];
            let n = fleet_engine::wire::encode(
                fleet_engine::wire::Protocol::Durable,
                &fleet_engine::rsl::DurableRecord::Acceptor(record),
                &mut buf,
            )
            .expect("a blank acceptor record fits");
            blank.push(buf[..n].to_vec());
            // As a binding that wrote a blank header on a new disk would.
            self.disks[i].append(&buf[..n]);
            self.disks[i].sync();
            self.fault_counts.planted += 1;
            self.record(TraceKind::Planted("replica restarted without state takes part at once"));
        }
        let log = blank.iter().map(Vec::as_slice);
        match SimReplica::recover(self.config.clone(), i, SimApp::new(), now, nonce, [], log) {
            Ok(r) => {
                self.rejoining[i] = true;
                self.install_restarted(i, r, RslEvent::RestartedWithoutState { replica: i });
            }
            Err(e) => self.violations.push(Violation::new(
                "invariant",
                "an empty disk recovers (Replica::recover)",
                format!("replica {i}: {e}"),
            )),
        }
    }
}
