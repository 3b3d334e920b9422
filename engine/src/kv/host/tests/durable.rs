//! Durable hosts (`kv::durable`): an image and the logged inputs rebuild the host exactly;
//! steps that log nothing change nothing; damaged or foreign records are refused.

use super::*;
use crate::kv::durable::{ImageCursor, RecoverError, Replayed};
use crate::kv::reliable::evict::Closed;
use std::vec::Vec;

/// A host whose state-changing inputs are logged, as a durable binding logs them.
struct Logged {
    host: Host,
    image: Vec<Vec<u8>>,
    log: Vec<Vec<u8>>,
}

fn image_of(h: &Host) -> Vec<Vec<u8>> {
    let mut cursor = ImageCursor::default();
    let mut buf = [0u8; 1024];
    let mut records = Vec::new();
    while let Some(r) = h.image_record(&mut cursor, &mut buf) {
        records.push(r.unwrap().to_vec());
    }
    records
}

fn recover(me: usize, records: &[Vec<u8>]) -> Result<Host, RecoverError> {
    let mut config = KvConfig::new(&[H0, H1, H2]).unwrap();
    config.params = params();
    let mut buf = Buf::new();
    let mut out = buf.outbox();
    Host::recover(config, me, Store::new(), records.iter().map(Vec::as_slice), &mut out)
}

impl Logged {
    fn new(me: usize) -> Logged {
        let host = host(me);
        Logged { image: image_of(&host), host, log: Vec::new() }
    }

    /// One input at `ms`: a datagram, or a tick. A step that logs nothing must leave the
    /// protocol state as it was.
    fn step(&mut self, ms: u64, input: Option<(Endpoint, &[u8])>) -> Vec<Sent> {
        let before = self.host.clone();
        let now = Instant::from_millis(ms);
        let mut store = Buf::new();
        let mut out = store.outbox();
        let step = match input {
            Some((from, d)) => self.host.handle(now, from, d, &mut out),
            None => self.host.tick(now, &mut out),
        };
        assert_eq!(self.host.check_invariants(), Ok(()));
        assert!((0..out.len()).all(|i| out.waits_for_sync(i)), "every datagram waits for the sync");
        if step.log_input {
            let mut buf = [0u8; 1024];
            self.log.push(self.host.input_record(now, input, &mut buf).unwrap().to_vec());
            assert_eq!(self.host.logged_steps(), self.log.len() as u64);
        } else {
            assert!(self.host == before, "a step that logs nothing changed the state");
        }
        out.iter().map(|(dst, b)| Sent { dst, bytes: heapless::Vec::from_slice(b).unwrap() }).collect()
    }

    fn all(&self) -> Vec<Vec<u8>> {
        self.image.iter().chain(&self.log).cloned().collect()
    }
}

/// Host 0 after clients wrote, a duplicate and a refusal, a Shard whose Delegate is
/// unacknowledged, retransmissions, and an evicted client (closed-channel floors).
fn busy() -> Logged {
    let mut l = Logged::new(0);
    let w = |seq: u64, key: u64| single(1, seq, &Body::SetRequest { key, value: Some(Bytes(b"v")) });
    let _ = l.step(1, Some((C, &w(1, 5))));
    let _ = l.step(2, Some((C, &w(2, 50))));
    let _ = l.step(3, Some((C, &w(2, 50))));
    let _ =
        l.step(4, Some((C, &single_acking(1, 3, 2, &Body::Shard { range: KeyRange::keys(40, 60), recipient: H1 }))));
    let _ = l.step(5, Some((C2, &w(7, 5))));
    let _ = l.step(5, Some((H2, &w(1, 5))));
    for ms in [6, 30, 70] {
        let _ = l.step(ms, None);
    }
    // Clients until the table (8 peers: 3 hosts) is full and a settled one is evicted.
    for (i, port) in (20..27u16).enumerate() {
        let c = Endpoint::v4([10, 0, 2, i as u8], port);
        let sent = l.step(80 + i as u64, Some((c, &single(1, 1, &Body::GetRequest { key: 5 }))));
        if let Some(s) = sent.iter().find(|s| matches!(s.frame(), Frame::Single { .. })) {
            let Frame::Single { seqno, .. } = s.frame() else { unreachable!() };
            let _ = l.step(80 + i as u64, Some((c, &frame(&Frame::Ack { seqno }))));
        }
    }
    assert!(l.host.counters().evicted > 0, "the workload evicts a client");
    assert!(!l.host.outgoing().is_empty(), "the workload leaves a Delegate unacknowledged");
    l
}

#[test]
fn an_image_rebuilds_the_host_it_was_taken_of() {
    let l = busy();
    let back = recover(0, &image_of(&l.host)).unwrap();
    assert!(back == l.host);
    assert_eq!(back.logged_steps(), l.host.logged_steps());
    assert_eq!(back.last_logged_now(), l.host.last_logged_now());
    assert_eq!(back.next_deadline(), l.host.next_deadline());
}

#[test]
fn the_logged_inputs_replayed_rebuild_the_host_at_every_point() {
    let l = busy();
    for n in 0..=l.log.len() {
        let records: Vec<Vec<u8>> = l.image.iter().chain(&l.log[..n]).cloned().collect();
        let back = recover(0, &records).unwrap();
        assert_eq!(back.logged_steps(), n as u64);
        if n == l.log.len() {
            assert!(back == l.host);
        }
    }
}

#[test]
fn inputs_an_image_includes_are_skipped_and_the_rest_replayed() {
    let mut l = busy();
    let middle = image_of(&l.host);
    let covered = l.log.len();
    let _ = l.step(200, Some((C, &single(1, 4, &Body::SetRequest { key: 6, value: Some(Bytes(b"w")) }))));
    let _ = l.step(300, None);
    let mut records = middle.clone();
    records.extend(l.log.iter().cloned());
    let back = recover(0, &records).unwrap();
    assert!(back == l.host);
    assert_eq!(back.storage().get(6), Some(&b"w"[..]));
    let mut again = recover(0, &middle).unwrap();
    let mut buf = Buf::new();
    assert_eq!(again.replay(&l.log[0], &mut buf.outbox()), Ok(Replayed::Covered));
    assert_eq!(again.replay(&l.log[covered], &mut buf.outbox()), Ok(Replayed::Applied));
}

#[test]
fn a_log_with_a_missing_input_is_refused() {
    let l = busy();
    let mut records = l.image.clone();
    records.extend(l.log.iter().enumerate().filter(|(i, _)| *i != 3).map(|(_, r)| r.clone()));
    assert_eq!(recover(0, &records).err(), Some(RecoverError::Gap { expected: 4, found: 5 }));
}

#[test]
fn another_hosts_records_are_refused() {
    let l = busy();
    assert_eq!(recover(1, &l.all()).err(), Some(RecoverError::OtherHost));
}

#[test]
fn a_logged_input_that_changes_nothing_on_replay_is_refused() {
    let mut records = image_of(&host(0));
    let junk = crate::kv::durable::KvRecord::Datagram { step: 1, now: T0, from: C, datagram: Bytes(b"not a datagram") };
    let mut buf = [0u8; 128];
    let n = wire::encode(Protocol::KvDurable, &junk, &mut buf).unwrap();
    records.push(buf[..n].to_vec());
    assert_eq!(recover(0, &records).err(), Some(RecoverError::Diverged { step: 1 }));
}

#[test]
fn a_damaged_or_incomplete_image_is_refused() {
    let l = busy();
    let image = image_of(&l.host);
    assert!(matches!(recover(0, &image[..image.len() - 1]), Err(RecoverError::Malformed(_))));
    let mut dropped = image.clone();
    dropped.remove(2);
    assert!(matches!(recover(0, &dropped), Err(RecoverError::Malformed(_))));
    let mut swapped = image.clone();
    let last_pair = swapped.len() - 2;
    swapped.swap(1, last_pair);
    assert!(matches!(recover(0, &swapped), Err(RecoverError::Malformed(_))));
    let mut flipped = image.clone();
    let b = flipped[1].len() - 1;
    flipped[1][b] ^= 0xff;
    assert!(recover(0, &flipped).is_err());
    assert!(matches!(recover(0, &l.log), Err(RecoverError::Malformed(_))), "inputs without an image");
}

#[test]
fn image_records_come_once_each_section_in_order_after_one_header() {
    let l = busy();
    let image = image_of(&l.host);
    let refused = |records: &[Vec<u8>]| match recover(0, records) {
        Err(RecoverError::Malformed(why)) => why,
        other => panic!("{:?}", other.map(|_| "a host")),
    };
    assert_eq!(refused(&image[1..]), "the image does not begin with its header");
    let mut twice = image.clone();
    twice.insert(1, image[0].clone());
    assert_eq!(refused(&twice), "a second image header");
    let mut swapped = image.clone();
    let last = swapped.len() - 2;
    swapped.swap(1, last);
    assert_eq!(refused(&swapped), "image records out of order");
}

#[test]
fn an_undecodable_record_is_named_by_its_position() {
    let l = busy();
    let mut records = image_of(&l.host);
    records[3] = std::vec![0xff; 5];
    assert!(matches!(recover(0, &records), Err(RecoverError::Undecodable { record: 3, .. })));
}

#[test]
fn a_joining_host_and_what_it_remembers_of_others_survive_an_image() {
    let mut config = KvConfig::new(&[H0, H1, H2]).unwrap();
    config.params = params();
    let mut h = Host::new_joining(config, 0, Store::new(), 777, T0).unwrap();
    let mut buf = Buf::new();
    let _ = h.tick(T0, &mut buf.outbox());
    // Host 1 answers (it is joining too); host 2 has not yet.
    let reply = frame(&Frame::JoinReply {
        nonce: 777,
        base: 900,
        joining: true,
        seen_other: false,
        from_key: 0,
        next: None,
        runs: Bytes(&[]),
    });
    let step = h.handle(T0, H1, &reply, &mut buf.outbox());
    assert!(step.log_input && h.joining().is_some());
    let back = recover(0, &image_of(&h)).unwrap();
    assert!(back == h);
    assert_eq!(back.joining(), h.joining());
    // A serving host that answered a restarted host remembers it.
    let mut h1 = host(1);
    let _ = run(&mut h1, H0, &frame(&Frame::Join { nonce: 5, from_key: 0 }));
    let _ = run(&mut h1, H0, &frame(&Frame::Join { nonce: 9, from_key: 0 }));
    let back = recover(1, &image_of(&h1)).unwrap();
    assert!(back == h1);
}

#[test]
fn the_image_holds_one_record_per_item_and_nothing_for_empty_ones() {
    // A new host: the header, one map run, the three host peers, the end. No join record,
    // no host memory, no transfers, no unacked messages, no floors, no pairs.
    let fresh = image_of(&host(0));
    assert_eq!(fresh.len(), 1 + 1 + 3 + 1);
    let l = busy();
    let records = image_of(&l.host);
    let peers = l.host.reliable().peers().len();
    let pending = l.host.reliable().pending();
    let pairs = l.host.storage().len();
    let floors = (0..8).filter(|&b| l.host.reliable().closed_at(b) != Some(Closed::NONE)).count();
    let runs = l.host.map().len();
    let outgoing = l.host.outgoing().len();
    assert!(floors > 0 && pending > 0 && pairs > 0);
    assert_eq!(records.len(), 1 + runs + outgoing + peers + pending + floors + pairs + 1);
}

#[test]
fn the_last_logged_instant_is_the_last_logged_steps_now() {
    let mut l = Logged::new(0);
    assert_eq!(l.host.last_logged_now(), T0);
    let _ = l.step(7, Some((C, &single(1, 1, &Body::GetRequest { key: 5 }))));
    let _ = l.step(9, Some((C, &single(1, 1, &Body::GetRequest { key: 5 }))));
    assert_eq!(l.host.last_logged_now(), Instant::from_millis(7), "the duplicate at 9 ms logged nothing");
    assert_eq!(recover(0, &l.all()).unwrap().last_logged_now(), Instant::from_millis(7));
}

#[test]
fn recovery_errors_say_what_is_wrong() {
    use std::string::ToString;
    let cases = [
        (RecoverError::Gap { expected: 4, found: 6 }, "step 6 where step 4"),
        (RecoverError::Diverged { step: 3 }, "logged step 3 changed nothing"),
        (RecoverError::OtherHost, "another cluster or another host"),
        (RecoverError::Malformed("why"), "malformed image: why"),
        (RecoverError::Undecodable { record: 2, error: crate::wire::DecodeError::TooShort }, "record 2"),
        (RecoverError::Config(crate::config::ConfigError::BadIndex), "configuration"),
    ];
    for (e, want) in cases {
        assert!(e.to_string().contains(want), "{e}: {want}");
    }
}

#[test]
fn an_image_whose_records_are_out_of_place_or_missing_is_refused() {
    let l = busy();
    let image = image_of(&l.host);
    let malformed = |records: &[Vec<u8>]| matches!(recover(0, records), Err(RecoverError::Malformed(_)));
    assert!(malformed(&image[1..]), "no header first");
    let mut twice = image.clone();
    twice.insert(1, image[0].clone());
    assert!(malformed(&twice), "a second header");
    // A map run moved after the peers: each record alone is fine, the order is not.
    let mut late_run = image.clone();
    let run = late_run.remove(1);
    let at = late_run.len() - 1;
    late_run.insert(at, run);
    assert!(malformed(&late_run), "sections out of order");
    // A pair left out: only the record count notices.
    let mut no_pair = image.clone();
    no_pair.remove(image.len() - 2);
    assert!(malformed(&no_pair), "a missing pair");
}

#[test]
fn a_transfer_being_received_survives_an_image() {
    let mut h0 = host(0);
    for k in 0..7u64 {
        let _ = set(&mut h0, k + 1, k, &[b'x'; 64]);
        let _ = run(&mut h0, C, &frame(&Frame::Ack { seqno: k + 1 }));
    }
    let sent = shard(&mut h0, 8, KeyRange::keys(0, 10), H1);
    let first = sent.iter().find(|s| matches!(s.body(), Some(Body::Delegate { .. }))).unwrap();
    let mut h1 = host(1);
    let _ = run(&mut h1, H0, &first.bytes);
    assert!(h1.incoming(0).is_some(), "part 0 of several applied");
    let back = recover(1, &image_of(&h1)).unwrap();
    assert!(back == h1);
    assert_eq!(back.incoming(0), h1.incoming(0));
}
