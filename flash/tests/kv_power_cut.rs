//! A KV host durable on flash, under power cuts at every write and erase boundary.
//!
//! A one-host cluster (born at once) serves a client's Sets in virtual time; the host
//! persists through [`KvFlash`] on a [`RamFlash`] after every step, before its replies
//! leave. The power is cut inside the `k`-th write or erase, for every `k` of the run, and
//! the host is recovered from the flash:
//! * it equals the host as of its last completed persist, or as of the torn step (the step
//!   whose record was being written): protocol-state equality, so the store, the delegation
//!   map, every channel and every unacknowledged message;
//! * every acknowledged Set reads back (through a new client), and the host serves on.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::RefCell;
use std::collections::VecDeque;

use embassy_futures::block_on;
use fleet_engine::kv::{
    Event, HeaplessStore, KvClient, KvConfig, KvHost, KvParams, Outcome, ReliableParams, Request, Storage,
    KV_RECORD_OVERHEAD_BYTES,
};
use fleet_engine::{Endpoint, Instant, Outbox, OutboxBuf};
use fleet_flash::{FlashLog, Input, KvFlash, KvRecoverFailure, RamFlash, FRAME_BYTES};

const D: usize = 512;
type Store = HeaplessStore<16, 64>;
type Host = KvHost<Store, 1, 4, 4, 16, D>;
type Client = KvClient<1, 8, D>;
const PAGE: usize = 512;
const REGION: usize = 8 * PAGE;
const BUF: usize = D + KV_RECORD_OVERHEAD_BYTES + FRAME_BYTES;
/// Images every this many bytes of logged inputs, one run each: images, pops and erases all
/// happen, at different points.
const COMPACT_AFTER_BYTES: [u64; 3] = [120, 250, 500];
const SETS: u64 = 16;
const H0: Endpoint = Endpoint::v4([10, 0, 0, 1], 1);
type Flash<'a> = RamFlash<'a, PAGE, true>;

fn params() -> KvParams {
    KvParams {
        max_value_bytes: 64,
        max_datagram_bytes: D,
        reliable: ReliableParams {
            retransmit_ms: 10,
            max_retransmit_ms: 80,
            max_unacked_per_peer: 4,
            give_up_after: 50,
        },
    }
}

fn config() -> KvConfig<1> {
    let mut c = KvConfig::new(&[H0]).unwrap();
    c.params = params();
    c
}

fn value(key: u64) -> Vec<u8> {
    format!("value of {key}").into_bytes()
}

/// How a run ended.
struct Run {
    /// Keys whose Set was acknowledged.
    acked: Vec<u64>,
    /// The host after its last completed persist, and as it was when the run ended (`None`:
    /// the power went while the first image of a new host was being written).
    persisted: Option<Host>,
    at_end: Option<Host>,
    ops: u64,
    erases: u64,
    images: u64,
    cut: bool,
    now: Instant,
}

/// Sets keys `0..SETS` from a client at `client_at`, over a host recovered from `bytes`;
/// the flash loses power inside its `cut`-th write or erase (if planned).
fn run(bytes: &mut [u8], compact: u64, client_at: Endpoint, start: Instant, cut: Option<u64>) -> Run {
    let mut flash = Flash::new(bytes);
    if let Some(k) = cut {
        flash.cut_after(k, k.wrapping_mul(0x9e37) | 1);
    }
    let mut buf = [0u8; BUF];
    let log = block_on(FlashLog::open(flash, 0..REGION as u32, &mut buf)).expect("the log opens");
    let mut persister = KvFlash::new(log, &mut buf, compact);
    let mut out_store: OutboxBuf<32, 16384> = OutboxBuf::new();
    let host: Host = match block_on(persister.recover(config(), 0, Store::new(), 77, start, &mut out_store.outbox())) {
        Ok(h) => h,
        Err(KvRecoverFailure::Image(_)) if cut.is_some() => {
            let flash = persister.into_log().into_flash();
            let (ops, erases) = (flash.ops(), flash.erases());
            return Run { acked: vec![], persisted: None, at_end: None, ops, erases, images: 0, cut: true, now: start };
        }
        Err(e) => panic!("the host does not recover: {e:?}"),
    };
    let host = RefCell::new(host);
    let mut persisted = host.borrow().clone();
    let mut client = Client::new(&[H0], 1, params()).unwrap();
    let mut client_out: OutboxBuf<8, 4096> = OutboxBuf::new();
    let mut net: VecDeque<(Endpoint, Endpoint, Vec<u8>)> = VecDeque::new();
    let push = |net: &mut VecDeque<_>, from: Endpoint, out: &Outbox<'_>| {
        for (to, b) in out.iter() {
            net.push_back((from, to, b.to_vec()));
        }
    };
    let mut acked = Vec::new();
    let mut now = start;
    let mut cut_happened = false;
    'sets: for key in 0..SETS {
        let v = value(key);
        let mut out = client_out.outbox();
        client.submit(now, Request::Set(key, &v), &mut out).unwrap();
        push(&mut net, client_at, &out);
        let mut done = false;
        for _ in 0..5_000 {
            while let Some((from, to, bytes)) = net.pop_front() {
                if to == client_at {
                    let mut out = client_out.outbox();
                    match client.handle(now, from, &bytes, &mut out) {
                        Some(Event::Completed(c)) => {
                            assert_eq!(c.outcome, Outcome::Written, "key {key}");
                            acked.push(key);
                            done = true;
                        }
                        Some(other) => panic!("key {key}: {other:?}"),
                        None => {}
                    }
                    push(&mut net, client_at, &out);
                    continue;
                }
                let mut out = out_store.outbox();
                let _ = host.borrow_mut().handle(now, from, &bytes, &mut out);
                let input = Input::Datagram { from, datagram: &bytes };
                if block_on(persister.after_step(&host, now, input)).is_err() {
                    cut_happened = true;
                    break 'sets;
                }
                persisted = host.borrow().clone();
                push(&mut net, H0, &out);
            }
            if host.borrow().next_deadline() <= now {
                let mut out = out_store.outbox();
                let _ = host.borrow_mut().tick(now, &mut out);
                if block_on(persister.after_step(&host, now, Input::Tick)).is_err() {
                    cut_happened = true;
                    break 'sets;
                }
                persisted = host.borrow().clone();
                push(&mut net, H0, &out);
            }
            if client.next_deadline() <= now {
                let mut out = client_out.outbox();
                client.tick(now, &mut out);
                push(&mut net, client_at, &out);
            }
            if done {
                break;
            }
            now = now.plus_ms(1);
        }
        assert!(done, "the Set of {key} never completed");
    }
    let images = persister.images();
    let flash = persister.into_log().into_flash();
    let at_end = host.into_inner();
    let (persisted, at_end) = (Some(persisted), Some(at_end));
    Run { acked, persisted, at_end, ops: flash.ops(), erases: flash.erases(), images, cut: cut_happened, now }
}

/// Gets `key` through a new client (one request, answered at once by the single host).
fn get(bytes: &mut [u8], key: u64, at: Instant) -> Option<Vec<u8>> {
    let mut buf = [0u8; BUF];
    let log = block_on(FlashLog::open(Flash::new(bytes), 0..REGION as u32, &mut buf)).unwrap();
    let mut persister = KvFlash::new(log, &mut buf, u64::MAX);
    let mut out_store: OutboxBuf<32, 16384> = OutboxBuf::new();
    let mut host: Host =
        block_on(persister.recover(config(), 0, Store::new(), 78, at, &mut out_store.outbox())).unwrap();
    let reader = Endpoint::v4([10, 0, 1, 9], 9);
    let mut client = Client::new(&[H0], 1_000_000, params()).unwrap();
    let mut client_out: OutboxBuf<8, 4096> = OutboxBuf::new();
    let mut out = client_out.outbox();
    client.submit(at, Request::Get(key), &mut out).unwrap();
    let request: Vec<(Endpoint, Vec<u8>)> = out.iter().map(|(to, b)| (to, b.to_vec())).collect();
    for (_, bytes) in request {
        let mut out = out_store.outbox();
        let _ = host.handle(at, reader, &bytes, &mut out);
        for (_, reply) in out.iter() {
            let mut ack = client_out.outbox();
            if let Some(Event::Completed(c)) = client.handle(at, H0, reply, &mut ack) {
                match c.outcome {
                    Outcome::Value(v) => return v.map(<[u8]>::to_vec),
                    other => panic!("Get {key}: {other:?}"),
                }
            }
        }
    }
    panic!("Get {key}: no answer")
}

const CLIENT: Endpoint = Endpoint::v4([10, 0, 1, 1], 9);

#[test]
fn a_kv_host_on_flash_loses_nothing_acknowledged_at_any_power_cut() {
    let mut cuts = 0;
    for compact in COMPACT_AFTER_BYTES {
        let mut whole_mem = vec![0xFFu8; REGION];
        let whole = run(&mut whole_mem, compact, CLIENT, Instant::ZERO, Some(u64::MAX));
        assert!(!whole.cut && whole.acked.len() == SETS as usize);
        eprintln!(
            "image every {compact} B: {} flash operations, {} erases, {} images",
            whole.ops, whole.erases, whole.images
        );
        assert!(whole.images >= 2 && whole.erases >= 1, "compaction is exercised");
        for k in 0..whole.ops {
            cut_and_recover(compact, k);
            cuts += 1;
        }
    }
    eprintln!("{cuts} power cuts of a KV host, every one recovered");
}

fn cut_and_recover(compact: u64, k: u64) {
    let mut mem = vec![0xFFu8; REGION];
    let cut = run(&mut mem, compact, CLIENT, Instant::ZERO, Some(k));
    assert!(cut.cut, "the cut at {k} came");
    let mut copy = mem.clone();
    let mut buf = [0u8; BUF];
    let log = block_on(FlashLog::open(Flash::new(&mut copy), 0..REGION as u32, &mut buf))
        .unwrap_or_else(|e| panic!("cut at {k}: the log does not open: {e:?}"));
    let mut p = KvFlash::new(log, &mut buf, compact);
    let mut out_store: OutboxBuf<32, 16384> = OutboxBuf::new();
    let recovered: Host = block_on(p.recover(config(), 0, Store::new(), 79, cut.now, &mut out_store.outbox()))
        .unwrap_or_else(|e| panic!("cut at {k}: the host does not recover: {e:?}"));
    match (&cut.persisted, &cut.at_end) {
        (Some(p), Some(e)) => assert!(
            recovered == *p || recovered == *e,
            "cut at {k}: the recovered host is neither the last persisted one nor the one at the cut"
        ),
        // Cut while a new host wrote its first image: it starts again without state.
        _ => assert!(recovered.storage().is_empty() && cut.acked.is_empty(), "cut at {k}"),
    }
    for key in &cut.acked {
        assert_eq!(get(&mut mem.clone(), *key, cut.now), Some(value(*key)), "cut at {k}: acknowledged key {key}");
    }
    // And it serves on: every Set again, from a new client.
    let rest = run(&mut mem, compact, Endpoint::v4([10, 0, 1, 2], 9), cut.now.plus_ms(1), None);
    assert_eq!(rest.acked.len(), SETS as usize, "cut at {k}: the host serves after the restart");
}
