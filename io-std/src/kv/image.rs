//! A durable KV host's image files and its recovery: writing a frozen host's image
//! (`kv.image`, the one it replaces kept as `kv.image.prev`), and rebuilding the host from
//! the newest usable image and the logged inputs after it.
//!
//! Which image serves: `kv.image`, else `kv.image.prev` (the log reaches back to it), each
//! checked whole (frames and checksums by [`snapshot_file::read`], then the records by
//! [`KvServerHost::recover`]). A damaged one is moved aside (`<name>.corrupt`) with a
//! warning and never served from. A directory with no image, no log and nothing moved aside
//! is new: the host starts without state and joins (`fleet_engine::kv::join`). Anything
//! else stops the start with the directory and what is wrong: a host's first state names its
//! incarnation and only its images hold it, so a log is never replayed without one, and a
//! host that forgot its inputs could answer for a write it lost. Moving the directory aside
//! is the way out: the host then joins as a host without state, and its keys are lost.

use std::path::Path;

use fleet_engine::kv::{ImageCursor, RecoverError, KV_RECORD_OVERHEAD_BYTES};
use fleet_engine::Instant;

use super::host::{empty_store, new_host, KvServerHost};
use crate::capacity::KV_DATAGRAM_BYTES;
use crate::config::KvSetup;
use crate::error::ServerError;
use crate::net::HeapOutbox;
use crate::storage::frame::FRAME_HEADER_BYTES;
use crate::storage::wal::Recovered;
use crate::storage::{snapshot_file, DataDir, StorageError};

/// The image file in a KV host's data directory.
pub const IMAGE_FILE: &str = "kv.image";
/// A buffer for any record: the largest value or datagram plus the record's envelope.
pub(crate) const RECORD_BUF_BYTES: usize = KV_DATAGRAM_BYTES + KV_RECORD_OVERHEAD_BYTES;
/// Datagram slots and bytes of the outbox replayed steps write into (thrown away), as large
/// as the event loop's: a step sends the same whether it runs or is replayed.
const REPLAY_OUTBOX_SLOTS: usize = 4096;
const REPLAY_OUTBOX_BYTES: usize = 8 << 20;

/// Writes the image of `host` to `kv.image.tmp` in `dir` and syncs it; returns its length.
/// [`snapshot_file::install`] then makes it `kv.image`. `host` must not step meanwhile (a
/// running host images a frozen copy, on a thread of its own).
pub fn write_image(dir: &Path, host: &KvServerHost) -> Result<u64, StorageError> {
    let mut cursor = ImageCursor::default();
    let mut buf = vec![0u8; RECORD_BUF_BYTES];
    let file = dir.join(IMAGE_FILE);
    let records = std::iter::from_fn(|| {
        Some(match host.image_record(&mut cursor, &mut buf)? {
            Ok(r) => Ok(r.to_vec()),
            Err(_) => {
                Err(StorageError::Io(file.clone(), std::io::Error::other("an image record did not fit its buffer")))
            }
        })
    });
    snapshot_file::write(dir, IMAGE_FILE, records)
}

/// Where a recovered host's state came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A new data directory: the host starts as configured (its first image is written
    /// before it serves).
    New,
    /// The named image file, then the logged inputs after it.
    Image(String),
}

/// A host rebuilt from its data directory.
pub(crate) struct Rebuilt {
    pub(crate) host: Box<KvServerHost>,
    pub(crate) origin: Origin,
    /// Logged inputs replayed (those the image did not include).
    pub(crate) replayed: u64,
    /// Their bytes in the log (frames included): what the next image compacts.
    pub(crate) replayed_bytes: u64,
}

/// Rebuilds host `id` of `setup` from the images in `data` and the records `log` holds
/// (see the module docs).
pub(crate) fn rebuild(
    setup: &KvSetup,
    id: usize,
    data: &DataDir,
    log: &Recovered,
    now: Instant,
) -> Result<Rebuilt, ServerError> {
    let fail = |why: String| ServerError::Recover(data.path().to_path_buf(), why);
    let mut any_image = false;
    for name in [IMAGE_FILE.to_string(), snapshot_file::previous(IMAGE_FILE)] {
        let file = data.file(&name);
        let records = match snapshot_file::read(data, &name) {
            Ok(Some(records)) => records,
            Ok(None) => continue,
            Err(e) => {
                any_image = true;
                tracing::warn!("{e}; moved aside, trying the previous image");
                snapshot_file::quarantine(data, &name).map_err(ServerError::Storage)?;
                continue;
            }
        };
        any_image = true;
        match from_image(setup, id, &records) {
            Ok(mut host) => {
                let (replayed, replayed_bytes) = replay(&mut host, log).map_err(fail)?;
                return Ok(Rebuilt { host, origin: Origin::Image(name), replayed, replayed_bytes });
            }
            // Not damage: the directory is another host's or another configuration's. The
            // image stays where it is.
            Err(e @ (RecoverError::OtherHost | RecoverError::Config(_))) => {
                return Err(fail(format!("{}: {e}", file.display())))
            }
            Err(e) => {
                tracing::warn!("{}: {e}; moved aside, trying the previous image", file.display());
                snapshot_file::quarantine(data, &name).map_err(ServerError::Storage)?;
            }
        }
    }
    let set_aside = [IMAGE_FILE.to_string(), snapshot_file::previous(IMAGE_FILE)]
        .iter()
        .any(|name| data.file(&format!("{name}.corrupt")).exists());
    if log.records.is_empty() {
        if any_image || set_aside {
            return Err(fail(format!(
                "no usable image ({IMAGE_FILE}, {IMAGE_FILE}.prev; damaged ones are moved aside as .corrupt) and \
                 no logged input: the host's state is lost. Move the directory aside to start the host without \
                 state: it then joins the running cluster, owns nothing, and the keys it held are reported lost"
            )));
        }
        return Ok(Rebuilt { host: new_host(setup, id, now)?, origin: Origin::New, replayed: 0, replayed_bytes: 0 });
    }
    // A host's first state names its incarnation (a joining host's nonce): only its image
    // has it, so a log is never replayed without one.
    Err(fail(format!(
        "no usable image ({IMAGE_FILE}, {IMAGE_FILE}.prev; damaged ones are moved aside as .corrupt) for the \
         logged inputs: the host's state cannot be rebuilt. Move the directory aside to start the host without \
         state: it then joins the running cluster, owns nothing, and the keys it held are reported lost"
    )))
}

/// Host `id` rebuilt from an image's records alone, straight into a box.
#[inline(never)]
fn from_image(setup: &KvSetup, id: usize, image: &[Vec<u8>]) -> Result<Box<KvServerHost>, RecoverError> {
    let mut scratch = HeapOutbox::new(4, 1 << 16);
    let records = image.iter().map(Vec::as_slice);
    KvServerHost::recover(setup.config.clone(), id, empty_store(setup), records, &mut scratch.outbox()).map(Box::new)
}

/// Replays the logged inputs the host does not include yet; returns how many ran and their
/// bytes in the log. An input that does not replay is named with its file and offset.
fn replay(host: &mut KvServerHost, log: &Recovered) -> Result<(u64, u64), String> {
    let mut scratch = HeapOutbox::new(REPLAY_OUTBOX_SLOTS, REPLAY_OUTBOX_BYTES);
    let mut out = scratch.outbox();
    let (mut replayed, mut bytes) = (0, 0);
    for (i, record) in log.records.iter().enumerate() {
        match host.replay(record, &mut out) {
            Ok(fleet_engine::kv::Replayed::Applied) => {
                replayed += 1;
                bytes += (record.len() + FRAME_HEADER_BYTES) as u64;
            }
            Ok(fleet_engine::kv::Replayed::Covered) => {}
            Err(e) => {
                return Err(match log.locate(i) {
                    Some((file, offset)) => format!("{}: the logged input at byte {offset}: {e}", file.display()),
                    None => format!("logged input {i}: {e}"),
                })
            }
        }
    }
    Ok((replayed, bytes))
}
