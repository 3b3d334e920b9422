//! Failure reports as text: host and wire-tag names, the last steps of the trace, and every
//! host's state.

use super::RslSim;

/// The name of an RSL wire tag, for traces.
pub fn tag_name(tag: u8) -> &'static str {
    match tag {
        0 => "Request",
        1 => "1a",
        2 => "1b",
        3 => "2a",
        4 => "2b",
        5 => "Heartbeat",
        6 => "Reply",
        7 => "AppStateRequest",
        8 => "AppStateSupply",
        9 => "StartingPhase2",
        10 => "ForwardedRequest",
        11 => "RecoverRequest",
        12 => "RecoverReply",
        _ => "?",
    }
}

impl RslSim {
    /// A host's name for traces: `r0`, `c1`.
    pub fn host_name(&self, h: usize) -> String {
        match h < self.replicas.len() {
            true => format!("r{h}"),
            false => format!("c{}", h - self.replicas.len()),
        }
    }

    /// The last steps, formatted, then every host's state.
    pub fn render_trace(&self) -> String {
        let mut s = self.trace.render(|h| if h == usize::MAX { "?".into() } else { self.host_name(h) }, tag_name);
        for (i, r) in self.replicas.iter().enumerate() {
            match r {
                None => s.push_str(&format!("  r{i}: crashed\n")),
                Some(r) => {
                    let st = r.status();
                    s.push_str(&format!(
                        "  r{i}: view {:?} {:?} leader={} ops {} next_opn {} trunc {} queued {} max_bal {:?} \
                         learner.max_ballot_seen {:?} transfer.target {} incoming {:?} installed {} view_deadline {:?} suspectors {:#b} clock {:?} now {}\n    checkpoints {:?}\n    stats {:?}\n",
                        st.view,
                        st.phase,
                        st.is_leader,
                        st.ops_complete,
                        st.next_opn,
                        st.log_truncation_point,
                        st.queued,
                        st.max_bal,
                        r.learner().max_ballot_seen,
                        r.transfer().target_opn,
                        r.transfer().incoming,
                        r.transfer().installed,
                        r.election().deadline(),
                        r.election().suspectors,
                        self.clocks[i],
                        self.clocks[i].local(self.now),
                        (0..self.replicas.len()).map(|j| r.acceptor().checkpoint_of(j)).collect::<Vec<_>>(),
                        r.stats(),
                    ));
                }
            }
        }
        for (j, c) in self.clients.iter().enumerate() {
            s.push_str(&format!("  c{j}: pending seqno {:?} crashed {} ep {}\n", c.client.pending(), c.crashed, c.ep));
        }
        s
    }
}
