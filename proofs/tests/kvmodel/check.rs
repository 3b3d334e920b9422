//! Running the checker: exhaustive (depth- or breadth-first) and random simulation, what a
//! run found, and the state descriptions in its traces.

use std::time::{Duration, Instant as WallClock};

use stateright::{Checker, Expectation, Model};

use super::props::ownership;
use super::{hosts, model, walk, KvModel, KvScope, KvState, SimOpts};

/// What one run found.
#[derive(Debug)]
pub struct KvOutcome {
    /// States generated (with repeats) or, for simulation, checked.
    pub states: usize,
    /// Distinct states (exhaustive runs).
    pub unique: usize,
    /// Walks (simulation).
    pub walks: usize,
    /// Deepest path.
    pub max_depth: usize,
    /// Wall-clock time.
    pub elapsed: Duration,
    /// Safety properties with a counterexample, with its trace.
    pub violations: Vec<(&'static str, String)>,
    /// Progress properties with a witness.
    pub reached: Vec<&'static str>,
    /// Whether an exhaustive run finished (did not stop at its target).
    pub complete: bool,
}

/// Exhaustive depth-first check of `scope` (stops after `target` states if given, or at
/// the first safety violation if `stop_at_failure`).
pub fn run(scope: KvScope, progress: bool, threads: usize, target: Option<usize>, stop_at_failure: bool) -> KvOutcome {
    run_with(scope, progress, threads, target, stop_at_failure, false)
}

/// [`run`], breadth-first (`bfs`: the shortest counterexample first) or depth-first.
pub fn run_with(
    scope: KvScope,
    progress: bool,
    threads: usize,
    target: Option<usize>,
    stop_at_failure: bool,
    bfs: bool,
) -> KvOutcome {
    let start = WallClock::now();
    let mut b = model(scope, progress).checker().threads(threads).symmetry_fn(walk::forget_last_msg);
    if let Some(t) = target {
        b = b.target_state_count(t);
    }
    if stop_at_failure {
        b = b.finish_when(stateright::HasDiscoveries::AnyFailures);
    }
    match bfs {
        true => outcome(b.spawn_bfs().join(), start, target),
        false => outcome(b.spawn_dfs().join(), start, target),
    }
}

fn outcome(c: impl Checker<KvModel>, start: WallClock, target: Option<usize>) -> KvOutcome {
    let mut violations = Vec::new();
    let mut reached = Vec::new();
    for p in c.model().properties() {
        if let Some(path) = c.discovery(p.name) {
            match p.expectation {
                Expectation::Always => {
                    let actions = path.clone().into_actions();
                    violations.push((p.name, walk::trace(c.model(), &actions, describe_state)));
                }
                _ => reached.push(p.name),
            }
        }
    }
    let states = c.state_count();
    KvOutcome {
        states,
        unique: c.unique_state_count(),
        walks: 0,
        max_depth: c.max_depth(),
        elapsed: start.elapsed(),
        violations,
        reached,
        complete: target.is_none_or(|t| states < t),
    }
}

/// Random simulation of `scope` (see the RSL model's `simulate`).
pub fn simulate(scope: KvScope, progress: bool, opts: SimOpts) -> KvOutcome {
    let start = WallClock::now();
    let m = model(scope, progress);
    let r = walk::simulate(&m, &opts, walk::clear_last_msg, describe_state);
    KvOutcome {
        states: r.states,
        unique: 0,
        walks: r.walks,
        max_depth: opts.max_depth,
        elapsed: start.elapsed(),
        violations: r.violations,
        reached: r.reached,
        complete: false,
    }
}

/// The violations, ownership, stores and history of a state, for traces.
pub fn describe_state(m: &KvModel, s: &KvState) -> String {
    let mut out = String::new();
    if let Err(e) = ownership(&m.cfg, s) {
        out.push_str(&format!("ownership violation: {e}\n"));
    }
    for h in hosts(s) {
        let keys: Vec<u64> = m.cfg.sample_keys.iter().copied().filter(|&k| h.host.owns(k)).collect();
        out.push_str(&format!(
            "host {}: owns sampled keys {keys:?}, stores {} keys, outgoing {:?}, broken {:?}, ghost {}\n",
            h.host.id(),
            fleet_engine::kv::Storage::len(h.host.storage()),
            h.host.outgoing().iter().map(|t| (t.transfer, t.range)).collect::<Vec<_>>(),
            h.broken,
            h.ghost.is_some()
        ));
    }
    for e in &s.history.ops {
        out.push_str(&format!("history: client {} {:?} invoked {} returned {:?}\n", e.client, e.op, e.invoke, e.ret));
    }
    out
}
