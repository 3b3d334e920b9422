//! Applications shipped with the engine.

pub mod counter;
pub mod kv;
