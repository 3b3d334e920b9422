//! Datagram authentication: a MAC on every datagram between key holders, checked before
//! anything is decoded (docs/security.md has the threat model).
//!
//! The engine's hosts stay unchanged: a binding opens every datagram it receives with its
//! [`Guard`] before `handle` and seals every datagram it sends after the step. Layout of a
//! sealed datagram:
//!
//! ```text
//! [MAGIC, WIRE_VERSION, b'A', key id] ++ inner datagram ++ tag (8 bytes)
//! ```
//!
//! The tag is SipHash-2-4 (128-bit key, 64-bit tag) over a domain string, the cluster
//! identity, the key's class and id, the sender's and the receiver's endpoints, and the
//! inner datagram ([`Guard`] says why each is bound). Two classes of keys: **member** keys
//! for datagrams between members (replicas, or KV hosts), **client** keys for every
//! datagram with a client at one end, so a client key cannot produce a datagram a member
//! would take as a member's. Each class holds up to two keys during a rotation: the first
//! is the one datagrams are sealed with, both are accepted.

mod guard;
mod keys;

pub use guard::{AuthStats, Guard, Role, MAX_ADDED_MEMBERS, MAX_SERVER_PEERS};
pub use keys::{Key, KeyError, KeySet, Keyring};

/// Bytes of a key: SipHash's 128-bit key.
pub const KEY_BYTES: usize = 16;
/// Bytes of the tag after the inner datagram: SipHash-2-4's 64-bit output (a forgery
/// succeeds with probability 2^-64 per datagram tried).
pub const TAG_BYTES: usize = 8;
/// Bytes of the header before the inner datagram: magic, version, `b'A'`, key id.
pub const AUTH_HEADER_BYTES: usize = 4;
/// What sealing adds to a datagram: the engine's datagram bound must leave this much room
/// under the network's.
pub const AUTH_OVERHEAD_BYTES: usize = AUTH_HEADER_BYTES + TAG_BYTES;
/// The third header byte of a sealed datagram (an inner datagram has `b'R'` or `b'K'`).
pub const SEALED_PROTOCOL: u8 = b'A';

/// Which keys a datagram is sealed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Class {
    /// Between two members of the cluster.
    Member = b'M',
    /// Between a client and a member.
    Client = b'C',
}

/// Why a received datagram was refused before decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AuthError {
    /// Shorter than the sealed header and tag.
    TooShort,
    /// Not a sealed Fleet datagram (a plain one, or not Fleet's at all).
    Unsealed,
    /// Sealed under a key id this host does not hold for the sender's class (another
    /// cluster's key, a key retired by a rotation, or a client key where a member key is due).
    UnknownKey(u8),
    /// The tag does not match: forged, tampered with, truncated, replayed from or to
    /// another address, or sealed under another key with the same id.
    BadTag,
    /// A refusal notice ([`refusal_notice`]): a hint for an error message, never an input.
    Notice(RefusalReason),
}

/// What a refusal notice reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RefusalReason {
    /// The sender's key id is not held there.
    UnknownKey(u8),
    /// The sender's tag did not match there.
    BadTag,
}

impl core::fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RefusalReason::UnknownKey(id) => write!(f, "sealed under key id {id}, which it does not hold"),
            RefusalReason::BadTag => f.write_str("MAC does not match"),
        }
    }
}

impl core::fmt::Display for AuthError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AuthError::TooShort => f.write_str("datagram shorter than a sealed header and tag"),
            AuthError::Unsealed => f.write_str("datagram not sealed (no MAC)"),
            AuthError::UnknownKey(id) => write!(f, "sealed under key id {id}, which this host does not hold"),
            AuthError::BadTag => f.write_str("MAC does not match"),
            AuthError::Notice(why) => write!(f, "a refusal notice ({why})"),
        }
    }
}

#[cfg(test)]
mod tests;

/// The third header byte of a refusal notice.
pub const NOTICE_PROTOCOL: u8 = b'N';
/// Bytes of a refusal notice.
pub const NOTICE_BYTES: usize = 5;

/// A refusal notice: what a member may send back to the sender of a datagram whose key it
/// does not hold or whose tag did not match, so that a client or member with the wrong key
/// can say so instead of timing out silently. It is not sealed (the receiver may not share
/// any key with the sender), so it is only ever a hint for an error message: anyone can
/// forge one. It is shorter than any sealed datagram (no amplification). `None` for the
/// refusals that do not look like a Fleet node's (too short, unsealed) and for notices.
pub fn refusal_notice(error: AuthError) -> Option<[u8; NOTICE_BYTES]> {
    use crate::wire::{MAGIC, WIRE_VERSION};
    match error {
        AuthError::UnknownKey(id) => Some([MAGIC, WIRE_VERSION, NOTICE_PROTOCOL, 1, id]),
        AuthError::BadTag => Some([MAGIC, WIRE_VERSION, NOTICE_PROTOCOL, 2, 0]),
        AuthError::TooShort | AuthError::Unsealed | AuthError::Notice(_) => None,
    }
}

/// What a notice reports, if `datagram` is one.
pub fn parse_refusal_notice(datagram: &[u8]) -> Option<RefusalReason> {
    use crate::wire::{MAGIC, WIRE_VERSION};
    match datagram {
        [MAGIC, WIRE_VERSION, NOTICE_PROTOCOL, 1, id] => Some(RefusalReason::UnknownKey(*id)),
        [MAGIC, WIRE_VERSION, NOTICE_PROTOCOL, 2, 0] => Some(RefusalReason::BadTag),
        _ => None,
    }
}
