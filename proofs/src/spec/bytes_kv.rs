//! A key-value app over byte-string keys and values, for hosting on RSL.
//!
//! The spec works on decoded operations ([`BytesKvApp`] is a [`SeqSpec`]). To host it (or any
//! other `SeqSpec`) as an RSL [`AppSpec`], wrap it in [`EncodedApp`] with a [`RequestCodec`]
//! that states how request and reply bytes are encoded; the spec itself does not care.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use super::rsl::AppSpec;
use super::{KeyedOp, SeqSpec};

/// The app state: a map from byte keys to byte values.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct BytesKvApp {
    /// Current contents.
    pub map: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// A decoded request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BytesKvOp {
    /// Read a key.
    Get(Vec<u8>),
    /// Write `value` to `key`.
    Put(Vec<u8>, Vec<u8>),
    /// Remove a key.
    Delete(Vec<u8>),
}

/// A decoded reply.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BytesKvRet {
    /// Result of a Get.
    Value(Option<Vec<u8>>),
    /// Result of a Put or Delete.
    Ok,
}

impl SeqSpec for BytesKvApp {
    type Op = BytesKvOp;
    type Ret = BytesKvRet;

    fn is_read_only(op: &Self::Op) -> bool {
        matches!(op, BytesKvOp::Get(_))
    }

    fn step(&mut self, op: &BytesKvOp) -> BytesKvRet {
        match op {
            BytesKvOp::Get(k) => BytesKvRet::Value(self.map.get(k).cloned()),
            BytesKvOp::Put(k, v) => {
                self.map.insert(k.clone(), v.clone());
                BytesKvRet::Ok
            }
            BytesKvOp::Delete(k) => {
                self.map.remove(k);
                BytesKvRet::Ok
            }
        }
    }
}

impl KeyedOp for BytesKvOp {
    type Key = Vec<u8>;

    fn key(&self) -> Vec<u8> {
        match self {
            BytesKvOp::Get(k) | BytesKvOp::Put(k, _) | BytesKvOp::Delete(k) => k.clone(),
        }
    }

    fn is_blind_write(&self) -> bool {
        !matches!(self, BytesKvOp::Get(_))
    }
}

/// How a [`SeqSpec`]'s operations and results are carried in RSL request and reply bytes.
pub trait RequestCodec<S: SeqSpec> {
    /// Decodes request bytes; `None` if they are not a valid request.
    fn decode_request(bytes: &[u8]) -> Option<S::Op>;
    /// Encodes a result as reply bytes.
    fn encode_reply(ret: &S::Ret) -> Vec<u8>;
}

/// A [`SeqSpec`] hosted as an RSL [`AppSpec`] through codec `C`. A request that does not
/// decode leaves the state unchanged and gets an empty reply.
///
/// Equality, hashing and `Debug` look at the spec state only, so `C` needs no derives.
pub struct EncodedApp<S, C> {
    /// The decoded spec's state.
    pub spec: S,
    codec: PhantomData<fn() -> C>,
}

impl<S, C> EncodedApp<S, C> {
    /// Wraps a spec state.
    pub fn new(spec: S) -> Self {
        Self { spec, codec: PhantomData }
    }
}

impl<S: Clone, C> Clone for EncodedApp<S, C> {
    fn clone(&self) -> Self {
        Self::new(self.spec.clone())
    }
}

impl<S: PartialEq, C> PartialEq for EncodedApp<S, C> {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec
    }
}

impl<S: Eq, C> Eq for EncodedApp<S, C> {}

impl<S: core::hash::Hash, C> core::hash::Hash for EncodedApp<S, C> {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.spec.hash(state);
    }
}

impl<S: core::fmt::Debug, C> core::fmt::Debug for EncodedApp<S, C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("EncodedApp").field(&self.spec).finish()
    }
}

impl<S: SeqSpec, C: RequestCodec<S>> AppSpec for EncodedApp<S, C> {
    fn apply(&mut self, request: &[u8]) -> Vec<u8> {
        match C::decode_request(request) {
            Some(op) => C::encode_reply(&self.spec.step(&op)),
            None => Vec::new(),
        }
    }
}
