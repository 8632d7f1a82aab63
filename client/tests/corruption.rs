//! Hostile bytes: random damage to a live arena's index, segment table, process slots and
//! items, and files that are not arenas at all. Clients return errors or misses and count
//! them; they never panic, hang or return a value that was never written.

mod common;

use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use common::{check_value, make_value, small, TempDir};
use larder::{Cache, Error, OpenError};
use proptest::prelude::*;

const KEYS: u64 = 400;

fn key(i: u64) -> Vec<u8> {
    format!("key{i}").into_bytes()
}

/// Where to damage: the metadata (process slots, segment table, index) or the item log.
#[derive(Clone, Copy, PartialEq)]
enum Region {
    Metadata,
    Items,
}

/// Damages random bytes of `region`, then exercises every operation. In the metadata every
/// value returned must be one that was written; in the item log a flipped byte inside a value
/// is returned as stored (items carry no payload checksum), so at most one damaged value per
/// flip may be seen. Returns the number of verified hits.
fn damage_then_use(region: Region, flips: &[(u64, u8)]) -> Result<u64, TestCaseError> {
    let d = TempDir::new("corrupt");
    let c = Cache::create(d.arena(), &small(2 << 20)).unwrap();
    for i in 0..KEYS {
        c.set(&key(i), &make_value(&key(i), i, 600), None).unwrap();
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(d.arena())
        .unwrap();
    let mut head = [0u8; larder::layout::PARAMS_LEN];
    f.read_exact_at(&mut head, 0).unwrap();
    let p = larder::layout::Params::from_bytes(&head);
    // The header page is left alone: a damaged header is refused at open (api.rs).
    let (lo, hi) = match region {
        Region::Metadata => (larder::layout::HEADER_SIZE, p.segs_off),
        Region::Items => (p.segs_off, p.arena_size),
    };
    for &(pos, byte) in flips {
        f.write_all_at(&[byte], lo + pos % (hi - lo)).unwrap();
    }
    let mut damaged_values = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut hits = 0;
    for round in 0..3u64 {
        for i in 0..KEYS {
            if let Some(v) = c.get(&key(i)).unwrap() {
                if check_value(&key(i), &v).is_ok() {
                    hits += 1;
                } else if region == Region::Items {
                    // A flipped byte inside a stored value.
                    damaged_values.insert(i);
                } else {
                    prop_assert!(false, "key {i}: a value that was never written");
                }
            }
            match i % 4 {
                0 => c
                    .set(&key(i), &make_value(&key(i), i + round * KEYS, 600), None)
                    .map(|_| ()),
                1 => c.delete(&key(i)).map(|_| ()),
                2 => c.incr(&key(i), 1).map(|_| ()).or_else(|e| {
                    if matches!(e, Error::NotANumber) {
                        Ok(())
                    } else {
                        Err(e)
                    }
                }),
                _ => c
                    .add(&key(i), &make_value(&key(i), i + 7 * KEYS, 600), None)
                    .map(|_| ()),
            }
            .or_else(|e| {
                if matches!(e, Error::ArenaFull) {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .unwrap();
            prop_assert!(
                Instant::now() < deadline,
                "operations stalled on damaged bytes"
            );
        }
        c.sweep_expired(u32::MAX).unwrap();
        c.reclaim_dead_clients().unwrap();
        let _ = c.stats();
        for k in c.keys() {
            let _ = c.get(&k).unwrap();
        }
    }
    // Whatever was damaged, new writes still land and read back.
    let mut stored = 0;
    for i in 0..50 {
        let k = format!("after{i}").into_bytes();
        if c.set(&k, b"fresh", None).is_ok() && c.get(&k).unwrap().as_deref() == Some(&b"fresh"[..])
        {
            stored += 1;
        }
    }
    prop_assert!(
        stored >= 40,
        "only {stored}/50 fresh writes readable after damage"
    );
    prop_assert!(
        damaged_values.len() <= flips.len(),
        "{} damaged values from {} flips",
        damaged_values.len(),
        flips.len()
    );
    Ok(hits)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn random_metadata_damage_is_survived(flips in proptest::collection::vec((any::<u64>(), any::<u8>()), 1..64)) {
        damage_then_use(Region::Metadata, &flips)?;
    }

    #[test]
    fn random_item_damage_is_survived(flips in proptest::collection::vec((any::<u64>(), any::<u8>()), 1..64)) {
        damage_then_use(Region::Items, &flips)?;
    }
}

#[test]
fn undamaged_arena_serves_everything() {
    // The control: with no damage, every key is a verified hit in the first round.
    let hits = damage_then_use(Region::Metadata, &[]).unwrap();
    assert!(hits >= KEYS, "{hits}");
}

#[test]
fn special_files_are_refused() {
    for p in ["/dev/zero", "/dev/null", "/proc/self/status"] {
        match Cache::open(p) {
            Err(OpenError::NotAnArena { .. }) | Err(OpenError::Io { .. }) => {}
            other => panic!("{p}: {:?}", other.map(|_| ())),
        }
    }
    let d = TempDir::new("corrupt");
    let fifo = d.0.join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    assert!(matches!(
        Cache::open(&fifo),
        Err(OpenError::NotAnArena { .. })
    ));
    assert!(matches!(
        Cache::open(&d.0),
        Err(OpenError::NotAnArena { .. }) | Err(OpenError::Io { .. })
    ));
}
