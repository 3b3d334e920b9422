//! The contract the run loop drives: the engine's three sans-IO calls.
//!
//! Every engine host — an RSL [`Replica`] today, a KV host next — implements
//! [`SansIoHost`], and [`crate::Node`] is generic over it, so binding a new host to
//! embassy-net is one `impl` block.

use fleet_engine::kv::{KvHost, Storage};
use fleet_engine::rsl::{App, Replica};
use fleet_engine::{Endpoint, Instant, Outbox};

/// A sans-IO host: `handle` one datagram, `tick` at `next_deadline`, send what `out` holds.
pub trait SansIoHost {
    /// One received datagram; `now` is read after the receive.
    fn handle(&mut self, now: Instant, from: Endpoint, datagram: &[u8], out: &mut Outbox<'_>);
    /// The clock-driven actions due at `now`.
    fn tick(&mut self, now: Instant, out: &mut Outbox<'_>);
    /// When `tick` must next run ([`Instant::NEVER`]: no timer armed).
    fn next_deadline(&self) -> Instant;
}

impl<
        A: App,
        const R: usize,
        const W: usize,
        const D: usize,
        const QB: usize,
        const C: usize,
        const RB: usize,
        const TB: usize,
    > SansIoHost for Replica<A, R, W, D, QB, C, RB, TB>
{
    fn handle(&mut self, now: Instant, from: Endpoint, datagram: &[u8], out: &mut Outbox<'_>) {
        // In-memory mode (as IronRSL): nothing to persist before sending, so `Step` is unused.
        let _ = Replica::handle(self, now, from, datagram, out);
    }

    fn tick(&mut self, now: Instant, out: &mut Outbox<'_>) {
        let _ = Replica::tick(self, now, out);
    }

    fn next_deadline(&self) -> Instant {
        Replica::next_deadline(self)
    }
}

impl<S: Storage, const H: usize, const M: usize, const P: usize, const U: usize, const D: usize> SansIoHost
    for KvHost<S, H, M, P, U, D>
{
    fn handle(&mut self, now: Instant, from: Endpoint, datagram: &[u8], out: &mut Outbox<'_>) {
        let _ = KvHost::handle(self, now, from, datagram, out);
    }

    fn tick(&mut self, now: Instant, out: &mut Outbox<'_>) {
        let _ = KvHost::tick(self, now, out);
    }

    fn next_deadline(&self) -> Instant {
        KvHost::next_deadline(self)
    }
}
