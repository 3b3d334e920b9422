//! The model's host: the real `KvHost` with a wide peer table (room for every actor) or a
//! narrow one (two clients, so that clients are evicted), behind one type; and the planted
//! stale-channel bug, which is a wrapper around the real host's receive path.

use fleet_engine::kv::reliable::evict::Closed;
use fleet_engine::kv::{Frame, KvConfig, KvHost, Outgoing, Refusal, Reliable};
use fleet_engine::wire::{self, Bytes, Protocol};
use fleet_engine::{Endpoint, Instant, Outbox};

use super::MStore;

/// The host under check with room for 8 peers (the shard scopes: no eviction).
pub type MHost = KvHost<MStore, 3, 8, 8, 8, 128>;
/// The host under check with room for 3 peers: itself and two clients (eviction scopes).
pub type MHostNarrow = KvHost<MStore, 3, 8, 3, 8, 128>;

/// A real host of either peer-table size.
// The variants differ by five peers' state; the host lives in a boxed node anyway.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AnyHost {
    /// Room for every actor.
    Wide(MHost),
    /// Room for two clients.
    Narrow(MHostNarrow),
}

macro_rules! each {
    ($self:expr, $h:ident => $e:expr) => {
        match $self {
            AnyHost::Wide($h) => $e,
            AnyHost::Narrow($h) => $e,
        }
    };
}

fn floor_of<const P: usize, const U: usize, const D: usize>(r: &Reliable<P, U, D>, ep: Endpoint) -> Option<Closed> {
    r.index_of(ep).is_none().then(|| r.closed_floor(ep))
}

impl AnyHost {
    /// Host `me` of `config`, narrow or wide.
    pub fn new(config: KvConfig<3>, me: usize, narrow: bool) -> AnyHost {
        match narrow {
            true => AnyHost::Narrow(MHostNarrow::new(config, me, MStore::new()).expect("valid model host")),
            false => AnyHost::Wide(MHost::new(config, me, MStore::new()).expect("valid model host")),
        }
    }
    /// The host restarted without its state as incarnation `nonce` (joining), or, under the
    /// planted `ClaimsInitialRanges`, as a brand-new host that takes up its initial ranges.
    pub fn restart_without_state(&self, config: KvConfig<3>, nonce: u64, planted: bool, now: Instant) -> AnyHost {
        let me = self.id();
        match (self, planted) {
            (AnyHost::Wide(_), false) => {
                AnyHost::Wide(MHost::new_joining(config, me, MStore::new(), nonce, now).expect("valid model host"))
            }
            (AnyHost::Narrow(_), false) => AnyHost::Narrow(
                MHostNarrow::new_joining(config, me, MStore::new(), nonce, now).expect("valid model host"),
            ),
            (AnyHost::Wide(_), true) => AnyHost::new(config, me, false),
            (AnyHost::Narrow(_), true) => AnyHost::new(config, me, true),
        }
    }
    /// `KvHost::handle`.
    pub fn handle(&mut self, now: Instant, from: Endpoint, datagram: &[u8], out: &mut Outbox<'_>) {
        each!(self, h => { let _ = h.handle(now, from, datagram, out); })
    }
    /// `KvHost::tick`.
    pub fn tick(&mut self, now: Instant, out: &mut Outbox<'_>) {
        each!(self, h => { let _ = h.tick(now, out); })
    }
    /// `KvHost::next_deadline`.
    pub fn next_deadline(&self) -> Instant {
        each!(self, h => h.next_deadline())
    }
    /// `KvHost::check_invariants`.
    pub fn check_invariants(&self) -> Result<(), &'static str> {
        each!(self, h => h.check_invariants())
    }
    /// The base of this host's channel to host `to`.
    pub fn send_base(&self, to: usize) -> Option<u64> {
        each!(self, h => h.reliable().peer(to).map(|p| p.send_base()))
    }
    /// The base of host `from`'s channel to this host.
    pub fn fixed_base(&self, from: usize) -> Option<u64> {
        each!(self, h => h.reliable().fixed_base(from))
    }
    /// True while the host joins (`KvHost::joining`).
    pub fn joining(&self) -> bool {
        each!(self, h => h.joining().is_some())
    }
    /// `KvHost::owns`.
    pub fn owns(&self, key: u64) -> bool {
        each!(self, h => h.owns(key))
    }
    /// `KvHost::outgoing`.
    pub fn outgoing(&self) -> &[Outgoing] {
        each!(self, h => h.outgoing())
    }
    /// `KvHost::completed_from`.
    pub fn completed_from(&self, from: usize) -> u64 {
        each!(self, h => h.completed_from(from))
    }
    /// `KvHost::id`.
    pub fn id(&self) -> usize {
        each!(self, h => h.id())
    }
    /// `KvHost::storage`.
    pub fn storage(&self) -> &MStore {
        each!(self, h => h.storage())
    }
    /// The closed-channel floors for `ep` if the host has no channel with it now.
    pub fn closed_floor(&self, ep: Endpoint) -> Option<Closed> {
        each!(self, h => floor_of(h.reliable(), ep))
    }
    /// Clients in the peer table.
    pub fn clients(&self) -> usize {
        each!(self, h => h.reliable().peers().len() - h.config().n())
    }
}

/// Planted `AcceptsStaleChannel`: the host forgets which channels it evicted. A channel's
/// first message from an endpoint it has no channel with is taken as a new channel whatever
/// its base, as before the closed-channel rule. The wrapper shows the real host the message
/// with its base (and seqno) moved just above the floor, the one thing the real rule checks,
/// so the real host accepts and executes it; everything else is the real host.
pub fn forget_closed_channels(host: &AnyHost, from: Endpoint, datagram: &[u8]) -> Option<Vec<u8>> {
    let floor = host.closed_floor(from)?;
    let Ok((cluster, Frame::Single { base, seqno, body, .. })) =
        wire::decode_in_cluster::<Frame<'_>>(Protocol::Kv, datagram)
    else {
        return None;
    };
    if seqno != base || base > floor.above {
        return None;
    }
    let fresh = floor.above + 1;
    let frame = Frame::Single { base: fresh, seqno: fresh, ack: 0, body: Bytes(body.0) };
    let mut buf = vec![0u8; datagram.len() + 32];
    let n = wire::encode_in_cluster(Protocol::Kv, cluster, &frame, &mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// Planted `ForgetsGivingUp`: the host evicts a client it gave up on as if it had been
/// settled, forgetting that replies to it were never delivered. Its closed-channel refusals
/// then say `lost: 0`, and a client still waiting for such a reply sends its request again on
/// a new channel. The wrapper rewrites the real host's refusals (`lost` set to 0).
pub fn forget_lost(datagram: &[u8]) -> Option<Vec<u8>> {
    let Ok((cluster, Frame::Refused { seqno, reason: Refusal::ChannelClosed { above, lost } })) =
        wire::decode_in_cluster::<Frame<'_>>(Protocol::Kv, datagram)
    else {
        return None;
    };
    if lost == 0 {
        return None;
    }
    let frame = Frame::Refused { seqno, reason: Refusal::ChannelClosed { above, lost: 0 } };
    let mut buf = vec![0u8; datagram.len() + 8];
    let n = wire::encode_in_cluster(Protocol::Kv, cluster, &frame, &mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}
