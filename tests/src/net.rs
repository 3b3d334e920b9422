//! The simulated network: loses, duplicates, reorders (random delay) and partitions; with
//! keys ([`SimNet::seal_with`]) it seals every datagram as a binding would and opens it at
//! delivery, and carries an adversary's forgeries ([`SimNet::forge`]) that must be refused.

use std::collections::{BTreeMap, VecDeque};

use fleet_engine::auth::{AuthError, Guard, Keyring, Role, AUTH_OVERHEAD_BYTES};
use fleet_engine::{Endpoint, Outbox};

use crate::rng::Rng;

/// Fault rates of the network (per million datagrams) and its delay range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetFaults {
    /// Chance a datagram is lost.
    pub loss_ppm: u32,
    /// Chance a datagram is delivered twice.
    pub dup_ppm: u32,
    /// Smallest one-way delay, microseconds.
    pub min_delay_us: u64,
    /// Largest one-way delay, microseconds (a wide range reorders).
    pub max_delay_us: u64,
}

impl NetFaults {
    /// A perfect network with a fixed 100 us delay.
    pub const CALM: NetFaults = NetFaults { loss_ppm: 0, dup_ppm: 0, min_delay_us: 100, max_delay_us: 100 };
}

/// A datagram on its way.
#[derive(Clone, Debug)]
pub struct InFlight {
    /// Sender.
    pub from: Endpoint,
    /// Receiver.
    pub to: Endpoint,
    /// Payload (sealed when the network has keys).
    pub bytes: Vec<u8>,
    /// Put on the wire by the adversary: no key holder produced it.
    pub forged: bool,
}

/// The keys of a sealed network: every member and every client holds them, as bindings do.
#[derive(Clone, Debug)]
pub struct SimAuth {
    /// What members hold (member and client keys).
    pub member: Keyring,
    /// What clients hold (client keys only).
    pub client: Keyring,
    /// The members' endpoints: every other endpoint is a client.
    pub members: Vec<Endpoint>,
}

/// What sealing did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuthCounts {
    /// Datagrams of key holders sealed.
    pub sealed: u64,
    /// Datagrams of key holders opened at delivery.
    pub opened: u64,
    /// Forgeries put on the wire.
    pub forged: u64,
    /// Forgeries delivered and refused (the rest were lost or partitioned).
    pub forged_refused: u64,
    /// Forgeries a receiver took (a violation: only planted bugs do).
    pub forged_accepted: u64,
}

/// Recent datagrams of key holders, unsealed, kept for the adversary to replay and alter.
pub const RECENT_DATAGRAMS: usize = 32;

/// The network: datagrams ordered by (delivery time, sequence number).
#[derive(Debug)]
pub struct SimNet {
    /// Current fault rates.
    pub faults: NetFaults,
    queue: BTreeMap<(u64, u64), InFlight>,
    seq: u64,
    blocked: BTreeMap<(Endpoint, Endpoint), ()>,
    pool: Vec<Vec<u8>>,
    /// Datagrams sent, lost, duplicated, blocked by partitions.
    pub counts: NetCounts,
    auth: Option<SimAuth>,
    /// What sealing did.
    pub auth_counts: AuthCounts,
    /// The last datagrams of key holders (sender, receiver, unsealed bytes).
    pub recent: VecDeque<(Endpoint, Endpoint, Vec<u8>)>,
    sealed: Vec<u8>,
}

/// What the network did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetCounts {
    /// Datagrams handed to the network.
    pub sent: u64,
    /// Lost at random.
    pub lost: u64,
    /// Delivered twice.
    pub duplicated: u64,
    /// Dropped by a partition.
    pub partitioned: u64,
}

impl SimNet {
    /// An empty network.
    pub fn new(faults: NetFaults) -> SimNet {
        SimNet {
            faults,
            queue: BTreeMap::new(),
            seq: 0,
            blocked: BTreeMap::new(),
            pool: Vec::new(),
            counts: NetCounts::default(),
            auth: None,
            auth_counts: AuthCounts::default(),
            recent: VecDeque::new(),
            sealed: Vec::new(),
        }
    }

    /// Seals every datagram from now on with these keys and opens each at delivery.
    pub fn seal_with(&mut self, auth: SimAuth) {
        self.auth = Some(auth);
    }

    /// The keys, if the network seals.
    pub fn auth(&self) -> Option<&SimAuth> {
        self.auth.as_ref()
    }

    /// `ep`'s guard: a member's, or a key-holding client's.
    fn guard<'a>(auth: &'a SimAuth, ep: Endpoint) -> Guard<'a> {
        if auth.members.contains(&ep) {
            Guard::new(auth.member.clone(), ep, Role::Member(&auth.members))
        } else {
            Guard::new(auth.client.clone(), ep, Role::Client)
        }
    }

    /// `bytes` from `from` to `to` sealed with `keys` as a host at `from` of `role` would.
    pub fn seal_as(keys: &Keyring, role: Role<'_>, from: Endpoint, to: Endpoint, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; bytes.len() + AUTH_OVERHEAD_BYTES];
        let n = Guard::new(keys.clone(), from, role).seal(to, bytes, &mut out).unwrap_or(0);
        out.truncate(n);
        out
    }

    /// `bytes` as they go on the wire: sealed by `from` if the network has keys (and kept in
    /// [`SimNet::recent`]).
    fn wire(&mut self, from: Endpoint, to: Endpoint, bytes: &[u8]) -> bool {
        self.sealed.clear();
        let Some(auth) = &self.auth else {
            self.sealed.extend_from_slice(bytes);
            return true;
        };
        self.sealed.resize(bytes.len() + AUTH_OVERHEAD_BYTES, 0);
        let Ok(n) = Self::guard(auth, from).seal(to, bytes, &mut self.sealed) else { return false };
        self.sealed.truncate(n);
        self.auth_counts.sealed += 1;
        if self.recent.len() == RECENT_DATAGRAMS {
            self.recent.pop_front();
        }
        self.recent.push_back((from, to, bytes.to_vec()));
        true
    }

    /// The unsealed bytes of a delivered datagram (as they are without keys), or why its
    /// receiver refused it.
    pub fn open<'d>(&mut self, d: &'d InFlight) -> Result<&'d [u8], AuthError> {
        let Some(auth) = &self.auth else { return Ok(&d.bytes) };
        let opened = Self::guard(auth, d.to).check(d.from, &d.bytes);
        match (&opened, d.forged) {
            (Ok(_), false) => self.auth_counts.opened += 1,
            (Err(_), true) => self.auth_counts.forged_refused += 1,
            _ => {}
        }
        opened
    }

    /// The planted `IgnoresSender` receiver: the unsealed bytes if the tag is any member's
    /// for this receiver, whoever the datagram claims to be from.
    pub fn open_as_from_any_member<'d>(&self, d: &'d InFlight) -> Option<&'d [u8]> {
        let auth = self.auth.as_ref()?;
        let guard = Self::guard(auth, d.to);
        auth.members.iter().find_map(|m| guard.check(*m, &d.bytes).ok())
    }

    /// Puts the adversary's `wire` bytes (as sent, not sealed again) from `from` to `to`,
    /// arriving after `delay_us`, with no loss or duplication; partitions still apply.
    pub fn forge(&mut self, now: u64, from: Endpoint, to: Endpoint, wire: &[u8], delay_us: u64) {
        self.auth_counts.forged += 1;
        self.counts.sent += 1;
        self.enqueue(now + delay_us, from, to, wire, true);
    }

    /// Puts a delivered datagram back on the wire as it is (a paused host's socket buffer).
    pub fn requeue(&mut self, now: u64, d: &InFlight, delay_us: u64) {
        self.enqueue(now + delay_us, d.from, d.to, &d.bytes, d.forged);
    }

    /// Takes every datagram of `out` sent at `now`, applying faults.
    pub fn send_all(&mut self, now: u64, from: Endpoint, out: &Outbox<'_>, rng: &mut Rng) {
        for (to, bytes) in out.iter() {
            self.send(now, from, to, bytes, rng);
        }
    }

    /// Sends one datagram.
    pub fn send(&mut self, now: u64, from: Endpoint, to: Endpoint, bytes: &[u8], rng: &mut Rng) {
        self.counts.sent += 1;
        if !self.wire(from, to, bytes) {
            return;
        }
        // A host's datagrams to itself never cross a network: bindings feed them straight
        // back (io-std's loopback queue, io-embassy's FIFO sized for one step), so neither
        // a partition nor loss takes them (the loss draw is still made, so that a seed's
        // other draws stay the same). The engine relies on it: a leader whose own 2a is lost
        // holds no copy of the batch to re-send (found by seed 1622, `docs/simulator.md`).
        if self.blocked.contains_key(&(from, to)) && from != to {
            self.counts.partitioned += 1;
            return;
        }
        if rng.chance(self.faults.loss_ppm) && from != to {
            self.counts.lost += 1;
            return;
        }
        let copies = if rng.chance(self.faults.dup_ppm) { 2 } else { 1 };
        self.counts.duplicated += copies - 1;
        let wire = std::mem::take(&mut self.sealed);
        for _ in 0..copies {
            let delay = rng.range(self.faults.min_delay_us, self.faults.max_delay_us);
            self.enqueue(now + delay, from, to, &wire, false);
        }
        self.sealed = wire;
    }

    fn enqueue(&mut self, at: u64, from: Endpoint, to: Endpoint, bytes: &[u8], forged: bool) {
        let mut buf = self.pool.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(bytes);
        self.seq += 1;
        self.queue.insert((at, self.seq), InFlight { from, to, bytes: buf, forged });
    }

    /// Puts a datagram on the wire with no loss or duplication, arriving after `delay_us`
    /// (for forged messages of planted-bug runs: a buggy key holder's, so sealed by `from`).
    /// Partitions still apply at delivery.
    pub fn inject(&mut self, now: u64, from: Endpoint, to: Endpoint, bytes: &[u8], delay_us: u64) {
        self.counts.sent += 1;
        if !self.wire(from, to, bytes) {
            return;
        }
        let wire = std::mem::take(&mut self.sealed);
        self.enqueue(now + delay_us, from, to, &wire, false);
        self.sealed = wire;
    }

    /// Returns a delivered datagram's buffer for reuse (saves an allocation per datagram).
    pub fn recycle(&mut self, bytes: Vec<u8>) {
        if self.pool.len() < 4096 {
            self.pool.push(bytes);
        }
    }

    /// True if traffic from `a` to `b` is blocked.
    pub fn is_blocked(&self, a: Endpoint, b: Endpoint) -> bool {
        self.blocked.contains_key(&(a, b))
    }

    /// When the next datagram arrives.
    pub fn next_delivery(&self) -> Option<u64> {
        self.queue.keys().next().map(|k| k.0)
    }

    /// Removes and returns the next datagram due at or before `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<InFlight> {
        let key = *self.queue.keys().next()?;
        if key.0 > now {
            return None;
        }
        let d = self.queue.remove(&key)?;
        // A partition raised while the datagram was in flight also drops it.
        if self.blocked.contains_key(&(d.from, d.to)) && d.from != d.to {
            self.counts.partitioned += 1;
            self.recycle(d.bytes);
            return self.pop_due(now);
        }
        Some(d)
    }

    /// Blocks traffic from `a` to `b` (one way).
    pub fn block(&mut self, a: Endpoint, b: Endpoint) {
        self.blocked.insert((a, b), ());
    }

    /// Cuts `host` off from everyone in `others`, both ways.
    pub fn isolate(&mut self, host: Endpoint, others: &[Endpoint]) {
        for o in others {
            if *o != host {
                self.block(host, *o);
                self.block(*o, host);
            }
        }
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    /// Datagrams in flight.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// Iterates the datagrams of key holders in flight (for checkers that look at messages).
    pub fn iter(&self) -> impl Iterator<Item = &InFlight> {
        self.queue.values().filter(|d| !d.forged)
    }
}
