//! The IronKV host: serves Get/Set for the keys it owns, redirects the rest, and moves key
//! ranges between hosts (Shard / Delegate), all over reliable single delivery.
//!
//! One `handle` is one IronFleet step: at most one datagram in, one `now`, then sends.
//! Processing order for a reliable message: decode and check its bounds, classify its
//! seqno, check that the resources its processing needs are there (room for the reply,
//! storage and map reservations for a Delegate), and only then accept it (advance the
//! channel), ack it and act. A message that fails any check changes nothing: it is counted
//! and either ignored (the sender retransmits) or refused with a visible [`Frame::Refused`].
//!
//! **The peer table and exactly-once.** The host keeps a reliable channel per peer: the
//! hosts of the cluster (fixed, never evicted) and up to `P - hosts` clients. A new client
//! that finds the table full evicts the settled client (every reply acknowledged) that was
//! active least recently; with none settled it is refused (`Refused(TooManyPeers)`) and
//! retransmits. A client that acknowledges nothing for `give_up_after` retransmission rounds
//! is given up on: its unacknowledged replies are dropped and it is evicted
//! ([`KvCounters::abandoned`]). An evicted channel is closed for good: per bucket of
//! endpoints the host remembers the highest seqno accepted on any channel it evicted, a new
//! channel from an endpoint it has no state for must start above it, and any message of a
//! channel at or below it is refused with `Refused(ChannelClosed)`
//! ([`reliable::evict`](super::reliable::evict) has the argument).
//!
//! What exactly-once means for a client, evicted or not: **every request is executed at
//! most once** (no message of a channel is accepted twice, and a closed channel is never
//! reopened, whatever the network delays or duplicates); a client that is still waiting for
//! a reply when its channel is closed either gets a definite "never executed" (the channel
//! was evicted settled, or its seqno is above the refusal's `lost` floor), and then sends the
//! request again on a new channel, or an explicit unknown outcome (`Event::Lost`: the host
//! gave up on it with replies undelivered, so the request may have run). An evicted client
//! whose operation had completed loses nothing: its next request restarts its channel.
//! Memory for this is bounded: two `u64` per bucket, `P` buckets.

use super::config::{KvConfig, MAX_TRANSFERS_IN_FLIGHT};
use super::delegation::{DelegationMap, HostId};
use super::join::{HostMeta, Join};
use super::msg::KeyRange;
use super::reliable::{Frame, PeerKind, Reliable};
use super::storage::Storage;
use crate::config::ConfigError;
use crate::endpoint::Endpoint;
use crate::outbox::Outbox;
use crate::stats::Stats;
use crate::time::{earliest, Instant};
use crate::wire::{self, Protocol};

mod equality;
mod image;
pub use image::KvRecovery;
mod joining;
mod receive;
mod requests;
mod sharding;
mod status;

/// A reliable frame's channel fields: its incarnation, its seqno, and the ack it carries.
#[derive(Clone, Copy)]
struct Channel {
    base: u64,
    seqno: u64,
    ack: u64,
}

/// What one step asks of the binding besides sending the outbox.
#[must_use = "a durable binding must log the step's input when `log_input` is set"]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// The store or the delegation map changed in this step.
    pub storage_changed: bool,
    /// The step changed the host's state (channels, store, map, transfers): a durable
    /// binding appends its input to the log ([`KvHost::input_record`]) and sends none of
    /// the datagrams marked [`Outbox::waits_for_sync`] before that record is synced. A step
    /// that leaves this unset changed nothing but counters (see [`crate::kv::durable`]).
    pub log_input: bool,
}

/// The host's timers; [`KvHost::next_deadline`] is the earliest armed one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Timer {
    /// Retransmit unacked messages to some peer.
    Retransmit,
    /// Ask the other hosts again while joining ([`crate::kv::join`]).
    Join,
}

/// KV-specific counters, beside the shared [`Stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
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
    /// Settled clients evicted to make room for new ones.
    pub evicted: u64,
    /// Clients given up on (no ack for `give_up_after` retransmission rounds) and evicted
    /// with their unacknowledged replies.
    pub abandoned: u64,
    /// Messages of closed (evicted) channels refused with `Refused(ChannelClosed)`.
    pub closed_refused: u64,
}

/// A transfer this host is receiving: some parts applied, the range not owned yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
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
    /// `config`'s identity, which every datagram names: computed once, not per datagram.
    cluster: u32,
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
    /// The current step changed the host's state ([`Step::log_input`]).
    logged: bool,
    /// Steps that changed the state since the host was created: the number of the last
    /// logged input ([`crate::kv::durable`]).
    logged_steps: u64,
    /// The `now` of the last logged step.
    last_logged_now: Instant,
    /// The last datagram refused for naming another cluster: sender and its identity.
    last_foreign: Option<(Endpoint, u32)>,
    /// Set while the host started without state and does not know yet where it stands
    /// ([`crate::kv::join`]).
    join: Option<Join<H>>,
    /// Per host: what this host remembers of its incarnations ([`crate::kv::join`]).
    host_meta: heapless::Vec<HostMeta, H>,
    /// The binding persists this host's inputs ([`KvHost::set_durable`]); reported in its
    /// status only.
    durable: bool,
}

impl<S: Storage, const H: usize, const M: usize, const P: usize, const U: usize, const D: usize>
    KvHost<S, H, M, P, U, D>
{
    /// Host number `me` of `config`, over `store` (which should be empty: host 0 initially
    /// owns every key, the others none).
    pub fn new(config: KvConfig<H>, me: usize, store: S) -> Result<Self, ConfigError> {
        Self::build(config, me, store, 1)
    }

    /// [`KvHost::new`], with this host's channels starting at `first_seqno`.
    fn build(config: KvConfig<H>, me: usize, store: S, first_seqno: u64) -> Result<Self, ConfigError> {
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
        let mut rel = Reliable::new(Protocol::Kv, p.max_datagram_bytes, p.reliable, first_seqno)?;
        rel.set_cluster(config.identity());
        for h in &config.hosts {
            rel.add_peer(*h, PeerKind::Fixed { base: 1 }).ok_or(ConfigError::TooManyReplicas)?;
        }
        let mut incoming = heapless::Vec::new();
        let mut completed = heapless::Vec::new();
        let mut host_meta = heapless::Vec::new();
        for _ in 0..config.n() {
            incoming.push(None).map_err(|_| ConfigError::TooManyReplicas)?;
            completed.push(0).map_err(|_| ConfigError::TooManyReplicas)?;
            host_meta.push(HostMeta::default()).map_err(|_| ConfigError::TooManyReplicas)?;
        }
        Ok(KvHost {
            cluster: config.identity(),
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
            logged: false,
            logged_steps: 0,
            last_logged_now: Instant::ZERO,
            last_foreign: None,
            join: None,
            host_meta,
            durable: false,
            config,
        })
    }

    /// Handles one received datagram.
    ///
    /// Anything malformed, out of bounds, out of order or from an unknown host (for
    /// Delegate) is counted in [`KvHost::stats`] and changes nothing else.
    pub fn handle(&mut self, now: Instant, from: Endpoint, datagram: &[u8], out: &mut Outbox<'_>) -> Step {
        self.changed = false;
        self.logged = false;
        let first_out = out.len();
        Stats::bump(&mut self.stats.datagrams_in);
        let decoded = wire::decode_in_cluster::<Frame<'_>>(Protocol::Kv, datagram);
        // Another host must be of this cluster; a client may not know the identity.
        let mine = self.cluster;
        debug_assert_eq!(mine, self.config.identity());
        let foreign = |cluster: u32| match self.config.index_of(from) {
            Some(_) => cluster != mine,
            None => cluster != mine && cluster != wire::ANY_CLUSTER,
        };
        match decoded {
            Err(_) => Stats::bump(&mut self.stats.decode_errors),
            Ok((cluster, _)) if foreign(cluster) => {
                Stats::bump(&mut self.stats.foreign_cluster);
                self.last_foreign = Some((from, cluster));
            }
            Ok((_, Frame::Join { nonce, from_key })) => self.on_join(now, from, nonce, from_key, out),
            Ok((_, Frame::StatusRequest { nonce, from_key })) => self.answer_status(from, nonce, from_key, out),
            Ok((_, Frame::StatusReply { .. })) => Stats::bump(&mut self.stats.ignored_messages),
            Ok((_, Frame::JoinReply { nonce, base, joining, seen_other, from_key, next, runs })) => {
                let answer = joining::Answer { nonce, base, joining, seen_other, from_key, next };
                self.on_join_reply(now, from, answer, runs.0)
            }
            // A joining host takes no message of any channel: it does not know their state.
            Ok((_, Frame::Ack { .. } | Frame::Single { .. })) if self.join.is_some() => {
                Stats::bump(&mut self.stats.ignored_messages)
            }
            Ok((_, Frame::Ack { seqno })) => self.on_ack(now, from, seqno),
            Ok((_, Frame::Refused { .. })) => {
                // The sender keeps the message and retransmits with backoff.
                bump(&mut self.counters.refusals_received);
            }
            Ok((_, Frame::Single { base, seqno, ack, body })) => {
                self.on_single(now, from, Channel { base, seqno, ack }, body.0, out)
            }
        }
        // Acks owed in this step that no reply carried go alone now.
        self.rel.flush_acks(now, out, &mut self.stats);
        self.debug_check();
        self.end_step(now, first_out, out)
    }

    /// Closes a step: every datagram it sent reveals state it may have changed, so each
    /// waits for the sync of the step's input (a binding without storage sends at once).
    fn end_step(&mut self, now: Instant, first_out: usize, out: &mut Outbox<'_>) -> Step {
        out.mark_after_sync(first_out);
        if self.logged {
            self.logged_steps = self.logged_steps.saturating_add(1);
            self.last_logged_now = now;
        }
        Step { storage_changed: self.changed, log_input: self.logged }
    }

    /// Retransmits unacked messages whose timer is due, and gives up on clients that
    /// acknowledged nothing for `give_up_after` retransmission rounds.
    pub fn tick(&mut self, now: Instant, out: &mut Outbox<'_>) -> Step {
        self.changed = false;
        let first_out = out.len();
        // A due timer always changes a channel (a retransmission's backoff, an owed ack, a
        // client given up on); a tick with nothing due changes nothing.
        self.logged = self.next_deadline() <= now;
        self.join_tick(now, out);
        let abandoned = self.rel.tick(now, out, &mut self.stats);
        self.counters.abandoned = self.counters.abandoned.saturating_add(abandoned as u64);
        self.debug_check();
        self.end_step(now, first_out, out)
    }

    /// When [`KvHost::tick`] must next be called. Calling it earlier is harmless.
    pub fn next_deadline(&self) -> Instant {
        [Timer::Retransmit, Timer::Join].iter().fold(Instant::NEVER, |acc, t| earliest(acc, self.timer(*t)))
    }

    /// The deadline of one timer, or `None` if it is not armed.
    pub fn timer(&self, t: Timer) -> Option<Instant> {
        match t {
            Timer::Retransmit => Some(self.rel.next_deadline()).filter(|d| *d != Instant::NEVER),
            Timer::Join => self.join.as_ref().map(|j| j.retry_at),
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

    /// The last datagram refused because it named another cluster: its sender and that
    /// cluster's identity (for a binding to report: the config files differ).
    pub fn last_foreign(&self) -> Option<(Endpoint, u32)> {
        self.last_foreign
    }

    /// This cluster's identity ([`KvConfig::identity`]), carried in every datagram.
    pub fn cluster(&self) -> u32 {
        self.cluster
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
        // The hosts keep their indices (peer i is host i) and are never evicted.
        for (i, h) in self.config.hosts.iter().enumerate() {
            match self.rel.peer(i) {
                Some(p) if p.endpoint() == *h && matches!(p.kind(), PeerKind::Fixed { .. }) => {}
                _ => return Err("host peer missing, moved or not fixed"),
            }
        }
        if self.rel.peers()[self.config.n()..].iter().any(|p| p.kind() != PeerKind::Client) {
            return Err("a peer after the hosts that is not a client");
        }
        if self.join.is_some()
            && (!self.store.is_empty()
                || !self.outgoing.is_empty()
                || self.incoming.iter().any(Option::is_some)
                || self.map.entries().iter().any(|e| e.owner == self.me))
        {
            return Err("a joining host holds or owns something");
        }
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
}

fn bump(c: &mut u64) {
    *c = c.saturating_add(1);
}

#[cfg(test)]
mod tests;
