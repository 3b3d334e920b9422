//! The receive path of one step: acks, and a reliable message taken through decode, bounds,
//! seqno classification, resource checks and acceptance before it is dispatched to
//! [`requests`](super::requests) or [`sharding`](super::sharding); refusals for back-pressure.

use super::sharding::Admit;
use super::{bump, Channel, KvHost};
use crate::endpoint::Endpoint;
use crate::kv::msg::{self, Body};
use crate::kv::reliable::{AckOutcome, Refusal, Verdict};
use crate::kv::storage::Storage;
use crate::outbox::Outbox;
use crate::stats::Stats;
use crate::time::Instant;
use crate::wire;

impl<S: Storage, const H: usize, const M: usize, const P: usize, const U: usize, const D: usize>
    KvHost<S, H, M, P, U, D>
{
    pub(super) fn on_ack(&mut self, now: Instant, from: Endpoint, seqno: u64) {
        let Some(peer) = self.rel.index_of(from) else {
            Stats::bump(&mut self.stats.unknown_sender);
            return;
        };
        match self.apply_ack(now, peer, seqno) {
            AckOutcome::Invalid => Stats::bump(&mut self.stats.invalid_messages),
            AckOutcome::Stale => Stats::bump(&mut self.stats.ignored_messages),
            AckOutcome::Progress => {}
        }
    }

    /// A cumulative ack from `peer`, alone or piggybacked: a Delegate transfer is done when
    /// its last part is acked.
    fn apply_ack(&mut self, now: Instant, peer: usize, seqno: u64) -> AckOutcome {
        let outcome = self.rel.on_ack(now, peer, seqno);
        if outcome == AckOutcome::Progress {
            self.logged = true;
            let before = self.outgoing.len();
            self.outgoing.retain(|o| !(usize::from(o.recipient) == peer && o.last_seqno <= seqno));
            let done = (before - self.outgoing.len()) as u64;
            self.counters.transfers_out = self.counters.transfers_out.saturating_add(done);
        }
        outcome
    }

    pub(super) fn on_single(&mut self, now: Instant, from: Endpoint, ch: Channel, body: &[u8], out: &mut Outbox<'_>) {
        let Channel { base, seqno, ack } = ch;
        let Ok(msg) = wire::decode_exact::<Body<'_>>(body) else {
            Stats::bump(&mut self.stats.decode_errors);
            return;
        };
        let sender_host = self.config.index_of(from);
        let pairs_in_part = match self.validate(&msg) {
            Some(n) => n,
            None => {
                Stats::bump(&mut self.stats.invalid_messages);
                return;
            }
        };
        if matches!(msg, Body::Delegate { .. }) && sender_host.is_none() {
            Stats::bump(&mut self.stats.unknown_sender);
            return;
        }
        let peer = self.rel.index_of(from);
        let verdict = match peer {
            Some(p) => self.rel.classify(p, base, seqno),
            None => self.rel.classify_unknown(from, base, seqno),
        };
        // A piggybacked ack of something never sent makes the whole datagram invalid. From a
        // sender we have no channel to, the ack is ignored: there is nothing of ours it could
        // ack (a client we evicted still acks our closed channel to it, whose seqnos are all
        // below the new channel's, `Reliable::admit`).
        let ack_ok = match peer {
            Some(p) => self.rel.ack_valid(p, ack),
            None => true,
        };
        if !ack_ok && matches!(verdict, Verdict::New | Verdict::Restarted | Verdict::Duplicate) {
            Stats::bump(&mut self.stats.invalid_messages);
            return;
        }
        match verdict {
            Verdict::New | Verdict::Restarted => {}
            Verdict::Duplicate => {
                if let Some(p) = peer {
                    self.apply_ack(now, p, ack);
                    self.rel.owe_ack(p, now);
                }
                bump(&mut self.counters.duplicates);
                Stats::bump(&mut self.stats.ignored_messages);
                return;
            }
            Verdict::Ahead | Verdict::Stale => {
                Stats::bump(&mut self.stats.ignored_messages);
                return;
            }
            Verdict::Closed => {
                // A message of a channel this host evicted: never accepted again (a stale
                // duplicate must not start a channel and be executed twice); the sender
                // learns it must restart its channel.
                bump(&mut self.counters.closed_refused);
                let reason = self.rel.closed_refusal(from);
                return self.refuse(from, seqno, reason, out);
            }
            Verdict::Invalid => {
                Stats::bump(&mut self.stats.invalid_messages);
                return;
            }
        }
        // Resources the processing needs, checked before anything changes.
        let needs_reply = matches!(msg, Body::GetRequest { .. } | Body::SetRequest { .. } | Body::Shard { .. });
        if needs_reply {
            let room = match peer {
                Some(p) => self.rel.room_after(p, verdict),
                None => self.rel.max_unacked_per_peer().min(U - self.rel.pending()),
            };
            if peer.is_none() && !self.rel.can_admit() {
                return self.refuse(from, seqno, Refusal::TooManyPeers, out);
            }
            if room == 0 {
                return self.refuse(from, seqno, Refusal::QueueFull, out);
            }
        }
        if let (Body::Delegate { transfer, range, part, parts, total_pairs, .. }, Some(src)) = (&msg, sender_host) {
            match self.delegate_admissible(src, *transfer, range, *part, *parts, *total_pairs, pairs_in_part) {
                Admit::Yes => {}
                Admit::NoRoom => return self.refuse(from, seqno, Refusal::NoRoom, out),
                Admit::Invalid => {
                    Stats::bump(&mut self.stats.invalid_messages);
                    return;
                }
            }
        }
        let p = match peer {
            Some(p) => p,
            // A new client; a full table evicts its least recently active settled client.
            None => match self.rel.admit(now, from) {
                Ok((p, evicted)) => {
                    if evicted {
                        bump(&mut self.counters.evicted);
                    }
                    p
                }
                Err(reason) => return self.refuse(from, seqno, reason, out),
            },
        };
        self.rel.accept(now, p, base, seqno);
        self.logged = true;
        self.apply_ack(now, p, ack);
        self.rel.owe_ack(p, now);
        match msg {
            Body::GetRequest { key } => self.on_get(now, p, seqno, key, out),
            Body::SetRequest { key, value } => self.on_set(now, p, seqno, key, value.map(|v| v.0), out),
            Body::Shard { range, recipient } => self.on_shard(now, p, seqno, range, recipient, out),
            Body::Delegate { range, part, parts, total_pairs, transfer, pairs } => {
                if let Some(src) = sender_host {
                    self.on_delegate(src, transfer, range, part, parts, total_pairs, pairs.0);
                }
            }
            // Answers are for clients; a host takes them off the channel and ignores them.
            Body::Reply { .. } | Body::Redirect { .. } | Body::Sharded { .. } | Body::Error { .. } => {
                Stats::bump(&mut self.stats.ignored_messages);
            }
        }
    }

    fn refuse(&mut self, to: Endpoint, seqno: u64, reason: Refusal, out: &mut Outbox<'_>) {
        if !matches!(reason, Refusal::ChannelClosed { .. }) {
            Stats::bump(&mut self.stats.queue_full);
        }
        bump(&mut self.counters.refusals_sent);
        self.rel.send_refusal(to, seqno, reason, out, &mut self.stats);
    }

    /// Protocol bounds of a decoded body, before any state is read. For a Delegate, returns
    /// the number of pairs in the part; otherwise 0. `None`: invalid.
    fn validate(&self, msg: &Body<'_>) -> Option<u32> {
        let p = &self.config.params;
        match msg {
            Body::Delegate { range, part, parts, total_pairs, pairs, .. } => {
                if range.is_empty() || *parts == 0 || part >= parts {
                    return None;
                }
                if usize::from(*parts) > p.reliable.max_unacked_per_peer {
                    return None;
                }
                let mut count = 0u32;
                let mut prev: Option<u64> = None;
                for pair in msg::pairs(pairs.0) {
                    let (k, v) = pair.ok()?;
                    if !range.contains(k) || prev.is_some_and(|q| q >= k) || v.len() > p.max_value_bytes {
                        return None;
                    }
                    prev = Some(k);
                    count += 1;
                }
                (count <= *total_pairs).then_some(count)
            }
            _ => Some(0),
        }
    }
}
