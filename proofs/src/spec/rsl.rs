//! IronRSL's service spec: a replicated application state machine plus the sets of requests
//! seen and replies sent. One spec step executes a whole decided batch atomically.
//!
//! Mirrors `AbstractServiceRSL_s` of IronFleet: executing a request adds it to `requests`,
//! advances `app`, and adds the app's reply to `replies`. Server addresses are omitted.
//! A reply sent by a server is correct iff [`RslSpec::reply_is_justified`] holds for it.

use std::collections::BTreeSet;

use fleet_engine::rsl::apps::counter::Counter;

use super::SeqSpec;

/// A deterministic application hosted by RSL: `apply` runs one request and returns the reply.
pub trait AppSpec: Clone + Eq + core::hash::Hash + core::fmt::Debug {
    /// Executes one request against the application state.
    fn apply(&mut self, request: &[u8]) -> Vec<u8>;

    /// `Some(reply)` when `request` is a query (it changes nothing): the reply it gets in
    /// this state. A leader may answer queries without a log write, from any state between
    /// the query's arrival and its answer; the default has no queries.
    fn query(&self, _request: &[u8]) -> Option<Vec<u8>> {
        None
    }
}

/// One client request as it appears in a batch: `(client, seqno, request bytes)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppRequest {
    /// The client that sent it.
    pub client: u64,
    /// The client's own sequence number for it.
    pub seqno: u64,
    /// The opaque request bytes handed to the app.
    pub request: Vec<u8>,
}

/// One reply as the spec produces it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppReply {
    /// The client the reply is for.
    pub client: u64,
    /// The seqno of the request it answers.
    pub seqno: u64,
    /// The opaque reply bytes the app returned.
    pub reply: Vec<u8>,
}

/// The service state: app state, every request executed, every reply produced.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RslSpec<A> {
    /// The application's state.
    pub app: A,
    /// Requests executed so far.
    pub requests: BTreeSet<AppRequest>,
    /// Replies produced so far.
    pub replies: BTreeSet<AppReply>,
}

impl<A: AppSpec> RslSpec<A> {
    /// The initial service state around an initial app state.
    pub fn new(app: A) -> Self {
        Self { app, requests: BTreeSet::new(), replies: BTreeSet::new() }
    }

    /// Executes `batch` in order, atomically, returning one reply per request.
    pub fn execute_batch(&mut self, batch: &[AppRequest]) -> Vec<AppReply> {
        let mut out = Vec::with_capacity(batch.len());
        for req in batch {
            let reply = self.app.apply(&req.request);
            let reply = AppReply { client: req.client, seqno: req.seqno, reply };
            self.requests.insert(req.clone());
            self.replies.insert(reply.clone());
            out.push(reply);
        }
        out
    }

    /// Service correspondence: a reply a server sends must be one the spec produced.
    pub fn reply_is_justified(&self, reply: &AppReply) -> bool {
        self.replies.contains(reply)
    }
}

impl<A: AppSpec> SeqSpec for RslSpec<A> {
    /// A decided batch.
    type Op = Vec<AppRequest>;
    /// The batch's replies, in batch order.
    type Ret = Vec<AppReply>;

    fn step(&mut self, batch: &Vec<AppRequest>) -> Vec<AppReply> {
        self.execute_batch(batch)
    }
}

/// The paper's app: a `u64` counter. Every request (whatever its bytes) increments it,
/// saturating at `u64::MAX`; the reply is the new value as 8 little-endian bytes. Fleet's
/// one query (`Counter::QUERY` of the engine) reads the value without incrementing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CounterApp(pub u64);

impl AppSpec for CounterApp {
    fn apply(&mut self, request: &[u8]) -> Vec<u8> {
        if request != Counter::QUERY {
            self.0 = self.0.saturating_add(1);
        }
        self.0.to_le_bytes().to_vec()
    }

    fn query(&self, request: &[u8]) -> Option<Vec<u8>> {
        (request == Counter::QUERY).then(|| self.0.to_le_bytes().to_vec())
    }
}

/// The service Fleet's RSL promises on top of [`RslSpec`]: **exactly-once** execution per
/// client. IronRSL's executor applies every request of a batch; Fleet's skips a request whose
/// seqno is at or below the client's last executed one (its reply cache), so a client's retry
/// that was proposed twice takes effect once. This spec is that rule, with an unbounded
/// memory of clients (the engine's cache evicts only when more than its capacity of clients
/// are active, which a simulator keeps below).
///
/// One spec step is still one decided batch, executed atomically.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExactlyOnceRslSpec<A> {
    /// The application's state.
    pub app: A,
    /// Each client's last executed seqno and its reply.
    pub last: std::collections::BTreeMap<u64, (u64, Vec<u8>)>,
    /// Every reply the service has produced, by `(client, seqno)`: a reply a server sends is
    /// justified iff it is in here with the same bytes.
    pub replies: std::collections::BTreeMap<(u64, u64), Vec<u8>>,
}

impl<A: AppSpec> ExactlyOnceRslSpec<A> {
    /// The initial service state around an initial app state.
    pub fn new(app: A) -> Self {
        Self { app, last: Default::default(), replies: Default::default() }
    }

    /// Executes `batch` in order, atomically. A request at or below its client's last seqno is
    /// not applied again; the replies of the requests that were applied are returned.
    pub fn execute_batch(&mut self, batch: &[AppRequest]) -> Vec<AppReply> {
        let mut out = Vec::with_capacity(batch.len());
        for req in batch {
            if self.last.get(&req.client).is_some_and(|(s, _)| req.seqno <= *s) {
                continue;
            }
            let reply = self.app.apply(&req.request);
            self.last.insert(req.client, (req.seqno, reply.clone()));
            self.replies.insert((req.client, req.seqno), reply.clone());
            out.push(AppReply { client: req.client, seqno: req.seqno, reply });
        }
        out
    }

    /// Service correspondence: a reply a server sends must be one the spec produced.
    pub fn reply_is_justified(&self, reply: &AppReply) -> bool {
        self.replies.get(&(reply.client, reply.seqno)).is_some_and(|r| *r == reply.reply)
    }
}

impl<A: AppSpec> SeqSpec for ExactlyOnceRslSpec<A> {
    /// A decided batch.
    type Op = Vec<AppRequest>;
    /// The replies of the requests applied, in batch order.
    type Ret = Vec<AppReply>;

    fn step(&mut self, batch: &Vec<AppRequest>) -> Vec<AppReply> {
        self.execute_batch(batch)
    }
}

/// One client request at a time against an application: the spec that client histories
/// of an RSL cluster must be linearizable against (a request is executed atomically,
/// exactly once, and answered with the application's reply).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientOps<A>(pub A);

impl<A: AppSpec> SeqSpec for ClientOps<A> {
    /// The request bytes.
    type Op = Vec<u8>;
    /// The reply bytes.
    type Ret = Vec<u8>;

    fn step(&mut self, request: &Vec<u8>) -> Vec<u8> {
        self.0.apply(request)
    }
}
