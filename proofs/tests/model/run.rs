//! Running the checker: exhaustive runs and random walks of a scope, the progress cells the
//! archived walks build on, and readable counterexample traces.

use std::time::{Duration, Instant as WallClock};

use fleet_engine::rsl::Ballot;
use fleet_proofs::rsl_invariants as inv;
use stateright::{Checker, Expectation, Model};

use super::{bal, chosen, cross_host, members, model, replicas, sent, walk, RslModel, RslState, Scope, SimOpts};

/// What one exhaustive run found.
#[derive(Debug)]
pub struct Outcome {
    /// States generated (with repeats).
    pub states: usize,
    /// Distinct states.
    pub unique: usize,
    /// Random walks (simulation only; 0 for exhaustive runs).
    pub walks: usize,
    /// Deepest path.
    pub max_depth: usize,
    /// Wall-clock time.
    pub elapsed: Duration,
    /// Safety properties with a counterexample, with its trace.
    pub violations: Vec<(&'static str, String)>,
    /// Progress properties with a witness.
    pub reached: Vec<&'static str>,
    /// Random walks only: for each progress property reached, in how many walks.
    pub reached_walks: Vec<(&'static str, usize)>,
    /// Whether the run stopped at its state-count target rather than exhausting the scope.
    pub complete: bool,
}

/// Runs the model checker (DFS) on `scope`; stops early after `target` states if given.
pub fn run(scope: Scope, progress: bool, threads: usize, target: Option<usize>) -> Outcome {
    run_with(scope, progress, threads, target, false)
}

/// [`run`], optionally stopping at the first safety violation (for planted bugs).
pub fn run_with(scope: Scope, progress: bool, threads: usize, target: Option<usize>, stop_at_failure: bool) -> Outcome {
    let start = WallClock::now();
    let m = model(scope, progress);
    let mut builder = m.checker().threads(threads).symmetry_fn(walk::forget_last_msg);
    if stop_at_failure {
        builder = builder.finish_when(stateright::HasDiscoveries::AnyFailures);
    }
    if let Some(t) = target {
        builder = builder.target_state_count(t);
    }
    let checker = builder.spawn_dfs().join();
    let mut violations = Vec::new();
    let mut reached = Vec::new();
    for p in checker.model().properties() {
        if let Some(path) = checker.discovery(p.name) {
            match p.expectation {
                Expectation::Always => violations.push((p.name, trace(checker.model(), &path))),
                _ => reached.push(p.name),
            }
        }
    }
    let states = checker.state_count();
    Outcome {
        states,
        unique: checker.unique_state_count(),
        walks: 0,
        max_depth: checker.max_depth(),
        elapsed: start.elapsed(),
        violations,
        reached,
        reached_walks: Vec::new(),
        complete: target.is_none_or(|t| states < t),
    }
}

/// Random simulation of `scope` (see [`walk::simulate`]; a bounded random search, not
/// exhaustive). With `progress`, the `sometimes` properties are checked too.
pub fn simulate(scope: Scope, progress: bool, opts: SimOpts) -> Outcome {
    let start = WallClock::now();
    let m = model(scope, progress);
    // Archived walks start from states of a protocol-progress cell ([`cell`]).
    let cell: Option<walk::Cell<RslModel>> = (opts.from_archive_per_mille > 0).then_some(cell);
    let r = walk::simulate_archived(&m, &opts, walk::clear_last_msg, describe_state, cell);
    Outcome {
        states: r.states,
        unique: 0,
        walks: r.walks,
        max_depth: opts.max_depth,
        elapsed: start.elapsed(),
        violations: r.violations,
        reached: r.reached,
        reached_walks: r.reached_walks,
        complete: false,
    }
}

/// The abstraction archived random walks ([`walk::simulate_archived`]) build on, the
/// protocol's progress rather than the network's: per replica its view, its proposer's
/// phase and ballot, its promise, whether its phase 1 merged conflicting votes, its restarts
/// and rejoin stage; and the distinct votes held anywhere (operation, ballot, batch), not who holds them. States that
/// differ only in which datagrams are in flight, who voted, what executed or which timers
/// fired share a cell. (Finer cells, with vote holders, executed counts, suspicions, the 2b
/// sent, the chosen values or the timer firings, were measured too: they split the archive
/// into 4-8 times as many cells and reach the conflicting-votes situation 2-5 times less
/// often per state.)
pub fn cell(m: &RslModel, s: &RslState) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    if m.cfg.scope.change.is_some() {
        // Across a change, also each replica's epoch and whether it retired or rejoins.
        for r in replicas(s) {
            (r.replica.config().epoch, r.replica.retired().is_some(), r.replica.rejoining().is_some()).hash(&mut h);
        }
    }
    let mut votes: Vec<(u64, Ballot, &[u8])> = Vec::new();
    for r in replicas(s) {
        let (e, p, a) = (r.replica.election(), r.replica.proposer(), r.replica.acceptor());
        (e.current_view, p.phase, p.max_ballot_sent_1a, a.max_bal).hash(&mut h);
        votes.extend(a.votes().map(|v| (v.opn, v.bal, &v.batch[..])));
        r.merged_conflicting_votes.hash(&mut h);
        (r.restarts, r.replica.rejoining().map(|j| j.stage)).hash(&mut h);
    }
    votes.sort();
    votes.dedup();
    votes.hash(&mut h);
    h.finish()
}

/// A readable counterexample: the actions of the path, one per line.
pub fn trace(m: &RslModel, path: &stateright::Path<RslState, <RslModel as Model>::Action>) -> String {
    let mut s = String::new();
    for (i, a) in path.clone().into_actions().iter().enumerate() {
        s.push_str(&format!("{i:3}: {}\n", m.format_action(a)));
    }
    if let Some(last) = path.clone().into_states().last() {
        s.push_str(&describe_state(m, last));
    }
    s
}

/// The violations, chosen quorums, replicas and history of a state, for traces.
pub fn describe_state(m: &RslModel, last: &RslState) -> String {
    if m.cfg.scope.change.is_some() {
        return members::describe_state(m, last);
    }
    let mut s = String::new();
    if let Err(v) = cross_host(&m.cfg, last) {
        s.push_str(&format!("cross-host violation: {v}\n"));
    }
    let c = chosen(&m.cfg, &sent(&m.cfg, last));
    for (opn, qs) in &c.by_opn {
        for q in qs {
            s.push_str(&format!(
                "chosen: op{opn} in {} = {} by {:?}\n",
                bal(q.bal),
                inv::describe_batch(&q.batch),
                q.senders
            ));
        }
    }
    for r in replicas(last) {
        let st = r.replica.status();
        s.push_str(&format!(
            "replica {}: view {} leader {} executed {} counter {} broken {:?}{}\n",
            r.replica.id(),
            bal(st.view),
            st.is_leader,
            st.ops_complete,
            r.replica.app().value,
            r.broken,
            match (r.restarts, r.replica.rejoining()) {
                (0, _) => String::new(),
                (k, None) => format!(" restarted {k}x, taking part"),
                (k, Some(j)) => format!(" restarted {k}x, rejoining ({:?})", j.stage),
            }
        ));
    }
    s.push_str(&format!("history: {:?}\n", last.history.ops));
    s
}
