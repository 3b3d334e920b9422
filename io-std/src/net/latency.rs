//! Latency histograms for the metrics page: the event loop's step times, and the time from a
//! client's datagram arriving to the first datagram this server sends back to that client
//! (a request's server-side latency: queueing, the protocol rounds it waited for, a sync).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use fleet_engine::Endpoint;

/// Upper bounds of the step-time histogram's buckets, in seconds.
pub const STEP_BUCKETS_S: &[f64] = &[10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 5e-3, 25e-3, 100e-3];

/// Upper bounds of the request-latency histogram's buckets, in seconds (50 µs to 1 s).
pub const REQUEST_BUCKETS_S: &[f64] =
    &[50e-6, 100e-6, 200e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1.0];

/// Clients whose request is awaiting an answer, at most: a flood of new senders costs
/// bounded memory (requests past it are not timed).
pub const MAX_TIMED_CLIENTS: usize = 65_536;

/// A request not answered within this is forgotten, not recorded (a follower forwards
/// requests and never answers them; the client may have given up).
pub const FORGET_AFTER: Duration = Duration::from_secs(10);

/// A Prometheus histogram over fixed buckets.
#[derive(Clone, Debug)]
pub struct Histogram {
    bounds_s: &'static [f64],
    /// Per bucket, then one past the last bound (`+Inf`); not cumulative.
    counts: Vec<u64>,
    sum_s: f64,
}

impl Histogram {
    /// An empty histogram over `bounds_s` (ascending upper bounds, in seconds).
    pub fn new(bounds_s: &'static [f64]) -> Self {
        Histogram { bounds_s, counts: vec![0; bounds_s.len() + 1], sum_s: 0.0 }
    }

    /// Records one observation.
    pub fn record(&mut self, elapsed: Duration) {
        let s = elapsed.as_secs_f64();
        let i = self.bounds_s.iter().position(|b| s <= *b).unwrap_or(self.bounds_s.len());
        self.counts[i] += 1;
        self.sum_s += s;
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// `(upper bound, cumulative count)` per bucket, `None` for `+Inf`, as Prometheus
    /// lists them.
    pub fn cumulative(&self) -> impl Iterator<Item = (Option<f64>, u64)> + '_ {
        let bounds = self.bounds_s.iter().map(|b| Some(*b)).chain(std::iter::once(None));
        bounds.zip(self.counts.iter().scan(0u64, |acc, c| {
            *acc += c;
            Some(*acc)
        }))
    }

    /// The sum of every observation, in seconds.
    pub fn sum_s(&self) -> f64 {
        self.sum_s
    }
}

/// Times requests from their arrival to the first datagram back to their sender.
#[derive(Clone, Debug)]
pub struct RequestClock {
    /// The cluster's members: their datagrams are protocol messages, not requests.
    members: HashSet<Endpoint>,
    /// Clients with a request awaiting an answer, since when.
    waiting: HashMap<Endpoint, Instant>,
    latency: Histogram,
    next_sweep: Instant,
}

impl RequestClock {
    /// A clock that ignores datagrams from and to `members`.
    pub fn new(members: &[Endpoint]) -> Self {
        RequestClock {
            members: members.iter().copied().collect(),
            waiting: HashMap::new(),
            latency: Histogram::new(REQUEST_BUCKETS_S),
            next_sweep: Instant::now() + FORGET_AFTER,
        }
    }

    /// A datagram from `from` arrived at `at`: a client's first unanswered request starts its
    /// clock (a retransmission does not restart it).
    pub fn arrived(&mut self, from: Endpoint, at: Instant) {
        if self.members.contains(&from) {
            return;
        }
        if self.waiting.len() < MAX_TIMED_CLIENTS || self.waiting.contains_key(&from) {
            self.waiting.entry(from).or_insert(at);
        }
        if at >= self.next_sweep {
            self.waiting.retain(|_, since| at.saturating_duration_since(*since) < FORGET_AFTER);
            self.next_sweep = at + FORGET_AFTER;
        }
    }

    /// A datagram to `to` left at `at`: the answer to its waiting request, if any.
    pub fn answered(&mut self, to: Endpoint, at: Instant) {
        if let Some(since) = self.waiting.remove(&to) {
            self.latency.record(at.saturating_duration_since(since));
        }
    }

    /// The request latencies recorded so far.
    pub fn latency(&self) -> &Histogram {
        &self.latency
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMBER: Endpoint = Endpoint::v4([127, 0, 0, 1], 7000);
    const CLIENT: Endpoint = Endpoint::v4([127, 0, 0, 1], 40000);

    #[test]
    fn a_request_is_timed_from_its_first_arrival_to_the_first_datagram_back() {
        let mut clock = RequestClock::new(&[MEMBER]);
        let t0 = Instant::now();
        clock.arrived(CLIENT, t0);
        clock.arrived(CLIENT, t0 + Duration::from_millis(3)); // a retransmission
        clock.arrived(MEMBER, t0);
        clock.answered(MEMBER, t0 + Duration::from_millis(1));
        clock.answered(CLIENT, t0 + Duration::from_millis(4));
        clock.answered(CLIENT, t0 + Duration::from_millis(9)); // nothing waits any more
        assert_eq!(clock.latency().count(), 1, "members are not clients; one answer per request");
        let buckets: Vec<_> = clock.latency().cumulative().collect();
        assert_eq!(buckets.iter().find(|(b, _)| *b == Some(2e-3)).map(|x| x.1), Some(0));
        assert_eq!(
            buckets.iter().find(|(b, _)| *b == Some(5e-3)).map(|x| x.1),
            Some(1),
            "4 ms, from the first arrival"
        );
        assert_eq!(buckets.last(), Some(&(None, 1)));
    }

    #[test]
    fn requests_never_answered_are_forgotten() {
        let mut clock = RequestClock::new(&[]);
        let t0 = Instant::now();
        clock.arrived(CLIENT, t0);
        clock.arrived(MEMBER, t0 + FORGET_AFTER + Duration::from_millis(1)); // sweeps
        clock.answered(CLIENT, t0 + FORGET_AFTER + Duration::from_millis(2));
        assert_eq!(clock.latency().count(), 0);
    }
}
