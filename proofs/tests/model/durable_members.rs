//! Durable replicas across a membership change (`fleet_engine::rsl::durable`, epoch
//! records): the membership scope of [`super::members`] with durable replicas, each writing
//! its records to its own log and syncing lazily, and one crash and restart from the disk:
//! after a sync, losing the records not yet synced (between entering the next epoch and the
//! sync of its epoch record, say), or right after a compaction (a snapshot and the compacted
//! image replace the log).
//!
//! The rule under check: a replica that enters an epoch (executing the stop-sign, or told by
//! a peer) or retires hands out an epoch record after the old epoch's executed batches and
//! before any record of the new epoch; replay moves it into the epoch the record names, and a
//! compacted image starts with it. On top of the cross-epoch properties of
//! [`super::members`] and linearizability: every replica is in the epoch its log names (so
//! one recovered from its log comes back there); never in an epoch below one it revealed a
//! promise or a vote in (a 1b or 2b in that epoch's envelope); and, taking part in the epoch
//! it revealed them in, it keeps them (its promise is at least every ballot it revealed
//! there): what a restart must not lose.

use fleet_engine::rsl::batch::{self, EntryKind};
use fleet_engine::rsl::rejoin::Stage;
use stateright::Expectation;

use super::members::{Membership, RuleJudge};
use super::{bal, epoch_of, log_epoch, replicas, Down, ReplicaNode, RslModel, RslState, Scope};

/// States the CI runs of [`Scope::DURABLE_MEMBERS`] check at most (archived walks): the
/// control (the real epoch records) checks this many without a violation and reaches the
/// progress properties below; the planted [`super::Planted::ReplayStopsAtEpoch`] is found
/// within it.
pub const DURABLE_MEMBERS_CI_STATES: usize = 100_000;

impl Scope {
    /// [`Scope::MEMBERS`] with durable replicas: epoch 0's replicas start without state as
    /// a new cluster and are born ([`Scope::DURABLE`]), the new machine starts durable for
    /// epoch 1 (`Replica::new_durable`: its first records name its incarnation and epoch);
    /// records are synced lazily ([`Scope::lazy_sync`]); and one replica of the four, once,
    /// restarts from its disk (`Replica::recover` with the configuration it was started
    /// with and its index there, as io-std does) at any moment once the change is under way
    /// where it is ([`may_restart`]): after a sync, losing what was not synced yet, or right
    /// after a compaction ([`Scope::compaction`]). Searched by archived random walks;
    /// measured in `proofs/README.md`.
    pub const DURABLE_MEMBERS: Scope =
        Scope { restarts: 1, restartable: 0b1111, durable: true, lazy_sync: true, compaction: true, ..Scope::MEMBERS };
}

/// Whether `scope` is a durable scope with a membership change (judged by its own
/// properties, not by clients only).
pub fn applies(scope: &Scope) -> bool {
    scope.durable && scope.change.is_some_and(|c: Membership| !c.clients_only)
}

/// Whether `scope` checks the epoch-record property ([`check`]).
pub fn judged(scope: &Scope) -> bool {
    applies(scope) && scope.change.is_some_and(|c| c.rule_judge != RuleJudge::Off)
}

/// Whether replica actor `actor` may crash now ([`Scope::restartable`], and the one
/// restart not spent), once the change is under way where it is: a replica of epoch 0 from
/// the step in which it votes for a batch with the change, or enters the next epoch or
/// retires (executing the stop-sign, or told by a peer), whichever comes first; a new
/// machine once every replica it asked answered from the next epoch (it catches up, or
/// takes part). Earlier restarts are [`Scope::DURABLE`]'s (no epoch record exists yet, or
/// only the new machine's, before it heard from anyone). Armed from the start, the walks
/// take the restart early: measured, no replica of epoch 0 restarted into the next epoch
/// in 100,236 states (694 walks).
pub fn may_restart(scope: &Scope, actor: usize, node: &ReplicaNode) -> bool {
    let r = &node.replica;
    let under_way = || match actor < scope.replicas {
        true => {
            epoch_of(r) > 0
                || r.acceptor().votes().any(|v| batch::entries(&v.batch).any(|e| e.kind == EntryKind::Change))
        }
        false => r.rejoining().is_none_or(|j| j.stage != Stage::Asking),
    };
    node.restarts < scope.restarts && scope.restartable & (1 << actor) != 0 && under_way()
}

/// Whether `r` takes part in its epoch: neither retired nor rejoining (a rejoining replica
/// promises and votes only once every other replica answered, with a promise at least every
/// ballot they report, so at least every promise it made before and lost).
fn taking_part(r: &super::MReplica) -> bool {
    r.retired().is_none() && r.rejoining().is_none()
}

/// The first broken epoch rule of a state: a replica in another epoch than its log names
/// (the last epoch record, 0 without one); in an epoch below one it revealed a promise or a
/// vote in (a 1b or 2b in that epoch's envelope); or taking part in the epoch it revealed
/// them in with a promise below the highest ballot it revealed there (it forgot a promise
/// its peers may have counted, and may vote below it). With [`RuleJudge::Promises`], the
/// last one only: the hazard itself, where the others are what leads to it.
pub fn check(scope: &Scope, s: &RslState) -> Result<(), String> {
    let promises_only = scope.change.is_some_and(|c| c.rule_judge == RuleJudge::Promises);
    for (actor, r) in replicas(s).iter().enumerate() {
        let (epoch, logged) = (epoch_of(&r.replica), log_epoch(&r.log));
        if epoch != logged && !promises_only {
            return Err(format!("replica actor {actor} is in epoch {epoch}, its log names epoch {logged}"));
        }
        match r.revealed {
            Some((e, _)) if e > epoch && !promises_only => {
                return Err(format!("replica actor {actor} is in epoch {epoch}, it sent a 1b or 2b in epoch {e}"))
            }
            Some((e, b)) if e == epoch && taking_part(&r.replica) && r.replica.acceptor().max_bal < b => {
                return Err(format!(
                    "replica actor {actor} promised {} in epoch {e}, it sent a 1b or 2b of {} there",
                    bal(r.replica.acceptor().max_bal),
                    bal(b)
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Property: [`check`] holds.
pub fn epoch_as_logged(m: &RslModel, s: &RslState) -> bool {
    check(&m.cfg.scope, s).is_ok()
}

/// The name of the [`epoch_as_logged`] property.
pub const SAFETY: &str = "a durable replica is in the epoch its log names, never below one it revealed a promise or vote in, and keeps the promises it revealed there";

/// Whether `r` is a replica of epoch 0 that restarted from its disk into the next epoch
/// (after going down as `down`, if given).
fn recovered_in_next(m: &RslModel, r: &ReplicaNode, down: Option<Down>) -> bool {
    r.recovered.is_some_and(|(d, e)| e > m.cfg.config.epoch && down.is_none_or(|x| x == d))
}

/// Progress: a replica of epoch 0 restarted from its log into the next epoch (its log
/// held an epoch record).
pub fn recovered_in_next_epoch(m: &RslModel, s: &RslState) -> bool {
    replicas(s).iter().take(m.cfg.scope.replicas).any(|r| recovered_in_next(m, r, None))
}

/// Progress: a replica restarted from its log into the next epoch promised or voted there
/// again (a 1b or 2b in the next epoch's envelope after its restart).
pub fn recovered_takes_part(m: &RslModel, s: &RslState) -> bool {
    replicas(s)
        .iter()
        .take(m.cfg.scope.replicas)
        .any(|r| recovered_in_next(m, r, None) && r.revealed_since_restart.is_some_and(|e| e > m.cfg.config.epoch))
}

/// Progress: a replica of epoch 0 restarted from a compacted image (which starts with the
/// epoch record) into the next epoch.
pub fn recovered_from_image(m: &RslModel, s: &RslState) -> bool {
    replicas(s).iter().take(m.cfg.scope.replicas).any(|r| recovered_in_next(m, r, Some(Down::Compacted)))
}

/// Progress: a crash lost an epoch record handed out but not yet synced (the replica
/// entered the next epoch, or retired, and crashed before the sync).
pub fn lost_unsynced_epoch_record(_: &RslModel, s: &RslState) -> bool {
    replicas(s).iter().any(|r| r.lost_epoch_record)
}

/// The names of the progress properties.
pub const PROGRESS: [&str; 4] = [
    "a replica of epoch 0 restarts from its log into the next epoch",
    "a replica restarted into the next epoch promises or votes there",
    "a replica of epoch 0 restarts from a compacted image into the next epoch",
    "a crash loses an epoch record before its sync",
];

/// Adds the durable-membership properties to `m` (with `progress`, the `sometimes` ones).
pub fn properties(m: RslModel, progress: bool) -> RslModel {
    let judged = judged(&m.cfg.scope);
    let m = if judged { m.property(Expectation::Always, SAFETY, epoch_as_logged) } else { m };
    if !progress {
        return m;
    }
    m.property(Expectation::Sometimes, PROGRESS[0], recovered_in_next_epoch)
        .property(Expectation::Sometimes, PROGRESS[1], recovered_takes_part)
        .property(Expectation::Sometimes, PROGRESS[2], recovered_from_image)
        .property(Expectation::Sometimes, PROGRESS[3], lost_unsynced_epoch_record)
}
