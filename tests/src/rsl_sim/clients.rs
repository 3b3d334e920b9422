//! The simulated clients: the operations they call, what comes back, and the recorded history.

use fleet_engine::Endpoint;

use super::SimClient;

/// A client operation on the replicated KV app.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvCall {
    /// Read a key.
    Get(Vec<u8>),
    /// Write a key.
    Put(Vec<u8>, Vec<u8>),
    /// Remove a key.
    Delete(Vec<u8>),
}

/// What a completed operation returned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvResult {
    /// Get's answer.
    Value(Option<Vec<u8>>),
    /// Put/Delete done.
    Done,
    /// The application refused (or the reply did not decode).
    Error,
}

/// One operation in the recorded client history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryOp {
    /// Client index.
    pub client: usize,
    /// The call.
    pub call: KvCall,
    /// When it was submitted (global microseconds).
    pub invoke_us: u64,
    /// When and with what it completed; `None` while pending.
    pub complete: Option<(u64, KvResult)>,
}

/// A simulated client and its closed-loop workload.
#[derive(Debug)]
pub struct ClientSlot {
    /// The sans-IO client.
    pub client: SimClient,
    /// Its endpoint.
    pub ep: Endpoint,
    /// Operations left to submit.
    pub remaining: u32,
    /// When it may submit next (global microseconds).
    pub next_submit_us: u64,
    /// Indices in the history of the outstanding operations: one, or a group's in order.
    pub current: Vec<usize>,
    /// Seqno of the outstanding request.
    pub seqno: u64,
    /// The outstanding request is a group.
    pub group: bool,
    /// Crash-stopped.
    pub crashed: bool,
}
