//! The simulated network: loses, duplicates, reorders (random delay) and partitions.

use std::collections::BTreeMap;

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
    /// Payload.
    pub bytes: Vec<u8>,
}

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
        }
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
        if self.blocked.contains_key(&(from, to)) {
            self.counts.partitioned += 1;
            return;
        }
        if rng.chance(self.faults.loss_ppm) {
            self.counts.lost += 1;
            return;
        }
        let copies = if rng.chance(self.faults.dup_ppm) { 2 } else { 1 };
        self.counts.duplicated += copies - 1;
        for _ in 0..copies {
            let delay = rng.range(self.faults.min_delay_us, self.faults.max_delay_us);
            self.enqueue(now + delay, from, to, bytes);
        }
    }

    fn enqueue(&mut self, at: u64, from: Endpoint, to: Endpoint, bytes: &[u8]) {
        let mut buf = self.pool.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(bytes);
        self.seq += 1;
        self.queue.insert((at, self.seq), InFlight { from, to, bytes: buf });
    }

    /// Puts a datagram on the wire with no loss or duplication, arriving after `delay_us`
    /// (for forged messages of planted-bug runs). Partitions still apply at delivery.
    pub fn inject(&mut self, now: u64, from: Endpoint, to: Endpoint, bytes: &[u8], delay_us: u64) {
        self.counts.sent += 1;
        self.enqueue(now + delay_us, from, to, bytes);
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
        if self.blocked.contains_key(&(d.from, d.to)) {
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

    /// Iterates the datagrams in flight (for checkers that look at messages).
    pub fn iter(&self) -> impl Iterator<Item = &InFlight> {
        self.queue.values()
    }
}
