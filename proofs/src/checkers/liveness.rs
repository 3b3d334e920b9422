//! Liveness after healing: once faults stop (the simulated GST, IronFleet's "eventual
//! synchrony"), every pending client request completes within a bound.
//!
//! IronRSL proves (`lemma_EventuallyLiveReplicaExecutesClientRequest`,
//! `lemma_LivenessAssumptionsAssumingClientNeverGetsReplyCannotHold`) that under eventual
//! synchrony among a live quorum and the client, a client that keeps resending a request
//! eventually gets a reply. A simulator can do better than "eventually": it knows the timeouts,
//! so it derives a bound, and this checker flags every request that misses it.
//! Protocol-agnostic: requests are opaque ids.

use std::collections::BTreeMap;

use super::Violation;

/// Tracks outstanding requests and judges them against a deadline once the network heals.
#[derive(Clone, Debug, Default)]
pub struct LivenessChecker {
    pending: BTreeMap<u64, Pending>,
    gst: Option<(u64, u64)>,
}

#[derive(Clone, Debug)]
struct Pending {
    client: u64,
    invoke_us: u64,
}

impl LivenessChecker {
    /// A checker with nothing outstanding and no GST yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Request `id` of `client` was invoked at `invoke_us`.
    pub fn invoked(&mut self, id: u64, client: u64, invoke_us: u64) {
        self.pending.insert(id, Pending { client, invoke_us });
    }

    /// Request `id` completed.
    pub fn completed(&mut self, id: u64) {
        self.pending.remove(&id);
    }

    /// `client` crash-stopped: its requests are owed nothing.
    pub fn client_crashed(&mut self, client: u64) {
        self.pending.retain(|_, p| p.client != client);
    }

    /// Faults stopped at `gst_us`; from then on every request must complete within
    /// `bound_us` of `max(gst_us, its invocation)`.
    pub fn heal(&mut self, gst_us: u64, bound_us: u64) {
        self.gst = Some((gst_us, bound_us));
    }

    /// Requests still outstanding.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// The latest instant by which every outstanding request must have completed, if healed.
    pub fn deadline(&self) -> Option<u64> {
        let (gst, bound) = self.gst?;
        Some(self.pending.values().map(|p| p.invoke_us.max(gst) + bound).max().unwrap_or(gst))
    }

    /// Reports every outstanding request whose deadline is before `now_us`.
    pub fn check(&self, now_us: u64, out: &mut Vec<Violation>) {
        let Some((gst, bound)) = self.gst else { return };
        for (id, p) in &self.pending {
            let due = p.invoke_us.max(gst) + bound;
            if now_us > due {
                out.push(Violation::new(
                    "liveness",
                    "lemma_EventuallyLiveReplicaExecutesClientRequest",
                    format!(
                        "request #{id} of client {} (invoked at {} us) still pending at {now_us} us: \
                         the network healed at {gst} us and the bound is {bound} us",
                        p.client, p.invoke_us
                    ),
                ));
            }
        }
    }
}
