//! Random-walk simulation over any stateright [`Model`] (shared by the RSL and KV models):
//! a bounded random search that checks every property in every state it visits, with
//! PCT-style random priorities, per-walk fresh states and counterexample shrinking.
//! Stateright's own `spawn_simulation` ends a walk at the first repeated state (on a
//! duplicating network nearly every redelivery) and, in 0.31, cannot rebuild the path of a
//! discovery when an action had no successor; this driver avoids both.
#![allow(dead_code)]

use std::hash::Hash;

use stateright::actor::{Actor, ActorModelState, Network};
use stateright::{Expectation, Model};

/// The state with the duplicating network's "last delivered message" cleared. Stateright
/// 0.31 keeps that envelope in the network (so that a redelivery which changes no actor
/// still yields a new fingerprint) and hashes it: two states that differ only in which
/// datagram was delivered last count as distinct, although nothing (no action, no
/// property) reads it. Every checker here identifies states through this function
/// (`symmetry_fn` for the exhaustive ones), which merges exactly those duplicates.
pub fn forget_last_msg<A: Actor, H: Clone>(s: &ActorModelState<A, H>) -> ActorModelState<A, H>
where
    A::Msg: Clone,
{
    let mut c = s.clone();
    if let Network::UnorderedDuplicating(_, last) = &mut c.network {
        *last = None;
    }
    c
}

/// Options of [`simulate`].
#[derive(Clone, Copy, Debug)]
pub struct SimOpts {
    /// Checker threads; thread `t` runs walks seeded from `(seed, t, walk)`.
    pub threads: usize,
    /// The base seed.
    pub seed: u64,
    /// Stop after this many states (over all walks and threads).
    pub max_states: usize,
    /// Steps per walk.
    pub max_depth: usize,
    /// Per mille: how often a step chooses uniformly among all enabled actions; otherwise
    /// it takes the enabled action of highest priority (see [`walk`]).
    pub uniform_per_mille: u32,
}

impl SimOpts {
    /// The random search the CI tests use (planted bugs and their unplanted controls alike):
    /// `FLEET_MODEL_THREADS` threads (default 2), walks of at most 200 steps, seed
    /// `FLEET_SIM_SEED` (default 1), one step in ten uniformly chosen.
    pub fn ci(max_states: usize) -> SimOpts {
        let env = |k: &str| std::env::var(k).ok().and_then(|t| t.parse::<u64>().ok());
        SimOpts {
            threads: env("FLEET_MODEL_THREADS").map_or(2, |t| t as usize),
            seed: env("FLEET_SIM_SEED").unwrap_or(1),
            max_states,
            max_depth: 200,
            uniform_per_mille: 100,
        }
    }
}

/// SplitMix64: a tiny deterministic generator (the walks must not depend on a library's
/// generator changing between versions).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for walk `walk` of thread `thread` under `seed`.
    pub fn new(seed: u64, thread: u64, walk: u64) -> Rng {
        let mut r = Rng(seed ^ thread.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ walk.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next();
        r
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn fingerprint<T: std::hash::Hash>(t: &T) -> u64 {
    use std::hash::{DefaultHasher, Hasher};
    let mut h = DefaultHasher::new();
    t.hash(&mut h);
    h.finish()
}

/// What one walk found.
struct WalkResult<A> {
    /// States checked.
    visited: usize,
    /// The actions taken.
    path: Vec<A>,
    /// Progress properties that held in some state of the walk (by index).
    reached: Vec<usize>,
    /// The first safety property that failed, with the actions leading to it.
    violation: Option<(&'static str, Vec<A>)>,
}

/// One random walk from the initial state. Every action gets a random priority per walk
/// (a hash of the walk's seed, the action and how often this walk has taken it already), and
/// a step takes the enabled action of highest priority, or with probability
/// [`SimOpts::uniform_per_mille`] a uniformly chosen one; only actions whose successor is a
/// state new to this walk and within the scope count as enabled (so a walk never stalls on
/// redeliveries that change nothing). Random priorities are random message delays
/// (PCT-style scheduling): a datagram with a low priority stays in flight while many others
/// are delivered. Every state is checked against every property.
fn walk<M: Model>(m: &M, rng: &mut Rng, opts: &SimOpts, canon: fn(&M::State) -> M::State) -> WalkResult<M::Action>
where
    M::State: Hash,
    M::Action: Hash + Clone,
{
    use std::collections::{HashMap, HashSet};
    let props = m.properties();
    let walk_seed = rng.next();
    let mut state = m.init_states().swap_remove(0);
    let mut path: Vec<M::Action> = Vec::new();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut taken: HashMap<u64, u32> = HashMap::new();
    let mut actions = Vec::new();
    let mut r = WalkResult { visited: 0, path: Vec::new(), reached: Vec::new(), violation: None };
    seen.insert(fingerprint(&canon(&state)));
    loop {
        r.visited += 1;
        for (i, p) in props.iter().enumerate() {
            match p.expectation {
                Expectation::Always if !(p.condition)(m, &state) => {
                    r.violation = Some((p.name, path));
                    return r;
                }
                Expectation::Sometimes if !r.reached.contains(&i) && (p.condition)(m, &state) => r.reached.push(i),
                _ => {}
            }
        }
        if path.len() >= opts.max_depth {
            r.path = path;
            return r;
        }
        actions.clear();
        m.actions(&state, &mut actions);
        let mut ranked: Vec<(u64, u64, M::Action)> = actions
            .drain(..)
            .map(|a| {
                let fp = fingerprint(&a);
                let prio = fingerprint(&(walk_seed, fp, taken.get(&fp).copied().unwrap_or(0)));
                (prio, fp, a)
            })
            .collect();
        ranked.sort_unstable_by_key(|(prio, ..)| std::cmp::Reverse(*prio));
        let mut next = None;
        while !ranked.is_empty() {
            let i = if (rng.below(1000) as u32) < opts.uniform_per_mille { rng.below(ranked.len()) } else { 0 };
            let (_, fp, a) = ranked.remove(i);
            if let Some(s) = m.next_state(&state, a.clone()) {
                if m.within_boundary(&s) && seen.insert(fingerprint(&canon(&s))) {
                    next = Some((fp, a, s));
                    break;
                }
            }
        }
        let Some((fp, a, s)) = next else {
            r.path = path;
            return r;
        };
        *taken.entry(fp).or_insert(0) += 1;
        path.push(a);
        state = s;
    }
}

/// One walk of thread 0 under `opts.seed` (walk index `walk`), rendered as a trace: a
/// diagnostic to see what a typical run looks like.
pub fn sample_walk<M: Model>(
    m: &M,
    opts: &SimOpts,
    walk_index: u64,
    canon: fn(&M::State) -> M::State,
    describe: fn(&M, &M::State) -> String,
) -> String
where
    M::State: Hash,
    M::Action: Hash + Clone + std::fmt::Debug,
{
    let mut rng = Rng::new(opts.seed, 0, walk_index);
    let w = walk(m, &mut rng, opts, canon);
    let path = match w.violation {
        Some((_, p)) => p,
        None => w.path,
    };
    trace(m, &path, describe)
}

/// A failed safety property and the actions that lead to it.
type Found<A> = (&'static str, Vec<A>);

/// What [`simulate`] found.
pub struct SimResult {
    /// States checked (over all walks).
    pub states: usize,
    /// Walks run.
    pub walks: usize,
    /// Safety properties with a (shrunk) counterexample, with its trace.
    pub violations: Vec<(&'static str, String)>,
    /// Progress (`sometimes`) properties that held in some state.
    pub reached: Vec<&'static str>,
}

/// Random simulation of model `m` (a bounded random search, not exhaustive): walks of at
/// most `max_depth` steps until `max_states` states were checked or a safety property
/// fails (states are identified through `canon`, e.g. [`forget_last_msg`]); the
/// counterexample is shrunk ([`shrink`]) and rendered with `describe` for its
/// last state. Deterministic per thread: thread `t`'s walks are seeded from
/// `(seed, t, walk index)`.
pub fn simulate<M>(
    m: &M,
    opts: &SimOpts,
    canon: fn(&M::State) -> M::State,
    describe: fn(&M, &M::State) -> String,
) -> SimResult
where
    M: Model + Sync,
    M::State: Hash,
    M::Action: Hash + Clone + PartialEq + Send + std::fmt::Debug,
{
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;
    let states = AtomicUsize::new(0);
    let walks = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let found: Mutex<Option<Found<M::Action>>> = Mutex::new(None);
    let reached: Mutex<BTreeSet<usize>> = Mutex::new(BTreeSet::new());
    std::thread::scope(|sc| {
        for t in 0..opts.threads.max(1) {
            let (states, walks, stop, found, reached) = (&states, &walks, &stop, &found, &reached);
            sc.spawn(move || {
                let mut k = 0u64;
                while !stop.load(Ordering::Relaxed) && states.load(Ordering::Relaxed) < opts.max_states {
                    let mut rng = Rng::new(opts.seed, t as u64, k);
                    k += 1;
                    let w = walk(m, &mut rng, opts, canon);
                    states.fetch_add(w.visited, Ordering::Relaxed);
                    walks.fetch_add(1, Ordering::Relaxed);
                    reached.lock().unwrap_or_else(|e| e.into_inner()).extend(w.reached);
                    if let Some(v) = w.violation {
                        stop.store(true, Ordering::Relaxed);
                        let mut f = found.lock().unwrap_or_else(|e| e.into_inner());
                        if f.is_none() {
                            eprintln!("[simulate] thread {t} walk {} (seed {}) found a violation", k - 1, opts.seed);
                            *f = Some(v);
                        }
                    }
                }
            });
        }
    });
    let props = m.properties();
    let violations = match found.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some((name, path)) => vec![(name, trace(m, &shrink(m, path), describe))],
        None => Vec::new(),
    };
    let reached = reached.into_inner().unwrap_or_else(|e| e.into_inner()).into_iter().map(|i| props[i].name).collect();
    SimResult { states: states.into_inner(), walks: walks.into_inner(), violations, reached }
}

/// Replays `actions` from the initial state, each only if the model enables it; returns
/// whether some state along the way violates a safety property.
fn replay_violates<M: Model>(m: &M, actions: &[M::Action]) -> bool
where
    M::Action: Clone + PartialEq,
{
    let props: Vec<_> = m.properties().into_iter().filter(|p| p.expectation == Expectation::Always).collect();
    let bad = |s: &M::State| props.iter().any(|p| !(p.condition)(m, s));
    let mut state = m.init_states().swap_remove(0);
    if bad(&state) {
        return true;
    }
    let mut enabled = Vec::new();
    for a in actions {
        enabled.clear();
        m.actions(&state, &mut enabled);
        if !enabled.contains(a) {
            return false;
        }
        match m.next_state(&state, a.clone()) {
            Some(next) if m.within_boundary(&next) => state = next,
            _ => return false,
        }
        if bad(&state) {
            return true;
        }
    }
    false
}

/// Shrinks a counterexample: drops actions one at a time (last first) while the replay
/// still reaches a violation, until no single action can be dropped (1-minimal).
pub fn shrink<M: Model>(m: &M, mut actions: Vec<M::Action>) -> Vec<M::Action>
where
    M::Action: Clone + PartialEq,
{
    loop {
        let mut dropped = false;
        let mut i = actions.len();
        while i > 0 {
            i -= 1;
            let mut shorter = actions.clone();
            shorter.remove(i);
            if replay_violates(m, &shorter) {
                actions = shorter;
                dropped = true;
            }
        }
        if !dropped {
            return actions;
        }
    }
}

/// A counterexample from a list of actions: replays them from the initial state and
/// describes the last state with `describe`.
pub fn trace<M: Model>(m: &M, actions: &[M::Action], describe: fn(&M, &M::State) -> String) -> String
where
    M::Action: Clone + std::fmt::Debug,
{
    let mut s = String::new();
    let mut state = m.init_states().swap_remove(0);
    for (i, a) in actions.iter().enumerate() {
        s.push_str(&format!("{i:3}: {}\n", m.format_action(a)));
        match m.next_state(&state, a.clone()) {
            Some(next) => state = next,
            None => s.push_str("     (replay: no successor)\n"),
        }
    }
    s.push_str(&describe(m, &state));
    s
}
