//! Per-key checking. Linearizability is compositional (P-compositionality, Horn & Kroening):
//! when every operation reads and writes only its own key's part of the state, a history is
//! linearizable iff each key's sub-history is. Checking keys separately keeps the search
//! space small.

use std::collections::BTreeMap;

use super::{search, validate, CheckError, Indexed, InvalidHistory, Linearization, Operation, Unknown, Violation};
use crate::budget::{Budget, Meter};
use crate::spec::{KeyedOp, SeqSpec};

/// The verdict for each key of a partitioned check. Every key of the history appears in
/// exactly one of the three maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionedOutcome<K> {
    /// Keys whose sub-history is linearizable, with a witness (indices into the full history).
    pub linearized: BTreeMap<K, Linearization>,
    /// Keys whose sub-history is not linearizable (indices into the full history).
    pub violations: BTreeMap<K, Violation>,
    /// Keys left undecided because the budget ran out.
    pub unknown: BTreeMap<K, Unknown>,
}

impl<K> PartitionedOutcome<K> {
    /// True iff every key was shown linearizable, hence the whole history is.
    pub fn is_linearizable(&self) -> bool {
        self.violations.is_empty() && self.unknown.is_empty()
    }
}

/// Checks `history` one key at a time, each key's sub-history from the same `init`.
///
/// Sound only for specs whose operations touch nothing but their key's state (true of
/// [`KvSpec`](crate::spec::kv::KvSpec) and [`BytesKvApp`](crate::spec::bytes_kv::BytesKvApp)).
/// `init` is used whole for every key; other keys' entries in it are carried unchanged.
/// The budget covers the whole call; keys reached after it runs out are reported unknown.
pub fn check_partitioned<S>(
    init: &S,
    history: &[Operation<S::Op, S::Ret>],
    budget: &Budget,
) -> Result<PartitionedOutcome<<S::Op as KeyedOp>::Key>, InvalidHistory>
where
    S: SeqSpec,
    S::Op: KeyedOp,
{
    validate(history)?;
    let mut groups: BTreeMap<_, Vec<Indexed<'_, S>>> = BTreeMap::new();
    for (i, o) in history.iter().enumerate() {
        groups.entry(o.op.key()).or_default().push((i, o));
    }
    let mut meter = Meter::new(budget);
    let mut out =
        PartitionedOutcome { linearized: BTreeMap::new(), violations: BTreeMap::new(), unknown: BTreeMap::new() };
    for (key, ops) in groups {
        let reads_and_blind_writes = ops.iter().all(|(_, o)| S::is_read_only(&o.op) || o.op.is_blind_write());
        match search::run(init, &ops, reads_and_blind_writes, &mut meter) {
            Ok(lin) => {
                out.linearized.insert(key, lin);
            }
            Err(CheckError::Violation(v)) => {
                out.violations.insert(key, v);
            }
            Err(CheckError::Unknown(u)) => {
                out.unknown.insert(key, u);
            }
            Err(CheckError::InvalidHistory(e)) => return Err(e),
        }
    }
    Ok(out)
}
