//! An async IronKV client over an embassy-net UDP socket: the engine's sans-IO `KvClient`
//! driven by the socket and embassy-time, one operation at a time.

use embassy_futures::select::{select, Either};
use embassy_net::udp::UdpSocket;
use embassy_time::{Duration, Timer};
use fleet_engine::kv::{ClientError, Event, KvClient, Outcome, Request};
use fleet_engine::{Endpoint, OutboxBuf};

use crate::client::CallError;
use crate::net::{to_endpoint, to_ip_endpoint};
use crate::seal::{open, Seal};
use fleet_engine::auth::Guard;

/// What an operation returned (values copied into the caller's buffer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum KvAnswer {
    /// A Get's value length in the caller's buffer (`None`: absent).
    Value(Option<usize>),
    /// A Set or Delete took effect.
    Written,
    /// A Shard was carried out.
    Sharded,
    /// The host refused; nothing changed.
    Failed(fleet_engine::kv::KvError),
}

/// An async KV client: `H` hosts, `U` unacked requests, `D`-byte datagrams, and an outbox of
/// `OB` bytes.
pub struct AsyncKvClient<const H: usize, const U: usize, const D: usize, const OB: usize> {
    client: KvClient<H, U, D>,
    out: OutboxBuf<8, OB>,
    rx: [u8; D],
    seal: Option<Seal<D>>,
}

impl<const H: usize, const U: usize, const D: usize, const OB: usize> AsyncKvClient<H, U, D, OB> {
    /// Wraps a sans-IO client.
    pub fn new(client: KvClient<H, U, D>) -> Self {
        AsyncKvClient { client, out: OutboxBuf::new(), rx: [0; D], seal: None }
    }

    /// Wraps a sans-IO client of a sealed cluster: every datagram is sealed and opened with
    /// `guard` (a client's: `Role::Client`). The engine's datagram bound must leave
    /// [`AUTH_OVERHEAD_BYTES`](fleet_engine::auth::AUTH_OVERHEAD_BYTES) under `D`.
    pub fn sealed(client: KvClient<H, U, D>, guard: Guard<'static>) -> Self {
        AsyncKvClient { client, out: OutboxBuf::new(), rx: [0; D], seal: Some(Seal::new(guard)) }
    }

    /// The sans-IO client (for its counters).
    pub fn inner(&self) -> &KvClient<H, U, D> {
        &self.client
    }

    /// Runs `request` (to `host` if given, else to the owner the client believes in),
    /// copying a Get's value into `value`; gives up after `give_up`.
    pub async fn call(
        &mut self,
        socket: &UdpSocket<'_>,
        request: Request<'_>,
        host: Option<Endpoint>,
        value: &mut [u8],
        give_up: Duration,
    ) -> Result<KvAnswer, CallError> {
        let end = embassy_time::Instant::now() + give_up;
        let mut out = self.out.outbox();
        let submitted = match host {
            Some(h) => self.client.submit_to(crate::now(), h, request, &mut out),
            None => self.client.submit(crate::now(), request, &mut out),
        };
        match submitted {
            Ok(_) => {}
            Err(ClientError::TooLarge) => return Err(CallError::TooLarge),
            Err(ClientError::Busy) | Err(ClientError::QueueFull) => {
                self.client.cancel();
                return Err(CallError::Timeout);
            }
        }
        loop {
            send_all(socket, &mut out, &mut self.seal).await;
            let now = embassy_time::Instant::now();
            if now >= end {
                self.client.cancel();
                return Err(CallError::Timeout);
            }
            let deadline = self.client.next_deadline().as_micros();
            let wait = Duration::from_micros(deadline.saturating_sub(now.as_micros())).min(end - now);
            match select(socket.recv_from(&mut self.rx), Timer::after(wait)).await {
                Either::First(Ok((n, meta))) => {
                    let Some(from) = to_endpoint(meta.endpoint) else { continue };
                    let Some(datagram) = open(&mut self.seal, from, &self.rx[..n]) else { continue };
                    let event = self.client.handle(crate::now(), from, datagram, &mut out);
                    if let Some(Event::Lost { .. }) = event {
                        send_all(socket, &mut out, &mut self.seal).await;
                        return Err(CallError::Lost);
                    }
                    if let Some(Event::Completed(c)) = event {
                        let answer = match c.outcome {
                            Outcome::Value(None) => Ok(KvAnswer::Value(None)),
                            Outcome::Value(Some(v)) => {
                                let dst = value.get_mut(..v.len()).ok_or(CallError::ReplyTooLarge)?;
                                dst.copy_from_slice(v);
                                Ok(KvAnswer::Value(Some(v.len())))
                            }
                            Outcome::Written => Ok(KvAnswer::Written),
                            Outcome::Sharded => Ok(KvAnswer::Sharded),
                            Outcome::Failed(e) => Ok(KvAnswer::Failed(e)),
                        };
                        // The reply's ack is owed; nobody ticks this client between calls.
                        self.client.flush_acks(&mut out);
                        send_all(socket, &mut out, &mut self.seal).await;
                        return answer;
                    }
                }
                Either::First(Err(_)) => {}
                Either::Second(()) => self.client.tick(crate::now(), &mut out),
            }
        }
    }
}

/// Sends (sealed, if the client has a seal) and clears `out`. A refused send is a lost
/// datagram: the retransmission covers it.
async fn send_all<const D: usize>(
    socket: &UdpSocket<'_>,
    out: &mut fleet_engine::Outbox<'_>,
    seal: &mut Option<Seal<D>>,
) {
    for (dst, bytes) in out.iter() {
        let Some(ep) = to_ip_endpoint(dst) else { continue };
        let Some(wire) = crate::seal::wire(seal, dst, bytes) else { continue };
        let _ = socket.send_to(wire, ep).await;
    }
    out.clear();
}
