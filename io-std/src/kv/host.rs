//! The std KV host type: the engine's [`KvHost`] sized by [`crate::capacity`] over a
//! [`StdStore`], and how the event loop drives it.

use fleet_engine::kv::storage::Storage;
use fleet_engine::kv::KvHost;
use fleet_engine::{Endpoint, Instant, Outbox};

use super::store::StdStore;
use crate::capacity::{KV_DATAGRAM_BYTES, KV_DELEGATION_RUNS, KV_MAX_HOSTS, KV_PEERS, KV_UNACKED};
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

/// Host `id` of `setup` as it starts the first time (host 0 owns every key), on the heap:
/// a host is megabytes, built in place on the server thread's large stack.
#[inline(never)]
pub fn new_host(setup: &KvSetup, id: usize) -> Result<Box<KvServerHost>, ServerError> {
    KvServerHost::new(setup.config.clone(), id, empty_store(setup))
        .map(Box::new)
        .map_err(|e| ServerError::Config(e.to_string()))
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
    format!("keys={} {:?} {}", host.storage().len(), host.counters(), stats_fields(host.stats()))
}

impl Host for KvServerHost {
    fn handle(&mut self, now: Instant, from: Endpoint, datagram: &[u8], out: &mut Outbox<'_>) {
        let refused = self.stats().foreign_cluster;
        let _ = KvHost::handle(self, now, from, datagram, out);
        warn_if_foreign(self, refused);
    }
    fn tick(&mut self, now: Instant, out: &mut Outbox<'_>) {
        let _ = KvHost::tick(self, now, out);
    }
    fn next_deadline(&self) -> Instant {
        KvHost::next_deadline(self)
    }
    fn stats_line(&self) -> String {
        host_stats(self)
    }
}
