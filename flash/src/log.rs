//! [`FlashLog`]: a durable log of records on NOR flash, compacted by image groups, over
//! `sequential-storage`'s queue.
//!
//! Every item the queue holds is one frame: a kind byte, the item's number (`u32`, little
//! endian, one more than the item before it) and a payload. The kind byte's upper six bits
//! are the storage format ([`FORMAT`], the engine's record format): an item of another
//! format (written by an older or newer firmware) makes the log refuse to open
//! ([`FlashLogError::WrongFormat`]) rather than be misread. Kinds:
//! * [`Kind::Log`]: a record of the engine's log (RSL acceptor and executed records, KV
//!   logged inputs);
//! * [`Kind::Image`]: a record of an image (RSL snapshot pieces, KV image records);
//! * `Begin` / `End`: the bounds of an **image group**, numbered; `End` also holds how many
//!   items the group has.
//!
//! Recovery ([`FlashLog::replay`]) takes the latest *complete* group (a `Begin` and its
//! matching `End`, every item between them present): its image records, then every log
//! record from its `Begin` on. Records older than that group are no longer needed, and
//! [`FlashLog::end_group`] pops them once the group is complete. With no complete group
//! (nothing was ever popped) every log record is replayed.
//!
//! Power cuts. The queue checks a CRC over every item, so a torn item (the one being
//! written when the power went) is never read back; nothing was acknowledged on the
//! strength of it, and the item written after the restart takes its number. A *gap* in the
//! numbers of the items read back is damage inside the log (an item lost after it was
//! written), which could hide a promise or a vote: the log refuses to open
//! ([`FlashLogError::Damaged`]) rather than replay around it. A cut inside a group leaves no
//! `End`: the group is ignored, and the one before it (popped only after this one was
//! complete) is still there. A cut while popping leaves some old items: they are older than
//! the latest complete group and ignored.

use embedded_storage_async::nor_flash::MultiwriteNorFlash;
use sequential_storage::cache::{Cache, Uncached};
use sequential_storage::queue::{QueueConfig, QueueStorage};

/// Bytes a frame adds before its payload: kind and item number.
pub const FRAME_BYTES: usize = 5;
/// Bytes of a `Begin` frame's payload (the group number).
const BEGIN_BYTES: usize = 4;
/// Bytes of an `End` frame's payload (the group number and the item count).
const END_BYTES: usize = 8;

/// The kind of a record: replayed as part of an image, or as the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Kind {
    /// A log record.
    Log,
    /// An image record (only read back from the latest complete group).
    Image,
}

const KIND_LOG: u8 = 0;
const KIND_IMAGE: u8 = 1;
const KIND_BEGIN: u8 = 2;
const KIND_END: u8 = 3;
/// The kind's bits of a frame's first byte; the rest hold the format.
const KIND_MASK: u8 = 0b11;

/// The storage format this build writes and reads, in the upper six bits of every frame's
/// kind byte: the engine's [`fleet_engine::RECORD_FORMAT`] (bump that when this framing
/// changes too). Frames of the first flash firmware carried 0 there.
pub const FORMAT: u8 = fleet_engine::RECORD_FORMAT as u8;
const _: () = assert!(fleet_engine::RECORD_FORMAT < 64, "the format must fit six bits");

/// Why the flash log failed. `E` is the flash's own error.
#[derive(Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FlashLogError<E> {
    /// The flash failed or the queue found itself corrupted beyond repair.
    Flash(sequential_storage::Error<E>),
    /// No room for the record: the region holds nothing that may be dropped. The host must
    /// stop speaking (its next record could not be made durable).
    Full,
    /// A record larger than a flash page can hold.
    TooBig,
    /// Item `found` follows item `expected - 1`: items in between were lost after they
    /// were written. Nothing is replayed from a damaged log.
    Damaged {
        /// The number the next item should have had.
        expected: u32,
        /// The number it had.
        found: u32,
    },
    /// Item `item` was written in storage format `found`; this build reads [`FORMAT`].
    /// Nothing is read from the region: erase it (a replica then rejoins from its peers; a
    /// KV host joins without state), or run the firmware that wrote it.
    WrongFormat {
        /// The item's number.
        item: u32,
        /// Its format (0: the first flash firmware, which wrote none).
        found: u8,
    },
    /// Item `item` is not a frame this log writes.
    Malformed {
        /// Its number (or the number it should have had, when it has none).
        item: u32,
    },
}

impl<E> From<sequential_storage::Error<E>> for FlashLogError<E> {
    fn from(e: sequential_storage::Error<E>) -> Self {
        match e {
            sequential_storage::Error::FullStorage => FlashLogError::Full,
            sequential_storage::Error::ItemTooBig => FlashLogError::TooBig,
            e => FlashLogError::Flash(e),
        }
    }
}

/// The latest complete image group found or written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Group {
    /// The group's number.
    number: u32,
    /// The item number of its `Begin`.
    begin: u32,
    /// The item number of its `End`.
    end: u32,
}

/// A group being written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct OpenGroup {
    number: u32,
    begin: u32,
    items: u32,
}

/// What opening a flash log found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Found {
    /// Items read back (every kind).
    pub items: u32,
    /// Log records that [`FlashLog::replay`] will hand out.
    pub log_records: u32,
    /// Image records that [`FlashLog::replay`] will hand out.
    pub image_records: u32,
    /// True if a complete image group was found.
    pub has_image: bool,
}

/// A durable log of records over a queue in `flash`'s range `range` (whole pages).
///
/// Records are appended ([`FlashLog::append`]) from a buffer whose first [`FRAME_BYTES`]
/// bytes the log fills in. An append that returned `Ok` is durable: the flash write
/// completed. Every read needs a buffer of the largest record plus [`FRAME_BYTES`].
pub struct FlashLog<F: MultiwriteNorFlash> {
    queue: QueueStorage<F, Cache<Uncached, Uncached, Uncached, ()>>,
    next_item: u32,
    next_group: u32,
    latest: Option<Group>,
    open: Option<OpenGroup>,
    /// Payload bytes appended since the latest complete group began (all, if none).
    bytes_since_image: u64,
    /// The first item number still in the queue (replay starts at the group's `Begin`).
    found: Found,
}

impl<F: MultiwriteNorFlash> FlashLog<F> {
    /// Opens the log in `range` of `flash` (page-aligned, at least two pages), reading it
    /// through `buf` to find where it stands. Fails on a damaged log; a region never
    /// written (all `0xFF`) is an empty log.
    pub async fn open(flash: F, range: core::ops::Range<u32>, buf: &mut [u8]) -> Result<Self, FlashLogError<F::Error>> {
        let config = QueueConfig::try_new(range).map_err(|_| FlashLogError::Malformed { item: 0 })?;
        let queue = QueueStorage::new(flash, config, Cache::new_uncached());
        let mut log = FlashLog {
            queue,
            next_item: 0,
            next_group: 0,
            latest: None,
            open: None,
            bytes_since_image: 0,
            found: Found::default(),
        };
        log.scan(buf).await?;
        Ok(log)
    }

    /// What [`FlashLog::open`] found.
    pub fn found(&self) -> Found {
        self.found
    }

    /// Payload bytes appended since the latest complete image group began: the log a
    /// recovery would replay. Compact (write a new group) when it grows past a bound.
    pub fn bytes_since_image(&self) -> u64 {
        self.bytes_since_image
    }

    /// The flash, back (for a test that reopens it).
    pub fn into_flash(self) -> F {
        self.queue.destroy().0
    }

    /// Reads every item: checks the numbering, finds the latest complete group, and counts
    /// what a replay will hand out (one pass: the counts since each group's `Begin` are kept
    /// until its `End` shows whether it completed).
    async fn scan(&mut self, buf: &mut [u8]) -> Result<(), FlashLogError<F::Error>> {
        /// Log records and their bytes, and image records, since some point.
        #[derive(Clone, Copy, Default)]
        struct Tally {
            logs: u32,
            bytes: u64,
            images: u32,
        }
        let mut expected: Option<u32> = None;
        let mut open: Option<(OpenGroup, Tally)> = None;
        let mut latest: Option<(Group, Tally)> = None;
        let mut since_start = Tally::default();
        let mut highest_group: Option<u32> = None;
        let mut items = 0u32;
        let mut iter = self.queue.iter().await?;
        while let Some(entry) = iter.next(buf).await? {
            let (kind, item, payload) = parse(&entry, expected.unwrap_or(0))?;
            if let Some(e) = expected {
                if item != e {
                    return Err(FlashLogError::Damaged { expected: e, found: item });
                }
            }
            expected = Some(item.wrapping_add(1));
            items += 1;
            let malformed = FlashLogError::Malformed { item };
            match kind {
                KIND_BEGIN => {
                    let number = read_u32(payload, 0).ok_or(malformed)?;
                    open = Some((OpenGroup { number, begin: item, items: 0 }, Tally::default()));
                    highest_group = Some(highest_group.map_or(number, |h: u32| h.max(number)));
                }
                KIND_END => {
                    let number = read_u32(payload, 0).ok_or(FlashLogError::Malformed { item })?;
                    let count = read_u32(payload, 4).ok_or(malformed)?;
                    if let Some((g, tally)) = open.take() {
                        if g.number == number && g.items == count {
                            latest = Some((Group { number, begin: g.begin, end: item }, tally));
                        }
                    }
                }
                KIND_LOG | KIND_IMAGE => {
                    let log = kind == KIND_LOG;
                    let add = |t: &mut Tally, images: bool| match log {
                        true => {
                            t.logs += 1;
                            t.bytes += payload.len() as u64;
                        }
                        false => t.images += u32::from(images),
                    };
                    if let Some((g, t)) = open.as_mut() {
                        g.items += 1;
                        add(t, true);
                    }
                    // Log records after a complete group count towards its replay; image
                    // records after its `End` belong to a later group.
                    if let Some((_, t)) = latest.as_mut() {
                        add(t, false);
                    }
                    add(&mut since_start, false);
                }
                _ => return Err(malformed),
            }
        }
        self.next_item = expected.unwrap_or(0);
        self.next_group = highest_group.map_or(0, |h| h.wrapping_add(1));
        self.latest = latest.map(|(g, _)| g);
        let tally = latest.map_or(since_start, |(_, t)| t);
        self.found = Found { items, log_records: tally.logs, image_records: tally.images, has_image: latest.is_some() };
        self.bytes_since_image = tally.bytes;
        Ok(())
    }

    /// Hands every record a recovery needs to `visit`, through `buf`: the image records of
    /// the latest complete group, in order, then every log record from that group's start
    /// (every log record, with no complete group). Stops at `visit`'s first error.
    pub async fn replay<V>(
        &mut self,
        buf: &mut [u8],
        mut visit: impl FnMut(Kind, &[u8]) -> Result<(), V>,
    ) -> Result<Result<(), V>, FlashLogError<F::Error>> {
        let latest = self.latest;
        for pass in [KIND_IMAGE, KIND_LOG] {
            let mut iter = self.queue.iter().await?;
            while let Some(entry) = iter.next(buf).await? {
                let (kind, item, payload) = parse(&entry, 0)?;
                let wanted = match (pass, latest) {
                    (KIND_IMAGE, Some(g)) => kind == KIND_IMAGE && in_group(item, g),
                    (KIND_IMAGE, None) => false,
                    (_, g) => kind == KIND_LOG && g.is_none_or(|g| after(item, g.begin)),
                };
                if !wanted {
                    continue;
                }
                let kind = if pass == KIND_IMAGE { Kind::Image } else { Kind::Log };
                if let Err(e) = visit(kind, payload) {
                    return Ok(Err(e));
                }
            }
        }
        Ok(Ok(()))
    }

    /// Appends the record in `buf[FRAME_BYTES..FRAME_BYTES + len]` as `kind`; durable once
    /// this returns `Ok`. Inside a group, the record belongs to it.
    pub async fn append(&mut self, kind: Kind, buf: &mut [u8], len: usize) -> Result<(), FlashLogError<F::Error>> {
        let tag = match kind {
            Kind::Log => KIND_LOG,
            Kind::Image => KIND_IMAGE,
        };
        self.push(tag, buf, len).await?;
        if let Some(g) = self.open.as_mut() {
            g.items += 1;
        }
        if kind == Kind::Log {
            self.bytes_since_image += len as u64;
        }
        Ok(())
    }

    /// Starts an image group: the records appended until [`FlashLog::end_group`] are the
    /// new image (and the log from here on). `buf` needs `FRAME_BYTES + 8` bytes.
    pub async fn begin_group(&mut self, buf: &mut [u8]) -> Result<(), FlashLogError<F::Error>> {
        let number = self.next_group;
        write_u32(buf, FRAME_BYTES, number).ok_or(FlashLogError::TooBig)?;
        let begin = self.next_item;
        self.push(KIND_BEGIN, buf, BEGIN_BYTES).await?;
        self.next_group = number.wrapping_add(1);
        self.open = Some(OpenGroup { number, begin, items: 0 });
        Ok(())
    }

    /// Ends the group begun last: once its `End` is written it is the image a recovery
    /// uses, and every item before its `Begin` is popped. `buf` needs the largest record
    /// plus [`FRAME_BYTES`] (popping reads items).
    pub async fn end_group(&mut self, buf: &mut [u8]) -> Result<(), FlashLogError<F::Error>> {
        let Some(g) = self.open else { return Ok(()) };
        write_u32(buf, FRAME_BYTES, g.number).ok_or(FlashLogError::TooBig)?;
        write_u32(buf, FRAME_BYTES + 4, g.items).ok_or(FlashLogError::TooBig)?;
        let end = self.next_item;
        self.push(KIND_END, buf, END_BYTES).await?;
        self.open = None;
        self.latest = Some(Group { number: g.number, begin: g.begin, end });
        self.bytes_since_image = 0;
        // Everything older than the new group's Begin is covered by it.
        let mut iter = self.queue.iter().await?;
        while let Some(entry) = iter.next(buf).await? {
            let (_, item, _) = parse(&entry, 0)?;
            if !before(item, g.begin) {
                break;
            }
            entry.pop().await?;
        }
        Ok(())
    }

    async fn push(&mut self, tag: u8, buf: &mut [u8], len: usize) -> Result<(), FlashLogError<F::Error>> {
        let total = FRAME_BYTES.checked_add(len).ok_or(FlashLogError::TooBig)?;
        let frame = buf.get_mut(..total).ok_or(FlashLogError::TooBig)?;
        frame[0] = tag | (FORMAT << 2);
        frame[1..FRAME_BYTES].copy_from_slice(&self.next_item.to_le_bytes());
        self.queue.push(frame, false).await?;
        self.next_item = self.next_item.wrapping_add(1);
        Ok(())
    }
}

/// A frame's kind, item number and payload; a frame of another format is refused.
fn parse<E>(frame: &[u8], expected: u32) -> Result<(u8, u32, &[u8]), FlashLogError<E>> {
    let malformed = FlashLogError::Malformed { item: expected };
    let (&tag, rest) = frame.split_first().ok_or(malformed)?;
    let item = read_u32(rest, 0).ok_or(FlashLogError::Malformed { item: expected })?;
    let found = tag >> 2;
    if found != FORMAT {
        return Err(FlashLogError::WrongFormat { item, found });
    }
    Ok((tag & KIND_MASK, item, &rest[4..]))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn write_u32(buf: &mut [u8], at: usize, v: u32) -> Option<()> {
    buf.get_mut(at..at + 4)?.copy_from_slice(&v.to_le_bytes());
    Some(())
}

/// Item numbers wrap: `a` is before `b` within half the number space.
fn before(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < u32::MAX / 2
}

fn after(a: u32, b: u32) -> bool {
    !before(a, b)
}

fn in_group(item: u32, g: Group) -> bool {
    after(item, g.begin) && before(item, g.end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ram::RamFlash;
    use embassy_futures::block_on;

    const PAGE: usize = 256;
    const REGION: u32 = 8 * PAGE as u32;
    type Log<'a> = FlashLog<RamFlash<'a, PAGE>>;

    fn open(mem: &mut [u8]) -> Result<Log<'_>, FlashLogError<crate::RamFlashError>> {
        let mut buf = [0u8; 128];
        block_on(FlashLog::open(RamFlash::new(mem), 0..REGION, &mut buf))
    }

    fn append(log: &mut Log<'_>, kind: Kind, payload: &[u8]) {
        let mut buf = [0u8; 128];
        buf[FRAME_BYTES..FRAME_BYTES + payload.len()].copy_from_slice(payload);
        block_on(log.append(kind, &mut buf, payload.len())).unwrap();
    }

    fn replayed(log: &mut Log<'_>) -> std::vec::Vec<(Kind, std::vec::Vec<u8>)> {
        let mut buf = [0u8; 128];
        let mut seen = std::vec::Vec::new();
        block_on(log.replay(&mut buf, |k, b| {
            seen.push((k, b.to_vec()));
            Ok::<(), ()>(())
        }))
        .unwrap()
        .unwrap();
        seen
    }

    fn group(log: &mut Log<'_>, images: &[&[u8]], logs: &[&[u8]]) {
        let mut buf = [0u8; 128];
        block_on(log.begin_group(&mut buf)).unwrap();
        images.iter().for_each(|r| append(log, Kind::Image, r));
        logs.iter().for_each(|r| append(log, Kind::Log, r));
        block_on(log.end_group(&mut buf)).unwrap();
    }

    extern crate std;

    #[test]
    fn a_region_written_in_another_format_is_refused_not_read() {
        let mut mem = [0xFFu8; REGION as usize];
        let mut log = open(&mut mem).unwrap();
        append(&mut log, Kind::Log, b"ok");
        // What the first flash firmware wrote: format bits 0.
        let frame = [KIND_LOG, 1, 0, 0, 0, b'o', b'l', b'd'];
        block_on(log.queue.push(&frame, false)).unwrap();
        let _ = log.into_flash();
        match open(&mut mem) {
            Err(FlashLogError::WrongFormat { item: 1, found: 0 }) => {}
            other => panic!("expected a refusal of item 1's format 0, got {:?}", other.map(|l| l.found())),
        }
    }

    #[test]
    fn records_come_back_in_order_after_a_reopen() {
        let mut mem = [0xFFu8; REGION as usize];
        let mut log = open(&mut mem).unwrap();
        assert_eq!(log.found(), Found::default(), "an erased region is an empty log");
        for r in [&b"a"[..], b"bb", b"ccc"] {
            append(&mut log, Kind::Log, r);
        }
        let _ = log.into_flash();
        let mut log = open(&mut mem).unwrap();
        assert_eq!(log.found().log_records, 3);
        assert_eq!(log.bytes_since_image(), 6);
        let got = replayed(&mut log);
        assert_eq!(got, [(Kind::Log, b"a".to_vec()), (Kind::Log, b"bb".to_vec()), (Kind::Log, b"ccc".to_vec())]);
    }

    #[test]
    fn a_complete_group_replaces_everything_before_it() {
        let mut mem = [0xFFu8; REGION as usize];
        let mut log = open(&mut mem).unwrap();
        append(&mut log, Kind::Log, b"old");
        group(&mut log, &[b"snap"], &[b"acc"]);
        append(&mut log, Kind::Log, b"new");
        assert_eq!(log.bytes_since_image(), 3, "the log since the image's start: its acceptor records count");
        let _ = log.into_flash();
        let mut log = open(&mut mem).unwrap();
        let f = log.found();
        assert_eq!((f.items, f.image_records, f.log_records, f.has_image), (5, 1, 2, true), "old is popped");
        let got = replayed(&mut log);
        assert_eq!(got, [(Kind::Image, b"snap".to_vec()), (Kind::Log, b"acc".to_vec()), (Kind::Log, b"new".to_vec())]);
    }

    #[test]
    fn a_group_without_its_end_is_ignored_and_the_one_before_serves() {
        let mut mem = [0xFFu8; REGION as usize];
        let mut log = open(&mut mem).unwrap();
        group(&mut log, &[b"s1"], &[]);
        append(&mut log, Kind::Log, b"x");
        let mut buf = [0u8; 128];
        block_on(log.begin_group(&mut buf)).unwrap();
        append(&mut log, Kind::Image, b"s2");
        let _ = log.into_flash();
        let mut log = open(&mut mem).unwrap();
        let got = replayed(&mut log);
        assert_eq!(got, [(Kind::Image, b"s1".to_vec()), (Kind::Log, b"x".to_vec())]);
        // The next group completes and serves.
        group(&mut log, &[b"s3"], &[]);
        let _ = log.into_flash();
        let mut log = open(&mut mem).unwrap();
        assert_eq!(replayed(&mut log), [(Kind::Image, b"s3".to_vec())]);
    }

    #[test]
    fn an_item_lost_inside_the_log_is_damage_not_a_shorter_log() {
        let mut mem = [0xFFu8; REGION as usize];
        let mut log = open(&mut mem).unwrap();
        for r in [&b"first"[..], b"second", b"third"] {
            append(&mut log, Kind::Log, r);
        }
        let _ = log.into_flash();
        // Flip a bit inside the second record's payload: its CRC fails and the queue skips it.
        let at = mem.windows(6).position(|w| w == b"second").unwrap();
        mem[at] ^= 0x01;
        match open(&mut mem) {
            Err(FlashLogError::Damaged { expected: 1, found: 2 }) => {}
            other => panic!("expected damage between items 1 and 2, got {:?}", other.map(|l| l.found())),
        }
    }

    #[test]
    fn a_full_region_refuses_the_record_and_keeps_the_rest() {
        let mut mem = [0xFFu8; REGION as usize];
        let mut log = open(&mut mem).unwrap();
        let mut buf = [0u8; 128];
        let mut appended = 0u32;
        loop {
            match block_on(log.append(Kind::Log, &mut buf, 100)) {
                Ok(()) => appended += 1,
                Err(FlashLogError::Full) => break,
                Err(e) => panic!("{e:?}"),
            }
            assert!(appended < 1000, "a bounded region fills");
        }
        let _ = log.into_flash();
        let log = open(&mut mem).unwrap();
        assert_eq!(log.found().log_records, appended);
    }
}
