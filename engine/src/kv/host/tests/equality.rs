//! Protocol-state equality and hashing (model-checker state identity): every field that
//! decides future behaviour counts, the counters do not.

use super::*;

fn hash_of(h: &Host) -> u64 {
    use core::hash::{Hash, Hasher};
    let mut s = std::collections::hash_map::DefaultHasher::new();
    h.hash(&mut s);
    s.finish()
}

#[test]
fn equality_and_hash_see_every_protocol_field_and_not_the_counters() {
    let base = host(0);
    let mut counted = base.clone();
    Stats::bump(&mut counted.stats.datagrams_in);
    counted.counters.shards += 1;
    counted.logged_steps += 1;
    assert!(counted == base && hash_of(&counted) == hash_of(&base), "counters are not protocol state");

    let joining = Host::new_joining(base.config().clone(), 0, Store::new(), 7, T0).unwrap();
    let changed: std::vec::Vec<(&str, Host)> = std::vec![
        ("me", host(1)),
        ("config", {
            let mut config = KvConfig::new(&[H0, H1, H2]).unwrap();
            config.params = params();
            config.params.reliable.give_up_after += 1;
            Host::new(config, 0, Store::new()).unwrap()
        }),
        ("map", {
            let mut h = base.clone();
            h.map.set(&KeyRange::keys(0, 10), 1).unwrap();
            h
        }),
        ("store", {
            let mut h = base.clone();
            h.store.set(1, b"x").unwrap();
            h
        }),
        ("rel", {
            let mut h = base.clone();
            let i = h.rel.add_peer(C, PeerKind::Client).unwrap();
            h.rel.accept(T0, i, 100, 100);
            h
        }),
        ("incoming", {
            let mut h = base.clone();
            h.incoming[1] = Some(Incoming {
                transfer: 1,
                range: KeyRange::keys(0, 10),
                parts: 2,
                next_part: 1,
                total_pairs: 0,
                applied: 0,
            });
            h
        }),
        ("completed", {
            let mut h = base.clone();
            h.completed[1] = 3;
            h
        }),
        ("outgoing", {
            let mut h = base.clone();
            let o = Outgoing { transfer: 1, recipient: 1, range: KeyRange::keys(0, 10), last_seqno: 1, pairs: 0 };
            h.outgoing.push(o).unwrap();
            h
        }),
        ("next_transfer", {
            let mut h = base.clone();
            h.next_transfer += 1;
            h
        }),
        ("reserved_pairs", {
            let mut h = base.clone();
            h.reserved_pairs += 1;
            h
        }),
        ("join", {
            let mut h = base.clone();
            h.join = joining.join.clone();
            h
        }),
        ("host_meta", {
            let mut h = base.clone();
            h.host_meta[2].born_with = 9;
            h
        }),
    ];
    for (field, h) in &changed {
        assert!(*h != base, "{field}");
        assert_ne!(hash_of(h), hash_of(&base), "{field}");
    }
}
