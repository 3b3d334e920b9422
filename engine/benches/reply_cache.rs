//! The reply cache at std size (4,096 clients, 1,100-byte replies), full, in one thread.
//!
//! - `reply_cache/new_client`: a client the cache has not seen executes a request: the
//!   lookup, the eviction of the client executed longest ago, the insert. What each new
//!   client costs every replica once the cache is full (a sweep of `fleet bench` brings a
//!   thousand at a time).
//! - `reply_cache/known_client`: a cached client executes its next request: lookup and
//!   overwrite.
//! - `reply_cache/lookup`: a cached client's retransmission: the lookup alone.
//!
//! Clients are spread over the endpoint order (random addresses and ports). The cache is
//! 4.7 MB, built on a thread with a large stack.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{Criterion, Throughput};
use fleet_engine::rsl::reply_cache::ReplyCache;
use fleet_engine::Endpoint;

const CLIENTS: usize = 4096;
const REPLY_BYTES: usize = 1100;
type Cache = ReplyCache<CLIENTS, REPLY_BYTES>;

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn random_client(rng: &mut u64) -> Endpoint {
    let r = xorshift(rng);
    Endpoint::v4([10, (r >> 8) as u8, (r >> 16) as u8, (r >> 24) as u8], (r >> 32) as u16)
}

fn bench(c: &mut Criterion) {
    let reply = [0x5Au8; 100];
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut cache: Box<Cache> = Box::default();
    let mut known = Vec::with_capacity(CLIENTS);
    let mut opn = 0u64;
    while cache.len() < CLIENTS {
        let client = random_client(&mut rng);
        opn += 1;
        cache.insert(client, 1, opn, &reply);
        known.push(client);
    }
    known.sort();
    known.dedup();
    let mut g = c.benchmark_group("reply_cache");
    g.throughput(Throughput::Elements(1));
    g.bench_function("lookup", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 2039) % known.len();
            black_box(cache.get(black_box(known[i])).map(|e| e.seqno))
        })
    });
    g.bench_function("known_client", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 2039) % known.len();
            opn += 1;
            cache.insert(black_box(known[i]), opn, opn, &reply);
        })
    });
    g.bench_function("new_client", |b| {
        b.iter(|| {
            opn += 1;
            cache.insert(black_box(random_client(&mut rng)), 1, opn, &reply);
        })
    });
    g.finish();
    assert_eq!(cache.len(), CLIENTS);
}

fn main() {
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(|| {
            let mut c = Criterion::default().configure_from_args();
            bench(&mut c);
            c.final_summary();
        })
        .unwrap()
        .join()
        .unwrap();
}
