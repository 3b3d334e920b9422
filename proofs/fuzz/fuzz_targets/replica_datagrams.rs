//! Arbitrary datagram sequences and clock steps into `Replica::handle` / `tick`: never a
//! panic, invariants hold after every step, outputs stay bounded and well-formed.
//!
//! Input: a sequence of records `[op, ...]`. `op & 3 == 0`: tick after advancing the clock
//! by the next byte (ms); otherwise deliver a datagram from sender `op >> 2` (replicas,
//! clients, a stranger) whose length is the next byte; with `op & 2`, the Fleet RSL header
//! and the replica's cluster identity are prepended so the body reaches the message decoder,
//! and the datagram is sealed by its sender and opened by the replica's guard (the harness
//! holds the keys); without, the raw bytes must be refused by the guard as they came off a
//! sealed cluster's wire, and go straight to `handle` as an unsealed cluster's would.
#![no_main]

use fleet_engine::wire::{MAGIC, RSL_HEADER_BYTES, WIRE_VERSION};
use fleet_engine::{Endpoint, Instant};
use fleet_fuzz::{client_ep, deliver, deliver_sealed, deliver_unsealed_wire, replica, replica_ep, tick, N};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let me = usize::from(data.first().copied().unwrap_or(0)) % N;
    let mut r = replica(me);
    let mut now = Instant::ZERO;
    let mut rest = data.get(1..).unwrap_or(&[]);
    let mut steps = 0;
    while let [op, len, tail @ ..] = rest {
        steps += 1;
        if steps > 512 {
            break;
        }
        if op & 3 == 0 {
            now = now.plus_ms(u64::from(*len));
            tick(&mut r, now);
            rest = tail;
            continue;
        }
        let from: Endpoint = match (op >> 2) % 6 {
            s @ 0..=2 => replica_ep(usize::from(s)),
            3 | 4 => client_ep(usize::from(op >> 2) % 2),
            _ => Endpoint::v4([192, 0, 2, 1], 1),
        };
        let take = usize::from(*len).min(tail.len());
        let (body, next) = tail.split_at(take);
        if op & 2 != 0 {
            let mut d = vec![MAGIC, WIRE_VERSION, b'R'];
            d.extend_from_slice(&r.cluster().to_le_bytes());
            d.extend_from_slice(body);
            debug_assert_eq!(d.len(), RSL_HEADER_BYTES + body.len());
            deliver_sealed(&mut r, me, now, from, &d);
        } else {
            deliver_unsealed_wire(&r, me, from, body);
            deliver(&mut r, now, from, body);
        }
        rest = next;
    }
});
