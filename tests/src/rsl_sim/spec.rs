//! The glue between the engine and the spec: the spec app the refinement checker replays,
//! the engine's batch and digest codec, client identities, the abstraction of a replica's app,
//! client calls and replies in the engine's encoding, and the client history in the
//! linearizability checker's format.

use std::collections::BTreeMap;

use fleet_engine::rsl::apps::kv::{KvAppError, KvOp, KvReply};
use fleet_engine::rsl::batch::{self, EntryKind};
use fleet_engine::rsl::group;
use fleet_engine::wire::Bytes;
use fleet_engine::{Endpoint, IpAddr};
use fleet_proofs::checkers::rsl::RslCodec;
use fleet_proofs::checkers::Violation;
use fleet_proofs::linearizability::Operation;
use fleet_proofs::spec::bytes_kv::{BytesKvApp, BytesKvOp, BytesKvRet};
use fleet_proofs::spec::rsl::{AppRequest, AppSpec};
use fleet_proofs::spec::SeqSpec;

use super::clients::{KvCall, KvResult};
use super::{RslSim, SimApp};

/// The spec app the refinement checker replays: IronFleet's byte-KV over the engine's
/// postcard-encoded `KvOp` / `KvReply` (the spec half is `fleet_proofs`' `BytesKvApp`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SpecKv(pub BytesKvApp);

impl AppSpec for SpecKv {
    fn query(&self, request: &[u8]) -> Option<Vec<u8>> {
        matches!(KvOp::decode(request), Some(KvOp::Get(_))).then(|| self.clone().apply(request))
    }

    fn apply(&mut self, request: &[u8]) -> Vec<u8> {
        let reply_of = |r: KvReply<'_>| {
            let mut buf = [0u8; 256];
            postcard::to_slice(&r, &mut buf).map(|b| b.to_vec()).unwrap_or_default()
        };
        let Some(op) = KvOp::decode(request) else { return reply_of(KvReply::Error(KvAppError::Malformed)) };
        let op = match op {
            KvOp::Get(k) => BytesKvOp::Get(k.0.to_vec()),
            KvOp::Put(k, v) => BytesKvOp::Put(k.0.to_vec(), v.0.to_vec()),
            KvOp::Delete(k) => BytesKvOp::Delete(k.0.to_vec()),
        };
        match self.0.step(&op) {
            BytesKvRet::Value(v) => reply_of(KvReply::Value(v.as_deref().map(Bytes))),
            BytesKvRet::Ok => reply_of(KvReply::Done),
        }
    }
}

/// How the engine encodes batches and its executed-digest chain (`executor::chain_digest`,
/// as `Executor::execute` computes it).
#[derive(Clone, Copy, Debug)]
pub struct EngineCodec;

/// FNV-1a's prime: a stable identity for IPv6 client endpoints (`ep_id`).
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl RslCodec for EngineCodec {
    fn decode_batch(bytes: &[u8]) -> Option<Vec<AppRequest>> {
        batch::validate(bytes, usize::MAX).ok()?;
        let mut requests = Vec::new();
        for e in batch::entries(bytes) {
            let client = ep_id(e.client);
            match e.kind {
                EntryKind::Single => {
                    requests.push(AppRequest { client, seqno: spec_seqno(e.seqno, 0), request: e.request.0.to_vec() })
                }
                // A membership change is the replica's, not the application's.
                EntryKind::Change => {}
                EntryKind::Group => {
                    requests.extend(group::requests(e.request.0).enumerate().map(|(i, r)| AppRequest {
                        client,
                        seqno: spec_seqno(e.seqno, i),
                        request: r.to_vec(),
                    }))
                }
            }
        }
        Some(requests)
    }

    fn initial_digest() -> u64 {
        fleet_engine::rsl::executor::INITIAL_EXECUTED_DIGEST
    }

    fn chain(prev: u64, opn: u64, batch: &[u8]) -> u64 {
        fleet_engine::rsl::executor::chain_digest(prev, opn, batch)
    }
}

/// The spec's seqno of request `index` of the client's request `seqno` (0 for a request
/// that is not a group). The spec has no groups: a group of `k` requests is `k` requests
/// with consecutive spec seqnos, all above every earlier request's and below every later
/// one's, so the spec's exactly-once rule applies a group whole, in order, once, and a
/// re-proposed group not at all, which is what the engine promises.
pub fn spec_seqno(seqno: u64, index: usize) -> u64 {
    const _: () = assert!(group::MAX_GROUP_REQUESTS <= 1 << GROUP_BITS);
    (seqno << GROUP_BITS) | index as u64
}

/// Bits of a spec seqno that number a request inside its group.
const GROUP_BITS: u32 = 6;

/// A client's identity in the spec: its endpoint packed into a `u64`.
pub fn ep_id(ep: Endpoint) -> u64 {
    match ep.ip {
        IpAddr::V4(o) => (u64::from(u32::from_be_bytes(o)) << 16) | u64::from(ep.port),
        IpAddr::V6(o) => {
            o.iter().fold(u64::from(ep.port), |h, b| (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME)) | (1 << 63)
        }
    }
}

/// The abstraction of a replica's app: the spec map read through `KvApp::get` over the key
/// universe; a map with keys outside the universe gets a marker key so it never matches.
pub(super) fn abstract_app(app: &SimApp, keys: u8) -> SpecKv {
    let mut map = BTreeMap::new();
    for k in 0..keys {
        let key = [b'k', b'0' + k];
        if let Some(v) = app.get(&key) {
            map.insert(key.to_vec(), v.to_vec());
        }
    }
    if app.len() != map.len() {
        map.insert(b"<keys outside the workload>".to_vec(), (app.len() as u64).to_le_bytes().to_vec());
    }
    SpecKv(BytesKvApp { map })
}

pub(super) fn encode_call(call: &KvCall, buf: &mut [u8]) -> usize {
    match call {
        KvCall::Get(k) => KvOp::Get(Bytes(k)).encode(buf),
        KvCall::Put(k, v) => KvOp::Put(Bytes(k), Bytes(v)).encode(buf),
        KvCall::Delete(k) => KvOp::Delete(Bytes(k)).encode(buf),
    }
    .expect("small ops fit 256 bytes")
}

pub(super) fn decode_result(reply: &[u8]) -> KvResult {
    match KvReply::decode(reply) {
        Some(KvReply::Value(v)) => KvResult::Value(v.map(|b| b.0.to_vec())),
        Some(KvReply::Done) => KvResult::Done,
        _ => KvResult::Error,
    }
}

impl RslSim {
    /// The client history in the checker's format (byte-KV ops; pending ops have no result).
    pub fn lin_history(&self) -> Result<Vec<Operation<BytesKvOp, BytesKvRet>>, Violation> {
        let mut ops = Vec::with_capacity(self.history.len());
        for (i, h) in self.history.iter().enumerate() {
            let op = match &h.call {
                KvCall::Get(k) => BytesKvOp::Get(k.clone()),
                KvCall::Put(k, v) => BytesKvOp::Put(k.clone(), v.clone()),
                KvCall::Delete(k) => BytesKvOp::Delete(k.clone()),
            };
            let complete = match &h.complete {
                None => None,
                Some((t, KvResult::Value(v))) => Some((*t, BytesKvRet::Value(v.clone()))),
                Some((t, KvResult::Done)) => Some((*t, BytesKvRet::Ok)),
                Some((_, KvResult::Error)) => {
                    return Err(Violation::new(
                        "linearizability",
                        "service spec (linearizable state machine)",
                        format!("operation #{i} ({:?}) of client {} got an error reply", h.call, h.client),
                    ))
                }
            };
            ops.push(Operation { client: h.client as u64, op, invoke_us: h.invoke_us, complete });
        }
        Ok(ops)
    }
}
