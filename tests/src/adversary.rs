//! The network adversary of docs/security.md: it sends, replays, modifies and spoofs any
//! source address, but holds no key of the cluster. Every datagram it makes must be refused
//! at its receiver ([`SimNet::open`] counts them); none may ever reach a host.
//!
//! Each action is one of [`Forgery`]'s kinds, built from the recent datagrams of key holders
//! ([`SimNet::recent`]): altered, truncated, sent to or from another address, or their
//! contents sealed under keys that are not the cluster's (another cluster's identity, a
//! retired key, the adversary's own key under the cluster's key id, the client key for a
//! member's message).

use fleet_engine::auth::{Class, Key, KeySet, Keyring, Role, AUTH_OVERHEAD_BYTES, KEY_BYTES, SEALED_PROTOCOL};
use fleet_engine::wire::{MAGIC, WIRE_VERSION};
use fleet_engine::Endpoint;

use crate::net::SimNet;
use crate::rng::Rng;

/// What the adversary makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Forgery {
    /// Random bytes, half of them behind a sealed header with the cluster's key id.
    Random,
    /// A key holder's datagram with one bit flipped.
    Tampered,
    /// A key holder's datagram cut short.
    Truncated,
    /// A key holder's datagram sent to another member, or from another (spoofed) member.
    Redirected,
    /// A key holder's contents sealed for another cluster under the same keys.
    OtherCluster,
    /// A key holder's contents sealed under a retired key.
    OldKey,
    /// A key holder's contents sealed under the adversary's key, carrying the cluster's key id.
    OwnKey,
    /// A member's contents sealed under the client key, from the member's address.
    ClientKeyAsMember,
}

const KINDS: [Forgery; 8] = [
    Forgery::Random,
    Forgery::Tampered,
    Forgery::Truncated,
    Forgery::Redirected,
    Forgery::OtherCluster,
    Forgery::OldKey,
    Forgery::OwnKey,
    Forgery::ClientKeyAsMember,
];

/// The adversary: how often it acts and what it has made.
#[derive(Clone, Debug)]
pub struct Adversary {
    /// Mean gap between actions, microseconds.
    pub every_us: u64,
    /// When it acts next (global µs).
    pub next_us: u64,
    /// Forgeries made, by kind.
    pub made: [u64; KINDS.len()],
    own: [u8; KEY_BYTES],
    rng: Rng,
}

impl Adversary {
    /// An adversary acting about every `every_us`, driven by its own generator (so that
    /// the rest of a seed's run draws what it would without it).
    pub fn new(every_us: u64, seed: u64) -> Adversary {
        let mut rng = Rng::new(seed ^ 0xAD7E_5A41_F0E5_0001);
        let mut own = [0u8; KEY_BYTES];
        own.iter_mut().for_each(|b| *b = rng.below(256) as u8);
        Adversary { every_us, next_us: rng.range(0, every_us), made: [0; KINDS.len()], own, rng }
    }

    /// Every forgery made.
    pub fn total(&self) -> u64 {
        self.made.iter().sum()
    }

    /// Makes one forgery and puts it on the wire (if the network seals and has carried a
    /// key holder's datagram to work from).
    pub fn act(&mut self, now: u64, net: &mut SimNet) {
        let rng = &mut self.rng;
        self.next_us = now + rng.range(self.every_us / 2, self.every_us * 3 / 2).max(1);
        let Some(auth) = net.auth().cloned() else { return };
        if net.recent.is_empty() || auth.members.len() < 2 {
            return;
        }
        let (from, to, inner) = net.recent[rng.below(net.recent.len() as u64) as usize].clone();
        let is_member = |e: Endpoint| auth.members.contains(&e);
        let (keys, role) =
            if is_member(from) { (&auth.member, Role::Member(&auth.members)) } else { (&auth.client, Role::Client) };
        let original = SimNet::seal_as(keys, role, from, to, &inner);
        let kind = KINDS[rng.below(KINDS.len() as u64) as usize];
        let (from, to, wire) = match kind {
            Forgery::Random => {
                let from = pick(&auth.members, rng);
                let to = pick(&auth.members, rng);
                let mut wire: Vec<u8> = (0..rng.below(160)).map(|_| rng.below(256) as u8).collect();
                if rng.below(2) == 0 && wire.len() >= AUTH_OVERHEAD_BYTES {
                    let id = auth.member.member.as_ref().map_or(1, |s| s.sealing().id());
                    wire[..4].copy_from_slice(&[MAGIC, WIRE_VERSION, SEALED_PROTOCOL, id]);
                }
                (from, to, wire)
            }
            Forgery::Tampered => {
                let mut wire = original;
                let bit = rng.below(wire.len() as u64 * 8);
                wire[(bit / 8) as usize] ^= 1 << (bit % 8);
                (from, to, wire)
            }
            Forgery::Truncated => {
                let mut wire = original;
                wire.truncate(rng.below(wire.len() as u64) as usize);
                (from, to, wire)
            }
            Forgery::Redirected => {
                let other = |e: Endpoint, rng: &mut Rng| {
                    let others: Vec<Endpoint> = auth.members.iter().copied().filter(|m| *m != e).collect();
                    pick(&others, rng)
                };
                if rng.below(2) == 0 {
                    (from, other(to, rng), original)
                } else {
                    (other(from, rng), to, original)
                }
            }
            Forgery::OtherCluster => {
                let keys = Keyring { cluster: keys.cluster ^ 0x0100_0001, ..keys.clone() };
                (from, to, SimNet::seal_as(&keys, role, from, to, &inner))
            }
            Forgery::OldKey => {
                let retired = KeySet::single(Key::new(0xEE, [0xA5; KEY_BYTES]));
                let keys = Keyring { member: Some(retired.clone()), client: retired, cluster: keys.cluster };
                (from, to, SimNet::seal_as(&keys, role, from, to, &inner))
            }
            Forgery::OwnKey => {
                // The id the receiver looks up for this pair, so the tag check itself refuses it.
                let class = if is_member(from) && is_member(to) { Class::Member } else { Class::Client };
                let id = auth.member.keys(class).map_or(1, |s| s.sealing().id());
                let own = KeySet::single(Key::new(id, self.own));
                let keys = Keyring { member: Some(own.clone()), client: own, cluster: keys.cluster };
                (from, to, SimNet::seal_as(&keys, role, from, to, &inner))
            }
            Forgery::ClientKeyAsMember => {
                let member = pick(&auth.members, rng);
                let target = pick(&auth.members, rng);
                (member, target, SimNet::seal_as(&auth.client, Role::Client, member, target, &inner))
            }
        };
        let delay = rng.range(1, 2_000);
        self.made[kind as usize] += 1;
        net.forge(now, from, to, &wire, delay);
    }
}

fn pick(from: &[Endpoint], rng: &mut Rng) -> Endpoint {
    from[rng.below(from.len() as u64) as usize]
}

/// Seals `net` with keys drawn from `seed` for the members `members` of the cluster with
/// identity `cluster`, if `sealed`, and returns the adversary acting every `every_us`, if
/// any (only on a sealed network).
pub fn seal_and_attack(
    net: &mut SimNet,
    seed: u64,
    cluster: u32,
    members: &[Endpoint],
    sealed: bool,
    every_us: Option<u64>,
) -> Option<Adversary> {
    if !sealed {
        return None;
    }
    net.seal_with(sim_keys(seed, cluster, members));
    every_us.map(|every| Adversary::new(every, seed))
}

/// Keys for a simulated sealed cluster, drawn from `seed`: a member key (id 1) and a client
/// key (id 2).
pub fn sim_keys(seed: u64, cluster: u32, members: &[Endpoint]) -> crate::net::SimAuth {
    let mut rng = Rng::new(seed ^ 0x5EA1_0000_0000_0001);
    let mut draw = || {
        let mut k = [0u8; KEY_BYTES];
        k.iter_mut().for_each(|b| *b = rng.below(256) as u8);
        k
    };
    let client = KeySet::single(Key::new(2, draw()));
    let member = KeySet::single(Key::new(1, draw()));
    crate::net::SimAuth {
        member: Keyring { cluster, member: Some(member), client: client.clone() },
        client: Keyring { cluster, member: None, client },
        members: members.to_vec(),
    }
}
