//! The std replica type: the engine's [`Replica`] sized by [`crate::capacity`], for any
//! application, and how the event loop drives it.

use fleet_engine::rsl::{App, Replica};
use fleet_engine::{Endpoint, Instant, Outbox};

use super::app::StdKvApp;
use crate::capacity::{
    KEY_BYTES, MAX_REPLICAS, REPLY_BYTES, REPLY_CACHE_CLIENTS, REQUEST_QUEUE_BYTES, RETAINED_TAIL_BYTES,
    SERVER_DATAGRAM_BYTES, SERVER_WINDOW, VALUE_BYTES,
};
use crate::clock::incarnation_nonce;
use crate::config::RslSetup;
use crate::error::ServerError;
use crate::net::event_loop::{stats_fields, Host};

/// A std RSL replica running application `A`: 16 replicas, a window of 16, 64 KiB datagrams,
/// a 1 MiB request queue, a reply cache of 4096 clients, replies up to 1100 bytes, and 8 MiB
/// of retained executed batches.
pub type StdReplica<A> = Replica<
    A,
    MAX_REPLICAS,
    SERVER_WINDOW,
    SERVER_DATAGRAM_BYTES,
    REQUEST_QUEUE_BYTES,
    REPLY_CACHE_CLIENTS,
    REPLY_BYTES,
    RETAINED_TAIL_BYTES,
>;
/// The replicated application of `fleet rsl serve`: a sorted map of byte keys and values.
pub type ServerApp = StdKvApp<KEY_BYTES, VALUE_BYTES>;
/// The replica `fleet rsl serve` runs.
pub type ServerReplica = StdReplica<ServerApp>;

impl<A: App> Host for StdReplica<A> {
    fn handle(&mut self, now: Instant, from: Endpoint, datagram: &[u8], out: &mut Outbox<'_>) {
        let refused = self.stats().foreign_cluster;
        let rejoining = self.rejoining().is_some();
        // In-memory mode: nothing to persist before sending (see `Step`).
        let _ = Replica::handle(self, now, from, datagram, out);
        warn_if_foreign(self, refused);
        note_if_rejoined(self, rejoining);
    }
    fn tick(&mut self, now: Instant, out: &mut Outbox<'_>) {
        let rejoining = self.rejoining().is_some();
        let _ = Replica::tick(self, now, out);
        note_if_rejoined(self, rejoining);
    }
    fn next_deadline(&self) -> Instant {
        Replica::next_deadline(self)
    }
    fn stats_line(&self) -> String {
        status_line(self)
    }
    fn membership_generation(&self) -> u64 {
        membership_generation(self)
    }
    fn known_members(&self) -> Vec<Endpoint> {
        known_members(self)
    }
}

/// The replica's epoch (a learner's too: the one it follows), or the next one once it
/// retired: changes with every membership change it takes part in or follows.
pub fn membership_generation<A: App>(replica: &StdReplica<A>) -> u64 {
    replica.retired().map_or(replica.config().epoch, |r| r.next.epoch)
}

/// The replicas of its epoch and, once retired, of the next; a learner's too, and itself:
/// it seals for the members with the member key, and they take it from a non-member
/// address as a server's ([`fleet_engine::auth::Guard`]).
pub fn known_members<A: App>(replica: &StdReplica<A>) -> Vec<Endpoint> {
    let mut members: Vec<Endpoint> = replica.config().replicas.to_vec();
    if let Some(l) = replica.learning() {
        members.push(l.own);
    }
    if let Some(r) = replica.retired() {
        members.extend(r.next.replicas.iter().copied());
    }
    members
}

/// Logs a message refused for naming another cluster (the 1st, 2nd, 4th, 8th, ... of them:
/// a misconfigured peer keeps sending), given the count before the step.
pub fn warn_if_foreign<A: App>(replica: &StdReplica<A>, refused_before: u64) {
    let refused = replica.stats().foreign_cluster;
    if refused == refused_before || !refused.is_power_of_two() {
        return;
    }
    if let Some((from, theirs)) = replica.last_foreign() {
        tracing::warn!(
            "refused a message from {}: its sender is configured for cluster {theirs:08x}, this replica for \
             cluster {:08x} ({refused} refused so far). The config files differ: every replica needs the same \
             replicas in the same order, and the same max_log_length, max_batch_size and max_datagram_bytes",
            crate::net::to_socket_addr(from),
            replica.cluster()
        );
    }
}

/// Logs the step in which a replica that started without state takes part: as a member of
/// a new cluster, or rejoined (given whether it was rejoining before the step).
pub fn note_if_rejoined<A: App>(replica: &StdReplica<A>, was_rejoining: bool) {
    if !was_rejoining || replica.rejoining().is_some() {
        return;
    }
    let s = replica.status();
    match s.ops_complete == 0 && s.log_truncation_point == 0 && s.max_bal == fleet_engine::rsl::Ballot::default() {
        true => tracing::info!("replica {}: every replica has started without state: a new cluster", replica.id()),
        false => tracing::info!(
            "replica {} rejoined: promise ({},{}), taking part from operation {} ({} executed)",
            replica.id(),
            s.max_bal.seqno,
            s.max_bal.proposer,
            s.log_truncation_point,
            s.ops_complete
        ),
    }
}

/// One human line: the replica's protocol position and its counters.
pub fn status_line<A: App>(replica: &StdReplica<A>) -> String {
    let s = replica.status();
    let rejoin = match replica.rejoining().map(|r| r.stage) {
        None => String::new(),
        Some(fleet_engine::rsl::rejoin::Stage::Asking) => "rejoin=asking ".to_string(),
        Some(fleet_engine::rsl::rejoin::Stage::CatchingUp { next_opn, .. }) => {
            format!("rejoin=catching-up-to-{next_opn} durable-checkpoint={} ", replica.checkpoint())
        }
    };
    format!(
        "view=({},{}) leader={} executed={} next_opn={} truncation={} queued={} {rejoin}{}",
        s.view.seqno,
        s.view.proposer,
        s.is_leader,
        s.ops_complete,
        s.next_opn,
        s.log_truncation_point,
        s.queued,
        stats_fields(replica.stats())
    )
}

/// Checks that `id` names a replica of `setup`.
pub(crate) fn check_id(setup: &RslSetup, id: usize) -> Result<(), ServerError> {
    match id < setup.addrs.len() {
        true => Ok(()),
        false => Err(ServerError::Config(format!("--id {id} is not a replica (the config has {})", setup.addrs.len()))),
    }
}

/// Builds a learner at `own` of the epoch `setup` describes (in memory, or becoming
/// durable when a change makes it a member, `durable`), running `app`.
pub fn build_learner<A: App>(
    setup: &RslSetup,
    own: std::net::SocketAddr,
    app: A,
    now: Instant,
    durable: bool,
) -> Result<Box<StdReplica<A>>, ServerError> {
    let own = crate::net::to_endpoint(own);
    StdReplica::new_learner(setup.config.clone(), own, app, now, incarnation_nonce(), durable)
        .map(Box::new)
        .map_err(|e| ServerError::Config(e.to_string()))
}

/// Builds replica `id` of `setup` (in memory) running `app`. It starts without state, so it
/// rejoins (`Replica::new_rejoining`): safe to restart after a crash, as long as the other
/// replicas are up; a new cluster starts once every replica has started.
pub fn build<A: App>(setup: &RslSetup, id: usize, app: A, now: Instant) -> Result<Box<StdReplica<A>>, ServerError> {
    check_id(setup, id)?;
    StdReplica::new_rejoining(setup.config.clone(), id, app, now, incarnation_nonce())
        .map(Box::new)
        .map_err(|e| ServerError::Config(e.to_string()))
}
