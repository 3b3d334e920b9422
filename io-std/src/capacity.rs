//! Compile-time capacities of the std servers and clients, defined once. The configuration
//! file is checked against them ([`crate::config`]), and the RSL and KV modules size their
//! engine types by them, so neither side imports the other for a number.

/// Most replicas a std RSL cluster may have.
pub const MAX_REPLICAS: usize = 16;
/// Log-window capacity of a std replica (`max_log_length` may be up to this).
pub const SERVER_WINDOW: usize = 16;
/// Datagram capacity of a std replica and client (`max_datagram_bytes` may be up to this).
pub const SERVER_DATAGRAM_BYTES: usize = 65507;
/// Bytes of requests a std replica's proposer may queue.
pub const REQUEST_QUEUE_BYTES: usize = 1 << 20;
/// Clients a std replica's reply cache remembers (also its per-epoch request tracking).
pub const REPLY_CACHE_CLIENTS: usize = 4096;
/// Longest reply a std replica's application may give.
pub const REPLY_BYTES: usize = 1100;
/// Bytes of executed batches a std replica retains (for replicas that fall behind, and for
/// its durable log): about two seconds of a loaded 3-replica cluster, so a replica paused
/// that long catches up from the batches alone, and a snapshot transfer of that long ends
/// with the batches after it still at hand.
pub const RETAINED_TAIL_BYTES: usize = 8 << 20;
/// Longest key of the replicated map the std servers run.
pub const KEY_BYTES: usize = 64;
/// Longest value of the replicated map the std servers run.
pub const VALUE_BYTES: usize = 1024;
/// Default key capacity of the replicated map and of each KV host's store.
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;

/// Most hosts in a std KV cluster.
pub const KV_MAX_HOSTS: usize = 16;
/// Datagram capacity of std KV hosts and clients.
pub const KV_DATAGRAM_BYTES: usize = 8192;
/// Runs of a std KV host's delegation map.
pub const KV_DELEGATION_RUNS: usize = 1024;
/// Peers (hosts and clients) a std KV host keeps a reliable channel with.
pub const KV_PEERS: usize = 1024;
/// Unacknowledged messages a std KV host keeps for retransmission.
pub const KV_UNACKED: usize = 1024;
/// Unacknowledged messages a std KV client keeps per host.
pub const KV_CLIENT_UNACKED: usize = 8;

/// Stack reserved for a server thread: engine values are large and built in place (the
/// memory is reserved, not committed, until used).
pub const SERVER_STACK_BYTES: usize = 256 << 20;
