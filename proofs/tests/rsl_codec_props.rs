//! Property tests (proptest) of the RSL wire codec and of engine data structures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fleet_engine::rsl::acceptor::{Accepted, Acceptor};
use fleet_engine::rsl::batch::{self, BatchEntry};
use fleet_engine::rsl::learner::Learner;
use fleet_engine::rsl::msg::{Resume, SupplyPart, Vote};
use fleet_engine::rsl::reply_cache::ReplyCache;
use fleet_engine::rsl::snapshot::{SnapshotId, SnapshotPos};
use fleet_engine::rsl::{Ballot, RslConfig, RslMsg};
use fleet_engine::wire::{self, Bytes, Protocol};
use fleet_engine::Endpoint;
use proptest::prelude::*;

fn ballot() -> impl Strategy<Value = Ballot> {
    (any::<u64>(), any::<u8>()).prop_map(|(seqno, proposer)| Ballot { seqno, proposer })
}

fn snapshot_id() -> impl Strategy<Value = SnapshotId> {
    (any::<u64>(), ballot(), any::<u64>(), any::<u64>(), any::<u32>()).prop_map(|(opn, bal, d, l, c)| SnapshotId {
        opn,
        bal,
        executed_digest: d,
        app_len: l,
        cache_entries: c,
    })
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

/// An owned description of any `RslMsg`, so strategies can generate borrowed messages.
#[derive(Clone, Debug)]
enum Owned {
    Request(u64, Vec<u8>),
    OneA(Ballot),
    OneB(Ballot, u64, u64, u8, u8, Option<(u64, Ballot, Vec<u8>)>),
    TwoA(Ballot, u64, Vec<u8>),
    TwoB(Ballot, u64, u64),
    Heartbeat(Ballot, bool, u64),
    Reply(u64, Vec<u8>),
    /// Ballot, have, and an optional resume (snapshot id, app offset, cache index).
    AppStateRequest(Ballot, u64, Option<(SnapshotId, u64, u32)>),
    /// Last, the part's kind (0 app, 1 cache, 2 executed), its id, offset or index, ballot, bytes.
    AppStateSupply(bool, u8, SnapshotId, u64, u32, Ballot, Vec<u8>),
    StartingPhase2(Ballot, u64),
    /// Client address octets and port, seqno, request bytes.
    ForwardedRequest([u8; 4], u16, u64, Vec<u8>),
    RecoverRequest(u64, bool),
    /// Nonce, incarnation, rejoining, fresh, ballot, next operation.
    RecoverReply(u64, u64, bool, bool, Ballot, u64),
}

fn owned() -> impl Strategy<Value = Owned> {
    prop_oneof![
        (any::<u64>(), bytes(64)).prop_map(|(s, r)| Owned::Request(s, r)),
        ballot().prop_map(Owned::OneA),
        (
            ballot(),
            any::<u64>(),
            any::<u64>(),
            any::<u8>(),
            any::<u8>(),
            prop::option::of((any::<u64>(), ballot(), bytes(64)))
        )
            .prop_map(|(b, l, r, c, n, v)| Owned::OneB(b, l, r, c, n, v)),
        (ballot(), any::<u64>(), bytes(128)).prop_map(|(b, o, v)| Owned::TwoA(b, o, v)),
        (ballot(), any::<u64>(), any::<u64>()).prop_map(|(b, o, c)| Owned::TwoB(b, o, c)),
        (ballot(), any::<bool>(), any::<u64>()).prop_map(|(b, s, c)| Owned::Heartbeat(b, s, c)),
        (any::<u64>(), bytes(64)).prop_map(|(s, r)| Owned::Reply(s, r)),
        (ballot(), any::<u64>(), prop::option::of((snapshot_id(), any::<u64>(), any::<u32>())))
            .prop_map(|(b, h, r)| Owned::AppStateRequest(b, h, r)),
        (any::<bool>(), 0u8..3, snapshot_id(), any::<u64>(), any::<u32>(), ballot(), bytes(64))
            .prop_map(|(l, k, id, off, idx, b, p)| Owned::AppStateSupply(l, k, id, off, idx, b, p)),
        (ballot(), any::<u64>()).prop_map(|(b, l)| Owned::StartingPhase2(b, l)),
        (any::<[u8; 4]>(), any::<u16>(), any::<u64>(), bytes(64))
            .prop_map(|(a, p, s, r)| Owned::ForwardedRequest(a, p, s, r)),
        (any::<u64>(), any::<bool>()).prop_map(|(n, c)| Owned::RecoverRequest(n, c)),
        (any::<u64>(), any::<u64>(), any::<bool>(), any::<bool>(), ballot(), any::<u64>())
            .prop_map(|(n, i, r, f, b, o)| Owned::RecoverReply(n, i, r, f, b, o)),
    ]
}

fn borrow(o: &Owned) -> RslMsg<'_> {
    match o {
        Owned::Request(seqno, r) => RslMsg::Request { seqno: *seqno, request: Bytes(r) },
        Owned::OneA(bal) => RslMsg::OneA { bal: *bal },
        Owned::OneB(bal, l, r, c, n, v) => RslMsg::OneB {
            bal: *bal,
            log_truncation_point: *l,
            reply_id: *r,
            chunk: *c,
            chunks: *n,
            vote: v.as_ref().map(|(opn, b, batch)| Vote { opn: *opn, bal: *b, batch: Bytes(batch) }),
        },
        Owned::TwoA(bal, opn, b) => RslMsg::TwoA { bal: *bal, opn: *opn, batch: Bytes(b) },
        Owned::TwoB(bal, opn, c) => RslMsg::TwoB { bal: *bal, opn: *opn, opn_ckpt: *c },
        Owned::Heartbeat(bal, s, c) => RslMsg::Heartbeat { bal: *bal, suspicious: *s, opn_ckpt: *c },
        Owned::Reply(seqno, r) => RslMsg::Reply { seqno: *seqno, reply: Bytes(r) },
        Owned::AppStateRequest(bal, have, resume) => RslMsg::AppStateRequest {
            bal: *bal,
            have: *have,
            resume: resume
                .map(|(id, app_offset, cache_index)| Resume { id, pos: SnapshotPos { app_offset, cache_index } }),
        },
        Owned::AppStateSupply(last, kind, id, off, idx, bal, p) => RslMsg::AppStateSupply {
            last: *last,
            part: match kind {
                0 => SupplyPart::App { id: *id, offset: *off, bytes: Bytes(p) },
                1 => SupplyPart::Cache { id: *id, index: *idx, entries: Bytes(p) },
                _ => SupplyPart::Executed { opn: *off, bal: *bal, batch: Bytes(p) },
            },
        },
        Owned::StartingPhase2(bal, l) => RslMsg::StartingPhase2 { bal: *bal, log_truncation_point: *l },
        Owned::ForwardedRequest(a, p, s, r) => RslMsg::ForwardedRequest {
            client: fleet_engine::Endpoint::v4(*a, *p),
            seqno: *s,
            request: Bytes(r),
            kind: batch::EntryKind::Single,
        },
        Owned::RecoverRequest(nonce, catching_up) => {
            RslMsg::RecoverRequest { nonce: *nonce, catching_up: *catching_up }
        }
        Owned::RecoverReply(nonce, incarnation, rejoining, fresh, ballot, next_opn) => RslMsg::RecoverReply {
            nonce: *nonce,
            incarnation: *incarnation,
            rejoining: *rejoining,
            fresh: *fresh,
            ballot: *ballot,
            next_opn: *next_opn,
        },
    }
}

fn ep(i: u8) -> Endpoint {
    Endpoint::v4([10, 0, 1, i], 9000)
}

proptest! {
    /// Every RslMsg variant: decode(encode(m)) == m, any truncation is refused (never
    /// panics), and trailing bytes are refused.
    #[test]
    fn every_rsl_msg_round_trips(o in owned()) {
        let msg = borrow(&o);
        let mut buf = vec![0u8; 1024];
        let n = wire::encode(Protocol::Rsl, &msg, &mut buf).unwrap();
        let got: RslMsg<'_> = wire::decode(Protocol::Rsl, &buf[..n]).unwrap();
        prop_assert_eq!(got, msg);
        for cut in 0..n {
            prop_assert!(wire::decode::<RslMsg<'_>>(Protocol::Rsl, &buf[..cut]).is_err());
        }
        buf[n] = 0;
        prop_assert!(wire::decode::<RslMsg<'_>>(Protocol::Rsl, &buf[..n + 1]).is_err());
        prop_assert!(wire::decode::<RslMsg<'_>>(Protocol::Kv, &buf[..n]).is_err());
    }

    /// Encoding into a buffer too small fails cleanly, never writes past it.
    #[test]
    fn encoding_into_a_small_buffer_fails_cleanly(o in owned(), room in 0usize..64) {
        let msg = borrow(&o);
        let mut big = vec![0u8; 1024];
        let n = wire::encode(Protocol::Rsl, &msg, &mut big).unwrap();
        let mut small = vec![0u8; room];
        match wire::encode(Protocol::Rsl, &msg, &mut small) {
            Ok(m) => prop_assert_eq!(&small[..m], &big[..n]),
            Err(_) => prop_assert!(room < n),
        }
    }

    /// Batches: what is appended validates with the right count and iterates back.
    #[test]
    fn batches_round_trip(entries in prop::collection::vec((any::<u8>(), any::<u64>(), bytes(16)), 0..8)) {
        let mut b = Vec::new();
        for (c, s, r) in &entries {
            let mut buf = [0u8; 64];
            let e = BatchEntry { client: ep(*c), seqno: *s, request: Bytes(r), kind: batch::EntryKind::Single };
            b.extend_from_slice(postcard::to_slice(&e, &mut buf).unwrap());
        }
        prop_assert_eq!(batch::validate(&b, usize::MAX), Ok(entries.len()));
        let back: Vec<(u8, u64, Vec<u8>)> = batch::entries(&b)
            .map(|e| (match e.client.ip { fleet_engine::IpAddr::V4(o) => o[3], _ => 0 }, e.seqno, e.request.0.to_vec()))
            .collect();
        prop_assert_eq!(back, entries);
    }

    /// Acceptor: under any sequence of promises, accepts and truncations, its invariant
    /// holds, max_bal and the truncation point never go down, and it never votes below
    /// a promise.
    #[test]
    fn acceptor_invariants(ops in prop::collection::vec((0u8..3, 0u64..4, 0u8..3, 0u64..12), 0..64)) {
        let mut a: Acceptor<3, 4, 64> = Acceptor::new(3);
        for (kind, seqno, proposer, opn) in ops {
            let bal = Ballot { seqno, proposer };
            let (max_before, ltp_before) = (a.max_bal, a.log_truncation_point);
            match kind {
                0 => { a.promise(bal); }
                1 => {
                    let r = a.accept(bal, opn, b"v", 4);
                    if bal < max_before || opn < ltp_before {
                        prop_assert_eq!(r, Accepted::Stale);
                    } else {
                        prop_assert_eq!(r, Accepted::Voted);
                        prop_assert_eq!(a.vote_at(opn).map(|v| v.bal), Some(bal));
                    }
                }
                _ => a.truncate(opn),
            }
            prop_assert!(a.invariant(4).is_ok(), "{:?}", a.invariant(4));
            prop_assert!(a.max_bal >= max_before);
            prop_assert!(a.log_truncation_point >= ltp_before);
        }
    }

    /// Learner: any sequence of 2b and of votes copied before the acceptor drops them keeps
    /// its invariant, and a decision needs a quorum of distinct senders in one ballot.
    #[test]
    fn learner_invariants(ops in prop::collection::vec((0usize..3, 0u64..3, 0u64..6, any::<bool>(), 0u8..3), 0..64), ops_complete in 0u64..3) {
        let mut l: Learner<4, 16> = Learner::default();
        for (sender, seqno, opn, which, kind) in ops {
            let bal = Ballot { seqno, proposer: 0 };
            match kind {
                0 => l.keep_vote(opn, bal, if which { b"a" } else { &[7u8; 17] }),
                _ => {
                    l.process_2b(sender, bal, opn, ops_complete);
                }
            }
            prop_assert!(l.invariant(ops_complete, 3).is_ok(), "{:?}", l.invariant(ops_complete, 3));
            for s in l.slots() {
                if l.decided(s.opn, 2).is_some() {
                    prop_assert!(s.senders.count_ones() >= 2);
                }
            }
        }
    }

    /// Reply cache: sorted, one entry per client, at most C, latest seqno kept.
    #[test]
    fn reply_cache_invariants(ops in prop::collection::vec((0u8..6, 0u64..10), 0..64)) {
        let mut c: ReplyCache<4, 8> = ReplyCache::default();
        for (opn, (client, seqno)) in ops.into_iter().enumerate() {
            c.insert(ep(client), seqno, opn as u64, b"r");
            prop_assert!(c.invariant(opn as u64 + 1).is_ok());
            prop_assert!(c.len() <= 4);
            prop_assert_eq!(c.get(ep(client)).map(|e| e.seqno), Some(seqno));
        }
    }

    /// Quorum intersection (IronRSL `lemma_QuorumIndexOverlap`): for n = 1..=9 any two
    /// sets of `config.quorum()` replicas share one.
    #[test]
    fn any_two_quorums_intersect(n in 1usize..=9, a in any::<u16>(), b in any::<u16>()) {
        let eps: Vec<Endpoint> = (0..n as u8).map(|i| Endpoint::v4([10, 0, 0, i + 1], 7000)).collect();
        let q = RslConfig::<9>::new(&eps).unwrap().quorum();
        let mask = (1u16 << n) - 1;
        let (a, b) = (a & mask, b & mask);
        if a.count_ones() as usize >= q && b.count_ones() as usize >= q {
            prop_assert!(a & b != 0);
        }
    }
}
