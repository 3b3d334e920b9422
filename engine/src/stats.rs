//! Counters a binding can read: what came in, what went out, what was refused and why.
//!
//! Every datagram the engine drops is counted here exactly once, so "dropped silently"
//! never happens: a hostile or malformed datagram shows up as a counter, not a panic.

/// Per-host counters. All saturate rather than wrap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stats {
    /// Datagrams passed to `handle`.
    pub datagrams_in: u64,
    /// Datagrams written into an outbox.
    pub datagrams_out: u64,
    /// Datagrams whose envelope or body did not decode (wrong magic, version, protocol, bytes).
    pub decode_errors: u64,
    /// Datagrams that decoded but broke a protocol bound (ballot of an unknown proposer,
    /// oversize batch, chunk index out of range, ...).
    pub invalid_messages: u64,
    /// Replica-to-replica messages from an endpoint that is not in the configuration.
    pub unknown_sender: u64,
    /// Messages from a host configured for another cluster (members in another order, or
    /// other shared parameters): refused.
    pub foreign_cluster: u64,
    /// Valid messages that were too old or too far ahead to use (stale ballot, beyond the
    /// log window, for an operation already executed).
    pub ignored_messages: u64,
    /// Datagrams the engine wanted to send but the outbox had no room for (behaves like loss).
    pub outbox_full: u64,
    /// Messages the engine could not fit in one datagram (an engine bug if ever non-zero).
    pub oversize_messages: u64,
    /// Requests refused because a bounded queue was full (back-pressure; the client retries).
    pub queue_full: u64,
    /// Queries a leader answered from its state without a log write (RSL,
    /// [`crate::rsl::reads`]).
    pub queries_answered: u64,
    /// Membership epochs this replica entered (RSL, [`crate::rsl::membership`]).
    pub epochs_entered: u64,
    /// Datagrams from a replica or client of an ended epoch answered with where the
    /// cluster went (RSL): clients or replicas still configured for an old membership.
    pub redirects: u64,
}

impl Stats {
    /// Adds one to a counter, saturating.
    pub(crate) fn bump(counter: &mut u64) {
        *counter = counter.saturating_add(1);
    }
}
