//! The IronKV host: serves Get/Set for the keys it owns, redirects the rest, and moves key
//! ranges between hosts (Shard / Delegate), all over reliable single delivery.
//!
//! One `handle` is one IronFleet step: at most one datagram in, one `now`, then sends.
//! Processing order for a reliable message: decode and check its bounds, classify its
//! seqno, check that the resources its processing needs are there (room for the reply,
//! storage and map reservations for a Delegate), and only then accept it (advance the
//! channel), ack it and act. A message that fails any check changes nothing: it is counted
//! and either ignored (the sender retransmits) or refused with a visible [`Frame::Refused`].

use super::config::{KvConfig, MAX_TRANSFERS_IN_FLIGHT};
use super::delegation::{DelegationMap, HostId};
use super::msg::{self, Body, KeyRange, KvError, ShardError};
use super::reliable::{AckOutcome, Frame, Refusal, Reliable, Verdict};
use super::storage::{Storage, StorageError};
use crate::config::ConfigError;
use crate::endpoint::Endpoint;
use crate::outbox::Outbox;
use crate::stats::Stats;
use crate::time::{earliest, Instant};
use crate::wire::{self, Bytes, Protocol};

/// A reliable frame's channel fields: its incarnation, its seqno, and the ack it carries.
#[derive(Clone, Copy)]
struct Channel {
    base: u64,
    seqno: u64,
    ack: u64,
}

/// What one step asks of the binding besides sending the outbox.
#[must_use = "a durable binding must persist the store before sending when `storage_changed` is set"]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// The store or the delegation map changed in this step (a durable binding persists
    /// them before any datagram of the step leaves; the engine itself keeps them in memory,
    /// as IronKV does).
    pub storage_changed: bool,
}

/// The host's timers; [`KvHost::next_deadline`] is the earliest armed one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Timer {
    /// Retransmit unacked messages to some peer.
    Retransmit,
}

/// KV-specific counters, beside the shared [`Stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct KvCounters {
    /// Gets answered.
    pub gets: u64,
    /// Sets and Deletes applied.
    pub sets: u64,
    /// Redirects sent.
    pub redirects: u64,
    /// Error replies sent (value too large, storage full, Shard refused).
    pub errors: u64,
    /// Duplicates re-acked.
    pub duplicates: u64,
    /// Back-pressure refusals sent ([`Frame::Refused`]).
    pub refusals_sent: u64,
    /// Refusals received from peers.
    pub refusals_received: u64,
    /// Shards carried out (transfers started).
    pub shards: u64,
    /// Delegate datagrams applied.
    pub delegate_parts: u64,
    /// Incoming transfers completed (ranges taken over).
    pub transfers_in: u64,
    /// Outgoing transfers fully acknowledged.
    pub transfers_out: u64,
}

/// A transfer this host is receiving: some parts applied, the range not owned yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Incoming {
    /// The sender's transfer number.
    pub transfer: u64,
    /// The range.
    pub range: KeyRange,
    /// Parts in the transfer.
    pub parts: u16,
    /// The next part expected.
    pub next_part: u16,
    /// Pairs in the transfer.
    pub total_pairs: u32,
    /// Pairs applied so far.
    pub applied: u32,
}

/// A transfer this host sent and the recipient has not fully acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Outgoing {
    /// This host's transfer number.
    pub transfer: u64,
    /// The recipient host.
    pub recipient: HostId,
    /// The range moved.
    pub range: KeyRange,
    /// Seqno of the last part on the channel to the recipient.
    pub last_seqno: u64,
    /// Pairs moved.
    pub pairs: u32,
}

/// How a Shard will be cut into Delegate datagrams.
#[derive(Clone, Copy, Debug)]
struct Plan {
    parts: u16,
    pairs: u32,
}

/// An IronKV host over storage `S`.
///
/// Capacities are compile-time (no heap): `H` hosts, `M` delegation-map runs, `P` peers
/// (hosts and clients) with reliable channels, `U` unacked messages in all, and `D`-byte
/// datagram buffers. The storage brings its own key and value capacities.
///
/// `Clone`, `Debug`, and a protocol-state `PartialEq`/`Eq`/`Hash` (for model checkers):
/// equality and hashing cover everything that decides future behaviour and leave out the
/// counters ([`KvHost::stats`], [`KvHost::counters`]) and the per-step change flag, as
/// `rsl::Replica` does.
#[derive(Clone, Debug)]
pub struct KvHost<
    S: Storage,
    const H: usize = 16,
    const M: usize = 64,
    const P: usize = 64,
    const U: usize = 64,
    const D: usize = 1472,
> {
    config: KvConfig<H>,
    me: HostId,
    map: DelegationMap<M>,
    store: S,
    rel: Reliable<P, U, D>,
    stats: Stats,
    counters: KvCounters,
    incoming: heapless::Vec<Option<Incoming>, H>,
    completed: heapless::Vec<u64, H>,
    outgoing: heapless::Vec<Outgoing, MAX_TRANSFERS_IN_FLIGHT>,
    next_transfer: u64,
    reserved_pairs: usize,
    changed: bool,
}

impl<S: Storage + PartialEq, const H: usize, const M: usize, const P: usize, const U: usize, const D: usize> PartialEq
    for KvHost<S, H, M, P, U, D>
{
    fn eq(&self, other: &Self) -> bool {
        self.me == other.me
            && self.config == other.config
            && self.map == other.map
            && self.store == other.store
            && self.rel == other.rel
            && self.incoming == other.incoming
            && self.completed == other.completed
            && self.outgoing == other.outgoing
            && self.next_transfer == other.next_transfer
            && self.reserved_pairs == other.reserved_pairs
    }
}

impl<S: Storage + Eq, const H: usize, const M: usize, const P: usize, const U: usize, const D: usize> Eq
    for KvHost<S, H, M, P, U, D>
{
}

impl<S: Storage + core::hash::Hash, const H: usize, const M: usize, const P: usize, const U: usize, const D: usize>
    core::hash::Hash for KvHost<S, H, M, P, U, D>
{
    fn hash<Hs: core::hash::Hasher>(&self, state: &mut Hs) {
        self.me.hash(state);
        self.config.hash(state);
        self.map.hash(state);
        self.store.hash(state);
        self.rel.hash(state);
        self.incoming.hash(state);
        self.completed.hash(state);
        self.outgoing.hash(state);
        self.next_transfer.hash(state);
        self.reserved_pairs.hash(state);
    }
}

impl<S: Storage, const H: usize, const M: usize, const P: usize, const U: usize, const D: usize>
    KvHost<S, H, M, P, U, D>
{
    /// Host number `me` of `config`, over `store` (which should be empty: host 0 initially
    /// owns every key, the others none).
    pub fn new(config: KvConfig<H>, me: usize, store: S) -> Result<Self, ConfigError> {
        config.validate(D)?;
        if me >= config.n() {
            return Err(ConfigError::BadIndex);
        }
        if config.n() > P {
            return Err(ConfigError::Invalid("peer capacity (P) below the host count"));
        }
        if M < 3 {
            return Err(ConfigError::Invalid("delegation map capacity (M) below 3"));
        }
        if store.max_value_bytes() < config.params.max_value_bytes {
            return Err(ConfigError::Invalid("max_value_bytes above the storage's value capacity"));
        }
        if config.params.reliable.max_unacked_per_peer > U {
            return Err(ConfigError::Invalid("max_unacked_per_peer above the unacked capacity (U)"));
        }
        let p = config.params;
        let mut rel = Reliable::new(Protocol::Kv, p.max_datagram_bytes, p.reliable, 1)?;
        for h in &config.hosts {
            rel.add_peer(*h, Some(1)).ok_or(ConfigError::TooManyReplicas)?;
        }
        let mut incoming = heapless::Vec::new();
        let mut completed = heapless::Vec::new();
        for _ in 0..config.n() {
            incoming.push(None).map_err(|_| ConfigError::TooManyReplicas)?;
            completed.push(0).map_err(|_| ConfigError::TooManyReplicas)?;
        }
        Ok(KvHost {
            me: me as HostId,
            map: DelegationMap::new(0),
            store,
            rel,
            stats: Stats::default(),
            counters: KvCounters::default(),
            incoming,
            completed,
            outgoing: heapless::Vec::new(),
            next_transfer: 1,
            reserved_pairs: 0,
            changed: false,
            config,
        })
    }

    /// Handles one received datagram.
    ///
    /// Anything malformed, out of bounds, out of order or from an unknown host (for
    /// Delegate) is counted in [`KvHost::stats`] and changes nothing else.
    pub fn handle(&mut self, now: Instant, from: Endpoint, datagram: &[u8], out: &mut Outbox<'_>) -> Step {
        self.changed = false;
        Stats::bump(&mut self.stats.datagrams_in);
        match wire::decode::<Frame<'_>>(Protocol::Kv, datagram) {
            Err(_) => Stats::bump(&mut self.stats.decode_errors),
            Ok(Frame::Ack { seqno }) => self.on_ack(now, from, seqno),
            Ok(Frame::Refused { .. }) => {
                // The sender keeps the message and retransmits with backoff.
                bump(&mut self.counters.refusals_received);
            }
            Ok(Frame::Single { base, seqno, ack, body }) => {
                self.on_single(now, from, Channel { base, seqno, ack }, body.0, out)
            }
        }
        // Acks owed in this step that no reply carried go alone now.
        self.rel.flush_acks(now, out, &mut self.stats);
        self.debug_check();
        Step { storage_changed: self.changed }
    }

    /// Retransmits unacked messages whose timer is due.
    pub fn tick(&mut self, now: Instant, out: &mut Outbox<'_>) -> Step {
        self.changed = false;
        self.rel.tick(now, out, &mut self.stats);
        self.debug_check();
        Step { storage_changed: false }
    }

    /// When [`KvHost::tick`] must next be called. Calling it earlier is harmless.
    pub fn next_deadline(&self) -> Instant {
        [Timer::Retransmit].iter().fold(Instant::NEVER, |acc, t| earliest(acc, self.timer(*t)))
    }

    /// The deadline of one timer, or `None` if it is not armed.
    pub fn timer(&self, t: Timer) -> Option<Instant> {
        match t {
            Timer::Retransmit => Some(self.rel.next_deadline()).filter(|d| *d != Instant::NEVER),
        }
    }

    /// Counters of what this host received, sent and refused.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// KV-specific counters.
    pub fn counters(&self) -> &KvCounters {
        &self.counters
    }

    /// This host's index.
    pub fn id(&self) -> usize {
        usize::from(self.me)
    }

    /// The configuration.
    pub fn config(&self) -> &KvConfig<H> {
        &self.config
    }

    /// The delegation map (this host's view of who owns what).
    pub fn map(&self) -> &DelegationMap<M> {
        &self.map
    }

    /// True if this host owns `key` (serves it).
    pub fn owns(&self, key: u64) -> bool {
        self.map.owner(key) == self.me
    }

    /// The store.
    pub fn storage(&self) -> &S {
        &self.store
    }

    /// The reliable channels.
    pub fn reliable(&self) -> &Reliable<P, U, D> {
        &self.rel
    }

    /// Transfers sent and not yet fully acknowledged.
    pub fn outgoing(&self) -> &[Outgoing] {
        &self.outgoing
    }

    /// The transfer being received from host `from`, if one is under way.
    pub fn incoming(&self, from: usize) -> Option<&Incoming> {
        self.incoming.get(from).and_then(|i| i.as_ref())
    }

    /// The number of the last transfer completed from host `from` (0 if none).
    pub fn completed_from(&self, from: usize) -> u64 {
        self.completed.get(from).copied().unwrap_or(0)
    }

    /// Pairs reserved in storage for incoming transfers not yet applied.
    pub fn reserved_pairs(&self) -> usize {
        self.reserved_pairs
    }

    /// Checks every local invariant; the simulator calls this after each step.
    pub fn check_invariants(&self) -> Result<(), &'static str> {
        self.map.invariant(self.config.n())?;
        self.rel.invariant()?;
        let mut reserved = 0usize;
        for inc in self.incoming.iter().flatten() {
            if inc.next_part == 0 || inc.next_part >= inc.parts || inc.applied > inc.total_pairs {
                return Err("incoming transfer state out of bounds");
            }
            if self.owns_any(&inc.range) {
                return Err("host owns a key of a range it is still receiving");
            }
            reserved += (inc.total_pairs - inc.applied) as usize;
        }
        if reserved != self.reserved_pairs {
            return Err("reserved pairs disagree with the incoming transfers");
        }
        if self.store.len() + self.reserved_pairs > self.store.capacity() {
            return Err("storage holds more than its capacity less reservations");
        }
        // Every stored key is owned here or belongs to a transfer being received.
        let mut cursor = 0u64;
        for _ in 0..self.store.len() {
            let Some((k, _)) = self.store.next_at_or_after(cursor) else { break };
            let receiving = self.incoming.iter().flatten().any(|i| i.range.contains(k));
            if !self.owns(k) && !receiving {
                return Err("storage holds a key this host neither owns nor is receiving");
            }
            match k.checked_add(1) {
                Some(c) => cursor = c,
                None => break,
            }
        }
        for o in &self.outgoing {
            if o.recipient == self.me {
                return Err("outgoing transfer to this host");
            }
            let acked = self.rel.peer(usize::from(o.recipient)).map_or(0, |p| p.acked());
            if o.last_seqno <= acked {
                return Err("fully acknowledged transfer still listed as outgoing");
            }
        }
        Ok(())
    }

    fn owns_any(&self, range: &KeyRange) -> bool {
        let Some(start) = range.first_key() else { return false };
        let end = range.end_key();
        let first = self.map.entries().partition_point(|e| e.lo <= start).saturating_sub(1);
        self.map.entries()[first..].iter().take_while(|e| end.is_none_or(|end| e.lo < end)).any(|e| e.owner == self.me)
    }

    fn debug_check(&self) {
        debug_assert_eq!(self.check_invariants(), Ok(()));
    }

    fn on_ack(&mut self, now: Instant, from: Endpoint, seqno: u64) {
        let Some(peer) = self.rel.index_of(from) else {
            Stats::bump(&mut self.stats.unknown_sender);
            return;
        };
        match self.apply_ack(now, peer, seqno) {
            AckOutcome::Invalid => Stats::bump(&mut self.stats.invalid_messages),
            AckOutcome::Stale => Stats::bump(&mut self.stats.ignored_messages),
            AckOutcome::Progress => {}
        }
    }

    /// A cumulative ack from `peer`, alone or piggybacked: a Delegate transfer is done when
    /// its last part is acked.
    fn apply_ack(&mut self, now: Instant, peer: usize, seqno: u64) -> AckOutcome {
        let outcome = self.rel.on_ack(now, peer, seqno);
        if outcome == AckOutcome::Progress {
            let before = self.outgoing.len();
            self.outgoing.retain(|o| !(usize::from(o.recipient) == peer && o.last_seqno <= seqno));
            let done = (before - self.outgoing.len()) as u64;
            self.counters.transfers_out = self.counters.transfers_out.saturating_add(done);
        }
        outcome
    }

    fn on_single(&mut self, now: Instant, from: Endpoint, ch: Channel, body: &[u8], out: &mut Outbox<'_>) {
        let Channel { base, seqno, ack } = ch;
        let Ok(msg) = wire::decode_exact::<Body<'_>>(body) else {
            Stats::bump(&mut self.stats.decode_errors);
            return;
        };
        let sender_host = self.config.index_of(from);
        let pairs_in_part = match self.validate(&msg) {
            Some(n) => n,
            None => {
                Stats::bump(&mut self.stats.invalid_messages);
                return;
            }
        };
        if matches!(msg, Body::Delegate { .. }) && sender_host.is_none() {
            Stats::bump(&mut self.stats.unknown_sender);
            return;
        }
        let peer = self.rel.index_of(from);
        let verdict = match peer {
            Some(p) => self.rel.classify(p, base, seqno),
            None if base > 0 && seqno == base => Verdict::New,
            None => Verdict::Ahead,
        };
        // A piggybacked ack of something never sent makes the whole datagram invalid; a
        // sender we have no channel to has nothing of ours to ack.
        let ack_ok = match peer {
            Some(p) => self.rel.ack_valid(p, ack),
            None => ack == 0,
        };
        if !ack_ok && matches!(verdict, Verdict::New | Verdict::Restarted | Verdict::Duplicate) {
            Stats::bump(&mut self.stats.invalid_messages);
            return;
        }
        match verdict {
            Verdict::New | Verdict::Restarted => {}
            Verdict::Duplicate => {
                if let Some(p) = peer {
                    self.apply_ack(now, p, ack);
                    self.rel.owe_ack(p, now);
                }
                bump(&mut self.counters.duplicates);
                Stats::bump(&mut self.stats.ignored_messages);
                return;
            }
            Verdict::Ahead | Verdict::Stale => {
                Stats::bump(&mut self.stats.ignored_messages);
                return;
            }
            Verdict::Invalid => {
                Stats::bump(&mut self.stats.invalid_messages);
                return;
            }
        }
        // Resources the processing needs, checked before anything changes.
        let needs_reply = matches!(msg, Body::GetRequest { .. } | Body::SetRequest { .. } | Body::Shard { .. });
        if needs_reply {
            let room = match peer {
                Some(p) => self.rel.room_after(p, verdict),
                None => self.rel.max_unacked_per_peer().min(U - self.rel.pending()),
            };
            if peer.is_none() && self.rel.peers().len() == P {
                return self.refuse(from, seqno, Refusal::TooManyPeers, out);
            }
            if room == 0 {
                return self.refuse(from, seqno, Refusal::QueueFull, out);
            }
        }
        if let (Body::Delegate { transfer, range, part, parts, total_pairs, .. }, Some(src)) = (&msg, sender_host) {
            match self.delegate_admissible(src, *transfer, range, *part, *parts, *total_pairs, pairs_in_part) {
                Admit::Yes => {}
                Admit::NoRoom => return self.refuse(from, seqno, Refusal::NoRoom, out),
                Admit::Invalid => {
                    Stats::bump(&mut self.stats.invalid_messages);
                    return;
                }
            }
        }
        let p = match peer {
            Some(p) => p,
            None => match self.rel.add_peer(from, None) {
                Some(p) => p,
                None => return self.refuse(from, seqno, Refusal::TooManyPeers, out),
            },
        };
        self.rel.accept(p, base, seqno);
        self.apply_ack(now, p, ack);
        self.rel.owe_ack(p, now);
        match msg {
            Body::GetRequest { key } => self.on_get(now, p, seqno, key, out),
            Body::SetRequest { key, value } => self.on_set(now, p, seqno, key, value.map(|v| v.0), out),
            Body::Shard { range, recipient } => self.on_shard(now, p, seqno, range, recipient, out),
            Body::Delegate { range, part, parts, total_pairs, transfer, pairs } => {
                if let Some(src) = sender_host {
                    self.on_delegate(src, transfer, range, part, parts, total_pairs, pairs.0);
                }
            }
            // Answers are for clients; a host takes them off the channel and ignores them.
            Body::Reply { .. } | Body::Redirect { .. } | Body::Sharded { .. } | Body::Error { .. } => {
                Stats::bump(&mut self.stats.ignored_messages);
            }
        }
    }

    fn refuse(&mut self, to: Endpoint, seqno: u64, reason: Refusal, out: &mut Outbox<'_>) {
        Stats::bump(&mut self.stats.queue_full);
        bump(&mut self.counters.refusals_sent);
        self.rel.send_refusal(to, seqno, reason, out, &mut self.stats);
    }

    /// Protocol bounds of a decoded body, before any state is read. For a Delegate, returns
    /// the number of pairs in the part; otherwise 0. `None`: invalid.
    fn validate(&self, msg: &Body<'_>) -> Option<u32> {
        let p = &self.config.params;
        match msg {
            Body::Delegate { range, part, parts, total_pairs, pairs, .. } => {
                if range.is_empty() || *parts == 0 || part >= parts {
                    return None;
                }
                if usize::from(*parts) > p.reliable.max_unacked_per_peer {
                    return None;
                }
                let mut count = 0u32;
                let mut prev: Option<u64> = None;
                for pair in msg::pairs(pairs.0) {
                    let (k, v) = pair.ok()?;
                    if !range.contains(k) || prev.is_some_and(|q| q >= k) || v.len() > p.max_value_bytes {
                        return None;
                    }
                    prev = Some(k);
                    count += 1;
                }
                (count <= *total_pairs).then_some(count)
            }
            _ => Some(0),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn delegate_admissible(
        &self,
        src: usize,
        transfer: u64,
        range: &KeyRange,
        part: u16,
        parts: u16,
        total: u32,
        count: u32,
    ) -> Admit {
        if src == usize::from(self.me) {
            return Admit::Invalid;
        }
        let last = part + 1 == parts;
        match self.incoming.get(src).copied().flatten() {
            None if part == 0 => {
                if transfer <= self.completed_from(src) || (last && count != total) {
                    return Admit::Invalid;
                }
                // A sender delegates only what it owns, so the range is neither ours nor
                // arriving from another host: anything else is forged (found by fuzzing:
                // accepting it broke the "not owning what we are receiving" invariant, and
                // a one-part one would overwrite our values with the sender's).
                let overlaps = |r: &KeyRange| r.lo < range.hi && range.lo < r.hi;
                if self.owns_any(range) || self.incoming.iter().flatten().any(|i| overlaps(&i.range)) {
                    return Admit::Invalid;
                }
                let in_progress = self.incoming.iter().flatten().count();
                let storage_ok = self.store.len() + self.reserved_pairs + total as usize <= self.store.capacity();
                let map_ok = self.map.free() >= 2 * (in_progress + 1);
                match storage_ok && map_ok {
                    true => Admit::Yes,
                    false => Admit::NoRoom,
                }
            }
            Some(inc)
                if part > 0
                    && inc.transfer == transfer
                    && inc.range == *range
                    && inc.parts == parts
                    && inc.total_pairs == total
                    && inc.next_part == part
                    && inc.applied + count <= total
                    && (!last || inc.applied + count == total) =>
            {
                Admit::Yes
            }
            _ => Admit::Invalid,
        }
    }

    fn reply(&mut self, now: Instant, peer: usize, body: &Body<'_>, out: &mut Outbox<'_>) {
        // Room was checked before the request was accepted; a failure here is a bug.
        let sent = self.rel.send(now, peer, body, out, &mut self.stats);
        debug_assert!(sent.is_ok(), "reply refused after its room was checked: {sent:?}");
        if sent.is_err() {
            Stats::bump(&mut self.stats.oversize_messages);
        }
    }

    fn redirect(&mut self, now: Instant, peer: usize, req: u64, key: u64, out: &mut Outbox<'_>) {
        let owner = self.config.hosts[usize::from(self.map.owner(key))];
        bump(&mut self.counters.redirects);
        self.reply(now, peer, &Body::Redirect { req, key, owner }, out);
    }

    fn error(&mut self, now: Instant, peer: usize, req: u64, error: KvError, out: &mut Outbox<'_>) {
        bump(&mut self.counters.errors);
        self.reply(now, peer, &Body::Error { req, error }, out);
    }

    fn on_get(&mut self, now: Instant, peer: usize, req: u64, key: u64, out: &mut Outbox<'_>) {
        if !self.owns(key) {
            return self.redirect(now, peer, req, key, out);
        }
        bump(&mut self.counters.gets);
        let value = self.store.get(key).map(Bytes);
        let sent = self.rel.send(now, peer, &Body::Reply { req, key, value }, out, &mut self.stats);
        debug_assert!(sent.is_ok(), "reply refused after its room was checked: {sent:?}");
    }

    fn on_set(&mut self, now: Instant, peer: usize, req: u64, key: u64, value: Option<&[u8]>, out: &mut Outbox<'_>) {
        if !self.owns(key) {
            return self.redirect(now, peer, req, key, out);
        }
        match value {
            Some(v) if v.len() > self.config.params.max_value_bytes => {
                return self.error(now, peer, req, KvError::ValueTooLarge, out);
            }
            Some(v) => {
                let new_key = self.store.get(key).is_none();
                if new_key && self.store.len() + self.reserved_pairs >= self.store.capacity() {
                    return self.error(now, peer, req, KvError::StorageFull, out);
                }
                match self.store.set(key, v) {
                    Ok(()) => {}
                    Err(StorageError::Full) => return self.error(now, peer, req, KvError::StorageFull, out),
                    Err(StorageError::TooLarge) => return self.error(now, peer, req, KvError::ValueTooLarge, out),
                }
            }
            None => {
                self.store.delete(key);
            }
        }
        self.changed = true;
        bump(&mut self.counters.sets);
        self.reply(now, peer, &Body::Reply { req, key, value: None }, out);
    }

    /// The pairs of `range`, in key order, bounded by the store's size.
    fn for_each_pair(&self, range: &KeyRange, mut f: impl FnMut(u64, &[u8])) {
        let Some(mut cursor) = range.first_key() else { return };
        for _ in 0..self.store.len() {
            let Some((k, v)) = self.store.next_at_or_after(cursor) else { return };
            if !range.contains(k) {
                return;
            }
            f(k, v);
            match k.checked_add(1) {
                Some(c) => cursor = c,
                None => return,
            }
        }
    }

    /// Cuts the pairs of `range` into Delegate datagrams; `None` if more than `u16::MAX` parts.
    fn plan(&self, range: &KeyRange) -> Option<Plan> {
        let budget = self.config.params.delegate_pair_bytes();
        let (mut parts, mut pairs, mut used) = (1u32, 0u32, 0usize);
        self.for_each_pair(range, |k, v| {
            let size = pair_size(k, v);
            if used + size > budget && used > 0 {
                parts += 1;
                used = 0;
            }
            used += size;
            pairs += 1;
        });
        Some(Plan { parts: u16::try_from(parts).ok()?, pairs })
    }

    fn check_shard(
        &self,
        requester: usize,
        range: &KeyRange,
        recipient: Endpoint,
    ) -> Result<(HostId, Plan), ShardError> {
        let to = self.config.index_of(recipient).ok_or(ShardError::UnknownRecipient)?;
        if to == usize::from(self.me) {
            return Err(ShardError::RecipientIsSelf);
        }
        if range.is_empty() {
            return Err(ShardError::EmptyRange);
        }
        if !self.map.owns_all(range, self.me) {
            return Err(ShardError::NotOwner);
        }
        let plan = self.plan(range).ok_or(ShardError::TooManyPairs)?;
        let parts = usize::from(plan.parts);
        if parts > self.rel.max_unacked_per_peer() {
            return Err(ShardError::TooManyPairs);
        }
        if self.outgoing.is_full() {
            return Err(ShardError::TooManyTransfers);
        }
        let in_progress = self.incoming.iter().flatten().count();
        let len_after = self.map.len_after(range, to as HostId).map_err(|_| ShardError::MapFull)?;
        if M - len_after < 2 * in_progress {
            return Err(ShardError::MapFull);
        }
        // The parts and the reply to the requester must all fit the unacked queues.
        let reply_to_recipient = usize::from(requester == to);
        if self.rel.room(to) < parts + reply_to_recipient || U - self.rel.pending() < parts + 1 {
            return Err(ShardError::QueueFull);
        }
        Ok((to as HostId, plan))
    }

    fn on_shard(
        &mut self,
        now: Instant,
        peer: usize,
        req: u64,
        range: KeyRange,
        recipient: Endpoint,
        out: &mut Outbox<'_>,
    ) {
        let (to, plan) = match self.check_shard(peer, &range, recipient) {
            Ok(ok) => ok,
            Err(e) => return self.error(now, peer, req, KvError::Shard(e), out),
        };
        let transfer = self.next_transfer;
        self.next_transfer += 1;
        let budget = self.config.params.delegate_pair_bytes();
        let (parts, total_pairs) = (plan.parts, plan.pairs);
        let mut last_seqno = 0;
        let mut cursor = range.first_key();
        for part in 0..parts {
            let mut buf = [0u8; D];
            let mut used = 0usize;
            // Fill this part with the next pairs, exactly as `plan` cut them.
            for _ in 0..self.store.len() {
                let Some(c) = cursor else { break };
                let Some((k, v)) = self.store.next_at_or_after(c) else { break };
                if !range.contains(k) {
                    break;
                }
                let size = pair_size(k, v);
                if used + size > budget && used > 0 {
                    break;
                }
                match postcard::to_slice(&(k, Bytes(v)), &mut buf[used..budget.min(D)]) {
                    Ok(w) => used += w.len(),
                    Err(_) => break,
                }
                cursor = k.checked_add(1);
            }
            let body = Body::Delegate { transfer, range, part, parts, total_pairs, pairs: Bytes(&buf[..used]) };
            match self.rel.send(now, usize::from(to), &body, out, &mut self.stats) {
                Ok(s) => last_seqno = s,
                Err(e) => debug_assert!(false, "Delegate part refused after its room was checked: {e:?}"),
            }
        }
        // Ownership leaves now: the range belongs to the in-flight Delegate until the
        // recipient applies its last part.
        let mut cursor = range.first_key();
        for _ in 0..=total_pairs {
            let Some(c) = cursor else { break };
            let Some((k, _)) = self.store.next_at_or_after(c) else { break };
            if !range.contains(k) {
                break;
            }
            self.store.delete(k);
            cursor = k.checked_add(1);
        }
        let set = self.map.set(&range, to);
        debug_assert!(set.is_ok(), "map change refused after it was checked");
        let record = Outgoing { transfer, recipient: to, range, last_seqno, pairs: total_pairs };
        let pushed = self.outgoing.push(record);
        debug_assert!(pushed.is_ok(), "outgoing table full after it was checked");
        self.changed = true;
        bump(&mut self.counters.shards);
        self.reply(now, peer, &Body::Sharded { req }, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_delegate(
        &mut self,
        src: usize,
        transfer: u64,
        range: KeyRange,
        part: u16,
        parts: u16,
        total_pairs: u32,
        pairs: &[u8],
    ) {
        if part == 0 {
            let inc = Incoming { transfer, range, parts, next_part: 0, total_pairs, applied: 0 };
            self.incoming[src] = Some(inc);
            self.reserved_pairs += total_pairs as usize;
        }
        let Some(mut inc) = self.incoming[src] else { return };
        for (k, v) in msg::pairs(pairs).flatten() {
            // Room was reserved when part 0 was admitted.
            let set = self.store.set(k, v);
            debug_assert!(set.is_ok(), "reserved storage refused a delegated pair");
            inc.applied += 1;
            self.reserved_pairs = self.reserved_pairs.saturating_sub(1);
        }
        inc.next_part = part + 1;
        bump(&mut self.counters.delegate_parts);
        self.changed = true;
        if inc.next_part == parts {
            let set = self.map.set(&range, self.me);
            debug_assert!(set.is_ok(), "map room reserved for an incoming transfer was not there");
            self.incoming[src] = None;
            self.completed[src] = transfer;
            bump(&mut self.counters.transfers_in);
        } else {
            self.incoming[src] = Some(inc);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Admit {
    Yes,
    NoRoom,
    Invalid,
}

fn bump(c: &mut u64) {
    *c = c.saturating_add(1);
}

/// Bytes postcard uses for `v` as a varint.
fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Exact encoded size of one Delegate pair.
fn pair_size(key: u64, value: &[u8]) -> usize {
    varint_len(key) + varint_len(value.len() as u64) + value.len()
}

#[cfg(test)]
mod tests;
