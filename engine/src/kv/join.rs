//! Starting without state: how a KV host that has none (a first start, a restart without
//! `--data-dir`, an empty or lost data directory) learns whether the cluster is new or it
//! lost what it held, so that it never serves a key it does not hold.
//!
//! IronKV assumes hosts never restart. A host restarted empty that took up its initial
//! ranges (host 0: every key) would answer "not found" for keys it held before, and accept
//! writes to keys another host now owns: two owners of one key. Fleet's rule:
//!
//! * The host takes a fresh **incarnation nonce** (larger than any it had: the wall clock in
//!   microseconds in io-std), the base of its channels to the other hosts. Until it knows
//!   where it stands it is **joining**: it owns nothing, accepts no message of any channel,
//!   and asks every other host ([`Frame::Join`](super::Frame::Join), every retransmission
//!   period) for the ranges it owns or is moving, paged to fit datagrams.
//! * A host asked by a new incarnation forgets the old one's channel (a stale message of it
//!   has a smaller base and is refused), drops its unacknowledged messages to it (an
//!   outgoing transfer to it: its range had no owner but the transfer, and is now lost),
//!   drops a transfer it was receiving from it (the missing parts died with it; the pairs
//!   applied so far are deleted), and answers ([`Frame::JoinReply`](super::Frame::JoinReply))
//!   with its ranges, whether it is joining itself, whether it had answered another
//!   incarnation of the asker, and the base of its new channel to it. It persists this
//!   before the answer leaves.
//! * With every host's answer in:
//!   - all others joining, and none had answered another incarnation of it: **a new
//!     cluster** — the host is born with the initial map (host 0 owns every key);
//!   - some other host serving: the host is an **amnesiac** — it owns nothing; the ranges
//!     the others own or are moving point to them, every other key is [`LOST`](super::LOST):
//!     it held them and their values are gone. A request for a lost key is answered
//!     [`KvError::Lost`](super::KvError::Lost), never with a value or "not found";
//!   - otherwise (others joining, but one answered an earlier incarnation of it, which may
//!     have been born and served) it asks again until some host serves.
//! * Either way the host then refuses every client channel it may have served before (its
//!   closed-channel floors rise to the nonce, so a delayed duplicate is never executed
//!   again; clients restart their channels above it); as an amnesiac it also reports
//!   requests up to the nonce as possibly executed (`lost`).
//!
//! Liveness needs every other host up while a host joins; two hosts joining while others
//! serve both become amnesiacs. Safety needs nonces to grow across a host's incarnations,
//! and (for the client floors) clients' channel bases to be wall-clock based like the
//! nonce: a client whose clock is far ahead of the host's could see one delayed duplicate
//! of an old request executed again. A whole cluster restarted without state is a new
//! cluster: its data is gone.

use serde::{Deserialize, Serialize};

use super::delegation::HostId;
use super::msg::KeyRange;
use crate::time::Instant;
use crate::wire::{self, EncodeError};

/// Bytes a [`Frame::JoinReply`](super::Frame::JoinReply) needs besides its runs (envelope,
/// cluster identity, tag, nonce, base, flags, keys, length prefix).
pub const JOIN_REPLY_OVERHEAD_BYTES: usize = 64;

/// What a host remembers about another host's incarnations ([`crate::kv::join`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct HostMeta {
    /// The other host restarted without state after this host had answered an earlier
    /// incarnation of it.
    pub seen_other: bool,
    /// The other host's incarnation this host counted as joining when it was born itself (0:
    /// none): that incarnation is part of the same new cluster, and is told so.
    pub born_with: u64,
}

/// What one host answered a joining host so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct JoinProgress {
    /// The key to ask its ranges from next; `None` once it sent them all.
    pub cursor: Option<u64>,
    /// It is joining itself (as of its latest answer).
    pub joining: bool,
    /// It answered another incarnation of this host before.
    pub seen_other: bool,
}

impl JoinProgress {
    /// Nothing answered yet.
    pub const ASKING: JoinProgress = JoinProgress { cursor: Some(0), joining: false, seen_other: false };
}

/// A joining host's state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Join<const H: usize> {
    /// This incarnation's nonce.
    pub nonce: u64,
    /// When the questions go out again.
    pub retry_at: Instant,
    /// Per host (this one's entry is complete).
    pub hosts: heapless::Vec<JoinProgress, H>,
}

/// What a joining host may conclude.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinOutcome {
    /// Some host has not answered everything yet.
    Waiting,
    /// Every host answered and none serves, but one answered an earlier incarnation: ask
    /// again.
    AskAgain,
    /// A new cluster.
    Born,
    /// Other hosts serve: this host lost what it held.
    Amnesiac,
}

impl<const H: usize> Join<H> {
    /// Joining as host `me` of `n` with `nonce`, asking at `now`.
    pub fn new(nonce: u64, n: usize, me: usize, now: Instant) -> Join<H> {
        let mut hosts = heapless::Vec::new();
        for i in 0..n.min(H) {
            let done = JoinProgress { cursor: None, joining: true, seen_other: false };
            let _ = hosts.push(if i == me { done } else { JoinProgress::ASKING });
        }
        Join { nonce, retry_at: now, hosts }
    }

    /// What the answers so far allow.
    pub fn outcome(&self) -> JoinOutcome {
        if self.hosts.iter().any(|h| h.cursor.is_some()) {
            return JoinOutcome::Waiting;
        }
        if self.hosts.iter().any(|h| !h.joining) {
            return JoinOutcome::Amnesiac;
        }
        match self.hosts.iter().any(|h| h.seen_other) {
            true => JoinOutcome::AskAgain,
            false => JoinOutcome::Born,
        }
    }
}

/// The runs of a [`Frame::JoinReply`](super::Frame::JoinReply): `(range, owner)` pairs,
/// postcard-encoded back to back. An item that does not decode ends the sequence with an
/// error.
pub fn runs(bytes: &[u8]) -> impl Iterator<Item = Result<(KeyRange, HostId), ()>> + '_ {
    wire::items::<(KeyRange, HostId)>(bytes).map(|run| run.map_err(|_| ()))
}

/// Appends one run to `buf` at `at`; returns the new end, or `BufferFull`.
pub fn push_run(buf: &mut [u8], at: usize, range: KeyRange, owner: HostId) -> Result<usize, EncodeError> {
    let room = buf.get_mut(at..).ok_or(EncodeError::BufferFull)?;
    let n = wire::to_slice(&(range, owner), room)?;
    Ok(at + n)
}
