//! [`RslFlash`]: an RSL replica's durable state in a [`FlashLog`].
//!
//! After every step the replica's records (acceptor state and votes, executed batches) are
//! appended as log records, and the replica is told they are durable
//! ([`Replica::persisted`]), so the checkpoint it reports may move. When the log since the
//! last image has grown past `compact_after_bytes`, or the replica installed a snapshot it
//! must persist, an image group is written between two steps: the frozen snapshot's pieces
//! (image records), then the acceptor's image (log records, replayed first), and the older
//! items are popped.

use embedded_storage_async::nor_flash::MultiwriteNorFlash;
use fleet_engine::rsl::durable::{snapshot_record, DURABLE_RECORD_OVERHEAD_BYTES};
use fleet_engine::rsl::snapshot::SnapshotPos;
use fleet_engine::rsl::{App, RecoverError, Recovery, Replica, RslConfig};
use fleet_engine::Instant;

use crate::log::{FlashLog, FlashLogError, Kind, FRAME_BYTES};
use crate::{Halt, HostCell};

/// Why a replica could not be recovered from flash.
#[derive(Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RecoverFailure<E> {
    /// The flash log could not be read (or is damaged).
    Flash(FlashLogError<E>),
    /// The records read do not rebuild a replica.
    Records(RecoverError),
}

/// An RSL replica's persister over a flash log.
pub struct RslFlash<'a, F: MultiwriteNorFlash> {
    log: FlashLog<F>,
    /// One record plus its frame: the largest batch plus
    /// [`DURABLE_RECORD_OVERHEAD_BYTES`] + [`FRAME_BYTES`].
    buf: &'a mut [u8],
    /// A snapshot piece's bytes; at least the largest reply-cache entry.
    scratch: &'a mut [u8],
    compact_after_bytes: u64,
    images: u64,
}

impl<'a, F: MultiwriteNorFlash> RslFlash<'a, F> {
    /// A persister over `log`. `buf` holds one record and its frame (`D +`
    /// [`DURABLE_RECORD_OVERHEAD_BYTES`] `+` [`FRAME_BYTES`]); `scratch` one snapshot piece,
    /// at least the largest reply-cache entry. An image is written once the log since the
    /// last one passes `compact_after_bytes`; size the region for two images and that log.
    pub fn new(log: FlashLog<F>, buf: &'a mut [u8], scratch: &'a mut [u8], compact_after_bytes: u64) -> Self {
        RslFlash { log, buf, scratch, compact_after_bytes, images: 0 }
    }

    /// Replica `me` rebuilt from the flash log at `now` (a first start, with nothing stored,
    /// rejoins with `nonce`, as [`Replica::new_durable`]); `app` is the initial state.
    pub async fn recover<
        A: App,
        const R: usize,
        const W: usize,
        const D: usize,
        const QB: usize,
        const C: usize,
        const RB: usize,
        const TB: usize,
    >(
        &mut self,
        config: RslConfig<R>,
        me: usize,
        app: A,
        now: Instant,
        nonce: u64,
    ) -> Result<Replica<A, R, W, D, QB, C, RB, TB>, RecoverFailure<F::Error>> {
        let mut recovery = Recovery::new(config, me, app, now).map_err(RecoverFailure::Records)?;
        let replayed = self
            .log
            .replay(self.buf, |kind, bytes| match kind {
                Kind::Image => recovery.snapshot_piece(bytes),
                Kind::Log => recovery.log_record(bytes),
            })
            .await
            .map_err(RecoverFailure::Flash)?;
        replayed.map_err(RecoverFailure::Records)?;
        recovery.finish(nonce).map_err(RecoverFailure::Records)
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

    /// Writes an image group: the frozen snapshot's pieces, then the acceptor's image.
    async fn write_image<
        A: App,
        const R: usize,
        const W: usize,
        const D: usize,
        const QB: usize,
        const C: usize,
        const RB: usize,
        const TB: usize,
    >(
        &mut self,
        node: &impl HostCell<Replica<A, R, W, D, QB, C, RB, TB>>,
    ) -> Result<(), Halt> {
        let room = self.scratch.len().min(self.buf.len().saturating_sub(FRAME_BYTES + DURABLE_RECORD_OVERHEAD_BYTES));
        let id = node.with_host(|h| {
            h.freeze_snapshot();
            h.frozen().id
        });
        self.log.begin_group(self.buf).await?;
        let mut pos = SnapshotPos::default();
        loop {
            let (buf, scratch) = (&mut *self.buf, &mut *self.scratch);
            let piece = node
                .with_host(|h| snapshot_record(h.frozen(), pos, room, &mut scratch[..room], &mut buf[FRAME_BYTES..]));
            match piece {
                None => break,
                Some(Ok((len, next))) => {
                    self.log.append(Kind::Image, self.buf, len).await?;
                    pos = next;
                }
                Some(Err(_)) => return Err(Halt("a snapshot piece did not fit its buffer")),
            }
        }
        let records = node.with_host(|h| h.durable_image_len());
        for i in 0..records {
            let buf = &mut *self.buf;
            let len = node.with_host(|h| h.durable_image_record(i, &mut buf[FRAME_BYTES..]).map(<[u8]>::len));
            let len = len.map_err(|_| Halt("an acceptor image record did not fit its buffer"))?;
            self.log.append(Kind::Log, self.buf, len).await?;
        }
        self.log.end_group(self.buf).await?;
        node.with_host(|h| h.snapshot_persisted(id));
        self.images += 1;
        Ok(())
    }

    /// After every step of the replica in `node`, before the step's datagrams leave:
    /// appends its records, tells it they are durable, and writes an image when one is due.
    /// An error means the replica must stop speaking.
    pub async fn after_step<
        A: App,
        const R: usize,
        const W: usize,
        const D: usize,
        const QB: usize,
        const C: usize,
        const RB: usize,
        const TB: usize,
    >(
        &mut self,
        node: &impl HostCell<Replica<A, R, W, D, QB, C, RB, TB>>,
    ) -> Result<(), Halt> {
        loop {
            let buf = &mut *self.buf;
            let record = node.with_host(|h| h.next_record(&mut buf[FRAME_BYTES..]).map(|r| r.map(<[u8]>::len)));
            match record {
                None => break,
                Some(Ok(len)) => self.log.append(Kind::Log, self.buf, len).await?,
                Some(Err(_)) => return Err(Halt("a durable record did not fit its buffer")),
            }
        }
        // Every record handed out is on flash: the checkpoint may move.
        node.with_host(|h| {
            let mark = h.durable_mark();
            h.persisted(mark);
        });
        let required = node.with_host(|h| h.snapshot_required().is_some());
        if required || self.log.bytes_since_image() >= self.compact_after_bytes {
            self.write_image(node).await?;
        }
        Ok(())
    }
}
