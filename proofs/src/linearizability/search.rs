//! The search itself: just-in-time linearization with backtracking and a memo cache.

use std::collections::HashSet;
use std::fmt::Write as _;

use super::entries::{Entry, EntryList, NIL};
use super::{CheckError, Indexed, Linearization, Operation, Unknown, Violation};
use crate::bitset::BitSet;
use crate::budget::Meter;
use crate::spec::SeqSpec;

/// The deepest dead end seen: the search state when a return entry forced a backtrack.
struct Stuck<S> {
    /// Local indices linearized so far.
    prefix: Vec<usize>,
    /// Local index of the operation whose return was reached unlinearized.
    op: usize,
    /// Spec state after `prefix`.
    state: S,
}

/// Checks `ops` (pairs of history index and operation) from `init`.
pub(super) fn run<S: SeqSpec>(
    init: &S,
    ops: &[Indexed<'_, S>],
    meter: &mut Meter,
) -> Result<Linearization, CheckError> {
    let refs: Vec<&Operation<S::Op, S::Ret>> = ops.iter().map(|(_, o)| *o).collect();
    let mut list = EntryList::build(&refs);
    let total_completed = refs.iter().filter(|o| o.complete.is_some()).count();
    let mut linearized = BitSet::new(refs.len());
    let mut cache: HashSet<(BitSet, S)> = HashSet::new();
    // (local index, spec state before it) for each linearized operation, in order.
    let mut stack: Vec<(usize, S)> = Vec::new();
    let mut state = init.clone();
    let mut completed_done = 0usize;
    let mut deepest: Option<Stuck<S>> = None;
    // Candidates at a search node are the calls before the first return entry still in the
    // list. They are tried completed operations first (phase 1), then pending ones (phase 2):
    // a pending operation is then linearized only where nothing else works, which keeps the
    // backtracking local when it took effect late or never.
    let mut cursor = list.first();
    let mut pending_phase = false;
    loop {
        // Success once every completed operation has taken effect; pending operations left
        // over are those that never did.
        if completed_done == total_completed {
            let order = stack.iter().map(|(i, _)| ops[*i].0).collect();
            return Ok(Linearization { order });
        }
        meter.tick().map_err(|exhausted| CheckError::Unknown(Unknown { exhausted }))?;
        // `NIL` is unreachable while a completed operation is unlinearized (its return entry
        // is still in the list); it is treated like a return entry for robustness.
        let entry = if cursor == NIL { None } else { Some(list.entry(cursor)) };
        let blocked = match entry {
            Some(Entry::Call(i)) => {
                let o = refs[i];
                if o.complete.is_none() == pending_phase {
                    let mut next = state.clone();
                    let got = next.step(&o.op);
                    if o.complete.as_ref().is_none_or(|(_, want)| *want == got) {
                        linearized.set(i);
                        if cache.insert((linearized.clone(), next.clone())) {
                            stack.push((i, std::mem::replace(&mut state, next)));
                            list.lift(i);
                            completed_done += usize::from(o.complete.is_some());
                            cursor = list.first();
                            pending_phase = false;
                            continue;
                        }
                        linearized.clear(i);
                    }
                }
                cursor = list.next(cursor);
                continue;
            }
            Some(Entry::Return(i)) => Some(i),
            None => None,
        };
        if !pending_phase {
            pending_phase = true;
            cursor = list.first();
            continue;
        }
        // Dead end: `blocked` had to take effect before this point but could not.
        if let Some(op) = blocked {
            if deepest.as_ref().is_none_or(|d| stack.len() > d.prefix.len()) {
                let prefix = stack.iter().map(|(i, _)| *i).collect();
                deepest = Some(Stuck { prefix, op, state: state.clone() });
            }
        }
        let Some((i, prev)) = stack.pop() else {
            return Err(CheckError::Violation(explain(ops, deepest)));
        };
        linearized.clear(i);
        state = prev;
        list.unlift(i);
        completed_done -= usize::from(refs[i].complete.is_some());
        cursor = list.next(list.call_of(i));
        pending_phase = refs[i].complete.is_none();
    }
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
            let _ = write!(
                text,
                "from spec state {} it would return {}",
                short(&stuck.state),
                short(&spec_ret)
            );
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
