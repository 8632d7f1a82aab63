//! The engine: the arena protocol, generic over where the words live.
//!
//! `Engine<M>` holds no process-private state besides immutable geometry; everything an
//! operation changes is in the arena. The operations are split by concept over `item.rs`
//! (item bytes and the read protocol), `index.rs` (lookup, publish, insert lock),
//! `alloc.rs` (segments and lanes), `eviction.rs`, `expiry.rs` (TTL, sweep) and
//! `procs.rs` (registration and reaping). See docs/design.md.

use std::sync::Arc;

use crate::protocol::layout::{Counter, Geometry, Params, PS_COUNTERS};
use crate::protocol::mem::Mem;
use crate::protocol::sync::Ordering::Relaxed;

/// Who is acting: the caller's process slot and registration id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Who {
    pub slot: u32,
    pub reg: u32,
}

/// The kernel's view of liveness: is anyone holding process slot `slot`'s lock?
pub(crate) trait Liveness: Send + Sync {
    /// `true` only if certainly nobody holds it (a failed check must answer `false`).
    fn slot_unlocked(&self, slot: u32) -> bool;

    /// A way to take slots' locks, for reaping (design.md §6.1).
    fn probe(&self) -> std::io::Result<Box<dyn SlotProbe + '_>>;
}

/// Takes process slots' liveness locks through a description of its own.
pub(crate) trait SlotProbe {
    /// Takes `slot`'s lock if nobody holds it: `true` makes the caller the slot's only
    /// reaper (nobody alive is registered there) until it calls `unlock`.
    fn try_lock(&self, slot: u32) -> std::io::Result<bool>;
    fn unlock(&self, slot: u32);
}

/// Wall-clock source for TTLs; tests substitute a manual one.
#[derive(Clone, Debug, Default)]
pub(crate) enum Clock {
    #[default]
    System,
    Manual(Arc<std::sync::atomic::AtomicU64>),
}

impl Clock {
    /// Unix time in milliseconds (a manual clock counts whole seconds).
    pub(crate) fn unix_now_ms(&self) -> u64 {
        match self {
            Clock::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            Clock::Manual(_) => self.unix_now() * 1000,
        }
    }

    /// Unix time in seconds.
    pub(crate) fn unix_now(&self) -> u64 {
        match self {
            Clock::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            // Relaxed: a test's clock setting needs no ordering with arena words.
            Clock::Manual(t) => t.load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

pub(crate) struct Engine<M: Mem> {
    pub(crate) mem: M,
    pub(crate) geo: Geometry,
    pub(crate) seed: u64,
    pub(crate) max_key: u32,
    pub(crate) max_value: u32,
    pub(crate) epoch: u64,
    /// FREE segments that ordinary writers leave for copy-forward (design.md §4.4).
    pub(crate) reserve: u32,
    pub(crate) live: Box<dyn Liveness>,
    pub(crate) clock: Clock,
}

/// FREE segments kept for copy-forward destinations (design.md §4.4): a thirty-second of the
/// log, at least 2, at most 4 per CPU. Each evictor walking at once holds one, and how many
/// walk at once is bounded by the CPUs, not by the arena's size: uncapped, a 16 GiB arena of
/// 2 MiB segments would keep 512 MiB idle.
pub(crate) fn copy_forward_reserve(nsegs: u32, cpus: u32) -> u32 {
    (nsegs / 32).clamp(2, cpus.saturating_mul(4).max(2))
}

impl<M: Mem> Engine<M> {
    pub(crate) fn new(mem: M, p: &Params, geo: Geometry, live: Box<dyn Liveness>) -> Self {
        Engine {
            mem,
            geo,
            seed: p.hash_seed,
            max_key: p.max_key,
            max_value: p.max_value,
            epoch: p.epoch,
            reserve: copy_forward_reserve(
                geo.nsegs,
                std::thread::available_parallelism().map_or(2, |n| n.get() as u32),
            ),
            live,
            clock: Clock::System,
        }
    }

    #[inline]
    pub(crate) fn hash(&self, key: &[u8]) -> u64 {
        xxhash_rust::xxh3::xxh3_64_with_seed(key, self.seed)
    }

    /// Seconds since the arena's epoch (what `expires_at` is measured in).
    #[inline]
    pub(crate) fn now_rel(&self) -> u32 {
        let d = self.clock.unix_now().saturating_sub(self.epoch);
        u32::try_from(d).unwrap_or(u32::MAX)
    }

    #[inline]
    pub(crate) fn count(&self, who: Who, c: Counter) {
        self.count_n(who, c, 1)
    }

    #[inline]
    pub(crate) fn count_n(&self, who: Who, c: Counter, n: u64) {
        let off = self.geo.proc_off(who.slot) + PS_COUNTERS + c as u64 * 8;
        // Relaxed: statistics; no other word's visibility depends on a counter.
        self.mem.fetch_add(off, n, Relaxed);
    }
}
