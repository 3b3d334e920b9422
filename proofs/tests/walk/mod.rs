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
/// (`symmetry_fn` for the exhaustive ones, [`clear_last_msg`] for the walks), which merges
/// exactly those duplicates.
pub fn forget_last_msg<A: Actor, H: Clone>(s: &ActorModelState<A, H>) -> ActorModelState<A, H>
where
    A::Msg: Clone,
{
    let mut c = s.clone();
    clear_last_msg(&mut c);
    c
}

/// [`forget_last_msg`] in place: the walks own each state they step to, so they clear it
/// there instead of fingerprinting a copy (a copy of every candidate state, network
/// included, was a quarter of a walk's time). Only stateright writes the field, and nothing
/// reads it, so the walk goes on from the cleared state exactly as from the original.
pub fn clear_last_msg<A: Actor, H>(s: &mut ActorModelState<A, H>) {
    if let Network::UnorderedDuplicating(_, last) = &mut s.network {
        *last = None;
    }
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
    /// Per mille: how many walks start from a state of the thread's archive rather than
    /// the initial state (only with a cell function, see [`simulate_archived`]). 0: every
    /// walk starts at the initial state.
    pub from_archive_per_mille: u32,
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
            from_archive_per_mille: 0,
        }
    }
}

impl SimOpts {
    /// [`SimOpts::ci`] with seven walks in ten starting from an archived state (see
    /// [`simulate_archived`]; the share measured best for the competing-leaders scope).
    pub fn archived(max_states: usize) -> SimOpts {
        SimOpts { from_archive_per_mille: 700, ..SimOpts::ci(max_states) }
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

/// A fast 64-bit hash of a whole state for the set of states a walk has seen: aHash with
/// fixed seeds, which stateright uses for its own fingerprints. SipHash over every replica
/// and datagram of each candidate state was a sixth of a walk's time. Only set membership
/// depends on it (a collision would at worst skip one state of a walk); the actions' random
/// priorities keep [`fingerprint`], so the walks themselves are unchanged.
fn state_fingerprint<T: std::hash::Hash>(t: &T) -> u64 {
    ahash::RandomState::with_seeds(1, 2, 3, 4).hash_one(t)
}

/// What one walk found.
struct WalkResult<A> {
    /// States checked.
    visited: usize,
    /// The actions taken (from the initial state, the archived prefix included).
    path: Vec<A>,
    /// Progress properties that became true in the walk (by index): false in the state it
    /// started from, true in a later one.
    reached: Vec<usize>,
    /// The first safety property that failed, with the actions leading to it.
    violation: Option<(&'static str, Vec<A>)>,
}

/// An abstraction of states for archived walks: states with equal cells count as alike.
pub type Cell<M> = fn(&M, &<M as Model>::State) -> u64;

/// Most cells a thread's archive holds (beyond them, new cells are not archived).
const ARCHIVE_CELLS: usize = 20_000;
/// Longest path archived: bounds the replay of a walk's start and the shrinking.
const ARCHIVE_PATH: usize = 400;

/// One thread's archive (Go-Explore style): for each cell of the abstraction reached so far,
/// the shortest path found into it. Walks may start from an archived state, so a
/// state that took rare luck to reach is built on rather than left behind.
struct Archive<A> {
    /// Cell to index in `paths`.
    cells: std::collections::HashMap<u64, usize>,
    paths: Vec<Vec<A>>,
    /// How often each archived state was a walk's start.
    chosen: Vec<u32>,
}

/// One random walk from `state`, reached from the initial state by `path`. Every action gets
/// a random priority per walk (a hash of the walk's seed, the action and how often this walk
/// has taken it already), and a step takes the enabled action of highest priority, or with
/// probability [`SimOpts::uniform_per_mille`] a uniformly chosen one; only actions whose
/// successor is a state new to this walk and within the scope count as enabled (so a walk
/// never stalls on redeliveries that change nothing). Random priorities are random message
/// delays (PCT-style scheduling): a datagram with a low priority stays in flight while many
/// others are delivered. Every state is checked against every property. With `cell`, each
/// state of a cell new to `archive` is archived.
#[allow(clippy::too_many_arguments)]
fn walk<M: Model>(
    m: &M,
    rng: &mut Rng,
    opts: &SimOpts,
    canon: fn(&mut M::State),
    mut path: Vec<M::Action>,
    mut state: M::State,
    cell: Option<Cell<M>>,
    archive: &mut Archive<M::Action>,
) -> WalkResult<M::Action>
where
    M::State: Hash,
    M::Action: Hash + Clone,
{
    use std::collections::hash_map::Entry;
    use std::collections::{HashMap, HashSet};
    let props = m.properties();
    let walk_seed = rng.next();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut taken: HashMap<u64, u32> = HashMap::new();
    let mut actions = Vec::new();
    let mut r = WalkResult { visited: 0, path: Vec::new(), reached: Vec::new(), violation: None };
    // Progress already true where the walk starts is not the walk's.
    let mut held: Vec<bool> =
        props.iter().map(|p| p.expectation == Expectation::Sometimes && (p.condition)(m, &state)).collect();
    canon(&mut state);
    seen.insert(state_fingerprint(&state));
    let mut steps = 0;
    loop {
        r.visited += 1;
        for (i, p) in props.iter().enumerate() {
            match p.expectation {
                Expectation::Always if !(p.condition)(m, &state) => {
                    r.violation = Some((p.name, path));
                    return r;
                }
                Expectation::Sometimes if !held[i] && (p.condition)(m, &state) => {
                    held[i] = true;
                    r.reached.push(i);
                }
                _ => {}
            }
        }
        if let Some(cell) = cell {
            if path.len() <= ARCHIVE_PATH {
                match archive.cells.entry(cell(m, &state)) {
                    // A shorter way into a known cell replaces the archived one (cheaper to
                    // replay, and fewer redundant steps to build on).
                    Entry::Occupied(e) if path.len() < archive.paths[*e.get()].len() => {
                        archive.paths[*e.get()] = path.clone();
                    }
                    Entry::Vacant(e) if archive.paths.len() < ARCHIVE_CELLS => {
                        e.insert(archive.paths.len());
                        archive.paths.push(path.clone());
                        archive.chosen.push(0);
                    }
                    _ => {}
                }
            }
        }
        if steps >= opts.max_depth {
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
        // The candidates not tried yet, by index into `ranked`, in rank order: removing an
        // index shifts a few words, where removing the action itself moved whole datagrams.
        let mut untried: Vec<usize> = (0..ranked.len()).collect();
        while !untried.is_empty() {
            let i = if (rng.below(1000) as u32) < opts.uniform_per_mille { rng.below(untried.len()) } else { 0 };
            let k = untried.remove(i);
            if let Some(mut s) = m.next_state(&state, ranked[k].2.clone()) {
                if m.within_boundary(&s) {
                    canon(&mut s);
                    if seen.insert(state_fingerprint(&s)) {
                        let (_, fp, a) = ranked.swap_remove(k);
                        next = Some((fp, a, s));
                        break;
                    }
                }
            }
        }
        let Some((fp, a, s)) = next else {
            r.path = path;
            return r;
        };
        *taken.entry(fp).or_insert(0) += 1;
        path.push(a);
        steps += 1;
        state = s;
    }
}

/// The state `actions` lead to from the initial state (`None` if one has no successor).
fn replay<M: Model>(m: &M, actions: &[M::Action]) -> Option<M::State>
where
    M::Action: Clone,
{
    let mut state = m.init_states().swap_remove(0);
    for a in actions {
        state = m.next_state(&state, a.clone())?;
    }
    Some(state)
}

/// One walk of thread 0 under `opts.seed` (walk index `walk`), rendered as a trace: a
/// diagnostic to see what a typical run looks like.
pub fn sample_walk<M: Model>(
    m: &M,
    opts: &SimOpts,
    walk_index: u64,
    canon: fn(&mut M::State),
    describe: fn(&M, &M::State) -> String,
) -> String
where
    M::State: Hash,
    M::Action: Hash + Clone + std::fmt::Debug,
{
    let mut rng = Rng::new(opts.seed, 0, walk_index);
    let mut archive = Archive { cells: Default::default(), paths: Vec::new(), chosen: Vec::new() };
    let init = m.init_states().swap_remove(0);
    let w = walk(m, &mut rng, opts, canon, Vec::new(), init, None, &mut archive);
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
    /// For each of those, in how many walks it became true (held in some state of the walk
    /// but not in the state the walk started from).
    pub reached_walks: Vec<(&'static str, usize)>,
    /// Cells archived (summed over threads; 0 without a cell function).
    pub cells: usize,
}

/// Random simulation of model `m` (a bounded random search, not exhaustive): walks of at
/// most `max_depth` steps until `max_states` states were checked or a safety property
/// fails (states are identified through `canon`, e.g. [`forget_last_msg`]); the
/// counterexample is shrunk ([`shrink`]) and rendered with `describe` for its
/// last state. Deterministic per thread: thread `t`'s walks are seeded from
/// `(seed, t, walk index)`.
pub fn simulate<M>(m: &M, opts: &SimOpts, canon: fn(&mut M::State), describe: fn(&M, &M::State) -> String) -> SimResult
where
    M: Model + Sync,
    M::State: Hash,
    M::Action: Hash + Clone + PartialEq + Send + std::fmt::Debug,
{
    simulate_archived(m, opts, canon, describe, None)
}

/// [`simulate`], with walks that may start from archived states: each thread keeps, for
/// every cell of the abstraction `cell` its walks reached, the shortest path found into it,
/// and starts [`SimOpts::from_archive_per_mille`] of its walks from an archived state (the
/// less often started of two picked at random; Go-Explore's "return, then explore"), which
/// it rebuilds by replaying the path (replays are not counted as states). Every state checked is
/// reached from the initial state by real actions, so a violation is as real as in
/// [`simulate`] (and its path, archived prefix included, is shrunk the same way); what
/// changes is where the search spends its states: rare progress, once made, is built on.
/// Still deterministic per thread.
pub fn simulate_archived<M>(
    m: &M,
    opts: &SimOpts,
    canon: fn(&mut M::State),
    describe: fn(&M, &M::State) -> String,
    cell: Option<Cell<M>>,
) -> SimResult
where
    M: Model + Sync,
    M::State: Hash,
    M::Action: Hash + Clone + PartialEq + Send + std::fmt::Debug,
{
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;
    let states = AtomicUsize::new(0);
    let walks = AtomicUsize::new(0);
    let cells = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let found: Mutex<Option<Found<M::Action>>> = Mutex::new(None);
    let reached: Mutex<BTreeMap<usize, usize>> = Mutex::new(BTreeMap::new());
    std::thread::scope(|sc| {
        for t in 0..opts.threads.max(1) {
            let (states, walks, cells, stop, found, reached) = (&states, &walks, &cells, &stop, &found, &reached);
            sc.spawn(move || {
                let mut archive = Archive { cells: Default::default(), paths: Vec::new(), chosen: Vec::new() };
                let mut k = 0u64;
                while !stop.load(Ordering::Relaxed) && states.load(Ordering::Relaxed) < opts.max_states {
                    let mut rng = Rng::new(opts.seed, t as u64, k);
                    k += 1;
                    let archived = cell.is_some()
                        && opts.from_archive_per_mille > 0
                        && !archive.paths.is_empty()
                        && (rng.below(1000) as u32) < opts.from_archive_per_mille;
                    let start = match archived {
                        true => {
                            // Of two archived states, the one less often started from (a cheap
                            // bias to the rarely explored, as Go-Explore weights its cells).
                            let (a, b) = (rng.below(archive.paths.len()), rng.below(archive.paths.len()));
                            let i = if archive.chosen[b] < archive.chosen[a] { b } else { a };
                            archive.chosen[i] += 1;
                            let prefix = archive.paths[i].clone();
                            replay(m, &prefix).map(|s| (prefix, s))
                        }
                        false => None,
                    };
                    let (prefix, state) = start.unwrap_or_else(|| (Vec::new(), m.init_states().swap_remove(0)));
                    let w = walk(m, &mut rng, opts, canon, prefix, state, cell, &mut archive);
                    states.fetch_add(w.visited, Ordering::Relaxed);
                    walks.fetch_add(1, Ordering::Relaxed);
                    let mut r = reached.lock().unwrap_or_else(|e| e.into_inner());
                    for i in w.reached {
                        *r.entry(i).or_insert(0) += 1;
                    }
                    drop(r);
                    if let Some(v) = w.violation {
                        stop.store(true, Ordering::Relaxed);
                        let mut f = found.lock().unwrap_or_else(|e| e.into_inner());
                        if f.is_none() {
                            eprintln!("[simulate] thread {t} walk {} (seed {}) found a violation", k - 1, opts.seed);
                            *f = Some(v);
                        }
                    }
                }
                cells.fetch_add(archive.paths.len(), Ordering::Relaxed);
            });
        }
    });
    let props = m.properties();
    let violations = match found.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some((name, path)) => vec![(name, trace(m, &shrink(m, path), describe))],
        None => Vec::new(),
    };
    let reached_walks: Vec<(&'static str, usize)> =
        reached.into_inner().unwrap_or_else(|e| e.into_inner()).into_iter().map(|(i, k)| (props[i].name, k)).collect();
    let reached = reached_walks.iter().map(|(name, _)| *name).collect();
    SimResult {
        states: states.into_inner(),
        walks: walks.into_inner(),
        violations,
        reached,
        reached_walks,
        cells: cells.into_inner(),
    }
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
