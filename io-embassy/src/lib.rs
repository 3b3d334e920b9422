//! # fleet-io-embassy
//!
//! Binds the sans-IO `fleet-engine` to [`embassy_net`] (smoltcp) UDP sockets and
//! [`embassy_time`] timers. The same code runs on a microcontroller and on a host: it is
//! written against [`embassy_net::Stack`] / [`embassy_net::udp::UdpSocket`], which do not
//! depend on the network driver.
//!
//! - [`host`]: [`SansIoHost`], the three-call contract the run loop drives (implemented
//!   for every [`fleet_engine::rsl::Replica`]; a KV host is one more `impl`);
//! - [`node`]: [`Node`], the async run loop (receive → `handle`, `tick` at
//!   `next_deadline`, send; self-addressed datagrams fed straight back), with every buffer
//!   sized by const generics ([`Buffers`], [`SocketBuffers`]);
//! - [`client`]: an async RSL client over one UDP socket;
//! - [`switch`]: an in-memory IP switch implementing [`embassy_net_driver::Driver`], one
//!   port per stack, with loss, reordering and cut links, so several embassy-net stacks run
//!   in one process (host tests; it also runs on a target, it needs no `std`);
//! - [`net`]: [`fleet_engine::Endpoint`] ⇄ [`embassy_net::IpEndpoint`].
//!
//! No heap anywhere. Logging goes to `defmt` with the `defmt` feature, else nowhere.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod log;

pub mod client;
pub mod durable;
pub mod host;
pub mod kv_client;
pub mod net;
pub mod node;
pub mod seal;
pub mod switch;

pub use client::{CallError, RslClient};
pub use durable::{Halt, InMemory, Input, KvFlash, Persist, RslFlash};
pub use host::SansIoHost;
pub use kv_client::{AsyncKvClient, KvAnswer};
pub use node::{Buffers, LinkStats, Node, NodeState, SocketBuffers};

/// The engine's clock read from embassy-time: microseconds since embassy-time's origin.
pub fn now() -> fleet_engine::Instant {
    fleet_engine::Instant::from_micros(embassy_time::Instant::now().as_micros())
}
