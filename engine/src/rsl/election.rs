//! View change (IronRSL `Election.i.dfy`): suspicion of a view that leaves requests
//! unexecuted, and a quorum of suspicions moving every replica to the successor view with a
//! doubled timeout.
//!
//! IronRSL tracks requests per epoch and, at the end of an epoch, suspects the view if a
//! request from an *earlier* epoch is still unexecuted: a request waits between one and two
//! epochs before it counts. Fleet keeps each tracked request's arrival time instead and
//! suspects as soon as one has waited a full epoch, so a dead leader is suspected after one
//! view timeout, not up to two. The timer is exact: the next deadline is the oldest tracked
//! arrival plus the epoch length.
//!
//! Three more departures keep requests nobody retries, and overload, from changing views
//! forever (IronRSL's new leader proposes the requests it tracked; Fleet's tracks no request
//! bytes, so a request sent only to followers and never retried was suspected in every
//! view):
//! * a replica forwards a request it newly tracks to the leader of its view
//!   (`RslMsg::ForwardedRequest`), so a live leader executes it;
//! * a wait counts only while nothing executes: the view is suspected when a request has
//!   waited a whole epoch *and* this replica executed nothing for a whole epoch. A leader
//!   that is executing is alive; a full queue under overload is not a dead leader. A
//!   request that waited a whole epoch while others executed is dropped from tracking (a
//!   live client retries);
//! * a new view starts with nothing tracked: a live client retries (to every replica) and
//!   its request is tracked again; a dead client's request is forgotten.
//!
//! As in IronRSL, the epoch doubles at each view change (up to the configured cap) and comes
//! back to the baseline once a view has lasted a whole epoch without suspicion.
//!
//! Cost per request, in the number `n` of clients tracked: O(log n). Clients are kept sorted
//! by endpoint and found by binary search; a request seen executed is marked, not removed,
//! so a client's entry is inserted (an O(n) move) once, when it is first seen, not per
//! request. The oldest waiting arrival is cached; it is recomputed (O(n)) only after the
//! request that held it stopped waiting, at most once per step.

use super::ballot::Ballot;
use crate::endpoint::{search_sorted, Endpoint};
use crate::time::Instant;

/// A client's request the replica received, waiting to be seen executed (or, once
/// `waiting` is false, a client whose last request was executed or dropped: kept so the
/// next request finds its place without moving the others).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tracked {
    /// The client.
    pub client: Endpoint,
    /// Its highest seqno received.
    pub seqno: u64,
    /// When it was received (or when the current view began, if later).
    pub since: Instant,
    /// The request still waits.
    pub waiting: bool,
}

/// Election state; tracks at most `T` clients' requests.
///
/// Equality and hashing (for model checkers) see the waiting requests only: entries kept
/// for clients that wait for nothing, and the cached oldest arrival, never influence
/// behaviour.
#[derive(Clone, Debug)]
pub struct Election<const T: usize> {
    /// The view this replica believes in.
    pub current_view: Ballot,
    /// Bitmask of replicas known to suspect `current_view`.
    pub suspectors: u64,
    /// How long a request may wait unexecuted before the view is suspected; doubles on each
    /// view change up to the configured cap.
    pub epoch_length_ms: u64,
    /// Sorted by client, one entry per client.
    tracked: heapless::Vec<Tracked, T>,
    /// The earliest `since` of a waiting entry (`Instant::NEVER` if none), unless `stale`.
    oldest: Instant,
    /// The entry that held `oldest` stopped waiting: `oldest` may be too early.
    stale: bool,
    /// The epoch length a stable view returns to.
    baseline_ms: u64,
    /// When this replica last executed something (or the view began, if later).
    progress_at: Instant,
    /// When the current view began here.
    view_since: Instant,
    /// When tracked requests are next looked at for expiry.
    expire_check_at: Instant,
    /// This replica holds a vote it has not executed: an operation in flight must be
    /// decided, client or not (a flag, not a time: `progress_at` moves when it is set).
    undecided: bool,
    /// The current view's leader said it is catching up after a start without state: it
    /// cannot lead, so the view is suspected as for waiting work (cleared by a new view).
    leader_rejoining: bool,
}

/// What tracking a received request found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tracking {
    /// A request this replica was not tracking (a new client, or a newer seqno).
    New,
    /// Already tracked.
    Known,
    /// The tracking list is full: the request still proceeds; it cannot drive suspicion.
    Full,
}

impl<const T: usize> Election<T> {
    /// Election state at start-up: view `(1, 0)`.
    pub fn new(baseline_ms: u64) -> Self {
        Election {
            current_view: Ballot::INITIAL,
            suspectors: 0,
            epoch_length_ms: baseline_ms,
            tracked: heapless::Vec::new(),
            oldest: Instant::NEVER,
            stale: false,
            baseline_ms,
            progress_at: Instant::ZERO,
            view_since: Instant::ZERO,
            expire_check_at: Instant::ZERO,
            undecided: false,
            leader_rejoining: false,
        }
    }

    /// Whether replica `me` suspects the current view.
    pub fn suspects(&self, me: usize) -> bool {
        self.suspectors & (1u64 << (me % 64)) != 0
    }

    /// Notes a received request. O(log n) for a client already known; a new client's entry
    /// is inserted in order (O(n), once per client).
    pub fn reflect_received(&mut self, now: Instant, client: Endpoint, seqno: u64) -> Tracking {
        let slot = search_sorted(&self.tracked, client, |t| t.client);
        if let Ok(i) = slot {
            let t = &mut self.tracked[i];
            if t.waiting {
                // A newer request from the same client: the older one executed or was
                // abandoned; keep the original arrival so a stuck leader is still suspected
                // on time.
                let newer = seqno > t.seqno;
                t.seqno = t.seqno.max(seqno);
                return if newer { Tracking::New } else { Tracking::Known };
            }
            *t = Tracked { client, seqno, since: now, waiting: true };
            self.oldest = self.oldest.min(now);
            return Tracking::New;
        }
        if self.tracked.is_full() {
            // Room from clients that wait for nothing (their positions shift: O(n), only
            // when the table is full).
            self.tracked.retain(|t| t.waiting);
        }
        let i = search_sorted(&self.tracked, client, |t| t.client).unwrap_or_else(|i| i);
        match self.tracked.insert(i, Tracked { client, seqno, since: now, waiting: true }) {
            Ok(()) => {
                self.oldest = self.oldest.min(now);
                Tracking::New
            }
            Err(_) => Tracking::Full,
        }
    }

    /// This replica executed something at `now`: the view is making progress. A tracked
    /// request that has waited a whole epoch while the leader executes others is dropped:
    /// the leader is alive, and never got it (a forward lost) or could not queue it (a full
    /// queue); a live client retries and it is tracked again. Checked at most four times per
    /// epoch.
    pub fn reflect_progress(&mut self, now: Instant) {
        self.progress_at = self.progress_at.max(now);
        if now >= self.expire_check_at {
            let epoch = self.epoch_length_ms;
            for t in self.tracked.iter_mut().filter(|t| t.waiting && now >= t.since.plus_ms(epoch)) {
                t.waiting = false;
                self.stale = true;
            }
            self.expire_check_at = now.plus_ms(epoch / 4);
        }
        self.refresh_oldest();
    }

    /// Recomputes the oldest waiting arrival if the one that held it stopped waiting.
    fn refresh_oldest(&mut self) {
        if self.stale {
            self.oldest = self.oldest_waiting();
            self.stale = false;
        }
    }

    fn oldest_waiting(&self) -> Instant {
        self.tracked.iter().filter(|t| t.waiting).map(|t| t.since).min().unwrap_or(Instant::NEVER)
    }

    /// Notes whether this replica holds a vote for an operation it has not executed. A
    /// leader that dies with operations in flight while no client is waiting would otherwise
    /// go unnoticed until the next request, and a replica rejoining after a start without
    /// state waits for exactly such operations (see `rsl::rejoin`). Suspicion follows, as
    /// for a tracked request, if nothing executes for a whole epoch.
    pub fn reflect_undecided(&mut self, now: Instant, undecided: bool) {
        if undecided && !self.undecided {
            self.progress_at = self.progress_at.max(now);
        }
        self.undecided = undecided;
    }

    /// The current view's leader is catching up after a start without state (its
    /// `RecoverRequest`): a rejoining replica waits for operations to be decided, and only
    /// another view's leader can decide them when the rejoining one leads this view. The
    /// view is suspected if nothing executes for a whole epoch from now.
    pub fn reflect_leader_rejoining(&mut self, now: Instant) {
        if !self.leader_rejoining {
            self.progress_at = self.progress_at.max(now);
        }
        self.leader_rejoining = true;
    }

    /// Forgets the tracked request of `client` if `seqno` covers it: it executed.
    pub fn reflect_executed(&mut self, client: Endpoint, seqno: u64) {
        if let Ok(i) = search_sorted(&self.tracked, client, |t| t.client) {
            let t = &mut self.tracked[i];
            if t.waiting && t.seqno <= seqno {
                t.waiting = false;
                self.stale |= t.since <= self.oldest;
            }
        }
    }

    fn enter_view(&mut self, view: Ballot, now: Instant) {
        self.current_view = view;
        self.suspectors = 0;
        // Live clients retry to every replica, and their requests are tracked again; a
        // request nobody retries must not make the new view suspect too.
        self.tracked.clear();
        self.oldest = Instant::NEVER;
        self.stale = false;
        self.leader_rejoining = false;
        self.view_since = now;
        self.progress_at = self.progress_at.max(now);
    }

    /// A heartbeat from replica `sender` in view `bal`: adopt a higher view; record a
    /// suspicion of the current one.
    pub fn process_heartbeat(&mut self, now: Instant, sender: usize, bal: Ballot, suspicious: bool) {
        if bal > self.current_view {
            self.enter_view(bal, now);
        }
        if bal == self.current_view {
            // A suspicion holds while its reason does: a replica whose waiting request got
            // executed says so in its next heartbeat (IronRSL keeps it until the view ends,
            // so suspicions from long ago added up with one new one to a view change).
            let bit = 1u64 << (sender % 64);
            match suspicious {
                true => self.suspectors |= bit,
                false => self.suspectors &= !bit,
            }
        }
    }

    /// When the oldest tracked request (or an undecided vote) will have waited a whole
    /// epoch with nothing executed meanwhile.
    pub fn deadline(&self) -> Option<Instant> {
        let undecided = (self.undecided || self.leader_rejoining).then_some(self.progress_at);
        let tracked = match self.stale {
            false => self.oldest,
            true => self.oldest_waiting(),
        };
        let oldest = (tracked != Instant::NEVER).then_some(tracked).into_iter().chain(undecided).min()?;
        Some(oldest.max(self.progress_at).plus_ms(self.epoch_length_ms))
    }

    /// Suspects the view if a request has waited a whole epoch unexecuted while nothing
    /// executed; returns true if this replica suspects now. A view that has lasted a whole
    /// epoch with no replica suspecting it brings the epoch back to the baseline.
    pub fn check_timeout(&mut self, now: Instant, me: usize) -> bool {
        // Stable: nobody suspects the view (others' suspicions count too: with a quorum of
        // them the view changes in this very step, and the epoch must double from where it
        // was, not from the baseline; found by the fuzzer).
        let stable = self.suspectors == 0 && now >= self.view_since.plus_ms(self.epoch_length_ms);
        if stable && self.epoch_length_ms > self.baseline_ms {
            self.epoch_length_ms = self.baseline_ms;
        }
        self.refresh_oldest();
        let bit = 1u64 << (me % 64);
        match self.deadline().is_some_and(|d| now >= d) {
            true => self.suspectors |= bit,
            false => self.suspectors &= !bit,
        }
        self.suspects(me)
    }

    /// A quorum suspects the view: move to its successor and double the epoch length.
    /// Returns true if the view changed.
    pub fn check_quorum(&mut self, now: Instant, quorum: usize, replicas: usize, max_epoch_ms: u64) -> bool {
        if (self.suspectors.count_ones() as usize) < quorum {
            return false;
        }
        self.epoch_length_ms = self.epoch_length_ms.saturating_mul(2).min(max_epoch_ms);
        let next = self.current_view.successor(replicas);
        self.enter_view(next, now);
        true
    }

    /// Requests waiting, tracked for suspicion, in client order.
    pub fn tracked(&self) -> impl Iterator<Item = &Tracked> + '_ {
        self.tracked.iter().filter(|t| t.waiting)
    }

    /// Local invariants for `n` replicas and the configured epoch bounds: the view names a
    /// replica and is at least the initial one, only known replicas suspect it, the epoch
    /// length stays within `[baseline_ms, max_ms]`, and each client is tracked once.
    pub fn invariant(&self, n: usize, baseline_ms: u64, max_ms: u64) -> Result<(), &'static str> {
        if !self.current_view.is_valid_for(n) || self.current_view < Ballot::INITIAL {
            return Err("election view names no replica or is below the initial view");
        }
        let known = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
        if self.suspectors & !known != 0 {
            return Err("an unknown replica suspects the view");
        }
        if self.epoch_length_ms < baseline_ms.min(max_ms) || self.epoch_length_ms > max_ms.max(baseline_ms) {
            return Err("epoch length outside its bounds");
        }
        if self.tracked.windows(2).any(|w| w[0].client >= w[1].client) {
            return Err("tracked clients not sorted, or a client tracked twice");
        }
        if !self.stale && self.oldest != self.oldest_waiting() {
            return Err("the cached oldest arrival is not the oldest waiting request's");
        }
        Ok(())
    }
}

impl<const T: usize> PartialEq for Election<T> {
    fn eq(&self, other: &Self) -> bool {
        self.current_view == other.current_view
            && self.suspectors == other.suspectors
            && self.epoch_length_ms == other.epoch_length_ms
            && self.tracked().eq(other.tracked())
            && self.baseline_ms == other.baseline_ms
            && self.progress_at == other.progress_at
            && self.view_since == other.view_since
            && self.expire_check_at == other.expire_check_at
            && self.undecided == other.undecided
            && self.leader_rejoining == other.leader_rejoining
    }
}

impl<const T: usize> Eq for Election<T> {}

impl<const T: usize> core::hash::Hash for Election<T> {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.current_view.hash(state);
        self.suspectors.hash(state);
        self.epoch_length_ms.hash(state);
        for t in self.tracked() {
            t.hash(state);
        }
        self.baseline_ms.hash(state);
        self.progress_at.hash(state);
        self.view_since.hash(state);
        self.expire_check_at.hash(state);
        self.undecided.hash(state);
        self.leader_rejoining.hash(state);
    }
}

#[cfg(test)]
mod tests;
