//! Asks every host of a KV cluster where it stands (`fleet kv status`): a
//! `Frame::StatusRequest` each, answered by the engine itself (so firmware hosts answer
//! too), paged until each host has sent all the ranges it owns or is moving.

use std::net::SocketAddr;
use std::time::Duration;

use fleet_engine::kv::delegation::HostId;
use fleet_engine::kv::join::runs;
use fleet_engine::kv::msg::{KeyBound, KeyRange};
use fleet_engine::kv::reliable::Frame;
use fleet_engine::kv::status::KvStatus;
use fleet_engine::wire::{self, Protocol};

use crate::config::KvSetup;
use crate::error::CallError;
use crate::net::poll::{poll_members, poll_nonce, Questions};

/// One host's answer, or none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostStatus {
    /// The host's index in the config.
    pub id: usize,
    /// Its configured address.
    pub addr: SocketAddr,
    /// What it answered (from its last page); `None` if it did not answer in time.
    pub status: Option<KvStatus>,
    /// The ranges it owns (owner = `id`) and those it is moving, with their recipients.
    pub ranges: Vec<(KeyRange, HostId)>,
    /// Every page of its ranges arrived (false: it stopped answering half-way, or a page
    /// could not carry even one range).
    pub complete: bool,
}

/// Where one host's paging stands.
#[derive(Clone, Copy)]
enum Cursor {
    /// Ask for the ranges from this key.
    At(u64),
    /// Nothing more to ask.
    Done,
}

/// Sends a status request to every host of `setup` (again every 100 ms, in case one is
/// lost; the next page at once) and collects the answers until every host has sent all its
/// pages or `timeout` passed.
pub fn cluster_status(setup: &KvSetup, timeout: Duration) -> Result<Vec<HostStatus>, CallError> {
    let answers = setup
        .addrs
        .iter()
        .enumerate()
        .map(|(id, &addr)| HostStatus { id, addr, status: None, ranges: Vec::new(), complete: false })
        .collect();
    let mut poll = StatusPoll { nonce: poll_nonce(), answers, cursors: vec![Cursor::At(0); setup.addrs.len()] };
    poll_members(setup.auth.as_ref(), setup.config.identity(), &setup.addrs, timeout, &mut poll)?;
    Ok(poll.answers)
}

/// Status requests to every host, page after page.
struct StatusPoll {
    nonce: u64,
    answers: Vec<HostStatus>,
    /// Per host: the page to ask for next.
    cursors: Vec<Cursor>,
}

impl Questions for StatusPoll {
    fn question(&self, i: usize) -> Option<Vec<u8>> {
        let Cursor::At(from_key) = self.cursors[i] else { return None };
        let mut buf = [0u8; 64];
        let frame = Frame::StatusRequest { nonce: self.nonce, from_key };
        wire::encode(Protocol::Kv, &frame, &mut buf).ok().map(|n| buf[..n].to_vec())
    }

    fn answer(&mut self, i: usize, datagram: &[u8]) {
        let Ok(Frame::StatusReply { nonce, host, status, from_key, next, runs: page }) =
            wire::decode::<Frame<'_>>(Protocol::Kv, datagram)
        else {
            return;
        };
        // Only the host at the configured address speaks for its index, and only the page
        // asked for now counts (a late duplicate of an earlier page is dropped).
        let expected = matches!(self.cursors[i], Cursor::At(k) if k == from_key);
        if nonce != self.nonce || usize::from(host) != i || !expected {
            return;
        }
        let Ok(page) = runs(page.0).collect::<Result<Vec<_>, _>>() else { return };
        let a = &mut self.answers[i];
        a.status = Some(status);
        a.ranges.extend(page);
        self.cursors[i] = match next {
            // A page that moved nothing on would be asked for forever.
            Some(k) if k > from_key => Cursor::At(k),
            Some(_) => Cursor::Done,
            None => {
                a.complete = true;
                Cursor::Done
            }
        };
    }
}

/// A range on its way from one host to another (a Shard whose transfer is not fully
/// acknowledged yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Moving {
    /// The keys moving.
    pub range: KeyRange,
    /// The host sending them.
    pub from: usize,
    /// The host receiving them.
    pub to: usize,
}

/// Who owns which keys, as the hosts that answered report it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ownership {
    /// Every range some host says it owns, with that host, in key order.
    pub owned: Vec<(KeyRange, usize)>,
    /// The ranges in flight between hosts.
    pub moving: Vec<Moving>,
}

impl Ownership {
    /// The key ranges no answer covers (owned or moving), in key order: keys lost (their
    /// owner restarted without its state) or held by hosts that did not answer.
    pub fn unowned(&self) -> Vec<KeyRange> {
        // `Key(0)` and `Zero` are the same point for keys.
        let lo_of = |r: &KeyRange| if r.lo == KeyBound::Key(0) { KeyBound::Zero } else { r.lo };
        let mut covered: Vec<KeyRange> =
            self.owned.iter().map(|(r, _)| *r).chain(self.moving.iter().map(|m| m.range)).collect();
        covered.sort_by_key(lo_of);
        let mut gaps = Vec::new();
        let mut at = KeyBound::Zero;
        for r in covered {
            if lo_of(&r) > at {
                gaps.push(KeyRange { lo: at, hi: lo_of(&r) });
            }
            at = at.max(r.hi);
        }
        if at < KeyBound::Inf {
            gaps.push(KeyRange { lo: at, hi: KeyBound::Inf });
        }
        gaps
    }
}

/// Who owns what, from the answers.
pub fn ownership(answers: &[HostStatus]) -> Ownership {
    let mut map = Ownership::default();
    for a in answers {
        for &(range, owner) in &a.ranges {
            match usize::from(owner) {
                o if o == a.id => map.owned.push((range, o)),
                to => map.moving.push(Moving { range, from: a.id, to }),
            }
        }
    }
    map.owned.sort_by_key(|(r, _)| r.lo);
    map
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use fleet_engine::wire::Bytes;

    /// A host's status reply: page `from_key`, its runs, and where the next page starts.
    fn reply(nonce: u64, host: u8, from_key: u64, next: Option<u64>, runs: &[(KeyRange, u8)]) -> Vec<u8> {
        let mut page = [0u8; 256];
        let mut at = 0;
        for &(range, owner) in runs {
            at = fleet_engine::kv::join::push_run(&mut page, at, range, owner).unwrap();
        }
        let status = KvStatus::default();
        let frame = Frame::StatusReply { nonce, host, status, from_key, next, runs: Bytes(&page[..at]) };
        let mut buf = [0u8; 512];
        let n = wire::encode(Protocol::Kv, &frame, &mut buf).unwrap();
        buf[..n].to_vec()
    }

    fn asks_from(poll: &StatusPoll, i: usize) -> Option<u64> {
        let q = poll.question(i)?;
        match wire::decode::<Frame<'_>>(Protocol::Kv, &q).unwrap() {
            Frame::StatusRequest { from_key, .. } => Some(from_key),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pages_are_asked_for_in_turn_and_stale_or_foreign_ones_are_dropped() {
        let addr = "127.0.0.1:1".parse().unwrap();
        let answers = vec![HostStatus { id: 0, addr, status: None, ranges: Vec::new(), complete: false }];
        let mut poll = StatusPoll { nonce: 7, answers, cursors: vec![Cursor::At(0)] };
        assert_eq!(asks_from(&poll, 0), Some(0));
        poll.answer(0, &reply(7, 0, 0, Some(20), &[(KeyRange::keys(0, 10), 0)]));
        assert_eq!(asks_from(&poll, 0), Some(20), "the next page");
        // A late copy of the first page, another poll's answer, another host's: dropped.
        poll.answer(0, &reply(7, 0, 0, Some(20), &[(KeyRange::keys(0, 10), 0)]));
        poll.answer(0, &reply(8, 0, 20, None, &[(KeyRange::keys(20, 30), 0)]));
        poll.answer(0, &reply(7, 1, 20, None, &[(KeyRange::keys(20, 30), 0)]));
        assert_eq!(poll.answers[0].ranges.len(), 1);
        poll.answer(0, &reply(7, 0, 20, None, &[(KeyRange::from(20), 0)]));
        assert_eq!(asks_from(&poll, 0), None, "all pages in");
        assert!(poll.answers[0].complete);
        assert_eq!(poll.answers[0].ranges, [(KeyRange::keys(0, 10), 0), (KeyRange::from(20), 0)]);
        // A page that does not move on ends the paging, incomplete, instead of looping.
        let answers = vec![HostStatus { id: 0, addr, status: None, ranges: Vec::new(), complete: false }];
        let mut stuck = StatusPoll { nonce: 7, answers, cursors: vec![Cursor::At(0)] };
        stuck.answer(0, &reply(7, 0, 0, Some(0), &[]));
        assert_eq!(asks_from(&stuck, 0), None);
        assert!(!stuck.answers[0].complete);
    }

    #[test]
    fn keys_no_answer_covers_are_reported_unowned() {
        let moving = vec![Moving { range: KeyRange::keys(10, 15), from: 0, to: 2 }];
        let map = Ownership { owned: vec![(KeyRange::keys(0, 10), 1), (KeyRange::from(20), 0)], moving };
        assert_eq!(map.unowned(), [KeyRange::keys(15, 20)]);
        let all = Ownership { owned: vec![(KeyRange::from(0), 0)], moving: vec![] };
        assert_eq!(all.unowned(), []);
        assert_eq!(Ownership::default().unowned(), [KeyRange::ALL]);
        let low = Ownership { owned: vec![(KeyRange::keys(0, 5), 0)], moving: vec![] };
        assert_eq!(low.unowned(), [KeyRange { lo: KeyBound::Key(5), hi: KeyBound::Inf }]);
    }
}
