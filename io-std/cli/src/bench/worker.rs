//! One load thread: its share of the logical clients (a UDP socket each, or one
//! [`SharedSocket`] for all) driven from a single `mio` poll loop, closed-loop, with every
//! operation timed and optionally recorded.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use fleet_engine::{Instant, Outbox};
use fleet_io_std::auth::ClientSeal;
use fleet_io_std::clock::Clock;
use fleet_io_std::net::{to_endpoint, to_socket_addr, HeapOutbox};
use fleet_proofs::history::{encode_hex, HistoryRecord, RecordOp, RecordStatus};
use hdrhistogram::Histogram;

use super::load_client::{LoadClient, OpResult, PlannedOp};
use super::options::BenchOptions;
use super::shared_socket::{client_index, SharedSocket, BURST};

/// Most datagrams read from one client socket per readiness event.
const MAX_READS_PER_EVENT: usize = 16;

/// Most bursts read from the shared socket per readiness event before the thread looks at
/// its timers; the rest is read on the next turn of the loop, without waiting.
const MAX_SHARED_BURSTS_PER_EVENT: usize = 64;

/// Least time between two looks at all of a load thread's clients' timers: a timer fires up
/// to this late. The thread looks when the earliest timer is due, which in a healthy run is
/// a retransmission period away; looking once a millisecond instead cost an operation nine
/// cache-missing client visits at 1,024 clients on two threads (docs/performance.md).
const TIMER_SCAN_PERIOD: Duration = Duration::from_millis(1);

pub(super) struct Worker {
    pub(super) hist: Histogram<u64>,
    pub(super) ops: u64,
    pub(super) errors: u64,
    pub(super) timeouts: u64,
    pub(super) refused: u64,
    pub(super) lost: u64,
    pub(super) history: Vec<HistoryRecord>,
}

/// A latency histogram from 1 µs to 60 s at 3 significant digits.
#[allow(clippy::expect_used)]
pub(super) fn new_hist() -> Histogram<u64> {
    // Constant, valid bounds (low >= 1, high >= 2 * low, sigfig <= 5): creation cannot fail.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid constant histogram bounds")
}

/// Appends `v` in lowercase hex, at least `min_digits` digits (as `{:0width$x}` would).
fn push_hex(out: &mut Vec<u8>, v: u64, min_digits: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let needed = (64 - v.leading_zeros() as usize).div_ceil(4).max(min_digits).min(16);
    for i in (0..needed).rev() {
        out.push(DIGITS[((v >> (4 * i)) & 0xf) as usize]);
    }
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

pub(super) struct Logical<C> {
    pub(super) client: C,
    /// Where its datagrams leave from and arrive.
    pub(super) port: Port,
    /// Seals and opens this client's datagrams when the cluster has keys.
    pub(super) seal: Option<ClientSeal>,
    pub(super) id: u64,
    pub(super) rng: u64,
    pub(super) n: u64,
    /// Keys this client has written in a fill.
    pub(super) filled: u64,
    /// When the outstanding request times out (meaningless when there is none).
    pub(super) op_deadline: Instant,
    /// The operations of the outstanding request, in order (empty: none outstanding).
    pub(super) current: Vec<InFlightOp>,
    /// The last request's operations being finished (kept for its capacity).
    pub(super) finished: Vec<InFlightOp>,
    /// Results of a completed request (reused).
    pub(super) results: Vec<OpResult>,
    /// Reads a group applied without room for their replies: they go first in the next
    /// request (a read changes nothing, so asking again is safe).
    pub(super) carried: Vec<InFlightOp>,
    /// Value buffers of finished operations, for the next ones: the load generator shares
    /// the machine with the servers it measures, so it allocates nothing per operation.
    pub(super) spare_values: Vec<Vec<u8>>,
}

/// How a logical client reaches the network.
pub(super) enum Port {
    /// A socket of its own, and how it sends: connected to its server or not.
    Own { socket: mio::net::UdpSocket, link: Link },
    /// Its own address on its load thread's [`SharedSocket`]; its index among the thread's
    /// clients is the one that address maps back to.
    Shared { addr: Ipv4Addr },
}

pub(super) struct InFlightOp {
    pub(super) key: u64,
    pub(super) read: bool,
    pub(super) value: Vec<u8>,
    pub(super) invoke_us: u64,
    pub(super) sent: StdInstant,
}

pub(super) struct Shared {
    pub(super) start: StdInstant,
    pub(super) stop_at: StdInstant,
    pub(super) done: Arc<AtomicU64>,
}

/// How a client's socket reaches its servers: `send_to` each time, or connected to the
/// server it last sent to ([`BenchOptions::connect`]).
pub(super) struct Link {
    connect: bool,
    /// The address the socket is connected to.
    peer: Option<SocketAddr>,
}

impl Link {
    /// A link that connects its socket when `connect`.
    pub(super) fn new(connect: bool) -> Link {
        Link { connect, peer: None }
    }

    /// Sends `bytes` to `dst`. A connected socket skips the kernel's route lookup for each
    /// datagram; it then receives only from `dst`, which a client whose servers answer
    /// from where it sent ([`LoadClient::answered_by_destination`]) does not notice: a late
    /// answer from a server it left is dropped, as the network may drop it anyway.
    fn send(&mut self, socket: &mio::net::UdpSocket, dst: SocketAddr, bytes: &[u8]) {
        if !self.connect {
            let _ = socket.send_to(bytes, dst);
            return;
        }
        if self.peer != Some(dst) {
            if socket.connect(dst).is_err() {
                // Not connected anywhere usable: this datagram goes as an unconnected one
                // would, and the next send tries again.
                self.peer = None;
                let _ = socket.send_to(bytes, dst);
                return;
            }
            self.peer = Some(dst);
        }
        let _ = socket.send(bytes);
    }
}

fn send_all(port: &mut Port, shared: Option<&SharedSocket>, out: &Outbox<'_>, seal: &mut Option<ClientSeal>) {
    for (dst, bytes) in out.iter() {
        let bytes = match seal.as_mut() {
            None => Some(bytes),
            Some(s) => s.seal(dst, bytes),
        };
        // WouldBlock or an error is a lost datagram: the client retransmits.
        let Some(bytes) = bytes else { continue };
        match port {
            Port::Own { socket, link } => link.send(socket, to_socket_addr(dst), bytes),
            Port::Shared { addr } => {
                if let Some(s) = shared {
                    let _ = s.send(*addr, to_socket_addr(dst), bytes);
                }
            }
        }
    }
}

/// Starts `l`'s next request; false when it has none outstanding after all (its share of a
/// fill is written, or the request could not be sent): such a client is done for the run.
fn start_op<C: LoadClient>(l: &mut Logical<C>, ctx: Ctx<'_>, out: &mut HeapOutbox) -> bool {
    let Ctx { opts, shared, clock, socket } = ctx;
    debug_assert!(l.current.is_empty(), "one request outstanding per client");
    let depth = if opts.fill { 1 } else { opts.pipeline.max(1) };
    // The invocation instant is taken before the request can leave: once `send_to` returns
    // (or even before, since a loopback send wakes the server and this thread may be
    // descheduled right there), the service may already have executed the operation. A
    // timestamp taken after the send can be later than the operation's effect, and the
    // history would then claim a real-time order that never happened (a Get "invoked" after
    // a Set completed, that in truth was executed before it).
    let sent = StdInstant::now();
    let invoke_us = if opts.history.is_some() { sent.duration_since(shared.start).as_micros() as u64 } else { 0 };
    let carried = l.carried.len();
    l.current.append(&mut l.carried);
    while l.current.len() < depth {
        let (key, read) = if opts.fill {
            let index = l.id + l.filled * opts.clients as u64;
            if index >= opts.keys {
                return !l.current.is_empty(); // This client's share is written.
            }
            (opts.first_key + index, false)
        } else {
            (
                opts.first_key + xorshift(&mut l.rng) % opts.keys.max(1),
                (xorshift(&mut l.rng) % 100) < u64::from(opts.read_pct),
            )
        };
        // Values are unique per write (client, counter), so a history pins every read.
        let mut value = l.spare_values.pop().unwrap_or_default();
        value.clear();
        push_hex(&mut value, l.id, 8);
        push_hex(&mut value, l.n, 16);
        value.resize(opts.value_size.max(value.len()), b'.');
        l.n += 1;
        l.current.push(InFlightOp { key, read, value, invoke_us, sent });
    }
    let planned: Vec<PlannedOp<'_>> =
        l.current.iter().map(|op| PlannedOp { key: op.key, write: (!op.read).then_some(&op.value[..]) }).collect();
    let mut o = out.outbox();
    let now = clock.now();
    l.op_deadline = now.plus_us(opts.op_timeout.as_micros().try_into().unwrap_or(u64::MAX));
    let started = l.client.start(now, &planned, &mut o);
    // Operations that did not fit the request were never sent: new ones stay out of the
    // history, carried reads wait for the next request.
    let mut unsent = l.current.split_off(started.min(l.current.len()));
    unsent.truncate(carried.saturating_sub(started));
    l.carried = unsent;
    send_all(&mut l.port, socket, &o, &mut l.seal);
    !l.current.is_empty()
}

/// When the load thread must next look at `l`: its client's timer, or its request's
/// timeout. Only what is done to `l` moves it earlier, so the thread folds it in after each
/// such step and need not visit every client to find the earliest.
fn attention_at<C: LoadClient>(l: &Logical<C>) -> Instant {
    let timer = l.client.next_deadline();
    if l.current.is_empty() {
        timer
    } else {
        timer.min(l.op_deadline)
    }
}

/// Ends the outstanding request: `completed` with one result per operation in
/// `l.results` (an operation without one counts as lost), or not (timed out, or cut off).
fn finish_request<C: LoadClient>(
    w: &mut Worker,
    l: &mut Logical<C>,
    opts: &BenchOptions,
    shared: &Shared,
    completed: bool,
) {
    std::mem::swap(&mut l.current, &mut l.finished);
    let mut ops = std::mem::take(&mut l.finished);
    let mut results = std::mem::take(&mut l.results);
    let mut replies = results.drain(..);
    for op in ops.drain(..) {
        let reply = completed.then(|| replies.next().unwrap_or(OpResult::Lost));
        // Applied without room for its reply: a read asks again, a write's outcome is lost.
        if op.read && reply == Some(OpResult::Lost) && opts.pipeline > 1 {
            l.carried.push(op);
            continue;
        }
        finish_op(w, l, op, opts, shared, reply);
    }
    drop(replies);
    (l.finished, l.results) = (ops, results);
}

fn finish_op<C: LoadClient>(
    w: &mut Worker,
    l: &mut Logical<C>,
    op: InFlightOp,
    opts: &BenchOptions,
    shared: &Shared,
    reply: Option<OpResult>,
) {
    let refused = reply.is_none() && l.client.refused();
    let lost = matches!(reply, Some(OpResult::Lost));
    let recording = opts.history.is_some();
    let (status, result) = match reply {
        // Hex only for the history file: encoding every read is most of the load
        // generator's own CPU otherwise.
        Some(OpResult::Value(v)) => (RecordStatus::Ok, v.filter(|_| recording).map(|b| encode_hex(&b))),
        Some(OpResult::Done) => (RecordStatus::Ok, None),
        // Refused by the service: nothing changed.
        Some(OpResult::Refused) => (RecordStatus::Fail, None),
        // Lost, or timed out (refused until then, or not): the outcome is unknown.
        Some(OpResult::Lost) | None => (RecordStatus::Timeout, None),
    };
    match status {
        RecordStatus::Ok => {
            w.ops += 1;
            l.filled += 1;
            let _ = w.hist.record(op.sent.elapsed().as_micros().max(1) as u64);
        }
        RecordStatus::Timeout => {
            w.errors += 1;
            match (lost, refused) {
                (true, _) => w.lost += 1,
                (false, true) => w.refused += 1,
                (false, false) => w.timeouts += 1,
            }
        }
        RecordStatus::Fail => {
            w.errors += 1;
            l.filled += 1; // Refused: retrying would be refused again.
        }
    }
    shared.done.fetch_add(1, Ordering::Relaxed);
    if recording {
        w.history.push(HistoryRecord {
            client: l.id,
            op: if op.read { RecordOp::Get } else { RecordOp::Set },
            key: op.key,
            value: (!op.read).then(|| encode_hex(&op.value)),
            invoke_us: op.invoke_us,
            complete_us: (status == RecordStatus::Ok).then(|| shared.start.elapsed().as_micros() as u64),
            result,
            status,
        });
    }
    l.spare_values.push(op.value);
}

/// What a load thread's steps share: the run's options and clock, and the thread's shared
/// socket when its clients have one.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    opts: &'a BenchOptions,
    shared: &'a Shared,
    clock: &'a Clock,
    socket: Option<&'a SharedSocket>,
}

/// Hands `l` a datagram from `from`; when that completes its request, starts the next one
/// (counting `l` in `idle` if it has none). Returns whether the request completed.
fn on_datagram<C: LoadClient>(
    w: &mut Worker,
    l: &mut Logical<C>,
    from: SocketAddr,
    bytes: &[u8],
    ctx: Ctx<'_>,
    out: &mut HeapOutbox,
    idle: &mut usize,
) -> bool {
    let datagram = match l.seal.as_mut() {
        None => Some(bytes),
        Some(s) => s.open(from, bytes),
    };
    let Some(datagram) = datagram else { return false };
    let mut o = out.outbox();
    let now = ctx.clock.now();
    let completed = l.client.on_datagram(now, to_endpoint(from), datagram, &mut o, &mut l.results);
    send_all(&mut l.port, ctx.socket, &o, &mut l.seal);
    if completed {
        finish_request(w, l, ctx.opts, ctx.shared, true);
        if StdInstant::now() < ctx.shared.stop_at && !start_op(l, ctx, out) {
            *idle += 1;
        }
    }
    completed
}

pub(super) fn load_thread<C: LoadClient>(
    mut clients: Vec<Logical<C>>,
    mut socket: Option<SharedSocket>,
    opts: BenchOptions,
    shared: Shared,
) -> std::io::Result<Worker> {
    let mut w = Worker { hist: new_hist(), ops: 0, errors: 0, timeouts: 0, refused: 0, lost: 0, history: Vec::new() };
    let mut poll = mio::Poll::new()?;
    for (i, l) in clients.iter_mut().enumerate() {
        if let Port::Own { socket, .. } = &mut l.port {
            poll.registry().register(socket, mio::Token(i), mio::Interest::READABLE)?;
        }
    }
    let shared_token = mio::Token(clients.len());
    if let Some(s) = socket.as_mut() {
        poll.registry().register(s.source(), shared_token, mio::Interest::READABLE)?;
    }
    let clock = Clock::start();
    let mut out = HeapOutbox::new(64, 1 << 20);
    let mut events = mio::Events::with_capacity(1024);
    let mut buf = vec![0u8; 65536];
    // Clients with nothing outstanding for the rest of the run (a fill's share written).
    let mut idle = 0;
    // The earliest instant any client needs its timers looked at (an upper bound: a timer
    // that moved later is found so at the look).
    let mut next_scan = Instant::NEVER;
    // The shared socket still held datagrams when the thread last stopped reading it.
    let mut shared_unread = false;
    {
        let ctx = Ctx { opts: &opts, shared: &shared, clock: &clock, socket: socket.as_ref() };
        for l in clients.iter_mut() {
            if !start_op(l, ctx, &mut out) {
                idle += 1;
            }
            next_scan = next_scan.min(attention_at(l));
        }
    }
    loop {
        let left = shared.stop_at.saturating_duration_since(StdInstant::now());
        if left.is_zero() || (opts.fill && idle == clients.len()) {
            break; // The run is over, or every key of this thread's clients is written.
        }
        let wait = if shared_unread {
            Duration::ZERO
        } else {
            Duration::from_micros(next_scan.micros_since(clock.now())).min(left).max(Duration::from_micros(100))
        };
        match poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            // A signal (a debugger or `strace` attaching, a terminal resize) interrupts the
            // wait: nothing is ready, so the loop goes on; `events` was cleared by the call.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let ctx = Ctx { opts: &opts, shared: &shared, clock: &clock, socket: socket.as_ref() };
        let mut read_shared = shared_unread;
        for ev in events.iter() {
            if ev.token() == shared_token {
                read_shared = true;
                continue;
            }
            let Some(l) = clients.get_mut(ev.token().0) else { continue };
            // Read until the outstanding operation completes or the socket is empty. Stopping
            // at a completion saves the `WouldBlock` read, one system call per operation: a
            // datagram left queued (a duplicate reply) is read on the next event, and there
            // is a next event, because the next operation's reply is a new arrival and Linux
            // epoll reports every arrival, even edge-triggered. Each socket is read at most
            // `MAX_READS_PER_EVENT` times per event so one chatty peer cannot starve the rest.
            for _ in 0..MAX_READS_PER_EVENT {
                let Port::Own { socket: own, .. } = &l.port else { break };
                match own.recv_from(&mut buf) {
                    Ok((len, from)) => {
                        if on_datagram(&mut w, l, from, &buf[..len], ctx, &mut out, &mut idle) {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => break, // e.g. ICMP unreachable from a dead replica
                }
            }
            next_scan = next_scan.min(attention_at(l));
        }
        if let (true, Some(s)) = (read_shared, socket.as_mut()) {
            // Read bursts until one comes back short (the queue was empty; a later arrival
            // is a new edge) or the per-event limit, which leaves the rest for the next turn.
            shared_unread = true;
            for _ in 0..MAX_SHARED_BURSTS_PER_EVENT {
                // An error (a pending ICMP report) is consumed by the read that returns it:
                // the thread goes on, as it does for a client socket's.
                let n = s.recv().unwrap_or(0);
                let s = &*s;
                let ctx = Ctx { opts: &opts, shared: &shared, clock: &clock, socket: Some(s) };
                for (to, from, bytes) in s.datagrams() {
                    let Some(l) = client_index(to).and_then(|i| clients.get_mut(i)) else { continue };
                    on_datagram(&mut w, l, from, bytes, ctx, &mut out, &mut idle);
                    next_scan = next_scan.min(attention_at(l));
                }
                if n < BURST {
                    shared_unread = false;
                    break;
                }
            }
        }
        let now = clock.now();
        if now < next_scan {
            continue;
        }
        let ctx = Ctx { opts: &opts, shared: &shared, clock: &clock, socket: socket.as_ref() };
        next_scan = Instant::NEVER;
        for l in clients.iter_mut() {
            if !l.current.is_empty() && now >= l.op_deadline {
                l.client.cancel();
                finish_request(&mut w, l, &opts, &shared, false);
                if !start_op(l, ctx, &mut out) {
                    idle += 1;
                }
            } else if l.client.next_deadline() <= now {
                let mut o = out.outbox();
                l.client.tick(now, &mut o);
                send_all(&mut l.port, ctx.socket, &o, &mut l.seal);
            }
            next_scan = next_scan.min(attention_at(l));
        }
        // A timer that keeps firing (a client with no replica to send to) is looked at no
        // more than once a `TIMER_SCAN_PERIOD`.
        next_scan = next_scan.max(now.plus_us(TIMER_SCAN_PERIOD.as_micros() as u64));
    }
    // Operations still outstanding at the end: their outcome is unknown. Cut off by the end
    // of the run, not a failure of the cluster, unless the service was refusing them.
    for l in clients.iter_mut() {
        if !l.current.is_empty() {
            let refused = l.client.refused();
            let cut_off = l.current.len() as u64;
            finish_request(&mut w, l, &opts, &shared, false);
            if !refused {
                w.errors -= cut_off;
                w.timeouts -= cut_off;
            }
        }
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::{push_hex, Link};
    use std::net::UdpSocket;
    use std::time::Duration;

    fn server() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s
    }

    fn client() -> mio::net::UdpSocket {
        mio::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap()
    }

    fn recv(s: &UdpSocket) -> Vec<u8> {
        let mut buf = [0u8; 64];
        let (n, _) = s.recv_from(&mut buf).unwrap();
        buf[..n].to_vec()
    }

    #[test]
    fn a_connected_link_follows_its_destination_and_hears_only_it() {
        let (a, b, stray) = (server(), server(), server());
        let socket = client();
        let me = socket.local_addr().unwrap();
        let mut link = Link::new(true);
        link.send(&socket, a.local_addr().unwrap(), b"to a");
        assert_eq!(recv(&a), b"to a");
        assert_eq!(link.peer, Some(a.local_addr().unwrap()));
        // Redirected: the socket follows to b, and b's answer arrives.
        link.send(&socket, b.local_addr().unwrap(), b"to b");
        assert_eq!(recv(&b), b"to b");
        assert_eq!(link.peer, Some(b.local_addr().unwrap()));
        // The stray goes first: had the socket taken it, it would be queued before the answer.
        stray.send_to(b"stray", me).unwrap();
        b.send_to(b"answer", me).unwrap();
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        for _ in 0..400 {
            if let Ok(n) = socket.recv(&mut buf) {
                got.push(buf[..n].to_vec());
            }
            if got.last().is_some_and(|d| d == b"answer") {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(got, vec![b"answer".to_vec()], "a connected socket hears only its server");
    }

    #[test]
    fn an_unconnected_link_hears_everyone() {
        let (a, stray) = (server(), server());
        let socket = client();
        let me = socket.local_addr().unwrap();
        let mut link = Link::new(false);
        link.send(&socket, a.local_addr().unwrap(), b"to a");
        assert_eq!(recv(&a), b"to a");
        assert_eq!(link.peer, None);
        stray.send_to(b"stray", me).unwrap();
        let mut buf = [0u8; 64];
        let mut got = None;
        for _ in 0..200 {
            if let Ok(n) = socket.recv(&mut buf) {
                got = Some(buf[..n].to_vec());
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(got, Some(b"stray".to_vec()));
    }

    #[test]
    fn values_are_written_as_format_writes_them() {
        for v in [0u64, 1, 0xf, 0x10, 0xdead_beef, 0x1_0000_0000, u64::MAX >> 4, u64::MAX] {
            let mut out = b"x".to_vec();
            push_hex(&mut out, v, 8);
            push_hex(&mut out, v, 16);
            assert_eq!(out, format!("x{v:08x}{v:016x}").into_bytes(), "{v:#x}");
        }
    }
}
