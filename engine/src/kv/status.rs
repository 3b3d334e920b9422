//! Where a KV host stands, as it answers an operator's [`Frame::StatusRequest`]
//! (`fleet kv status`): a few gauges, its counters, and a page of the ranges it owns or is
//! moving. Answered by the engine itself, so firmware hosts answer too; answering changes
//! nothing but the outgoing-datagram counter.
//!
//! [`Frame::StatusRequest`]: super::Frame::StatusRequest

use serde::{Deserialize, Serialize};

use super::host::KvCounters;

/// Bytes a [`Frame::StatusReply`](super::Frame::StatusReply) needs besides its runs: the
/// envelope and cluster identity, tag, nonce, host, cursor fields, the runs' length prefix,
/// and the largest [`KvStatus`] (every field at its widest varint). A unit test encodes the
/// widest reply and checks it fits.
pub const STATUS_REPLY_OVERHEAD_BYTES: usize = 64 + 256;

/// What a KV host reports about itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct KvStatus {
    /// Started without state and still asking the other hosts where it stands
    /// ([`crate::kv::join`]): it owns nothing and serves nothing yet.
    pub joining: bool,
    /// The binding persists the host's inputs before their effects leave (a data
    /// directory, or flash).
    pub durable: bool,
    /// Pairs in the host's store (including pairs of a transfer it is receiving).
    pub keys: u64,
    /// Pairs the store can hold.
    pub key_capacity: u64,
    /// Runs in the host's delegation map (its view of every range's owner).
    pub map_runs: u32,
    /// Reliable channels it tracks (hosts and clients).
    pub channels: u32,
    /// Messages it sent that are not acknowledged yet, over all channels.
    pub unacked: u32,
    /// Its transfers (Shard moves) not yet fully acknowledged by their recipients.
    pub transfers_out: u32,
    /// Transfers it is receiving (some parts applied, the range not owned yet).
    pub transfers_in: u32,
    /// Steps that changed its state since it started or recovered (inputs a durable
    /// binding logged).
    pub logged_steps: u64,
    /// Datagrams received since it started, valid or not.
    pub datagrams_in: u64,
    /// Its KV counters since it started.
    pub counters: KvCounters,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::msg::{KeyBound, KeyRange};
    use crate::kv::reliable::Frame;
    use crate::wire::{self, Bytes};

    #[test]
    fn the_widest_status_reply_fits_its_overhead() {
        let widest = KvCounters {
            gets: u64::MAX,
            sets: u64::MAX,
            redirects: u64::MAX,
            errors: u64::MAX,
            duplicates: u64::MAX,
            refusals_sent: u64::MAX,
            refusals_received: u64::MAX,
            shards: u64::MAX,
            delegate_parts: u64::MAX,
            transfers_in: u64::MAX,
            transfers_out: u64::MAX,
            evicted: u64::MAX,
            abandoned: u64::MAX,
            closed_refused: u64::MAX,
        };
        let status = KvStatus {
            joining: true,
            durable: true,
            keys: u64::MAX,
            key_capacity: u64::MAX,
            map_runs: u32::MAX,
            channels: u32::MAX,
            unacked: u32::MAX,
            transfers_out: u32::MAX,
            transfers_in: u32::MAX,
            logged_steps: u64::MAX,
            datagrams_in: u64::MAX,
            counters: widest,
        };
        let runs = [0u8; 1000];
        let frame = Frame::StatusReply {
            nonce: u64::MAX,
            host: u8::MAX,
            status,
            from_key: u64::MAX,
            next: Some(u64::MAX),
            runs: Bytes(&runs),
        };
        let mut buf = [0u8; 2048];
        let n = wire::encode_in_cluster(wire::Protocol::Kv, u32::MAX, &frame, &mut buf).unwrap();
        assert!(n <= runs.len() + STATUS_REPLY_OVERHEAD_BYTES, "{n} bytes");
        // The runs decode as (range, owner) pairs, like a JoinReply's.
        let mut page = [0u8; 64];
        let end =
            crate::kv::join::push_run(&mut page, 0, KeyRange { lo: KeyBound::Zero, hi: KeyBound::Inf }, 2).unwrap();
        let runs: heapless::Vec<_, 2> = crate::kv::join::runs(&page[..end]).flatten().collect();
        assert_eq!(&runs[..], &[(KeyRange::ALL, 2)]);
    }
}
