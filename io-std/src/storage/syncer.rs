//! A sync thread: `fdatasync` off the event loop, so the loop keeps receiving and handling
//! while the disk works, and the next sync covers everything written in the meantime (group
//! commit that grows with the load).
//!
//! The loop writes records to the file, then asks for a sync ([`Syncer::request`]) and gets a
//! ticket; datagrams that depend on those records wait for that ticket. The thread syncs the
//! file as it was at the request (or later: a sync covers every byte written before it
//! starts), marks the ticket done ([`Syncer::done`]), and writes a byte to a socket the loop
//! polls ([`Syncer::wake_fd`]), so a waiting loop wakes at once.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use super::dir::StorageError;

#[derive(Default)]
struct State {
    /// The file to sync, and the highest ticket requested for it.
    file: Option<(Arc<File>, PathBuf)>,
    requested: u64,
    /// The highest ticket whose sync finished.
    done: u64,
    /// A sync failed: every later ticket fails.
    failed: Option<(PathBuf, io::ErrorKind, String)>,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

/// A sync thread for one log.
pub struct Syncer {
    shared: Arc<Shared>,
    wake_rx: UnixStream,
    thread: Option<JoinHandle<()>>,
    /// The last ticket handed out.
    issued: u64,
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer").field("issued", &self.issued).finish_non_exhaustive()
    }
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    // A panic while holding the lock cannot happen (no code in it panics); recover anyway.
    shared.state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Syncer {
    /// Starts the thread.
    pub fn start() -> io::Result<Syncer> {
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), changed: Condvar::new() });
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let thread_shared = shared.clone();
        let thread =
            std::thread::Builder::new().name("wal-sync".into()).spawn(move || run(&thread_shared, &wake_tx))?;
        Ok(Syncer { shared, wake_rx, thread: Some(thread), issued: 0 })
    }

    /// Asks for a sync of `file` (everything written to it so far); returns the ticket.
    pub fn request(&mut self, file: &Arc<File>, path: &std::path::Path) -> u64 {
        self.issued += 1;
        let mut s = lock(&self.shared);
        s.file = Some((file.clone(), path.to_path_buf()));
        s.requested = self.issued;
        drop(s);
        self.shared.changed.notify_all();
        self.issued
    }

    /// The highest ticket whose sync finished, or the failure of a sync.
    pub fn done(&mut self) -> Result<u64, StorageError> {
        let mut byte = [0u8; 64];
        while matches!(self.wake_rx.read(&mut byte), Ok(n) if n > 0) {}
        let s = lock(&self.shared);
        match &s.failed {
            Some((path, kind, msg)) => Err(StorageError::Io(path.clone(), io::Error::new(*kind, msg.clone()))),
            None => Ok(s.done),
        }
    }

    /// Waits until every ticket handed out so far is done (or one failed).
    pub fn wait_all(&mut self) -> Result<(), StorageError> {
        let mut s = lock(&self.shared);
        while s.done < self.issued && s.failed.is_none() {
            s = self.shared.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        drop(s);
        self.done().map(|_| ())
    }

    /// The last ticket handed out.
    pub fn issued(&self) -> u64 {
        self.issued
    }

    /// Becomes readable when a sync finishes.
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake_rx.as_fd()
    }
}

fn run(shared: &Shared, wake: &UnixStream) {
    let mut wake = wake;
    loop {
        let (file, path, ticket) = {
            let mut s = lock(shared);
            while s.requested == s.done && !s.stop && s.failed.is_none() {
                s = shared.changed.wait(s).unwrap_or_else(|p| p.into_inner());
            }
            if s.stop || s.failed.is_some() {
                return;
            }
            let Some((file, path)) = s.file.clone() else { return };
            (file, path, s.requested)
        };
        let result = file.sync_data();
        let mut s = lock(shared);
        match result {
            Ok(()) => s.done = s.done.max(ticket),
            Err(e) => s.failed = Some((path, e.kind(), e.to_string())),
        }
        drop(s);
        shared.changed.notify_all();
        // The loop may be asleep in poll: wake it (a full socket already will).
        let _ = wake.write(&[1]);
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        lock(&self.shared).stop = true;
        self.shared.changed.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_complete_in_order_and_a_waiter_sees_them_all() {
        let path = std::env::temp_dir().join(format!("fleet-syncer-{}", std::process::id()));
        let file = Arc::new(File::create(&path).unwrap());
        let mut s = Syncer::start().unwrap();
        assert_eq!(s.done().unwrap(), 0);
        let mut last = 0;
        for _ in 0..20 {
            (&*file).write_all(b"record").unwrap();
            last = s.request(&file, &path);
        }
        s.wait_all().unwrap();
        assert_eq!(s.done().unwrap(), last);
        assert_eq!(s.issued(), 20);
        drop(s);
        let _ = std::fs::remove_file(&path);
    }
}
