//! An async RSL client over one embassy-net UDP socket: the engine's sans-IO
//! [`Client`] driven by embassy-time.

use embassy_futures::select::{select, Either};
use embassy_net::udp::UdpSocket;
use embassy_time::{Duration, Timer};
use fleet_engine::rsl::{Client, ClientError};
use fleet_engine::OutboxBuf;

use crate::net::{to_endpoint, to_ip_endpoint};
use crate::seal::{open, Seal};
use fleet_engine::auth::Guard;

/// Why a call returned no reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CallError {
    /// No replica answered in time; the request may still execute later.
    Timeout,
    /// The request does not fit one datagram.
    TooLarge,
    /// The reply is larger than the caller's buffer (it was executed).
    ReplyTooLarge,
    /// A KV host gave up on this client before the reply was delivered: the operation may
    /// or may not have taken effect (as after a timeout), and it is not retried.
    Lost,
}

/// An RSL client of at most `R` replicas, `D`-byte datagrams, an `OB`-byte outbox (a retry
/// is sent to every replica: `OB` ≥ `R` × the largest request datagram).
pub struct RslClient<const R: usize, const D: usize, const OB: usize> {
    client: Client<R, D>,
    out: OutboxBuf<R, OB>,
    rx: [u8; D],
    seal: Option<Seal<D>>,
}

impl<const R: usize, const D: usize, const OB: usize> RslClient<R, D, OB> {
    /// Wraps a configured engine client.
    pub fn new(client: Client<R, D>) -> Self {
        RslClient { client, out: OutboxBuf::new(), rx: [0; D], seal: None }
    }

    /// Wraps a configured engine client of a sealed cluster: every datagram is sealed and
    /// opened with `guard` (a client's: `Role::Client`). The engine's datagram bound must
    /// leave [`AUTH_OVERHEAD_BYTES`](fleet_engine::auth::AUTH_OVERHEAD_BYTES) under `D`.
    pub fn sealed(client: Client<R, D>, guard: Guard<'static>) -> Self {
        RslClient { client, out: OutboxBuf::new(), rx: [0; D], seal: Some(Seal::new(guard)) }
    }

    /// The engine client (stats, pending seqno).
    pub fn inner(&self) -> &Client<R, D> {
        &self.client
    }

    /// Sends `request`, retransmitting until a reply arrives or `give_up` passes; copies
    /// the reply into `reply` and returns its length.
    pub async fn call(
        &mut self,
        socket: &UdpSocket<'_>,
        request: &[u8],
        reply: &mut [u8],
        give_up: Duration,
    ) -> Result<usize, CallError> {
        let end = embassy_time::Instant::now() + give_up;
        let mut out = self.out.outbox();
        match self.client.submit(crate::now(), request, &mut out) {
            Ok(_) => {}
            Err(ClientError::TooLarge) => return Err(CallError::TooLarge),
            Err(ClientError::Busy) => {
                // A previous call was abandoned mid-flight: forget it and retry.
                self.client.cancel();
                out.clear();
                self.client.submit(crate::now(), request, &mut out).map_err(|_| CallError::TooLarge)?;
            }
        }
        loop {
            for (dst, bytes) in out.iter() {
                let Some(ep) = to_ip_endpoint(dst) else { continue };
                let Some(wire) = crate::seal::wire(&mut self.seal, dst, bytes) else { continue };
                // A refused send is a lost datagram: the retransmission covers it.
                let _ = socket.send_to(wire, ep).await;
            }
            out.clear();
            let now = embassy_time::Instant::now();
            if now >= end {
                self.client.cancel();
                return Err(CallError::Timeout);
            }
            let deadline = self.client.next_deadline().as_micros();
            let wait = Duration::from_micros(deadline.saturating_sub(now.as_micros())).min(end - now);
            let event = select(socket.recv_from(&mut self.rx), Timer::after(wait)).await;
            match event {
                Either::First(Ok((n, meta))) => {
                    let Some(from) = to_endpoint(meta.endpoint) else { continue };
                    let Some(datagram) = open(&mut self.seal, from, &self.rx[..n]) else { continue };
                    if let Some(done) = self.client.handle(crate::now(), from, datagram) {
                        let dst = reply.get_mut(..done.reply.len()).ok_or(CallError::ReplyTooLarge)?;
                        dst.copy_from_slice(done.reply);
                        return Ok(done.reply.len());
                    }
                }
                Either::First(Err(_)) => {}
                Either::Second(()) => self.client.tick(crate::now(), &mut out),
            }
        }
    }
}
