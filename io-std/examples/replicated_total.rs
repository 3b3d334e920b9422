//! Replicate your own application with Fleet: a running total kept by three replicas.
//!
//! Run it with `cargo run -p fleet-io-std --example replicated_total`. It starts three
//! replicas of `Total` on free 127.0.0.1 ports (threads of this process), adds to the total
//! through a blocking client, stops one replica, adds again (two of three still form a
//! quorum), and prints each reply.

use std::error::Error;
use std::time::Duration;

use fleet_engine::rsl::app::{App, SnapshotError};
use fleet_io_std::config::ClusterFile;
use fleet_io_std::rsl::{self, RslClient, ServeOptions};

/// The replicated state: a total. A request is 8 big-endian bytes to add; the reply is the
/// new total. `apply` must be deterministic: every replica applies the same requests in the
/// same order and must reach the same state.
#[derive(Clone, Copy, Default)]
struct Total(u64);

impl App for Total {
    /// A snapshot arriving from another replica is assembled here before it replaces the
    /// live state.
    type Staging = [u8; 8];
    /// A point-in-time copy of the state, read while the total moves on (a copy is cheap
    /// here; a large state would use a persistent data structure).
    type Snapshot = u64;

    fn apply(&mut self, request: &[u8], reply: &mut [u8]) -> usize {
        let add = <[u8; 8]>::try_from(request).map_or(0, u64::from_be_bytes);
        self.0 = self.0.wrapping_add(add);
        match reply.get_mut(..8) {
            Some(r) => {
                r.copy_from_slice(&self.0.to_be_bytes());
                8
            }
            None => 0,
        }
    }

    fn new_snapshot() -> u64 {
        0
    }

    fn snapshot(&self, into: &mut u64) {
        *into = self.0;
    }

    fn snapshot_len(_snapshot: &u64) -> u64 {
        8
    }

    fn snapshot_read(snapshot: &u64, offset: u64, out: &mut [u8]) -> usize {
        let bytes = snapshot.to_be_bytes();
        let from = usize::try_from(offset).unwrap_or(8).min(8);
        let n = out.len().min(8 - from);
        out[..n].copy_from_slice(&bytes[from..from + n]);
        n
    }

    fn new_staging() -> [u8; 8] {
        [0; 8]
    }

    fn stage(staging: &mut [u8; 8], offset: u64, bytes: &[u8]) -> Result<(), SnapshotError> {
        let start = usize::try_from(offset).map_err(|_| SnapshotError::OutOfRange)?;
        let slot = staging.get_mut(start..start + bytes.len()).ok_or(SnapshotError::OutOfRange)?;
        slot.copy_from_slice(bytes);
        Ok(())
    }

    fn install(&mut self, staging: &mut [u8; 8], len: u64) -> Result<(), SnapshotError> {
        if len != 8 {
            return Err(SnapshotError::Corrupt);
        }
        self.0 = u64::from_be_bytes(*staging);
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    // Three free ports; a real deployment writes its replicas' addresses in a file.
    let ports: Vec<u16> = (0..3)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).map(|a| a.port()))
        .collect::<Result<_, _>>()?;
    let replicas: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    let setup = ClusterFile::parse(&format!("[rsl]\nreplicas = [{}]\n", replicas.join(", ")))?.rsl()?;

    // One replica per id; in production each runs in its own process on its own machine,
    // usually with `ServeOptions::data_dir` set (durable mode).
    let mut servers = Vec::new();
    for id in 0..3 {
        servers.push(rsl::spawn(&setup, id, Total::default(), &ServeOptions::default())?);
    }

    let mut client = RslClient::connect(&setup)?;
    let timeout = Duration::from_secs(5);
    for add in [5u64, 10, 27] {
        let reply = client.call(&add.to_be_bytes(), timeout)?;
        let total = u64::from_be_bytes(reply.as_slice().try_into()?);
        println!("added {add}: total {total}");
    }
    // A replica stops; the other two are a quorum and keep serving.
    if let Some(stopped) = servers.pop() {
        stopped.stop()?;
    }
    let reply = client.call(&100u64.to_be_bytes(), timeout)?;
    let total = u64::from_be_bytes(reply.as_slice().try_into()?);
    println!("added 100 with one replica stopped: total {total}");
    if total != 142 {
        return Err(format!("expected a total of 142, got {total}").into());
    }
    Ok(())
}
