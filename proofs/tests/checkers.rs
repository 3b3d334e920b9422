//! The per-step checkers on hand-built event streams: each rule fires on a bad one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fleet_proofs::checkers::liveness::LivenessChecker;
use fleet_proofs::checkers::rsl::{RslChecker, RslCodec, RslEvent};
use fleet_proofs::checkers::{Checker, Violation};
use fleet_proofs::spec::rsl::{AppRequest, CounterApp};

/// A toy encoding: a batch is `[client, seqno]` pairs; the digest is a sum.
struct Toy;
impl RslCodec for Toy {
    fn decode_batch(b: &[u8]) -> Option<Vec<AppRequest>> {
        b.len().is_multiple_of(2).then(|| {
            b.chunks(2)
                .map(|p| AppRequest { client: u64::from(p[0]), seqno: u64::from(p[1]), request: vec![] })
                .collect()
        })
    }
    fn initial_digest() -> u64 {
        7
    }
    fn chain(prev: u64, opn: u64, batch: &[u8]) -> u64 {
        batch
            .iter()
            .fold(prev.wrapping_mul(31).wrapping_add(opn), |h, b| h.wrapping_mul(131).wrapping_add(u64::from(*b)))
    }
}

type Ev<'a> = RslEvent<'a, CounterApp>;

fn feed(c: &mut RslChecker<CounterApp, Toy>, evs: &[Ev<'_>]) -> Vec<Violation> {
    let mut out = Vec::new();
    for e in evs {
        c.observe(e, &mut out);
    }
    out
}

fn votes<'a>(opn: u64, bal: (u64, u64), batch: &'a [u8], who: &[usize]) -> Vec<Ev<'a>> {
    who.iter().map(|&a| Ev::Vote { acceptor: a, opn, bal, batch }).collect()
}

#[test]
fn a_good_stream_passes_and_a_bad_one_trips_each_rule() {
    let mut c = RslChecker::<CounterApp, Toy>::new(2, CounterApp(0));
    let mut evs = vec![Ev::RequestSent { client: 1, seqno: 1, request: &[] }];
    evs.extend(votes(0, (1, 0), &[1, 1], &[0, 1]));
    let d1 = Toy::chain(7, 0, &[1, 1]);
    evs.push(Ev::Executed { replica: 0, ops_complete: 1, digest: d1, app: &CounterApp(1) });
    evs.push(Ev::Executed { replica: 1, ops_complete: 1, digest: d1, app: &CounterApp(1) });
    let one = 1u64.to_le_bytes();
    evs.push(Ev::ReplySent { replica: 0, client: 1, seqno: 1, reply: &one });
    assert_eq!(feed(&mut c, &evs), vec![]);

    let rules = |v: Vec<Violation>| v.into_iter().map(|v| v.rule).collect::<Vec<_>>();
    // Agreement and refinement: a replica reports another prefix of the same length.
    let bad = [Ev::Executed { replica: 2, ops_complete: 1, digest: 99, app: &CounterApp(1) }];
    let r = rules(feed(&mut c, &bad));
    assert!(r.contains(&"lemma_ExecutedOperationAndAllBeforeItWereChosen"), "{r:?}");
    assert!(r.contains(&"lemma_ProduceAbstractStateSatisfiesRefinementRelation"), "{r:?}");
    // Refinement: wrong app state, wrong reply, unchosen operation.
    let r = rules(feed(&mut c, &[Ev::Executed { replica: 1, ops_complete: 1, digest: d1, app: &CounterApp(5) }]));
    assert_eq!(r, vec!["lemma_ProduceAbstractStateSatisfiesRefinementRelation"]);
    let r = rules(feed(&mut c, &[Ev::ReplySent { replica: 0, client: 1, seqno: 1, reply: &9u64.to_le_bytes() }]));
    assert_eq!(r, vec!["lemma_ReplySentIsAllowed"]);
    let r = rules(feed(&mut c, &[Ev::Executed { replica: 3, ops_complete: 3, digest: 0, app: &CounterApp(2) }]));
    assert_eq!(r, vec!["lemma_DecidedOperationWasChosen"]);
    // Paxos: two values in one ballot; a chosen value changed; a request nobody sent.
    let r = rules(feed(&mut c, &votes(0, (1, 0), &[2, 2], &[2])));
    assert_eq!(r, vec!["lemma_2aMessagesFromSameBallotAndOperationMatch"]);
    let r = rules(feed(&mut c, &votes(0, (2, 1), &[3, 3], &[1, 2])));
    assert_eq!(r, vec!["lemma_ChosenQuorumsMatchValue"]);
    let mut evs = votes(1, (1, 0), &[4, 1], &[0, 1]);
    evs.push(Ev::Executed { replica: 0, ops_complete: 2, digest: Toy::chain(d1, 1, &[4, 1]), app: &CounterApp(2) });
    let r = rules(feed(&mut c, &evs));
    assert_eq!(r, vec!["lemma_DecidedRequestWasSentByClient"]);
    // Monotonicity.
    let up = Ev::Acceptor { replica: 0, max_bal: (3, 0), log_truncation_point: 5 };
    let down = Ev::Acceptor { replica: 0, max_bal: (2, 0), log_truncation_point: 4 };
    let r = rules(feed(&mut c, &[up, down]));
    assert_eq!(r.len(), 2, "{r:?}");
}

#[test]
fn liveness_flags_only_requests_past_their_deadline() {
    let mut l = LivenessChecker::new();
    l.invoked(1, 10, 100);
    l.invoked(2, 11, 200);
    let mut out = Vec::new();
    l.check(1_000_000, &mut out);
    assert!(out.is_empty(), "no GST yet: nothing is owed");
    l.heal(1_000, 500);
    l.completed(1);
    l.check(1_500, &mut out);
    assert!(out.is_empty(), "at the deadline, not past it");
    l.check(1_501, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].checker, "liveness");
    l.client_crashed(11);
    assert_eq!(l.outstanding(), 0);
}
