//! A bounded ring buffer of step descriptions: cheap to record (no allocation per step),
//! formatted only when a run fails.

use std::collections::VecDeque;
use std::fmt::Write as _;

/// What one step did, compactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceKind {
    /// A datagram was delivered (`tag`: the message's wire tag).
    Deliver {
        /// Sending host.
        from: usize,
        /// Receiving host.
        to: usize,
        /// Message tag.
        tag: u8,
        /// Bytes.
        len: usize,
    },
    /// A host's timers fired.
    Tick(usize),
    /// A replica's pending sync completed (its held datagrams leave).
    Synced(usize),
    /// A client submitted a request.
    Submit {
        /// Client host.
        client: usize,
        /// Its seqno.
        seqno: u64,
    },
    /// A client got its reply.
    Complete {
        /// Client host.
        client: usize,
        /// Its seqno.
        seqno: u64,
    },
    /// A fault was injected (index into the schedule's kinds, described by `note`).
    Fault(crate::faults::FaultEvent),
    /// A planted bug acted.
    Planted(&'static str),
    /// Something the simulator decided that a reader of the trace should know.
    Note(&'static str),
    /// GST: faults stop.
    Gst,
}

/// One recorded step, with an optional summary of the stepped host afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceEntry {
    /// Step number.
    pub step: u64,
    /// Global time, microseconds.
    pub now_us: u64,
    /// What happened.
    pub kind: TraceKind,
    /// For replica steps: `(view round, view proposer, phase, ops_complete, max_bal round)`.
    pub after: Option<(u64, u8, u8, u64, u64)>,
}

/// The last `capacity` steps.
#[derive(Clone, Debug)]
pub struct Trace {
    entries: VecDeque<TraceEntry>,
    capacity: usize,
}

impl Trace {
    /// An empty trace keeping `capacity` entries.
    pub fn new(capacity: usize) -> Trace {
        Trace { entries: VecDeque::with_capacity(capacity), capacity }
    }

    /// Records one entry, dropping the oldest when full.
    pub fn push(&mut self, e: TraceEntry) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(e);
    }

    /// Sets the host summary of the latest entry.
    pub fn annotate(&mut self, after: (u64, u8, u8, u64, u64)) {
        if let Some(e) = self.entries.back_mut() {
            e.after = Some(after);
        }
    }

    /// The entries, oldest first, formatted with `host_name` naming host indices and
    /// `tag_name` naming message tags.
    pub fn render(&self, host_name: impl Fn(usize) -> String, tag_name: impl Fn(u8) -> &'static str) -> String {
        let mut s = String::new();
        for e in &self.entries {
            let _ = write!(s, "  #{:<8} t={:>12}us  ", e.step, e.now_us);
            let _ = match e.kind {
                TraceKind::Deliver { from, to, tag, len } => {
                    write!(s, "{} -> {}  {} ({len} B)", host_name(from), host_name(to), tag_name(tag))
                }
                TraceKind::Tick(h) => write!(s, "{} tick", host_name(h)),
                TraceKind::Synced(h) => write!(s, "{} sync completes", host_name(h)),
                TraceKind::Submit { client, seqno } => write!(s, "{} submits seqno {seqno}", host_name(client)),
                TraceKind::Complete { client, seqno } => write!(s, "{} completes seqno {seqno}", host_name(client)),
                TraceKind::Fault(f) => write!(s, "FAULT {f:?}"),
                TraceKind::Planted(what) => write!(s, "PLANTED BUG: {what}"),
                TraceKind::Note(what) => write!(s, "NOTE {what}"),
                TraceKind::Gst => write!(s, "GST: partitions healed, loss and duplication off"),
            };
            if let Some((round, prop, phase, ops, max_bal)) = e.after {
                let _ = write!(s, "   [view ({round},{prop}) phase {phase} ops {ops} max_bal.round {max_bal}]");
            }
            s.push('\n');
        }
        s
    }
}
