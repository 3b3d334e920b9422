//! Durable replicas in the membership simulator: every replica (the configuration file's
//! and each new machine) keeps its records on a simulated disk ([`crate::disk::SimDisk`])
//! as io-std's binding does, crashes lose what was not synced, power cuts crash every
//! replica at once, and restarts recover from the disk: a file replica from the file's
//! epoch 0 configuration (its log says where it went since), a new machine from the first
//! epoch its log names (`fleet rsl serve --join ADDR --data-dir DIR`). The planted
//! `forget-epoch` binding restarts a replica from its log as it was before its first epoch
//! change, forgetting the promises and votes of the epochs since.

use fleet_engine::rsl::durable::{snapshot_record, DURABLE_RECORD_OVERHEAD_BYTES};
use fleet_engine::rsl::snapshot::SnapshotPos;
use fleet_engine::rsl::{membership, DurableRecord, RslConfig};
use fleet_engine::wire::{self, Protocol};
use fleet_engine::{Endpoint, Outbox};

use super::{replica_ep, MembersSim};
use crate::disk::{SimDisk, SnapshotWrite};
use crate::rsl_sim::{SimApp, SimReplica};

/// A replica's log gets a new snapshot (and drops what it covers) after this many records.
const COMPACT_AFTER_RECORDS: usize = 200;
const RECORD_BYTES: usize = 1472 + DURABLE_RECORD_OVERHEAD_BYTES;

/// The epoch and replicas an epoch record names.
fn epoch_of(record: &[u8]) -> Option<(u64, Vec<Endpoint>)> {
    match wire::decode::<DurableRecord<'_>>(Protocol::Durable, record) {
        Ok(DurableRecord::Epoch { epoch, replicas, .. }) => {
            membership::replicas_of::<7>(replicas.0).ok().map(|r| (epoch, r.to_vec()))
        }
        _ => None,
    }
}

impl MembersSim {
    /// Starts the process at `ep(i)` durable, on an empty disk, for `config` (a new machine
    /// joining that epoch, or a replica of a new cluster): it rejoins, and is born or
    /// catches up from the others.
    pub fn start_durable(&mut self, i: u8, config: RslConfig<7>, nonce: u64) {
        let ep = replica_ep(i);
        let me = config.index_of(ep).expect("a member of the epoch it starts for");
        let r = SimReplica::new_durable(config, me, SimApp::new(), self.now(), nonce).expect("valid config");
        self.replicas.insert(ep, r);
        self.disks.insert(ep, SimDisk::default());
        self.down.retain(|e| *e != ep);
    }

    /// Starts the process at `ep(i)` as a durable learner of `config` on an empty disk: it
    /// follows the log, and writes records from the moment a change makes it a member.
    pub fn start_durable_learner(&mut self, i: u8, config: RslConfig<7>, nonce: u64) {
        let ep = replica_ep(i);
        let r = SimReplica::new_learner(config, ep, SimApp::new(), self.now(), nonce, true).expect("valid config");
        self.replicas.insert(ep, r);
        self.disks.insert(ep, SimDisk::default());
        self.down.retain(|e| *e != ep);
    }

    /// The durable binding after a step of the replica at `ep`, before its datagrams
    /// leave: append its records; sync at once when a datagram waits for them (else now
    /// and then); persist a snapshot when one is required or the log has grown.
    pub(super) fn persist(&mut self, ep: Endpoint, out: &Outbox<'_>) {
        let (Some(disk), Some(r)) = (self.disks.get_mut(&ep), self.replicas.get_mut(&ep)) else { return };
        let mut buf = vec![0u8; RECORD_BYTES];
        while let Some(record) = r.next_record(&mut buf) {
            match record {
                Ok(bytes) => disk.append(bytes),
                Err(e) => return self.violations.push(format!("{ep:?}: a durable record does not fit: {e:?}")),
            }
        }
        let waiting = out.iter_marked().any(|(_, _, waits)| waits);
        if waiting || self.rng.chance(250_000) {
            let mark = r.durable_mark();
            disk.sync();
            r.persisted(mark);
        }
        if r.snapshot_required().is_none() && disk.log.len() < COMPACT_AFTER_RECORDS {
            return;
        }
        self.compact(ep);
    }

    /// Compacts every durable replica's log now (a snapshot, then the log replaced by the
    /// replica's image), as each binding does when its log has grown.
    pub fn compact_all(&mut self) {
        let all: Vec<Endpoint> = self.disks.keys().copied().filter(|e| self.replicas.contains_key(e)).collect();
        for ep in all {
            self.compact(ep);
        }
    }

    /// Persists a fresh snapshot of the replica at `ep` and starts a log segment with its
    /// image.
    fn compact(&mut self, ep: Endpoint) {
        let (Some(disk), Some(r)) = (self.disks.get_mut(&ep), self.replicas.get_mut(&ep)) else { return };
        let mut buf = vec![0u8; RECORD_BYTES];
        // A fresh snapshot covers every record handed out so far; the new segment starts
        // with the image (written whole here: a crash loses no part of it).
        r.freeze_snapshot();
        let mark = r.durable_mark();
        disk.sync();
        r.persisted(mark);
        let segment_start = disk.log.len();
        for k in 0..r.durable_image_len() {
            match r.durable_image_record(k, &mut buf) {
                Ok(bytes) => disk.append(bytes),
                Err(e) => return self.violations.push(format!("{ep:?}: the durable image does not fit: {e:?}")),
            }
        }
        disk.sync();
        let frozen = r.frozen();
        let mut scratch = vec![0u8; 1472];
        let mut records = Vec::new();
        let mut pos = SnapshotPos::default();
        while let Some(piece) = snapshot_record(frozen, pos, 400, &mut scratch, &mut buf) {
            match piece {
                Ok((n, next)) => {
                    records.push(buf[..n].to_vec());
                    pos = next;
                }
                Err(e) => return self.violations.push(format!("{ep:?}: a snapshot record does not fit: {e:?}")),
            }
        }
        let id = frozen.id;
        disk.writing = Some(SnapshotWrite { records, done_at_us: 0, segment_start });
        disk.finish_snapshot();
        r.snapshot_persisted(id);
    }

    /// Crashes the durable process at `ep(i)`: it stops, and its disk keeps what was synced
    /// and a random prefix of the rest.
    pub fn crash_durable(&mut self, i: u8) {
        let ep = replica_ep(i);
        if let Some(disk) = self.disks.get_mut(&ep) {
            disk.crash(&mut self.rng);
        }
        if !self.down.contains(&ep) {
            self.down.push(ep);
        }
    }

    /// A power cut: every durable process crashes at once.
    pub fn power_cut(&mut self) {
        let all: Vec<Endpoint> = self.disks.keys().copied().collect();
        for ep in all {
            if let Some(i) = (0..=u8::MAX).find(|&i| replica_ep(i) == ep) {
                self.crash_durable(i);
            }
        }
    }

    /// Restarts the crashed durable process at `ep(i)` from its disk, as its binding would:
    /// a replica of the configuration file from the file's configuration, a new machine
    /// from the first epoch its log names (one removed since, as the log's last epoch says,
    /// is told so and stays down: it is taken out). True if it runs again.
    pub fn restart_from_disk(&mut self, i: u8, nonce: u64) -> bool {
        let ep = replica_ep(i);
        let Some(disk) = self.disks.get_mut(&ep) else { return false };
        let (snapshot, _) = disk.usable_snapshot();
        let mut log = disk.log.clone();
        if self.forget_epoch {
            // Planted: the log as it was before the replica's first epoch change (a binding
            // that kept each epoch's records apart and reopened the first): the promises
            // and votes of the epochs since are forgotten.
            if let Some(first) = log.iter().position(|r| epoch_of(r).is_some()) {
                self.planted += (log.len() - first) as u64;
                log.truncate(first);
            }
        }
        let epochs: Vec<_> = log.iter().filter_map(|r| epoch_of(r)).collect();
        let (config, me) = match self.file_config.index_of(ep) {
            Some(me) => (self.file_config.clone(), me),
            None => {
                let Some((first, last)) = epochs.first().zip(epochs.last()) else {
                    // Nothing of a membership reached the disk: it starts as it first did,
                    // for the epoch it had joined, or as a learner of the one it followed.
                    let config = self.replicas[&ep].config().clone();
                    let Some(me) = config.index_of(ep) else {
                        self.start_durable_learner(i, config, nonce);
                        self.restarts_from_disk += 1;
                        return true;
                    };
                    return self.recover_into(ep, config, me, nonce, snapshot, &log);
                };
                if !last.1.contains(&ep) {
                    self.replicas.remove(&ep);
                    self.disks.remove(&ep);
                    self.down.retain(|e| *e != ep);
                    return false;
                }
                let mut config = RslConfig::<7>::new(&first.1).expect("at most 7 replicas");
                config.params = self.file_config.params;
                config.epoch = first.0;
                let me = config.index_of(ep).expect("checked: a member of its first epoch");
                (config, me)
            }
        };
        self.recover_into(ep, config, me, nonce, snapshot, &log)
    }

    fn recover_into(
        &mut self,
        ep: Endpoint,
        config: RslConfig<7>,
        me: usize,
        nonce: u64,
        snapshot: Option<Vec<Vec<u8>>>,
        log: &[Vec<u8>],
    ) -> bool {
        let pieces = snapshot.iter().flatten().map(Vec::as_slice);
        let records = log.iter().map(Vec::as_slice);
        match SimReplica::recover(config, me, SimApp::new(), self.now(), nonce, pieces, records) {
            Ok(r) => {
                self.replicas.insert(ep, r);
                self.down.retain(|e| *e != ep);
                self.restarts_from_disk += 1;
                true
            }
            Err(e) => {
                self.violations.push(format!("{ep:?}: its disk does not recover: {e}"));
                false
            }
        }
    }
}
