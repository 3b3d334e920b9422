//! # fleet-io-std
//!
//! Binds `fleet-engine` to std UDP sockets. It holds no protocol logic: it moves datagrams
//! and time between the operating system and the engine.
//!
//! - [`server`]: the single-threaded event loop (a burst of datagrams in, `handle` each,
//!   `tick` at `next_deadline`, persist, send) and the std RSL replica types;
//! - [`durable`]: the write-ahead log of durable mode (`fleet rsl serve --data-dir`);
//! - [`udp_batch`]: burst receive and send (`recvmmsg`/`sendmmsg`);
//! - [`client`]: a blocking RSL client with KV operations;
//! - [`config`]: the TOML cluster file;
//! - [`app`]: the heap-backed KV application for servers;
//! - [`bench`]: the closed-loop load generator behind `fleet bench`;
//! - [`net`]: `SocketAddr` ⇄ `Endpoint`.
#![forbid(unsafe_code)]

pub mod app;
pub mod bench;
pub mod client;
pub mod config;
pub mod demo;
pub mod durable;
pub mod kv;
pub mod net;
pub mod plot;
pub mod procs;
pub mod server;
pub mod udp_batch;
