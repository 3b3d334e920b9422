//! The properties checked on every state: local invariants, key ownership, linearizability
//! of the recorded history, and the progress witnesses.

use fleet_proofs::linearizability::{check_partitioned, Operation};
use fleet_proofs::spec::kv::{KvOp, KvRet, KvSpec};
use fleet_proofs::Budget;

use super::{endpoint, History, HostNode, KvModel, KvScope, KvState, NodeState};

/// The hosts of a state.
pub fn hosts(s: &KvState) -> Vec<&HostNode> {
    s.actor_states
        .iter()
        .filter_map(|a| match &**a {
            NodeState::Host(h) => Some(&**h),
            NodeState::Client(_) => None,
        })
        .collect()
}

/// Property: every host's local invariants hold (`KvHost::check_invariants`).
pub fn local_invariants(_: &KvModel, s: &KvState) -> bool {
    hosts(s).iter().all(|h| h.broken.is_none())
}

/// The ownership invariant (the KV simulator's `check_ownership`): every sampled key is
/// owned by exactly one host or by exactly one in-flight Delegate transfer (sent by its old
/// owner and not yet completed by its recipient).
pub fn ownership(scope: &KvScope, s: &KvState) -> Result<(), String> {
    let hs = hosts(s);
    for &k in scope.sample_keys {
        let owners: Vec<usize> = (0..hs.len()).filter(|&h| hs[h].host.owns(k)).collect();
        let mut in_flight = 0;
        for (a, h) in hs.iter().enumerate() {
            for t in h.host.outgoing() {
                let b = usize::from(t.recipient);
                // A transfer to a dead incarnation of its recipient can never be applied.
                let alive = !hs[b].host.joining() && hs[a].host.send_base(b) == hs[b].host.fixed_base(a);
                if alive && t.range.contains(k) && t.transfer > hs[b].host.completed_from(a) {
                    in_flight += 1;
                }
            }
        }
        // A key held by a host that restarted without its state is lost (no owner).
        let lost_allowed = owners.len() + in_flight == 0 && hs.iter().any(|h| h.restarted);
        if owners.len() + in_flight != 1 && !lost_allowed {
            return Err(format!("key {k}: owned by hosts {owners:?} and {in_flight} in-flight transfers"));
        }
    }
    Ok(())
}

/// Property: [`ownership`] holds.
pub fn ownership_holds(m: &KvModel, s: &KvState) -> bool {
    ownership(&m.cfg, s).is_ok()
}

/// The history as the linearizability checker takes it (refused operations had no effect
/// and are left out).
pub fn operations(h: &History) -> Vec<Operation<KvOp, KvRet>> {
    h.ops
        .iter()
        .filter(|e| !matches!(e.ret, Some((_, None))))
        .map(|e| Operation {
            client: e.client as u64,
            op: e.op.clone(),
            invoke_us: u64::from(e.invoke),
            complete: e.ret.as_ref().and_then(|(t, r)| r.clone().map(|r| (u64::from(*t), r))),
        })
        .collect()
}

/// Property: the history is linearizable key by key against IronKV's spec.
pub fn linearizable(_: &KvModel, s: &KvState) -> bool {
    check_partitioned(&KvSpec::default(), &operations(&s.history), &Budget::steps(1_000_000))
        .is_ok_and(|o| o.is_linearizable())
}

/// Progress: a Get or Set completed.
pub fn op_completed(_: &KvModel, s: &KvState) -> bool {
    s.history.ops.iter().any(|e| matches!(e.ret, Some((_, Some(_)))))
}

/// Progress: a Shard completed (the recipient took over a transfer).
pub fn shard_completed(_: &KvModel, s: &KvState) -> bool {
    let hs = hosts(s);
    (0..hs.len()).any(|b| (0..hs.len()).any(|a| hs[b].host.completed_from(a) > 0))
}

/// Progress: a Get read the value a Set wrote after the key moved (client 1's read at the
/// new owner returns client 0's write).
pub fn read_after_move(_: &KvModel, s: &KvState) -> bool {
    s.history.ops.iter().any(|e| matches!(&e.ret, Some((_, Some(KvRet::Value(Some(_)))))))
}

/// Progress: a host restarted without its state.
pub fn host_restarted(_: &KvModel, s: &KvState) -> bool {
    hosts(s).iter().any(|h| h.restarted)
}

/// Progress: a host restarted without its state ended its join (it learned where it stands).
pub fn restarted_host_joined(_: &KvModel, s: &KvState) -> bool {
    hosts(s).iter().any(|h| h.restarted && !h.host.joining())
}

/// Progress: some host closed a client's channel (evicted it: its endpoint has a floor).
pub fn channel_closed(m: &KvModel, s: &KvState) -> bool {
    let scope = &m.cfg;
    hosts(s).iter().any(|h| {
        (scope.hosts..scope.actors())
            .any(|a| h.host.closed_floor(endpoint(a, scope.hosts)).is_some_and(|c| c.above > 0))
    })
}
