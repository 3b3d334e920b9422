//! Power cuts at every flash write and erase boundary, over many seeds.
//!
//! A new cluster of three durable replicas (a counter application, one client) runs in
//! virtual time from empty flash; each replica persists through an [`RslFlash`] over its
//! own [`RamFlash`]. The power is cut in the middle of the `k`-th write or erase of one
//! replica's flash (torn contents drawn from the seed), from the cluster's birth on, and the
//! whole cluster goes down at that moment. Every replica is then recovered from its flash, and:
//! * its durable acceptor state is never older than what it had persisted before the cut
//!   (nothing it revealed is forgotten) and never newer than what it had in memory (nothing
//!   invented or corrupted);
//! * the cluster serves again, and the counter goes on from the last acknowledged value
//!   (at most one more: the request in flight at the cut may have been executed): no
//!   acknowledged increment is lost, none is applied twice — the history stays
//!   linearizable.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::RefCell;
use std::collections::VecDeque;

use embassy_futures::block_on;
use fleet_engine::rsl::apps::counter::Counter;
use fleet_engine::rsl::{Ballot, Client, Params, Replica, RslConfig};
use fleet_engine::{Endpoint, Instant, Outbox, OutboxBuf};
use fleet_flash::{FlashLog, RamFlash, RslFlash};

const D: usize = 512;
type Rep = Replica<Counter, 3, 4, D, 2048, 8, 32>;
/// 512-byte pages, 6 of them: small enough that the queue wraps and erases pages often
/// (the records of this small cluster are far below a page).
const PAGE: usize = 512;
const REGION: usize = 6 * PAGE;
/// A record and its frame.
const BUF: usize = D + fleet_engine::rsl::durable::DURABLE_RECORD_OVERHEAD_BYTES + fleet_flash::FRAME_BYTES;
/// An image every 400 bytes of log, so images, pops and erases happen many times in a run.
const COMPACT_AFTER_BYTES: u64 = 400;
const INCREMENTS: u64 = 16;

fn eps() -> [Endpoint; 3] {
    [Endpoint::v4([10, 0, 0, 1], 7000), Endpoint::v4([10, 0, 0, 2], 7000), Endpoint::v4([10, 0, 0, 3], 7000)]
}

fn config() -> RslConfig<3> {
    let mut c = RslConfig::new(&eps()).unwrap();
    c.params = Params {
        heartbeat_period_ms: 10,
        baseline_view_timeout_ms: 100,
        max_view_timeout_ms: 1000,
        retransmit_period_ms: 20,
        max_log_length: 4,
        max_datagram_bytes: D,
        ..Params::default()
    };
    c
}

/// What must survive: promise, truncation point, 1b counter, votes, started ballot, and
/// operations executed.
type View = (Ballot, u64, u64, Vec<(u64, Ballot, Vec<u8>)>, Ballot, u64);

fn view(r: &Rep) -> View {
    let a = r.acceptor();
    let votes = a.votes().map(|v| (v.opn, v.bal, v.batch.to_vec())).collect();
    let ops = r.status().ops_complete;
    (a.max_bal, a.log_truncation_point, a.replies_sent(), votes, r.proposer().max_ballot_sent_1a, ops)
}

/// `got` keeps everything of `persisted` and nothing beyond `at_cut`.
fn between(persisted: &View, got: &View, at_cut: &View) -> Result<(), String> {
    let order = [(persisted.0, got.0, at_cut.0, "promise"), (persisted.4, got.4, at_cut.4, "started ballot")];
    for (lo, x, hi, what) in order {
        if !(lo <= x && x <= hi) {
            return Err(format!("{what} {x:?} outside [{lo:?}, {hi:?}]"));
        }
    }
    let counts = [
        (persisted.1, got.1, at_cut.1, "truncation"),
        (persisted.2, got.2, at_cut.2, "1b counter"),
        (persisted.5, got.5, at_cut.5, "operations executed"),
    ];
    for (lo, x, hi, what) in counts {
        if !(lo <= x && x <= hi) {
            return Err(format!("{what} {x} outside [{lo}, {hi}]"));
        }
    }
    for (opn, bal, batch) in persisted.3.iter().filter(|v| v.0 >= got.1) {
        match got.3.iter().find(|v| v.0 == *opn) {
            Some((_, b, x)) if b > bal || (b == bal && x == batch) => {}
            other => return Err(format!("persisted vote at {opn} in {bal:?} lost (now {other:?})")),
        }
    }
    for (opn, bal, batch) in &got.3 {
        let known = at_cut.3.iter().chain(&persisted.3).any(|v| v.0 == *opn && v.1 == *bal && &v.2 == batch);
        if !known {
            return Err(format!("recovered vote at {opn} in {bal:?} was never cast"));
        }
    }
    Ok(())
}

/// xorshift64*, for the network's losses.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// How one boot ended.
struct Boot {
    /// Counter values acknowledged to the client, in order.
    replies: Vec<u64>,
    /// Each replica's durable view after its last completed persist, and when the boot ended.
    persisted: Vec<View>,
    at_end: Vec<View>,
    /// Writes and erases done on the flash of the replica planned to be cut, and erases.
    ops: u64,
    erases: u64,
    /// True if the power was cut.
    cut: bool,
    /// Images each replica wrote.
    images: Vec<u64>,
}

type Flash<'a> = RamFlash<'a, PAGE, true>;

fn send(net: &mut VecDeque<(Endpoint, Endpoint, Vec<u8>)>, rng: &mut Rng, from: Endpoint, out: &Outbox<'_>) {
    for (to, bytes) in out.iter() {
        // One datagram in 20 is lost.
        if rng.below(20) != 0 {
            net.push_back((from, to, bytes.to_vec()));
        }
    }
}

struct Cluster<'a> {
    persisters: Vec<RslFlash<'a, Flash<'a>>>,
    reps: Vec<RefCell<Rep>>,
    persisted: Vec<View>,
    net: VecDeque<(Endpoint, Endpoint, Vec<u8>)>,
    rng: Rng,
    store: OutboxBuf<64, 16384>,
}

impl Cluster<'_> {
    /// One step of replica `i`: handle or tick, persist, then (only then) send. False if
    /// the power was cut during the persist: nothing of the step leaves.
    fn step(&mut self, i: usize, now: Instant, input: Option<(Endpoint, &[u8])>) -> bool {
        let mut out = self.store.outbox();
        {
            let mut r = self.reps[i].borrow_mut();
            let _ = match input {
                Some((from, bytes)) => r.handle(now, from, bytes, &mut out),
                None => r.tick(now, &mut out),
            };
        }
        if block_on(self.persisters[i].after_step(&self.reps[i])).is_err() {
            return false;
        }
        self.persisted[i] = view(&self.reps[i].borrow());
        send(&mut self.net, &mut self.rng, eps()[i], &out);
        true
    }
}

/// One boot of the cluster over `flashes`: recover every replica, then `increments`
/// increments from a client at `client_at`; replica `cut.0`'s flash loses power in its
/// `cut.1`-th write or erase (if planned).
fn boot(flashes: &mut [Vec<u8>], seed: u64, client_at: Endpoint, increments: u64, cut: Option<(usize, u64)>) -> Boot {
    let mut bufs = vec![[0u8; BUF]; 3];
    let mut scratch = vec![[0u8; 256]; 3];
    let mut persisters = Vec::new();
    let mut reps = Vec::new();
    for (i, ((bytes, buf), scratch)) in flashes.iter_mut().zip(bufs.iter_mut()).zip(scratch.iter_mut()).enumerate() {
        let mut flash = Flash::new(bytes.as_mut_slice());
        if let Some((c, k)) = cut {
            if c == i {
                flash.cut_after(k, seed.wrapping_mul(31).wrapping_add(k));
            }
        }
        let log = block_on(FlashLog::open(flash, 0..REGION as u32, buf)).expect("the flash log opens");
        let mut persister = RslFlash::new(log, buf, scratch, COMPACT_AFTER_BYTES);
        let nonce = seed.wrapping_mul(7).wrapping_add(i as u64 + 1);
        let rep: Rep = block_on(persister.recover(config(), i, Counter::default(), Instant::ZERO, nonce))
            .unwrap_or_else(|e| panic!("seed {seed}: replica {i} does not recover: {e:?}"));
        persisters.push(persister);
        reps.push(RefCell::new(rep));
    }
    let persisted = reps.iter().map(|r| view(&r.borrow())).collect();
    let mut c =
        Cluster { persisters, reps, persisted, net: VecDeque::new(), rng: Rng(seed | 1), store: OutboxBuf::new() };
    let mut client: Client<3, D> = Client::new(&eps(), 1, 50, D).unwrap();
    let mut client_out: OutboxBuf<8, 4096> = OutboxBuf::new();
    let mut replies = Vec::new();
    let mut now = Instant::ZERO;
    let limit = now.plus_ms(30_000);
    let mut halted = false;
    'run: for _ in 0..increments {
        let mut out = client_out.outbox();
        client.submit(now, b"inc", &mut out).unwrap();
        send(&mut c.net, &mut c.rng, client_at, &out);
        while client.pending().is_some() {
            if now >= limit {
                let status: Vec<_> = c.reps.iter().map(|r| r.borrow().status()).collect();
                panic!("seed {seed}: the cluster stopped serving (cut {cut:?}, replies {replies:?}): {status:#?}");
            }
            for _ in 0..2000 {
                let Some((from, to, bytes)) = c.net.pop_front() else { break };
                if to == client_at {
                    if let Some(done) = client.handle(now, from, &bytes) {
                        let mut v = [0u8; 8];
                        let n = done.reply.len().min(8);
                        v[..n].copy_from_slice(&done.reply[..n]);
                        replies.push(u64::from_le_bytes(v));
                    }
                } else if let Some(i) = eps().iter().position(|e| *e == to) {
                    if !c.step(i, now, Some((from, &bytes))) {
                        halted = true;
                        break 'run;
                    }
                }
            }
            for i in 0..3 {
                let due = c.reps[i].borrow().next_deadline() <= now;
                if due && !c.step(i, now, None) {
                    halted = true;
                    break 'run;
                }
            }
            if client.next_deadline() <= now {
                let mut out = client_out.outbox();
                client.tick(now, &mut out);
                send(&mut c.net, &mut c.rng, client_at, &out);
            }
            now = now.plus_ms(1);
        }
    }
    let at_end = c.reps.iter().map(|r| view(&r.borrow())).collect();
    let Cluster { persisters, persisted, .. } = c;
    let images = persisters.iter().map(RslFlash::images).collect();
    let flash = cut.and_then(|(i, _)| persisters.into_iter().nth(i)).map(|p| p.into_log().into_flash());
    let (ops, erases) = flash.map_or((0, 0), |f| (f.ops(), f.erases()));
    Boot { replies, persisted, at_end, ops, erases, cut: halted, images }
}

const CLIENT_1: Endpoint = Endpoint::v4([10, 0, 0, 9], 5000);
const CLIENT_2: Endpoint = Endpoint::v4([10, 0, 0, 9], 5001);

/// The cut at boundary `k` of replica `victim`'s flash, for `seed`: checks the recovery and
/// that the cluster serves on. Returns whether the cut happened (false: `k` is past the
/// run's last operation).
fn cut_and_recover(seed: u64, victim: usize, k: u64) -> bool {
    let mut flashes = vec![vec![0xFFu8; REGION]; 3];
    let cut = boot(&mut flashes, seed, CLIENT_1, INCREMENTS, Some((victim, k)));
    if !cut.cut {
        return false;
    }
    // Recovery: each replica's durable state within [what it persisted, what it had].
    let recovered = recovered_views(&mut flashes.clone(), seed);
    for (i, got) in recovered.iter().enumerate() {
        if let Err(why) = between(&cut.persisted[i], got, &cut.at_end[i]) {
            panic!("seed {seed}, cut at {k} of replica {victim}: replica {i} recovered wrong: {why}");
        }
        // The others' last steps were persisted whole: they come back exactly.
        if i != victim {
            assert_eq!(got, &cut.at_end[i], "seed {seed}, cut at {k} of replica {victim}: replica {i}");
        }
    }
    let after = boot(&mut flashes, seed ^ 0x5555, CLIENT_2, 4, None);
    // Linearizable: the counter goes on from the last acknowledged value; the request in
    // flight at the cut may or may not have been executed.
    let consecutive = |from: u64, n: usize| (from..from + n as u64).collect::<Vec<_>>();
    assert_eq!(cut.replies, consecutive(1, cut.replies.len()), "seed {seed}: replies before the cut");
    let acked = cut.replies.last().copied().unwrap_or(0);
    let next = after.replies.first().copied().unwrap_or(0);
    assert!(
        next == acked + 1 || next == acked + 2,
        "seed {seed}, cut at {k} of replica {victim}: after the cut the counter went from {acked} to {next}"
    );
    assert_eq!(after.replies, consecutive(next, after.replies.len()), "seed {seed}: replies after the restart");
    true
}

/// Each replica's durable view as recovered from `flashes`.
fn recovered_views(flashes: &mut [Vec<u8>], seed: u64) -> Vec<View> {
    let mut buf = [0u8; BUF];
    let mut scratch = [0u8; 256];
    let mut views = Vec::new();
    for (i, bytes) in flashes.iter_mut().enumerate() {
        let log = block_on(FlashLog::open(Flash::new(bytes.as_mut_slice()), 0..REGION as u32, &mut buf)).unwrap();
        let mut p = RslFlash::new(log, &mut buf, &mut scratch, COMPACT_AFTER_BYTES);
        let rep: Rep = block_on(p.recover(config(), i, Counter::default(), Instant::ZERO, seed)).unwrap();
        views.push(view(&rep));
    }
    views
}

#[test]
fn a_power_cut_at_any_flash_boundary_loses_nothing_acknowledged() {
    let seeds: u64 = std::env::var("FLEET_FLASH_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(6);
    let (mut cuts, mut images, mut erases) = (0u64, 0u64, 0u64);
    for seed in 1..=seeds {
        let victim = (seed % 3) as usize;
        // How many boundaries a whole run has on the victim's flash.
        let mut flashes = vec![vec![0xFFu8; REGION]; 3];
        let whole = boot(&mut flashes, seed, CLIENT_1, INCREMENTS, Some((victim, u64::MAX)));
        assert!(!whole.cut && whole.ops > 50, "seed {seed}: a run without a cut does {} flash operations", whole.ops);
        assert!(
            whole.images[victim] >= 1 && whole.erases >= 1,
            "seed {seed}: images {:?} and {} erases: compaction is exercised",
            whole.images,
            whole.erases
        );
        (images, erases) = (images + whole.images[victim], erases + whole.erases);
        for k in 0..whole.ops {
            assert!(cut_and_recover(seed, victim, k), "seed {seed}: the cut at {k} of {} never came", whole.ops);
            cuts += 1;
        }
    }
    eprintln!("{cuts} power cuts, every one recovered ({images} images and {erases} erases on the cut flashes' runs)");
}
