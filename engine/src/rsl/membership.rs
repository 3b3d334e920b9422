//! Membership change by stop-sign: how a cluster's replicas are added, removed and
//! replaced while it serves (VR revisited §7, OmniPaxos).
//!
//! A cluster's life is a sequence of **epochs**. Epoch 0 is the configuration file's
//! replicas; each later epoch is decided in the log of the one before. An operator's
//! [`Change`] names the epoch it ends and the next epoch's replicas; the leader proposes it
//! like any request, in a batch entry of kind [`EntryKind::Change`](super::batch::EntryKind).
//! When a decided change executes at operation `k` and is [`accepted`](evaluate), it is the
//! epoch's **stop-sign**: its batch executes whole, nothing after it executes in that epoch
//! (later operations decided there are void; their clients retry and are served by the
//! next epoch), and every replica that executes it enters the next epoch at once, at
//! operation `k + 1`, with the replicated state it has then. Each epoch is a cluster of its
//! own: its identity ([`RslConfig::identity`](super::config::RslConfig::identity)) covers
//! the epoch number and its replicas, so no message of one epoch is ever counted in
//! another, and its Paxos state (ballots, promises, votes, views) starts afresh.
//!
//! Why this is safe: the old epoch decides one value per operation, so every replica that
//! executes operation `k` executes the same stop-sign with the same state before it; the
//! next epoch's first operation is `k + 1`, and its replicas start from that one state.
//! What a new epoch's replica must not do is take part before it holds that state, or take
//! part as a replica that may have acted in the epoch before losing its memory: a replica
//! that enters by executing the stop-sign has done neither. A lagging replica told by a
//! peer (one that holds the epoch's start state) has never acted in the new epoch either:
//! it enters with a fresh acceptor and fetches the state before it executes anything there.
//! The same holds when it missed several changes and is told of an epoch further on
//! ([`EarlierEpochs`]): each epoch it skips ended with a decided stop-sign that a majority of
//! the next executed, so nothing there needs its votes.
//! Every other way in (a new machine, a restart without state) is a start without state,
//! which rejoins ([`crate::rsl::rejoin`]) and so votes only once it has caught up past
//! everything the epoch's other replicas report, which is at least `k + 1`.
//!
//! The rule that keeps a change live: **a majority of the next epoch's replicas must be
//! replicas of this one** ([`Refusal::NoMajorityKept`]). They enter the next epoch by
//! executing the stop-sign and can elect a leader and decide while new replicas still
//! catch up, so a new replica counts only once caught up, and a change never waits for a
//! machine that is not there yet. Growing from 3 to 5 replicas, shrinking from 5 to 3 and
//! replacing one replica are each one change; replacing a majority takes several.
//!
//! Reads: a leader that has proposed a stop-sign answers no more queries in its ballot
//! ([`crate::rsl::reads`]): once the next epoch decides writes, its state is stale. A
//! leader holding a lease is always the one that proposes the stop-sign (a later ballot
//! waits for the lease's holds to end), so leases stay safe across a change.

use serde::{Deserialize, Serialize};

use crate::endpoint::Endpoint;
use crate::wire::{self, Bytes};

/// The epoch start of a replica started for a later epoch without state, until it installs
/// its first state of that epoch (it cannot know where the epoch began before; that state is
/// at or past it). Such a replica supplies no state and tells no laggard to move on.
pub const EPOCH_START_UNKNOWN: u64 = u64::MAX;

/// Most bytes one encoded endpoint takes (an IPv6 address, a port, the tag).
pub const MAX_ENDPOINT_BYTES: usize = 20;

/// How many epochs before its own a replica recognizes in an envelope ([`EarlierEpochs`]):
/// a replica that many epochs behind or fewer is told where the cluster went by any replica
/// of its epoch that moved on; one further behind hears from nobody.
pub const MAX_EARLIER_EPOCHS: usize = 8;

/// The identities ([`crate::rsl::RslConfig::identity`]) of the epochs a replica passed
/// through before its own, newest first, at most [`MAX_EARLIER_EPOCHS`]: their replicas and
/// clients are told where the cluster went. Durable as the log's epoch records, and in a
/// compacted image as a [`crate::rsl::DurableRecord::EarlierEpochs`] record after its
/// epoch record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EarlierEpochs {
    ids: [u32; MAX_EARLIER_EPOCHS],
    len: u8,
}

impl EarlierEpochs {
    /// Whether `cluster` is one of them ([`wire::ANY_CLUSTER`] never is).
    pub fn contains(&self, cluster: u32) -> bool {
        cluster != wire::ANY_CLUSTER && self.iter().any(|id| id == cluster)
    }

    /// The epoch `cluster` just ended here: remembered first, the oldest forgotten when full.
    pub fn push(&mut self, cluster: u32) {
        if cluster == wire::ANY_CLUSTER || self.contains(cluster) {
            return;
        }
        // Newest first: shift the rest one place on (a loop: smaller firmware than a copy).
        let mut carried = cluster;
        for slot in self.ids.iter_mut() {
            carried = core::mem::replace(slot, carried);
        }
        self.len = (usize::from(self.len) + 1).min(MAX_EARLIER_EPOCHS) as u8;
    }

    /// How many are remembered.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The identities, newest first.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.ids[..usize::from(self.len)].iter().copied()
    }

    /// Encodes them into `out` (4 bytes each, little-endian, newest first); the bytes used.
    pub fn encode(&self, out: &mut [u8; 4 * MAX_EARLIER_EPOCHS]) -> usize {
        for (slot, id) in out.chunks_exact_mut(4).zip(self.iter()) {
            slot.copy_from_slice(&id.to_le_bytes());
        }
        4 * self.len()
    }

    /// Decodes what [`EarlierEpochs::encode`] wrote; `None` if it is not whole identities,
    /// too many, repeated, or [`wire::ANY_CLUSTER`].
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if !bytes.len().is_multiple_of(4) || bytes.len() > 4 * MAX_EARLIER_EPOCHS {
            return None;
        }
        let mut earlier = EarlierEpochs::default();
        for chunk in bytes.chunks_exact(4) {
            let id = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            if id == wire::ANY_CLUSTER || earlier.contains(id) {
                return None;
            }
            earlier.ids[earlier.len()] = id;
            earlier.len += 1;
        }
        Some(earlier)
    }
}

/// An operator's request to end epoch `epoch` and start the next with `replicas`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Change<'a> {
    /// The epoch this change ends: a change meant for another epoch is refused.
    pub epoch: u64,
    /// The next epoch's replicas, in order (a replica's index is its place here): encoded
    /// endpoints back to back.
    #[serde(borrow)]
    pub replicas: Bytes<'a>,
}

/// Why a change was refused. Decided by executing it, so every replica decides the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Refusal {
    /// The request bytes are not a change.
    Malformed,
    /// The change names another epoch: another change ended that epoch first, or the
    /// operator's view of the cluster is out of date.
    WrongEpoch {
        /// The epoch the cluster is in.
        current: u64,
    },
    /// No replicas, or more than this build's replica bound.
    Size,
    /// One endpoint twice.
    Duplicate,
    /// The same replicas in the same order: nothing would change.
    Unchanged,
    /// Fewer than a majority of the next epoch's replicas are replicas now (replace a
    /// majority in several changes).
    NoMajorityKept,
}

impl core::fmt::Display for Refusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Refusal::Malformed => write!(f, "the request is not a membership change"),
            Refusal::WrongEpoch { current } => {
                write!(f, "the cluster is in epoch {current}: another change came first; list the members again")
            }
            Refusal::Size => write!(f, "a cluster needs at least one replica and at most the build's bound"),
            Refusal::Duplicate => write!(f, "an address appears twice"),
            Refusal::Unchanged => write!(f, "the new members are the current members"),
            Refusal::NoMajorityKept => write!(
                f,
                "a majority of the new members must be current members: replace a majority in several changes"
            ),
        }
    }
}

/// What a change's client is answered: the epoch it started and its first operation, or
/// why it was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    /// The change is the stop-sign of its epoch: epoch `epoch` starts at operation `start`.
    Started {
        /// The new epoch.
        epoch: u64,
        /// Its first operation.
        start: u64,
    },
    /// Refused; nothing changed.
    Refused(Refusal),
}

/// Bytes an encoded [`Outcome`] takes at most.
pub const OUTCOME_BYTES: usize = 24;

/// Encodes `change` of `replicas` ending `epoch` into `buf`; `None` if it does not fit.
pub fn encode_change<'b>(epoch: u64, replicas: &[Endpoint], buf: &'b mut [u8]) -> Option<&'b [u8]> {
    let mut list = [0u8; 64 * MAX_ENDPOINT_BYTES];
    let used = encode_replicas(replicas, &mut list)?;
    let n = wire::append_slice(buf, &Change { epoch, replicas: Bytes(&list[..used]) })?;
    Some(&buf[..n])
}

/// Encodes `replicas` back to back into `list` (as changes, membership answers and epoch
/// records carry them); the bytes used, or `None` if they do not fit (`MAX_ENDPOINT_BYTES`
/// per replica always do).
pub fn encode_replicas(replicas: &[Endpoint], list: &mut [u8]) -> Option<usize> {
    let mut used = 0;
    for r in replicas {
        used += wire::append_slice(list.get_mut(used..)?, r)?;
    }
    Some(used)
}

/// The replicas a change's bytes name, or why they do not make a cluster of at most `R`.
pub fn replicas_of<const R: usize>(replicas: &[u8]) -> Result<heapless::Vec<Endpoint, R>, Refusal> {
    let mut out = heapless::Vec::new();
    for item in wire::items::<Endpoint>(replicas) {
        let ep = item.map_err(|_| Refusal::Malformed)?;
        if out.contains(&ep) {
            return Err(Refusal::Duplicate);
        }
        out.push(ep).map_err(|_| Refusal::Size)?;
    }
    if out.is_empty() || out.len() > super::config::MAX_REPLICAS {
        return Err(Refusal::Size);
    }
    Ok(out)
}

/// Decides a change's fate in epoch `epoch` with replicas `current`: the next epoch's
/// replicas, or why not. Pure: every replica executing the same change in the same state
/// decides the same.
pub fn evaluate<const R: usize>(
    request: &[u8],
    epoch: u64,
    current: &[Endpoint],
) -> Result<heapless::Vec<Endpoint, R>, Refusal> {
    let change: Change<'_> = wire::decode_exact(request).map_err(|_| Refusal::Malformed)?;
    let next = replicas_of::<R>(change.replicas.0)?;
    if change.epoch != epoch {
        return Err(Refusal::WrongEpoch { current: epoch });
    }
    if next[..] == *current {
        return Err(Refusal::Unchanged);
    }
    let kept = next.iter().filter(|r| current.contains(r)).count();
    if kept < next.len() / 2 + 1 {
        return Err(Refusal::NoMajorityKept);
    }
    Ok(next)
}

/// True when `request` parses as a change (what a batch must hold to be valid; whether it
/// is accepted is decided at execution).
pub fn well_formed(request: &[u8]) -> bool {
    let max = super::config::MAX_REPLICAS;
    wire::decode_exact::<Change<'_>>(request)
        .is_ok_and(|c| wire::count_valid::<Endpoint>(c.replicas.0, max, |_| true).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earlier_epochs_keep_the_newest_and_round_trip() {
        let mut e = EarlierEpochs::default();
        e.push(wire::ANY_CLUSTER);
        assert!(e.is_empty(), "no cluster is never an epoch");
        for id in 1..=(MAX_EARLIER_EPOCHS as u32 + 2) {
            e.push(id);
            e.push(id);
        }
        assert_eq!(e.len(), MAX_EARLIER_EPOCHS, "bounded, a repeat not counted");
        let newest_first: [u32; MAX_EARLIER_EPOCHS] =
            core::array::from_fn(|i| MAX_EARLIER_EPOCHS as u32 + 2 - i as u32);
        assert!(e.iter().eq(newest_first), "the oldest forgotten first");
        assert!(!e.contains(1) && !e.contains(2) && e.contains(3));
        assert!(!e.contains(wire::ANY_CLUSTER));
        let mut bytes = [0u8; 4 * MAX_EARLIER_EPOCHS];
        let used = e.encode(&mut bytes);
        assert_eq!(EarlierEpochs::decode(&bytes[..used]), Some(e));
        assert_eq!(EarlierEpochs::decode(&[]), Some(EarlierEpochs::default()));
        assert_eq!(EarlierEpochs::decode(&bytes[..used - 1]), None, "not whole identities");
        assert_eq!(EarlierEpochs::decode(&[7, 0, 0, 0, 7, 0, 0, 0]), None, "a repeat");
        assert_eq!(EarlierEpochs::decode(&wire::ANY_CLUSTER.to_le_bytes()), None, "no cluster");
        assert_eq!(EarlierEpochs::decode(&[1; 4 * MAX_EARLIER_EPOCHS + 4]), None, "too many");
    }

    fn ep(i: u16) -> Endpoint {
        Endpoint::v4([10, 0, 0, 1], 7000 + i)
    }

    fn change(epoch: u64, members: &[u16]) -> heapless::Vec<u8, 512> {
        let eps: heapless::Vec<Endpoint, 64> = members.iter().map(|&i| ep(i)).collect();
        let mut buf = [0u8; 512];
        heapless::Vec::from_slice(encode_change(epoch, &eps, &mut buf).unwrap()).unwrap()
    }

    fn eval(bytes: &[u8], epoch: u64, current: &[u16]) -> Result<heapless::Vec<u16, 16>, Refusal> {
        let cur: heapless::Vec<Endpoint, 16> = current.iter().map(|&i| ep(i)).collect();
        evaluate::<16>(bytes, epoch, &cur).map(|v| v.iter().map(|e| e.port - 7000).collect())
    }

    #[test]
    fn growing_shrinking_and_replacing_one_are_each_one_change() {
        assert_eq!(eval(&change(0, &[0, 1, 2, 3, 4]), 0, &[0, 1, 2]).unwrap(), [0, 1, 2, 3, 4]);
        assert_eq!(eval(&change(3, &[0, 1, 2]), 3, &[0, 1, 2, 3, 4]).unwrap(), [0, 1, 2]);
        assert_eq!(eval(&change(1, &[0, 1, 9]), 1, &[0, 1, 2]).unwrap(), [0, 1, 9]);
        assert_eq!(eval(&change(1, &[2, 1, 0]), 1, &[0, 1, 2]).unwrap(), [2, 1, 0], "a reorder is a change");
    }

    #[test]
    fn each_refusal_has_its_reason() {
        assert_eq!(eval(&change(0, &[0, 1, 3]), 1, &[0, 1, 2]), Err(Refusal::WrongEpoch { current: 1 }));
        assert_eq!(eval(&change(0, &[0, 1, 2]), 0, &[0, 1, 2]), Err(Refusal::Unchanged));
        assert_eq!(eval(&change(0, &[0, 8, 9]), 0, &[0, 1, 2]), Err(Refusal::NoMajorityKept));
        assert_eq!(eval(&change(0, &[0, 1, 7, 8, 9]), 0, &[0, 1, 2]), Err(Refusal::NoMajorityKept));
        assert_eq!(eval(&change(0, &[0, 0, 1]), 0, &[0, 1, 2]), Err(Refusal::Duplicate));
        assert_eq!(eval(&change(0, &[]), 0, &[0, 1, 2]), Err(Refusal::Size));
        let seventeen: heapless::Vec<u16, 17> = (0..17).collect();
        assert_eq!(eval(&change(0, &seventeen), 0, &[0, 1, 2]), Err(Refusal::Size), "over the build's bound");
        assert_eq!(eval(b"\xff\xff", 0, &[0, 1, 2]), Err(Refusal::Malformed));
        assert!(well_formed(&change(0, &[0, 1])));
        assert!(!well_formed(b"\xff\xff"));
    }
}
