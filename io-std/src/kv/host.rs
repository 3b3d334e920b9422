//! The std KV host type: the engine's [`KvHost`] sized by [`crate::capacity`] over a
//! [`StdStore`], and how the event loop drives it.

use fleet_engine::kv::storage::Storage;
use fleet_engine::kv::KvHost;
use fleet_engine::{Endpoint, Instant, Outbox};

use super::store::StdStore;
use crate::capacity::{KV_DATAGRAM_BYTES, KV_DELEGATION_RUNS, KV_MAX_HOSTS, KV_PEERS, KV_UNACKED};
use crate::net::event_loop::{stats_fields, Host};

/// A std KV host: 16 hosts, 1024 delegation runs, 1024 peers (hosts and clients), 1024
/// unacked messages, 8 KiB datagrams.
pub type KvServerHost = KvHost<StdStore, KV_MAX_HOSTS, KV_DELEGATION_RUNS, KV_PEERS, KV_UNACKED, KV_DATAGRAM_BYTES>;

impl Host for KvServerHost {
    fn handle(&mut self, now: Instant, from: Endpoint, datagram: &[u8], out: &mut Outbox<'_>) {
        let refused = self.stats().foreign_cluster;
        let _ = KvHost::handle(self, now, from, datagram, out);
        let now_refused = self.stats().foreign_cluster;
        // The 1st, 2nd, 4th, ... of them: a misconfigured peer keeps sending.
        if now_refused != refused && now_refused.is_power_of_two() {
            if let Some((from, theirs)) = self.last_foreign() {
                tracing::warn!(
                    "refused a datagram from {}: its sender is configured for KV cluster {theirs:08x}, this host \
                     for {:08x} ({now_refused} refused so far). The config files differ: every host and client \
                     needs the same hosts in the same order, and the same max_value_bytes and max_datagram_bytes",
                    crate::net::to_socket_addr(from),
                    self.cluster()
                );
            }
        }
    }
    fn tick(&mut self, now: Instant, out: &mut Outbox<'_>) {
        let _ = KvHost::tick(self, now, out);
    }
    fn next_deadline(&self) -> Instant {
        KvHost::next_deadline(self)
    }
    fn stats_line(&self) -> String {
        format!("keys={} {:?} {}", self.storage().len(), self.counters(), stats_fields(self.stats()))
    }
}
