//! The hash index: neighbourhood lookup, publish by CAS, and the bucket insert lock
//! (docs/design.md §2.4, §4.2, §5.2).

use crate::protocol::engine::{Engine, Who};
use crate::protocol::item::{ItemInfo, Read, Sink};
use crate::protocol::layout::{
    ctl_gen, ctl_state, hash_tag, slot_gen, slot_loc, slot_tag, Counter, SegState, BUCKET_SIZE,
    B_SLOTS, LOC_BITS, REF_BIT, SLOTS_PER_BUCKET, SLOT_GEN_MASK,
};
use crate::protocol::mem::Mem;
use crate::protocol::sync::{backoff, Ordering::*};

/// How many times a lookup restarts after meeting a segment recycled under it before a
/// reader reports a miss.
pub(crate) const READ_RETRIES: u32 = 8;

/// How many failed attempts on an insert lock between liveness checks of its holder (a
/// check is a syscall). Loom checks every time: its spins are explored, not timed.
const STEAL_CHECK_EVERY: u32 = if cfg!(larder_loom) { 1 } else { 256 };

/// A slot holding the key looked for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Found {
    /// Arena offset of the slot word.
    pub slot: u64,
    /// The slot word as loaded.
    pub w: u64,
    pub info: ItemInfo,
}

impl Found {
    /// The cas token of the exact item found (design.md §4.3).
    pub(crate) fn token(&self) -> u64 {
        (self.info.gen << LOC_BITS) | slot_loc(self.w)
    }
}

#[derive(Debug)]
pub(crate) enum Lookup {
    Found(Found),
    NotFound,
    /// A segment was recycled under the lookup; it should be restarted.
    Torn,
}

/// How a write treats an existing item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Set,
    Add,
    Replace,
    Cas(u64),
}

/// What a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Stored,
    /// `add` found a live item, or `replace` / `cas` found none.
    NotStored,
    /// `cas` found the key with another token.
    Exists,
}

impl<M: Mem> Engine<M> {
    /// Re-validates a `Found` right before a CAS from its word: the item's segment still has
    /// the full generation the item was read under. The CAS itself checks the word; this
    /// rules out the word having come back meanwhile naming another item (the slot emptied,
    /// the segment recycled 2¹⁴·k times, the same tag published at the same offset), which a
    /// writer that held the word across an append, an eviction and its waits would otherwise
    /// replace or delete (design.md §4.3, hazard 7). What is left is the few instructions
    /// between this load and the CAS, as for readers.
    #[inline]
    pub(crate) fn still_current(&self, f: &Found) -> bool {
        let Some(seg) = self.geo.seg_of(slot_loc(f.w) * 8) else {
            return false;
        };
        // Acquire: keeps the caller's CAS after this load (no later access moves above an
        // Acquire load); pairs with the Release of free_segment, like the reader's c1.
        ctl_gen(self.mem.load(self.geo.seg_ctl_off(seg), Acquire)) == f.info.gen
    }

    /// Offsets of the two buckets of a hash's neighbourhood.
    #[inline]
    pub(crate) fn neighbourhood(&self, hash: u64) -> [u64; 2] {
        let b = self.geo.home_bucket(hash);
        let next = if b + 1 == self.geo.nbuckets { 0 } else { b + 1 };
        [self.geo.bucket_off(b), self.geo.bucket_off(next)]
    }

    /// Finds `key`'s slot (design.md §4.1). On a match the value is appended to `out` if
    /// given. Garbage slots met on the way are cleared.
    pub(crate) fn lookup<S: Sink>(
        &self,
        who: Who,
        key: &[u8],
        hash: u64,
        mut out: Option<&mut S>,
    ) -> Lookup {
        let tag = hash_tag(hash);
        let buckets = self.neighbourhood(hash);
        // The second line is needed for half the hits (§4.2 fills the two evenly) and for
        // every miss: have both in flight at once.
        self.mem.prefetch(buckets[1]);
        for bucket in buckets {
            let slots = self.mem.words(bucket + B_SLOTS, SLOTS_PER_BUCKET);
            for (i, word) in slots.iter().enumerate() {
                // Acquire: pairs with the Release of the CAS that published this word, so
                // the item bytes written before it are visible to read_item.
                let w = word.load(Acquire);
                if w == 0 || slot_tag(w) != tag {
                    continue;
                }
                let slot = bucket + B_SLOTS + i as u64 * 8;
                if let Some(found) = self.examine(who, slot, w, key, out.as_deref_mut()) {
                    return found;
                }
            }
        }
        Lookup::NotFound
    }

    /// Examines a slot whose word `w` carries the key's tag: `Some` if the lookup ends here
    /// (found, or torn), `None` to go on scanning.
    #[inline]
    fn examine<S: Sink>(
        &self,
        who: Who,
        slot: u64,
        w: u64,
        key: &[u8],
        mut out: Option<&mut S>,
    ) -> Option<Lookup> {
        match self.read_item(slot, w, key, out.as_deref_mut()) {
            Read::Match(info) => Some(Lookup::Found(Found { slot, w, info })),
            Read::Other => None,
            Read::Torn => Some(Lookup::Torn),
            Read::StaleSlot => self.clear_or_reexamine(who, slot, w, false, key, out),
            Read::Corrupt => self.clear_or_reexamine(who, slot, w, true, key, out),
        }
    }

    /// A slot found stale or damaged: cleared, or — if the clearing CAS fails — examined
    /// again with the word found. A slot is left only once it was seen empty, foreign, or
    /// cleared by us: a garbage word we fail to clear was replaced by someone else, maybe by
    /// this very key moved forward into the same slot (design.md §4.1 step 2, §4.6). Each
    /// round means another process changed the slot; after READ_RETRIES of them the lookup
    /// restarts. (Out of line: the hit path stays as short as before.)
    #[cold]
    #[inline(never)]
    fn clear_or_reexamine<S: Sink>(
        &self,
        who: Who,
        slot: u64,
        mut w: u64,
        mut corrupt: bool,
        key: &[u8],
        mut out: Option<&mut S>,
    ) -> Option<Lookup> {
        for _ in 0..READ_RETRIES {
            match self.clear_garbage(who, slot, w, corrupt) {
                Ok(()) => return None,
                // Emptied, or now another key's: nothing more to see here.
                Err(now) if now == 0 || slot_tag(now) != slot_tag(w) => return None,
                Err(now) => w = now,
            }
            corrupt = match self.read_item(slot, w, key, out.as_deref_mut()) {
                Read::Match(info) => return Some(Lookup::Found(Found { slot, w, info })),
                Read::Other => return None,
                Read::Torn => return Some(Lookup::Torn),
                Read::StaleSlot => false,
                Read::Corrupt => true,
            };
        }
        Some(Lookup::Torn)
    }

    /// Empties a slot that points at nothing valid (design.md §4.6). On failure returns what
    /// the slot holds now, which the caller must examine: it is not garbage of ours.
    fn clear_garbage(&self, who: Who, slot: u64, w: u64, corrupt: bool) -> Result<(), u64> {
        // Relaxed on success: the slot becomes empty; nothing is published with it. Acquire
        // on failure: pairs with the Release of whatever CAS stored the word found, since the
        // caller reads the item it points at (as the scan's own Acquire load).
        self.mem.cas(slot, w, 0, Relaxed, Acquire)?;
        if corrupt {
            self.count(who, Counter::Corrupt);
        }
        Ok(())
    }

    /// Sets the CLOCK reference bit of a hit (design.md §4.1 step 7). A CAS, never a
    /// fetch_or: the slot may have been emptied since we loaded it.
    #[inline]
    pub(crate) fn touch_ref(&self, f: &Found) {
        if f.w & REF_BIT == 0 {
            // Relaxed: the bit carries no data; losing the race only loses the hint.
            let _ = self.mem.cas(f.slot, f.w, f.w | REF_BIT, Relaxed, Relaxed);
        }
    }

    /// Lookup for writers: restarts on torn reads until it has an answer.
    pub(crate) fn lookup_for_write<S: Sink>(
        &self,
        who: Who,
        key: &[u8],
        hash: u64,
        mut out: Option<&mut S>,
    ) -> Option<Found> {
        let mut round = 0;
        loop {
            match self.lookup(who, key, hash, out.as_deref_mut()) {
                Lookup::Found(f) => return Some(f),
                Lookup::NotFound => return None,
                Lookup::Torn => {
                    self.count(who, Counter::TornRetries);
                    backoff(round);
                    round += 1;
                }
            }
        }
    }

    /// Makes `new_w` (an item already written and counted in its segment's `wptr`) the
    /// key's slot word, according to `mode` (design.md §4.2 step 3).
    pub(crate) fn publish(
        &self,
        who: Who,
        key: &[u8],
        hash: u64,
        new_w: u64,
        mode: Mode,
    ) -> Outcome {
        loop {
            if let Some(f) = self.lookup_for_write(who, key, hash, None::<&mut Vec<u8>>) {
                let live = self.is_live(&f.info);
                match mode {
                    Mode::Add if live => return Outcome::NotStored,
                    Mode::Replace | Mode::Cas(_) if !live => return Outcome::NotStored,
                    Mode::Cas(t) if t != f.token() => return Outcome::Exists,
                    _ => {}
                }
                // Release: publishes the item bytes to readers that load this slot with
                // Acquire. Relaxed on failure: we only re-read.
                if self.still_current(&f)
                    && self.mem.cas(f.slot, f.w, new_w, Release, Relaxed).is_ok()
                {
                    return Outcome::Stored;
                }
                continue;
            }
            if matches!(mode, Mode::Replace | Mode::Cas(_)) {
                return Outcome::NotStored;
            }
            let [home, _] = self.neighbourhood(hash);
            self.lock_bucket(who, home);
            let r = self.insert_locked(who, key, hash, new_w);
            self.unlock_bucket(home);
            if let Some(o) = r {
                return o;
            }
        }
    }

    /// Insert of a key not found, under its home bucket's insert lock. `None`: someone
    /// inserted the key meanwhile, or a race moved every candidate slot; restart.
    fn insert_locked(&self, who: Who, key: &[u8], hash: u64, new_w: u64) -> Option<Outcome> {
        if self
            .lookup_for_write(who, key, hash, None::<&mut Vec<u8>>)
            .is_some()
        {
            return None;
        }
        let slots = self
            .neighbourhood(hash)
            .map(|b| (0..SLOTS_PER_BUCKET as u64).map(move |i| b + B_SLOTS + i * 8));
        // The emptier of the two buckets first (home on a tie): filling home before spilling
        // over, as linear probing does, leaves the next bucket fuller for its own keys, and
        // a full neighbourhood costs an index eviction (6.6 % vs 3.9 % of inserts at 0.71
        // load in a simulation of a churning cache).
        let [home, next] = slots.clone().map(|b| {
            // Relaxed: only a search for an empty word.
            b.filter(|&slot| self.mem.load(slot, Relaxed) == 0).count()
        });
        let order = if next > home { [1, 0] } else { [0, 1] };
        for slot in order.into_iter().flat_map(|i| slots[i].clone()) {
            // Release on success: publishes the item (see publish). Relaxed loads/fails:
            // this is only a search for an empty word.
            if self.mem.load(slot, Relaxed) == 0
                && self.mem.cas(slot, 0, new_w, Release, Relaxed).is_ok()
            {
                return Some(Outcome::Stored);
            }
        }
        // Neighbourhood full: replace a CLOCK victim, the oldest item without a reference
        // bit (clearing the bits of older referenced ones, as the hand passing them would).
        for _ in 0..2 {
            let mut victim: Option<(u64, u64, u64)> = None;
            let mut referenced = [(0u64, 0u64, 0u64); 2 * SLOTS_PER_BUCKET];
            let mut nref = 0;
            for slot in slots.clone().into_iter().flatten() {
                let w = self.mem.load(slot, Relaxed);
                if w == 0 {
                    // Release: publishes the item.
                    if self.mem.cas(slot, 0, new_w, Release, Relaxed).is_ok() {
                        return Some(Outcome::Stored);
                    }
                    continue;
                }
                let age = self.slot_age(w);
                if w & REF_BIT != 0 {
                    referenced[nref] = (age, slot, w);
                    nref += 1;
                } else if victim.is_none_or(|(a, _, _)| age < a) {
                    victim = Some((age, slot, w));
                }
            }
            let older_than = victim.map_or(u64::MAX, |(a, _, _)| a);
            for &(age, slot, w) in &referenced[..nref] {
                if age < older_than {
                    // Relaxed: clearing a hint bit.
                    let _ = self.mem.cas(slot, w, w & !REF_BIT, Relaxed, Relaxed);
                }
            }
            if let Some((_, slot, w)) = victim {
                // Release: publishes the item; the victim's item becomes dead space.
                if self.mem.cas(slot, w, new_w, Release, Relaxed).is_ok() {
                    self.count(who, Counter::IndexEvictions);
                    return Some(Outcome::Stored);
                }
            }
        }
        None
    }

    /// How long ago the item a slot points at joined the log, as an order key (smaller is
    /// older): its segment's log position, then its offset. A slot into a recycled segment
    /// (or outside the segment area) points at nothing and sorts first; items of an OPEN
    /// segment are the newest. Only chooses an index-eviction victim: any answer is safe.
    fn slot_age(&self, w: u64) -> u64 {
        let Some(seg) = self.geo.seg_of(slot_loc(w) * 8) else {
            return 0;
        };
        // Relaxed: a heuristic; the victim is then replaced by a CAS from the word seen.
        let c = self.mem.load(self.geo.seg_ctl_off(seg), Relaxed);
        if ctl_gen(c) & SLOT_GEN_MASK != slot_gen(w) {
            return 0;
        }
        let seq = match ctl_state(c) {
            Some(SegState::Open) => u64::from(u32::MAX),
            // Relaxed: as above.
            _ => self
                .mem
                .load(self.geo.seg_seq_off(seg), Relaxed)
                .min(u64::from(u32::MAX) - 1),
        };
        // 32 bits of log position, then the item's offset inside its segment.
        let within = (slot_loc(w) * 8 - self.geo.seg_base(seg)) >> 3;
        (seq << 32) | (within & 0xffff_ffff)
    }

    /// Takes a bucket's insert lock, stealing it from a dead holder (design.md §5.2).
    pub(crate) fn lock_bucket(&self, who: Who, bucket: u64) {
        let off = self.geo.lock_off(bucket);
        let me = (u64::from(who.slot) << 32) | u64::from(who.reg);
        let mut round = 0u32;
        loop {
            // Acquire: pairs with the Release store in unlock_bucket, so the slot CAS of the
            // previous holder is visible to our rescan.
            let holder = match self.mem.cas(off, 0, me, Acquire, Relaxed) {
                Ok(_) => return,
                Err(h) => h,
            };
            round += 1;
            if round.is_multiple_of(STEAL_CHECK_EVERY) {
                let (slot, reg) = ((holder >> 32) as u32, holder as u32);
                if reg != who.reg && self.is_dead(slot, reg) {
                    // Acquire: as above. The dead holder's only possible effect was one slot
                    // CAS; the liveness check went through the kernel, which orders it.
                    if self.mem.cas(off, holder, me, Acquire, Relaxed).is_ok() {
                        return;
                    }
                }
            }
            backoff(round);
        }
    }

    pub(crate) fn unlock_bucket(&self, bucket: u64) {
        // Release: pairs with the Acquire of the next lock_bucket.
        self.mem.store(self.geo.lock_off(bucket), 0, Release);
    }

    /// Finds the slot that points at the item at `loc` in segment generation `gen14`, for
    /// walkers that start from an item rather than a key.
    pub(crate) fn slot_of_item(&self, hash: u64, loc: u64, gen14: u64) -> Option<(u64, u64)> {
        for bucket in self.neighbourhood(hash) {
            for i in 0..SLOTS_PER_BUCKET as u64 {
                let slot = bucket + B_SLOTS + i * 8;
                // Relaxed: the walker owns the item's segment; it compares addresses only.
                let w = self.mem.load(slot, Relaxed);
                if w != 0 && slot_loc(w) == loc && crate::protocol::layout::slot_gen(w) == gen14 {
                    return Some((slot, w));
                }
            }
        }
        None
    }

    /// Appends the live keys of one bucket's slots to `out`.
    pub(crate) fn keys_in_bucket(&self, bucket: u64, out: &mut Vec<Vec<u8>>) {
        for i in 0..SLOTS_PER_BUCKET as u64 {
            let slot = self.geo.bucket_off(bucket) + B_SLOTS + i * 8;
            // Acquire: pairs with the publishing CAS; we read the item next.
            let w = self.mem.load(slot, Acquire);
            if w == 0 {
                continue;
            }
            if let Some((key, info)) = self.read_key(slot, w) {
                if self.is_live(&info) {
                    out.push(key);
                }
            }
        }
    }

    /// Calls `f` with every non-empty slot's offset and word (for flush, keys, stats).
    pub(crate) fn for_each_slot(&self, mut f: impl FnMut(u64, u64)) {
        for b in 0..self.geo.nbuckets {
            let base = self.geo.index_off + b * BUCKET_SIZE + B_SLOTS;
            for i in 0..SLOTS_PER_BUCKET as u64 {
                // Acquire: callers may read the item the word points at.
                let w = self.mem.load(base + i * 8, Acquire);
                if w != 0 {
                    f(base + i * 8, w);
                }
            }
        }
    }
}

#[cfg(all(test, not(larder_loom)))]
mod tests {
    use crate::protocol::alloc::Lane;
    use crate::protocol::index::{Lookup, Mode};
    use crate::protocol::layout::{Counter, PS_COUNTERS, SLOTS_PER_BUCKET};
    use crate::protocol::mem::Mem;
    use crate::protocol::sync::Ordering::Relaxed;
    use crate::protocol::testkit::engine;

    #[test]
    fn a_full_neighbourhood_drops_its_oldest_unreferenced_item() {
        // Two buckets: every key's neighbourhood is the same 14 slots.
        let (e, w, _) = engine(8, 16, 2, 1, 1000);
        let mut lane = Lane::default();
        let key = |i: usize| format!("k{i}").into_bytes();
        let set = |lane: &mut Lane, i: usize| {
            e.write(w[0], lane, &key(i), &[1; 40], None, Mode::Set)
                .unwrap();
        };
        // Without touching reference bits.
        let present = |i: usize| {
            let k = key(i);
            matches!(
                e.lookup(w[0], &k, e.hash(&k), None::<&mut Vec<u8>>),
                Lookup::Found(_)
            )
        };
        let n = 2 * SLOTS_PER_BUCKET;
        // The first half in a segment that is then sealed (older in the log), the second
        // half in the lane's open segment (newest).
        for i in 0..n / 2 {
            set(&mut lane, i);
        }
        let sealed = lane.seg.take().unwrap();
        e.seal(w[0], sealed);
        for i in n / 2..n {
            set(&mut lane, i);
        }
        assert_eq!(e.stats().items, n as u64);
        // k0 is read: its reference bit spares it once (and is cleared on the way).
        assert!(e.get(w[0], &key(0), &mut Vec::new()).unwrap().is_some());
        set(&mut lane, n);
        assert!(
            present(0) && !present(1),
            "the oldest unreferenced item goes"
        );
        set(&mut lane, n + 1);
        assert!(
            !present(0) && present(2),
            "then the spared one, now unreferenced"
        );
        set(&mut lane, n + 2);
        assert!(!present(2));
        for i in 3..n + 3 {
            assert!(present(i), "k{i} is newer than every item dropped");
        }
        let evictions = e.mem.load(
            e.geo.proc_off(w[0].slot) + PS_COUNTERS + Counter::IndexEvictions as u64 * 8,
            Relaxed,
        );
        assert_eq!(evictions, 3);
    }

    #[test]
    fn a_new_key_goes_to_the_emptier_bucket_of_its_neighbourhood() {
        let (e, w, _) = engine(8, 16, 64, 1, 1000);
        let mut lane = Lane::default();
        // Keys that all have bucket 10 as their home.
        let keys: Vec<Vec<u8>> = (0..)
            .map(|i| format!("k{i}").into_bytes())
            .filter(|k| e.geo.home_bucket(e.hash(k)) == 10)
            .take(4)
            .collect();
        let in_bucket = |b: u64| {
            (0..SLOTS_PER_BUCKET as u64)
                .filter(|i| {
                    e.mem.load(
                        e.geo.bucket_off(b) + crate::protocol::layout::B_SLOTS + i * 8,
                        Relaxed,
                    ) != 0
                })
                .count()
        };
        for (n, k) in keys.iter().enumerate() {
            e.write(w[0], &mut lane, k, b"v", None, Mode::Set).unwrap();
            // Home on a tie, then the other: the two buckets fill evenly.
            assert_eq!((in_bucket(10), in_bucket(11)), (n / 2 + 1, n.div_ceil(2)));
        }
    }
}
