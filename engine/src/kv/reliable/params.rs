//! The channels' parameters and the outcomes their operations report.

use crate::config::ConfigError;

/// Largest channel base accepted: bases above it are invalid, so every seqno floor and every
/// restarted base stays far from overflow (wall-clock microseconds are about 2^51).
pub const MAX_CHANNEL_BASE: u64 = u64::MAX / 2;

/// Retransmission and queue parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ReliableParams {
    /// First retransmission delay, and the delay after an ack makes progress.
    pub retransmit_ms: u64,
    /// The delay doubles on every expiry without progress, up to this.
    pub max_retransmit_ms: u64,
    /// Most unacked messages towards one peer.
    pub max_unacked_per_peer: usize,
    /// Retransmission rounds without an ack making progress after which a client
    /// ([`PeerKind::Client`](super::PeerKind::Client)) is given up on: its unacked messages are dropped and it is
    /// evicted. At least 1. The default, 12 rounds, gives up 14.35 s after the first send at
    /// the default delays (50 ms doubling to 1.6 s).
    pub give_up_after: u32,
}

impl Default for ReliableParams {
    fn default() -> Self {
        ReliableParams { retransmit_ms: 50, max_retransmit_ms: 1600, max_unacked_per_peer: 8, give_up_after: 12 }
    }
}

impl ReliableParams {
    /// Checks the parameters against an unacked capacity of `u` messages.
    pub fn validate(&self, u: usize) -> Result<(), ConfigError> {
        if self.retransmit_ms == 0 {
            return Err(ConfigError::Invalid("retransmit_ms"));
        }
        if self.max_retransmit_ms < self.retransmit_ms {
            return Err(ConfigError::Invalid("max_retransmit_ms"));
        }
        if self.max_unacked_per_peer == 0 || self.max_unacked_per_peer > u {
            return Err(ConfigError::Invalid("max_unacked_per_peer"));
        }
        if self.give_up_after == 0 {
            return Err(ConfigError::Invalid("give_up_after"));
        }
        Ok(())
    }
}

/// How a received message relates to the channel's state ([`Reliable::classify`](super::Reliable::classify)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Verdict {
    /// The next message in order: accept it.
    New,
    /// The first message of a restarted peer's new incarnation: accepting it resets the channel.
    Restarted,
    /// Already accepted: re-ack, do nothing else.
    Duplicate,
    /// Beyond the next expected seqno: ignore (the sender retransmits in order).
    Ahead,
    /// From an older incarnation of the peer: ignore.
    Stale,
    /// From an endpoint with no channel here, on a channel this side closed for good
    /// (evicted): refuse with [`Refusal::ChannelClosed`](super::Refusal::ChannelClosed) ([`Reliable::closed_refusal`](super::Reliable::closed_refusal)).
    Closed,
    /// Impossible for this peer (seqno below base, base 0 or above [`MAX_CHANNEL_BASE`], or
    /// another base from a fixed peer).
    Invalid,
}

/// What an incoming ack did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AckOutcome {
    /// Messages were removed from the unacked queue.
    Progress,
    /// Nothing new was acknowledged.
    Stale,
    /// Acknowledges a seqno never sent.
    Invalid,
}

/// Why [`Reliable::send`](super::Reliable::send) refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SendError {
    /// The unacked queue (per peer or overall) is full: back-pressure.
    QueueFull,
    /// The body does not fit one datagram.
    TooLarge,
    /// No such peer.
    UnknownPeer,
}
