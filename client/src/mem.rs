//! Word-granular access to arena bytes.
//!
//! The protocol (index, items, segments) is written against [`Mem`], so that the same code
//! runs on the shared mapping in production and on a vector of loom atomics under
//! `cfg(larder_loom)`. Every access is to an 8-byte aligned word and is bounds-checked: a bug
//! in offset validation panics instead of touching memory outside the map.

use crate::sync::{AtomicU64, Ordering};

/// 8-byte atomic words addressed by byte offset from the arena base.
pub(crate) trait Mem: Send + Sync {
    fn word(&self, off: u64) -> &AtomicU64;

    /// The `n` consecutive words from `off`, with one bounds check for all of them (the hot
    /// loops: a bucket's slots, an item's key and value). Callers only load through it.
    fn words(&self, off: u64, n: usize) -> &[AtomicU64];

    #[inline]
    fn load(&self, off: u64, o: Ordering) -> u64 {
        self.word(off).load(o)
    }
    #[inline]
    fn store(&self, off: u64, v: u64, o: Ordering) {
        self.word(off).store(v, o)
    }
    #[inline]
    fn cas(&self, off: u64, cur: u64, new: u64, ok: Ordering, fail: Ordering) -> Result<u64, u64> {
        self.word(off).compare_exchange(cur, new, ok, fail)
    }
    #[inline]
    fn fetch_add(&self, off: u64, v: u64, o: Ordering) -> u64 {
        self.word(off).fetch_add(v, o)
    }
    /// A hint that the line at `off` will be read soon. Never faults, never required.
    #[inline]
    fn prefetch(&self, _off: u64) {}
}

#[cfg(not(larder_loom))]
pub(crate) use map::MapMem;

#[cfg(not(larder_loom))]
mod map {
    use super::*;
    use crate::mapping::Mapping;

    /// The shared mapping of an arena file.
    pub(crate) struct MapMem {
        map: Mapping,
        len: u64,
    }

    impl MapMem {
        pub(crate) fn new(map: Mapping) -> MapMem {
            let len = map.len() as u64;
            MapMem { map, len }
        }

        pub(crate) fn mapping(&self) -> &Mapping {
            &self.map
        }
    }

    impl Mem for MapMem {
        #[inline]
        fn word(&self, off: u64) -> &AtomicU64 {
            assert!(
                off.is_multiple_of(8) && off + 8 <= self.len,
                "arena word {off} out of bounds"
            );
            // SAFETY: the check above keeps `off..off+8` inside the mapping, which is
            // page-aligned, so the pointer is 8-byte aligned. The mapping lives as long as
            // `self`. Other processes access these bytes only through 8-byte atomics too
            // (design.md §2), so viewing them as an `AtomicU64` creates no data race.
            unsafe { AtomicU64::from_ptr(self.map.as_ptr().add(off as usize).cast::<u64>()) }
        }

        #[inline]
        fn words(&self, off: u64, n: usize) -> &[AtomicU64] {
            let end = (n as u64).checked_mul(8).and_then(|b| b.checked_add(off));
            assert!(
                off.is_multiple_of(8) && end.is_some_and(|e| e <= self.len),
                "arena words {off}+{n} out of bounds"
            );
            // SAFETY: as in `word`, for every one of the `n` words: the check above keeps
            // `off..off + 8n` inside the mapping, and the pointer is 8-byte aligned.
            unsafe {
                std::slice::from_raw_parts(
                    self.map.as_ptr().add(off as usize).cast::<AtomicU64>(),
                    n,
                )
            }
        }

        #[inline]
        fn prefetch(&self, off: u64) {
            #[cfg(target_arch = "x86_64")]
            if off < self.len {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                // SAFETY: `off` is inside the mapping (checked above), so the pointer
                // arithmetic stays in bounds; a prefetch only hints the cache and never
                // faults or reads into the program.
                #[allow(unused_unsafe)]
                unsafe {
                    _mm_prefetch::<_MM_HINT_T0>(self.map.as_ptr().add(off as usize).cast::<i8>())
                };
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = off;
        }
    }
}

/// A heap arena of atomics: the loom model's memory, and miri's.
///
/// Under loom every word has a *shadow* atomic, and each access to a word first does a
/// relaxed `fetch_add(0)` on its shadow. Loom's DPOR remembers only the last access to an
/// atomic, so a thread that loads a word and then CASes it hides every earlier load of that
/// word by another thread from the race check, and loom never runs the CAS before those
/// loads (tokio-rs/loom#166, #392): a model of "reader loads the slot, evictor CASes it"
/// then explores a single interleaving. RMWs are never hidden that way, so the shadow makes
/// every access to a word dependent on every other one; relaxed RMWs on words nobody else
/// reads create no happens-before, so what the real accesses may observe is unchanged.
/// `words` shadows its whole range at the call, so a bucket scan or an item copy counts as
/// one step.
#[cfg(any(test, larder_loom))]
pub(crate) struct VecMem {
    words: Vec<AtomicU64>,
    #[cfg(larder_loom)]
    shadow: Vec<AtomicU64>,
}

#[cfg(any(test, larder_loom))]
impl VecMem {
    pub(crate) fn new(len: u64) -> VecMem {
        VecMem {
            words: (0..len / 8).map(|_| AtomicU64::new(0)).collect(),
            #[cfg(larder_loom)]
            shadow: (0..len / 8).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    #[inline]
    fn step(&self, first: usize, n: usize) {
        #[cfg(larder_loom)]
        for s in &self.shadow[first..first + n] {
            // Relaxed: a scheduling point for loom only (see the type's note).
            s.fetch_add(0, crate::sync::Ordering::Relaxed);
        }
        #[cfg(not(larder_loom))]
        let _ = (first, n);
    }
}

#[cfg(any(test, larder_loom))]
impl Mem for VecMem {
    #[inline]
    fn word(&self, off: u64) -> &AtomicU64 {
        assert!(off.is_multiple_of(8), "unaligned arena word {off}");
        self.step((off / 8) as usize, 1);
        &self.words[(off / 8) as usize]
    }

    fn words(&self, off: u64, n: usize) -> &[AtomicU64] {
        assert!(off.is_multiple_of(8), "unaligned arena word {off}");
        let first = (off / 8) as usize;
        self.step(first, n);
        &self.words[first..first + n]
    }
}
