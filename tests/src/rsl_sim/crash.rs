//! Durability, crash and restart: each replica's durable log (written before its datagrams
//! are sent, compacted to an image), crash-stop, the guard against crashing the last replica
//! holding the state, and restart by replaying the log.

use fleet_engine::rsl::durable::DURABLE_RECORD_OVERHEAD_BYTES;
use fleet_engine::rsl::{Ballot, Step};
use fleet_proofs::checkers::rsl::RslEvent;
use fleet_proofs::checkers::{Checker, Violation};

use super::plants::Plant;
use super::{RslSim, SimApp, SimReplica};
use crate::trace::TraceKind;

/// What a replica's durable state is: promise, truncation point, 1b reply counter, votes
/// and the proposer's ballot. A restart must bring back exactly this.
pub(super) type DurableView = (Ballot, u64, u64, Vec<(u64, Ballot, Vec<u8>)>, Ballot);

fn durable_view(r: &SimReplica) -> DurableView {
    let a = r.acceptor();
    let votes = a.votes().map(|v| (v.opn, v.bal, v.batch.to_vec())).collect();
    (a.max_bal, a.log_truncation_point, a.replies_sent(), votes, r.proposer().max_ballot_sent_1a)
}

/// A replica's durable log is compacted to its image at this many records.
const MAX_DURABLE_RECORDS: usize = 256;

impl RslSim {
    /// Crashes replica `i`: its memory is gone, its durable log stays.
    pub fn crash(&mut self, i: usize) {
        if let Some(r) = self.replicas[i].take() {
            self.at_crash[i] = Some(durable_view(&r));
        }
    }

    /// Durable mode keeps the acceptor state, not the application: a restarted replica
    /// rebuilds its application by state transfer from a replica that has executed past
    /// every truncation point. A crash that would leave no such replica up would make the
    /// cluster wait forever (safely) for state nobody has; the fault model rules it out,
    /// as it rules out crashing a majority. See `docs/simulator.md`.
    pub(super) fn state_survives_crash_of(&self, h: usize) -> bool {
        let truncation = self.max_truncation;
        self.replicas
            .iter()
            .enumerate()
            .any(|(i, r)| i != h && r.as_ref().is_some_and(|r| r.executor().ops_complete >= truncation))
    }

    /// Appends step `step`'s durable record to replica `i`'s log before any datagram of the
    /// step is sent (the durable binding's rule); compacts long logs to the replica's image,
    /// so restarts replay both forms.
    pub(super) fn persist(&mut self, i: usize, step: Step) {
        let Some(r) = self.replicas[i].as_deref() else { return };
        if !step.durable_state_changed {
            return;
        }
        let mut buf = vec![0u8; 1472 + DURABLE_RECORD_OVERHEAD_BYTES];
        match r.durable_record(&step, &mut buf) {
            Ok(rec) => self.durable[i].push(rec.to_vec()),
            Err(e) => {
                self.violations.push(Violation::new("invariant", "durable record fits", format!("replica {i}: {e:?}")))
            }
        }
        if self.durable[i].len() >= MAX_DURABLE_RECORDS {
            let image: Result<Vec<Vec<u8>>, _> =
                (0..r.durable_image_len()).map(|k| r.durable_image_record(k, &mut buf).map(<[u8]>::to_vec)).collect();
            match image {
                Ok(image) => self.durable[i] = image,
                Err(e) => self.violations.push(Violation::new(
                    "invariant",
                    "durable image fits",
                    format!("replica {i}: {e:?}"),
                )),
            }
        }
    }

    /// Restarts crashed replica `i` from its durable log, with an empty application (the
    /// planted `AmnesiacRestart` bug replays nothing). A log that does not replay is a
    /// violation: the engine wrote it.
    pub fn restart(&mut self, i: usize) {
        if self.replicas[i].is_some() {
            return;
        }
        // Planted only where there is something to forget.
        let amnesia = self.options.plant == Plant::AmnesiacRestart && !self.durable[i].is_empty();
        if amnesia {
            self.fault_counts.planted += 1;
            self.record(TraceKind::Planted("replica restarted without its durable log"));
        }
        let now = self.local(i);
        let log: &[Vec<u8>] = if amnesia { &[] } else { &self.durable[i] };
        let records = log.iter().map(Vec::as_slice);
        match SimReplica::recover(self.config.clone(), i, SimApp::new(), now, records) {
            Ok(r) => {
                let recovered = durable_view(&r);
                if self.at_crash[i].as_ref().is_some_and(|before| *before != recovered) {
                    self.violations.push(Violation::new(
                        "invariant",
                        "a restarted replica recovers its durable state (rsl::durable)",
                        format!("replica {i}: {:?} at the crash, {recovered:?} after the restart", self.at_crash[i]),
                    ));
                }
                self.replicas[i] = Some(Box::new(r));
                self.last_ops[i] = 0;
                self.checker.observe(&RslEvent::Restarted { replica: i }, &mut self.violations);
                let mut buf = self.outbox.take().expect("outbox present between steps");
                let out = buf.outbox();
                // Report the recovered acceptor at once: the monotonicity checks apply to it.
                self.after_replica_step(i, Step::default(), &out);
                self.outbox = Some(buf);
            }
            Err(e) => self.violations.push(Violation::new(
                "invariant",
                "a durable log replays (Replica::recover)",
                format!("replica {i}: {e}"),
            )),
        }
    }
}
