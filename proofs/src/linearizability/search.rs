//! The search itself: depth-first just-in-time linearization with a subsumption cache.
//!
//! A search node is the set of operations linearized so far plus the spec state they lead
//! to. Its candidates are the operations whose call precedes the first return entry still in
//! the list (the operation of that return, `blocked`, must be linearized before anything
//! invoked after it returned). Matching candidates are tried best first:
//!
//! 0. completed operations that leave the state unchanged (e.g. reads that match now);
//! 1. completed operations after which `blocked` would match;
//! 2. `blocked` itself; 3. other completed operations;
//! 4. pending operations after which `blocked` would match; 5. pending operations after
//!    which a waiting read would match; 6. other pending operations.
//!
//! The order only affects speed (reads early, writes late, pending operations last). Three
//! rules prune, each keeping the search complete:
//!
//! * A completed pure read ([`SeqSpec::is_read_only`]) that matches now is the node's only
//!   candidate: moving it to the front of any valid continuation keeps that continuation
//!   valid, so if it fails here, every candidate fails here.
//! * A pending operation that leaves the state unchanged is never tried (not using it at
//!   all is at least as good).
//! * When every operation is a pure read or a blind write
//!   ([`KeyedOp::is_blind_write`](crate::spec::KeyedOp::is_blind_write)), rank 6 is
//!   dropped: a pending write either is overwritten before any read sees it (then it can be
//!   left out) or can be moved to just before the first read that sees it.
//!
//! The cache records visited nodes as (completed set, state) -> pending sets. A node is
//! skipped if a visited node has the same completed set and state and used a subset of its
//! pending operations: that node offers every continuation this one does (a pending
//! operation need never take effect), and it was either fully explored or is an ancestor
//! still being explored. Without pending operations this is plain memoisation.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::HashMap;
use std::fmt::Write as _;

use super::entries::{Entry, EntryList, NIL};
use super::{CheckError, Indexed, Linearization, Operation, Unknown, Violation};
use crate::bitset::BitSet;
use crate::budget::Meter;
use crate::spec::SeqSpec;

/// The deepest dead end seen.
struct Stuck<S> {
    /// Local indices linearized so far.
    prefix: Vec<usize>,
    /// Local index of the operation whose return was reached unlinearized.
    op: usize,
    /// Spec state after `prefix`.
    state: S,
}

/// One search node's remaining choices.
struct Frame {
    /// Local indices of matching candidates, best first.
    candidates: Vec<usize>,
    /// How many candidates have been tried.
    tried: usize,
    /// The operation whose return entry ends the candidate window, if any.
    blocked: Option<usize>,
}

/// Visited nodes: (completed set, state) -> pending sets used.
type Cache<S> = HashMap<(BitSet, S), Vec<BitSet>>;

/// Checks `ops` (pairs of history index and operation) from `init`.
///
/// `only_reads_and_blind_writes` promises that every operation is a pure read or a blind
/// write of one shared key (see [`KeyedOp::is_blind_write`](crate::spec::KeyedOp::is_blind_write)).
pub(super) fn run<S: SeqSpec>(
    init: &S,
    ops: &[Indexed<'_, S>],
    only_reads_and_blind_writes: bool,
    meter: &mut Meter,
) -> Result<Linearization, CheckError> {
    let refs: Vec<&Operation<S::Op, S::Ret>> = ops.iter().map(|(_, o)| *o).collect();
    let mut list = EntryList::build(&refs);
    let total_completed = refs.iter().filter(|o| o.complete.is_some()).count();
    let mut completed = BitSet::new(refs.len());
    let mut pending = BitSet::new(refs.len());
    let mut cache: Cache<S> = HashMap::new();
    visit(&mut cache, &completed, &pending, init);
    // (local index, spec state before it) for each linearized operation, in order.
    let mut path: Vec<(usize, S)> = Vec::new();
    let mut state = init.clone();
    let mut completed_done = 0usize;
    let mut deepest: Option<Stuck<S>> = None;
    // Invariant: frames.len() == path.len() + 1.
    let mut frames = vec![frame(&list, &refs, &state, only_reads_and_blind_writes)];
    loop {
        // Success once every completed operation has taken effect; pending operations left
        // over are those that never did.
        if completed_done == total_completed {
            let order = path.iter().map(|(i, _)| ops[*i].0).collect();
            return Ok(Linearization { order });
        }
        meter.tick().map_err(|exhausted| CheckError::Unknown(Unknown { exhausted }))?;
        let Some(top) = frames.last_mut() else {
            return Err(CheckError::Violation(explain(ops, deepest)));
        };
        if let Some(&i) = top.candidates.get(top.tried) {
            top.tried += 1;
            let mut next = state.clone();
            next.step(&refs[i].op); // its result was checked when the frame was built
            let bits = if refs[i].complete.is_some() { &mut completed } else { &mut pending };
            bits.set(i);
            if visit(&mut cache, &completed, &pending, &next) {
                path.push((i, std::mem::replace(&mut state, next)));
                list.lift(i);
                completed_done += usize::from(refs[i].complete.is_some());
                frames.push(frame(&list, &refs, &state, only_reads_and_blind_writes));
            } else {
                let bits = if refs[i].complete.is_some() { &mut completed } else { &mut pending };
                bits.clear(i);
            }
            continue;
        }
        // Dead end: no candidate leads to a linearization.
        let blocked = frames.pop().and_then(|f| f.blocked);
        if let Some(op) = blocked {
            if deepest.as_ref().is_none_or(|d| path.len() > d.prefix.len()) {
                let prefix = path.iter().map(|(i, _)| *i).collect();
                deepest = Some(Stuck { prefix, op, state: state.clone() });
            }
        }
        let Some((i, prev)) = path.pop() else {
            return Err(CheckError::Violation(explain(ops, deepest)));
        };
        let bits = if refs[i].complete.is_some() { &mut completed } else { &mut pending };
        bits.clear(i);
        state = prev;
        list.unlift(i);
        completed_done -= usize::from(refs[i].complete.is_some());
    }
}

/// Records a node; false if it is subsumed by one already visited.
fn visit<S: SeqSpec>(cache: &mut Cache<S>, completed: &BitSet, pending: &BitSet, state: &S) -> bool {
    match cache.entry((completed.clone(), state.clone())) {
        MapEntry::Occupied(mut e) => {
            if e.get().iter().any(|seen| seen.is_subset_of(pending)) {
                return false;
            }
            e.get_mut().retain(|seen| !pending.is_subset_of(seen));
            e.get_mut().push(pending.clone());
            true
        }
        MapEntry::Vacant(e) => {
            e.insert(vec![pending.clone()]);
            true
        }
    }
}

/// Builds the node's candidate list, best first (see the module docs).
fn frame<S: SeqSpec>(list: &EntryList, refs: &[&Operation<S::Op, S::Ret>], state: &S, blind: bool) -> Frame {
    let mut calls = Vec::new();
    let mut blocked = None;
    let mut id = list.first();
    while id != NIL {
        match list.entry(id) {
            Entry::Call(i) => calls.push(i),
            Entry::Return(i) => {
                blocked = Some(i);
                break;
            }
        }
        id = list.next(id);
    }
    let wanted = |op: usize, got: &S::Ret| refs[op].complete.as_ref().is_none_or(|(_, want)| want == got);
    // Completed pure reads: one that matches now is forced; the others wait for a write.
    let mut probe = state.clone();
    let mut waiting = Vec::new();
    for &i in &calls {
        if refs[i].complete.is_some() && S::is_read_only(&refs[i].op) {
            // `probe` stays equal to `state`: the op is a pure read.
            if wanted(i, &probe.step(&refs[i].op)) {
                return Frame { candidates: vec![i], tried: 0, blocked };
            }
            waiting.push(i);
        }
    }
    // Would `op` match if it ran in state `s`?
    let matches_in = |op: usize, s: &S| {
        let mut t = s.clone();
        wanted(op, &t.step(&refs[op].op))
    };
    let blocked_waits = blocked.is_some_and(|b| calls.contains(&b) && !matches_in(b, state));
    let mut scored: Vec<(u8, usize)> = Vec::with_capacity(calls.len());
    for i in calls {
        if waiting.contains(&i) {
            continue;
        }
        let mut next = state.clone();
        if !wanted(i, &next.step(&refs[i].op)) {
            continue;
        }
        let completed = refs[i].complete.is_some();
        if next == *state {
            // A pending operation that changes nothing never helps.
            if completed {
                scored.push((0, i));
            }
            continue;
        }
        let unblocks = blocked_waits && blocked.is_some_and(|b| matches_in(b, &next));
        // Only pending writes are ranked by the reads they feed: for completed writes this
        // tends to place writes too early.
        let feeds_a_read = !completed && !unblocks && waiting.iter().any(|&r| matches_in(r, &next));
        let rank = match (completed, unblocks, feeds_a_read) {
            (true, true, _) => 1,
            (true, false, _) if Some(i) == blocked => 2,
            (true, false, _) => 3,
            (false, true, _) => 4,
            (false, false, true) => 5,
            // With only reads and blind writes, a pending write that no read sees right away
            // can be dropped or moved to just before the first read that sees it.
            (false, false, false) if blind => continue,
            (false, false, false) => 6,
        };
        scored.push((rank, i));
    }
    scored.sort_by_key(|&(rank, _)| rank);
    Frame { candidates: scored.into_iter().map(|(_, i)| i).collect(), tried: 0, blocked }
}

/// Describes the deepest dead end, in history indices.
fn explain<S: SeqSpec>(ops: &[Indexed<'_, S>], deepest: Option<Stuck<S>>) -> Violation {
    let Some(stuck) = deepest else {
        return Violation {
            explanation: "no operation can be linearized first".to_string(),
            longest_prefix: Vec::new(),
            stuck_op: None,
        };
    };
    let mut text = format!("the longest linearizable prefix found has {} operation(s)", stuck.prefix.len());
    let tail = stuck.prefix.len().saturating_sub(5);
    if !stuck.prefix.is_empty() {
        text.push_str(if tail > 0 { ", ending ...; " } else { ": " });
        for &i in &stuck.prefix[tail..] {
            let _ = write!(text, "{}; ", describe(ops, i));
        }
    } else {
        text.push_str(". ");
    }
    let (_, o) = ops[stuck.op];
    let mut spec = stuck.state.clone();
    let spec_ret = spec.step(&o.op);
    let _ = write!(text, "then {} must take effect, but ", describe(ops, stuck.op));
    match &o.complete {
        Some((_, want)) if *want != spec_ret => {
            let _ = write!(text, "from spec state {} it would return {}", short(&stuck.state), short(&spec_ret));
        }
        _ => text.push_str("every continuation from this point was already shown to fail"),
    }
    text.push_str("; no other order of the concurrent operations avoids a dead end");
    Violation {
        explanation: text,
        longest_prefix: stuck.prefix.iter().map(|&i| ops[i].0).collect(),
        stuck_op: Some(ops[stuck.op].0),
    }
}

/// `#index (client c, op, [invoke, complete] -> result)`.
fn describe<Op: core::fmt::Debug, Ret: core::fmt::Debug>(ops: &[(usize, &Operation<Op, Ret>)], i: usize) -> String {
    let (index, o) = ops[i];
    match &o.complete {
        Some((done, ret)) => format!(
            "#{index} (client {}, {} in [{}, {}] us -> {})",
            o.client,
            short(&o.op),
            o.invoke_us,
            done,
            short(ret)
        ),
        None => format!("#{index} (client {}, {} invoked at {} us, pending)", o.client, short(&o.op), o.invoke_us),
    }
}

/// `Debug` output cut to a readable length.
fn short<T: core::fmt::Debug>(value: &T) -> String {
    const MAX: usize = 160;
    let s = format!("{value:?}");
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s,
    }
}
