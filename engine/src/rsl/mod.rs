//! IronRSL: a MultiPaxos replicated state machine.
//!
//! Roles, each in its own file and named after IronRSL's Dafny modules: [`acceptor`],
//! [`proposer`], [`learner`], [`executor`] (with the [`reply_cache`]), [`election`] and
//! [`state_transfer`]; [`replica`] schedules them behind the sans-IO contract; [`client`]
//! is the sans-IO client (with [`group`]s for pipelined sessions); [`rejoin`] is how a replica without its state comes back; [`reads`] answers queries
//! without a log write. [`app`] is the trait for the replicated application; [`apps`]
//! holds the two shipped applications.

pub mod acceptor;
pub mod app;
pub mod apps;
pub mod ballot;
pub mod batch;
pub mod client;
pub mod config;
pub mod digest;
pub mod durable;
pub mod election;
pub mod executor;
pub mod group;
pub mod journal;
pub mod learner;
pub mod lease;
pub mod membership;
pub mod msg;
pub mod msg_codec;
pub mod proposer;
pub mod reads;
pub mod rejoin;
pub mod replica;
pub mod reply_cache;
pub mod retained;
pub mod snapshot;
pub mod state_transfer;

pub use app::App;
pub use ballot::Ballot;
pub use client::{Client, ClientError, Completed};
pub use config::{Params, RslConfig};
pub use durable::{AcceptorRecord, DurableRecord, RecoverError};
pub use msg::RslMsg;
pub use replica::{Learning, Monotone, Recovery, Replica, Status, Step, Timer};
