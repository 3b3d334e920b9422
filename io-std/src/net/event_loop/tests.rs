//! The event loop's tests: refusal notices, the spin window and the group commit window.

use super::*;
use fleet_engine::auth::{Key, KeySet};

/// Counts the datagrams it handles; sends nothing.
struct Counting(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl Host for Counting {
    fn handle(&mut self, _: Instant, _: Endpoint, _: &[u8], _: &mut Outbox<'_>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn tick(&mut self, _: Instant, _: &mut Outbox<'_>) {}
    fn next_deadline(&self) -> Instant {
        Instant::NEVER
    }
    fn stats_line(&self) -> String {
        format!("handled={}", self.0.load(Ordering::SeqCst))
    }
}

/// Runs a loop with spin window `spin`, sends it two datagrams one after the other
/// (the second once the first was handled), and returns its published metrics page.
fn page_after_two_datagrams(spin: Duration) -> String {
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let handled = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let board = MetricsBoard::new("test");
    let options = LoopOptions { metrics: Some(board.clone()), spin, ..LoopOptions::default() };
    let (h, st) = (handled.clone(), stop.clone());
    let thread = std::thread::spawn(move || run(&mut Counting(h), &socket, Clock::start(), &st, &options));
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let deadline = StdInstant::now() + Duration::from_secs(10);
    for n in 1..=2 {
        client.send_to(b"x", addr).unwrap();
        while handled.load(Ordering::SeqCst) < n {
            assert!(StdInstant::now() < deadline, "datagram {n} never handled");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    // The loop publishes every PUBLISH_EVERY; wait for a page that saw both.
    let page = loop {
        let page = board.page();
        if page.contains("fleet_test_handled 2") {
            break page;
        }
        assert!(StdInstant::now() < deadline, "no page after both datagrams: {page}");
        std::thread::sleep(Duration::from_millis(10));
    };
    stop.store(true, Ordering::SeqCst);
    thread.join().unwrap().unwrap();
    page
}

#[test]
fn a_loop_within_its_spin_window_takes_the_next_datagram_without_sleeping() {
    // A window far longer than the test: the second datagram must find it polling.
    let page = page_after_two_datagrams(Duration::from_secs(60));
    assert!(page.contains("fleet_test_spin_hits 1\n"), "{page}");
    assert!(page.contains("fleet_test_spin_misses 0\n"), "{page}");
    // Without a window it sleeps after each datagram: nothing spun.
    let page = page_after_two_datagrams(Duration::ZERO);
    assert!(page.contains("fleet_test_spin_hits 0\n"), "{page}");
    assert!(page.contains("fleet_test_spin_misses 0\n"), "{page}");
}

#[test]
fn refusal_notices_are_rate_limited_and_never_answer_unsealed_bytes() {
    let members = vec![Endpoint::v4([127, 0, 0, 1], 7000)];
    let keys = Keyring {
        cluster: 1,
        member: Some(KeySet::single(Key::new(1, [1; 16]))),
        client: KeySet::single(Key::new(2, [2; 16])),
    };
    let auth = LoopAuth { keys, members: members.clone(), key_files: String::new() };
    let mut sealer = Sealer::new(&auth, members[0]);
    let stranger = Endpoint::v4([127, 0, 0, 9], 40000);
    let sent = (0..200).filter(|_| sealer.refused(stranger, AuthError::BadTag).is_some()).count();
    assert_eq!(sent as u32, NOTICES_PER_SECOND, "at most the rate's worth within a second");
    assert_eq!(sealer.refused(stranger, AuthError::Unsealed), None);
    // A second later the budget is back.
    sealer.notices_since = StdInstant::now() - Duration::from_secs(1);
    assert!(sealer.refused(stranger, AuthError::UnknownKey(7)).is_some());
}

/// Waves of writers in [`fsyncs_for_waves`], and writers per wave.
const WAVES: u64 = 6;
const WRITERS: u64 = 5;

/// The fsyncs of a durable KV host (one host, data under a scratch directory) while
/// [`WAVES`] waves of [`WRITERS`] clients, 50 ms apart, each write one key. A wave's
/// datagrams are sent back to back from one thread, each from a socket of its own.
fn fsyncs_for_waves(group_commit: Duration) -> u64 {
    use crate::kv::client::StdKvClient;
    use crate::kv::server::{spawn_kv_at, KvServeOptions};
    use fleet_engine::kv::client::Request;
    let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let setup = crate::ClusterFile::parse(&format!("[kv]\nhosts = [\"127.0.0.1:{port}\"]\n")).unwrap().kv().unwrap();
    let dir =
        std::env::temp_dir().join(format!("fleet-group-commit-{}-{}", std::process::id(), group_commit.as_millis()));
    let _ = std::fs::remove_dir_all(&dir);
    let board = MetricsBoard::new("kv");
    let options = KvServeOptions {
        loop_options: LoopOptions { metrics: Some(board.clone()), group_commit, ..LoopOptions::default() },
        data_dir: Some(dir.clone()),
        ..KvServeOptions::default()
    };
    let server = spawn_kv_at(&setup, 0, &options).unwrap();
    let field = |page: &str, name: &str| -> Option<u64> {
        let prefix = format!("fleet_kv_{name} ");
        page.lines().find_map(|l| l.strip_prefix(prefix.as_str())).and_then(|v| v.trim().parse().ok())
    };
    let deadline = StdInstant::now() + Duration::from_secs(20);
    let before = loop {
        if let Some(n) = field(&board.page(), "fsyncs") {
            break n;
        }
        assert!(StdInstant::now() < deadline, "no fsyncs on the metrics page: {}", board.page());
        std::thread::sleep(Duration::from_millis(10));
    };
    // Every writer's datagram, built before the first is sent.
    let hosts = [to_endpoint(setup.addrs[0])];
    let first_seqno = crate::clock::incarnation_nonce() + 1;
    let mut store = HeapOutbox::new(16, 1 << 16);
    let writers: Vec<(UdpSocket, Vec<u8>)> = (0..WAVES * WRITERS)
        .map(|key| {
            let mut client = StdKvClient::new(&hosts, first_seqno, setup.config.params).unwrap();
            let mut out = store.outbox();
            client.submit(Instant::ZERO, Request::Set(key, b"v"), &mut out).unwrap();
            let (_, datagram) = out.iter().next().unwrap();
            (UdpSocket::bind("127.0.0.1:0").unwrap(), datagram.to_vec())
        })
        .collect();
    for wave in writers.chunks(WRITERS as usize) {
        for (socket, datagram) in wave {
            socket.send_to(datagram, setup.addrs[0]).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The page that first shows every key also counts the sync that made the last durable.
    let after = loop {
        let page = board.page();
        if field(&page, "keys") == Some(WAVES * WRITERS) {
            break field(&page, "fsyncs").unwrap();
        }
        assert!(StdInstant::now() < deadline, "the writes never all landed: {page}");
        std::thread::sleep(Duration::from_millis(5));
    };
    server.stop().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    after - before
}

/// Requests from several clients that arrive within the group commit window share one
/// sync. Six waves 50 ms apart take a sync each at least without a window; with a window
/// of a second, one or two (a wave's first datagram may come alone, and a lone sender
/// syncs at once), three allowed for a loaded machine. Seen failing with the window
/// ignored (19 syncs).
#[test]
fn writes_arriving_within_the_group_commit_window_share_a_sync() {
    let grouped = fsyncs_for_waves(Duration::from_secs(1));
    let at_once = fsyncs_for_waves(Duration::ZERO);
    assert!(grouped <= 3, "{grouped} syncs for {WAVES} waves within the window");
    assert!(at_once >= WAVES, "{at_once} syncs for {WAVES} waves without a window");
}

#[test]
fn a_lone_sender_is_not_kept_waiting_for_others() {
    let (a, b) = (Endpoint::v4([127, 0, 0, 1], 1), Endpoint::v4([127, 0, 0, 1], 2));
    let mut s = Senders::default();
    s.next_round();
    s.saw(a);
    s.saw(a);
    assert!(!s.several(), "one client, twice");
    s.saw(b);
    assert!(s.several());
    // The next round remembers the last one, until a round with datagrams says otherwise.
    s.next_round();
    assert!(s.several(), "several senders last round");
    s.next_round();
    assert!(s.several(), "a round without datagrams changes nothing");
    s.saw(a);
    s.next_round();
    assert!(!s.several(), "the last round with datagrams had one sender");
}
