//! A host's durable image and log replay ([`crate::kv::durable`] has the design): reading
//! every field out as records, rebuilding a host from them, and replaying logged inputs.

use super::KvHost;
use crate::endpoint::Endpoint;
use crate::kv::delegation::{DelegationMap, Entry, HostId};
use crate::kv::durable::*;
use crate::kv::join::{HostMeta, Join};
use crate::kv::reliable::evict::Closed;
use crate::kv::storage::Storage;
use crate::kv::KvConfig;
use crate::outbox::Outbox;
use crate::time::Instant;
use crate::wire::{self, Bytes, EncodeError, Protocol};

impl<S: Storage, const H: usize, const M: usize, const P: usize, const U: usize, const D: usize>
    KvHost<S, H, M, P, U, D>
{
    /// Logged steps so far: the number of the last input a durable binding logged.
    pub fn logged_steps(&self) -> u64 {
        self.logged_steps
    }

    /// The `now` of the last logged step (zero if none): a restarted binding's clock goes
    /// on from here.
    pub fn last_logged_now(&self) -> Instant {
        self.last_logged_now
    }

    /// The log record of the step that just ran, whose input was the datagram `datagram`
    /// from `from` (`None`: a tick) at `now`. Call it only when the step's
    /// [`Step::log_input`](super::Step::log_input) is set; `out` needs the datagram's
    /// length plus [`KV_RECORD_OVERHEAD_BYTES`].
    pub fn input_record<'b>(
        &self,
        now: Instant,
        input: Option<(Endpoint, &[u8])>,
        out: &'b mut [u8],
    ) -> Result<&'b [u8], EncodeError> {
        let step = self.logged_steps;
        let record = match input {
            Some((from, datagram)) => KvRecord::Datagram { step, now, from, datagram: Bytes(datagram) },
            None => KvRecord::Tick { step, now },
        };
        encode(&record, out)
    }

    /// The next record of this host's image after `cursor` (advanced), or `None` when the
    /// image is complete. `out` needs the largest value or message plus
    /// [`KV_RECORD_OVERHEAD_BYTES`]. The host must not step between calls of one image (a
    /// binding images a frozen copy).
    pub fn image_record<'b>(
        &self,
        cursor: &mut ImageCursor,
        out: &'b mut [u8],
    ) -> Option<Result<&'b [u8], EncodeError>> {
        let record = loop {
            let i = cursor.index;
            cursor.index += 1;
            let found = match cursor.section {
                SECTION_START => (i == 0).then(|| {
                    let (send_floor, retransmits, first_seqno) = self.rel.floors();
                    KvRecord::ImageStart(ImageHeader {
                        cluster: self.cluster,
                        me: self.me,
                        steps: self.logged_steps,
                        last_now: self.last_logged_now,
                        next_transfer: self.next_transfer,
                        reserved_pairs: self.reserved_pairs as u64,
                        send_floor,
                        first_seqno,
                        retransmits,
                    })
                }),
                SECTION_JOIN => match (&self.join, i) {
                    (Some(j), 0) => Some(KvRecord::Joining { nonce: j.nonce, retry_at: j.retry_at }),
                    (Some(j), i) => {
                        j.hosts.get(i - 1).map(|p| KvRecord::JoinHost { host: (i - 1) as HostId, progress: *p })
                    }
                    (None, _) => None,
                },
                SECTION_SEEN => match self.host_meta.get(i) {
                    Some(m) if *m == HostMeta::default() => continue,
                    Some(m) => Some(KvRecord::HostMeta { host: i as HostId, meta: *m }),
                    None => None,
                },
                SECTION_MAP => self.map.entries().get(i).map(|e| KvRecord::MapRun(*e)),
                SECTION_INCOMING => match self.incoming.get(i) {
                    Some(Some(inc)) => Some(KvRecord::Incoming { from: i as HostId, incoming: *inc }),
                    Some(None) => continue,
                    None => None,
                },
                SECTION_COMPLETED => match self.completed.get(i) {
                    Some(0) => continue,
                    Some(t) => Some(KvRecord::Completed { from: i as HostId, transfer: *t }),
                    None => None,
                },
                SECTION_OUTGOING => self.outgoing.get(i).map(|o| KvRecord::Outgoing(*o)),
                SECTION_PEERS => self.rel.peer(i).map(|p| KvRecord::Peer { index: i as u32, peer: *p }),
                SECTION_PENDING => self.rel.pending_at(i).map(|(peer, seqno, body)| KvRecord::Pending {
                    peer,
                    seqno,
                    body: Bytes(body),
                }),
                SECTION_CLOSED => match self.rel.closed_at(i) {
                    Some(c) if c == Closed::NONE => continue,
                    Some(floors) => Some(KvRecord::Closed { bucket: i as u32, floors }),
                    None => None,
                },
                SECTION_PAIRS => {
                    let from = match (i, cursor.key) {
                        (0, _) => Some(0),
                        (_, next) => next,
                    };
                    match from.and_then(|k| self.store.next_at_or_after(k)) {
                        Some((key, value)) => {
                            cursor.key = key.checked_add(1);
                            Some(KvRecord::Pair { key, value: Bytes(value) })
                        }
                        None => None,
                    }
                }
                SECTION_END => (i == 0).then_some(KvRecord::ImageEnd { records: cursor.records }),
                _ => return None,
            };
            match found {
                Some(record) => break record,
                None => {
                    cursor.section += 1;
                    cursor.index = 0;
                    if cursor.section >= SECTION_DONE {
                        return None;
                    }
                }
            }
        };
        cursor.records += 1;
        Some(encode(&record, out))
    }

    /// Host `me` of `config` rebuilt from its records: an image (as [`KvHost::image_record`]
    /// wrote it) and then the inputs logged after it, which are replayed through `out`
    /// (cleared after each; what they sent is gone). `store` must be empty. Inputs the image
    /// includes are skipped; a missing input, an inconsistent image or an input that no
    /// longer changes the state is an error, and nothing is served from it.
    pub fn recover<'r>(
        config: KvConfig<H>,
        me: usize,
        store: S,
        records: impl IntoIterator<Item = &'r [u8]>,
        out: &mut Outbox<'_>,
    ) -> Result<Self, RecoverError> {
        let mut recovery = KvRecovery::new(config, me, store)?;
        for bytes in records {
            recovery.record(bytes, out)?;
        }
        recovery.finish()
    }

    /// Puts one image record back; returns its section (sections come in order).
    fn restore_record(
        &mut self,
        stage: Option<u8>,
        record: &KvRecord<'_>,
        entries: &mut heapless::Vec<Entry, M>,
    ) -> Result<u8, RecoverError> {
        let bad = RecoverError::Malformed;
        let section = match record {
            KvRecord::ImageStart(_) => SECTION_START,
            KvRecord::Joining { .. } | KvRecord::JoinHost { .. } => SECTION_JOIN,
            KvRecord::HostMeta { .. } => SECTION_SEEN,
            KvRecord::MapRun(_) => SECTION_MAP,
            KvRecord::Incoming { .. } => SECTION_INCOMING,
            KvRecord::Completed { .. } => SECTION_COMPLETED,
            KvRecord::Outgoing(_) => SECTION_OUTGOING,
            KvRecord::Peer { .. } => SECTION_PEERS,
            KvRecord::Pending { .. } => SECTION_PENDING,
            KvRecord::Closed { .. } => SECTION_CLOSED,
            KvRecord::Pair { .. } => SECTION_PAIRS,
            _ => return Err(bad("a log record inside the image")),
        };
        match stage {
            None if section != SECTION_START => return Err(bad("the image does not begin with its header")),
            Some(_) if section == SECTION_START => return Err(bad("a second image header")),
            Some(s) if section < s => return Err(bad("image records out of order")),
            _ => {}
        }
        match *record {
            KvRecord::ImageStart(h) => {
                if h.cluster != self.cluster || h.me != self.me {
                    return Err(RecoverError::OtherHost);
                }
                self.logged_steps = h.steps;
                self.last_logged_now = h.last_now;
                self.next_transfer = h.next_transfer;
                self.reserved_pairs = usize::try_from(h.reserved_pairs).map_err(|_| bad("reserved pairs"))?;
                self.rel.restore_floors(h.send_floor, h.retransmits, h.first_seqno);
            }
            KvRecord::Joining { nonce, retry_at } => {
                if self.join.is_some() {
                    return Err(bad("two join records"));
                }
                self.join = Some(Join { nonce, retry_at, hosts: heapless::Vec::new() });
            }
            KvRecord::JoinHost { host, progress } => {
                let join = self.join.as_mut().ok_or(bad("join answers without a join"))?;
                if usize::from(host) != join.hosts.len() {
                    return Err(bad("join answers out of order"));
                }
                join.hosts.push(progress).map_err(|_| bad("join answers from too many hosts"))?;
            }
            KvRecord::HostMeta { host, meta } => {
                *self.host_meta.get_mut(usize::from(host)).ok_or(bad("host memory of a host not configured"))? = meta
            }
            KvRecord::MapRun(e) => entries.push(e).map_err(|_| bad("more delegation runs than the map holds"))?,
            KvRecord::Incoming { from, incoming } => {
                *self.incoming.get_mut(usize::from(from)).ok_or(bad("incoming transfer from no host"))? = Some(incoming)
            }
            KvRecord::Completed { from, transfer } => {
                *self.completed.get_mut(usize::from(from)).ok_or(bad("completed transfer from no host"))? = transfer
            }
            KvRecord::Outgoing(o) => self.outgoing.push(o).map_err(|_| bad("too many outgoing transfers"))?,
            KvRecord::Peer { index, peer } => self.rel.restore_peer(index as usize, peer).map_err(bad)?,
            KvRecord::Pending { peer, seqno, body } => self.rel.restore_pending(peer, seqno, body.0).map_err(bad)?,
            KvRecord::Closed { bucket, floors } => self.rel.restore_closed(bucket as usize, floors).map_err(bad)?,
            KvRecord::Pair { key, value } => {
                if self.store.get(key).is_some() {
                    return Err(bad("a key appears twice"));
                }
                self.store.set(key, value.0).map_err(|_| bad("a pair does not fit the store"))?
            }
            _ => return Err(bad("a log record inside the image")),
        }
        Ok(section)
    }

    /// Installs the map and checks the rebuilt host.
    fn finish_image(&mut self, entries: &[Entry]) -> Result<(), RecoverError> {
        if self.join.as_ref().is_some_and(|j| j.hosts.len() != self.config.n()) {
            return Err(RecoverError::Malformed("join answers missing"));
        }
        self.map = DelegationMap::from_entries(entries, self.config.n()).map_err(RecoverError::Malformed)?;
        self.check_invariants().map_err(RecoverError::Malformed)
    }

    /// Replays one logged input record (see [`KvHost::recover`]); `out` is cleared after.
    pub fn replay(&mut self, record: &[u8], out: &mut Outbox<'_>) -> Result<Replayed, RecoverError> {
        let record = wire::decode::<KvRecord<'_>>(Protocol::KvDurable, record)
            .map_err(|error| RecoverError::Undecodable { record: self.logged_steps, error })?;
        self.replay_record(&record, out)
    }

    fn replay_record(&mut self, record: &KvRecord<'_>, out: &mut Outbox<'_>) -> Result<Replayed, RecoverError> {
        let step = match *record {
            KvRecord::Datagram { step, .. } | KvRecord::Tick { step, .. } => step,
            _ => return Err(RecoverError::Malformed("an image record among the logged inputs")),
        };
        if step <= self.logged_steps {
            return Ok(Replayed::Covered);
        }
        let expected = self.logged_steps.saturating_add(1);
        if step != expected {
            return Err(RecoverError::Gap { expected, found: step });
        }
        let done = match *record {
            KvRecord::Datagram { now, from, datagram, .. } => self.handle(now, from, datagram.0, out),
            KvRecord::Tick { now, .. } => self.tick(now, out),
            _ => return Err(RecoverError::Malformed("an image record among the logged inputs")),
        };
        out.clear();
        // A logged step always changes the state; one that no longer does is another host's
        // or another build's.
        if !done.log_input {
            return Err(RecoverError::Diverged { step });
        }
        debug_assert_eq!(self.logged_steps, step);
        Ok(Replayed::Applied)
    }
}

/// A host rebuilt one record at a time: [`KvHost::recover`] for a binding that reads its
/// storage record by record into one buffer (a flash queue on a microcontroller). Feed
/// every record in order ([`KvRecovery::record`]), then [`KvRecovery::finish`]; the rules
/// and errors are [`KvHost::recover`]'s. After an error the recovery is spent: drop it.
pub struct KvRecovery<S: Storage, const H: usize, const M: usize, const P: usize, const U: usize, const D: usize> {
    host: KvHost<S, H, M, P, U, D>,
    entries: heapless::Vec<Entry, M>,
    /// The section of the last image record; `Some(SECTION_DONE)` once the image ended.
    stage: Option<u8>,
    in_image: u64,
    /// Records taken so far: the index errors name.
    taken: u64,
}

impl<S: Storage, const H: usize, const M: usize, const P: usize, const U: usize, const D: usize>
    KvRecovery<S, H, M, P, U, D>
{
    /// Host `me` of `config` about to be rebuilt into `store`, which must be empty.
    pub fn new(config: KvConfig<H>, me: usize, store: S) -> Result<Self, RecoverError> {
        if !store.is_empty() {
            return Err(RecoverError::Malformed("recovery needs an empty store"));
        }
        let host = KvHost::new(config, me, store).map_err(RecoverError::Config)?;
        Ok(KvRecovery { host, entries: heapless::Vec::new(), stage: None, in_image: 0, taken: 0 })
    }

    /// The next record: the image's, then the logged inputs, which are replayed through
    /// `out` (cleared after each).
    pub fn record(&mut self, bytes: &[u8], out: &mut Outbox<'_>) -> Result<(), RecoverError> {
        let n = self.taken;
        let record = wire::decode::<KvRecord<'_>>(Protocol::KvDurable, bytes)
            .map_err(|error| RecoverError::Undecodable { record: n, error })?;
        self.taken += 1;
        if self.stage == Some(SECTION_DONE) {
            return self.host.replay_record(&record, out).map(|_| ());
        }
        match record {
            KvRecord::ImageEnd { records } => {
                if records != self.in_image || self.stage.is_none() {
                    return Err(RecoverError::Malformed("the image's record count is wrong"));
                }
                self.host.finish_image(&self.entries)?;
                self.stage = Some(SECTION_DONE);
            }
            _ => {
                self.stage = Some(self.host.restore_record(self.stage, &record, &mut self.entries)?);
                self.in_image += 1;
            }
        }
        Ok(())
    }

    /// The rebuilt host; an error if the image never ended.
    pub fn finish(self) -> Result<KvHost<S, H, M, P, U, D>, RecoverError> {
        match self.stage == Some(SECTION_DONE) {
            true => Ok(self.host),
            false => Err(RecoverError::Malformed("the image is incomplete")),
        }
    }
}
