//! The replicated map of `fleet rsl serve` (`StdKvApp`) on its own: puts per second through
//! the `App` trait for 300,000 keys inserted ascending, descending and in random order, in
//! the first and the last 10,000 of each run (a map that degrades with the insertion order
//! shows it here; an ordered `Vec` once fell from ~23k to ~2k puts/s by 230k descending
//! keys). `cargo bench -p fleet-io-std --bench kv_app`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Instant;

use fleet_engine::rsl::app::App;
use fleet_engine::rsl::apps::kv::KvOp;
use fleet_engine::wire::Bytes;
use fleet_io_std::rsl::ServerApp;

const KEYS: u64 = 300_000;
const WINDOW: u64 = 10_000;

fn run(order: &str, key_of: impl Fn(u64) -> u64) {
    let mut app = ServerApp::new(KEYS as usize);
    let (mut request, mut reply) = (vec![0u8; 256], vec![0u8; 2048]);
    let value = [b'v'; 16];
    let mut window_start = Instant::now();
    let mut rates = Vec::new();
    for i in 0..KEYS {
        let key = key_of(i).to_be_bytes();
        let n = KvOp::Put(Bytes(&key), Bytes(&value)).encode(&mut request).expect("a put fits");
        let _ = app.apply(&request[..n], &mut reply);
        if (i + 1) % WINDOW == 0 {
            rates.push(WINDOW as f64 / window_start.elapsed().as_secs_f64());
            window_start = Instant::now();
        }
    }
    assert_eq!(app.len() as u64, KEYS, "every key inserted");
    let (first, last) = (rates[0], rates[rates.len() - 1]);
    println!("{order:>10}: first 10k {first:>12.0} puts/s, last 10k {last:>12.0} puts/s ({:.2}x)", last / first);
}

fn main() {
    run("ascending", |i| i);
    run("descending", |i| KEYS - 1 - i);
    // A fixed odd multiplier modulo a power of two: every key once, in a scrambled order.
    run("random", |i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) & ((1 << 40) - 1));
}
