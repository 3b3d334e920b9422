//! Durable hosts in the KV simulator: each host's disk holds an image and the inputs it
//! logged since ([`fleet_engine::kv::durable`]); a host crashes at random, losing the inputs
//! not yet synced, stays down a while, and comes back as `KvHost::recover` rebuilds it.
//!
//! The disk model is the binding's rule: a step's logged input is appended unsynced, and
//! everything appended is synced before any datagram of a step leaves (group commit makes
//! the real binding sync once per burst, which is the same rule). So a crash loses only
//! inputs whose steps sent nothing (an ack that made progress). With the planted
//! `send-before-sync` bug the datagrams leave first and a crash can lose what a client was
//! told. Every restart with nothing lost must rebuild the host exactly (its image equals
//! the crashed host's); the linearizability check then covers what clients saw.

use fleet_engine::kv::{ImageCursor, KvConfig, Step, Storage};
use fleet_engine::{Endpoint, Instant, Outbox};

use super::{KvSim, SimHost, SIM_DATAGRAM};

/// Bytes a record may need: a datagram or value plus the record's own fields.
const RECORD_BYTES: usize = SIM_DATAGRAM + fleet_engine::kv::KV_RECORD_OVERHEAD_BYTES + 256;
/// Inputs logged before a host's disk is compacted into an image.
const COMPACT_AFTER: usize = 200;

/// One host's disk.
#[derive(Default)]
pub(super) struct Disk {
    image: Vec<Vec<u8>>,
    log: Vec<Vec<u8>>,
    /// Log records `..synced` are durable.
    synced: usize,
}

/// The records of `host`'s image.
pub(super) fn image_of<S: Storage>(host: &SimHost<S>) -> Vec<Vec<u8>> {
    let mut cursor = ImageCursor::default();
    let mut buf = vec![0u8; RECORD_BYTES];
    let mut records = Vec::new();
    while let Some(r) = host.image_record(&mut cursor, &mut buf) {
        match r {
            Ok(r) => records.push(r.to_vec()),
            Err(e) => panic!("an image record did not fit {RECORD_BYTES} bytes: {e:?}"),
        }
    }
    records
}

impl Disk {
    /// A new host's disk: its initial image, synced (a binding writes it before serving).
    pub(super) fn new<S: Storage>(host: &SimHost<S>) -> Disk {
        Disk { image: image_of(host), log: Vec::new(), synced: 0 }
    }
}

impl<S: Storage> KvSim<S> {
    /// True while host `i` is down (crashed and not yet restarted).
    pub(super) fn is_down(&self, i: usize) -> bool {
        self.down_until.get(i).is_some_and(Option::is_some)
    }

    /// After host `i`'s step at `now` with input `input` (`None`: a tick): logs the input if
    /// the step changed the state and, unless the planted bug skips it, syncs everything
    /// logged before the step's datagrams leave; compacts a long log into an image.
    pub(super) fn persist(
        &mut self,
        i: usize,
        now: Instant,
        input: Option<(Endpoint, &[u8])>,
        step: Step,
        out: &Outbox<'_>,
    ) {
        let Some(disk) = self.disks.get_mut(i) else { return };
        if step.log_input {
            let mut buf = vec![0u8; RECORD_BYTES];
            match self.hosts[i].input_record(now, input, &mut buf) {
                Ok(r) => disk.log.push(r.to_vec()),
                Err(e) => self.violations.push(format!("host {i}: an input record did not fit: {e:?}")),
            }
        }
        if !out.is_empty() && !self.options.send_before_sync {
            disk.synced = disk.log.len();
        }
        if disk.log.len() >= COMPACT_AFTER && disk.synced == disk.log.len() {
            // The image replaces the log (written aside and renamed in, as a binding does).
            disk.image = image_of(&self.hosts[i]);
            disk.log.clear();
            disk.synced = 0;
        }
    }

    /// Crashes a random host that is up: its unsynced inputs are lost from a random point
    /// on, and it is rebuilt from its disk now (what a restart will find) and kept down for
    /// 1-50 ms. Steps nothing if every host is down.
    pub(super) fn crash_host(&mut self) {
        let up: Vec<usize> = (0..self.hosts.len()).filter(|&i| !self.is_down(i)).collect();
        if up.is_empty() {
            return;
        }
        let i = up[self.rng.below(up.len() as u64) as usize];
        let disk = &mut self.disks[i];
        let unsynced = disk.log.len() - disk.synced;
        let keep = disk.synced + self.rng.below(unsynced as u64 + 1) as usize;
        let lost = disk.log.len() - keep;
        disk.log.truncate(keep);
        disk.synced = keep;
        let mut config = KvConfig::<4>::new(&self.host_eps).expect("at most 4 hosts");
        config.params = self.options.params;
        let records: Vec<&[u8]> = disk.image.iter().chain(&disk.log).map(Vec::as_slice).collect();
        let store = (self.new_store)();
        let mut out = self.outbox.outbox();
        match SimHost::recover(config, i, store, records, &mut out) {
            Ok(back) => {
                if lost == 0 && image_of(&back) != image_of(&self.hosts[i]) {
                    self.violations.push(format!("host {i} rebuilt from its disk differs from the host that crashed"));
                }
                *self.hosts[i] = back;
            }
            Err(e) => self.violations.push(format!("host {i} could not be rebuilt from its disk: {e}")),
        }
        self.crashes += 1;
        self.lost_inputs += lost as u64;
        self.down_until[i] = Some(self.now + self.rng.range(1_000, 50_000));
    }

    /// Restarts a random host that is up without its state (its disk lost), while no other
    /// host is joining: it joins as a new incarnation (or, with the planted bug, takes up
    /// its initial ranges at once).
    pub(super) fn wipe_host(&mut self, now: Instant) {
        if self.hosts.iter().any(|h| h.joining().is_some()) {
            return;
        }
        let up: Vec<usize> = (0..self.hosts.len()).filter(|&i| !self.is_down(i)).collect();
        if up.is_empty() {
            return;
        }
        let i = up[self.rng.below(up.len() as u64) as usize];
        let mut config = KvConfig::<4>::new(&self.host_eps).expect("at most 4 hosts");
        config.params = self.options.params;
        // Above every seqno a client used with the old incarnation and every earlier nonce.
        let nonce = self.now + 1_000_000;
        let store = (self.new_store)();
        let host = match self.options.claims_at_once {
            true => SimHost::new(config, i, store),
            false => SimHost::new_joining(config, i, store, nonce, now),
        };
        match host {
            Ok(h) => {
                self.disks[i] = Disk::new(&h);
                *self.hosts[i] = h;
                self.wipes += 1;
            }
            Err(e) => self.violations.push(format!("host {i} could not restart without state: {e:?}")),
        }
    }

    /// Brings back every host whose downtime is over (all of them when draining).
    pub(super) fn restart_due_hosts(&mut self) -> bool {
        let mut any = false;
        for d in self.down_until.iter_mut() {
            if d.is_some_and(|t| t <= self.now || self.quiesce) {
                *d = None;
                any = true;
            }
        }
        any
    }
}
