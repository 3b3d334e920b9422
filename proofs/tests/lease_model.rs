//! The leader-lease rule (`fleet_engine::rsl::lease`), model-checked exhaustively over
//! drifting clocks.
//!
//! Three acceptors (acceptor 0 is the leader's own, on the leader's clock) and a leader of
//! ballot 1 that sends a confirmation round at any moment; the round reaches acceptors 1
//! and 2 at any later moments (an acknowledgement is modelled as arriving at once: a later
//! one only starts the lease later, never ends it later); a candidate of ballot 2 whose 1a
//! may reach acceptors 1 and 2 at any moment; acceptor 1 may crash and restart once (its
//! hold forgotten, its promise kept). Global time advances one millisecond per step; each
//! node's clock runs at `1 ± ε` of it, every combination. The holds and the leader's lease
//! are the engine's own: [`Hold`] grants and refusals, and [`leader_lease_us`]. The
//! property: while the leader serves under its lease on its own clock, fewer than a quorum
//! of acceptors have promised ballot 2, so no newer leader can have chosen anything. Two
//! planted bugs must break it: a leader that ignores drift (its lease as long as the
//! holds), and an acceptor that restarts without the start-up hold.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fleet_engine::rsl::lease::{leader_lease_us, Hold};
use fleet_engine::rsl::Ballot;
use fleet_engine::Instant;
use stateright::{Checker, Expectation, Model, Property};

/// The hold, in local milliseconds: short, so that a few steps of one millisecond cross it.
const LEASE_MS: u64 = 3;
/// The drift bound: 20 %, the most a configuration accepts.
const DRIFT_PPM: i64 = 200_000;
/// Global milliseconds explored.
const HORIZON_MS: u64 = 8;
const ACCEPTORS: usize = 3;
const QUORUM: usize = 2;
const LEADER_BAL: Ballot = Ballot { seqno: 1, proposer: 0 };
const CANDIDATE_BAL: Ballot = Ballot { seqno: 2, proposer: 1 };

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Planted {
    /// The leader's lease is `lease_ms` on its clock, as if no clock drifted.
    IgnoresDrift,
    /// A restarted acceptor promises at once, without the start-up hold.
    NoStartupHold,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    now_ms: u64,
    /// Clock rate error per node, ppm (acceptor 0 is the leader's node).
    drift: [i64; ACCEPTORS],
    holds: [Hold; ACCEPTORS],
    promised: [bool; ACCEPTORS],
    /// The leader's clock when it sent its round.
    sent_at: Option<Instant>,
    /// Acceptors the round reached.
    reached: [bool; ACCEPTORS],
    /// Acceptors whose acknowledgement the leader has (its own at once).
    acked: [bool; ACCEPTORS],
    /// The leader's lease end on its clock (`Instant::ZERO`: none yet).
    lease_until: Instant,
    restarted: bool,
}

impl State {
    /// Node `i`'s clock at the current global time.
    fn local(&self, i: usize) -> Instant {
        let us = self.now_ms as i64 * (1_000_000 + self.drift[i]) / 1_000;
        Instant::from_micros(us as u64)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Action {
    Tick,
    SendRound,
    DeliverRound { to: usize },
    DeliverOneA { to: usize },
    RestartAcceptor1,
}

struct LeaseModel {
    planted: Option<Planted>,
}

impl LeaseModel {
    fn lease_us(&self) -> u64 {
        match self.planted {
            Some(Planted::IgnoresDrift) => LEASE_MS * 1000,
            _ => leader_lease_us(LEASE_MS, DRIFT_PPM as u32),
        }
    }
}

impl Model for LeaseModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        (0..1 << ACCEPTORS)
            .map(|mask| State {
                now_ms: 0,
                drift: core::array::from_fn(|i| if mask & (1 << i) == 0 { -DRIFT_PPM } else { DRIFT_PPM }),
                // Every node has run long enough for its start-up hold to be over.
                holds: [Hold::default(); ACCEPTORS],
                promised: [false; ACCEPTORS],
                sent_at: None,
                reached: [false; ACCEPTORS],
                acked: [false; ACCEPTORS],
                lease_until: Instant::ZERO,
                restarted: false,
            })
            .collect()
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        if s.now_ms < HORIZON_MS {
            actions.push(Action::Tick);
        }
        if s.sent_at.is_none() {
            actions.push(Action::SendRound);
        }
        for to in 1..ACCEPTORS {
            if s.sent_at.is_some() && !s.reached[to] {
                actions.push(Action::DeliverRound { to });
            }
            if !s.promised[to] {
                actions.push(Action::DeliverOneA { to });
            }
        }
        if !s.restarted {
            actions.push(Action::RestartAcceptor1);
        }
    }

    fn next_state(&self, s: &State, action: Action) -> Option<State> {
        let mut n = s.clone();
        match action {
            Action::Tick => n.now_ms += 1,
            Action::SendRound => {
                // The leader's own acceptor acknowledges, and holds, as it sends.
                let at = s.local(0);
                n.holds[0].grant(LEADER_BAL, at, LEASE_MS);
                n.sent_at = Some(at);
                n.reached[0] = true;
                n.acked[0] = true;
            }
            Action::DeliverRound { to } => {
                n.reached[to] = true;
                // An acceptor that promised the candidate no longer acknowledges ballot 1;
                // one that does holds from now, on its clock.
                if !s.promised[to] {
                    n.holds[to].grant(LEADER_BAL, s.local(to), LEASE_MS);
                    n.acked[to] = true;
                }
            }
            Action::DeliverOneA { to } => {
                if s.holds[to].refuses(s.local(to), CANDIDATE_BAL) {
                    return None;
                }
                n.promised[to] = true;
            }
            Action::RestartAcceptor1 => {
                n.restarted = true;
                n.holds[1] = match self.planted {
                    Some(Planted::NoStartupHold) => Hold::default(),
                    _ => Hold::at_start(s.local(1), LEASE_MS),
                };
            }
        }
        if let Some(sent_at) = n.sent_at {
            if n.acked.iter().filter(|a| **a).count() >= QUORUM {
                n.lease_until = sent_at.plus_us(self.lease_us());
            }
        }
        Some(n)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("a lease outlives no quorum of promises to a higher ballot", |_, s: &State| {
                // The leader answers from its lease only while its own acceptor has promised
                // nothing higher (`Replica::leads_reads`).
                let serving = s.local(0) < s.lease_until && !s.promised[0];
                !serving || s.promised.iter().filter(|p| **p).count() < QUORUM
            }),
            Property::sometimes("served under a lease while an acceptor promised the candidate", |_, s: &State| {
                // Not vacuous: the scope reaches a lease in use next to a promise to ballot 2.
                s.local(0) < s.lease_until && !s.promised[0] && s.promised.iter().any(|p| *p)
            }),
        ]
    }
}

/// What one exhaustive run found.
struct Outcome {
    states: usize,
    /// The safety property's counterexample, as its actions.
    counterexample: Option<Vec<Action>>,
    /// The `sometimes` property (the interesting states) was reached.
    reached: bool,
}

/// Explores every state of the model with `planted`.
fn check(planted: Option<Planted>) -> Outcome {
    let checker = LeaseModel { planted }.checker().spawn_bfs().join();
    let properties = checker.model().properties();
    assert_eq!(properties[0].expectation, Expectation::Always);
    Outcome {
        states: checker.unique_state_count(),
        counterexample: checker.discovery(properties[0].name).map(|p| p.into_actions()),
        reached: checker.discovery(properties[1].name).is_some(),
    }
}

#[test]
fn the_lease_rule_holds_for_every_drift_and_schedule() {
    let o = check(None);
    assert!(o.reached, "the scope reaches a lease in use beside a promise to the newer ballot");
    assert!(o.states > 1_000, "the scope is explored: {} states", o.states);
    eprintln!("[lease model] {} states, no counterexample", o.states);
    assert!(o.counterexample.is_none(), "{:?}", o.counterexample);
}

#[test]
fn planted_a_leader_that_ignores_drift_overlaps_a_newer_quorum() {
    let path = check(Some(Planted::IgnoresDrift)).counterexample.expect("a counterexample");
    eprintln!("[planted IgnoresDrift] {path:?}");
}

#[test]
fn planted_an_acceptor_restarting_without_the_start_up_hold_breaks_the_lease() {
    let path = check(Some(Planted::NoStartupHold)).counterexample.expect("a counterexample");
    assert!(path.contains(&Action::RestartAcceptor1), "{path:?}");
    eprintln!("[planted NoStartupHold] {path:?}");
}
