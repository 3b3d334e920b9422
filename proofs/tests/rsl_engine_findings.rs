//! Engine bugs found by the checkers, kept as failing `#[ignore]` tests until fixed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fleet_engine::rsl::apps::counter::Counter;
use fleet_engine::rsl::executor::Executor;
use fleet_engine::rsl::msg::SupplyPart;
use fleet_engine::rsl::reply_cache::CacheEntryWire;
use fleet_engine::rsl::snapshot::Frozen;
use fleet_engine::rsl::{Ballot, Replica, RslConfig, RslMsg};
use fleet_engine::wire::{self, Bytes};
use fleet_engine::{Endpoint, Instant, OutboxBuf};

type R = Replica<Counter, 3, 4, 512, 2048, 4, 16>;

fn ep(i: u8) -> Endpoint {
    Endpoint::v4([10, 0, 0, i + 1], 7000)
}

/// Found by `fuzz/replica_structured` (crash input reduced by hand).
///
/// A state-transfer snapshot is installed even when its reply-cache entries claim to come
/// from operations at or after the snapshot's own operation count. After the install the
/// replica's reply cache holds "replies of unexecuted operations": `Executor::invariant`
/// fails, and debug builds panic inside `handle` (the after-step `debug_assert`), i.e. a
/// well-formed datagram from a configured replica panics a debug build. Release builds keep
/// running with the broken invariant (eviction order then favours the bogus entries).
/// Honest replicas never send such a snapshot, so this is input validation, not a safety
/// bug under IronFleet's non-Byzantine assumption.
///
/// Fix (engine, `Transfer::receive`): refuse (`Progress::Corrupt`) a cache entry whose
/// `opn >= id.opn`.
#[test]
fn snapshot_with_cache_entries_from_future_operations_is_refused() {
    let eps = [ep(0), ep(1), ep(2)];
    let mut config = RslConfig::<3>::new(&eps).unwrap();
    config.params.max_log_length = 4;
    config.params.max_datagram_bytes = 512;
    let mut r = R::new(config, 0, Counter::default(), Instant::ZERO).unwrap();

    // A well-formed snapshot after 1 operation whose one cache entry says opn 5.
    let mut ex: Executor<Counter, 4, 16> = Executor::new(Counter { value: 1 });
    ex.ops_complete = 1;
    ex.max_bal_reflected = Ballot::INITIAL;
    ex.reply_cache.insert(Endpoint::v4([10, 0, 1, 1], 9000), 1, 5, b"r");
    let id = Frozen::of(&ex).id;
    let entry: CacheEntryWire<'_> = ex.reply_cache.wire(0).unwrap();
    let mut ebuf = [0u8; 64];
    let entries = postcard::to_slice(&entry, &mut ebuf).unwrap().to_vec();
    let app = 1u64.to_le_bytes();
    let parts = [
        SupplyPart::App { id, offset: 0, bytes: Bytes(&app) },
        SupplyPart::Cache { id, index: 0, entries: Bytes(&entries) },
    ];

    let mut store = OutboxBuf::<64, 16384>::new();
    let mut out = store.outbox();
    for part in parts {
        let msg = RslMsg::AppStateSupply { last: false, part };
        let mut buf = [0u8; 512];
        let n = wire::encode_rsl(r.cluster(), &msg, &mut buf).unwrap();
        let _ = r.handle(Instant::ZERO, ep(1), &buf[..n], &mut out);
        out.clear();
    }
    assert_eq!(r.check_invariants(), Ok(()), "the snapshot must have been refused");
}
