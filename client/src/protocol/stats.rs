//! Statistics: per-process counters summed on read (docs/design.md §2.2).

use crate::protocol::engine::Engine;
use crate::protocol::layout::{
    ctl_state, Counter, SegState, NCOUNTERS, PS_BASE, PS_COUNTERS, PS_PID, PS_REG, PS_STARTED,
};
use crate::protocol::mem::Mem;
use crate::protocol::sync::Ordering::Relaxed;

/// Operation counters (cache-wide, or one process's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    pub hits: u64,
    pub misses: u64,
    pub sets: u64,
    pub deletes: u64,
    pub touches: u64,
    /// Items dropped by CLOCK eviction of their segment.
    pub evictions: u64,
    /// Items found expired (on read or by the sweeper) and unlinked.
    pub expired: u64,
    /// Items displaced because their index neighbourhood was full.
    pub index_evictions: u64,
    /// Writes refused for lack of space.
    pub rejected: u64,
    /// Reads restarted because a segment was recycled under them.
    pub torn_retries: u64,
    /// Damaged slots or items met and cleared.
    pub corrupt: u64,
    /// Segments recovered from dead processes.
    pub reclaimed: u64,
}

impl Counters {
    fn from_array(a: [u64; NCOUNTERS]) -> Counters {
        let g = |c: Counter| a[c as usize];
        Counters {
            hits: g(Counter::Hits),
            misses: g(Counter::Misses),
            sets: g(Counter::Sets),
            deletes: g(Counter::Deletes),
            touches: g(Counter::Touches),
            evictions: g(Counter::Evictions),
            expired: g(Counter::Expired),
            index_evictions: g(Counter::IndexEvictions),
            rejected: g(Counter::Rejected),
            torn_retries: g(Counter::TornRetries),
            corrupt: g(Counter::Corrupt),
            reclaimed: g(Counter::Reclaimed),
        }
    }

    /// Hits over lookups, or 0 with no lookups.
    pub fn hit_ratio(&self) -> f64 {
        // In f64: two damaged counter words could overflow a u64 sum.
        let n = self.hits as f64 + self.misses as f64;
        if n == 0.0 {
            0.0
        } else {
            self.hits as f64 / n
        }
    }
}

/// One attached process.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessStats {
    pub slot: u32,
    pub pid: u32,
    /// Unix seconds when it attached.
    pub attached_at: u64,
    /// Its counts since it attached.
    pub counters: Counters,
    /// `false`: the process is gone (nobody holds its slot's lock) and its slot waits for
    /// a reaper — the daemon's next sweep, or a client that runs out of segments.
    pub alive: bool,
}

/// A snapshot of the cache's statistics.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// Totals over every process that ever attached (dead ones included).
    pub totals: Counters,
    /// Items reachable through the index (expired ones not yet swept included).
    pub items: u64,
    /// Bytes of the item log in use (live items, dead space not yet evicted, copies).
    pub bytes_used: u64,
    /// Bytes the item log can hold.
    pub capacity: u64,
    /// Size of the arena file.
    pub arena_size: u64,
    pub segments: u32,
    pub free_segments: u32,
    pub processes: Vec<ProcessStats>,
}

impl<M: Mem> Engine<M> {
    pub(crate) fn stats(&self) -> Stats {
        let mut totals = [0u64; NCOUNTERS];
        let mut processes = Vec::new();
        for slot in 0..self.geo.nprocs {
            let base = self.geo.proc_off(slot);
            // Relaxed throughout: statistics, read racily by design.
            let cur: [u64; NCOUNTERS] =
                std::array::from_fn(|i| self.mem.load(base + PS_COUNTERS + i as u64 * 8, Relaxed));
            // Wrapping: a counter word is a u64 that only grows, but a damaged arena can hold
            // any bits in it, and statistics must not panic on them.
            for (t, c) in totals.iter_mut().zip(cur) {
                *t = t.wrapping_add(c);
            }
            if self.mem.load(base + PS_REG, Relaxed) != 0 {
                let own = std::array::from_fn(|i| {
                    cur[i].wrapping_sub(self.mem.load(base + PS_BASE + i as u64 * 8, Relaxed))
                });
                processes.push(ProcessStats {
                    slot,
                    pid: self.mem.load(base + PS_PID, Relaxed) as u32,
                    attached_at: self.mem.load(base + PS_STARTED, Relaxed),
                    counters: Counters::from_array(own),
                    alive: !self.live.slot_unlocked(slot),
                });
            }
        }
        let mut items = 0;
        self.for_each_slot(|_, _| items += 1);
        let (mut bytes_used, mut free_segments) = (0, 0);
        for seg in 0..self.geo.nsegs {
            // Relaxed: statistics.
            let c = self.mem.load(self.geo.seg_ctl_off(seg), Relaxed);
            if ctl_state(c) == Some(SegState::Free) {
                free_segments += 1;
            } else {
                bytes_used += self
                    .mem
                    .load(self.geo.seg_wptr_off(seg), Relaxed)
                    .min(self.geo.seg_size());
            }
        }
        Stats {
            totals: Counters::from_array(totals),
            items,
            bytes_used,
            capacity: u64::from(self.geo.nsegs) << self.geo.seg_shift,
            arena_size: self.geo.arena_size,
            segments: self.geo.nsegs,
            free_segments,
            processes,
        }
    }

    /// Mean bytes the log holds per item (header, extension words, key, value, padding) over
    /// up to `max` items reachable through the index, taken in index order (by hash: a
    /// sample of the keys). Dead space — overwritten or deleted items not yet evicted — is
    /// not counted, unlike log-in-use ÷ items. `None` without items.
    pub(crate) fn sampled_item_size(&self, max: u64) -> Option<u64> {
        let (mut n, mut bytes) = (0u64, 0u64);
        self.for_each_slot(|slot, w| {
            if n < max {
                if let Some(size) = self.read_validated(slot, w, |_, h, _| h.size) {
                    n += 1;
                    bytes += size;
                }
            }
        });
        (n > 0).then(|| bytes / n)
    }
}
