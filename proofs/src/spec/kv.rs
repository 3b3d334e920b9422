//! IronKV's spec: a plain hash table from `u64` keys to byte values.
//!
//! IronFleet's `SetRequest(k, None)` (a Set with an absent value) is [`KvOp::Delete`] here.
//! The original limits values to fewer than 1024 bytes; that is an input constraint of the
//! implementation, not part of this state machine.

use std::collections::BTreeMap;

use super::{KeyedOp, SeqSpec};

/// The whole table. A `BTreeMap` (not a `HashMap`) so that the state itself is hashable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KvSpec {
    /// Current contents: absent keys have no value.
    pub map: BTreeMap<u64, Vec<u8>>,
}

/// A client operation on the table.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvOp {
    /// Read the value of a key.
    Get(u64),
    /// Write a value to a key.
    Set(u64, Vec<u8>),
    /// Remove a key.
    Delete(u64),
}

/// The result of a [`KvOp`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvRet {
    /// Result of a Get: the value, or `None` if the key is absent.
    Value(Option<Vec<u8>>),
    /// Result of a Set or Delete.
    Ok,
}

impl SeqSpec for KvSpec {
    type Op = KvOp;
    type Ret = KvRet;

    fn is_read_only(op: &Self::Op) -> bool {
        matches!(op, KvOp::Get(_))
    }

    fn step(&mut self, op: &KvOp) -> KvRet {
        match op {
            KvOp::Get(k) => KvRet::Value(self.map.get(k).cloned()),
            KvOp::Set(k, v) => {
                self.map.insert(*k, v.clone());
                KvRet::Ok
            }
            KvOp::Delete(k) => {
                self.map.remove(k);
                KvRet::Ok
            }
        }
    }
}

impl KeyedOp for KvOp {
    type Key = u64;

    fn key(&self) -> u64 {
        match self {
            KvOp::Get(k) | KvOp::Set(k, _) | KvOp::Delete(k) => *k,
        }
    }

    fn is_blind_write(&self) -> bool {
        !matches!(self, KvOp::Get(_))
    }
}
