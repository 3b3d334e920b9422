//! Queries answered without a log write (see [`crate::rsl::reads`]): the leader admits
//! them, confirms its ballot with a quorum, and answers once execution has caught up;
//! every replica acknowledges the leader's rounds while its promise still matches.

use super::Replica;
use crate::emit::{self, Envelope};
use crate::endpoint::Endpoint;
use crate::outbox::Outbox;
use crate::rsl::app::App;
use crate::rsl::ballot::Ballot;
use crate::rsl::msg::RslMsg;
use crate::rsl::reads::Admitted;
use crate::stats::Stats;
use crate::time::Instant;
use crate::wire::Bytes;

impl<
        A: App,
        const R: usize,
        const W: usize,
        const D: usize,
        const QB: usize,
        const C: usize,
        const RB: usize,
        const TB: usize,
    > Replica<A, R, W, D, QB, C, RB, TB>
{
    /// Takes a client's query on the fast path if this replica leads and has nothing of an
    /// earlier view left to propose; false sends it through the log instead.
    pub(super) fn admit_query(
        &mut self,
        now: Instant,
        from: Endpoint,
        seqno: u64,
        request: &[u8],
        out: &mut Outbox<'_>,
    ) -> bool {
        // After proposing a membership change the leader's state may be stale once the
        // next epoch decides writes: queries take the log until it executed past it.
        if !A::is_query(request)
            || !self.leads_reads()
            || self.proposer.has_old_values()
            || self.change_proposed.is_some()
        {
            return false;
        }
        let bal = self.proposer.max_ballot_sent_1a;
        if self.reads.ballot() != bal {
            self.reads.reset(bal);
        }
        let shape = (self.me, self.config.n(), self.config.quorum());
        let leased = self.reads.leased(now);
        match self.reads.admit(from, seqno, self.proposer.next_opn, request, shape, leased) {
            Admitted::Refused => false,
            Admitted::Queued => true,
            Admitted::SendRound(round) => {
                self.start_read_round(now, bal, round, out);
                true
            }
        }
    }

    /// Sends round `round` for the first time: a lease it confirms counts from `now`, and
    /// this replica's own acceptor, which acknowledges it, holds from now too.
    fn start_read_round(&mut self, now: Instant, bal: Ballot, round: u64, out: &mut Outbox<'_>) {
        // Without leases nothing reads the send time: left alone, so that states the model
        // checker compares stay equal.
        let lease_ms = self.config.params.lease_ms;
        if lease_ms > 0 {
            self.reads.note_sent(now);
            self.hold.grant(bal, now, lease_ms);
        }
        self.send_read_round(bal, round, out);
    }

    /// With leases, a leader starts a round every heartbeat period (when none is in
    /// flight), so that its lease stays current without queries to carry it.
    pub(super) fn renew_lease(&mut self, now: Instant, out: &mut Outbox<'_>) {
        if self.config.params.lease_ms == 0 || !self.leads_reads() || self.proposer.has_old_values() {
            return;
        }
        let bal = self.proposer.max_ballot_sent_1a;
        if self.reads.ballot() != bal {
            self.reads.reset(bal);
        }
        let (me, n, q) = (self.me, self.config.n(), self.config.quorum());
        if let Some(round) = self.reads.renew(me, n, q) {
            self.start_read_round(now, bal, round, out);
            // A cluster of one confirms its own rounds at once.
            if let Some(lease_us) = self.config.leader_lease_us() {
                self.reads.extend_lease((me, n, q), lease_us);
            }
        }
    }

    /// This replica leads its ballot in phase 2 and its own acceptor has promised nothing
    /// higher: the leader's acknowledgement of its own rounds is that of an acceptor too,
    /// so a promise it gave a higher ballot (before hearing of that view) ends it.
    pub(super) fn leads_reads(&self) -> bool {
        self.leading() && self.rejoin.is_none() && self.acceptor.max_bal <= self.proposer.max_ballot_sent_1a
    }

    /// Asks every other replica to confirm `bal` for `round`.
    pub(super) fn send_read_round(&mut self, bal: Ballot, round: u64, out: &mut Outbox<'_>) {
        let max = self.config.params.max_datagram_bytes;
        let msg = RslMsg::ReadConfirm { bal, round };
        for (i, dst) in self.config.replicas.iter().enumerate() {
            if i != self.me {
                emit::send(out, &mut self.stats, Envelope::Rsl(self.cluster), max, *dst, &msg);
            }
        }
    }

    /// Re-sends the round in flight (retransmission timer): a lost confirmation or
    /// acknowledgement delays queries by one period instead of forever.
    pub(super) fn resend_read_round(&mut self, out: &mut Outbox<'_>) {
        let (me, n, q) = (self.me, self.config.n(), self.config.quorum());
        if self.leads_reads()
            && self.reads.ballot() == self.proposer.max_ballot_sent_1a
            && self.reads.in_flight(me, n, q)
        {
            self.send_read_round(self.reads.ballot(), self.reads.sent_round(), out);
        }
    }

    /// A leader's round: acknowledged only while this acceptor has promised nothing higher
    /// than that ballot (a higher promise may have helped another leader choose operations
    /// the sender does not know of; promises only grow, so a quorum of acknowledgements
    /// sent after a query arrived rules out any such choice before it). A rejoining
    /// replica may have forgotten a promise, so it does not acknowledge.
    pub(super) fn on_read_confirm(
        &mut self,
        now: Instant,
        sender: usize,
        bal: Ballot,
        round: u64,
        out: &mut Outbox<'_>,
    ) {
        if usize::from(bal.proposer) != sender || self.acceptor.max_bal > bal || self.rejoin.is_some() {
            Stats::bump(&mut self.stats.ignored_messages);
            return;
        }
        // With leases the acknowledgement is also a promise: no higher ballot for a while.
        // Only for the leader of this replica's current view: holding for a leader the
        // election has moved past would keep renewing a hold against the new view's 1a, and
        // the new view might never gather its quorum.
        let lease_ms = self.config.params.lease_ms;
        if lease_ms > 0 {
            if self.election.current_view != bal {
                Stats::bump(&mut self.stats.ignored_messages);
                return;
            }
            self.hold.grant(bal, now, lease_ms);
        }
        let max = self.config.params.max_datagram_bytes;
        let msg = RslMsg::ReadAck { bal, round };
        emit::send(out, &mut self.stats, Envelope::Rsl(self.cluster), max, self.config.replicas[sender], &msg);
    }

    /// An acknowledgement of one of this leader's rounds.
    pub(super) fn on_read_ack(&mut self, sender: usize, bal: Ballot, round: u64) {
        if !self.leads_reads() || !self.reads.acknowledge(sender, bal, round) {
            Stats::bump(&mut self.stats.ignored_messages);
            return;
        }
        if let Some(lease_us) = self.config.leader_lease_us() {
            let shape = (self.me, self.config.n(), self.config.quorum());
            self.reads.extend_lease(shape, lease_us);
        }
    }

    /// Answers every query whose round is confirmed and whose operation is executed, in
    /// arrival order; starts the next round if queries wait for one. A replica that no
    /// longer leads the queries' ballot drops them (their clients retry).
    pub(super) fn answer_queries(&mut self, now: Instant, out: &mut Outbox<'_>) {
        if self.reads.pending() == 0 {
            return;
        }
        if !self.leads_reads() || self.reads.ballot() != self.proposer.max_ballot_sent_1a {
            let bal = self.reads.ballot();
            self.reads.reset(bal);
            return;
        }
        let (me, n, q) = (self.me, self.config.n(), self.config.quorum());
        // Under a lease no other ballot can have chosen anything yet: every query waiting is
        // as good as confirmed (`crate::rsl::lease`).
        let confirmed = match self.reads.leased(now) {
            true => u64::MAX,
            false => self.reads.confirmed(me, n, q),
        };
        let max = self.config.params.max_datagram_bytes;
        let mut reply = [0u8; RB];
        while let Some(read) = self.reads.pop_ready(self.executor.ops_complete, confirmed) {
            let len = self.executor.app.query(&read.request, &mut reply).min(RB);
            let msg = RslMsg::Reply { seqno: read.seqno, reply: Bytes(&reply[..len]) };
            emit::send(out, &mut self.stats, Envelope::Rsl(self.cluster), max, read.client, &msg);
            Stats::bump(&mut self.stats.queries_answered);
        }
        if let Some(round) = self.reads.next_round(me, n, q) {
            self.start_read_round(now, self.reads.ballot(), round, out);
        }
    }
}
