//! Durable replicas across a membership change: the epoch record, replay into the new
//! epoch (entered by executing the stop-sign or told by a peer), retirement, the compacted
//! image, and a power cut after the change.

use super::*;

fn epoch_of(node: &Node) -> (u64, Option<u64>) {
    let r = node.replica.as_ref().unwrap();
    (r.config().epoch, r.retired().map(|x| x.start))
}

/// The change ending epoch 0 with `replicas`, as the client's request `seqno`.
fn change(seqno: u64, replicas: &[Endpoint]) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let change = crate::rsl::membership::encode_change(0, replicas, &mut buf).unwrap();
    encode(&RslMsg::Change { seqno, change: Bytes(change) })
}

/// The epoch records in `log`: (epoch, start, replicas).
fn epoch_records(log: &[Vec<u8>]) -> Vec<(u64, u64, usize)> {
    log.iter()
        .filter_map(|r| match decode(r) {
            DurableRecord::Epoch { epoch, start, replicas } => {
                Some((epoch, start, crate::rsl::membership::replicas_of::<3>(replicas.0).unwrap().len()))
            }
            _ => None,
        })
        .collect()
}

fn value(node: &Node) -> u64 {
    node.replica.as_ref().unwrap().app().value
}

/// Replicas 0 and 1 (the kept ones) have counted at least `n` increments.
fn kept_at(n: u64) -> impl Fn(&[Node; 3]) -> bool {
    move |nodes: &[Node; 3]| nodes[..2].iter().all(|x| x.replica.as_ref().is_some_and(|r| r.app().value >= n))
}

/// Shrinks the cluster to replicas 0 and 1 after 6 increments (the change is request 7).
fn shrunk() -> Cluster {
    let mut c = Cluster::new();
    c.special = Some((7, change(7, &eps()[..2])));
    let moved =
        |nodes: &[Node; 3]| epoch_of(&nodes[0]).0 == 1 && epoch_of(&nodes[1]).0 == 1 && epoch_of(&nodes[2]).1.is_some();
    assert!(c.run(7, &moved), "the change executes everywhere: {:?}", c.nodes.iter().map(epoch_of).collect::<Vec<_>>());
    c.cluster = c.nodes[0].replica.as_ref().unwrap().config().identity();
    c
}

/// A stop-sign executed by durable replicas: the kept ones write the epoch record and go on
/// in the new epoch, the removed one writes that it retired; after a power cut each comes
/// back where it was (the kept ones in epoch 1, serving; the removed one retired), with
/// every increment.
#[test]
fn a_power_cut_after_a_change_brings_every_replica_back_in_its_epoch() {
    let mut c = shrunk();
    let start = c.nodes[0].replica.as_ref().unwrap().epoch_start();
    assert_eq!(start, 7, "six increments, then the stop-sign");
    for (i, node) in c.nodes.iter().enumerate() {
        assert_eq!(epoch_records(&node.log), [(1, start, 2)], "replica {i} wrote one epoch record");
    }
    assert!(c.run(20, &kept_at(19)), "epoch 1 serves: {:?}", c.values());
    for node in c.nodes.iter_mut() {
        node.replica = None;
    }
    c.queue.clear();
    for (i, node) in c.nodes.iter_mut().enumerate() {
        let r = node.recover(i).unwrap();
        node.replica = Some(r);
    }
    assert_eq!((epoch_of(&c.nodes[0]), epoch_of(&c.nodes[1])), ((1, None), (1, None)));
    assert_eq!(c.nodes[0].replica.as_ref().unwrap().epoch_start(), start);
    assert_eq!(epoch_of(&c.nodes[2]).1, Some(start), "the removed replica recovered retired");
    assert_eq!((value(&c.nodes[0]), value(&c.nodes[1]), value(&c.nodes[2])), (19, 19, 6));
    assert!(c.run(30, &kept_at(29)), "epoch 1 serves after the power cut: {:?}", c.values());
    assert_eq!(value(&c.nodes[2]), 6, "a retired replica executes nothing more");
}

/// The compacted image after a change starts with the epoch record and the earlier epochs'
/// identities, and replays to the same epoch, earlier epochs and acceptor; a retired
/// replica's image is the epoch record alone.
#[test]
fn the_compacted_image_after_a_change_replays_into_the_epoch() {
    let mut c = shrunk();
    assert!(c.run(12, &kept_at(11)));
    for (i, node) in c.nodes.iter().enumerate() {
        let live = node.replica.as_ref().unwrap();
        let image: Vec<Vec<u8>> = (0..live.durable_image_len())
            .map(|k| {
                let mut buf = [0u8; RECORD_BYTES];
                live.durable_image_record(k, &mut buf).unwrap().to_vec()
            })
            .collect();
        assert!(matches!(decode(&image[0]), DurableRecord::Epoch { epoch: 1, start: 7, .. }), "replica {i}");
        let snapshot = node.snapshot.iter().map(|r| r.as_slice());
        let from_image = Rep::recover(
            config(),
            i,
            Counter::default(),
            Instant::ZERO,
            1,
            snapshot,
            image.iter().map(|r| r.as_slice()),
        )
        .unwrap();
        assert_eq!(epoch_of(node), (from_image.config().epoch, from_image.retired().map(|r| r.start)));
        match i {
            2 => assert_eq!(image.len(), 1, "retired: the epoch record alone"),
            _ => {
                assert_eq!(durable_view(&from_image), durable_view(live), "replica {i}");
                let ids = config().identity().to_le_bytes();
                assert_eq!(decode(&image[1]), DurableRecord::EarlierEpochs { ids: Bytes(&ids) }, "replica {i}");
                assert_eq!(from_image.earlier_epochs(), live.earlier_epochs(), "replica {i}");
                // Replayed over a configuration of epoch 1 (a new machine's), the same.
                let mut joined = config();
                joined = RslConfig { epoch: 1, replicas: live.config().replicas.clone(), ..joined };
                let snapshot = node.snapshot.iter().map(|r| r.as_slice());
                let image = image.iter().map(|r| r.as_slice());
                let as_joined = Rep::recover(joined, i, Counter::default(), Instant::ZERO, 1, snapshot, image).unwrap();
                assert_eq!(as_joined.earlier_epochs().iter().collect::<Vec<_>>(), [config().identity()]);
            }
        }
    }
}

/// A replica down during the change restarts from its log in epoch 0, is told by a peer
/// that the cluster moved on, writes the epoch record and fetches the new epoch's state;
/// after a power cut it comes back in the new epoch.
#[test]
fn a_replica_told_of_the_change_writes_its_epoch_before_it_takes_part() {
    let mut c = Cluster::new();
    assert!(c.run(6, &all_at(6)));
    c.nodes[2].replica = None;
    // Replica 1 leaves; replica 2 (down) stays.
    c.special = Some((7, change(7, &[eps()[0], eps()[2]])));
    let moved = |nodes: &[Node; 3]| epoch_of(&nodes[0]).0 == 1 && epoch_of(&nodes[1]).1.is_some();
    assert!(c.run(7, &moved), "the change executes on the two that are up");
    c.cluster = c.nodes[0].replica.as_ref().unwrap().config().identity();
    let restarted = c.nodes[2].recover(2).unwrap();
    assert_eq!((restarted.config().epoch, restarted.app().value), (0, 6), "its log ends in epoch 0");
    c.nodes[2].replica = Some(restarted);
    let both = |nodes: &[Node; 3]| {
        [&nodes[0], &nodes[2]].iter().all(|n| n.replica.as_ref().is_some_and(|r| r.app().value >= 19))
            && epoch_of(&nodes[2]).0 == 1
    };
    assert!(c.run(20, &both), "replica 2 follows and epoch 1 serves: {:?}", c.values());
    assert_eq!(epoch_records(&c.nodes[2].log), [(1, 7, 2)]);
    for node in c.nodes.iter_mut() {
        node.replica = None;
    }
    c.queue.clear();
    for (i, node) in c.nodes.iter_mut().enumerate() {
        node.replica = Some(node.recover(i).unwrap());
    }
    assert_eq!(epoch_of(&c.nodes[2]), (1, None), "replica 2 recovered into epoch 1");
    assert!(value(&c.nodes[2]) >= 6);
    let again = |nodes: &[Node; 3]| {
        [&nodes[0], &nodes[2]].iter().all(|n| n.replica.as_ref().is_some_and(|r| r.app().value >= 29))
    };
    assert!(c.run(30, &again), "epoch 1 serves after the power cut: {:?}", c.values());
}

/// Epoch records that go back, disagree, or name no valid cluster are refused by name.
#[test]
fn bad_epoch_records_are_refused() {
    let list = |replicas: &[Endpoint]| {
        let mut buf = [0u8; 128];
        let n = crate::rsl::membership::encode_replicas(replicas, &mut buf).unwrap();
        buf[..n].to_vec()
    };
    let two = list(&eps()[..2]);
    let epoch =
        |epoch, start, replicas: &[u8]| any_record(&DurableRecord::Epoch { epoch, start, replicas: Bytes(replicas) });
    assert_eq!(replay(&[epoch(1, 7, &two)]), Ok(()), "a compacted log that starts in epoch 1");
    assert_eq!(replay(&[epoch(3, 7, &two)]), Ok(()), "or in any later epoch");
    assert_eq!(replay(&[epoch(1, 7, &two), epoch(1, 7, &two)]), Ok(()), "a repeat says the same");
    let three = list(&eps());
    assert_eq!(
        replay(&[epoch(1, 7, &two), epoch(1, 7, &three)]),
        refused(1, "two epoch records of one epoch disagree")
    );
    assert_eq!(
        replay(&[epoch(2, 7, &two), epoch(1, 9, &two)]),
        refused(1, "an epoch record goes back, or follows the replica's retirement")
    );
    assert_eq!(
        replay(&[epoch(1, 9, &two), epoch(2, 8, &two)]),
        refused(1, "an epoch record goes back, or follows the replica's retirement")
    );
    assert_eq!(
        replay(&[epoch(0, 0, &two)]),
        refused(0, "an epoch record goes back, or follows the replica's retirement")
    );
    assert_eq!(replay(&[epoch(1, 7, &[1, 2, 3])]), refused(0, "an epoch's replicas are malformed"));
    let earlier = |ids: &[u32]| {
        let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_le_bytes()).collect();
        any_record(&DurableRecord::EarlierEpochs { ids: Bytes(&bytes) })
    };
    let first = config().identity();
    assert_eq!(replay(&[epoch(1, 7, &two), earlier(&[first])]), Ok(()), "an image's earlier epochs");
    assert_eq!(replay(&[epoch(1, 7, &two), earlier(&[first, first])]), refused(1, "malformed earlier epochs"));
    assert_eq!(replay(&[epoch(1, 7, &two), earlier(&[0; 9])]), refused(1, "malformed earlier epochs"));
    let truncated = any_record(&DurableRecord::EarlierEpochs { ids: Bytes(&[1, 2, 3]) });
    assert_eq!(replay(&[epoch(1, 7, &two), truncated]), refused(1, "malformed earlier epochs"));
    let own = RslConfig { epoch: 1, replicas: heapless::Vec::from_slice(&eps()[..2]).unwrap(), ..config() };
    assert_eq!(
        replay(&[epoch(1, 7, &two), earlier(&[own.identity()])]),
        refused(1, "an earlier epoch is the replica's own")
    );
    assert_eq!(replay(&[epoch(1, 7, &[])]), refused(0, "an epoch's replicas are malformed"));
    // Replica 1 (`replay`'s) retires into an epoch without it; nothing may follow but repeats.
    let others = list(&[eps()[0], eps()[2]]);
    assert_eq!(replay(&[epoch(1, 7, &others), epoch(1, 7, &others)]), Ok(()));
    assert_eq!(
        replay(&[epoch(1, 7, &others), epoch(2, 9, &others)]),
        refused(1, "an epoch record goes back, or follows the replica's retirement")
    );
}

/// A new machine started durable for a later epoch (`fleet rsl serve --join --data-dir`)
/// writes that epoch first (its start unknown until it holds state); replayed over the same
/// epoch's configuration its log recovers there, and a later record (a compacted image's)
/// supplies the start.
#[test]
fn a_replica_started_for_a_later_epoch_writes_it_first() {
    let mut joined = config();
    joined.epoch = 1;
    let r = Rep::new_durable(joined.clone(), 2, Counter::default(), Instant::ZERO, 5).unwrap();
    let mut node = Node { replica: Some(r), log: Vec::new(), snapshot: Vec::new(), confirm: true };
    node.persist(Step::default());
    let unknown = crate::rsl::membership::EPOCH_START_UNKNOWN;
    assert!(matches!(decode(&node.log[0]), DurableRecord::Incarnation { nonce: 5 }));
    assert!(matches!(decode(&node.log[1]), DurableRecord::Epoch { epoch: 1, start, .. } if start == unknown));
    let recover = |log: &[Vec<u8>]| {
        Rep::recover(joined.clone(), 2, Counter::default(), Instant::ZERO, 9, [], log.iter().map(|r| r.as_slice()))
    };
    let r = recover(&node.log).unwrap();
    assert_eq!((r.config().epoch, r.epoch_start(), r.rejoining().map(|j| j.nonce)), (1, unknown, Some(5)));
    let mut list = [0u8; 128];
    let n = crate::rsl::membership::encode_replicas(&eps(), &mut list).unwrap();
    let later = any_record(&DurableRecord::Epoch { epoch: 1, start: 12, replicas: Bytes(&list[..n]) });
    let mut log = node.log.clone();
    log.push(later);
    assert_eq!(recover(&log).unwrap().epoch_start(), 12, "the start, once a record knows it");
    log.push(node.log[1].clone());
    assert_eq!(recover(&log).unwrap().epoch_start(), 12, "a record that knew less changes nothing");
    // Where its first state was, as a snapshot restored later says: the earliest counts.
    let later_start = |start| any_record(&DurableRecord::Epoch { epoch: 1, start, replicas: Bytes(&list[..n]) });
    log.push(later_start(20));
    log.push(later_start(10));
    assert_eq!(recover(&log).unwrap().epoch_start(), 10);
}
