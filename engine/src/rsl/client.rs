//! The sans-IO RSL client: one outstanding request (or group), retransmitted until its reply arrives.
//!
//! Contract (same shape as the replica's): `submit` queues the request's first datagram;
//! feed every received datagram to `handle`, which returns the reply once it matches the
//! outstanding seqno; call `tick` at `next_deadline` to retransmit. The first try goes to
//! the replica that answered last; every retry goes to all replicas, so that whichever
//! leads gets it and the others can suspect a silent leader (IronRSL's client rotates one
//! replica at a time, which makes a view change wait for several client timeouts).
//!
//! A pipelined session sends a group of requests instead ([`Client::submit_group`]): up to
//! [`group::MAX_GROUP_REQUESTS`] in one datagram under one seqno, executed in order, each
//! exactly once, answered by one datagram. One request or group is outstanding at a time.
//!
//! Seqnos must grow across the client's whole life at one endpoint: replicas remember the
//! last executed seqno per client endpoint. A client restarting on the same endpoint must
//! start above any seqno it used before (the std client seeds it from the wall clock).

use crate::config::ConfigError;
use crate::emit::{self, Envelope};
use crate::endpoint::Endpoint;
use crate::outbox::Outbox;
use crate::stats::Stats;
use crate::time::Instant;
use crate::wire::{self, Bytes};

use super::batch::EntryKind;
use super::config::BATCH_OVERHEAD_BYTES;
use super::group;
use super::msg::RslMsg;
use super::replica::ENTRY_OVERHEAD_BYTES;

/// Why a request was not submitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ClientError {
    /// A request is already outstanding.
    Busy,
    /// The request does not fit one datagram.
    TooLarge,
}

/// A reply matched to the outstanding request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completed<'d> {
    /// The request's seqno.
    pub seqno: u64,
    /// The reply bytes (borrowed from the datagram).
    pub reply: &'d [u8],
    /// How many times the request was sent.
    pub sends: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Pending<const D: usize> {
    seqno: u64,
    /// The request, a group's encoding, or a membership change.
    request: heapless::Vec<u8, D>,
    kind: EntryKind,
    deadline: Instant,
    sends: u32,
}

impl<const D: usize> Pending<D> {
    /// The message that carries it.
    fn message(&self) -> RslMsg<'_> {
        match self.kind {
            EntryKind::Group => RslMsg::Requests { seqno: self.seqno, requests: Bytes(&self.request) },
            EntryKind::Single => RslMsg::Request { seqno: self.seqno, request: Bytes(&self.request) },
            EntryKind::Change => RslMsg::Change { seqno: self.seqno, change: Bytes(&self.request) },
        }
    }
}

/// The send of a request from which each retransmission also asks the replicas for their
/// membership (the second retransmission: the first covers a lost datagram).
pub const MEMBERS_ASKED_FROM_SEND: u32 = 3;

/// An RSL client for a cluster of at most `R` replicas, requests of at most `D` bytes.
///
/// Equality and hashing (for model checkers) compare the protocol state only: the
/// [`Stats`] counters are left out, as they never influence behaviour.
#[derive(Clone, Debug)]
pub struct Client<const R: usize = 7, const D: usize = 1472> {
    replicas: heapless::Vec<Endpoint, R>,
    /// The membership epoch `replicas` belong to ([`super::membership`]).
    epoch: u64,
    /// The cluster identity requests name ([`crate::wire::ANY_CLUSTER`]: none).
    cluster: u32,
    max_datagram_bytes: usize,
    retransmit_ms: u64,
    next_seqno: u64,
    preferred: usize,
    pending: Option<Pending<D>>,
    stats: Stats,
}

impl<const R: usize, const D: usize> Client<R, D> {
    /// A client of `replicas` whose first request gets seqno `first_seqno` (> 0).
    pub fn new(
        replicas: &[Endpoint],
        first_seqno: u64,
        retransmit_ms: u64,
        max_datagram_bytes: usize,
    ) -> Result<Self, ConfigError> {
        let replicas = heapless::Vec::from_slice(replicas).map_err(|_| ConfigError::TooManyReplicas)?;
        if replicas.is_empty() {
            return Err(ConfigError::NoReplicas);
        }
        if retransmit_ms == 0 {
            return Err(ConfigError::Invalid("retransmit_ms"));
        }
        if max_datagram_bytes > D || max_datagram_bytes < wire::HEADER_BYTES + 16 {
            return Err(ConfigError::Invalid("max_datagram_bytes"));
        }
        Ok(Client {
            replicas,
            epoch: 0,
            cluster: wire::ANY_CLUSTER,
            max_datagram_bytes,
            retransmit_ms,
            next_seqno: first_seqno.max(1),
            preferred: 0,
            pending: None,
            stats: Stats::default(),
        })
    }

    /// Sends `request` to the preferred replica; returns its seqno.
    pub fn submit(&mut self, now: Instant, request: &[u8], out: &mut Outbox<'_>) -> Result<u64, ClientError> {
        self.submit_one(now, request, EntryKind::Single, out)
    }

    /// Sends a membership change ([`super::membership::Change`], encoded by
    /// [`super::membership::encode_change`]) as an operator's request; its reply is a
    /// [`super::membership::Outcome`].
    pub fn submit_change(&mut self, now: Instant, change: &[u8], out: &mut Outbox<'_>) -> Result<u64, ClientError> {
        self.submit_one(now, change, EntryKind::Change, out)
    }

    /// Sends one request of `kind` (not a group) to the preferred replica.
    fn submit_one(
        &mut self,
        now: Instant,
        bytes: &[u8],
        kind: EntryKind,
        out: &mut Outbox<'_>,
    ) -> Result<u64, ClientError> {
        if bytes.len() > D {
            return Err(ClientError::TooLarge);
        }
        let pending = self.start(now, kind)?;
        // Cannot fail: `bytes.len() <= D`.
        let _ = pending.request.extend_from_slice(bytes);
        self.send_started(out)
    }

    /// The membership this client sends to: its epoch and replicas. It follows a change
    /// when a replica of its epoch answers with the next one ([`RslMsg::Members`]).
    pub fn membership(&self) -> (u64, &[Endpoint]) {
        (self.epoch, &self.replicas)
    }

    /// Names cluster `identity` ([`super::config::RslConfig::identity`]) in every request:
    /// a replica of another cluster refuses them, and one of a later epoch answers with
    /// the current membership, which this client then follows. Without it (the default)
    /// requests name no cluster, and the client learns a new membership only from a
    /// replica that left the cluster.
    pub fn set_cluster(&mut self, identity: u32) {
        self.cluster = identity;
    }

    /// Starts from a membership learned elsewhere (a [`RslMsg::Members`] answer): epoch
    /// `epoch`, `replicas`. Fails if they are none or more than `R`.
    pub fn set_membership(&mut self, epoch: u64, replicas: &[Endpoint]) -> Result<(), ConfigError> {
        let replicas = heapless::Vec::from_slice(replicas).map_err(|_| ConfigError::TooManyReplicas)?;
        if replicas.is_empty() {
            return Err(ConfigError::NoReplicas);
        }
        self.replicas = replicas;
        self.epoch = epoch;
        self.preferred = 0;
        Ok(())
    }

    /// Sends a group of requests under one seqno, as one datagram (a pipelined session, see
    /// [`crate::rsl::group`]): they are executed in this order, each exactly once. Packs the
    /// longest prefix of `requests` that fits one request to the replicas (a batch entry in
    /// one datagram) and [`group::MAX_GROUP_REQUESTS`];
    /// returns the seqno and how many were packed (at least one). The reply
    /// ([`Completed::reply`]) is read with [`group::replies`].
    pub fn submit_group(
        &mut self,
        now: Instant,
        requests: &[&[u8]],
        out: &mut Outbox<'_>,
    ) -> Result<(u64, usize), ClientError> {
        // A group is one request to the replicas: it must fit one batch entry, as any
        // request must (`Replica::max_request_bytes` with this datagram bound).
        let room = self.max_datagram_bytes.saturating_sub(BATCH_OVERHEAD_BYTES + ENTRY_OVERHEAD_BYTES).min(D);
        let pending = self.start(now, EntryKind::Group)?;
        let mut count = 0;
        for request in requests.iter().take(group::MAX_GROUP_REQUESTS) {
            let before = pending.request.len();
            if wire::append(&mut pending.request, &Bytes(request)).is_err() || pending.request.len() > room {
                pending.request.truncate(before);
                break;
            }
            count += 1;
        }
        if count == 0 {
            self.pending = None;
            return Err(ClientError::TooLarge);
        }
        self.send_started(out).map(|seqno| (seqno, count))
    }

    /// A new outstanding request (a group if `group`) under the next seqno, empty, for the
    /// caller to fill. Built in place: a `Pending` holds a D-byte buffer, and building one
    /// on the stack and moving it in copied all D bytes per request (64 KiB for std
    /// clients, a third of the load generator's CPU).
    fn start(&mut self, now: Instant, kind: EntryKind) -> Result<&mut Pending<D>, ClientError> {
        if self.pending.is_some() {
            return Err(ClientError::Busy);
        }
        let (seqno, deadline) = (self.next_seqno, now.plus_ms(self.retransmit_ms));
        Ok(self.pending.insert(Pending { seqno, request: heapless::Vec::new(), kind, deadline, sends: 1 }))
    }

    /// Sends the request [`Client::start`] began to the preferred replica; one that does not
    /// fit a datagram is dropped and refused.
    fn send_started(&mut self, out: &mut Outbox<'_>) -> Result<u64, ClientError> {
        let Some(p) = self.pending.as_ref() else { return Err(ClientError::Busy) };
        let dst = self.replicas[self.preferred];
        let sent =
            emit::send(out, &mut self.stats, Envelope::Rsl(self.cluster), self.max_datagram_bytes, dst, &p.message());
        if !sent && self.stats.oversize_messages > 0 {
            self.stats.oversize_messages = 0;
            self.pending = None;
            return Err(ClientError::TooLarge);
        }
        let seqno = p.seqno;
        self.next_seqno = seqno.saturating_add(1);
        Ok(seqno)
    }

    /// Takes a received datagram; returns the reply if it answers the outstanding request.
    pub fn handle<'d>(&mut self, now: Instant, from: Endpoint, datagram: &'d [u8]) -> Option<Completed<'d>> {
        Stats::bump(&mut self.stats.datagrams_in);
        let Ok(msg) = crate::rsl::msg_codec::decode_rsl(datagram).map(|(_, m)| m) else {
            Stats::bump(&mut self.stats.decode_errors);
            return None;
        };
        let (seqno, reply, group) = match msg {
            RslMsg::Reply { seqno, reply } => (seqno, reply, false),
            RslMsg::Replies { seqno, replies } => (seqno, replies, true),
            RslMsg::Members { epoch, cluster, replicas, .. } => {
                self.follow(now, from, epoch, cluster, replicas.0);
                return None;
            }
            _ => {
                Stats::bump(&mut self.stats.ignored_messages);
                return None;
            }
        };
        let Some(from_index) = self.replicas.iter().position(|r| *r == from) else {
            Stats::bump(&mut self.stats.unknown_sender);
            return None;
        };
        match &self.pending {
            Some(p) if p.seqno == seqno && (p.kind == EntryKind::Group) == group => {
                let sends = p.sends;
                self.pending = None;
                self.preferred = from_index;
                Some(Completed { seqno, reply: reply.0, sends })
            }
            _ => {
                Stats::bump(&mut self.stats.ignored_messages);
                None
            }
        }
    }

    /// A replica of this client's epoch says the cluster moved to epoch `epoch` with
    /// `replicas`: send there from now on, the outstanding request at once.
    fn follow(&mut self, now: Instant, from: Endpoint, epoch: u64, cluster: u32, replicas: &[u8]) {
        let known = self.replicas.contains(&from);
        match super::membership::replicas_of::<R>(replicas) {
            Ok(next) if known && epoch > self.epoch => {
                self.replicas = next;
                self.epoch = epoch;
                if self.cluster != wire::ANY_CLUSTER {
                    self.cluster = cluster;
                }
                self.preferred = 0;
                if let Some(p) = self.pending.as_mut() {
                    p.deadline = now;
                }
            }
            Ok(_) => Stats::bump(&mut self.stats.ignored_messages),
            Err(_) => Stats::bump(&mut self.stats.invalid_messages),
        }
    }

    /// Retransmits the outstanding request if its timer expired, to every replica.
    pub fn tick(&mut self, now: Instant, out: &mut Outbox<'_>) {
        let Some(p) = self.pending.as_mut() else { return };
        if now < p.deadline {
            return;
        }
        p.deadline = now.plus_ms(self.retransmit_ms);
        p.sends = p.sends.saturating_add(1);
        self.preferred = (self.preferred + 1) % self.replicas.len();
        emit::broadcast(
            out,
            &mut self.stats,
            Envelope::Rsl(self.cluster),
            self.max_datagram_bytes,
            &self.replicas,
            &p.message(),
        );
        // Still unanswered after a retransmission: the cluster may have moved to replicas
        // this client does not know. They matter even while the replicas it knows still
        // serve: a replica suspects a dead leader only from requests it saw, and a view
        // change needs a quorum of suspicions, which after growing may need new replicas.
        // Any replica answers with its membership, which the client follows if newer.
        if p.sends >= MEMBERS_ASKED_FROM_SEND {
            let ask = RslMsg::MembersRequest { nonce: p.seqno };
            let max = self.max_datagram_bytes;
            emit::broadcast(out, &mut self.stats, Envelope::Rsl(wire::ANY_CLUSTER), max, &self.replicas, &ask);
        }
    }

    /// When `tick` must next be called.
    pub fn next_deadline(&self) -> Instant {
        self.pending.as_ref().map_or(Instant::NEVER, |p| p.deadline)
    }

    /// The seqno of the outstanding request.
    pub fn pending(&self) -> Option<u64> {
        self.pending.as_ref().map(|p| p.seqno)
    }

    /// Gives up on the outstanding request (its outcome stays unknown to the caller).
    pub fn cancel(&mut self) {
        self.pending = None;
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

impl<const R: usize, const D: usize> PartialEq for Client<R, D> {
    fn eq(&self, other: &Self) -> bool {
        self.replicas == other.replicas
            && self.epoch == other.epoch
            && self.cluster == other.cluster
            && self.max_datagram_bytes == other.max_datagram_bytes
            && self.retransmit_ms == other.retransmit_ms
            && self.next_seqno == other.next_seqno
            && self.preferred == other.preferred
            && self.pending == other.pending
    }
}

impl<const R: usize, const D: usize> Eq for Client<R, D> {}

impl<const R: usize, const D: usize> core::hash::Hash for Client<R, D> {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.replicas.hash(state);
        self.epoch.hash(state);
        self.cluster.hash(state);
        self.max_datagram_bytes.hash(state);
        self.retransmit_ms.hash(state);
        self.next_seqno.hash(state);
        self.preferred.hash(state);
        self.pending.hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::OutboxBuf;
    use crate::wire::Protocol;

    fn eps() -> [Endpoint; 3] {
        [Endpoint::v4([127, 0, 0, 1], 1), Endpoint::v4([127, 0, 0, 1], 2), Endpoint::v4([127, 0, 0, 1], 3)]
    }

    fn reply(seqno: u64, body: &[u8]) -> heapless::Vec<u8, 64> {
        let mut buf = [0u8; 64];
        let n = wire::encode(Protocol::Rsl, &RslMsg::Reply { seqno, reply: Bytes(body) }, &mut buf).unwrap();
        heapless::Vec::from_slice(&buf[..n]).unwrap()
    }

    #[test]
    fn client_accepts_only_the_matching_reply() {
        let mut store = OutboxBuf::<8, 4096>::new();
        let mut out = store.outbox();
        let mut c: Client<3, 256> = Client::new(&eps(), 10, 100, 256).unwrap();
        let s = c.submit(Instant::ZERO, b"req", &mut out).unwrap();
        assert_eq!(s, 10);
        assert_eq!(out.len(), 1);
        assert_eq!(c.submit(Instant::ZERO, b"req", &mut out), Err(ClientError::Busy));
        assert!(c.handle(Instant::ZERO, eps()[0], &reply(9, b"old")).is_none(), "wrong seqno");
        let stranger = Endpoint::v4([10, 9, 9, 9], 1);
        assert!(c.handle(Instant::ZERO, stranger, &reply(10, b"x")).is_none(), "not a replica");
        let ok = reply(10, b"ok");
        let done = c.handle(Instant::ZERO, eps()[1], &ok).unwrap();
        assert_eq!(done.reply, b"ok");
        assert!(c.handle(Instant::ZERO, eps()[1], &reply(10, b"ok")).is_none(), "duplicate reply");
        assert_eq!(c.pending(), None);
    }

    #[test]
    fn client_retransmits_to_every_replica_after_a_timeout() {
        let mut store = OutboxBuf::<8, 4096>::new();
        let mut out = store.outbox();
        let mut c: Client<3, 256> = Client::new(&eps(), 1, 100, 256).unwrap();
        c.submit(Instant::ZERO, b"req", &mut out).unwrap();
        out.clear();
        c.tick(Instant::from_millis(99), &mut out);
        assert!(out.is_empty());
        assert_eq!(c.next_deadline(), Instant::from_millis(100));
        c.tick(Instant::from_millis(100), &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(c.next_deadline(), Instant::from_millis(200));
    }

    #[test]
    fn a_retransmission_moves_the_preferred_replica_to_the_next_one() {
        let mut store = OutboxBuf::<8, 4096>::new();
        let mut out = store.outbox();
        let mut c: Client<3, 256> = Client::new(&eps(), 1, 100, 256).unwrap();
        c.submit(Instant::ZERO, b"req", &mut out).unwrap();
        assert_eq!(out.iter().map(|(d, _)| d).collect::<heapless::Vec<_, 8>>()[..], [eps()[0]]);
        c.tick(Instant::from_millis(100), &mut out);
        c.cancel();
        assert_eq!(c.pending(), None, "cancel forgets the outstanding request");
        out.clear();
        assert_eq!(c.submit(Instant::from_millis(100), b"req", &mut out), Ok(2), "not Busy after cancel");
        assert_eq!(out.iter().map(|(d, _)| d).collect::<heapless::Vec<_, 8>>()[..], [eps()[1]]);
        for k in 2..=3 {
            c.tick(Instant::from_millis(100 * k), &mut out);
        }
        c.cancel();
        out.clear();
        c.submit(Instant::from_millis(300), b"req", &mut out).unwrap();
        assert_eq!(out.iter().map(|(d, _)| d).collect::<heapless::Vec<_, 8>>()[..], [eps()[0]], "wraps around");
    }

    /// The model checker tells states apart by `Eq` and `Hash`: a field they skipped would
    /// merge distinct states and hide behaviours.
    #[test]
    fn client_equality_and_hash_see_every_field() {
        let hash = crate::rsl::app::hash_of::<Client<3, 256>>;
        let mut store = OutboxBuf::<8, 4096>::new();
        let mut out = store.outbox();
        let base: Client<3, 256> = Client::new(&eps(), 1, 100, 256).unwrap();
        assert!(base.clone() == base);
        assert_eq!(hash(&base.clone()), hash(&base));
        let mut pending = base.clone();
        pending.submit(Instant::ZERO, b"req", &mut out).unwrap();
        let mut rotated = pending.clone();
        rotated.tick(Instant::from_millis(100), &mut out);
        let mut seqno_only = pending.clone();
        seqno_only.cancel();
        let variants = [
            ("replicas", Client::new(&eps()[..2], 1, 100, 256).unwrap()),
            ("max datagram", Client::new(&eps(), 1, 100, 255).unwrap()),
            ("retransmit", Client::new(&eps(), 1, 101, 256).unwrap()),
            ("next seqno", Client::new(&eps(), 2, 100, 256).unwrap()),
            ("pending", pending.clone()),
            ("preferred and deadline", rotated.clone()),
        ];
        for (what, v) in variants.iter() {
            assert!(*v != base, "{what}");
            assert_ne!(hash(v), hash(&base), "{what}");
        }
        assert!(rotated != pending && seqno_only != pending && seqno_only != base);
    }

    #[test]
    fn a_group_packs_what_fits_one_datagram_and_takes_only_a_group_reply() {
        let mut store = OutboxBuf::<8, 4096>::new();
        let mut out = store.outbox();
        let mut c: Client<3, 256> = Client::new(&eps(), 5, 100, 256).unwrap();
        let reqs = [&[1u8; 20][..], &[2u8; 20][..], &[3u8; 20][..]];
        let seven = [&[1u8; 20][..], &[2u8; 20][..], &[7u8; 20], &[7u8; 20], &[7u8; 20], &[7u8; 20], &[7u8; 20]];
        let room = 256 - BATCH_OVERHEAD_BYTES - ENTRY_OVERHEAD_BYTES;
        assert_eq!(room / 21, 6, "a request of 256-byte datagrams holds six 20-byte requests");
        assert_eq!(c.submit_group(Instant::ZERO, &seven, &mut out), Ok((5, 6)));
        assert_eq!(c.submit_group(Instant::ZERO, &reqs, &mut out), Err(ClientError::Busy));
        let (_, bytes) = out.iter().next().unwrap();
        let Ok(RslMsg::Requests { seqno: 5, requests }) = wire::decode::<RslMsg<'_>>(Protocol::Rsl, bytes) else {
            panic!("not a group")
        };
        assert!(group::requests(requests.0).eq(seven[..6].iter().copied()));
        assert!(c.handle(Instant::ZERO, eps()[0], &reply(5, b"single")).is_none(), "a group takes a group reply");
        let mut buf = [0u8; 64];
        let body = RslMsg::Replies { seqno: 5, replies: Bytes(&[1, 1, b'k']) };
        let n = wire::encode(Protocol::Rsl, &body, &mut buf).unwrap();
        let done = c.handle(Instant::ZERO, eps()[0], &buf[..n]).unwrap();
        assert!(group::replies(done.reply).eq([Some(&b"k"[..])]));
        out.clear();
        let mut roomy: Client<3, 256> = Client::new(&eps(), 1, 100, 256).unwrap();
        assert_eq!(roomy.submit_group(Instant::ZERO, &reqs, &mut out), Ok((1, 3)));
        roomy.tick(Instant::from_millis(100), &mut out);
        let resent = out
            .iter()
            .filter(|(_, b)| matches!(wire::decode::<RslMsg<'_>>(Protocol::Rsl, b), Ok(RslMsg::Requests { .. })));
        assert_eq!(resent.count(), 4, "the first send and three retransmissions, all as a group");
        assert_eq!(roomy.submit_group(Instant::ZERO, &[&[0u8; 300][..]], &mut out), Err(ClientError::Busy));
        roomy.cancel();
        assert_eq!(roomy.submit_group(Instant::ZERO, &[&[0u8; 300][..]], &mut out), Err(ClientError::TooLarge));
        assert_eq!(roomy.pending(), None, "a refused group leaves nothing outstanding");
    }

    #[test]
    fn oversize_request_is_refused() {
        let mut store = OutboxBuf::<8, 4096>::new();
        let mut out = store.outbox();
        let mut c: Client<3, 256> = Client::new(&eps(), 1, 100, 64).unwrap();
        assert_eq!(c.submit(Instant::ZERO, &[0u8; 100], &mut out), Err(ClientError::TooLarge));
        assert_eq!(c.pending(), None);
    }

    #[test]
    fn a_request_that_does_not_fit_the_outbox_stays_pending_for_retransmission() {
        let mut store = OutboxBuf::<0, 0>::new();
        let mut out = store.outbox();
        let mut c: Client<3, 256> = Client::new(&eps(), 4, 100, 256).unwrap();
        assert_eq!(c.submit(Instant::ZERO, b"req", &mut out), Ok(4), "a full outbox is not a too-large request");
        assert_eq!(c.pending(), Some(4));
        let mut roomy = OutboxBuf::<8, 4096>::new();
        let mut out = roomy.outbox();
        c.tick(Instant::from_millis(100), &mut out);
        assert_eq!(out.len(), 3, "retransmitted");
    }

    fn members(epoch: u64, cluster: u32, replicas: &[Endpoint]) -> heapless::Vec<u8, 256> {
        let mut list = [0u8; 128];
        let mut used = 0;
        for r in replicas {
            used += wire::append_slice(&mut list[used..], r).unwrap();
        }
        let msg = RslMsg::Members { nonce: 0, epoch, cluster, start: 9, replicas: Bytes(&list[..used]) };
        let mut buf = [0u8; 256];
        let n = wire::encode_rsl(7, &msg, &mut buf).unwrap();
        heapless::Vec::from_slice(&buf[..n]).unwrap()
    }

    #[test]
    fn a_client_follows_a_later_membership_from_one_of_its_replicas_only() {
        let mut store = OutboxBuf::<8, 4096>::new();
        let mut out = store.outbox();
        let mut c: Client<3, 256> = Client::new(&eps(), 1, 100, 256).unwrap();
        c.set_cluster(7);
        let _ = c.submit(Instant::ZERO, b"req", &mut out).unwrap();
        let next = [eps()[0], eps()[1], Endpoint::v4([127, 0, 0, 1], 9)];
        let stranger = Endpoint::v4([10, 9, 9, 9], 1);
        assert!(c.handle(Instant::ZERO, stranger, &members(1, 8, &next)).is_none());
        assert_eq!(c.membership().0, 0, "not from a replica of its epoch");
        assert!(c.handle(Instant::ZERO, eps()[2], &members(0, 8, &next)).is_none());
        assert_eq!(c.membership().0, 0, "not a later epoch");
        assert!(c.handle(Instant::from_millis(5), eps()[2], &members(1, 8, &next)).is_none());
        assert_eq!(c.membership(), (1, &next[..]));
        assert_eq!(c.next_deadline(), Instant::from_millis(5), "the outstanding request goes to the new replicas now");
        let mut out = store.outbox();
        c.tick(Instant::from_millis(5), &mut out);
        let sent: heapless::Vec<(Endpoint, u32), 4> =
            out.iter().map(|(d, b)| (d, wire::decode_rsl::<RslMsg<'_>>(b).unwrap().0)).collect();
        assert_eq!(
            &sent[..],
            &[(next[0], 8), (next[1], 8), (next[2], 8)],
            "to the new replicas, naming the new cluster"
        );
    }
}
