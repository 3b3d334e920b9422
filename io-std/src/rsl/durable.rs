//! Durable mode (`fleet rsl serve --data-dir DIR`): a replica whose every durable record goes
//! to a write-ahead log ([`crate::storage::wal`]), synced once per burst before the burst's
//! datagrams are sent.

use std::path::Path;

use fleet_engine::rsl::durable::DURABLE_RECORD_OVERHEAD_BYTES;
use fleet_engine::rsl::{App, Replica, Step};
use fleet_engine::{Endpoint, Instant, Outbox};

use super::replica::{check_id, status_line, StdReplica};
use crate::capacity::SERVER_DATAGRAM_BYTES;
use crate::config::RslSetup;
use crate::error::ServerError;
use crate::net::event_loop::Host;
use crate::storage::wal::Wal;

/// A replica in durable mode: every durable record goes to a write-ahead log, synced
/// once per burst before the burst's datagrams are sent.
pub struct DurableReplica<A: App> {
    replica: Box<StdReplica<A>>,
    wal: Wal,
    record: Vec<u8>,
    encode_failed: bool,
}

impl<A: App> DurableReplica<A> {
    /// Opens `dir` for replica `id` of `setup` and replays its log, with `app` as the
    /// application (empty: its state comes back from the other replicas by state transfer).
    /// A first start when the directory is new or empty, a restart otherwise.
    pub fn open(setup: &RslSetup, id: usize, dir: &Path, app: A, now: Instant) -> Result<Self, ServerError> {
        check_id(setup, id)?;
        let addrs: Vec<String> = setup.addrs.iter().map(|a| a.to_string()).collect();
        let identity = format!("replica {id} of {}: {}", addrs.len(), addrs.join(" "));
        let (wal, found) = Wal::open(dir, &identity).map_err(ServerError::Storage)?;
        if found.dropped_tail_bytes > 0 {
            tracing::warn!(
                "{}: cut off a torn log tail of {} bytes (a crash during a write; never acknowledged)",
                dir.display(),
                found.dropped_tail_bytes
            );
        }
        let records = found.records.iter().map(Vec::as_slice);
        let replica = StdReplica::recover(setup.config.clone(), id, app, now, records)
            .map(Box::new)
            .map_err(|e| ServerError::Recover(dir.to_path_buf(), e.to_string()))?;
        if !found.records.is_empty() {
            let s = replica.status();
            tracing::info!(
                "replica {id} restarted from {} durable records: promise ({},{}), truncation {}; \
                 fetching the application state from the other replicas",
                found.records.len(),
                s.max_bal.seqno,
                s.max_bal.proposer,
                s.log_truncation_point
            );
        }
        let record = vec![0u8; SERVER_DATAGRAM_BYTES + DURABLE_RECORD_OVERHEAD_BYTES];
        Ok(DurableReplica { replica, wal, record, encode_failed: false })
    }

    /// The replica.
    pub fn replica(&self) -> &StdReplica<A> {
        &self.replica
    }

    fn persist(&mut self, step: Step) {
        if !step.durable_state_changed {
            return;
        }
        match self.replica.durable_record(&step, &mut self.record) {
            Ok(r) => self.wal.append(r),
            // The buffer holds the largest record: an engine bug if ever seen. Fail stop.
            Err(_) => self.encode_failed = true,
        }
    }
}

impl<A: App> Host for DurableReplica<A> {
    fn handle(&mut self, now: Instant, from: Endpoint, datagram: &[u8], out: &mut Outbox<'_>) {
        let step = Replica::handle(self.replica.as_mut(), now, from, datagram, out);
        self.persist(step);
    }
    fn tick(&mut self, now: Instant, out: &mut Outbox<'_>) {
        let step = Replica::tick(self.replica.as_mut(), now, out);
        self.persist(step);
    }
    fn next_deadline(&self) -> Instant {
        Replica::next_deadline(self.replica.as_ref())
    }
    fn stats_line(&self) -> String {
        format!("{} fsyncs={}", status_line(&self.replica), self.wal.syncs())
    }
    fn commit(&mut self) -> Result<(), ServerError> {
        if self.encode_failed {
            return Err(ServerError::Config("a durable record did not fit its buffer".into()));
        }
        self.wal.commit().map_err(ServerError::Storage)?;
        if self.wal.wants_compaction() {
            let n = self.replica.durable_image_len();
            let mut image = Vec::with_capacity(n);
            for i in 0..n {
                let r = self.replica.durable_image_record(i, &mut self.record);
                let r = r.map_err(|_| ServerError::Config("a durable record did not fit its buffer".into()))?;
                image.push(r.to_vec());
            }
            self.wal.compact(&image).map_err(ServerError::Storage)?;
        }
        Ok(())
    }
}
