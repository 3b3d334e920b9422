//! A deterministic in-memory network of three replicas and one client, in virtual time.

use core::cell::RefCell;

use embassy_futures::block_on;
use fleet_engine::rsl::apps::counter::Counter;
use fleet_engine::rsl::{Client, Params, Replica, RslConfig};
use fleet_engine::{Endpoint, Instant, Outbox, OutboxBuf};
use fleet_flash::{HostCell, RamFlash, RslFlash};
use heapless::{Deque, Vec};

/// Datagram bound of the simulated cluster.
pub const D: usize = 512;
/// A small replica: 3 replicas, window 4, 512-byte datagrams, 2 KiB queue, 8 clients.
pub type Rep = Replica<Counter, 3, 4, D, 2048, 8, 32>;
/// The client's endpoint.
pub const CLIENT: Endpoint = Endpoint::v4([10, 0, 0, 9], 5000);

/// Replica endpoints.
pub fn eps() -> [Endpoint; 3] {
    [Endpoint::v4([10, 0, 0, 1], 7000), Endpoint::v4([10, 0, 0, 2], 7000), Endpoint::v4([10, 0, 0, 3], 7000)]
}

/// Fast timers and a 512-byte datagram bound.
pub fn params() -> Params {
    Params {
        heartbeat_period_ms: 10,
        baseline_view_timeout_ms: 100,
        max_view_timeout_ms: 1000,
        retransmit_period_ms: 20,
        max_log_length: 4,
        max_datagram_bytes: D,
        ..Params::default()
    }
}

/// The cluster's configuration.
pub fn config() -> RslConfig<3> {
    let mut c = RslConfig::new(&eps()).unwrap_or_else(|_| panic!("config"));
    c.params = params();
    c
}

type Packet = (Endpoint, Endpoint, Vec<u8, D>);

/// Three replicas, a client, a FIFO network with optional periodic loss, virtual time.
pub struct Sim {
    pub reps: [Rep; 3],
    pub up: [bool; 3],
    pub client: Client<3, D>,
    pub now: Instant,
    /// Every `loss_every`-th datagram is lost (0: none).
    pub loss_every: u32,
    pub lost: u32,
    pub last_reply: Option<u64>,
    net: Deque<Packet, 256>,
    store: OutboxBuf<64, 16384>,
    sent: u32,
    /// Durable replicas' persisters (`None`: in memory, as IronRSL).
    persisters: Option<[RslFlash<'static, Flash>; 3]>,
}

/// The erase page of the simulated flash regions.
pub const FLASH_PAGE: usize = 1024;
/// A replica's flash region.
pub type Flash = RamFlash<'static, FLASH_PAGE>;

/// Persists replica `i`'s step before it sends anything (durable replicas only).
fn persist(persisters: &mut Option<[RslFlash<'static, Flash>; 3]>, rep: &mut Rep, i: usize) {
    let Some(p) = persisters.as_mut() else { return };
    let lent = Lent(RefCell::new(rep));
    if block_on(p[i].after_step(&lent)).is_err() {
        panic!("replica {} cannot persist to its flash", i);
    }
}

/// A replica lent to a persister between steps.
struct Lent<'a>(RefCell<&'a mut Rep>);

impl HostCell<Rep> for Lent<'_> {
    fn with_host<R>(&self, f: impl FnOnce(&mut Rep) -> R) -> R {
        f(&mut self.0.borrow_mut())
    }
}

fn enqueue(
    net: &mut Deque<Packet, 256>,
    sent: &mut u32,
    lost: &mut u32,
    loss_every: u32,
    from: Endpoint,
    out: &Outbox<'_>,
) {
    for (to, bytes) in out.iter() {
        *sent += 1;
        if loss_every > 0 && sent.is_multiple_of(loss_every) {
            *lost += 1;
            continue;
        }
        if let Ok(v) = Vec::from_slice(bytes) {
            // A full network queue drops, like a congested link.
            let _ = net.push_back((from, to, v));
        }
    }
}

impl Sim {
    /// A fresh cluster at time zero.
    pub fn new() -> Sim {
        let rep = |i| Rep::new(config(), i, Counter::default(), Instant::ZERO).unwrap_or_else(|_| panic!("replica"));
        Sim {
            reps: [rep(0), rep(1), rep(2)],
            up: [true; 3],
            client: Client::new(&eps(), 1, 50, D).unwrap_or_else(|_| panic!("client")),
            now: Instant::ZERO,
            loss_every: 0,
            lost: 0,
            last_reply: None,
            net: Deque::new(),
            store: OutboxBuf::new(),
            sent: 0,
            persisters: None,
        }
    }

    /// A cluster of durable replicas, each recovered from its persister's flash log (a
    /// rejoining replica when the log is empty: three of them are born together).
    pub fn durable(mut persisters: [RslFlash<'static, Flash>; 3]) -> Result<Sim, &'static str> {
        let mut sim = Sim::new();
        for (i, p) in persisters.iter_mut().enumerate() {
            let nonce = 0x5eed + i as u64;
            sim.reps[i] = block_on(p.recover(config(), i, Counter::default(), Instant::ZERO, nonce))
                .map_err(|_| "a replica does not recover from its flash")?;
        }
        sim.persisters = Some(persisters);
        Ok(sim)
    }

    /// Submits one counter increment from the client.
    pub fn submit(&mut self) -> bool {
        let mut out = self.store.outbox();
        let ok = self.client.submit(self.now, b"inc", &mut out).is_ok();
        enqueue(&mut self.net, &mut self.sent, &mut self.lost, self.loss_every, CLIENT, &out);
        ok
    }

    /// Delivers, ticks and advances time in 1 ms steps until `done` or `limit_ms` passes.
    pub fn run_until(&mut self, limit_ms: u64, done: impl Fn(&Sim) -> bool) -> bool {
        let end = self.now.plus_ms(limit_ms);
        let replicas = eps();
        while self.now < end {
            let now = self.now;
            for _ in 0..2000 {
                let Some((from, to, bytes)) = self.net.pop_front() else { break };
                if to == CLIENT {
                    if let Some(c) = self.client.handle(now, from, &bytes) {
                        let mut v = [0u8; 8];
                        let n = c.reply.len().min(8);
                        v[..n].copy_from_slice(&c.reply[..n]);
                        self.last_reply = Some(u64::from_le_bytes(v));
                    }
                } else if let Some(i) = replicas.iter().position(|e| *e == to) {
                    if self.up[i] {
                        let mut out = self.store.outbox();
                        let _ = self.reps[i].handle(now, from, &bytes, &mut out);
                        persist(&mut self.persisters, &mut self.reps[i], i);
                        enqueue(&mut self.net, &mut self.sent, &mut self.lost, self.loss_every, replicas[i], &out);
                    }
                }
            }
            for (i, me) in replicas.iter().enumerate() {
                if self.up[i] && self.reps[i].next_deadline() <= now {
                    let mut out = self.store.outbox();
                    let _ = self.reps[i].tick(now, &mut out);
                    persist(&mut self.persisters, &mut self.reps[i], i);
                    enqueue(&mut self.net, &mut self.sent, &mut self.lost, self.loss_every, *me, &out);
                }
            }
            if self.client.next_deadline() <= now {
                let mut out = self.store.outbox();
                self.client.tick(now, &mut out);
                enqueue(&mut self.net, &mut self.sent, &mut self.lost, self.loss_every, CLIENT, &out);
            }
            if done(self) {
                return true;
            }
            self.now = now.plus_ms(1);
        }
        false
    }

    /// Runs `count` increments one after another; each reply must be the next value.
    pub fn increments(&mut self, count: u64, limit_ms: u64) -> Result<(), &'static str> {
        for _ in 0..count {
            let expected = self.last_reply.unwrap_or(0) + 1;
            if !self.submit() {
                return Err("client refused the request");
            }
            if !self.run_until(limit_ms, |s| s.client.pending().is_none()) {
                return Err("request did not commit in time");
            }
            if self.last_reply != Some(expected) {
                return Err("reply is not the next counter value (lost or duplicated execution)");
            }
        }
        Ok(())
    }

    /// The live replica leading the highest view.
    pub fn leader(&self) -> Option<usize> {
        (0..3).filter(|&i| self.up[i] && self.reps[i].status().is_leader).max_by_key(|&i| self.reps[i].status().view)
    }
}
