//! Helpers shared by the integration tests: history builders, an independent witness
//! validator, and a generator of linearizable KV histories.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fleet_proofs::linearizability::{check, check_partitioned, CheckError, Linearization, Operation};
use fleet_proofs::spec::kv::{KvOp, KvRet, KvSpec};
use fleet_proofs::spec::SeqSpec;
use fleet_proofs::Budget;

/// A KV history operation.
pub type KvOperation = Operation<KvOp, KvRet>;

/// A completed Set of the one-byte value `val`.
pub fn set(client: u64, key: u64, val: u8, invoke: u64, complete: u64) -> KvOperation {
    Operation { client, op: KvOp::Set(key, vec![val]), invoke_us: invoke, complete: Some((complete, KvRet::Ok)) }
}

/// A Set whose outcome is unknown.
pub fn pending_set(client: u64, key: u64, val: u8, invoke: u64) -> KvOperation {
    Operation { client, op: KvOp::Set(key, vec![val]), invoke_us: invoke, complete: None }
}

/// A completed Get that read `val` (`None` = absent).
pub fn get(client: u64, key: u64, val: Option<u8>, invoke: u64, complete: u64) -> KvOperation {
    let ret = KvRet::Value(val.map(|v| vec![v]));
    Operation { client, op: KvOp::Get(key), invoke_us: invoke, complete: Some((complete, ret)) }
}

/// A completed Delete.
pub fn del(client: u64, key: u64, invoke: u64, complete: u64) -> KvOperation {
    Operation { client, op: KvOp::Delete(key), invoke_us: invoke, complete: Some((complete, KvRet::Ok)) }
}

/// A Delete whose outcome is unknown.
pub fn pending_del(client: u64, key: u64, invoke: u64) -> KvOperation {
    Operation { client, op: KvOp::Delete(key), invoke_us: invoke, complete: None }
}

/// Checks a KV history with a generous step budget.
pub fn check_kv(history: &[KvOperation]) -> Result<Linearization, CheckError> {
    check(&KvSpec::default(), history, &Budget::steps(5_000_000))
}

/// Asserts the history is accepted, whole and per key, and that the whole-history witness
/// really is a linearization.
pub fn assert_linearizable(history: &[KvOperation]) -> Linearization {
    let lin = check_kv(history).unwrap_or_else(|e| panic!("expected linearizable, got {e}"));
    verify_witness(&KvSpec::default(), history, &lin.order);
    let parts = check_partitioned(&KvSpec::default(), history, &Budget::steps(5_000_000)).unwrap();
    assert!(parts.is_linearizable(), "partitioned check disagrees: {parts:?}");
    lin
}

/// Asserts the history is rejected, whole and per key, returning the whole-history violation.
pub fn assert_violation(history: &[KvOperation]) -> fleet_proofs::linearizability::Violation {
    let parts = check_partitioned(&KvSpec::default(), history, &Budget::steps(5_000_000)).unwrap();
    assert!(!parts.violations.is_empty(), "partitioned check disagrees: {parts:?}");
    match check_kv(history) {
        Err(CheckError::Violation(v)) => v,
        other => panic!("expected a violation, got {other:?}"),
    }
}

/// Independently validates a witness: every completed operation exactly once, pending ones
/// at most once, spec results equal observed results, real-time order respected.
pub fn verify_witness<S: SeqSpec>(init: &S, history: &[Operation<S::Op, S::Ret>], order: &[usize]) {
    let mut seen = vec![false; history.len()];
    for &i in order {
        assert!(!seen[i], "operation {i} linearized twice");
        seen[i] = true;
    }
    for (i, o) in history.iter().enumerate() {
        assert!(seen[i] || o.complete.is_none(), "completed operation {i} missing from witness");
    }
    let mut state = init.clone();
    for (pos, &i) in order.iter().enumerate() {
        let got = state.step(&history[i].op);
        if let Some((_, want)) = &history[i].complete {
            assert_eq!(&got, want, "witness replays operation {i} with a different result");
        }
        for &later in &order[pos + 1..] {
            if let Some((done, _)) = &history[later].complete {
                assert!(
                    *done >= history[i].invoke_us,
                    "witness puts {i} before {later}, which completed before {i} was invoked"
                );
            }
        }
    }
}

/// A small deterministic PRNG (xorshift64*), so tests need no dependency.
pub struct Rng(u64);

impl Rng {
    /// Seeds the generator (any seed; zero is remapped).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// Generates a linearizable history: `clients` clients each doing `ops_per_client` sequential
/// operations on random keys below `keys`. Each operation takes effect at a random point of
/// its interval; a `pending_percent` share of writes time out (half of those take effect).
pub fn generate(seed: u64, clients: u64, keys: u64, ops_per_client: u64, pending_percent: u64) -> Vec<KvOperation> {
    let mut rng = Rng::new(seed);
    let mut history = Vec::new();
    let mut effects: Vec<(u64, usize)> = Vec::new();
    let mut next_value: u32 = 0;
    for client in 0..clients {
        let mut t = rng.below(50);
        for _ in 0..ops_per_client {
            let key = rng.below(keys);
            let op = match rng.below(10) {
                0..=4 => KvOp::Get(key),
                5..=8 => {
                    next_value += 1;
                    KvOp::Set(key, next_value.to_le_bytes().to_vec())
                }
                _ => KvOp::Delete(key),
            };
            let duration = 1 + rng.below(100);
            let point = t + rng.below(duration + 1);
            let is_write = !matches!(op, KvOp::Get(_));
            let index = history.len();
            if is_write && rng.below(100) < pending_percent {
                if rng.below(2) == 0 {
                    effects.push((t + rng.below(1000), index));
                }
                history.push(Operation { client, op, invoke_us: t, complete: None });
                t += 200 + rng.below(20);
            } else {
                effects.push((point, index));
                history.push(Operation { client, op, invoke_us: t, complete: Some((t + duration, KvRet::Ok)) });
                t += duration + rng.below(20);
            }
        }
    }
    effects.sort_unstable();
    let mut spec = KvSpec::default();
    for (_, index) in effects {
        let ret = spec.step(&history[index].op);
        if let Some((_, slot)) = &mut history[index].complete {
            *slot = ret;
        }
    }
    history
}
