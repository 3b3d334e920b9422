//! What travels on the model's network: the engine's wire bytes, and the history notes a
//! client sends itself; a one-line description of a datagram for traces.

use std::fmt;

use fleet_engine::kv::{Body, Frame};
use fleet_engine::wire::{self, Protocol};

/// How a client operation ended, as a note carries it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NoteRet {
    /// Refused by the host: no effect.
    Refused,
    /// A Set took effect.
    Written,
    /// A Get's value.
    Value(Option<Vec<u8>>),
}

/// A history note a client sends itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Note {
    /// Operation `index` of the client's script was submitted.
    Invoke {
        /// Client index (among workload clients).
        client: usize,
        /// Script index.
        index: usize,
    },
    /// Operation `index` completed with `ret`.
    Return {
        /// Client index.
        client: usize,
        /// Script index.
        index: usize,
        /// The result.
        ret: NoteRet,
    },
}

/// A message on the model's network.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Msg {
    /// The engine's wire bytes, shared (each successor state clones the network; hashing
    /// and ordering are those of the bytes, as with a `Vec`).
    Wire(std::sync::Arc<[u8]>),
    /// A history note (auxiliary; never changes an actor).
    Note(Note),
}

/// A one-line description of a KV datagram.
pub fn describe(bytes: &[u8]) -> String {
    match wire::decode::<Frame<'_>>(Protocol::Kv, bytes) {
        Ok(Frame::Ack { seqno }) => format!("Ack#{seqno}"),
        Ok(Frame::Refused { seqno, reason }) => format!("Refused#{seqno}({reason:?})"),
        Ok(Frame::Join { nonce, from_key }) => format!("Join(nonce {nonce}, from {from_key})"),
        Ok(Frame::JoinReply { nonce, base, joining, seen_other, next, runs, .. }) => format!(
            "JoinReply(nonce {nonce}, base {base}, joining {joining}, seen other {seen_other}, next {next:?}, {:?})",
            fleet_engine::kv::join::runs(runs.0).collect::<Vec<_>>()
        ),
        Ok(Frame::StatusRequest { nonce, from_key }) => format!("StatusRequest(nonce {nonce}, from {from_key})"),
        Ok(Frame::StatusReply { nonce, host, next, .. }) => {
            format!("StatusReply(nonce {nonce}, host {host}, next {next:?})")
        }
        Ok(Frame::Single { base, seqno, ack, body }) => {
            let b = match postcard::from_bytes::<Body<'_>>(body.0) {
                Ok(Body::GetRequest { key }) => format!("Get({key})"),
                Ok(Body::SetRequest { key, value }) => {
                    format!("Set({key}, {:?})", value.map(|v| String::from_utf8_lossy(v.0).into_owned()))
                }
                Ok(Body::Reply { req, key, value }) => {
                    format!("Reply(req {req}, {key}, {:?})", value.map(|v| String::from_utf8_lossy(v.0).into_owned()))
                }
                Ok(Body::Redirect { req, key, owner }) => format!("Redirect(req {req}, {key} -> {owner:?})"),
                Ok(Body::Shard { range, recipient }) => format!("Shard({range:?} -> {recipient:?})"),
                Ok(Body::Delegate { transfer, range, part, parts, total_pairs, .. }) => {
                    format!("Delegate(#{transfer} {range:?} {}/{parts}, {total_pairs} pairs)", part + 1)
                }
                Ok(Body::Sharded { req }) => format!("Sharded(req {req})"),
                Ok(Body::Error { req, error }) => format!("Error(req {req}, {error:?})"),
                Err(_) => "undecodable body".to_string(),
            };
            format!("#{seqno}(base {base}, ack {ack}) {b}")
        }
        Err(_) => format!("undecodable {bytes:02x?}"),
    }
}

impl fmt::Debug for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Msg::Wire(b) => f.write_str(&describe(b)),
            Msg::Note(n) => write!(f, "note {n:?}"),
        }
    }
}
