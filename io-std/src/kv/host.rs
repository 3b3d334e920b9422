//! The std KV host type: the engine's [`KvHost`] sized by [`crate::capacity`] over a
//! [`StdStore`], and how the event loop drives it.

use fleet_engine::kv::storage::Storage;
use fleet_engine::kv::{KvHost, LOST};
use fleet_engine::{Endpoint, Instant, Outbox};

use super::store::StdStore;
use crate::capacity::{KV_DATAGRAM_BYTES, KV_DELEGATION_RUNS, KV_MAX_HOSTS, KV_PEERS, KV_UNACKED};
use crate::clock::incarnation_nonce;
use crate::config::KvSetup;
use crate::error::ServerError;
use crate::net::event_loop::{stats_fields, Host};

/// A std KV host: 16 hosts, 1024 delegation runs, 1024 peers (hosts and clients), 1024
/// unacked messages, 8 KiB datagrams.
pub type KvServerHost = KvHost<StdStore, KV_MAX_HOSTS, KV_DELEGATION_RUNS, KV_PEERS, KV_UNACKED, KV_DATAGRAM_BYTES>;

/// An empty store sized by `setup` (`max_keys`, `max_value_bytes`).
pub fn empty_store(setup: &KvSetup) -> StdStore {
    StdStore::new(setup.max_keys, setup.config.params.max_value_bytes)
}

/// Host `id` of `setup` started without state at `now` (in memory, or a new data
/// directory): it joins before it serves (`fleet_engine::kv::join`) as an incarnation named
/// by the wall clock. On the heap: a host is megabytes, built in place on the server
/// thread's large stack.
#[inline(never)]
pub fn new_host(setup: &KvSetup, id: usize, now: Instant) -> Result<Box<KvServerHost>, ServerError> {
    let host = KvServerHost::new_joining(setup.config.clone(), id, empty_store(setup), incarnation_nonce(), now)
        .map(Box::new)
        .map_err(|e| ServerError::Config(e.to_string()))?;
    if host.joining().is_some() {
        tracing::info!("kv host {id}: started without state; joining (it serves once every other host has answered)");
    }
    Ok(host)
}

/// Logs how a host that started without state ended its join ([`fleet_engine::kv::join`]).
pub fn note_if_joined(host: &KvServerHost, was_joining: bool) {
    if !was_joining || host.joining().is_some() {
        return;
    }
    let id = host.id();
    if host.map().entries().iter().any(|e| e.owner == LOST) {
        tracing::warn!(
            "kv host {id} joined a running cluster after a restart without its state: it owns nothing, and the \
             keys it held before are lost (requests for them are answered \"lost\"). Run hosts with --data-dir \
             to keep them across restarts"
        );
    } else if host.owns(0) {
        tracing::info!("kv host {id} joined: a new cluster, this host the initial owner of every key");
    } else {
        tracing::info!("kv host {id} joined: a new cluster");
    }
}

/// Logs (the 1st, 2nd, 4th, ... time) that `host` refused a datagram naming another
/// cluster, when its count of those moved past `refused_before`: a misconfigured peer keeps
/// sending, and its config file differs.
pub fn warn_if_foreign(host: &KvServerHost, refused_before: u64) {
    let now_refused = host.stats().foreign_cluster;
    if now_refused != refused_before && now_refused.is_power_of_two() {
        if let Some((from, theirs)) = host.last_foreign() {
            tracing::warn!(
                "refused a datagram from {}: its sender is configured for KV cluster {theirs:08x}, this host \
                 for {:08x} ({now_refused} refused so far). The config files differ: every host and client \
                 needs the same hosts in the same order, and the same max_value_bytes and max_datagram_bytes",
                crate::net::to_socket_addr(from),
                host.cluster()
            );
        }
    }
}

/// The host's counters as one stats line.
pub fn host_stats(host: &KvServerHost) -> String {
    let joining = if host.joining().is_some() { " joining" } else { "" };
    format!("keys={}{joining} {:?} {}", host.storage().len(), host.counters(), stats_fields(host.stats()))
}

impl Host for KvServerHost {
    fn handle(&mut self, now: Instant, from: Endpoint, datagram: &[u8], out: &mut Outbox<'_>) {
        let refused = self.stats().foreign_cluster;
        let joining = self.joining().is_some();
        let _ = KvHost::handle(self, now, from, datagram, out);
        warn_if_foreign(self, refused);
        note_if_joined(self, joining);
    }
    fn tick(&mut self, now: Instant, out: &mut Outbox<'_>) {
        let joining = self.joining().is_some();
        let _ = KvHost::tick(self, now, out);
        note_if_joined(self, joining);
    }
    fn next_deadline(&self) -> Instant {
        KvHost::next_deadline(self)
    }
    fn stats_line(&self) -> String {
        host_stats(self)
    }
}
