//! Faults applied to the cluster (partitions, crashes, restarts, clock jumps, network rates)
//! and GST, with the liveness bound that starts there.

use fleet_engine::Endpoint;

use super::spec::ep_id;
use super::RslSim;
use crate::faults::FaultEvent;
use crate::net::NetFaults;
use crate::trace::TraceKind;

impl RslSim {
    /// Applies one fault.
    pub fn apply_fault(&mut self, e: FaultEvent) {
        // A new cluster starts when every replica has answered that it has no state, and
        // each has synced the record of its birth: until then no replica crashes alone (a
        // replica that stays down keeps the others from being born: the rejoin rule's
        // condition for a first start; see docs/ARCHITECTURE.md). A power cut may come at
        // any time: every replica restarts as the incarnation its disk names, and a born one
        // still vouches for those it was born with (see `fleet_engine::rsl::durable`).
        let replicas = self.replicas.len();
        self.born |= self.replicas.iter().all(|r| r.as_ref().is_some_and(|r| r.rejoining().is_none()))
            && self.disks.iter().all(|d| d.synced > 0);
        let alone = matches!(e, FaultEvent::Crash(h) | FaultEvent::Wipe(h) if h < replicas);
        if alone && !self.born {
            return;
        }
        self.fault_counts.count(&e);
        self.record(TraceKind::Fault(e));
        let hosts = self.replicas.len() + self.clients.len();
        match e {
            FaultEvent::Partition { from, to, symmetric } => {
                for a in (0..hosts).filter(|a| from & (1 << a) != 0) {
                    for b in (0..hosts).filter(|b| to & (1 << b) != 0 && *b != a) {
                        let (ea, eb) = (self.endpoint(a), self.endpoint(b));
                        self.net.block(ea, eb);
                        if symmetric {
                            self.net.block(eb, ea);
                        }
                    }
                }
            }
            FaultEvent::Heal => self.net.heal(),
            FaultEvent::Crash(h) if h < self.replicas.len() => self.crash(h),
            FaultEvent::Restart(h) if h < self.replicas.len() => self.restart(h),
            FaultEvent::Restart(_) => {}
            FaultEvent::CrashAll(_) => self.crash_all(),
            FaultEvent::Crash(h) => {
                let j = h - self.replicas.len();
                if let Some(c) = self.clients.get_mut(j) {
                    c.crashed = true;
                    self.liveness.client_crashed(ep_id(c.ep));
                }
            }
            FaultEvent::ClockJump(h, us) => {
                if let Some(c) = self.clocks.get_mut(h) {
                    c.jump(us);
                }
            }
            FaultEvent::Pause(h, us) if h < self.replicas.len() && self.replicas[h].is_some() => {
                self.paused_until[h] = self.paused_until[h].max(self.now + us);
            }
            FaultEvent::Pause(..) => {}
            FaultEvent::Net(f) => self.net.faults = f,
            FaultEvent::Wipe(h) => self.wipe(h),
        }
    }

    /// Replaces crashed replica `h`'s disk, if the rejoin rule's liveness condition allows:
    /// no other replica is without its state (rejoining, or wiped and down). Otherwise
    /// nothing happens: losing two replicas' state at once may lose chosen values, and
    /// the rule then waits for good (safe, not live).
    pub fn wipe(&mut self, h: usize) {
        // Rejoining, or crashed before it rejoined (its disk holds no acceptor record).
        let others_without_state =
            (0..self.replicas.len()).filter(|&j| j != h).any(|j| self.wiped[j] || self.rejoining[j]);
        if h >= self.replicas.len() || self.replicas[h].is_some() || others_without_state {
            return;
        }
        self.wiped[h] = true;
        self.fault_counts.wipes += 1;
        self.disks[h] = crate::disk::SimDisk::default();
        self.at_crash[h] = None;
        self.synced_views[h] = None;
    }

    /// Whether any replica is without its state: wiped and down, or restarted without state
    /// and not rejoined yet (up, or crashed again).
    pub fn any_without_state(&self) -> bool {
        self.wiped.iter().chain(&self.rejoining).any(|&w| w)
    }

    /// Whether replica `i` is frozen (a `Pause` fault) at the current time.
    pub fn paused(&self, i: usize) -> bool {
        self.paused_until.get(i).is_some_and(|&t| self.now < t)
    }

    /// GST: partitions heal, the network becomes reliable with small delays, no new faults,
    /// clients stop starting new operations, and every pending one must complete within
    /// [`RslSim::liveness_bound_us`].
    ///
    /// A replica without its state rejoins only once every other replica has answered (the
    /// rule's liveness condition): if one is, every crashed replica restarts at GST.
    pub fn start_gst(&mut self, net: NetFaults) {
        if self.any_without_state() {
            for i in 0..self.replicas.len() {
                self.restart(i);
            }
        }
        self.net.heal();
        self.net.faults = net;
        self.gst_us = Some(self.now);
        self.stop_submitting = true;
        self.record(TraceKind::Gst);
        self.liveness.heal(self.now, self.liveness_bound_us());
    }

    /// How long after GST a pending request may take, derived from the timeouts: a client
    /// retry reaches every replica within its retransmission period; a view change takes at
    /// most two epochs (a suspicion epoch, then the view's own) and the epoch length is capped
    /// at `max_view_timeout`; up to `n` views may be needed to reach a live leader; then a few
    /// heartbeats and retransmissions (2a/2b, state transfer) finish the job. Clock drift
    /// (up to 5 %) is covered by a 10 % margin.
    pub fn liveness_bound_us(&self) -> u64 {
        let p = self.config.params;
        let n = self.replicas.len() as u64;
        let views = (n + 2) * 2 * p.max_view_timeout_ms;
        let chatter = 20 * (p.heartbeat_period_ms + p.retransmit_period_ms);
        let ms = 3 * self.options.client_retransmit_ms + views + chatter;
        // A replica frozen just before GST stays frozen up to the longest pause.
        ms * 1_100 + self.options.max_pause_us
    }

    /// Cuts replica `i` off from every other host, both ways.
    pub fn isolate(&mut self, i: usize) {
        let everyone: Vec<Endpoint> =
            self.replica_eps.iter().copied().chain(self.clients.iter().map(|c| c.ep)).collect();
        self.net.isolate(self.replica_eps[i], &everyone);
    }

    /// Removes all partitions.
    pub fn heal(&mut self) {
        self.net.heal();
    }
}
