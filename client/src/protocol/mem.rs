//! Word-granular access to arena bytes.
//!
//! The protocol (index, items, segments) is written against [`Mem`], so that the same code
//! runs on the shared mapping in production and on a vector of loom atomics under
//! `cfg(larder_loom)`. Every access is to an 8-byte aligned word and is bounds-checked: a bug
//! in offset validation panics instead of touching memory outside the map.

use crate::protocol::sync::{AtomicU64, Ordering};

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
    #[inline(always)]
    fn fetch_add(&self, off: u64, v: u64, o: Ordering) -> u64 {
        self.word(off).fetch_add(v, o)
    }
    /// A hint that the line at `off` will be read soon. Never faults, never required.
    #[inline]
    fn prefetch(&self, _off: u64) {}
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
            s.fetch_add(0, crate::protocol::sync::Ordering::Relaxed);
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
