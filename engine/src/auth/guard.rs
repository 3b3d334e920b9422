//! Sealing and opening datagrams, and counting what was refused.

use super::{AuthError, Class, Keyring, AUTH_HEADER_BYTES, AUTH_OVERHEAD_BYTES, SEALED_PROTOCOL, TAG_BYTES};
use crate::wire::{EncodeError, MAGIC, WIRE_VERSION};
use crate::{Endpoint, IpAddr};

/// Absorbed first: separates Fleet's tags (and this format's version) from any other use
/// of the same key.
const DOMAIN: &[u8; 12] = b"fleet-auth-1";

/// What a host is: a member (of `members`, which it is one of) or a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role<'m> {
    /// A replica or KV host; `members` are every member's endpoint, itself included.
    Member(&'m [Endpoint]),
    /// A client: it holds only client keys and talks only to members.
    Client,
}

/// Counters of what a guard sealed, opened and refused (each refused datagram once).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AuthStats {
    /// Datagrams sealed.
    pub sealed: u64,
    /// Datagrams opened: their tag matched.
    pub opened: u64,
    /// Refused: shorter than a header and tag.
    pub too_short: u64,
    /// Refused: not sealed.
    pub unsealed: u64,
    /// Refused: under a key id not held for the sender's class.
    pub unknown_key: u64,
    /// Refused: the tag did not match.
    pub bad_tag: u64,
    /// Refusal notices received (not inputs; counted apart from forgeries).
    pub notices: u64,
}

impl AuthStats {
    /// Every refused datagram.
    pub fn refused(&self) -> u64 {
        self.too_short.saturating_add(self.unsealed).saturating_add(self.unknown_key).saturating_add(self.bad_tag)
    }
}

/// One host's keys, its own endpoint and its role: seals what it sends, opens what it
/// receives.
///
/// The tag binds, besides the inner datagram:
/// - the **cluster identity**, so a datagram of another cluster that shares the keys is refused;
/// - the **class and key id**, so a datagram is only ever checked against the key it names;
/// - the **sender's endpoint**, because the engine names peers and clients by their
///   address: without it a datagram replayed from a spoofed address would count as another
///   replica's vote or another client's request;
/// - the **receiver's endpoint**, so a datagram meant for one host is not taken by another.
///
/// A member also talks as a member to a **server that is not a member**: a learner
/// following the log before a change adds it (`rsl::replica::Learning`). Such a server
/// seals with the member key; a member takes a datagram from a non-member address under the
/// member key when the client key does not open it, and from then on seals for that
/// address as a member (up to [`MAX_SERVER_PEERS`] addresses, the oldest forgotten first).
/// Only a member-key holder can make that seal, and the engine gives a non-member address
/// no part in the protocol whichever key it used; a client key never passes for a member.
#[derive(Clone, Debug)]
pub struct Guard<'m, const ADDED: usize = MAX_ADDED_MEMBERS> {
    keys: Keyring,
    me: Endpoint,
    role: Role<'m>,
    stats: AuthStats,
    /// Non-member addresses that sealed with a member key, sealed for as members.
    servers: [Option<Endpoint>; MAX_SERVER_PEERS],
    /// The slot the next server address takes.
    next_server: usize,
    /// Members named after the guard was made ([`Guard::add_member`]), newest first; a
    /// guard whose membership never changes (a firmware's) has room for none.
    added: [Option<Endpoint>; ADDED],
}

/// Most non-member servers (learners) a member remembers sealing for as members.
pub const MAX_SERVER_PEERS: usize = 8;

/// Most members a guard remembers besides those its role names ([`Guard::add_member`]), by
/// default (the `ADDED` capacity): the replicas of later epochs of a changed membership;
/// the one named longest ago is forgotten first.
pub const MAX_ADDED_MEMBERS: usize = 32;

impl<'m> Guard<'m> {
    /// A guard for the host at `me` (its advertised address: what peers send to), with room
    /// for [`MAX_ADDED_MEMBERS`] members named later.
    pub fn new(keys: Keyring, me: Endpoint, role: Role<'m>) -> Self {
        Self::build(keys, me, role)
    }
}

impl<'m> Guard<'m, 0> {
    /// [`Guard::new`] for a host whose membership never changes (a firmware's): no room for
    /// members named later, and none of the RAM.
    pub fn fixed_membership(keys: Keyring, me: Endpoint, role: Role<'m>) -> Self {
        Self::build(keys, me, role)
    }
}

impl<'m, const ADDED: usize> Guard<'m, ADDED> {
    fn build(keys: Keyring, me: Endpoint, role: Role<'m>) -> Self {
        Guard {
            keys,
            me,
            role,
            stats: AuthStats::default(),
            servers: [None; MAX_SERVER_PEERS],
            next_server: 0,
            added: [None; ADDED],
        }
    }

    /// Names `peer` a member too (a member's guard only): a replica of a later epoch of a
    /// changed membership (`fleet-io-std` names every member it knows at each change). Named
    /// again, it becomes the newest; beyond `ADDED` the one named longest ago is forgotten.
    pub fn add_member(&mut self, peer: Endpoint) {
        match self.role {
            Role::Member(members) if !members.contains(&peer) && ADDED > 0 => {}
            _ => return,
        }
        let end = self.added.iter().position(|a| *a == Some(peer)).unwrap_or(ADDED - 1);
        self.added.copy_within(..end, 1);
        self.added[0] = Some(peer);
    }

    /// Takes a new role, keeping the keys and counters: a member whose cluster's
    /// membership changed names every member it now knows (`fleet-io-std` does on each RSL
    /// membership change).
    pub fn set_role(&mut self, role: Role<'m>) {
        self.role = role;
    }

    /// What this guard has counted.
    pub fn stats(&self) -> AuthStats {
        self.stats
    }

    /// The class of keys between this host and `peer`.
    pub fn class_with(&self, peer: Endpoint) -> Class {
        match self.role {
            Role::Member(members)
                if members.contains(&peer)
                    || self.added.contains(&Some(peer))
                    || self.servers.contains(&Some(peer)) =>
            {
                Class::Member
            }
            _ => Class::Client,
        }
    }

    /// Seals `inner` for `to` into `out`; returns the sealed length.
    pub fn seal(&mut self, to: Endpoint, inner: &[u8], out: &mut [u8]) -> Result<usize, EncodeError> {
        let class = self.class_with(to);
        // A client's keyring has no member keys, and a client never sends to a member as one.
        let Some(set) = self.keys.keys(class) else { return Err(EncodeError::BufferFull) };
        let key = set.sealing();
        let len = inner.len() + AUTH_OVERHEAD_BYTES;
        if out.len() < len {
            return Err(EncodeError::BufferFull);
        }
        out[..AUTH_HEADER_BYTES].copy_from_slice(&[MAGIC, WIRE_VERSION, SEALED_PROTOCOL, key.id()]);
        out[AUTH_HEADER_BYTES..AUTH_HEADER_BYTES + inner.len()].copy_from_slice(inner);
        let tag = tag(self.keys.cluster, class, key, self.me, to, inner);
        out[AUTH_HEADER_BYTES + inner.len()..len].copy_from_slice(&tag);
        self.stats.sealed = self.stats.sealed.saturating_add(1);
        Ok(len)
    }

    /// Checks `datagram` from `from` and returns the inner datagram, or why it was refused
    /// (counted).
    pub fn open<'d>(&mut self, from: Endpoint, datagram: &'d [u8]) -> Result<&'d [u8], AuthError> {
        let mut verdict = self.check(from, datagram);
        // A server that is not a member (a learner) seals with the member key.
        let retry = matches!(verdict, Err(AuthError::UnknownKey(_) | AuthError::BadTag))
            && matches!(self.role, Role::Member(_))
            && self.class_with(from) == Class::Client;
        if retry {
            if let Ok(inner) = self.check_as(from, datagram, Class::Member) {
                self.servers[self.next_server % MAX_SERVER_PEERS] = Some(from);
                self.next_server = self.next_server.wrapping_add(1);
                verdict = Ok(inner);
            }
        }
        let counter = match verdict {
            Ok(_) => &mut self.stats.opened,
            Err(AuthError::TooShort) => &mut self.stats.too_short,
            Err(AuthError::Unsealed) => &mut self.stats.unsealed,
            Err(AuthError::UnknownKey(_)) => &mut self.stats.unknown_key,
            Err(AuthError::BadTag) => &mut self.stats.bad_tag,
            Err(AuthError::Notice(_)) => &mut self.stats.notices,
        };
        *counter = counter.saturating_add(1);
        verdict
    }

    /// [`Guard::open`] without counting.
    pub fn check<'d>(&self, from: Endpoint, datagram: &'d [u8]) -> Result<&'d [u8], AuthError> {
        self.check_as(from, datagram, self.class_with(from))
    }

    /// [`Guard::check`] under the keys of `class`.
    fn check_as<'d>(&self, from: Endpoint, datagram: &'d [u8], class: Class) -> Result<&'d [u8], AuthError> {
        if datagram.len() < AUTH_OVERHEAD_BYTES {
            return Err(super::parse_refusal_notice(datagram).map_or(AuthError::TooShort, AuthError::Notice));
        }
        let (header, rest) = datagram.split_at(AUTH_HEADER_BYTES);
        if header[..3] != [MAGIC, WIRE_VERSION, SEALED_PROTOCOL] {
            return Err(AuthError::Unsealed);
        }
        let (inner, got) = rest.split_at(rest.len() - TAG_BYTES);
        let key_id = header[3];
        let key = self.keys.keys(class).and_then(|set| set.accepting(key_id)).ok_or(AuthError::UnknownKey(key_id))?;
        let expected = tag(self.keys.cluster, class, key, from, self.me, inner);
        // One 64-bit comparison: no early exit on a matching prefix.
        if u64::from_le_bytes(expected) != u64::from_le_bytes(got.try_into().map_err(|_| AuthError::TooShort)?) {
            return Err(AuthError::BadTag);
        }
        Ok(inner)
    }
}

/// The tag: SipHash-2-4 of the header fields, both endpoints and the inner datagram.
fn tag(cluster: u32, class: Class, key: &super::Key, from: Endpoint, to: Endpoint, inner: &[u8]) -> [u8; TAG_BYTES] {
    // DOMAIN (12) + cluster (4) + class and id (2) + two endpoints (19 each at most).
    let mut head = [0u8; 12 + 4 + 2 + 2 * 19];
    head[..12].copy_from_slice(DOMAIN);
    head[12..16].copy_from_slice(&cluster.to_le_bytes());
    head[16] = class as u8;
    head[17] = key.id();
    let mut at = 18;
    for ep in [from, to] {
        at += endpoint(&mut head[at..], ep);
    }
    crate::sip::sip24(key.bytes(), &[&head[..at], inner]).to_le_bytes()
}

/// Writes `ep` as `[4, octets, port LE]` or `[6, octets, port LE]`; returns the length.
fn endpoint(out: &mut [u8], ep: Endpoint) -> usize {
    let n = match ep.ip {
        IpAddr::V4(o) => {
            out[0] = 4;
            out[1..5].copy_from_slice(&o);
            5
        }
        IpAddr::V6(o) => {
            out[0] = 6;
            out[1..17].copy_from_slice(&o);
            17
        }
    };
    out[n..n + 2].copy_from_slice(&ep.port.to_le_bytes());
    n + 2
}
