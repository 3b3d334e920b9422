//! A stateright model of a Fleet RSL cluster whose actors *are* the engine: each replica
//! actor holds a real `fleet_engine::rsl::Replica` and each client actor a real `Client`,
//! exchanging the real wire bytes.
//!
//! * **Network**: stateright's unordered duplicating network. Any sent datagram may be
//!   delivered any number of times, in any order, or never; the network is therefore the set
//!   of every datagram ever sent, IronFleet's `sentPackets`, which the cross-host invariants
//!   of `fleet_proofs::rsl_invariants` are stated over. Loss adds nothing for safety (a
//!   message never delivered is a lost one) and is left off.
//! * **Time**: each host has its own clock. A host's timer is one stateright timer that may
//!   fire at any moment; firing it jumps that host's clock to its `next_deadline()` and
//!   calls `tick`. So any timeout may fire between any two deliveries, which covers every
//!   real timing (clocks of different hosts are unrelated). `handle` runs at the host's
//!   current clock.
//! * **Scope**: bounded by [`Scope`]: ticks per host and in total, repeated 1a deliveries
//!   per replica (each re-promises under a fresh 1b reply id, so duplicates would otherwise
//!   be unbounded), and the highest view (`within_boundary`). A delivery or timer outside the budget is
//!   treated as never happening, which is a behaviour the real network and clocks allow:
//!   bounding only removes behaviours, so every violation found is real, and "no violation"
//!   means none within the scope.
//! * **Planted bugs** ([`Planted`]) live only here, as actor wrappers that mutate what a
//!   replica receives or sends; the engine is unchanged.
#![allow(dead_code)]

mod datagram;
mod node;
mod planted;
mod properties;
mod restart;
mod run;
mod scope;

// Each test crate that includes the model uses a part of it (as with `dead_code` above).
#[allow(unused_imports)]
pub use {
    datagram::{actor_of, bytes, describe, endpoint, own_endpoint, Datagram},
    node::{request_of, ClientNode, MClient, MReplica, ModelTimer, Node, NodeState, Record, ReplicaNode, REQUEST},
    planted::{mirror_ballot, Planted},
    properties::{
        cross_host, cross_host_invariants, executed_after_view_change, linearizable, local_invariants,
        merged_conflicting_votes, model, operations, query_answered, rejoined, replicas, reply_received, sent,
        view_changed, HistOp, History, ModelCfg, RslModel, RslState, CONFLICTING_VOTES, QUERY_ANSWERED, REJOINED,
        SAFETY,
    },
    restart::{epoch_of, log_epoch, snapshot_now, Down},
    run::{cell, describe_state, run, run_with, simulate, trace, Outcome},
    scope::{config, params, Scope, AMNESIA_CI_STATES, COMPETING_CI_STATES, DURABLE_CI_STATES, SIM_CI_STATES},
};

// Shared by the files of this module only.
use datagram::{bal, encode};
use planted::{conflicts_with_merged, forge_read_acks, forget_votes, merge_mutant, own_vote_mutant};
use properties::chosen;

#[path = "../walk/mod.rs"]
pub mod walk;
pub use walk::SimOpts;

pub mod members;
pub use members::{Membership, MEMBERS_CI_STATES};
pub mod durable_members;
pub use durable_members::DURABLE_MEMBERS_CI_STATES;
pub mod learners;
pub use learners::LEARNERS_CI_STATES;
