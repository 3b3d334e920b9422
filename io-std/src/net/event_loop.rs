//! The std UDP event loop: one thread, one socket, one sans-IO host.
//!
//! Each round: `tick` if a deadline passed, receive a burst of datagrams without blocking and
//! `handle` each, all into one outbox; then [`Host::commit`]. An in-memory host's datagrams
//! leave at once. A durable host hands its records to a sync thread and names the sync the
//! burst's marked datagrams ([`Outbox::waits_for_sync`]: promises, votes, ballots) must
//! wait for: they are held, in order, while the loop goes on receiving and handling (the
//! next sync covers everything written meanwhile), and leave as soon as that sync is done.
//! The burst's other datagrams leave at once. Datagrams addressed to the host itself (IronRSL broadcasts include the
//! sender) are fed straight back to `handle` in the next round instead of going through the
//! kernel. With nothing to do it polls again for a while if it worked recently
//! ([`LoopOptions::spin`], [`crate::net::spin`]), then sleeps in `poll` until a datagram, a
//! finished sync or the next deadline.
//!
//! With keys ([`LoopOptions::auth`]) every datagram is opened before `handle` (refused ones
//! are counted, and their sender gets a rate-limited refusal notice) and sealed as it leaves;
//! self-addressed datagrams never leave the process and are neither.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};

use super::latency::{Histogram, RequestClock, STEP_BUCKETS_S};
use super::metrics::{publish, MetricsBoard, PUBLISH_EVERY};
use std::ops::Range;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant as StdInstant};

use fleet_engine::auth::{refusal_notice, AuthError, AuthStats, Class, Guard, Keyring, Role, AUTH_OVERHEAD_BYTES};
use fleet_engine::{Endpoint, Instant, Outbox, Stats};

use super::spin::Spin;
use super::udp_batch::{BurstIo, Syscalls};
use super::{to_endpoint, to_socket_addr, HeapOutbox};
use crate::clock::Clock;
use crate::error::ServerError;

/// Most self-addressed datagrams fed back in one round.
const MAX_LOOPBACK_PER_STEP: usize = 1024;

/// What the event loop needs from a host: the sans-IO contract.
pub trait Host {
    /// One received datagram.
    fn handle(&mut self, now: Instant, from: Endpoint, datagram: &[u8], out: &mut Outbox<'_>);
    /// The clock-driven actions.
    fn tick(&mut self, now: Instant, out: &mut Outbox<'_>);
    /// When `tick` must next run.
    fn next_deadline(&self) -> Instant;
    /// One human line: counters and protocol position.
    fn stats_line(&self) -> String;
    /// Makes durable what the steps since the last call produced (called at `now`, before
    /// any of their datagrams is sent; `waiting` is true when some of them are marked
    /// [`Outbox::waits_for_sync`]). `None`: every datagram may leave now; `Some(ticket)`:
    /// the marked ones wait until [`Host::durable`] reaches `ticket`, the others leave now.
    /// With nothing waiting, a host may leave its records unsynced for a while (a lazy
    /// sync). An in-memory host has nothing to do.
    fn commit(&mut self, now: Instant, waiting: bool) -> Result<Option<u64>, ServerError> {
        let _ = (now, waiting);
        Ok(None)
    }

    /// Which membership the host is in: changes whenever its cluster's membership does
    /// (RSL's epoch); always 0 for a host whose members are fixed.
    fn membership_generation(&self) -> u64 {
        0
    }

    /// Every member the host knows now (asked when [`Host::membership_generation`]
    /// changes): the loop seals datagrams to them, and opens theirs, with member keys.
    fn known_members(&self) -> Vec<Endpoint> {
        Vec::new()
    }

    /// The highest ticket of [`Host::commit`] that is durable.
    fn durable(&mut self) -> Result<u64, ServerError> {
        Ok(u64::MAX)
    }

    /// A descriptor that becomes readable when a ticket becomes durable, if the host has
    /// syncs in flight.
    fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

/// Counters as `key=value` fields.
pub fn stats_fields(s: &Stats) -> String {
    format!(
        "in={} out={} decode_errors={} invalid={} unknown_sender={} foreign_cluster={} ignored={} outbox_full={} queue_full={} queries={}",
        s.datagrams_in,
        s.datagrams_out,
        s.decode_errors,
        s.invalid_messages,
        s.unknown_sender,
        s.foreign_cluster,
        s.ignored_messages,
        s.outbox_full,
        s.queue_full,
        s.queries_answered
    )
}

/// The authentication fields of a stats line.
pub fn auth_fields(s: &AuthStats) -> String {
    format!(
        "auth_refused={} bad_tag={} unknown_key={} unsealed={} too_short={} notices={}",
        s.refused(),
        s.bad_tag,
        s.unknown_key,
        s.unsealed,
        s.too_short,
        s.notices
    )
}

/// How the event loop runs.
#[derive(Clone, Debug, Default)]
pub struct LoopOptions {
    /// Log a stats line this often.
    pub stats_every: Option<Duration>,
    /// Batched or one-per-datagram system calls.
    pub syscalls: Syscalls,
    /// Seal and open every datagram with these keys; `None`: trust the network.
    pub auth: Option<LoopAuth>,
    /// Publish Prometheus metrics here (see [`crate::net::metrics`]).
    pub metrics: Option<MetricsBoard>,
    /// After a round that did work, poll again (yielding the CPU between polls) for this
    /// long before sleeping (see [`crate::net::spin`]); zero, the default here: sleep at
    /// once. The `fleet` servers use [`crate::net::spin::DEFAULT_SPIN`].
    pub spin: Duration,
    /// A group commit window: when a round's datagrams wait for a sync that runs on this
    /// loop's thread (a durable KV host; an RSL replica with `--sync inline`), and the
    /// round or the last one heard from more than one sender, keep receiving and handling for
    /// up to this long before the sync, so that requests arriving meanwhile share it. Zero,
    /// the default here: sync at once. The `fleet` servers use
    /// [`DEFAULT_GROUP_COMMIT`].
    pub group_commit: Duration,
}

/// The `fleet` servers' group commit window ([`LoopOptions::group_commit`]), counted from
/// the start of the round: 40 µs. Durable KV at 50 clients, 4 alternating runs each:
/// 142-157k ops/s with it against 134-143k without (p50 281-317 µs against 359-367 µs);
/// 80 µs did no better (docs/performance.md, session 48).
pub const DEFAULT_GROUP_COMMIT: Duration = Duration::from_micros(40);

/// A member's keys and the cluster's members (whose datagrams need member keys).
#[derive(Clone, Debug)]
pub struct LoopAuth {
    /// The member's keyring.
    pub keys: Keyring,
    /// Every member's advertised endpoint, this one included.
    pub members: Vec<Endpoint>,
    /// The key files, for warnings.
    pub key_files: String,
}

/// Most refusal notices a loop sends per second: a flood of forged datagrams costs the
/// cluster a bounded number of replies, each shorter than what provoked it.
const NOTICES_PER_SECOND: u32 = 50;

/// The sealing side of the loop: the guard, and room to seal a burst into.
struct Sealer<'m> {
    guard: Guard<'m>,
    /// The host's membership generation the guard's members are for.
    generation: u64,
    sealed: Vec<u8>,
    notices_left: u32,
    notices_since: StdInstant,
    /// Datagrams from members refused, and refusal notices members sent: each warned about
    /// at the 1st, 2nd, 4th, 8th, ... (a misconfigured member keeps sending).
    from_members_refused: u64,
    notices_from_members: u64,
    key_files: String,
}

impl<'m> Sealer<'m> {
    fn new(auth: &'m LoopAuth, me: Endpoint) -> Sealer<'m> {
        Sealer {
            guard: Guard::new(auth.keys.clone(), me, Role::Member(&auth.members)),
            generation: 0,
            sealed: Vec::new(),
            notices_left: NOTICES_PER_SECOND,
            notices_since: StdInstant::now(),
            from_members_refused: 0,
            notices_from_members: 0,
            key_files: auth.key_files.clone(),
        }
    }

    /// Follows the host's membership: once it changed, every member the host knows is
    /// sealed for as a member too (the guard keeps the last `MAX_ADDED_MEMBERS` named; each
    /// change names the current ones again, so only long-removed peers are forgotten).
    fn follow<H: Host>(&mut self, host: &H) {
        let generation = host.membership_generation();
        if generation == self.generation {
            return;
        }
        self.generation = generation;
        for m in host.known_members() {
            self.guard.add_member(m);
        }
    }

    /// Notes a refused datagram: a warning if a member sent it or it is a member's
    /// refusal notice; a rate-limited notice to send back, if any.
    fn refused(&mut self, from: Endpoint, error: AuthError) -> Option<[u8; fleet_engine::auth::NOTICE_BYTES]> {
        let from_member = self.guard.class_with(from) == Class::Member;
        if !from_member {
            return self.notice(error);
        }
        let peer = to_socket_addr(from);
        if let AuthError::Notice(theirs) = error {
            self.notices_from_members = self.notices_from_members.saturating_add(1);
            if self.notices_from_members.is_power_of_two() {
                tracing::warn!(
                    "member {peer} refuses this member's datagrams ({theirs}; {} notices so far): its keys differ \
                     from these ({})",
                    self.notices_from_members,
                    self.key_files
                );
            }
            return None;
        }
        self.from_members_refused = self.from_members_refused.saturating_add(1);
        if self.from_members_refused.is_power_of_two() {
            tracing::warn!(
                "refused a datagram from member {peer}: {error} ({} refused from members so far). Either its \
                 member key differs from this one ({}) or someone forges its address",
                self.from_members_refused,
                self.key_files
            );
        }
        self.notice(error)
    }

    /// A refusal notice for `error`, if the rate allows one now.
    fn notice(&mut self, error: AuthError) -> Option<[u8; fleet_engine::auth::NOTICE_BYTES]> {
        let notice = refusal_notice(error)?;
        if self.notices_since.elapsed() >= Duration::from_secs(1) {
            self.notices_left = NOTICES_PER_SECOND;
            self.notices_since = StdInstant::now();
        }
        self.notices_left = self.notices_left.checked_sub(1)?;
        Some(notice)
    }
}

/// Runs `host` on `socket` until `stop` is set.
///
/// Each round: receive a burst of datagrams without blocking and `handle` each (then the
/// self-addressed ones of the previous round), then `tick` if a deadline passed (the burst
/// may have left one due), all into one outbox; then [`Host::commit`] (a durable host syncs its log once for the whole burst)
/// and only then send the burst's datagrams. With nothing to do it polls again while
/// within [`LoopOptions::spin`] of its last work, then sleeps in `poll` until a datagram or
/// the next deadline (at most 100 ms, to notice `stop`). Within a group commit window
/// ([`LoopOptions::group_commit`]) a round whose datagrams wait for an inline sync goes on
/// receiving before it commits. A storage failure
/// stops the server: a replica that cannot persist must not speak.
pub fn run<H: Host>(
    host: &mut H,
    socket: &UdpSocket,
    clock: Clock,
    stop: &AtomicBool,
    options: &LoopOptions,
) -> Result<(), ServerError> {
    let me = socket.local_addr().map_err(ServerError::Io)?;
    run_as(host, socket, me, clock, stop, options)
}

/// Like [`run`], for a host whose own (advertised) address `me` is not the socket's local
/// address, e.g. a replica bound with `--bind` behind a proxy or NAT: datagrams the host
/// sends to `me` are fed back to it directly, and arrive from `me`.
pub fn run_as<H: Host>(
    host: &mut H,
    socket: &UdpSocket,
    me: SocketAddr,
    clock: Clock,
    stop: &AtomicBool,
    options: &LoopOptions,
) -> Result<(), ServerError> {
    let me = to_endpoint(me);
    let mut egress = Egress {
        me,
        loopback: VecDeque::new(),
        sealer: options.auth.as_ref().map(|auth| Sealer::new(auth, me)),
        requests: options.metrics.as_ref().map(|board| RequestClock::new(&board.members)),
    };
    let mut io = BurstIo::new(socket, options.syscalls).map_err(ServerError::Io)?;
    let mut store = HeapOutbox::new(OUTBOX_SLOTS, OUTBOX_BYTES);
    let mut held = Held::default();
    let mut next_stats = options.stats_every.map(|d| StdInstant::now() + d);
    let mut steps = Histogram::new(STEP_BUCKETS_S);
    let mut next_publish = StdInstant::now();
    let mut spin = Spin::new(options.spin);
    let mut senders = Senders::default();
    while !stop.load(Ordering::Relaxed) {
        let round_started = StdInstant::now();
        let mut out = store.outbox();
        let mut stepped = false;
        held.release(host, &mut io, &mut egress)?;
        senders.next_round();
        let mut received = io.recv().map_err(ServerError::Io)?;
        let step_started = options.metrics.as_ref().map(|_| StdInstant::now());
        loop {
            for i in 0..received {
                if nearly_full(&out) {
                    settle(host, &mut io, &mut out, &mut held, &mut egress, clock.now())?;
                }
                let Some((from, datagram)) = io.datagram(i) else { break };
                let from = to_endpoint(from);
                let datagram = match egress.sealer.as_mut() {
                    None => datagram,
                    Some(sealer) => match sealer.guard.open(from, datagram) {
                        Ok(inner) => inner,
                        Err(refused) => {
                            if let Some(notice) = sealer.refused(from, refused) {
                                io.send(&[(to_socket_addr(from), &notice[..])]);
                            }
                            continue;
                        }
                    },
                };
                // Timed once it opened: a forged datagram is not a request.
                if let (Some(requests), Some(at)) = (egress.requests.as_mut(), step_started) {
                    requests.arrived(from, at);
                }
                host.handle(clock.now(), from, datagram, &mut out);
                stepped = true;
                senders.saw(from);
            }
            // Group commit: while this round's datagrams wait for an inline sync, take
            // what arrives within the window into the same sync. A lone sender (one
            // client, this round and the last) has nobody to wait for.
            // Cheap checks first: an in-memory host never waits and reads no clock here.
            let linger = !options.group_commit.is_zero()
                && senders.several()
                && held.is_empty()
                && host.wake_fd().is_none()
                && out.any_waits_for_sync()
                && round_started.elapsed() < options.group_commit;
            if !linger {
                break;
            }
            let _ = nix::sched::sched_yield();
            received = io.recv().map_err(ServerError::Io)?;
        }
        // Self-addressed datagrams of the previous round (IronRSL broadcasts include the
        // sender); those this round emits wait for the next one.
        for _ in 0..egress.loopback.len().min(MAX_LOOPBACK_PER_STEP) {
            if nearly_full(&out) {
                settle(host, &mut io, &mut out, &mut held, &mut egress, clock.now())?;
            }
            let Some(d) = egress.loopback.pop_front() else { break };
            host.handle(clock.now(), me, &d, &mut out);
            stepped = true;
        }
        // Timers after the burst: what it left due (a partial batch at an idle leader waits
        // for the burst's end, `Replica::nominate`) goes out with it.
        let now = clock.now();
        if host.next_deadline() <= now {
            if nearly_full(&out) {
                settle(host, &mut io, &mut out, &mut held, &mut egress, now)?;
            }
            host.tick(now, &mut out);
            stepped = true;
        }
        if stepped {
            settle(host, &mut io, &mut out, &mut held, &mut egress, clock.now())?;
            if let Some(started) = step_started {
                steps.record(started.elapsed());
            }
            spin.worked(round_started, StdInstant::now());
        } else if !egress.loopback.is_empty() {
            // Fed back next round.
        } else if spin.keep_polling(StdInstant::now()) {
            // Anything else runnable on this CPU goes first; alone, the poll comes back at once.
            let _ = nix::sched::sched_yield();
        } else {
            let wait_us = host.next_deadline().micros_since(clock.now()).clamp(1, 100_000);
            let also = if held.is_empty() { None } else { host.wake_fd() };
            io.wait(Duration::from_micros(wait_us), also).map_err(ServerError::Io)?;
        }
        // The request clock exists exactly when there is a board.
        if let (Some(board), Some(requests)) = (options.metrics.as_ref(), egress.requests.as_ref()) {
            if StdInstant::now() >= next_publish {
                let line = format!("{} {}", host.stats_line(), spin.fields());
                publish(board, &line, io.syscalls, &steps, requests.latency());
                next_publish = StdInstant::now() + PUBLISH_EVERY;
            }
        }
        if let Some(at) = next_stats {
            if StdInstant::now() >= at {
                let (line, spun) = (host.stats_line(), spin.fields());
                match &egress.sealer {
                    None => tracing::info!("{line} syscalls={} {spun}", io.syscalls),
                    Some(s) => {
                        let auth = auth_fields(&s.guard.stats());
                        tracing::info!("{line} syscalls={} {spun} {auth}", io.syscalls)
                    }
                }
                next_stats = options.stats_every.map(|d| StdInstant::now() + d);
            }
        }
    }
    Ok(())
}

/// Whether datagrams came from more than one sender, in this round or the last round that
/// received any: the group commit's guess at whether anyone else is about to send.
#[derive(Default)]
struct Senders {
    /// The first sender of this round, if any datagram came.
    first: Option<Endpoint>,
    /// Another sender than `first` came this round.
    several: bool,
    /// The last round with datagrams had several senders.
    several_before: bool,
}

impl Senders {
    fn next_round(&mut self) {
        if self.first.is_some() {
            self.several_before = self.several;
        }
        self.first = None;
        self.several = false;
    }

    fn saw(&mut self, from: Endpoint) {
        match self.first {
            None => self.first = Some(from),
            Some(first) => self.several |= first != from,
        }
    }

    fn several(&self) -> bool {
        self.several || self.several_before
    }
}

/// Datagram slots and arena bytes of the loop's outbox.
const OUTBOX_SLOTS: usize = 4096;
const OUTBOX_BYTES: usize = 8 << 20;

/// True when another step might not fit: send what is queued first.
fn nearly_full(out: &Outbox<'_>) -> bool {
    out.free_slots() < OUTBOX_SLOTS / 8 || out.free_bytes() < OUTBOX_BYTES / 8
}

/// Where a round's datagrams go once they may leave: the socket (sealed if the loop has
/// keys), or back to the host itself; and the clock that times requests to their answers.
struct Egress<'m> {
    /// The host's own (advertised) endpoint.
    me: Endpoint,
    /// Self-addressed datagrams, handled in the next round.
    loopback: VecDeque<Vec<u8>>,
    sealer: Option<Sealer<'m>>,
    /// With metrics: requests awaiting their first answer.
    requests: Option<RequestClock>,
}

/// Persist, then send: the order durability needs (see `fleet_engine::rsl::durable`).
fn settle<H: Host>(
    host: &mut H,
    io: &mut BurstIo<'_>,
    out: &mut Outbox<'_>,
    held: &mut Held,
    egress: &mut Egress<'_>,
    now: Instant,
) -> Result<(), ServerError> {
    // Before anything of these steps is sealed: they may be the first to new members.
    if let Some(sealer) = egress.sealer.as_mut() {
        sealer.follow(host);
    }
    match host.commit(now, out.any_waits_for_sync())? {
        None => send(io, out.iter(), egress),
        Some(ticket) => {
            // Only promises, votes and ballots wait; the rest (2a, replies, heartbeats)
            // leave now, ahead of bursts still held: nothing in them depends on the sync.
            send(io, out.iter_marked().filter(|d| !d.2).map(|(dst, b, _)| (dst, b)), egress);
            // Nothing held before them and the sync already done (an inline sync runs
            // when asked): they leave from the outbox, without a copy into a held burst.
            if held.is_empty() && host.durable()? >= ticket {
                send(io, out.iter_marked().filter(|d| d.2).map(|(dst, b, _)| (dst, b)), egress);
            } else {
                held.push(ticket, out);
                held.release(host, io, egress)?;
            }
        }
    }
    out.clear();
    Ok(())
}

/// Sends datagrams, sealed if the loop has keys: self-addressed ones go to the loopback
/// queue as they are.
fn send<'a>(io: &mut BurstIo<'_>, datagrams: impl Iterator<Item = (Endpoint, &'a [u8])>, egress: &mut Egress<'_>) {
    let me = egress.me;
    let sent_at = egress.requests.as_ref().map(|_| StdInstant::now());
    let mut answered = |dst: Endpoint| {
        if let (Some(requests), Some(at)) = (egress.requests.as_mut(), sent_at) {
            requests.answered(dst, at);
        }
    };
    let Some(sealer) = egress.sealer.as_mut() else {
        let mut batch: Vec<(SocketAddr, &[u8])> = Vec::new();
        for (dst, bytes) in datagrams {
            if dst == me {
                egress.loopback.push_back(bytes.to_vec());
            } else {
                answered(dst);
                batch.push((to_socket_addr(dst), bytes));
            }
        }
        io.send(&batch);
        return;
    };
    let mut ranges: Vec<(SocketAddr, Range<usize>)> = Vec::new();
    sealer.sealed.clear();
    for (dst, bytes) in datagrams {
        if dst == me {
            egress.loopback.push_back(bytes.to_vec());
            continue;
        }
        answered(dst);
        let start = sealer.sealed.len();
        sealer.sealed.resize(start + bytes.len() + AUTH_OVERHEAD_BYTES, 0);
        match sealer.guard.seal(dst, bytes, &mut sealer.sealed[start..]) {
            Ok(n) => ranges.push((to_socket_addr(dst), start..start + n)),
            // Only a member-class datagram without member keys fails; a member always has them.
            Err(_) => sealer.sealed.truncate(start),
        }
    }
    let batch: Vec<(SocketAddr, &[u8])> = ranges.iter().map(|(a, r)| (*a, &sealer.sealed[r.clone()])).collect();
    io.send(&batch);
}

/// Bursts of datagrams waiting for a sync, in the order they were produced.
#[derive(Default)]
struct Held {
    bursts: VecDeque<HeldBurst>,
}

/// One burst's datagrams, copied out of the outbox, and the ticket they wait for.
struct HeldBurst {
    need: u64,
    bytes: Vec<u8>,
    datagrams: Vec<(Endpoint, Range<usize>)>,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.bursts.is_empty()
    }

    /// Holds the datagrams of `out` that wait for the sync, until ticket `need` is durable.
    fn push(&mut self, need: u64, out: &Outbox<'_>) {
        let mut burst = HeldBurst { need, bytes: Vec::new(), datagrams: Vec::new() };
        for (dst, bytes, _) in out.iter_marked().filter(|d| d.2) {
            let start = burst.bytes.len();
            burst.bytes.extend_from_slice(bytes);
            burst.datagrams.push((dst, start..burst.bytes.len()));
        }
        self.bursts.push_back(burst);
    }

    /// Sends, in order, every burst whose sync is done.
    fn release<H: Host>(
        &mut self,
        host: &mut H,
        io: &mut BurstIo<'_>,
        egress: &mut Egress<'_>,
    ) -> Result<(), ServerError> {
        if self.bursts.is_empty() {
            return Ok(());
        }
        let durable = host.durable()?;
        while self.bursts.front().is_some_and(|b| b.need <= durable) {
            if let Some(b) = self.bursts.pop_front() {
                send(io, b.datagrams.iter().map(|(dst, r)| (*dst, &b.bytes[r.clone()])), egress);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
