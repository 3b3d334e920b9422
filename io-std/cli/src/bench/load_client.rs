//! The clients the load generator drives: the engine's RSL client running the replicated
//! map, and the IronKV client, behind one trait.

use fleet_engine::kv::{Event as KvEvent, Outcome as KvOutcome, Request as KvRequest};
use fleet_engine::rsl::apps::kv::{KvOp, KvReply};
use fleet_engine::wire::Bytes;
use fleet_engine::{Endpoint, Instant, Outbox};
use fleet_io_std::kv::StdKvClient;
use fleet_io_std::rsl::StdClient;

/// A sans-IO client the load generator can drive: one outstanding operation at a time.
pub trait LoadClient: Send + 'static {
    /// Starts a read of `key` (`write: None`) or a write of `write` to `key`; false if the
    /// client could not submit it.
    fn start(&mut self, now: Instant, key: u64, write: Option<&[u8]>, out: &mut Outbox<'_>) -> bool;
    /// A received datagram; `Some` when it completed the outstanding operation.
    fn on_datagram(&mut self, now: Instant, from: Endpoint, bytes: &[u8], out: &mut Outbox<'_>) -> Option<OpResult>;
    /// Timers.
    fn tick(&mut self, now: Instant, out: &mut Outbox<'_>);
    /// When `tick` must next run.
    fn next_deadline(&self) -> Instant;
    /// Gives up on the outstanding operation.
    fn cancel(&mut self);
    /// Whether the service refused the outstanding operation's request since it started
    /// (back-pressure it retries through, such as a full client table): an operation that
    /// then times out is counted as refused, not as a plain timeout.
    fn refused(&self) -> bool {
        false
    }
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// A read's value.
    Value(Option<Vec<u8>>),
    /// A write took effect.
    Done,
    /// The service refused it (nothing changed).
    Refused,
    /// The service gave up delivering its reply: it may or may not have taken effect.
    Lost,
}

/// The RSL client driving the replicated KV app (keys as 8 big-endian bytes), and the
/// largest request the replicas take (one batch's room: a larger one is never proposed).
pub struct RslLoad(pub Box<StdClient>, pub usize);

impl LoadClient for RslLoad {
    fn start(&mut self, now: Instant, key: u64, write: Option<&[u8]>, out: &mut Outbox<'_>) -> bool {
        let kb = key.to_be_bytes();
        let op = match write {
            None => KvOp::Get(Bytes(&kb)),
            Some(v) => KvOp::Put(Bytes(&kb), Bytes(v)),
        };
        let mut req = vec![0u8; write.map_or(0, <[u8]>::len) + 64];
        let Ok(len) = op.encode(&mut req) else { return false };
        len <= self.1 && self.0.submit(now, &req[..len], out).is_ok()
    }
    fn on_datagram(&mut self, now: Instant, from: Endpoint, bytes: &[u8], _out: &mut Outbox<'_>) -> Option<OpResult> {
        let done = self.0.handle(now, from, bytes)?;
        Some(match KvReply::decode(done.reply) {
            Some(KvReply::Value(v)) => OpResult::Value(v.map(|b| b.0.to_vec())),
            Some(KvReply::Done) => OpResult::Done,
            _ => OpResult::Refused,
        })
    }
    fn tick(&mut self, now: Instant, out: &mut Outbox<'_>) {
        self.0.tick(now, out);
    }
    fn next_deadline(&self) -> Instant {
        self.0.next_deadline()
    }
    fn cancel(&mut self) {
        self.0.cancel();
    }
}

/// The IronKV client, and whether a host refused its outstanding operation's request.
pub struct KvLoad(pub Box<StdKvClient>, pub bool);

impl KvLoad {
    /// A load client over `client`.
    pub fn new(client: StdKvClient) -> KvLoad {
        KvLoad(Box::new(client), false)
    }
}

impl LoadClient for KvLoad {
    fn start(&mut self, now: Instant, key: u64, write: Option<&[u8]>, out: &mut Outbox<'_>) -> bool {
        let req = match write {
            None => KvRequest::Get(key),
            Some(v) => KvRequest::Set(key, v),
        };
        self.1 = false;
        self.0.submit(now, req, out).is_ok()
    }
    fn on_datagram(&mut self, now: Instant, from: Endpoint, bytes: &[u8], out: &mut Outbox<'_>) -> Option<OpResult> {
        match self.0.handle(now, from, bytes, out)? {
            KvEvent::Completed(c) => Some(match c.outcome {
                KvOutcome::Value(v) => OpResult::Value(v.map(<[u8]>::to_vec)),
                KvOutcome::Written | KvOutcome::Sharded => OpResult::Done,
                KvOutcome::Failed(_) => OpResult::Refused,
            }),
            KvEvent::Lost { .. } => Some(OpResult::Lost),
            KvEvent::Refused { .. } => {
                self.1 = true;
                None
            }
        }
    }
    fn refused(&self) -> bool {
        self.1
    }
    fn tick(&mut self, now: Instant, out: &mut Outbox<'_>) {
        self.0.tick(now, out);
    }
    fn next_deadline(&self) -> Instant {
        self.0.next_deadline()
    }
    fn cancel(&mut self) {
        self.0.cancel();
    }
}
