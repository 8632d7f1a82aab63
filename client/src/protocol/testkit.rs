//! A small engine over heap memory, for unit tests, loom and miri.

use crate::protocol::engine::{Engine, Liveness, SlotProbe, Who};
use crate::protocol::layout::{
    Geometry, Params, HASH_ALGO_XXH3, HEADER_SIZE, LAYOUT_VERSION, MAGIC, MAX_ARENA_SIZE,
};
use crate::protocol::mem::{Mem, VecMem};
use crate::protocol::sync::AtomicU64;

/// Liveness decided by the test: a bit per slot, set = dead (the kernel dropped its lock).
#[derive(Default)]
pub(crate) struct TestLiveness(pub std::sync::Arc<std::sync::atomic::AtomicU64>);

impl Liveness for TestLiveness {
    fn slot_unlocked(&self, slot: u32) -> bool {
        // Relaxed: plays the kernel's part; tests set bits before the racing threads run.
        self.0.load(std::sync::atomic::Ordering::Relaxed) & (1 << slot) != 0
    }

    fn probe(&self) -> std::io::Result<Box<dyn SlotProbe + '_>> {
        Ok(Box::new(self))
    }
}

/// A dead slot's lock is always free to take (the tests run one reaper at a time).
impl SlotProbe for &TestLiveness {
    fn try_lock(&self, slot: u32) -> std::io::Result<bool> {
        Ok(self.slot_unlocked(slot))
    }

    fn unlock(&self, _slot: u32) {}
}

/// The parameters of a small heap arena.
pub(crate) fn tiny(
    nsegs: u32,
    seg_shift: u32,
    nbuckets: u64,
    nprocs: u32,
    max_value: u32,
) -> (Params, Geometry) {
    let g = Geometry::from_counts(MAX_ARENA_SIZE, seg_shift, nsegs, nprocs, nbuckets, 0, 0)
        .expect("counts");
    let g = Geometry::from_counts(g.segs_end(), seg_shift, nsegs, nprocs, nbuckets, 0, 0)
        .expect("counts");
    let p = Params {
        magic: MAGIC,
        layout_version: LAYOUT_VERSION,
        header_size: HEADER_SIZE as u32,
        arena_size: g.arena_size,
        hash_seed: 7,
        hash_algo: HASH_ALGO_XXH3,
        seg_shift,
        nsegs,
        nprocs,
        nbuckets,
        ntags: 0,
        nleases: 0,
        max_key: 16,
        max_value,
        epoch: 0,
        procs_off: g.procs_off,
        tags_off: g.tags_off,
        leases_off: g.leases_off,
        segtab_off: g.segtab_off,
        index_off: g.index_off,
        segs_off: g.segs_off,
    };
    (p, g)
}

/// An engine with `nsegs` segments of 2^seg_shift bytes and `nbuckets` buckets, and `nprocs`
/// registered processes. Returns the engine, the processes, and the dead-slot mask.
pub(crate) fn engine(
    nsegs: u32,
    seg_shift: u32,
    nbuckets: u64,
    nprocs: u32,
    max_value: u32,
) -> (
    Engine<VecMem>,
    Vec<Who>,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    let (p, g) = tiny(nsegs, seg_shift, nbuckets, nprocs, max_value);
    let dead = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let eng = Engine::new(
        VecMem::new(g.arena_size),
        &p,
        g,
        Box::new(TestLiveness(dead.clone())),
    );
    let whos = (0..nprocs)
        .map(|s| eng.claim_slot(s, 1000 + s, 0).expect("free slot"))
        .collect();
    (eng, whos, dead)
}

/// Memory shared by several engines (one per simulated process).
#[derive(Clone)]
pub(crate) struct Shared(pub std::sync::Arc<VecMem>);

impl Mem for Shared {
    #[inline]
    fn word(&self, off: u64) -> &AtomicU64 {
        self.0.word(off)
    }
    #[inline]
    fn words(&self, off: u64, n: usize) -> &[AtomicU64] {
        self.0.words(off, n)
    }
}

/// A process that another one interrupts at an exact arena access: before each access to a
/// word for which `when(offset)` holds, while `fires` is non-zero, `run(offset)` executes the
/// other process's steps (on an engine over the same memory, so without hooks), and only
/// then is the access performed. This is a deschedule of the hooked process at that access,
/// made deterministic. `words` (bucket scans, key and value copies) is never interrupted:
/// it only hands out the words, which are loaded one by one afterwards.
pub(crate) struct HookMem {
    pub inner: std::sync::Arc<VecMem>,
    pub when: Box<dyn Fn(u64) -> bool + Send + Sync>,
    pub run: std::sync::Mutex<Box<dyn FnMut(u64) + Send>>,
    /// How many more times the hook may run; tests arm it (store) right before the operation.
    pub fires: std::sync::atomic::AtomicU32,
}

impl HookMem {
    /// Arms the hook for `n` more runs.
    pub(crate) fn arm(&self, n: u32) {
        // Relaxed: a test's own step counter, used by one thread.
        self.fires.store(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many armed runs are left.
    pub(crate) fn left(&self) -> u32 {
        // Relaxed: as in `arm`.
        self.fires.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Mem for HookMem {
    fn word(&self, off: u64) -> &AtomicU64 {
        if (self.when)(off) && self.left() > 0 {
            // Relaxed: as in `arm`.
            self.fires
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            (self.run.lock().expect("hook"))(off);
        }
        self.inner.word(off)
    }

    fn words(&self, off: u64, n: usize) -> &[AtomicU64] {
        self.inner.words(off, n)
    }
}

/// The payload of the unwind that ends a "killed" process mid-operation.
pub(crate) struct Killed;

/// A process that is SIGKILLed after its `budget`-th access to the arena: the access is not
/// performed and the thread unwinds with [`Killed`] (no panic hook runs).
pub(crate) struct KillMem {
    pub inner: std::sync::Arc<VecMem>,
    pub budget: std::sync::atomic::AtomicU64,
}

impl Mem for KillMem {
    #[inline]
    fn word(&self, off: u64) -> &AtomicU64 {
        // Relaxed: a per-process step counter, touched by one thread.
        if self
            .budget
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed)
            == 0
        {
            std::panic::resume_unwind(Box::new(Killed));
        }
        self.inner.word(off)
    }

    /// Counts as `n` accesses. The words are only ever loaded (bucket scans, key compares,
    /// value copies), and a load changes nothing, so dying before the first of them is the
    /// same as dying between any two.
    fn words(&self, off: u64, n: usize) -> &[AtomicU64] {
        // Relaxed: as in `word`.
        let left = self.budget.load(std::sync::atomic::Ordering::Relaxed);
        if left < n as u64 {
            self.budget.store(0, std::sync::atomic::Ordering::Relaxed);
            std::panic::resume_unwind(Box::new(Killed));
        }
        self.budget
            .store(left - n as u64, std::sync::atomic::Ordering::Relaxed);
        self.inner.words(off, n)
    }
}

/// Runs `f`, which may be "killed"; returns `true` if it ran to completion.
pub(crate) fn survives(f: impl FnOnce()) -> bool {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(()) => true,
        Err(e) if e.is::<Killed>() => false,
        Err(e) => std::panic::resume_unwind(e),
    }
}

#[cfg(all(test, not(larder_loom)))]
mod tests {
    use super::*;
    use crate::protocol::alloc::Lane;
    use crate::protocol::index::{Lookup, Mode, Outcome};
    use crate::protocol::item::{Read, SliceSink};
    use crate::protocol::layout::{
        ctl_gen, ctl_state, item_hdr, seg_ctl, slot_loc, Counter, SegState, PS_COUNTERS,
        SLOT_GEN_BITS,
    };
    use crate::protocol::sync::Ordering::Relaxed;

    fn counter(e: &Engine<VecMem>, who: Who, c: Counter) -> u64 {
        e.mem.load(
            e.geo.proc_off(who.slot) + PS_COUNTERS + c as u64 * 8,
            Relaxed,
        )
    }

    fn slot_word_of(e: &Engine<VecMem>, who: Who, key: &[u8]) -> (u64, u64) {
        match e.lookup(who, key, e.hash(key), None::<&mut Vec<u8>>) {
            Lookup::Found(f) => (f.slot, f.w),
            other => panic!("{other:?}"),
        }
    }

    /// Writes key `key{n}` (then n += 1) with a 200-byte value: unique keys never read, so
    /// every eviction under pressure drops items.
    fn write_unique(e: &Engine<VecMem>, who: Who, lane: &mut Lane, n: &mut u32) {
        e.write(
            who,
            lane,
            format!("key{n}").as_bytes(),
            &[5; 200],
            None,
            Mode::Set,
        )
        .unwrap();
        *n += 1;
    }

    #[test]
    fn evicting_ahead_leaves_room_so_writers_do_not_evict_inline() {
        // w[0] writes, w[1] is the daemon. 8 segments of 64 KiB, unique never-read keys:
        // every eviction drops items, and the counter says who evicted.
        let (e, w, _) = engine(8, 16, 512, 2, 1000);
        let (mut lane, mut n) = (Lane::default(), 0);
        while counter(&e, w[0], Counter::Evictions) == 0 {
            write_unique(&e, w[0], &mut lane, &mut n);
        }
        // The log is full: one more segment of writes would make the writer evict.
        let seg = e.geo.seg_size();
        assert!(e.spare_room() < seg);
        assert!(e.evict_ahead(w[1], 2 * seg, 16) > 0);
        assert!(
            e.spare_room() >= 2 * seg,
            "{} bytes of room",
            e.spare_room()
        );
        assert!(counter(&e, w[1], Counter::Evictions) > 0);
        let before = counter(&e, w[0], Counter::Evictions);
        // More than the lane's open segment can still take (at most one segment), less
        // than the room made ahead.
        for _ in 0..3 * seg / 2 / 208 {
            write_unique(&e, w[0], &mut lane, &mut n);
        }
        assert_eq!(
            counter(&e, w[0], Counter::Evictions),
            before,
            "the writer evicted inline"
        );
    }

    #[test]
    fn evicting_ahead_without_a_free_destination_drops_nothing() {
        let (e, w, _) = engine(8, 16, 512, 2, 1000);
        let (mut lane, mut n) = (Lane::default(), 0);
        while counter(&e, w[0], Counter::Evictions) == 0 {
            write_unique(&e, w[0], &mut lane, &mut n);
        }
        // Another process holds every FREE segment (say, concurrent evictors' destinations).
        while e.claim_any_free(w[0]).is_some() {}
        let items = e.stats().items;
        assert_eq!(e.evict_ahead(w[1], 2 * e.geo.seg_size(), 16), 0);
        assert_eq!(counter(&e, w[1], Counter::Evictions), 0);
        assert_eq!(e.stats().items, items, "nothing dropped in place");
        for seg in 0..e.geo.nsegs {
            let c = e.mem.load(e.geo.seg_ctl_off(seg), Relaxed);
            assert_ne!(
                ctl_state(c),
                Some(SegState::Evicting),
                "segment {seg} left taken"
            );
        }
    }

    #[test]
    fn the_copy_forward_reserve_follows_the_log_up_to_four_segments_per_cpu() {
        use crate::protocol::engine::copy_forward_reserve as r;
        assert_eq!(r(4, 2), 2, "never under two");
        assert_eq!(r(117, 2), 3, "a 256 MiB arena of 2 MiB segments");
        assert_eq!(r(8192, 2), 8, "a 16 GiB arena on 2 CPUs");
        assert_eq!(r(8192, 64), 256);
        assert_eq!(r(8192, 0), 2);
    }

    #[test]
    fn a_slot_into_a_recycled_segment_reads_as_a_miss_and_is_cleared() {
        let (e, w, _) = engine(4, 16, 8, 1, 1000);
        let mut lane = Lane::default();
        e.write(w[0], &mut lane, b"k", b"v", None, Mode::Set)
            .unwrap();
        let (slot, word) = slot_word_of(&e, w[0], b"k");
        // Recycle the segment behind the index's back (what a lost unlink would leave).
        let seg = e.geo.seg_of(slot_loc(word) * 8).unwrap();
        let c = e.mem.load(e.geo.seg_ctl_off(seg), Relaxed);
        e.mem.store(
            e.geo.seg_ctl_off(seg),
            seg_ctl(ctl_gen(c) + 1, SegState::Free, 0),
            Relaxed,
        );
        let mut out = Vec::new();
        assert!(e.get(w[0], b"k", &mut out).unwrap().is_none());
        assert_eq!(e.mem.load(slot, Relaxed), 0, "the stale slot heals");
    }

    #[test]
    fn damaged_item_bytes_are_a_counted_miss_never_a_panic() {
        let (e, w, _) = engine(4, 16, 8, 1, 1000);
        let mut lane = Lane::default();
        for (i, garbage) in [
            u64::MAX,
            0,
            item_hdr(0, 5, 0, true),
            item_hdr(5, 60_000, 0, false),
            0xffff_ffff,
        ]
        .into_iter()
        .enumerate()
        {
            let key = format!("k{i}");
            e.write(w[0], &mut lane, key.as_bytes(), b"value", None, Mode::Set)
                .unwrap();
            let (slot, word) = slot_word_of(&e, w[0], key.as_bytes());
            e.mem.store(slot_loc(word) * 8, garbage, Relaxed);
            let before = counter(&e, w[0], Counter::Corrupt);
            assert!(
                e.get(w[0], key.as_bytes(), &mut Vec::new())
                    .unwrap()
                    .is_none(),
                "{garbage:#x}"
            );
            assert_eq!(counter(&e, w[0], Counter::Corrupt), before + 1);
            assert_eq!(e.mem.load(slot, Relaxed), 0);
        }
        // A garbage slot word pointing outside the segment area.
        e.write(w[0], &mut lane, b"x", b"v", None, Mode::Set)
            .unwrap();
        let (slot, word) = slot_word_of(&e, w[0], b"x");
        e.mem
            .store(slot, word & !crate::protocol::layout::LOC_MASK | 1, Relaxed);
        assert!(e.get(w[0], b"x", &mut Vec::new()).unwrap().is_none());
    }

    #[test]
    fn a_walk_stops_at_damaged_bytes_and_the_segment_is_still_recycled() {
        let (e, w, _) = engine(6, 16, 64, 1, 1000);
        let mut lane = Lane::default();
        for i in 0..10 {
            e.write(
                w[0],
                &mut lane,
                format!("k{i}").as_bytes(),
                &[1; 100],
                None,
                Mode::Set,
            )
            .unwrap();
        }
        let seg = lane.seg.take().unwrap();
        e.seal(w[0], seg);
        // Damage the fifth item's header: the walk cannot step past it.
        let (_, word) = slot_word_of(&e, w[0], b"k4");
        e.mem.store(slot_loc(word) * 8, u64::MAX, Relaxed);
        let prev = e.take_for_walk(w[0], seg.seg).unwrap();
        e.walk_segment(
            w[0],
            seg.seg,
            ctl_gen(prev),
            crate::protocol::eviction::Walk::Evict,
            None,
        );
        e.free_segment(w[0], seg.seg, ctl_gen(prev));
        assert!(counter(&e, w[0], Counter::Corrupt) >= 1);
        // No slot outlives the segment's generation, not even those the walk could not
        // reach: they were found by a scan of the index (design.md §4.6).
        let mut into_seg = 0;
        e.for_each_slot(|_, w| {
            into_seg += u32::from(e.geo.seg_of(slot_loc(w) * 8) == Some(seg.seg))
        });
        assert_eq!(into_seg, 0, "slots left pointing into the freed segment");
        for i in 0..10 {
            assert!(e
                .get(w[0], format!("k{i}").as_bytes(), &mut Vec::new())
                .unwrap()
                .is_none());
        }
        assert_eq!(e.stats().items, 0);
    }

    #[test]
    fn a_reader_stalled_across_2_14_recyclings_does_not_trust_the_bytes_it_finds() {
        let (e, w, _) = engine(4, 16, 8, 1, 1000);
        let mut lane = Lane::default();
        e.write(w[0], &mut lane, b"k", b"old", None, Mode::Set)
            .unwrap();
        // A reader loads the slot word, then stalls.
        let (slot, word) = slot_word_of(&e, w[0], b"k");
        // Meanwhile the key is deleted and its segment recycled 2^14 times (the slot's
        // generation bits wrap); a writer is now writing an item of the same key at the same
        // offset, not yet published.
        assert!(e.delete(w[0], b"k").unwrap());
        let off = slot_loc(word) * 8;
        let seg = e.geo.seg_of(off).unwrap();
        let c = e.mem.load(e.geo.seg_ctl_off(seg), Relaxed);
        e.mem.store(
            e.geo.seg_ctl_off(seg),
            seg_ctl(ctl_gen(c) + (1 << SLOT_GEN_BITS), SegState::Open, w[0].reg),
            Relaxed,
        );
        e.write_item_ext(off, b"k", b"new", 0, &[]);
        // The reader resumes: generation bits and bytes both pass, the slot does not.
        let mut out = Vec::new();
        assert_eq!(e.read_item(slot, word, b"k", Some(&mut out)), Read::Torn);
        assert!(out.is_empty());
        // Into a caller's buffer, the torn read leaves no length behind either.
        let mut buf = [0u8; 16];
        let mut sink = SliceSink {
            buf: &mut buf,
            len: 0,
        };
        assert_eq!(e.read_item(slot, word, b"k", Some(&mut sink)), Read::Torn);
        assert_eq!(sink.len, 0);
        // The same read with the slot still holding the word is a hit.
        e.mem.store(slot, word, Relaxed);
        assert!(matches!(
            e.read_item(slot, word, b"k", Some(&mut out)),
            Read::Match(_)
        ));
        assert_eq!(out, b"new");
        let mut sink = SliceSink {
            buf: &mut buf,
            len: 0,
        };
        assert!(matches!(
            e.read_item(slot, word, b"k", Some(&mut sink)),
            Read::Match(_)
        ));
        assert_eq!(sink.len, 3);
        assert_eq!(&buf[..3], b"new");
    }

    /// `copy_into` against `copy_out` for every start alignment, every length up to three
    /// words and every buffer size from the exact length up: the same bytes, nothing
    /// written past the buffer.
    #[test]
    fn copy_into_a_buffer_matches_copy_out_at_every_alignment_and_size() {
        let (e, _w, _) = engine(4, 16, 8, 2, 1000);
        let base = e.geo.seg_base(0);
        for i in 0..8u64 {
            e.mem.store(
                base + i * 8,
                0x0807_0605_0403_0201u64.wrapping_mul(i + 1),
                Relaxed,
            );
        }
        for skew in 0..8u64 {
            for len in 0..=24usize {
                let mut want = Vec::new();
                e.copy_out(base + skew, len, &mut want);
                for cap in len..len + 10 {
                    let mut buf = vec![0xAAu8; cap + 1];
                    e.copy_into(base + skew, len, &mut buf[..cap]);
                    assert_eq!(&buf[..len], &want[..], "skew {skew} len {len} cap {cap}");
                    assert_eq!(
                        buf[cap], 0xAA,
                        "wrote past the buffer: skew {skew} len {len}"
                    );
                }
            }
        }
    }

    #[test]
    fn key_eq_tells_every_length_and_every_last_byte_apart() {
        // Both ways the compare builds its last partial word (a key under 8 bytes, byte by
        // byte; a longer one, from its last 8 bytes shifted down), at every length.
        let (e, _w, _) = engine(4, 16, 8, 2, 1000);
        let at = e.geo.seg_base(0);
        for len in 1..=16usize {
            let key: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
            for (i, chunk) in key.chunks(8).enumerate() {
                let mut b = [0xEEu8; 8]; // bytes past the key are whatever follows it
                b[..chunk.len()].copy_from_slice(chunk);
                e.mem
                    .store(at + i as u64 * 8, u64::from_le_bytes(b), Relaxed);
            }
            assert!(e.key_eq(at, &key), "len {len}");
            for pos in 0..len {
                let mut other = key.clone();
                other[pos] ^= 1;
                assert!(!e.key_eq(at, &other), "len {len}, byte {pos} differs");
            }
        }
    }

    #[test]
    fn a_dead_holders_insert_lock_is_stolen_a_live_ones_is_not() {
        let (e, w, dead) = engine(4, 16, 8, 2, 1000);
        let hash = e.hash(b"k");
        let [home, _] = e.neighbourhood(hash);
        let held_by_1 = (u64::from(w[1].slot) << 32) | u64::from(w[1].reg);
        e.mem.store(e.geo.lock_off(home), held_by_1, Relaxed);
        dead.store(1 << w[1].slot, Relaxed);
        let mut lane = Lane::default();
        assert_eq!(
            e.write(w[0], &mut lane, b"k", b"v", None, Mode::Set)
                .unwrap(),
            Outcome::Stored
        );
        assert_eq!(e.mem.load(e.geo.lock_off(home), Relaxed), 0);
        // A live holder: the writer must wait (checked without blocking the test).
        dead.store(0, Relaxed);
        e.mem.store(e.geo.lock_off(home), held_by_1, Relaxed);
        assert!(!e.is_dead(w[1].slot, w[1].reg));
        // A lock word naming a registration the slot no longer has is dead even if the slot
        // is held by someone alive.
        let stale = (u64::from(w[1].slot) << 32) | u64::from(w[1].reg + 100);
        assert!(e.is_dead(w[1].slot, w[1].reg + 100), "{stale:#x}");
    }

    #[test]
    fn reaping_parks_a_dead_writers_segment_and_keeps_its_items() {
        let (e, w, _) = engine(6, 16, 64, 2, 1000);
        let mut lane = Lane::default();
        e.write(w[1], &mut lane, b"k", b"kept", None, Mode::Set)
            .unwrap();
        let seg = lane.seg.unwrap().seg;
        assert_eq!(
            ctl_state(e.mem.load(e.geo.seg_ctl_off(seg), Relaxed)),
            Some(SegState::Open)
        );
        // Process 1 dies; process 0 reaps it (twice: a second reaper must be harmless).
        assert_eq!(e.reap(w[0], w[1].slot, w[1].reg), 1);
        assert_eq!(e.reap(w[0], w[1].slot, w[1].reg), 0);
        assert_eq!(
            ctl_state(e.mem.load(e.geo.seg_ctl_off(seg), Relaxed)),
            Some(SegState::Parked)
        );
        assert_eq!(e.slot_reg(w[1].slot), 0);
        let mut out = Vec::new();
        assert!(e.get(w[0], b"k", &mut out).unwrap().is_some());
        assert_eq!(out, b"kept");
        // The parked segment is adopted by the next writer, after the dead one's items.
        let mut lane0 = Lane::default();
        e.write(w[0], &mut lane0, b"k2", b"v", None, Mode::Set)
            .unwrap();
        assert_eq!(lane0.seg.unwrap().seg, seg);
        assert!(e.get(w[0], b"k", &mut Vec::new()).unwrap().is_some());
    }

    #[test]
    fn an_evictor_killed_midway_is_finished_by_the_next() {
        let (e, w, _) = engine(6, 16, 64, 2, 1000);
        let mut lane = Lane::default();
        for i in 0..20 {
            e.write(
                w[0],
                &mut lane,
                format!("k{i}").as_bytes(),
                &[2; 100],
                None,
                Mode::Set,
            )
            .unwrap();
        }
        let seg = lane.seg.take().unwrap();
        e.seal(w[0], seg);
        // Process 1 starts evicting it, unlinks half the items, and dies.
        let prev = e.take_for_walk(w[1], seg.seg).unwrap();
        for i in 0..10 {
            e.delete(w[1], format!("k{i}").as_bytes()).unwrap();
        }
        e.reap(w[0], w[1].slot, w[1].reg);
        assert_eq!(
            ctl_state(e.mem.load(e.geo.seg_ctl_off(seg.seg), Relaxed)),
            Some(SegState::Sealed)
        );
        // The eviction is redone from the start by someone else; it is idempotent.
        let prev2 = e.take_for_walk(w[0], seg.seg).unwrap();
        assert_eq!(ctl_gen(prev2), ctl_gen(prev));
        e.walk_segment(
            w[0],
            seg.seg,
            ctl_gen(prev2),
            crate::protocol::eviction::Walk::Evict,
            None,
        );
        e.free_segment(w[0], seg.seg, ctl_gen(prev2));
        assert_eq!(e.stats().items, 0);
        assert_eq!(
            ctl_state(e.mem.load(e.geo.seg_ctl_off(seg.seg), Relaxed)),
            Some(SegState::Free)
        );
    }
}
