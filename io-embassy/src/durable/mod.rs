//! Durable hosts: what the run loop persists after every step, before the step's datagrams
//! leave ([`Persist`]), implemented for `fleet-flash`'s persisters of an RSL replica
//! ([`RslFlash`]) and a KV host ([`KvFlash`]).
//!
//! The ordering rule is the engine's (etcd's): nothing that depends on a write leaves before
//! the write is durable. On flash a write is durable when the flash operation completes, so
//! the run loop persists every record of a step before it sends any of the step's
//! datagrams; there is no group commit to wait for.
//!
//! A persister that cannot persist (a full region, a flash error) halts the node: it stops
//! speaking for good ([`crate::NodeState::halted`] says why), since its next datagram could
//! reveal state that a reset would lose.

use core::future::Future;

use embassy_sync::blocking_mutex::raw::RawMutex;
use embedded_storage_async::nor_flash::MultiwriteNorFlash;
use fleet_engine::kv::{KvHost, Storage};
use fleet_engine::rsl::{App, Replica};
use fleet_engine::Instant;
pub use fleet_flash::{Halt, HostCell, Input, KvFlash, RslFlash};

use crate::host::SansIoHost;
use crate::node::Node;

/// What the run loop does after every step, before sending the step's datagrams.
pub trait Persist<H> {
    /// Makes durable what the step (`input`, at `now`) requires; an error halts the node.
    /// The host is reached through [`Node::with`], never across an `.await`.
    fn after_step<M: RawMutex>(
        &mut self,
        node: &Node<M, H>,
        now: Instant,
        input: Input<'_>,
    ) -> impl Future<Output = Result<(), Halt>>;
}

/// In-memory hosts (as IronFleet): nothing to persist.
#[derive(Clone, Copy, Debug, Default)]
pub struct InMemory;

impl<H> Persist<H> for InMemory {
    async fn after_step<M: RawMutex>(&mut self, _: &Node<M, H>, _: Instant, _: Input<'_>) -> Result<(), Halt> {
        Ok(())
    }
}

impl<M: RawMutex, H: SansIoHost> HostCell<H> for Node<M, H> {
    fn with_host<R>(&self, f: impl FnOnce(&mut H) -> R) -> R {
        self.with(|s| f(&mut s.host))
    }
}

impl<
        F: MultiwriteNorFlash,
        A: App,
        const R: usize,
        const W: usize,
        const D: usize,
        const QB: usize,
        const C: usize,
        const RB: usize,
        const TB: usize,
    > Persist<Replica<A, R, W, D, QB, C, RB, TB>> for RslFlash<'_, F>
{
    async fn after_step<M: RawMutex>(
        &mut self,
        node: &Node<M, Replica<A, R, W, D, QB, C, RB, TB>>,
        _: Instant,
        _: Input<'_>,
    ) -> Result<(), Halt> {
        RslFlash::after_step(self, node).await
    }
}

impl<
        F: MultiwriteNorFlash,
        S: Storage,
        const H: usize,
        const MM: usize,
        const P: usize,
        const U: usize,
        const D: usize,
    > Persist<KvHost<S, H, MM, P, U, D>> for KvFlash<'_, F>
{
    async fn after_step<M: RawMutex>(
        &mut self,
        node: &Node<M, KvHost<S, H, MM, P, U, D>>,
        now: Instant,
        input: Input<'_>,
    ) -> Result<(), Halt> {
        KvFlash::after_step(self, node, now, input).await
    }
}
