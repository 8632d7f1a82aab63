//! Single-threaded cost of a larder GET/SET, next to two reference points measured in the
//! same run so the printed ratios are meaningful:
//!
//! * the *floor*: a bare, unsynchronised open-addressed table (linear probing, key and value
//!   inline in 128-byte slots, FNV-1a) in a `MAP_SHARED` mapping of a file under /dev/shm;
//!   whatever larder costs above it is the price of its protocol (validation, atomics, CLOCK).
//!   The floor and larder are each measured twice, on huge pages (larder's default, see
//!   client/src/mapping.rs) and on 4 KiB pages, and compared like with like;
//! * an in-process `RwLock<HashMap<Vec<u8>, Vec<u8>>>`, the usual thing larder replaces.
//!
//! Workload: 100 000 keys of 12 bytes, 100-byte values, uniform random keys from a seeded
//! sequence shared by every system; one warm-up round, then the median of several rounds,
//! interleaved across the systems so that load drifting on a shared machine reaches all.
//!
//! `LARDER_BENCH_OPS` sets the operations per round (default 500 000). When the binary is
//! run with `--test` or `--list`, or without `--bench` (that is, by `cargo test`), it runs a
//! tiny version and exits, so test runs stay fast.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const NKEYS: usize = 100_000;
const KEY_LEN: usize = 12;
const VALUE_LEN: usize = 100;
const DEFAULT_OPS: usize = 500_000;
const QUICK_OPS: usize = 1_000;
const ROUNDS: usize = 9;
const SEED: u64 = 0x5eed_1a7d_e700_0001;
const ARENA_BYTES: u64 = 64 << 20;

type Key = [u8; KEY_LEN];

/// `prefix` is 3 bytes, so `"key"` gives `key:00000042`.
fn make_key(prefix: &str, i: usize) -> Key {
    let s = format!("{prefix}:{i:08}");
    let mut k = [0u8; KEY_LEN];
    k.copy_from_slice(s.as_bytes());
    k
}

fn make_value(i: usize) -> [u8; VALUE_LEN] {
    std::array::from_fn(|j| (i.wrapping_mul(31).wrapping_add(j) % 251) as u8)
}

// ---------------------------------------------------------------------------------------
// The floor: a plain linear-probing table in a shared file mapping.

/// Slot layout: byte 0 key length (0 = empty), bytes 2..4 value length (LE u16),
/// bytes 4..20 key, bytes 20..128 value.
const SLOT: usize = 128;
const SLOT_KEY: usize = 4;
const SLOT_KEY_MAX: usize = 16;
const SLOT_VAL: usize = SLOT_KEY + SLOT_KEY_MAX;
const SLOT_VAL_MAX: usize = SLOT - SLOT_VAL;

/// A new file of `len` bytes at `path`, mapped the way larder maps its arena (PMD-aligned)
/// and, if `huge`, collapsed into huge pages the way larder collapses a new arena.
fn shared_mapping(path: &Path, len: usize, huge: bool) -> std::io::Result<larder::AlignedMapping> {
    let file: File = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)?;
    file.set_len(len as u64)?;
    let map = larder::AlignedMapping::map(&file, len)?;
    if huge {
        map.collapse(|off| {
            // SAFETY: `off` is inside the mapping; the file is private to this process.
            unsafe { std::ptr::read_volatile(map.as_ptr().add(off)) };
        });
    }
    Ok(map)
}

struct FloorTable {
    map: larder::AlignedMapping,
    shift: u32,
    mask: usize,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl FloorTable {
    /// A table of `slots` slots (a power of two) in a new file at `path`, mapped the way
    /// larder maps its arena (PMD-aligned) and, if `huge`, collapsed into huge pages the
    /// way larder collapses a new arena.
    fn create(path: &Path, slots: usize, huge: bool) -> std::io::Result<FloorTable> {
        assert!(slots.is_power_of_two());
        let map = shared_mapping(path, slots * SLOT, huge)?;
        Ok(FloorTable {
            map,
            shift: 64 - slots.trailing_zeros(),
            mask: slots - 1,
        })
    }

    fn slot(&self, i: usize) -> &[u8] {
        // SAFETY: `i <= mask`, so the slot is inside the mapping, which lives as long as
        // `self`; only this thread touches the table, and not through `slot_mut` meanwhile.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(i * SLOT), SLOT) }
    }

    fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        // SAFETY: as in `slot`; `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_ptr().add(i * SLOT), SLOT) }
    }

    #[inline]
    fn home(&self, key: &[u8]) -> usize {
        // Fibonacci hashing of the FNV value: take the well-mixed high bits.
        (fnv1a(key).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    fn insert(&mut self, key: &[u8], value: &[u8]) {
        assert!(!key.is_empty() && key.len() <= SLOT_KEY_MAX && value.len() <= SLOT_VAL_MAX);
        let mut i = self.home(key);
        loop {
            let s = self.slot_mut(i);
            let kl = usize::from(s[0]);
            if kl == 0 || (kl == key.len() && &s[SLOT_KEY..SLOT_KEY + kl] == key) {
                s[0] = key.len() as u8;
                s[2..4].copy_from_slice(&(value.len() as u16).to_le_bytes());
                s[SLOT_KEY..SLOT_KEY + key.len()].copy_from_slice(key);
                s[SLOT_VAL..SLOT_VAL + value.len()].copy_from_slice(value);
                return;
            }
            i = (i + 1) & self.mask;
        }
    }

    #[inline]
    fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> bool {
        let mut i = self.home(key);
        loop {
            let s = self.slot(i);
            let kl = usize::from(s[0]);
            if kl == 0 {
                return false;
            }
            if kl == key.len() && &s[SLOT_KEY..SLOT_KEY + kl] == key {
                let vl = usize::from(u16::from_le_bytes([s[2], s[3]]));
                out.extend_from_slice(&s[SLOT_VAL..SLOT_VAL + vl]);
                return true;
            }
            i = (i + 1) & self.mask;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The two-level floor: the shape of larder's read — an index line of 8-byte slots (a tag
// and an offset), then the item the matching slot points at — with no synchronisation, no
// validation and no counters. A GET is two dependent accesses here too, so larder's ratio
// to this floor is the price of its protocol alone.

/// Slots per 64-byte index bucket.
const TL_SLOTS: usize = 8;

struct TwoLevelTable {
    map: larder::AlignedMapping,
    shift: u32,
    mask: usize,
    /// Where the next item goes (items follow the index).
    wptr: usize,
    len: usize,
}

impl TwoLevelTable {
    fn create(path: &Path, buckets: usize, item_bytes: usize, huge: bool) -> std::io::Result<Self> {
        assert!(buckets.is_power_of_two());
        let items = buckets * 64;
        // Rounded up to the huge page size, as an arena is.
        let len = (items + item_bytes).next_multiple_of(2 << 20);
        let map = shared_mapping(path, len, huge)?;
        Ok(TwoLevelTable {
            map,
            shift: 64 - buckets.trailing_zeros(),
            mask: buckets - 1,
            wptr: items,
            len,
        })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` bytes and lives as long as `self`; only this thread
        // touches the table, and not through `bytes_mut` meanwhile.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`; `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_ptr(), self.len) }
    }

    fn slot(&self, b: usize, i: usize) -> u64 {
        let at = b * 64 + i * 8;
        u64::from_le_bytes(self.bytes()[at..at + 8].try_into().expect("8 bytes"))
    }

    /// Bucket and a non-zero 16-bit tag of `key`.
    #[inline]
    fn place(&self, key: &[u8]) -> (usize, u64) {
        let h = fnv1a(key).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        ((h >> self.shift) as usize, (h & 0xffff) | 1)
    }

    /// Inserts a key not yet present.
    fn insert(&mut self, key: &[u8], value: &[u8]) {
        let (mut b, tag) = self.place(key);
        let at = self.wptr;
        let size = (4 + key.len() + value.len()).next_multiple_of(8);
        assert!(at + size <= self.len, "two-level floor: item area full");
        {
            let m = self.bytes_mut();
            m[at] = key.len() as u8;
            m[at + 2..at + 4].copy_from_slice(&(value.len() as u16).to_le_bytes());
            m[at + 4..at + 4 + key.len()].copy_from_slice(key);
            m[at + 4 + key.len()..at + 4 + key.len() + value.len()].copy_from_slice(value);
        }
        self.wptr += size;
        let word = (tag << 48) | at as u64;
        loop {
            if let Some(i) = (0..TL_SLOTS).find(|&i| self.slot(b, i) == 0) {
                let off = b * 64 + i * 8;
                self.bytes_mut()[off..off + 8].copy_from_slice(&word.to_le_bytes());
                return;
            }
            b = (b + 1) & self.mask;
        }
    }

    #[inline]
    fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> bool {
        let (mut b, tag) = self.place(key);
        let m = self.bytes();
        loop {
            for i in 0..TL_SLOTS {
                let w = self.slot(b, i);
                if w == 0 {
                    return false;
                }
                if w >> 48 == tag {
                    let at = (w & ((1 << 48) - 1)) as usize;
                    let kl = usize::from(m[at]);
                    if kl == key.len() && &m[at + 4..at + 4 + kl] == key {
                        let vl = usize::from(u16::from_le_bytes([m[at + 2], m[at + 3]]));
                        out.extend_from_slice(&m[at + 4 + kl..at + 4 + kl + vl]);
                        return true;
                    }
                }
            }
            b = (b + 1) & self.mask;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Harness.

/// Removes the files it names when dropped (also on a panic).
struct TempFiles(Vec<PathBuf>);

impl Drop for TempFiles {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn scratch_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// One measured operation loop: runs a round of `ops` operations and returns its hit count,
/// which must equal `want` (when given).
struct System<'a> {
    name: &'static str,
    want: Option<u64>,
    round: Box<dyn FnMut() -> u64 + 'a>,
    ns: Vec<f64>,
}

impl<'a> System<'a> {
    fn new(name: &'static str, want: Option<u64>, round: impl FnMut() -> u64 + 'a) -> Self {
        System {
            name,
            want,
            round: Box::new(round),
            ns: Vec::new(),
        }
    }
}

/// Runs every system's round once to warm up, then `rounds` times, interleaved (round 1 of
/// every system, then round 2, ...), so that the machine's load drifting during the run
/// reaches every system alike; returns each system's median ns/op.
fn measure_interleaved(ops: usize, rounds: usize, systems: &mut [System<'_>]) -> Vec<f64> {
    for s in systems.iter_mut() {
        black_box((s.round)());
    }
    for _ in 0..rounds {
        for s in systems.iter_mut() {
            let t = Instant::now();
            let hits = black_box((s.round)());
            s.ns.push(t.elapsed().as_nanos() as f64 / ops as f64);
            if let Some(want) = s.want {
                check(s.name, hits, want);
            }
        }
    }
    systems
        .iter_mut()
        .map(|s| {
            s.ns.sort_by(f64::total_cmp);
            s.ns[s.ns.len() / 2]
        })
        .collect()
}

/// The two floors, for one round function.
trait BareTable {
    fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> bool;
}

impl BareTable for FloorTable {
    fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> bool {
        FloorTable::get_into(self, key, out)
    }
}

impl BareTable for TwoLevelTable {
    fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> bool {
        TwoLevelTable::get_into(self, key, out)
    }
}

/// A round of floor GETs of `keys[seq[..]]`; returns the hits.
fn floor_round<'a>(
    f: &'a impl BareTable,
    seq: &'a [u32],
    keys: &'a [Key],
) -> impl FnMut() -> u64 + 'a {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    move || {
        let mut hits = 0;
        for &i in seq {
            buf.clear();
            hits += u64::from(f.get_into(black_box(&keys[i as usize]), &mut buf));
            black_box(&buf);
        }
        hits
    }
}

/// A round of larder GETs of `keys[seq[..]]`; returns the hits.
fn larder_round<'a>(
    c: &'a larder::Cache,
    seq: &'a [u32],
    keys: &'a [Key],
) -> impl FnMut() -> u64 + 'a {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    move || {
        let mut hits = 0;
        for &i in seq {
            buf.clear();
            let hit = c
                .get_into(black_box(&keys[i as usize]), &mut buf)
                .expect("larder get_into");
            hits += u64::from(hit);
            black_box(&buf);
        }
        hits
    }
}

/// A round of larder `get_multi` over `keys[seq[..]]`, 16 keys per call; returns the hits.
fn larder_multi_round<'a>(
    c: &'a larder::Cache,
    seq: &'a [u32],
    keys: &'a [Key],
) -> impl FnMut() -> u64 + 'a {
    move || {
        let mut hits = 0;
        for chunk in seq.chunks(16) {
            let batch: Vec<&[u8]> = chunk.iter().map(|&i| &keys[i as usize][..]).collect();
            let got = c.get_multi(black_box(&batch)).expect("larder get_multi");
            hits += got.iter().filter(|v| v.is_some()).count() as u64;
            black_box(&got);
        }
        hits
    }
}

fn check(name: &str, got: u64, want: u64) {
    assert_eq!(got, want, "{name}: {got} hits per round, expected {want}");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let env_ops = std::env::var("LARDER_BENCH_OPS").ok().map(|s| {
        s.trim()
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| panic!("LARDER_BENCH_OPS={s:?} is not a positive integer"))
    });
    let quick = has("--test") || has("--list") || (!has("--bench") && env_ops.is_none());
    let ops = if quick {
        QUICK_OPS
    } else {
        env_ops.unwrap_or(DEFAULT_OPS)
    };

    let keys: Vec<Key> = (0..NKEYS).map(|i| make_key("key", i)).collect();
    let absent: Vec<Key> = (0..NKEYS).map(|i| make_key("nok", i)).collect();
    let values: Vec<[u8; VALUE_LEN]> = (0..NKEYS).map(make_value).collect();
    let mut rng = StdRng::seed_from_u64(SEED);
    let seq: Vec<u32> = (0..ops).map(|_| rng.gen_range(0..NKEYS as u32)).collect();

    let dir = scratch_dir();
    let pid = std::process::id();
    let floor_path = dir.join(format!("larder-bench-{pid}-floor"));
    let arena_path = dir.join(format!("larder-bench-{pid}-arena"));
    for p in [&floor_path, &arena_path] {
        let _ = std::fs::remove_file(p);
    }
    let _cleanup = TempFiles(vec![floor_path.clone(), arena_path.clone()]);

    // Populate every system with the same data. The floor and larder each come twice: on
    // huge pages (larder's default) and on 4 KiB pages.
    let huge_path = dir.join(format!("larder-bench-{pid}-floor-huge"));
    let small_arena = dir.join(format!("larder-bench-{pid}-arena-small"));
    for p in [&huge_path, &small_arena] {
        let _ = std::fs::remove_file(p);
    }
    let _cleanup2 = TempFiles(vec![huge_path.clone(), small_arena.clone()]);
    let slots = (NKEYS * 2).next_power_of_two();
    let mut floor = FloorTable::create(&floor_path, slots, false).expect("floor table");
    let mut floor_huge = FloorTable::create(&huge_path, slots, true).expect("floor table");
    for (k, v) in keys.iter().zip(&values) {
        floor.insert(k, v);
        floor_huge.insert(k, v);
    }
    // Index buckets for a 0.7 load of 8-slot buckets, as larder plans its index.
    let buckets = (NKEYS * 10 / (TL_SLOTS * 7)).next_power_of_two();
    let item_bytes = NKEYS * (4 + KEY_LEN + VALUE_LEN).next_multiple_of(8);
    let two_path = dir.join(format!("larder-bench-{pid}-two-level"));
    let two_huge_path = dir.join(format!("larder-bench-{pid}-two-level-huge"));
    for p in [&two_path, &two_huge_path] {
        let _ = std::fs::remove_file(p);
    }
    let _cleanup3 = TempFiles(vec![two_path.clone(), two_huge_path.clone()]);
    let mut two =
        TwoLevelTable::create(&two_path, buckets, item_bytes, false).expect("two-level floor");
    let mut two_huge =
        TwoLevelTable::create(&two_huge_path, buckets, item_bytes, true).expect("two-level floor");
    for (k, v) in keys.iter().zip(&values) {
        two.insert(k, v);
        two_huge.insert(k, v);
    }
    let cache = larder::Cache::create(&arena_path, &larder::Config::new(ARENA_BYTES))
        .expect("creating the larder arena");
    let small = larder::Cache::create(
        &small_arena,
        &larder::Config::new(ARENA_BYTES).huge_pages(false),
    )
    .expect("creating the larder arena");
    for (k, v) in keys.iter().zip(&values) {
        cache.set(k, v, None).expect("larder set (populate)");
        small.set(k, v, None).expect("larder set (populate)");
    }
    let locked: RwLock<HashMap<Vec<u8>, Vec<u8>>> = RwLock::new(
        keys.iter()
            .zip(&values)
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect(),
    );
    let n = ops as u64;
    let seq = &seq;
    let keys_ref = &keys;

    let mut rw_buf: Vec<u8> = Vec::with_capacity(4096);
    let rwlock_get = || {
        let mut hits = 0;
        for &i in seq {
            rw_buf.clear();
            let map = locked.read().unwrap_or_else(|e| e.into_inner());
            if let Some(v) = map.get(black_box(&keys_ref[i as usize][..])) {
                rw_buf.extend_from_slice(v);
                hits += 1;
            }
            drop(map);
            black_box(&rw_buf);
        }
        hits
    };
    let mut val = values[0];
    let mut stamp: u64 = 0;
    let larder_set = || {
        for &i in seq {
            // A different value each time, so every set is a real overwrite.
            stamp += 1;
            val[..8].copy_from_slice(&stamp.to_le_bytes());
            cache
                .set(black_box(&keys_ref[i as usize]), &val, None)
                .expect("larder set (overwrite)");
        }
        0
    };

    let mut systems = vec![
        System::new(
            "floor get, 4 KiB pages",
            Some(n),
            floor_round(&floor, seq, &keys),
        ),
        System::new(
            "floor get, huge pages",
            Some(n),
            floor_round(&floor_huge, seq, &keys),
        ),
        System::new(
            "two-level floor get, 4 KiB pages",
            Some(n),
            floor_round(&two, seq, &keys),
        ),
        System::new(
            "two-level floor get, huge pages",
            Some(n),
            floor_round(&two_huge, seq, &keys),
        ),
        System::new(
            "larder get_into, 4 KiB pages",
            Some(n),
            larder_round(&small, seq, &keys),
        ),
        System::new(
            "larder get_into, huge pages",
            Some(n),
            larder_round(&cache, seq, &keys),
        ),
        System::new(
            "larder get_multi(16), per key",
            Some(n),
            larder_multi_round(&cache, seq, &keys),
        ),
        System::new(
            "larder get miss, huge pages",
            Some(0),
            larder_round(&cache, seq, &absent),
        ),
        System::new("RwLock<HashMap> get", Some(n), rwlock_get),
        System::new("larder set (overwrite), huge", None, larder_set),
    ];
    let ns = measure_interleaved(ops, ROUNDS, &mut systems);
    let names: Vec<&str> = systems.iter().map(|s| s.name).collect();
    drop(systems);
    let [floor_small_ns, floor_ns, two_small_ns, two_ns, small_get_ns, larder_get_ns, multi_ns, miss_ns, rwlock_ns, set_ns] =
        ns[..]
    else {
        unreachable!("ten systems")
    };

    // After the overwrite rounds every key should still be there (the live set is ~13 MB
    // in a 64 MiB arena); report it if the log's eviction dropped any.
    let mut buf = Vec::new();
    let present = keys
        .iter()
        .filter(|k| {
            buf.clear();
            cache.get_into(&k[..], &mut buf).expect("larder get_into")
        })
        .count();
    let stats = cache.stats();

    let mode = if quick { " (quick run)" } else { "" };
    println!(
        "larder engine bench{mode}: {NKEYS} keys of {KEY_LEN} B, {VALUE_LEN} B values, 1 thread, \
         median of {ROUNDS} interleaved rounds x {ops} ops, arena {} MiB in {}",
        ARENA_BYTES >> 20,
        dir.display()
    );
    println!(
        "huge pages mapped: larder {} MiB, floor {} MiB of {} MiB tables",
        cache.huge_page_bytes().unwrap_or(0) >> 20,
        floor_huge.map.pmd_mapped().unwrap_or(0) >> 20,
        ARENA_BYTES >> 20
    );
    println!("{:<34} {:>9} {:>9}", "system", "ns/op", "x floor");
    for (name, v) in names.iter().zip(&ns) {
        // Each is compared with the floor on the same pages.
        let f = if name.contains("4 KiB") {
            floor_small_ns
        } else {
            floor_ns
        };
        println!("{name:<34} {v:>9.1} {:>9.2}", v / f);
    }
    println!();
    println!(
        "larder get_into / floor = {:.2} (huge pages), {:.2} (4 KiB pages)",
        larder_get_ns / floor_ns,
        small_get_ns / floor_small_ns
    );
    println!(
        "larder get_into / two-level floor = {:.2} (huge pages), {:.2} (4 KiB pages)",
        larder_get_ns / two_ns,
        small_get_ns / two_small_ns
    );
    println!(
        "larder get_multi(16) per key / floor = {:.2} (huge pages)",
        multi_ns / floor_ns
    );
    println!(
        "larder get_into / RwLock<HashMap> = {:.2}",
        larder_get_ns / rwlock_ns
    );
    println!(
        "huge pages / 4 KiB pages: larder {:.2}, floor {:.2}",
        larder_get_ns / small_get_ns,
        floor_ns / floor_small_ns
    );
    println!(
        "larder get_multi(16) per key / get_into = {:.2}",
        multi_ns / larder_get_ns
    );
    println!("larder set ns/op = {set_ns:.0}, get miss ns/op = {miss_ns:.0}");
    println!(
        "after sets: {present}/{NKEYS} keys present; items {}, evictions {}, index evictions {}, \
         rejected {}, torn retries {}, corrupt {}",
        stats.items,
        stats.totals.evictions,
        stats.totals.index_evictions,
        stats.totals.rejected,
        stats.totals.torn_retries,
        stats.totals.corrupt
    );

    drop(cache);
    drop(small);
    drop(floor);
    drop(floor_huge);
}
