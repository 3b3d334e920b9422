//! The clients the load generator drives: the engine's RSL client running the replicated
//! map, and the IronKV client, behind one trait.

use fleet_engine::kv::{Event as KvEvent, Outcome as KvOutcome, Request as KvRequest};
use fleet_engine::rsl::apps::kv::{KvOp, KvReply};
use fleet_engine::rsl::group;
use fleet_engine::wire::Bytes;
use fleet_engine::{Endpoint, Instant, Outbox};
use fleet_io_std::kv::StdKvClient;
use fleet_io_std::rsl::StdClient;

/// One operation the load generator wants to run: a read of `key` (`write: None`) or a
/// write of `write` to it.
#[derive(Debug, Clone, Copy)]
pub struct PlannedOp<'a> {
    /// The key.
    pub key: u64,
    /// The value to write, or `None` for a read.
    pub write: Option<&'a [u8]>,
}

/// A sans-IO client the load generator can drive: one outstanding request at a time, which
/// may carry several operations (a pipelined RSL session).
pub trait LoadClient: Send + 'static {
    /// Starts the first operations of `ops` as one request (a client that does not pipeline
    /// takes only the first); returns how many it sent, 0 if it could not submit.
    fn start(&mut self, now: Instant, ops: &[PlannedOp<'_>], out: &mut Outbox<'_>) -> usize;
    /// A received datagram; true when it completed the outstanding request, with one result
    /// per operation appended to `results` in order.
    fn on_datagram(
        &mut self,
        now: Instant,
        from: Endpoint,
        bytes: &[u8],
        out: &mut Outbox<'_>,
        results: &mut Vec<OpResult>,
    ) -> bool;
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
    /// Whether every datagram for this client comes from the address it last sent to, so
    /// that its socket may be connected there ([`super::options::BenchOptions::connect`]).
    /// False unless a client says so: an RSL follower passes a request on to the leader,
    /// and the leader answers (a connected RSL client misses every answer after a leader
    /// change).
    fn answered_by_destination(&self) -> bool {
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

/// The RSL client driving the replicated KV app (keys as 8 big-endian bytes): the client,
/// the largest request the replicas take (one batch's room: a larger one is never proposed),
/// and how many operations go in one request (1: no pipelining; more: a group per request).
pub struct RslLoad {
    /// The engine's client.
    pub client: Box<StdClient>,
    /// The largest request (or group) the replicas take.
    pub max_request: usize,
    /// Operations per request.
    pub pipeline: usize,
    /// Encoded operations of the group being built (reused).
    encoded: Vec<Vec<u8>>,
}

impl RslLoad {
    /// A load client over `client`, sending `pipeline` operations per request.
    pub fn new(client: Box<StdClient>, max_request: usize, pipeline: usize) -> RslLoad {
        RslLoad { client, max_request, pipeline: pipeline.max(1), encoded: Vec::new() }
    }
}

fn encode_op(op: &PlannedOp<'_>, into: &mut Vec<u8>) -> bool {
    let kb = op.key.to_be_bytes();
    let kv = match op.write {
        None => KvOp::Get(Bytes(&kb)),
        Some(v) => KvOp::Put(Bytes(&kb), Bytes(v)),
    };
    into.clear();
    into.resize(op.write.map_or(0, <[u8]>::len) + 64, 0);
    match kv.encode(into) {
        Ok(len) => {
            into.truncate(len);
            true
        }
        Err(_) => false,
    }
}

fn result_of(reply: Option<&[u8]>) -> OpResult {
    match reply.map(KvReply::decode) {
        Some(Some(KvReply::Value(v))) => OpResult::Value(v.map(|b| b.0.to_vec())),
        Some(Some(KvReply::Done)) => OpResult::Done,
        Some(_) => OpResult::Refused,
        // Applied, but its reply had no room in the group's: the value is unknown.
        None => OpResult::Lost,
    }
}

impl LoadClient for RslLoad {
    fn start(&mut self, now: Instant, ops: &[PlannedOp<'_>], out: &mut Outbox<'_>) -> usize {
        let Some(first) = ops.first() else { return 0 };
        if self.pipeline == 1 {
            if self.encoded.is_empty() {
                self.encoded.push(Vec::new());
            }
            let req = &mut self.encoded[0];
            let sent =
                encode_op(first, req) && req.len() <= self.max_request && self.client.submit(now, req, out).is_ok();
            return usize::from(sent);
        }
        let n = ops.len().min(self.pipeline);
        self.encoded.resize_with(n, Vec::new);
        for (op, buf) in ops.iter().zip(self.encoded.iter_mut()) {
            if !encode_op(op, buf) {
                return 0;
            }
        }
        let requests: Vec<&[u8]> = self.encoded[..n].iter().map(Vec::as_slice).collect();
        match self.client.submit_group(now, &requests, out) {
            Ok((_, packed)) => packed,
            Err(_) => 0,
        }
    }
    fn on_datagram(
        &mut self,
        now: Instant,
        from: Endpoint,
        bytes: &[u8],
        _out: &mut Outbox<'_>,
        results: &mut Vec<OpResult>,
    ) -> bool {
        let Some(done) = self.client.handle(now, from, bytes) else { return false };
        match self.pipeline {
            1 => results.push(result_of(Some(done.reply))),
            _ => results.extend(group::replies(done.reply).map(result_of)),
        }
        true
    }
    fn tick(&mut self, now: Instant, out: &mut Outbox<'_>) {
        self.client.tick(now, out);
    }
    fn next_deadline(&self) -> Instant {
        self.client.next_deadline()
    }
    fn cancel(&mut self) {
        self.client.cancel();
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
    fn start(&mut self, now: Instant, ops: &[PlannedOp<'_>], out: &mut Outbox<'_>) -> usize {
        let Some(op) = ops.first() else { return 0 };
        let req = match op.write {
            None => KvRequest::Get(op.key),
            Some(v) => KvRequest::Set(op.key, v),
        };
        self.1 = false;
        usize::from(self.0.submit(now, req, out).is_ok())
    }
    fn on_datagram(
        &mut self,
        now: Instant,
        from: Endpoint,
        bytes: &[u8],
        out: &mut Outbox<'_>,
        results: &mut Vec<OpResult>,
    ) -> bool {
        let result = match self.0.handle(now, from, bytes, out) {
            None => return false,
            Some(KvEvent::Completed(c)) => match c.outcome {
                KvOutcome::Value(v) => OpResult::Value(v.map(<[u8]>::to_vec)),
                KvOutcome::Written | KvOutcome::Sharded => OpResult::Done,
                KvOutcome::Failed(_) => OpResult::Refused,
            },
            Some(KvEvent::Lost { .. }) => OpResult::Lost,
            Some(KvEvent::Refused { .. }) => {
                self.1 = true;
                return false;
            }
        };
        results.push(result);
        true
    }
    fn refused(&self) -> bool {
        self.1
    }
    /// A KV host answers each request itself, a redirect included; a client redirected
    /// sends to the owner next, and its socket follows.
    fn answered_by_destination(&self) -> bool {
        true
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
