//! The checker's event list: call and return entries in real-time order, as a doubly linked
//! list from which a linearized operation's entries can be lifted and later restored
//! (dancing links, restored in LIFO order).

use super::Operation;

/// "No node": the end of the list.
pub(super) const NIL: usize = usize::MAX;

/// The list head is a sentinel at this index.
const HEAD: usize = 0;

#[derive(Clone, Copy, Debug)]
struct Node {
    /// Local index of the operation (position in the slice the list was built from).
    op: usize,
    is_call: bool,
    prev: usize,
    next: usize,
}

/// One entry of the list, as the search sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Entry {
    /// The invocation of operation `op`.
    Call(usize),
    /// The response of operation `op`.
    Return(usize),
}

#[derive(Debug)]
pub(super) struct EntryList {
    nodes: Vec<Node>,
    call_node: Vec<usize>,
    /// `NIL` for pending operations, which have no return entry.
    ret_node: Vec<usize>,
}

impl EntryList {
    /// Builds the list for `ops`. Entries are sorted by time; at equal times calls come before
    /// returns, so an operation invoked at the instant another completes counts as concurrent
    /// with it (the lenient reading of a microsecond clock). Pending operations get only a
    /// call entry: nothing forces them to be linearized.
    pub(super) fn build<Op, Ret>(ops: &[&Operation<Op, Ret>]) -> Self {
        // (time, is_return, op): calls sort before returns at equal times.
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * ops.len());
        for (i, o) in ops.iter().enumerate() {
            events.push((o.invoke_us, false, i));
            if let Some((t, _)) = &o.complete {
                events.push((*t, true, i));
            }
        }
        events.sort_unstable();
        let mut nodes = Vec::with_capacity(events.len() + 1);
        nodes.push(Node { op: usize::MAX, is_call: false, prev: NIL, next: NIL });
        let mut call_node = vec![NIL; ops.len()];
        let mut ret_node = vec![NIL; ops.len()];
        for (pos, &(_, is_return, op)) in events.iter().enumerate() {
            let id = pos + 1;
            let next = if pos + 1 < events.len() { id + 1 } else { NIL };
            nodes.push(Node { op, is_call: !is_return, prev: id - 1, next });
            if is_return {
                ret_node[op] = id;
            } else {
                call_node[op] = id;
            }
        }
        if !events.is_empty() {
            nodes[HEAD].next = 1;
        }
        Self { nodes, call_node, ret_node }
    }

    /// The first entry still in the list.
    pub(super) fn first(&self) -> usize {
        self.nodes[HEAD].next
    }

    /// The entry at node `id` (which must not be `NIL`).
    pub(super) fn entry(&self, id: usize) -> Entry {
        let n = self.nodes[id];
        if n.is_call {
            Entry::Call(n.op)
        } else {
            Entry::Return(n.op)
        }
    }

    /// The node after `id`.
    pub(super) fn next(&self, id: usize) -> usize {
        self.nodes[id].next
    }

    /// Removes operation `op`'s entries from the list.
    pub(super) fn lift(&mut self, op: usize) {
        self.unlink(self.call_node[op]);
        if self.ret_node[op] != NIL {
            self.unlink(self.ret_node[op]);
        }
    }

    /// Restores the entries removed by the matching (most recent unrestored) `lift(op)`.
    pub(super) fn unlift(&mut self, op: usize) {
        if self.ret_node[op] != NIL {
            self.relink(self.ret_node[op]);
        }
        self.relink(self.call_node[op]);
    }

    fn unlink(&mut self, id: usize) {
        let Node { prev, next, .. } = self.nodes[id];
        self.nodes[prev].next = next;
        if next != NIL {
            self.nodes[next].prev = prev;
        }
    }

    fn relink(&mut self, id: usize) {
        let Node { prev, next, .. } = self.nodes[id];
        self.nodes[prev].next = id;
        if next != NIL {
            self.nodes[next].prev = id;
        }
    }
}
