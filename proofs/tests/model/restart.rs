//! Restarts: a replica replaced by an incarnation without state, or rebuilt from its disk
//! (after a sync, a crash that loses unsynced records, or a compaction), and the disk's
//! records.

use fleet_engine::rsl::apps::counter::Counter;
use fleet_engine::rsl::{Ballot, DurableRecord};
use fleet_engine::wire::{self, Protocol};
use stateright::actor::Out;

use super::{endpoint, learners, MReplica, ModelTimer, Node, Planted, Record, ReplicaNode};

impl Node {
    /// Amnesia: `node` is replaced by a new incarnation without state (with
    /// [`Planted::VotesAtOnce`], by an ordinary replica), which starts as a binding would: a
    /// `tick` at its clock. Its clock, budgets and history variables carry over; no step
    /// check spans the restart (the new incarnation's protocol state legitimately starts
    /// over).
    ///
    /// Durable: rebuilt from its disk with `Replica::recover`, given the configuration it
    /// was started with and its index there (as io-std does: the configuration file's, or
    /// for a new machine the epoch it joined); what the disk holds depends on how it went
    /// `down`.
    pub(super) fn restart(&self, actor: usize, node: &ReplicaNode, down: Down, o: &mut Out<Node>) -> ReplicaNode {
        let Node::Replica { scope, config } = self else { unreachable!("replicas only") };
        let me = match scope.change {
            Some(_) => config.index_of(endpoint(actor, scope.hosts())).expect("started in its configuration"),
            None => node.replica.id(),
        };
        let restarts = node.restarts + 1;
        // Larger than every 1b reply id an earlier incarnation used (a handful here).
        let nonce = 1_000_000 * u64::from(restarts);
        if scope.lazy_sync || scope.compaction {
            // One restart each: the other ways of restarting are spent too.
            o.cancel_timer(ModelTimer::Restart);
            o.cancel_timer(ModelTimer::Crash);
            o.cancel_timer(ModelTimer::Compact);
        }
        if scope.durable {
            // Its disk: the snapshot, and the log (what was synced, after a crash that lost
            // the rest; after a compaction, the image).
            let (snapshot, disk) = match down {
                Down::Synced => (Vec::new(), node.log.clone()),
                Down::LosingUnsynced => (Vec::new(), node.log[..node.synced].to_vec()),
                Down::Compacted => compacted(&node.replica),
            };
            let lost_epoch_record = node.lost_epoch_record
                || (down == Down::LosingUnsynced
                    && node.log[node.synced..]
                        .iter()
                        .any(|r| matches!(durable_record(r), Some(DurableRecord::Epoch { .. }))));
            let disk = &disk[..];
            // What recovery reads of it: the same replica (or, planted, one that lost its
            // acceptor records but kept its incarnation, or whose replay stops at its first
            // epoch record past its configuration's epoch).
            let log: Vec<Record> = match scope.planted {
                // Executed references go with the votes they name.
                Some(Planted::KeepsIncarnationLosesAcceptor) => disk
                    .iter()
                    .filter(|r| {
                        !is_acceptor_record(r) && !matches!(durable_record(r), Some(DurableRecord::ExecutedVote { .. }))
                    })
                    .cloned()
                    .collect(),
                Some(Planted::ReplayStopsAtEpoch) => disk
                    .iter()
                    .take_while(|r| !matches!(durable_record(r), Some(DurableRecord::Epoch { epoch, .. }) if epoch > config.epoch))
                    .cloned()
                    .collect(),
                _ => disk.to_vec(),
            };
            let recovered = MReplica::recover(
                config.clone(),
                me,
                Counter::default(),
                node.now,
                nonce,
                snapshot.iter().map(Vec::as_slice),
                log.iter().map(|r| &r[..]),
            );
            let replica = recovered.expect("a replica recovers from the log it wrote");
            let planted = scope.planted == Some(Planted::KeepsIncarnationLosesAcceptor);
            let lost_state = node.lost_state || (planted && node.replica.acceptor().max_bal != Ballot::default());
            // The disk keeps what it held (a planted replay ignores part of it).
            let log = match scope.planted {
                Some(Planted::KeepsIncarnationLosesAcceptor) => log,
                _ => disk.to_vec(),
            };
            let recovered = Some((down, epoch_of(&replica)));
            let synced = log.len();
            let restarted = ReplicaNode {
                replica,
                restarts,
                lost_state,
                log,
                synced,
                revealed_since_restart: None,
                recovered,
                lost_epoch_record,
                ..node.clone()
            };
            return self
                .replica_step(&restarted, o, |r, out| {
                    let _ = r.replica.tick(r.now, out);
                })
                .unwrap_or(restarted);
        }
        let replica = match scope.planted {
            // A new machine comes back as a learner of epoch 0, as `serve --join` starts one.
            _ if learners::applies(scope) && actor >= scope.replicas => {
                Ok(learners::restarted_learner(scope, actor, node.now, node.restarts))
            }
            Some(Planted::VotesAtOnce) => MReplica::new(config.clone(), me, Counter::default(), node.now),
            _ => MReplica::new_rejoining(config.clone(), me, Counter::default(), node.now, nonce),
        }
        .expect("valid model configuration");
        let lost_state = node.lost_state || node.replica.acceptor().max_bal != Ballot::default();
        let fresh = ReplicaNode { replica, restarts, lost_state, revealed_since_restart: None, ..node.clone() };
        self.replica_step(&fresh, o, |r, out| {
            let _ = r.replica.tick(r.now, out);
        })
        .unwrap_or(fresh)
    }
}

/// How a durable replica goes down before it restarts from its disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Down {
    /// After a sync: its log holds every record handed out.
    Synced,
    /// Before the records not yet synced reached the disk ([`Scope::lazy_sync`]).
    ///
    /// [`Scope::lazy_sync`]: super::Scope::lazy_sync
    LosingUnsynced,
    /// Right after a compaction ([`Scope::compaction`]).
    ///
    /// [`Scope::compaction`]: super::Scope::compaction
    Compacted,
}

/// What a compaction leaves on the disk of `replica` (as io-std's, every record synced
/// first): the pieces of a snapshot frozen now, persisted whole, and a log of the replica's
/// compacted image.
fn compacted(replica: &MReplica) -> (Vec<Vec<u8>>, Vec<Record>) {
    let mut buf = vec![0u8; 2048];
    let image = (0..replica.durable_image_len())
        .map(|i| replica.durable_image_record(i, &mut buf).expect("an image record fits its buffer").into())
        .collect();
    (snapshot_now(replica), image)
}

/// The records of a snapshot of `replica` frozen now, as a binding persists them.
pub fn snapshot_now(replica: &MReplica) -> Vec<Vec<u8>> {
    let mut r = replica.clone();
    r.freeze_snapshot();
    let (mut scratch, mut buf) = (vec![0u8; 256], vec![0u8; 2048]);
    let mut pos = fleet_engine::rsl::snapshot::SnapshotPos::default();
    let mut snapshot = Vec::new();
    while let Some(piece) = fleet_engine::rsl::durable::snapshot_record(r.frozen(), pos, 128, &mut scratch, &mut buf) {
        let (len, next) = piece.expect("a snapshot piece fits its buffer");
        snapshot.push(buf[..len].to_vec());
        pos = next;
    }
    snapshot
}

fn durable_record(record: &[u8]) -> Option<DurableRecord<'_>> {
    wire::decode::<DurableRecord<'_>>(Protocol::Durable, record).ok()
}

fn is_acceptor_record(record: &[u8]) -> bool {
    matches!(durable_record(record), Some(DurableRecord::Acceptor(_)))
}

/// The epoch a replica is in, or retired into (what its latest epoch record names).
pub fn epoch_of(r: &MReplica) -> u64 {
    r.retired().map_or(r.config().epoch, |x| x.next.epoch)
}

/// The epoch the last epoch record of `log` names (0 without one).
pub fn log_epoch(log: &[Record]) -> u64 {
    log.iter()
        .rev()
        .find_map(|r| match durable_record(r) {
            Some(DurableRecord::Epoch { epoch, .. }) => Some(epoch),
            _ => None,
        })
        .unwrap_or(0)
}
