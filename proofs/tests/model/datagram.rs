//! The model's network: datagrams (the engine's wire bytes), the actors' endpoints, and
//! one-line descriptions of messages for traces.

use std::fmt;
use std::sync::Arc;

use fleet_engine::rsl::apps::counter::Counter;
use fleet_engine::rsl::msg::SupplyPart;
use fleet_engine::rsl::{Ballot, RslMsg};
use fleet_engine::wire::{self, Bytes, Protocol};
use fleet_engine::Endpoint;
use fleet_proofs::rsl_invariants as inv;

use super::MReplica;

/// A datagram on the model's network: the engine's wire bytes, shared. Every successor
/// state clones the network, and a copy of every datagram in flight in each was a fifth of
/// the checkers' time; hashing and ordering are those of the bytes, as with a `Vec`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Datagram(pub Arc<[u8]>);

impl Datagram {
    pub(super) fn decode(&self) -> Option<RslMsg<'_>> {
        wire::decode::<RslMsg<'_>>(Protocol::Rsl, &self.0).ok()
    }
}

pub(super) fn bal(b: Ballot) -> String {
    format!("{}.{}", b.seqno, b.proposer)
}

/// A one-line description of a message, for counterexample traces.
pub fn describe(msg: &RslMsg<'_>) -> String {
    match msg {
        RslMsg::Request { seqno, request } if request.0 == Counter::QUERY => format!("Query#{seqno}"),
        RslMsg::Request { seqno, .. } => format!("Request#{seqno}"),
        RslMsg::Requests { seqno, .. } => format!("Requests#{seqno}"),
        RslMsg::Replies { seqno, .. } => format!("Replies#{seqno}"),
        RslMsg::StatusRequest { nonce } => format!("StatusRequest#{nonce}"),
        RslMsg::StatusReply { nonce, replica, .. } => format!("StatusReply#{nonce} from {replica}"),
        RslMsg::ReadConfirm { bal: b, round } => format!("ReadConfirm({}, round {round})", bal(*b)),
        RslMsg::ReadAck { bal: b, round } => format!("ReadAck({}, round {round})", bal(*b)),
        RslMsg::ForwardedRequest { client, seqno, .. } => format!("ForwardedRequest({client:?}#{seqno})"),
        RslMsg::RecoverRequest { nonce, catching_up } => format!("RecoverRequest#{nonce}(catching up {catching_up})"),
        RslMsg::RecoverReply { nonce, rejoining, fresh, ballot, next_opn, .. } => {
            format!("RecoverReply#{nonce}(rejoining {rejoining} fresh {fresh} {} op{next_opn})", bal(*ballot))
        }
        RslMsg::Reply { seqno, reply } => {
            let v = reply.0.get(..8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
            format!("Reply#{seqno}={v:?}")
        }
        RslMsg::OneA { bal: b } => format!("1a({})", bal(*b)),
        RslMsg::OneB { bal: b, log_truncation_point, chunk, chunks, vote, .. } => {
            let v = vote.map(|v| format!(" vote op{}@{}={}", v.opn, bal(v.bal), inv::describe_batch(v.batch.0)));
            format!("1b({}, ltp {log_truncation_point}, {}/{chunks}{})", bal(*b), chunk + 1, v.unwrap_or_default())
        }
        RslMsg::TwoA { bal: b, opn, batch } => format!("2a({}, op{opn}, {})", bal(*b), inv::describe_batch(batch.0)),
        RslMsg::TwoB { bal: b, opn, opn_ckpt } => format!("2b({}, op{opn}, ckpt {opn_ckpt})", bal(*b)),
        RslMsg::Heartbeat { bal: b, suspicious, opn_ckpt } => {
            format!("Heartbeat({}{}, ckpt {opn_ckpt})", bal(*b), if *suspicious { ", suspicious" } else { "" })
        }
        RslMsg::StartingPhase2 { bal: b, log_truncation_point } => {
            format!("StartingPhase2({}, ltp {log_truncation_point})", bal(*b))
        }
        RslMsg::AppStateRequest { bal: b, have, .. } => format!("AppStateRequest({}, from op{have})", bal(*b)),
        RslMsg::AppStateSupply { part, .. } => match part {
            SupplyPart::App { id, offset, bytes } => {
                format!("AppStateSupply(op{}, app@{offset}+{})", id.opn, bytes.0.len())
            }
            SupplyPart::Cache { id, index, .. } => format!("AppStateSupply(op{}, cache@{index})", id.opn),
            SupplyPart::Executed { opn, bal: b, .. } => format!("AppStateSupply(executed op{opn} in {})", bal(*b)),
        },
        RslMsg::Change { seqno, .. } => format!("Change#{seqno}"),
        RslMsg::MembersRequest { nonce } => format!("MembersRequest#{nonce}"),
        RslMsg::Members { nonce, epoch, start, .. } => format!("Members#{nonce}(epoch {epoch} from op{start})"),
    }
}

impl fmt::Debug for Datagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.decode() {
            Some(m) => f.write_str(&describe(&m)),
            None => write!(f, "undecodable {:02x?}", self.0),
        }
    }
}

/// A replica's own endpoint (its place in its epoch's list; a retired replica keeps the
/// list of the epoch it retired from).
pub fn own_endpoint(r: &MReplica) -> Endpoint {
    r.own_endpoint()
}

/// Endpoint of actor `id` in a cluster of `n` replicas (replicas first, then clients).
pub fn endpoint(id: usize, n: usize) -> Endpoint {
    if id < n {
        Endpoint::v4([10, 0, 0, id as u8 + 1], 7000)
    } else {
        Endpoint::v4([10, 0, 1, (id - n) as u8 + 1], 9000)
    }
}

/// Actor id of `ep`.
pub fn actor_of(ep: Endpoint, n: usize, actors: usize) -> Option<usize> {
    (0..actors).find(|&i| endpoint(i, n) == ep)
}

/// A datagram from a member of cluster `cluster` (the planted bugs forge their messages as
/// a member would).
pub(super) fn encode(cluster: u32, msg: &RslMsg<'_>) -> Vec<u8> {
    let mut buf = [0u8; 512];
    let len = wire::encode_rsl(cluster, msg, &mut buf).expect("model messages fit 512 bytes");
    buf[..len].to_vec()
}

/// Keeps `Bytes` in scope for message construction in tests.
pub fn bytes(b: &[u8]) -> Bytes<'_> {
    Bytes(b)
}
