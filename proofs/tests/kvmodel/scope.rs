//! What the model explores: the scripted workload clients, the admin's Shard, timer
//! budgets, the peer-table size, the planted bugs, and the named scopes.

use fleet_engine::kv::{KeyBound, KeyRange, Request};
use fleet_proofs::spec::kv::KvOp;

/// One scripted client operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScriptOp {
    /// Read a key.
    Get(u64),
    /// Write a key.
    Set(u64, &'static [u8]),
}

impl ScriptOp {
    pub(super) fn spec(self) -> KvOp {
        match self {
            ScriptOp::Get(k) => KvOp::Get(k),
            ScriptOp::Set(k, v) => KvOp::Set(k, v.to_vec()),
        }
    }

    pub(super) fn request(self) -> Request<'static> {
        match self {
            ScriptOp::Get(k) => Request::Get(k),
            ScriptOp::Set(k, v) => Request::Set(k, v),
        }
    }
}

/// A workload client: where it sends its first request and what it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Script {
    /// The host it starts each operation at (`None`: the host it believes owns the key,
    /// host 0 while it knows nothing).
    pub start_at: Option<usize>,
    /// Its operations, one after the other.
    pub ops: &'static [ScriptOp],
}

/// A Shard the admin sends at start: `range` from host `from` (its owner) to host `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardCmd {
    /// The range.
    pub range: KeyRange,
    /// Its owner (the host the admin sends the command to).
    pub from: usize,
    /// The recipient.
    pub to: usize,
}

/// What the model explores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvScope {
    /// Hosts (at most 3).
    pub hosts: usize,
    /// Workload clients.
    pub clients: &'static [Script],
    /// The admin's Shard, if any.
    pub shard: Option<ShardCmd>,
    /// Timer firings per host.
    pub host_ticks: u8,
    /// Timer firings per client (the admin included).
    pub client_ticks: u8,
    /// Keys the ownership invariant samples (workload keys and range bounds).
    pub sample_keys: &'static [u64],
    /// A deliberately wrong variant.
    pub planted: Option<KvPlanted>,
    /// Hosts with room for two clients only ([`host::MHostNarrow`]), so clients are evicted.
    pub narrow_table: bool,
    /// A workload client acknowledges its last reply at once when its script is done (as
    /// the blocking client does), instead of on a timer firing.
    pub flush_when_done: bool,
    /// A host that may restart without its state once, at any moment (`kv::join`).
    pub restart_host: Option<usize>,
}

/// Bugs planted by wrapping actors (never in the engine).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvPlanted {
    /// After carrying out a Shard, the old owner keeps answering clients from a copy of its
    /// state before the Shard (split brain): its Delegate still goes out and the recipient
    /// takes the range over, but workload clients are served by the stale copy, which
    /// still believes it owns the range.
    ServesAfterDelegating,
    /// The host forgets the channels it evicted: a delayed copy of an evicted client's first
    /// request is taken as a new client's first message and executed a second time
    /// ([`host::forget_closed_channels`]).
    AcceptsStaleChannel,
    /// The host evicts a client it gave up on as if it had been settled (its refusals say
    /// nothing may have been lost): a client still waiting for a reply the host dropped sends
    /// the request again, and it runs twice ([`super::host::forget_lost`]).
    ForgetsGivingUp,
    /// A host restarted without its state takes up its initial ranges at once (host 0:
    /// every key, empty), instead of joining ([`super::host::AnyHost::restart_without_state`]).
    ClaimsInitialRanges,
}

const K_STAY: u64 = 5;
const K_MOVE: u64 = 15;
const MOVED: KeyRange = KeyRange { lo: KeyBound::Key(10), hi: KeyBound::Inf };

impl KvScope {
    /// CI: two hosts; host 0 moves `[10, ∞)` to host 1 while client 0 (starting at host 0)
    /// writes key 15 and client 1 (starting at host 1) reads it.
    pub const CI: KvScope = KvScope {
        hosts: 2,
        clients: &[
            Script { start_at: None, ops: &[ScriptOp::Set(K_MOVE, b"a")] },
            Script { start_at: Some(1), ops: &[ScriptOp::Get(K_MOVE)] },
        ],
        shard: Some(ShardCmd { range: MOVED, from: 0, to: 1 }),
        host_ticks: 0,
        client_ticks: 0,
        sample_keys: &[0, K_STAY, 9, 10, K_MOVE, u64::MAX],
        planted: None,
        narrow_table: false,
        flush_when_done: false,
        restart_host: None,
    };

    /// The planted-bug workload: client 0 (at host 0) reads key 5, then key 15; client 1
    /// (at host 1) writes key 15. With the range moved to host 1, a read of key 15 at a
    /// stale old owner, invoked after client 1's write completed, is not linearizable.
    pub const READ_AFTER_WRITE: KvScope = KvScope {
        hosts: 2,
        clients: &[
            Script { start_at: None, ops: &[ScriptOp::Get(K_STAY), ScriptOp::Get(K_MOVE)] },
            Script { start_at: Some(1), ops: &[ScriptOp::Set(K_MOVE, b"b")] },
        ],
        shard: Some(ShardCmd { range: MOVED, from: 0, to: 1 }),
        host_ticks: 0,
        client_ticks: 0,
        sample_keys: &[0, K_STAY, 9, 10, K_MOVE, u64::MAX],
        planted: None,
        narrow_table: false,
        flush_when_done: false,
        restart_host: None,
    };

    /// The smallest: host 0 moves `[10, ∞)` to host 1 while one client writes key 15.
    pub const TINY: KvScope = KvScope {
        hosts: 2,
        clients: &[Script { start_at: None, ops: &[ScriptOp::Set(K_MOVE, b"a")] }],
        shard: Some(ShardCmd { range: MOVED, from: 0, to: 1 }),
        host_ticks: 0,
        client_ticks: 0,
        sample_keys: &[0, K_STAY, 9, 10, K_MOVE, u64::MAX],
        planted: None,
        narrow_table: false,
        flush_when_done: false,
        restart_host: None,
    };

    /// Longer: client 0 writes key 15 twice, then reads key 5; client 1 reads key 15 and
    /// then writes it; one timer firing per host and per client.
    pub const LONG: KvScope = KvScope {
        hosts: 2,
        clients: &[
            Script {
                start_at: None,
                ops: &[ScriptOp::Set(K_MOVE, b"a"), ScriptOp::Set(K_MOVE, b"b"), ScriptOp::Get(K_STAY)],
            },
            Script { start_at: Some(1), ops: &[ScriptOp::Get(K_MOVE), ScriptOp::Set(K_MOVE, b"c")] },
        ],
        shard: Some(ShardCmd { range: MOVED, from: 0, to: 1 }),
        host_ticks: 1,
        client_ticks: 1,
        sample_keys: &[0, K_STAY, 9, 10, K_MOVE, u64::MAX],
        planted: None,
        narrow_table: false,
        flush_when_done: false,
        restart_host: None,
    };

    /// Eviction: one host with room for two clients; client 0 writes `a` to key 15,
    /// client 1 writes `b` to it, client 2 reads key 5, then key 15 twice. Each acks its
    /// last reply when done, so it is settled and may be evicted; client 2's first request
    /// finds the table full and evicts one. Every request stays in the network and may be
    /// delivered again later: a second execution of a write between client 2's two reads
    /// of key 15 (`b` then `a`, both writes completed before the first read) is not
    /// linearizable.
    pub const EVICTION: KvScope = KvScope {
        hosts: 1,
        clients: &[
            Script { start_at: None, ops: &[ScriptOp::Set(K_MOVE, b"a")] },
            Script { start_at: None, ops: &[ScriptOp::Set(K_MOVE, b"b")] },
            Script { start_at: None, ops: &[ScriptOp::Get(K_STAY), ScriptOp::Get(K_MOVE), ScriptOp::Get(K_MOVE)] },
        ],
        shard: None,
        host_ticks: 0,
        client_ticks: 0,
        sample_keys: &[0, K_STAY, K_MOVE, u64::MAX],
        planted: None,
        narrow_table: true,
        flush_when_done: true,
        restart_host: None,
    };

    /// Giving up: one host; client 0 writes `a` to key 15 and may never hear back, the
    /// host retransmitting its reply twice and then giving up on it (three timer firings,
    /// `give_up_after` 2) while client 0 retransmits once; client 1 reads key 15, writes `b`,
    /// reads it again. A second execution of client 0's write after client 1's makes client
    /// 1 read `a` twice around its own `b`, which is not linearizable.
    pub const GIVE_UP: KvScope = KvScope {
        hosts: 1,
        clients: &[
            Script { start_at: None, ops: &[ScriptOp::Set(K_MOVE, b"a")] },
            Script {
                start_at: None,
                ops: &[ScriptOp::Get(K_MOVE), ScriptOp::Set(K_MOVE, b"b"), ScriptOp::Get(K_MOVE)],
            },
        ],
        shard: None,
        host_ticks: 3,
        client_ticks: 1,
        sample_keys: &[0, K_MOVE, u64::MAX],
        planted: None,
        narrow_table: false,
        flush_when_done: true,
        restart_host: None,
    };

    /// Restart without state: client 0 writes `a` to key 15 at host 0, client 1 reads key 5
    /// and then key 15 at host 0; host 0 may restart without its state once, at any moment (any number of the
    /// write's datagrams may be in flight). A host that took up its initial ranges would
    /// answer the read "not found" after the write completed; the real rule answers it
    /// "lost" (or ends it with an unknown outcome), never with a wrong value.
    pub const AMNESIA: KvScope = KvScope {
        hosts: 2,
        clients: &[
            Script { start_at: Some(0), ops: &[ScriptOp::Set(K_MOVE, b"a")] },
            Script { start_at: Some(0), ops: &[ScriptOp::Get(K_STAY), ScriptOp::Get(K_MOVE)] },
        ],
        shard: None,
        host_ticks: 2,
        client_ticks: 1,
        sample_keys: &[0, K_STAY, K_MOVE, u64::MAX],
        planted: None,
        narrow_table: false,
        flush_when_done: false,
        restart_host: Some(0),
    };

    pub(super) fn actors(&self) -> usize {
        self.hosts + self.clients.len() + 1
    }

    pub(super) fn admin(&self) -> usize {
        self.hosts + self.clients.len()
    }
}
