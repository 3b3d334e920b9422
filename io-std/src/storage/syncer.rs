//! Where and when a log's `fdatasync` runs ([`SyncMode`]).
//!
//! The loop writes records to the file, then asks for a sync ([`Syncer::request`]) and gets a
//! ticket; datagrams that depend on those records wait for that ticket. A sync covers every
//! byte written before it starts, so one sync serves every request made meanwhile (group
//! commit that grows with the load).
//!
//! - [`SyncMode::Thread`]: a sync thread syncs the file as it was at the request (or
//!   later), marks the ticket done ([`Syncer::done`]), and writes a byte to a socket the
//!   loop polls ([`Syncer::wake_fd`]), so a waiting loop wakes at once. The loop keeps
//!   receiving and handling while the disk works.
//! - [`SyncMode::Inline`]: no thread. The sync runs on the caller's thread the first time
//!   anyone asks whether a ticket is done ([`Syncer::done`]), which the event loop does right
//!   after sending what does not wait: as Redis's `appendfsync always` does, the loop stops
//!   for the sync and the requests that arrive meanwhile form the next group. No hand-off,
//!   no wake-ups: on a machine whose cores are all busy that is faster (docs/performance.md).
//! - [`SyncMode::Auto`]: a sync thread that the host turns on and off
//!   ([`Syncer::set_inline`]): an RSL replica syncs on it while it leads (it goes on
//!   counting votes and taking requests while its own vote is synced) and inline while it
//!   follows (a follower has nothing to do until its vote leaves, and the hand-off to a
//!   thread and back costs two wake-ups per vote). A host that never switches (a KV host)
//!   syncs inline.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::dir::StorageError;
use super::direct::DirectLog;

#[derive(Default)]
struct State {
    /// The file to sync, and the highest ticket requested for it.
    file: Option<(Arc<File>, PathBuf)>,
    /// A segment written directly ([`Syncer::set_direct`]): a "sync" writes `staged`.
    /// Taken out while a write runs.
    direct: Option<(DirectLog, PathBuf)>,
    /// Bytes asked to be made durable and not yet written (direct segments only).
    staged: Vec<u8>,
    /// The buffer of the last direct write, emptied, to stage into next (no allocation per
    /// write).
    spare: Vec<u8>,
    /// Wake-up bytes the sync thread has written (each counted after it is written).
    woken: u64,
    /// A sync or direct write is running: another waits (writes must not overlap).
    writing: bool,
    requested: u64,
    /// The highest ticket whose sync finished.
    done: u64,
    /// `fdatasync` calls made (one may cover many tickets).
    syncs: u64,
    /// A sync failed: every later ticket fails.
    failed: Option<(PathBuf, io::ErrorKind, String)>,
    stop: bool,
    /// Threads asleep on [`Shared::asked`] / [`Shared::finished`]: a notification with
    /// none is skipped (std's condition variables make a system call for every one, and
    /// an inline log, which nobody ever waits on, would pay one per sync).
    asked_waiters: u32,
    finished_waiters: u32,
    /// Notifications that woke someone (or could have): the ones skipped are not counted.
    notified: u64,
}

struct Shared {
    state: Mutex<State>,
    /// A sync was asked of the thread (it sleeps on this; inline syncs never wake it).
    asked: Condvar,
    /// A sync finished (waiters for tickets, and a writer waiting for the one running).
    finished: Condvar,
}

/// Where a log's syncs run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// On the event loop's thread, when a datagram first waits for one (see the module
    /// docs).
    Inline,
    /// On a sync thread of the log's own, while the event loop goes on.
    Thread,
    /// On a sync thread while the host says so ([`Syncer::set_inline`]), inline otherwise
    /// (see the module docs).
    Auto,
}

impl std::str::FromStr for SyncMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "inline" => Ok(SyncMode::Inline),
            "thread" => Ok(SyncMode::Thread),
            "auto" => Ok(SyncMode::Auto),
            other => Err(format!("unknown sync mode {other:?}: expected inline, thread or auto")),
        }
    }
}

/// The syncs of one log: a sync thread, or syncs on the caller's thread.
pub struct Syncer {
    shared: Arc<Shared>,
    /// `None`: inline syncs only.
    thread: Option<SyncThread>,
    /// Syncs run on the caller's thread (always without a sync thread).
    inline: bool,
    /// The last ticket handed out.
    issued: u64,
}

/// A sync thread, and the socket it makes readable once a sync finished.
struct SyncThread {
    handle: Option<JoinHandle<()>>,
    wake_rx: UnixStream,
    /// `woken` when the socket was last drained: reading it again before the thread wrote
    /// more would only fail (it is asked several times per loop round).
    drained: u64,
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer").field("issued", &self.issued).finish_non_exhaustive()
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // A panic while holding the lock cannot happen (no code in it panics); recover anyway.
    shared.state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Which condition variable of [`Shared`].
#[derive(Clone, Copy)]
enum Signal {
    Asked,
    Finished,
}

impl Shared {
    fn condvar(&self, signal: Signal) -> &Condvar {
        match signal {
            Signal::Asked => &self.asked,
            Signal::Finished => &self.finished,
        }
    }

    /// Sleeps on `signal`, counted as one of its waiters (see [`State::asked_waiters`]).
    fn wait<'a>(&'a self, signal: Signal, mut s: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        *waiters(&mut s, signal) += 1;
        let mut s = self.condvar(signal).wait(s).unwrap_or_else(|p| p.into_inner());
        *waiters(&mut s, signal) -= 1;
        s
    }

    /// Releases the lock, then wakes the waiters of `signal`, if any. A thread about to
    /// wait counts itself under the lock after checking the state, so one that is not
    /// counted yet will see the state this guard changed.
    fn notify(&self, signal: Signal, mut s: MutexGuard<'_, State>) {
        let any = *waiters(&mut s, signal) > 0;
        s.notified += u64::from(any);
        drop(s);
        if any {
            self.condvar(signal).notify_all();
        }
    }
}

fn waiters(s: &mut State, signal: Signal) -> &mut u32 {
    match signal {
        Signal::Asked => &mut s.asked_waiters,
        Signal::Finished => &mut s.finished_waiters,
    }
}

impl Syncer {
    /// Starts the syncs of one log: the thread, if `mode` has one.
    pub fn start(mode: SyncMode) -> io::Result<Syncer> {
        let shared =
            Arc::new(Shared { state: Mutex::new(State::default()), asked: Condvar::new(), finished: Condvar::new() });
        if mode == SyncMode::Inline {
            return Ok(Syncer { shared, thread: None, inline: true, issued: 0 });
        }
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let thread_shared = shared.clone();
        let handle =
            std::thread::Builder::new().name("wal-sync".into()).spawn(move || run(&thread_shared, &wake_tx))?;
        let thread = Some(SyncThread { handle: Some(handle), wake_rx, drained: 0 });
        Ok(Syncer { shared, thread, inline: mode == SyncMode::Auto, issued: 0 })
    }

    /// With [`SyncMode::Auto`]: syncs from now on run on the caller's thread (`true`) or on
    /// the sync thread (`false`). Either way a ticket is done only once a sync that started
    /// after it was handed out finished; a sync the thread is running when syncs turn
    /// inline still finishes and counts. Without a sync thread syncs stay inline.
    pub fn set_inline(&mut self, inline: bool) {
        if self.thread.is_none() || inline == self.inline {
            return;
        }
        self.inline = inline;
        if !inline {
            // Tickets asked for inline and not yet synced go to the thread now.
            self.shared.notify(Signal::Asked, lock(&self.shared));
        }
    }

    /// Whether the next sync runs on the caller's thread.
    pub fn is_inline(&self) -> bool {
        self.inline
    }

    /// Asks for a sync of `file` (everything written to it so far); returns the ticket.
    /// Inline, the sync runs at the next [`Syncer::done`].
    pub fn request(&mut self, file: &Arc<File>, path: &std::path::Path) -> u64 {
        self.issue(Some((file.clone(), path.to_path_buf())))
    }

    /// Hands out the next ticket (for `file`, if it names one): a sync asked of the thread,
    /// or of the next [`Syncer::done`] inline. One lock for both.
    fn issue(&mut self, file: Option<(Arc<File>, std::path::PathBuf)>) -> u64 {
        self.issued += 1;
        let mut s = lock(&self.shared);
        if file.is_some() {
            s.file = file;
        }
        s.requested = self.issued;
        if self.inline {
            drop(s);
        } else {
            self.shared.notify(Signal::Asked, s);
        }
        self.issued
    }

    /// From now on the log's segment is `direct` (`None`: written through the page cache
    /// and synced). Only with nothing outstanding ([`Syncer::wait_all`] first).
    pub fn set_direct(&mut self, direct: Option<(DirectLog, PathBuf)>) {
        let mut s = lock(&self.shared);
        debug_assert!(s.staged.is_empty() && !s.writing, "a segment changes only with nothing outstanding");
        s.direct = direct;
    }

    /// Queues `bytes` for the direct segment ([`Syncer::set_direct`]), after every byte
    /// queued before; the next [`Syncer::request_direct`] covers them.
    pub fn stage(&mut self, bytes: &[u8]) {
        lock(&self.shared).staged.extend_from_slice(bytes);
    }

    /// Asks for every staged byte to be written, durably, to the direct segment; returns
    /// the ticket. Inline, the write runs at the next [`Syncer::done`].
    pub fn request_direct(&mut self) -> u64 {
        self.issue(None)
    }

    /// The highest ticket whose sync finished, or the failure of a sync. Inline, this runs
    /// the sync asked for since the last one first.
    pub fn done(&mut self) -> Result<u64, StorageError> {
        if self.inline {
            sync_once(&self.shared);
        }
        let s = lock(&self.shared);
        if let Some(t) = self.thread.as_mut() {
            // A byte written and not yet counted stays until it is: the loop's poll may see
            // it readable a moment early, never miss it.
            if s.woken > t.drained {
                t.drained = s.woken;
                let mut byte = [0u8; 64];
                while matches!(t.wake_rx.read(&mut byte), Ok(n) if n > 0) {}
            }
        }
        match &s.failed {
            Some((path, kind, msg)) => Err(StorageError::Io(path.clone(), io::Error::new(*kind, msg.clone()))),
            None => Ok(s.done),
        }
    }

    /// Waits until every ticket handed out so far is done (or one failed).
    pub fn wait_all(&mut self) -> Result<(), StorageError> {
        if self.inline {
            return self.done().map(|_| ());
        }
        let mut s = lock(&self.shared);
        while s.done < self.issued && s.failed.is_none() {
            s = self.shared.wait(Signal::Finished, s);
        }
        drop(s);
        self.done().map(|_| ())
    }

    /// The last ticket handed out.
    pub fn issued(&self) -> u64 {
        self.issued
    }

    /// How many times the file was synced (each sync covers every ticket asked for
    /// before it started).
    pub fn syncs(&self) -> u64 {
        lock(&self.shared).syncs
    }

    /// With a sync thread: becomes readable when one of its syncs finishes. Inline syncs
    /// need none (they are done before anyone could wait for them).
    pub fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        self.thread.as_ref().map(|t| t.wake_rx.as_fd())
    }
}

/// What one sync does.
enum Job {
    /// `fdatasync` of a file written through the page cache.
    Sync(Arc<File>, PathBuf),
    /// A direct write of the staged bytes (durable when it returns).
    Write(DirectLog, PathBuf, Vec<u8>),
}

/// Runs one sync (or direct write) covering every ticket asked for so far, on this thread,
/// unless none is due. Inline syncs and a sync thread (of [`SyncMode::Auto`]) both come
/// here; one runs at a time, so direct writes never overlap.
fn sync_once(shared: &Shared) {
    let mut s = lock(shared);
    while s.writing {
        s = shared.wait(Signal::Finished, s);
    }
    if s.requested == s.done || s.failed.is_some() {
        return;
    }
    let ticket = s.requested;
    let job = match s.direct.take() {
        Some((log, path)) => {
            let spare = std::mem::take(&mut s.spare);
            Job::Write(log, path, std::mem::replace(&mut s.staged, spare))
        }
        None => match s.file.clone() {
            Some((file, path)) => Job::Sync(file, path),
            None => {
                // Asked for a write with no segment to write to: the log's bug; never
                // report it done.
                s.failed = Some((PathBuf::new(), io::ErrorKind::Other, "a sync with no log segment".into()));
                shared.notify(Signal::Finished, s);
                return;
            }
        },
    };
    s.writing = true;
    drop(s);
    let (result, path, direct) = match job {
        Job::Sync(file, path) => (file.sync_data(), path, None),
        Job::Write(mut log, path, bytes) => (log.write(&bytes), path.clone(), Some((log, path, bytes))),
    };
    let mut s = lock(shared);
    s.writing = false;
    if let Some((log, path, mut bytes)) = direct {
        s.direct = Some((log, path));
        bytes.clear();
        s.spare = bytes;
    }
    s.syncs += 1;
    match result {
        Ok(()) => s.done = s.done.max(ticket),
        Err(e) => s.failed = Some((path, e.kind(), e.to_string())),
    }
    shared.notify(Signal::Finished, s);
}

fn run(shared: &Shared, wake: &UnixStream) {
    let mut wake = wake;
    loop {
        {
            let mut s = lock(shared);
            while s.requested == s.done && !s.stop && s.failed.is_none() {
                s = shared.wait(Signal::Asked, s);
            }
            if s.stop || s.failed.is_some() {
                return;
            }
        }
        sync_once(shared);
        // The loop may be asleep in poll: wake it (a full socket already will), then
        // count the byte so that the loop knows there is one to read.
        let _ = wake.write(&[1]);
        lock(shared).woken += 1;
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        lock(&self.shared).stop = true;
        self.shared.asked.notify_all();
        self.shared.finished.notify_all();
        if let Some(handle) = self.thread.as_mut().and_then(|t| t.handle.take()) {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_complete_in_order_and_a_waiter_sees_them_all() {
        for mode in [SyncMode::Thread, SyncMode::Inline] {
            tickets_complete_in_order(mode);
        }
    }

    fn tickets_complete_in_order(mode: SyncMode) {
        let path = std::env::temp_dir().join(format!("fleet-syncer-{}-{mode:?}", std::process::id()));
        let file = Arc::new(File::create(&path).unwrap());
        let mut s = Syncer::start(mode).unwrap();
        assert_eq!(s.done().unwrap(), 0);
        let mut last = 0;
        for _ in 0..20 {
            (&*file).write_all(b"record").unwrap();
            last = s.request(&file, &path);
        }
        s.wait_all().unwrap();
        assert_eq!(s.done().unwrap(), last);
        assert_eq!(s.issued(), 20);
        assert!((1..=20).contains(&s.syncs()), "{} syncs for 20 requests", s.syncs());
        drop(s);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn an_inline_sync_runs_when_asked_whether_it_is_done_and_covers_every_request() {
        let path = std::env::temp_dir().join(format!("fleet-syncer-inline-{}", std::process::id()));
        let file = Arc::new(File::create(&path).unwrap());
        let mut s = Syncer::start(SyncMode::Inline).unwrap();
        assert!(s.wake_fd().is_none() && s.thread.is_none());
        (&*file).write_all(b"a").unwrap();
        let first = s.request(&file, &path);
        (&*file).write_all(b"b").unwrap();
        let second = s.request(&file, &path);
        assert_eq!(lock(&s.shared).done, 0, "nothing synced before anyone asks");
        assert_eq!(s.done().unwrap(), second, "one sync covers both requests");
        assert_eq!(s.syncs(), 1);
        assert!(first < second);
        drop(s);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn inline_syncs_wake_nobody_and_a_thread_waiter_is_woken() {
        let path = std::env::temp_dir().join(format!("fleet-syncer-quiet-{}", std::process::id()));
        let file = Arc::new(File::create(&path).unwrap());
        let mut s = Syncer::start(SyncMode::Inline).unwrap();
        for _ in 0..50 {
            (&*file).write_all(b"r").unwrap();
            let ticket = s.request(&file, &path);
            assert_eq!(s.done().unwrap(), ticket);
        }
        s.wait_all().unwrap();
        assert_eq!(s.syncs(), 50);
        assert_eq!(lock(&s.shared).notified, 0, "nobody waits on an inline log: no notification");
        drop(s);
        // A sync thread sleeps until asked: every request must reach it.
        let mut s = Syncer::start(SyncMode::Thread).unwrap();
        for _ in 0..50 {
            // Let the thread fall asleep again, so the request has to wake it.
            std::thread::sleep(std::time::Duration::from_millis(2));
            (&*file).write_all(b"r").unwrap();
            s.request(&file, &path);
            s.wait_all().unwrap();
        }
        assert_eq!(s.done().unwrap(), 50);
        assert!(lock(&s.shared).notified >= 50, "each sleeping thread was woken");
        drop(s);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn an_auto_syncer_syncs_inline_until_told_and_then_its_thread_takes_what_is_left() {
        let path = std::env::temp_dir().join(format!("fleet-syncer-auto-{}", std::process::id()));
        let file = Arc::new(File::create(&path).unwrap());
        let mut s = Syncer::start(SyncMode::Auto).unwrap();
        assert!(s.is_inline() && s.wake_fd().is_some(), "auto starts inline, with a thread ready");
        (&*file).write_all(b"a").unwrap();
        let first = s.request(&file, &path);
        assert_eq!(s.done().unwrap(), first, "inline: done as soon as asked");
        // Let the thread settle into waiting (it may have seen the first request).
        std::thread::sleep(std::time::Duration::from_millis(50));
        // Asked for inline, then handed to the thread before anyone asked whether it is
        // done: the thread must take it up without a further request.
        (&*file).write_all(b"b").unwrap();
        let second = s.request(&file, &path);
        s.set_inline(false);
        assert!(!s.is_inline());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while s.done().unwrap() < second {
            assert!(std::time::Instant::now() < deadline, "the thread never synced ticket {second}");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // Once the thread has counted its wake-up byte, a look at the syncs reads it: a
        // byte left behind would keep the event loop's poll waking for nothing.
        std::thread::sleep(std::time::Duration::from_millis(20));
        s.done().unwrap();
        let mut byte = [0u8; 1];
        let left = s.thread.as_mut().map(|t| t.wake_rx.read(&mut byte));
        assert!(
            matches!(left, Some(Err(ref e)) if e.kind() == io::ErrorKind::WouldBlock),
            "the wake socket was drained: {left:?}"
        );
        // And back: inline again, with the thread idle.
        s.set_inline(true);
        (&*file).write_all(b"c").unwrap();
        let third = s.request(&file, &path);
        assert_eq!(s.done().unwrap(), third);
        s.wait_all().unwrap();
        drop(s);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn direct_writes_from_the_thread_and_inline_never_overlap_and_land_in_order() {
        // /var/tmp is on disk, where O_DIRECT works.
        let base = std::path::Path::new("/var/tmp");
        let base = if base.is_dir() { base.to_path_buf() } else { std::env::temp_dir() };
        let path = base.join(format!("fleet-syncer-direct-{}", std::process::id()));
        std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
        let Some(log) = DirectLog::open(&path, 0, &[]).unwrap() else {
            let _ = std::fs::remove_file(&path);
            eprintln!("no O_DIRECT here: nothing to test");
            return;
        };
        let mut s = Syncer::start(SyncMode::Auto).unwrap();
        s.set_direct(Some((log, path.clone())));
        let mut expected = Vec::new();
        for i in 0..300u32 {
            // Handed to the thread, then at once written inline while the thread may
            // still be writing: the inline write must wait for it, not find no segment.
            s.set_inline(false);
            let bytes = [(i % 251) as u8 + 1; 700];
            s.stage(&bytes);
            expected.extend_from_slice(&bytes);
            s.request_direct();
            s.set_inline(true);
            let bytes = [(i % 13) as u8 + 1; 300];
            s.stage(&bytes);
            expected.extend_from_slice(&bytes);
            let ticket = s.request_direct();
            assert_eq!(s.done().unwrap(), ticket, "round {i}");
        }
        drop(s);
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(&on_disk[..expected.len()], &expected[..]);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn syncers_without_a_thread_stay_inline() {
        let mut s = Syncer::start(SyncMode::Inline).unwrap();
        s.set_inline(false);
        assert!(s.is_inline(), "nothing could run a sync off the caller's thread");
    }

    #[test]
    fn sync_modes_parse_by_name() {
        assert_eq!("auto".parse::<SyncMode>(), Ok(SyncMode::Auto));
        assert_eq!("inline".parse::<SyncMode>(), Ok(SyncMode::Inline));
        assert_eq!("thread".parse::<SyncMode>(), Ok(SyncMode::Thread));
        assert!("fast".parse::<SyncMode>().unwrap_err().contains("inline, thread or auto"));
    }
}
