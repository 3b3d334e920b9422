//! A host that starts without state ([`crate::kv::join`] has the rule): asking the other
//! hosts where it stands, answering a host that asks, and concluding.

use super::{bump, KvHost};
use crate::config::ConfigError;
use crate::endpoint::Endpoint;
use crate::kv::delegation::{DelegationMap, HostId, LOST};
use crate::kv::join::{self, Join, JoinOutcome, JoinProgress, JOIN_REPLY_OVERHEAD_BYTES};
use crate::kv::msg::{KeyBound, KeyRange};
use crate::kv::reliable::{Frame, MAX_CHANNEL_BASE};
use crate::kv::storage::Storage;
use crate::kv::KvConfig;
use crate::outbox::Outbox;
use crate::stats::Stats;
use crate::time::Instant;
use crate::wire::Bytes;

/// The fields of a [`Frame::JoinReply`] besides its runs.
#[derive(Clone, Copy, Debug)]
pub(super) struct Answer {
    pub nonce: u64,
    pub base: u64,
    pub joining: bool,
    pub seen_other: bool,
    pub from_key: u64,
    pub next: Option<u64>,
}

impl<S: Storage, const H: usize, const M: usize, const P: usize, const U: usize, const D: usize>
    KvHost<S, H, M, P, U, D>
{
    /// Host `me` of `config`, started without state at `now` as incarnation `nonce`
    /// (larger than any nonce an earlier incarnation of it used, in `2..=2^63-1`; io-std
    /// takes the wall clock in microseconds). It owns nothing and serves nothing until the
    /// other hosts answered ([`crate::kv::join`]); `store` must be empty.
    pub fn new_joining(
        config: KvConfig<H>,
        me: usize,
        store: S,
        nonce: u64,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        if !(2..=MAX_CHANNEL_BASE).contains(&nonce) {
            return Err(ConfigError::Invalid("incarnation nonce outside 2..=2^63-1"));
        }
        if !store.is_empty() {
            return Err(ConfigError::Invalid("a host starting without state needs an empty store"));
        }
        let n = config.n();
        let mut host = Self::build(config, me, store, nonce)?;
        host.map = DelegationMap::new(LOST);
        host.join = Some(Join::new(nonce, n, me, now));
        // A cluster of one has nobody to ask: a new cluster.
        host.conclude_join(now);
        Ok(host)
    }

    /// The join in progress, if the host started without state and does not know yet where
    /// it stands.
    pub fn joining(&self) -> Option<&Join<H>> {
        self.join.as_ref()
    }

    /// Asks every host that has not answered everything, when the retry time has come.
    pub(super) fn join_tick(&mut self, now: Instant, out: &mut Outbox<'_>) {
        let Some(join) = self.join.as_mut() else { return };
        if now < join.retry_at {
            return;
        }
        join.retry_at = now.plus_ms(self.config.params.reliable.retransmit_ms);
        let nonce = join.nonce;
        for (i, progress) in join.hosts.iter().enumerate() {
            let (Some(from_key), Some(ep)) = (progress.cursor, self.config.hosts.get(i)) else { continue };
            self.rel.send_unreliable(*ep, &Frame::Join { nonce, from_key }, out, &mut self.stats);
        }
    }

    /// Another host asks where it stands (see [`crate::kv::join`]): a new incarnation of it
    /// resets what this host had with the old one; the answer carries this host's ranges.
    pub(super) fn on_join(&mut self, now: Instant, from: Endpoint, nonce: u64, from_key: u64, out: &mut Outbox<'_>) {
        let _ = now;
        let x = match self.config.index_of(from) {
            Some(x) if x != usize::from(self.me) => x,
            Some(_) => return Stats::bump(&mut self.stats.invalid_messages),
            None => return Stats::bump(&mut self.stats.unknown_sender),
        };
        let Some(base) = self.rel.fixed_base(x) else { return Stats::bump(&mut self.stats.invalid_messages) };
        if nonce < base || !(2..=MAX_CHANNEL_BASE).contains(&nonce) {
            // An earlier incarnation's question, still in flight.
            return Stats::bump(&mut self.stats.ignored_messages);
        }
        if nonce > base {
            if let Some(meta) = self.host_meta.get_mut(x) {
                meta.seen_other = base > 1;
            }
            let _ = self.rel.restart_fixed(x, nonce);
            self.forget_transfers_with(x);
            self.logged = true;
        }
        self.answer_join(x, from, nonce, from_key, out);
    }

    /// Drops what this host had in flight with host `x`'s dead incarnation: the transfer it
    /// was receiving (its pairs deleted, the reservation released) and the transfers it was
    /// sending (their ranges had no owner but the transfer: lost).
    fn forget_transfers_with(&mut self, x: usize) {
        if let Some(inc) = self.incoming.get_mut(x).and_then(Option::take) {
            self.reserved_pairs = self.reserved_pairs.saturating_sub((inc.total_pairs - inc.applied) as usize);
            let mut cursor = inc.range.first_key();
            while let Some(k) = cursor.and_then(|c| self.store.next_at_or_after(c)).map(|(k, _)| k) {
                if !inc.range.contains(k) {
                    break;
                }
                self.store.delete(k);
                self.changed = true;
                cursor = k.checked_add(1);
            }
        }
        if let Some(c) = self.completed.get_mut(x) {
            *c = 0;
        }
        self.outgoing.retain(|o| usize::from(o.recipient) != x);
    }

    /// Sends host `x` the page of this host's ranges from `from_key`.
    fn answer_join(&mut self, x: usize, to: Endpoint, nonce: u64, from_key: u64, out: &mut Outbox<'_>) {
        let base = self.rel.peer(x).map_or(0, |p| p.send_base());
        let meta = self.host_meta.get(x).copied().unwrap_or_default();
        // A host born counting this very incarnation as joining tells it so: they are one
        // new cluster (it may be born too), and it holds nothing of the asker's.
        let joining = self.join.is_some() || meta.born_with == nonce;
        let seen_other = meta.seen_other;
        let mut buf = [0u8; D];
        let room = self.config.params.max_datagram_bytes.saturating_sub(JOIN_REPLY_OVERHEAD_BYTES).min(D);
        let (len, next) = if joining { (0, None) } else { self.page_of_runs(from_key, &mut buf[..room]) };
        let runs = Bytes(&buf[..len]);
        let frame = Frame::JoinReply { nonce, base, joining, seen_other, from_key, next, runs };
        self.rel.send_unreliable(to, &frame, out, &mut self.stats);
    }

    /// Writes into `buf` this host's outgoing transfers (on the first page) and the runs it
    /// owns that end above `from_key`, as many as fit; returns the bytes used and the key
    /// to continue from.
    pub(super) fn page_of_runs(&self, from_key: u64, buf: &mut [u8]) -> (usize, Option<u64>) {
        let mut at = 0;
        if from_key == 0 {
            for o in &self.outgoing {
                match join::push_run(buf, at, o.range, o.recipient) {
                    Ok(end) => at = end,
                    // Eight transfers always fit a datagram; a hint lost here only costs a
                    // redirect to this host.
                    Err(_) => break,
                }
            }
        }
        let entries = self.map.entries();
        for (i, e) in entries.iter().enumerate() {
            let hi = entries.get(i + 1).map_or(KeyBound::Inf, |n| KeyBound::Key(n.lo));
            if e.owner != self.me || hi <= KeyBound::Key(from_key) {
                continue;
            }
            let lo = KeyBound::Key(e.lo.max(from_key));
            match join::push_run(buf, at, KeyRange { lo, hi }, self.me) {
                Ok(end) => at = end,
                Err(_) => return (at, Some(e.lo.max(from_key))),
            }
        }
        (at, None)
    }

    /// An answer to this host's question while it joins.
    pub(super) fn on_join_reply(&mut self, now: Instant, from: Endpoint, a: Answer, runs: &[u8]) {
        let me = self.me;
        let n = self.config.n();
        let Some(y) = self.config.index_of(from) else { return Stats::bump(&mut self.stats.unknown_sender) };
        let Some(join) = self.join.as_mut() else { return Stats::bump(&mut self.stats.ignored_messages) };
        let Some(progress) = join.hosts.get(y).copied() else { return Stats::bump(&mut self.stats.invalid_messages) };
        if a.nonce != join.nonce || progress.cursor != Some(a.from_key) {
            // An answer to an earlier question (a retransmission, or another incarnation's).
            return Stats::bump(&mut self.stats.ignored_messages);
        }
        let valid = |r: &Result<(KeyRange, HostId), ()>| matches!(r, Ok((range, owner)) if !range.is_empty() && usize::from(*owner) < n);
        if a.base == 0
            || a.base > MAX_CHANNEL_BASE
            || !join::runs(runs).all(|r| valid(&r))
            || (a.joining && !runs.is_empty())
        {
            return Stats::bump(&mut self.stats.invalid_messages);
        }
        for (range, owner) in join::runs(runs).flatten() {
            // What this host itself held (a transfer to its dead incarnation) is lost.
            let owner = if owner == me { LOST } else { owner };
            if self.map.set(&range, owner).is_err() {
                // A hint that does not fit: the keys stay lost here (never served wrongly).
                bump(&mut self.counters.errors);
            }
        }
        self.rel.set_fixed_base(y, a.base);
        if let Some(p) = join.hosts.get_mut(y) {
            *p = JoinProgress { cursor: a.next, joining: a.joining, seen_other: p.seen_other || a.seen_other };
        }
        self.logged = true;
        self.conclude_join(now);
    }

    /// Ends the join once the answers allow it.
    fn conclude_join(&mut self, now: Instant) {
        let Some(join) = self.join.as_mut() else { return };
        let nonce = join.nonce;
        match join.outcome() {
            JoinOutcome::Waiting => {}
            JoinOutcome::AskAgain => {
                let me = usize::from(self.me);
                *join = Join::new(nonce, self.config.n(), me, now);
                self.map = DelegationMap::new(LOST);
            }
            JoinOutcome::Born => {
                for (i, meta) in self.host_meta.iter_mut().enumerate() {
                    meta.born_with = self.rel.fixed_base(i).unwrap_or(0);
                }
                self.map = DelegationMap::new(0);
                self.rel.close_all_below(nonce, 0);
                self.join = None;
                self.changed = true;
            }
            JoinOutcome::Amnesiac => {
                self.rel.close_all_below(nonce, nonce);
                self.join = None;
                self.changed = true;
            }
        }
    }
}
