//! The std KV host type: the engine's [`KvHost`] sized by [`crate::capacity`] over a
//! [`StdStore`], and how the event loop drives it.

use fleet_engine::kv::storage::Storage;
use fleet_engine::kv::{KvHost, LOST};
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
        let joining = self.joining().is_some();
        let _ = KvHost::handle(self, now, from, datagram, out);
        note_if_joined(self, joining);
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
        let joining = self.joining().is_some();
        let _ = KvHost::tick(self, now, out);
        note_if_joined(self, joining);
    }
    fn next_deadline(&self) -> Instant {
        KvHost::next_deadline(self)
    }
    fn stats_line(&self) -> String {
        let joining = if self.joining().is_some() { " joining" } else { "" };
        format!("keys={}{joining} {:?} {}", self.storage().len(), self.counters(), stats_fields(self.stats()))
    }
}

/// Logs how a host that started without state ended its join ([`fleet_engine::kv::join`]).
pub fn note_if_joined<S: Storage, const H: usize, const M: usize, const P: usize, const U: usize, const D: usize>(
    host: &KvHost<S, H, M, P, U, D>,
    was_joining: bool,
) {
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
