//! IronKV: a sharded key-value store of `u64` keys and byte values.
//!
//! [`msg`] holds the key ranges and IronKV's inner messages; [`reliable`] is reliable single
//! delivery (reusable by any protocol); [`delegation`] the bounded delegation map;
//! [`storage`] the storage trait and its heap-free implementation; [`host`] the sans-IO
//! host ([`KvHost`]); [`client`] the sans-IO client ([`KvClient`]); [`config`] the cluster
//! configuration; [`durable`] what a durable binding stores and how a host is rebuilt; [`status`] what a
//! host reports to `fleet kv status`. `docs/kv.md` describes the design and how it differs from IronKV.

pub mod client;
pub mod config;
pub mod delegation;
pub mod durable;
pub mod host;
pub mod join;
pub mod msg;
pub mod reliable;
pub mod status;
pub mod storage;

pub use client::{ClientError, Completed, Event, KvClient, Outcome, Request};
pub use config::{KvConfig, KvParams, MSG_OVERHEAD_BYTES};
pub use delegation::{DelegationMap, HostId, MapFull, LOST};
pub use durable::{ImageCursor, KvRecord, RecoverError, Replayed, KV_RECORD_OVERHEAD_BYTES};
pub use host::{Incoming, KvCounters, KvHost, KvRecovery, Outgoing, Step, Timer};
pub use msg::{Body, KeyBound, KeyRange, KvError, ShardError};
pub use reliable::{Frame, PeerKind, Refusal, Reliable, ReliableParams, Verdict};
pub use status::{KvStatus, STATUS_REPLY_OVERHEAD_BYTES};
pub use storage::{HeaplessStore, Storage, StorageError};
