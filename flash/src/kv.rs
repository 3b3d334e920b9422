//! [`KvFlash`]: a KV host's durable state in a [`FlashLog`] (the engine's `kv::durable`
//! design: the log holds the input of every step that changed the state, an image
//! compacts it).
//!
//! After every step whose input the host logged, the input record is appended; when the log
//! since the last image passes `compact_after_bytes`, an image group is written between two
//! steps (image records only; the inputs after it are the log). A host starting with an
//! empty region is a host without state: it joins ([`KvHost::new_joining`]), and its first
//! image is written before it runs, so every later input has an image to replay onto.

use embedded_storage_async::nor_flash::MultiwriteNorFlash;
use fleet_engine::kv::{ImageCursor, KvConfig, KvHost, KvRecovery, RecoverError, Storage};
use fleet_engine::wire::EncodeError;
use fleet_engine::{Instant, Outbox};

use crate::log::{FlashLog, FlashLogError, Kind, FRAME_BYTES};
use crate::{Halt, HostCell, Input};

/// Why a KV host could not be recovered from flash.
#[derive(Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum KvRecoverFailure<E> {
    /// The flash log could not be read or written (or is damaged).
    Flash(FlashLogError<E>),
    /// The records read do not rebuild the host.
    Records(RecoverError),
    /// Log records without an image to replay them onto.
    NoImage,
    /// The first image could not be written.
    Image(Halt),
}

/// A KV host's persister over a flash log.
pub struct KvFlash<'a, F: MultiwriteNorFlash> {
    log: FlashLog<F>,
    /// One record plus its frame: the largest datagram or value plus
    /// `KV_RECORD_OVERHEAD_BYTES` + [`FRAME_BYTES`].
    buf: &'a mut [u8],
    compact_after_bytes: u64,
    /// The host's logged steps as of the last record appended.
    logged: u64,
    images: u64,
}

impl<'a, F: MultiwriteNorFlash> KvFlash<'a, F> {
    /// A persister over `log`; `buf` holds one record and its frame. An image is written
    /// once the log since the last one passes `compact_after_bytes`.
    pub fn new(log: FlashLog<F>, buf: &'a mut [u8], compact_after_bytes: u64) -> Self {
        KvFlash { log, buf, compact_after_bytes, logged: 0, images: 0 }
    }

    /// Host `me` rebuilt from the flash log into the empty `store`; logged inputs are
    /// replayed through `out`. With nothing stored, a host without state that joins with
    /// `nonce` at `now`, whose first image is written here.
    pub async fn recover<S: Storage, const H: usize, const M: usize, const P: usize, const U: usize, const D: usize>(
        &mut self,
        config: KvConfig<H>,
        me: usize,
        store: S,
        nonce: u64,
        now: Instant,
        out: &mut Outbox<'_>,
    ) -> Result<KvHost<S, H, M, P, U, D>, KvRecoverFailure<F::Error>> {
        let found = self.log.found();
        if !found.has_image {
            if found.log_records > 0 {
                return Err(KvRecoverFailure::NoImage);
            }
            let mut host = KvHost::new_joining(config, me, store, nonce, now)
                .map_err(|e| KvRecoverFailure::Records(RecoverError::Config(e)))?;
            host.set_durable(true);
            self.write_image(|c, b| host.image_record(c, b).map(|r| r.map(<[u8]>::len)))
                .await
                .map_err(KvRecoverFailure::Image)?;
            self.logged = host.logged_steps();
            return Ok(host);
        }
        let mut recovery = KvRecovery::new(config, me, store).map_err(KvRecoverFailure::Records)?;
        let replayed =
            self.log.replay(self.buf, |_, bytes| recovery.record(bytes, out)).await.map_err(KvRecoverFailure::Flash)?;
        replayed.map_err(KvRecoverFailure::Records)?;
        let mut host = recovery.finish().map_err(KvRecoverFailure::Records)?;
        host.set_durable(true);
        self.logged = host.logged_steps();
        Ok(host)
    }

    /// The log.
    pub fn log(&self) -> &FlashLog<F> {
        &self.log
    }

    /// Images written since this persister was made.
    pub fn images(&self) -> u64 {
        self.images
    }

    /// The flash log, back.
    pub fn into_log(self) -> FlashLog<F> {
        self.log
    }

    /// Writes an image group of the records `next` yields (encoded after the frame in the
    /// buffer it is given; their lengths), until it yields `None`.
    async fn write_image(
        &mut self,
        mut next: impl FnMut(&mut ImageCursor, &mut [u8]) -> Option<Result<usize, EncodeError>>,
    ) -> Result<(), Halt> {
        self.log.begin_group(self.buf).await?;
        let mut cursor = ImageCursor::default();
        loop {
            match next(&mut cursor, &mut self.buf[FRAME_BYTES..]) {
                None => break,
                Some(Ok(len)) => self.log.append(Kind::Image, self.buf, len).await?,
                Some(Err(_)) => return Err(Halt("an image record did not fit its buffer")),
            }
        }
        self.log.end_group(self.buf).await?;
        self.images += 1;
        Ok(())
    }

    /// After every step of the host in `node` (its input `input`, at `now`), before the
    /// step's datagrams leave: appends the input if the host logged it, and writes an image
    /// when one is due. An error means the host must stop speaking.
    pub async fn after_step<
        S: Storage,
        const H: usize,
        const M: usize,
        const P: usize,
        const U: usize,
        const D: usize,
    >(
        &mut self,
        node: &impl HostCell<KvHost<S, H, M, P, U, D>>,
        now: Instant,
        input: Input<'_>,
    ) -> Result<(), Halt> {
        let buf = &mut *self.buf;
        let logged = self.logged;
        let record = node.with_host(|h| {
            if h.logged_steps() == logged {
                return None;
            }
            let input = match input {
                Input::Datagram { from, datagram } => Some((from, datagram)),
                Input::Tick => None,
            };
            Some((h.logged_steps(), h.input_record(now, input, &mut buf[FRAME_BYTES..]).map(<[u8]>::len)))
        });
        if let Some((steps, len)) = record {
            let len = len.map_err(|_| Halt("an input record did not fit its buffer"))?;
            self.log.append(Kind::Log, self.buf, len).await?;
            self.logged = steps;
        }
        if self.log.bytes_since_image() >= self.compact_after_bytes {
            self.write_image(|c, b| node.with_host(|h| h.image_record(c, b).map(|r| r.map(<[u8]>::len)))).await?;
        }
        Ok(())
    }
}
