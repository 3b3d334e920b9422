//! A durable KV host driven in-process through the event loop's `Host` contract by a real
//! KV client: a host dropped (killed) before its last burst was synced reopens as the host
//! that ran up to the last sync, exactly (`==` on the engine host), its clock going on; a
//! torn log tail is cut; a damaged image falls back on the previous one; damage inside the
//! log, or a log segment gone, stops the start naming the file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant as StdInstant};

use fleet_engine::kv::client::{Event, Outcome, Request};
use fleet_engine::kv::msg::{KeyBound, KeyRange};
use fleet_engine::kv::storage::Storage;
use fleet_engine::kv::Frame;
use fleet_engine::wire::{self, Bytes, Protocol};
use fleet_engine::{Endpoint, Instant};
use fleet_io_std::kv::durable::{DurableKvHost, DEFAULT_LOG};
use fleet_io_std::kv::image::IMAGE_FILE;
use fleet_io_std::kv::{KvServerHost, StdKvClient};
use fleet_io_std::net::event_loop::Host;
use fleet_io_std::net::HeapOutbox;
use fleet_io_std::storage::frame::{self, FRAME_HEADER_BYTES};
use fleet_io_std::storage::wal::LogOptions;
use fleet_io_std::{ClusterFile, KvSetup, ServerError};

const CLIENT: Endpoint = Endpoint::v4([127, 0, 0, 1], 40_000);
const HOSTS: [u16; 3] = [21_001, 21_002, 21_003];

fn setup() -> KvSetup {
    let hosts: Vec<String> = HOSTS.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    ClusterFile::parse(&format!("[kv]\nhosts = [{}]\n", hosts.join(", "))).unwrap().kv().unwrap()
}

fn host0() -> Endpoint {
    Endpoint::v4([127, 0, 0, 1], HOSTS[0])
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fleet-kv-durable-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Runs `f` on a thread with a server's stack: engine hosts are megabytes, built in place.
fn big_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new().stack_size(256 << 20).spawn(f).unwrap().join().unwrap();
}

/// A client's outcome, owned.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    Value(Option<Vec<u8>>),
    Written,
    Sharded,
    Failed(String),
}

/// Host 0 of `setup()` on `dir`, one client, and a loop clock in milliseconds.
struct Rig {
    host: DurableKvHost,
    client: StdKvClient,
    ms: u64,
}

impl Rig {
    fn open(dir: &Path, compact_after: u64) -> Result<DurableKvHost, ServerError> {
        DurableKvHost::open_with(
            &setup(),
            0,
            dir,
            Instant::ZERO,
            LogOptions { compact_after_bytes: compact_after, ..DEFAULT_LOG },
        )
    }

    fn new(dir: &Path, compact_after: u64) -> Rig {
        let s = setup();
        let hosts: Vec<Endpoint> = HOSTS.iter().map(|p| Endpoint::v4([127, 0, 0, 1], *p)).collect();
        let host = Rig::open(dir, compact_after).unwrap();
        // A client's channel starts above the host's incarnation (wall-clock microseconds,
        // as io-std's clients do), else the new host refuses it as possibly served before.
        let first = fleet_io_std::clock::incarnation_nonce() + 1;
        let client = StdKvClient::new(&hosts, first, s.config.params).unwrap();
        let mut rig = Rig { host, client, ms: 0 };
        rig.join_a_new_cluster();
        rig
    }

    /// A new directory's host starts without state and joins: hosts 1 and 2 (not running)
    /// answer that they are joining too, so host 0 is born the root of a new cluster.
    fn join_a_new_cluster(&mut self) {
        let Some(nonce) = self.host.host().joining().map(|j| j.nonce) else { return };
        let cluster = setup().config.identity();
        let mut store = HeapOutbox::new(64, 1 << 20);
        for port in &HOSTS[1..] {
            let reply = Frame::JoinReply {
                nonce,
                base: 1,
                joining: true,
                seen_other: false,
                from_key: 0,
                next: None,
                runs: Bytes(&[]),
            };
            let mut buf = [0u8; 128];
            let n = wire::encode_in_cluster(Protocol::Kv, cluster, &reply, &mut buf).unwrap();
            let mut out = store.outbox();
            self.host.handle(self.now(), Endpoint::v4([127, 0, 0, 1], *port), &buf[..n], &mut out);
            let _ = self.host.commit(self.now(), out.any_waits_for_sync()).unwrap();
        }
        assert!(self.host.host().joining().is_none() && self.host.host().owns(0), "born the root");
    }

    fn now(&self) -> Instant {
        Instant::from_millis(self.ms)
    }

    /// Hands `datagrams` from the client to the host; then, like the event loop, commits and
    /// (unless `sync` is false: the process dies first) waits for the sync the replies wait
    /// for. Returns the host's datagrams (none if they were never released).
    fn deliver(&mut self, datagrams: Vec<(Endpoint, Vec<u8>)>, sync: bool) -> Vec<(Endpoint, Vec<u8>)> {
        let now = self.now();
        let mut store = HeapOutbox::new(256, 1 << 20);
        let mut out = store.outbox();
        for (dst, d) in datagrams {
            assert_eq!(dst, host0());
            self.host.handle(now, CLIENT, &d, &mut out);
        }
        if !sync {
            return Vec::new();
        }
        let waiting = out.any_waits_for_sync();
        assert!((0..out.len()).all(|i| out.waits_for_sync(i)), "every KV datagram waits for the sync");
        if let Some(ticket) = self.host.commit(now, waiting).unwrap() {
            let until = StdInstant::now() + Duration::from_secs(10);
            while self.host.durable().unwrap() < ticket {
                assert!(StdInstant::now() < until, "the sync of ticket {ticket} never finished");
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        out.iter().map(|(dst, b)| (dst, b.to_vec())).collect()
    }

    /// One request, answered: the reply delivered and its ack handed back (synced lazily).
    fn call(&mut self, request: Request<'_>) -> Got {
        self.ms += 1;
        let mut store = HeapOutbox::new(64, 1 << 20);
        let mut out = store.outbox();
        self.client.submit(self.now(), request, &mut out).unwrap();
        let sent: Vec<_> = out.iter().map(|(d, b)| (d, b.to_vec())).collect();
        let replies = self.deliver(sent, true);
        self.answer(replies).expect("the host answers")
    }

    /// Hands the host's datagrams for the client to it; returns the outcome, if one came.
    fn answer(&mut self, replies: Vec<(Endpoint, Vec<u8>)>) -> Option<Got> {
        let now = self.now();
        let mut store = HeapOutbox::new(64, 1 << 20);
        let mut outcome = None;
        for (_, bytes) in replies.iter().filter(|(dst, _)| *dst == CLIENT) {
            let mut out = store.outbox();
            if let Some(Event::Completed(c)) = self.client.handle(now, host0(), bytes, &mut out) {
                outcome = Some(match c.outcome {
                    Outcome::Value(v) => Got::Value(v.map(<[u8]>::to_vec)),
                    Outcome::Written => Got::Written,
                    Outcome::Sharded => Got::Sharded,
                    Outcome::Failed(e) => Got::Failed(format!("{e:?}")),
                });
                self.client.flush_acks(&mut out);
            }
            let acks: Vec<_> = out.iter().map(|(d, b)| (d, b.to_vec())).collect();
            let _ = self.deliver(acks, true);
        }
        outcome
    }

    /// Host timers at the loop's clock (retransmissions to hosts that are not running).
    fn tick(&mut self) {
        let mut store = HeapOutbox::new(256, 1 << 20);
        let mut out = store.outbox();
        let now = self.now();
        if self.host.next_deadline() <= now {
            self.host.tick(now, &mut out);
        }
        let waiting = out.any_waits_for_sync();
        let _ = self.host.commit(now, waiting).unwrap();
    }

    /// Lets the image writer finish and installs its image.
    fn settle_images(&mut self) {
        let until = StdInstant::now() + Duration::from_secs(20);
        while self.host.image_in_progress() {
            assert!(StdInstant::now() < until, "the image writer never finished");
            std::thread::sleep(Duration::from_millis(5));
            let _ = self.host.commit(self.now(), false).unwrap();
        }
    }

    /// A load: sets with values of `value_bytes`, a Shard of [0, 10) to host 1 (which is not
    /// running: its Delegate stays unacknowledged and is retransmitted), ticks.
    fn load(&mut self, sets: u64, value_bytes: usize) {
        for i in 0..sets {
            let value = vec![b'a' + (i % 26) as u8; value_bytes];
            assert_eq!(self.call(Request::Set(10 + i % 97, &value)), Got::Written);
            if i == sets / 2 && self.host.host().owns(0) {
                let range = KeyRange { lo: KeyBound::Key(0), hi: KeyBound::Key(10) };
                let host1 = Endpoint::v4([127, 0, 0, 1], HOSTS[1]);
                assert_eq!(self.call(Request::Shard(range, host1)), Got::Sharded);
            }
            if i % 20 == 0 {
                self.ms += 60;
                self.tick();
            }
        }
    }
}

fn engine_host(h: &DurableKvHost) -> Box<KvServerHost> {
    Box::new(h.host().clone())
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut s: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("wal-0"))
        .collect();
    s.sort();
    s
}

/// The byte range of every frame in a log segment.
fn frames(segment: &Path) -> Vec<std::ops::Range<usize>> {
    let bytes = std::fs::read(segment).unwrap();
    frame::parse(&bytes).payloads.iter().map(|r| r.start - FRAME_HEADER_BYTES..r.end).collect()
}

fn flip(file: &Path, at: usize) {
    let mut bytes = std::fs::read(file).unwrap();
    bytes[at] ^= 0x55;
    std::fs::write(file, bytes).unwrap();
}

#[test]
fn a_killed_host_reopens_as_the_host_that_ran_up_to_its_last_sync() {
    big_stack(|| {
        let dir = scratch("reopen");
        let mut rig = Rig::new(&dir, 16 << 10);
        rig.load(400, 200);
        assert!(rig.host.images_written() >= 2, "the load compacts the log more than once");
        assert!(!rig.host.host().outgoing().is_empty(), "the Delegate to host 1 is unacknowledged");
        let ran = engine_host(&rig.host);
        // The last burst: handled, never synced, never answered; then the process dies.
        rig.ms += 1;
        let mut store = HeapOutbox::new(64, 1 << 20);
        let mut out = store.outbox();
        rig.client.submit(rig.now(), Request::Set(500, b"never acknowledged"), &mut out).unwrap();
        let sent: Vec<_> = out.iter().map(|(d, b)| (d, b.to_vec())).collect();
        assert!(rig.deliver(sent, false).is_empty());
        assert_eq!(rig.host.host().storage().len(), 98, "the host applied it in memory");
        drop(rig.host);

        let host = Rig::open(&dir, 16 << 10).unwrap();
        assert!(*host.host() == *ran, "the reopened host is the one that ran up to the last sync");
        assert!(host.host().logged_steps() > 400);
        assert!(
            host.engine_now(Instant::ZERO) > ran.last_logged_now(),
            "the clock goes on from the last logged step, not from zero"
        );
        // The client retransmits its unanswered write: executed once, now.
        rig.host = host;
        rig.ms += 1_000;
        let mut out = store.outbox();
        rig.client.tick(rig.now(), &mut out);
        let sent: Vec<_> = out.iter().map(|(d, b)| (d, b.to_vec())).collect();
        let replies = rig.deliver(sent, true);
        assert_eq!(rig.answer(replies), Some(Got::Written));
        assert_eq!(rig.call(Request::Get(500)), Got::Value(Some(b"never acknowledged".to_vec())));
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn a_torn_log_tail_is_cut_and_the_inputs_before_it_serve() {
    big_stack(|| {
        let dir = scratch("torn");
        let mut rig = Rig::new(&dir, 64 << 20);
        rig.load(30, 100);
        let before = engine_host(&rig.host);
        // A write, synced, whose reply never reaches the client (no ack follows it).
        rig.ms += 1;
        let mut store = HeapOutbox::new(64, 1 << 20);
        let mut out = store.outbox();
        rig.client.submit(rig.now(), Request::Set(70, b"torn away"), &mut out).unwrap();
        let sent: Vec<_> = out.iter().map(|(d, b)| (d, b.to_vec())).collect();
        assert!(!rig.deliver(sent, true).is_empty());
        assert_eq!(rig.host.host().logged_steps(), before.logged_steps() + 1);
        drop(rig.host);
        // Its frame loses its end: a write the crash cut short.
        let newest = segments(&dir).pop().unwrap();
        let last = frames(&newest).pop().unwrap();
        flip(&newest, last.end - 1);
        let host = Rig::open(&dir, 64 << 20).unwrap();
        assert!(*host.host() == *before, "the host as it was before the torn input");
        assert_ne!(host.host().storage().get(70), Some(&b"torn away"[..]));
        drop(host);
        // The cut tail was zeroed: the next start finds a clean log.
        assert_eq!(frame::parse(&std::fs::read(&newest).unwrap()).damage, None);
        let host = Rig::open(&dir, 64 << 20).unwrap();
        assert!(*host.host() == *before);
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn a_damaged_image_is_moved_aside_and_the_previous_one_serves() {
    big_stack(|| {
        let dir = scratch("image");
        let mut rig = Rig::new(&dir, 16 << 10);
        rig.load(200, 200);
        rig.settle_images();
        assert!(rig.host.images_written() >= 2);
        assert!(dir.join("kv.image.prev").exists());
        let ran = engine_host(&rig.host);
        drop(rig.host);
        let image = dir.join(IMAGE_FILE);
        let len = std::fs::metadata(&image).unwrap().len() as usize;
        flip(&image, len / 2);
        let host = Rig::open(&dir, 16 << 10).unwrap();
        assert!(*host.host() == *ran, "the previous image and the longer log rebuild the host");
        assert!(dir.join("kv.image.corrupt").exists(), "the damaged image is kept aside");
        drop(host);
        // Both images damaged: the start stops, naming the directory (a log is never
        // replayed without an image: the host's first state names its incarnation).
        flip(&dir.join("kv.image.prev"), 40);
        let err = Rig::open(&dir, 16 << 10).err().expect("no usable image").to_string();
        assert!(err.contains(dir.to_str().unwrap()) && err.contains("no usable image"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn damage_inside_the_log_or_a_missing_segment_stops_the_start_naming_the_file() {
    big_stack(|| {
        let dir = scratch("log");
        let mut rig = Rig::new(&dir, 64 << 20);
        rig.load(30, 100);
        drop(rig.host);
        let segment = segments(&dir).pop().unwrap();
        let second = frames(&segment)[1].clone();
        flip(&segment, second.start + FRAME_HEADER_BYTES + 2);
        let err = Rig::open(&dir, 64 << 20).err().expect("a damaged log is refused").to_string();
        let offset = second.start;
        assert!(err.contains(&format!("{} is corrupt at byte {offset}", segment.display())), "{err}");
        flip(&segment, second.start + FRAME_HEADER_BYTES + 2);
        Rig::open(&dir, 64 << 20).expect("repaired, it opens");
        std::fs::remove_dir_all(&dir).unwrap();

        // Several segments; the newest image is gone and so is the segment after the
        // previous one: the inputs the previous image needs do not follow on from it.
        let dir = scratch("gap");
        let mut rig = Rig::new(&dir, 16 << 10);
        rig.load(300, 200);
        rig.settle_images();
        rig.load(5, 10);
        assert!(!rig.host.image_in_progress());
        drop(rig.host);
        let segs = segments(&dir);
        assert!(segs.len() >= 2, "{segs:?}");
        std::fs::remove_file(dir.join(IMAGE_FILE)).unwrap();
        std::fs::remove_file(&segs[segs.len() - 2]).unwrap();
        let err = Rig::open(&dir, 16 << 10).err().expect("a log with a gap is refused").to_string();
        let named = format!("{}: the logged input at byte 0: the log skips inputs", segs[segs.len() - 1].display());
        assert!(err.contains(&named), "{err}");
        // And without any image, the start stops and says the way out.
        std::fs::remove_file(dir.join("kv.image.prev")).unwrap();
        let err = Rig::open(&dir, 16 << 10).err().expect("no image, a log").to_string();
        assert!(err.contains("no usable image") && err.contains("Move the directory aside"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// Every file in `dir` and its length.
fn listing(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut files: Vec<_> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap()).map(|e| (e.path(), e.metadata().unwrap().len())).collect();
    files.sort();
    files
}

#[test]
fn a_dropped_host_leaves_nothing_writing_in_its_directory() {
    big_stack(|| {
        let dir = scratch("dropped");
        // At this threshold, the next log segment takes a thread a second or more to
        // zero-fill: it is still at work when the host is dropped.
        let mut rig = Rig::new(&dir, 64 << 20);
        rig.load(30, 100);
        drop(rig.host);
        let at_drop = listing(&dir);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(listing(&dir), at_drop, "a thread of the dropped host wrote on");
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

#[test]
fn the_log_a_restart_replays_counts_towards_the_next_image() {
    big_stack(|| {
        let dir = scratch("carried");
        let mut rig = Rig::new(&dir, 64 << 20);
        rig.load(100, 200);
        assert_eq!(rig.host.images_written(), 0);
        drop(rig.host);
        // Reopened with a threshold below what the log already holds: the next commit
        // compacts, though this process has logged almost nothing yet.
        rig.host = Rig::open(&dir, 16 << 10).unwrap();
        assert!(rig.host.stats_line().contains("log_bytes="), "{}", rig.host.stats_line());
        assert_eq!(rig.call(Request::Get(10)), Got::Value(Some(vec![b'a' + (97 % 26) as u8; 200])));
        rig.settle_images();
        assert_eq!(rig.host.images_written(), 1, "the replayed log counts towards compaction");
        let _ = std::fs::remove_dir_all(&dir);
    });
}
