//! Keys and key sets: what a host holds, never what it prints.

use core::fmt;

use super::{Class, KEY_BYTES};

/// One secret key and the id datagrams sealed under it carry.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    id: u8,
    bytes: [u8; KEY_BYTES],
}

impl Key {
    /// A key with id `id` (any byte: ids name keys during a rotation).
    pub const fn new(id: u8, bytes: [u8; KEY_BYTES]) -> Key {
        Key { id, bytes }
    }

    /// The id sealed datagrams carry.
    pub const fn id(&self) -> u8 {
        self.id
    }

    /// The secret bytes.
    pub(crate) const fn bytes(&self) -> &[u8; KEY_BYTES] {
        &self.bytes
    }
}

impl fmt::Debug for Key {
    // Never the secret: a key in a log line or a panic message would be a leak.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key {{ id: {}, .. }}", self.id)
    }
}

/// Why a key set could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum KeyError {
    /// The two keys of a rotation carry the same id: a receiver could not tell which to use.
    DuplicateId(u8),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::DuplicateId(id) => write!(f, "two keys carry id {id}: each key of a rotation needs its own id"),
        }
    }
}

/// The keys of one class: the one datagrams are sealed with, and during a rotation one
/// more that is also accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySet {
    sealing: Key,
    also_accepted: Option<Key>,
}

impl KeySet {
    /// One key, for sealing and opening.
    pub const fn single(key: Key) -> KeySet {
        KeySet { sealing: key, also_accepted: None }
    }

    /// A rotation: `sealing` seals, both open.
    pub fn rotating(sealing: Key, also_accepted: Key) -> Result<KeySet, KeyError> {
        if sealing.id == also_accepted.id {
            return Err(KeyError::DuplicateId(sealing.id));
        }
        Ok(KeySet { sealing, also_accepted: Some(also_accepted) })
    }

    /// The key datagrams are sealed with.
    pub const fn sealing(&self) -> &Key {
        &self.sealing
    }

    /// The accepted key with id `id`, if any.
    pub fn accepting(&self, id: u8) -> Option<&Key> {
        core::iter::once(&self.sealing).chain(self.also_accepted.as_ref()).find(|k| k.id == id)
    }
}

/// Every key a host holds, and the cluster they belong to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keyring {
    /// The cluster identity bound into every tag (`RslConfig::identity`,
    /// `KvConfig::identity`): a datagram sealed for another cluster under the same keys is
    /// refused.
    pub cluster: u32,
    /// Keys between members; `None` on a client, which must never hold them.
    pub member: Option<KeySet>,
    /// Keys between clients and members.
    pub client: KeySet,
}

impl Keyring {
    /// The keys of `class`, if this host holds them.
    pub fn keys(&self, class: Class) -> Option<&KeySet> {
        match class {
            Class::Member => self.member.as_ref(),
            Class::Client => Some(&self.client),
        }
    }
}
