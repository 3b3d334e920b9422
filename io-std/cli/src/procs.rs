//! Child server processes for `fleet demo` and the multi-process tests: started from this
//! executable, logged to files, and always killed when the guard drops.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Server processes that are killed (SIGKILL) and reaped when this value drops.
#[derive(Debug, Default)]
pub struct Children {
    procs: Vec<Option<Child>>,
}

impl Children {
    /// Starts `exe args...`, with stdout and stderr going to `log`.
    pub fn spawn(&mut self, exe: &Path, args: &[&str], log: &Path) -> std::io::Result<usize> {
        let file = std::fs::File::create(log)?;
        let err = file.try_clone()?;
        let child = Command::new(exe).args(args).stdin(Stdio::null()).stdout(file).stderr(err).spawn()?;
        self.procs.push(Some(child));
        Ok(self.procs.len() - 1)
    }

    /// Kills child `i` with SIGKILL (no chance to clean up) and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(Some(mut c)) = self.procs.get_mut(i).map(Option::take) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes child `i` (SIGSTOP), as a long GC pause or a stalled VM would.
    pub fn pause(&mut self, i: usize) -> std::io::Result<()> {
        self.signal(i, nix::sys::signal::Signal::SIGSTOP)
    }

    /// Lets a frozen child `i` run again (SIGCONT).
    pub fn resume(&mut self, i: usize) -> std::io::Result<()> {
        self.signal(i, nix::sys::signal::Signal::SIGCONT)
    }

    fn signal(&mut self, i: usize, sig: nix::sys::signal::Signal) -> std::io::Result<()> {
        let Some(Some(c)) = self.procs.get(i) else {
            return Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("no child {i}")));
        };
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        nix::sys::signal::kill(pid, sig).map_err(std::io::Error::from)
    }

    /// Whether child `i` is still running.
    pub fn alive(&mut self, i: usize) -> bool {
        match self.procs.get_mut(i) {
            Some(Some(c)) => matches!(c.try_wait(), Ok(None)),
            _ => false,
        }
    }
}

impl Children {
    /// Kills (SIGKILL) and reaps every child still running.
    pub fn kill_all(&mut self) {
        for i in 0..self.procs.len() {
            self.kill(i);
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// `n` UDP ports on 127.0.0.1 that were free a moment ago (bound, then released).
pub fn free_udp_ports(n: usize) -> std::io::Result<Vec<u16>> {
    use std::sync::atomic::{AtomicU32, Ordering};
    // Below Linux's ephemeral range (32768 and up): a port handed out here stays free for the
    // server that will bind it, instead of being taken meanwhile by some client's socket
    // bound to port 0 (a test that restarts a server rebinds its port, too). Processes
    // start at different offsets; each port is checked free by binding it.
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    let mut ports = Vec::with_capacity(n);
    for _ in 0..SPAN {
        if ports.len() == n {
            return Ok(ports);
        }
        let port = (FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            ports.push(port);
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, "no free UDP port in 20000-31999"))
}

/// A fresh directory under the system temp dir for configs, logs and data directories.
///
/// It is removed when the guard drops, unless the thread is panicking: a failed test keeps
/// its logs for whoever reads the failure, a passing one leaves nothing (durable tests write
/// hundreds of megabytes). [`ScratchDir::keep`] keeps it for good.
pub fn scratch_dir(tag: &str) -> std::io::Result<ScratchDir> {
    let path = std::env::temp_dir().join(format!("fleet-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&path)?;
    Ok(ScratchDir { path, keep: false })
}

/// A scratch directory removed on drop (see [`scratch_dir`]); it dereferences to its path.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
    keep: bool,
}

impl ScratchDir {
    /// Keeps the directory after this guard drops and returns its path.
    pub fn keep(mut self) -> PathBuf {
        self.keep = true;
        self.path.clone()
    }
}

impl std::ops::Deref for ScratchDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for ScratchDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if self.keep || std::thread::panicking() {
            return;
        }
        // Best effort: a server still writing may race the removal; what it leaves is small.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_dir_is_removed_on_drop_and_kept_on_panic_or_keep() {
        let dir = scratch_dir("scratch-drop").unwrap();
        std::fs::write(dir.join("f"), b"x").unwrap();
        let path = dir.to_path_buf();
        drop(dir);
        assert!(!path.exists(), "{} should be removed", path.display());

        let kept = scratch_dir("scratch-keep").unwrap().keep();
        assert!(kept.exists());
        std::fs::remove_dir_all(&kept).unwrap();

        let panicked = std::thread::spawn(|| {
            let dir = scratch_dir("scratch-panic").unwrap();
            std::fs::write(dir.join("log"), b"why").unwrap();
            panic!("a failing test keeps its directory");
        });
        assert!(panicked.join().is_err());
        let path = std::env::temp_dir().join(format!("fleet-scratch-panic-{}", std::process::id()));
        assert!(path.join("log").exists(), "a panicking test's directory must stay");
        std::fs::remove_dir_all(&path).unwrap();
    }
}
