//! The log's tests: recovery, torn tails and damage, preallocated and direct segments.

use super::*;
use crate::storage::frame::FRAME_HEADER_BYTES;

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fleet-wal-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    d
}

#[test]
fn synced_records_survive_a_reopen_in_order_and_unsynced_ones_may_not() {
    let path = scratch("reopen");
    {
        let dir = DataDir::open(&path, "id").unwrap();
        let (mut wal, rec) = Wal::open(&dir, 0, SyncMode::Thread).unwrap();
        assert!(rec.records.is_empty());
        wal.append(b"one");
        wal.append(b"two");
        wal.sync().unwrap();
        wal.append(b"never written");
    }
    let dir = DataDir::open(&path, "id").unwrap();
    let (_, rec) = Wal::open(&dir, 0, SyncMode::Thread).unwrap();
    assert_eq!(rec.records, vec![b"one".to_vec(), b"two".to_vec()]);
    let _ = fs::remove_dir_all(&path);
}

#[test]
fn a_torn_tail_is_cut_and_damage_elsewhere_is_named() {
    let path = scratch("torn");
    {
        let dir = DataDir::open(&path, "id").unwrap();
        let (mut wal, _) = Wal::open(&dir, 0, SyncMode::Thread).unwrap();
        wal.append(b"kept");
        wal.append(b"torn away");
        wal.sync().unwrap();
    }
    let seg = path.join(segment_name(1));
    let len = fs::metadata(&seg).unwrap().len();
    OpenOptions::new().write(true).open(&seg).unwrap().set_len(len - 3).unwrap();
    {
        let dir = DataDir::open(&path, "id").unwrap();
        let (mut wal, rec) = Wal::open(&dir, 0, SyncMode::Thread).unwrap();
        assert_eq!(rec.records, vec![b"kept".to_vec()]);
        assert_eq!(rec.dropped_tail_bytes, (FRAME_HEADER_BYTES + b"torn away".len() - 3) as u64);
        wal.append(b"after");
        wal.sync().unwrap();
    }
    // Flip a byte of the first record: intact records follow, so this is corruption.
    let mut bytes = fs::read(&seg).unwrap();
    bytes[FRAME_HEADER_BYTES] ^= 0xff;
    fs::write(&seg, &bytes).unwrap();
    let dir = DataDir::open(&path, "id").unwrap();
    let err = Wal::open(&dir, 0, SyncMode::Thread).unwrap_err();
    assert!(matches!(&err, StorageError::Corrupt { offset: 0, file } if *file == seg), "{err}");
    let _ = fs::remove_dir_all(&path);
}

#[test]
fn rotation_starts_a_segment_with_the_image_and_old_segments_go() {
    let path = scratch("rotate");
    let dir = DataDir::open(&path, "id").unwrap();
    let (mut wal, _) = Wal::open(&dir, 0, SyncMode::Thread).unwrap();
    wal.append(b"a");
    wal.append(b"b");
    let n = wal.rotate(&[b"image".to_vec()]).unwrap();
    assert_eq!(n, 2);
    wal.append(b"c");
    wal.sync().unwrap();
    drop(wal);
    let (mut wal, rec) = Wal::open(&dir, 0, SyncMode::Thread).unwrap();
    assert_eq!(rec.records, vec![b"a".to_vec(), b"b".to_vec(), b"image".to_vec(), b"c".to_vec()]);
    let frame_of = |payload: usize| (FRAME_HEADER_BYTES + payload) as u64;
    assert_eq!(rec.locate(1), Some((path.join(segment_name(1)).as_path(), frame_of(1))), "b: second in 1");
    assert_eq!(rec.locate(3), Some((path.join(segment_name(2)).as_path(), frame_of(5))), "c: after the image");
    assert_eq!(rec.locate(4), None);
    wal.remove_before(&dir, 2).unwrap();
    drop(wal);
    let (wal, rec) = Wal::open(&dir, 0, SyncMode::Thread).unwrap();
    assert_eq!(rec.records, vec![b"image".to_vec(), b"c".to_vec()]);
    assert_eq!(wal.segment(), 2);
    // A torn tail in a segment that is not the newest is corruption: it was synced.
    drop(wal);
    let first = path.join(segment_name(2));
    let len = fs::metadata(&first).unwrap().len();
    fs::write(path.join(segment_name(3)), b"").unwrap();
    OpenOptions::new().write(true).open(&first).unwrap().set_len(len - 1).unwrap();
    assert!(matches!(Wal::open(&dir, 0, SyncMode::Thread), Err(StorageError::Corrupt { .. })));
    let _ = fs::remove_dir_all(&path);
}

#[test]
fn preallocated_segments_fill_then_roll_and_a_torn_tail_is_zeroed_before_reuse() {
    let path = scratch("prealloc");
    let dir = DataDir::open(&path, "id").unwrap();
    let seg_bytes = 4096;
    let record = vec![7u8; 1000];
    {
        let (mut wal, _) = Wal::open(&dir, seg_bytes, SyncMode::Inline).unwrap();
        assert!(wal.preallocated(), "the first segment is prepared");
        for _ in 0..6 {
            wal.append(&record);
            wal.write().unwrap();
        }
        wal.sync().unwrap();
        assert_eq!(wal.segment(), 2, "four records fill a 4 KiB segment; the fifth starts the next");
        assert_eq!(fs::metadata(path.join(segment_name(1))).unwrap().len(), seg_bytes, "overwritten, not grown");
        assert_eq!(wal.rotated_bytes(), 6 * (FRAME_HEADER_BYTES + 1000) as u64);
    }
    let (_, rec) = Wal::open(&dir, seg_bytes, SyncMode::Inline).unwrap();
    assert_eq!(rec.records.len(), 6, "the zeros after the records are their end, in every segment");
    assert_eq!(rec.dropped_tail_bytes, 0);

    // A write torn after its first sector: a cut frame, a gap, garbage, then zeros.
    // Recovery zeroes all of it: a shorter record written there later must not be
    // followed by what the torn write left.
    let seg = path.join(segment_name(2));
    let end = 2 * (FRAME_HEADER_BYTES + 1000) as u64;
    let mut cut = Vec::new();
    frame::push(&mut cut, b"a record never synced");
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all_at(&cut[..FRAME_HEADER_BYTES + 3], end).unwrap();
    f.write_all_at(&[9u8; 600], end + 512).unwrap();
    drop(f);
    {
        let (mut wal, rec) = Wal::open(&dir, seg_bytes, SyncMode::Inline).unwrap();
        assert_eq!(rec.records.len(), 6);
        assert_eq!(rec.dropped_tail_bytes, 512 + 600);
        wal.append(b"short");
        wal.sync().unwrap();
    }
    let (_, rec) = Wal::open(&dir, seg_bytes, SyncMode::Inline).unwrap();
    assert_eq!((rec.records.len(), rec.dropped_tail_bytes), (7, 0), "nothing of the torn write is left");
    assert_eq!(rec.records[6], b"short");
    let _ = fs::remove_dir_all(&path);
}

#[test]
fn direct_segments_keep_every_synced_record_across_rolls_rotations_and_reopens() {
    for mode in [SyncMode::Inline, SyncMode::Thread] {
        let path = scratch(&format!("direct-{mode:?}"));
        let dir = DataDir::open(&path, "id").unwrap();
        let seg_bytes = 16 << 10;
        let mut expected: Vec<Vec<u8>> = Vec::new();
        let mut seed = 11u64;
        for reopen in 0..3 {
            let (mut wal, rec) = Wal::open(&dir, seg_bytes, mode).unwrap();
            assert_eq!(rec.records, expected, "reopen {reopen} ({mode:?})");
            for i in 0..200 {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let len = 1 + (seed >> 33) as usize % 900;
                let record: Vec<u8> = (0..len).map(|j| (i + j + reopen) as u8).collect();
                wal.append(&record);
                expected.push(record);
                match (seed >> 20) % 4 {
                    0 => wal.write().unwrap(),
                    1 => {
                        wal.sync_async().unwrap();
                    }
                    2 => wal.sync().unwrap(),
                    _ => {}
                }
                if i == 120 {
                    let image = vec![b"image".to_vec()];
                    wal.rotate(&image).unwrap();
                    expected.push(b"image".to_vec());
                }
            }
            wal.sync().unwrap();
            assert!(wal.direct(), "{mode:?}: a prepared segment on this disk is written directly");
        }
        let _ = fs::remove_dir_all(&path);
    }
}
