//! Short-lived clients: each a new client on a new endpoint (or on the endpoint of an
//! earlier one, restarted above every seqno used there), running one operation and leaving.
//! Some vanish mid-request (they never read their reply, so hosts retransmit to nobody and
//! give up on them), some leave without acknowledging the reply; with many of them the
//! hosts' peer tables fill and settled clients are evicted. Stale datagrams of every one of
//! them stay in the network (delay, duplication) after it is gone: a host must never
//! execute one again.

use fleet_engine::kv::{Event, Outcome, Request};
use fleet_engine::{Endpoint, Instant};
use fleet_proofs::linearizability::Operation;
use fleet_proofs::spec::kv::{KvOp, KvRet};

use super::{KvSim, SimClient, SIM_MAX_VALUE};
use fleet_engine::kv::Storage;

/// Most short-lived clients alive at once.
const MAX_ALIVE: usize = 8;
/// History client ids of short-lived clients start here.
const FIRST_ID: u64 = 10_000;

/// How a short-lived client leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Exit {
    /// Acknowledges its reply and leaves.
    Clean,
    /// Leaves once its operation completes, without acknowledging the reply.
    NoAck,
    /// Vanishes right after sending its request.
    MidRequest,
}

/// Endpoints of departed short-lived clients remembered for reuse.
const MAX_GONE: usize = 64;

/// A short-lived client.
pub(super) struct Ephemeral {
    client: SimClient,
    pub(super) ep: Endpoint,
    op: usize,
    exit: Exit,
}

impl<S: Storage> KvSim<S> {
    /// The short-lived client at `ep`, if one is alive there.
    pub(super) fn ephemeral_at(&self, ep: Endpoint) -> Option<usize> {
        self.ephemerals.iter().position(|e| e.ep == ep)
    }

    /// Starts a short-lived client: a fresh endpoint, or (one time in three) the endpoint
    /// of an earlier one that is gone, with a first seqno above every seqno used there.
    pub(super) fn spawn_ephemeral(&mut self, now: Instant) {
        if self.ephemerals.len() >= MAX_ALIVE {
            return;
        }
        let reuse = !self.gone.is_empty() && self.rng.below(3) == 0;
        let (ep, first) = if reuse {
            let k = self.rng.below(self.gone.len() as u64) as usize;
            let (ep, used) = self.gone.swap_remove(k);
            (ep, used + 1 + self.rng.below(1000))
        } else {
            let n = self.spawned;
            let ep = Endpoint::v4([10, 0, 2, (n / 250) as u8 % 250 + 1], 20_000 + (n % 250) as u16);
            // Small random bases: they often fall below the floors a host keeps for its
            // evicted channels, so new clients restart their channels above them.
            (ep, 1 + self.rng.below(1000))
        };
        let Ok(mut client) = SimClient::new(&self.host_eps, first, self.options.params) else { return };
        let keys = self.options.keys;
        let key = keys[self.rng.below(keys.len() as u64) as usize];
        let id = FIRST_ID + self.spawned;
        self.spawned += 1;
        let op = match self.rng.below(2) {
            0 => KvOp::Get(key),
            _ => {
                let len = self.rng.range(1, SIM_MAX_VALUE as u64) as usize;
                let mut v = format!("e{id}-").into_bytes();
                v.resize(len.max(v.len()).min(SIM_MAX_VALUE), b'.');
                KvOp::Set(key, v)
            }
        };
        let request = match &op {
            KvOp::Get(k) => Request::Get(*k),
            KvOp::Set(k, v) => Request::Set(*k, v),
            KvOp::Delete(k) => Request::Delete(*k),
        };
        let mut out = self.outbox.outbox();
        if client.submit(now, request, &mut out).is_err() {
            return;
        }
        self.net.send_all(self.now, ep, &out, &mut self.rng);
        let h = self.history.len();
        self.history.push(Operation { client: id, op, invoke_us: self.now, complete: None });
        let exit = match self.rng.below(100) {
            0..=14 => Exit::MidRequest,
            15..=29 => Exit::NoAck,
            _ => Exit::Clean,
        };
        if exit == Exit::MidRequest {
            // Gone before any answer: the operation's outcome is unknown.
            self.leave(ep, &client);
            self.vanished += 1;
            return;
        }
        self.ephemerals.push(Ephemeral { client, ep, op: h, exit });
    }

    fn leave(&mut self, ep: Endpoint, client: &SimClient) {
        let used = client.reliable().peers().iter().map(|p| p.next_seqno()).max().unwrap_or(1);
        if self.gone.len() >= MAX_GONE {
            self.gone.remove(0);
        }
        self.gone.push((ep, used));
    }

    /// Delivers a datagram to short-lived client `i`.
    pub(super) fn deliver_ephemeral(&mut self, now: Instant, i: usize, from: Endpoint, bytes: &[u8]) {
        let mut out = self.outbox.outbox();
        let e = &mut self.ephemerals[i];
        let event = e.client.handle(now, from, bytes, &mut out);
        let ep = e.ep;
        let ret = match event {
            Some(Event::Completed(c)) => match c.outcome {
                Outcome::Value(v) => Some(Some(KvRet::Value(v.map(<[u8]>::to_vec)))),
                Outcome::Written => Some(Some(KvRet::Ok)),
                Outcome::Sharded | Outcome::Failed(_) => Some(None),
            },
            Some(Event::Lost { .. }) => {
                self.lost_ops += 1;
                Some(None)
            }
            _ => None,
        };
        let Some(ret) = ret else {
            self.net.send_all(self.now, ep, &out, &mut self.rng);
            return;
        };
        let op = self.ephemerals[i].op;
        if let Some(ret) = ret {
            self.history[op].complete = Some((self.now, ret));
        }
        if self.ephemerals[i].exit == Exit::Clean {
            self.ephemerals[i].client.flush_acks(&mut out);
        }
        self.net.send_all(self.now, ep, &out, &mut self.rng);
        let e = self.ephemerals.swap_remove(i);
        self.leave(ep, &e.client);
    }

    /// Ticks every short-lived client whose deadline is due; true if one was.
    pub(super) fn tick_ephemerals(&mut self, now: Instant) -> bool {
        for i in 0..self.ephemerals.len() {
            if self.ephemerals[i].client.next_deadline() <= now {
                let mut out = self.outbox.outbox();
                self.ephemerals[i].client.tick(now, &mut out);
                let ep = self.ephemerals[i].ep;
                self.net.send_all(self.now, ep, &out, &mut self.rng);
                return true;
            }
        }
        false
    }

    /// The earliest deadline of a short-lived client.
    pub(super) fn ephemeral_deadline(&self) -> Option<u64> {
        self.ephemerals.iter().map(|e| e.client.next_deadline().as_micros()).min()
    }

    /// No short-lived client has an operation outstanding.
    pub(super) fn ephemerals_idle(&self) -> bool {
        self.ephemerals.is_empty()
    }
}
