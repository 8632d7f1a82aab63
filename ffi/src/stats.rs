//! Statistics of the whole arena, in one struct.

use crate::args::{handle, out};
use crate::handle::larder_cache;
use crate::status::{guard, larder_status, larder_status::*};

/// The arena's statistics (`larder_get_stats`). Counters are totals over every process that
/// ever attached, dead ones included.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
#[allow(non_camel_case_types)]
pub struct larder_stats {
    pub hits: u64,
    pub misses: u64,
    pub sets: u64,
    pub deletes: u64,
    pub touches: u64,
    /// Items dropped by eviction of their segment.
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
    /// Items reachable through the index (expired ones not yet swept included).
    pub items: u64,
    /// Bytes of the item log in use.
    pub bytes_used: u64,
    /// Bytes the item log can hold.
    pub capacity: u64,
    /// Size of the arena file.
    pub arena_size: u64,
    pub segments: u32,
    pub free_segments: u32,
    /// Processes attached now.
    pub processes: u32,
}

/// Fills `*out` with the arena's statistics (read racily: each figure is exact, the set of
/// them is not one instant's).
#[no_mangle]
pub unsafe extern "C" fn larder_get_stats(
    c: *const larder_cache,
    stats: *mut larder_stats,
) -> larder_status {
    guard(|| {
        // SAFETY: a live handle and a writable struct, by the caller's promise.
        let (cache, stats) = unsafe { (handle(c)?, out(stats, "stats")?) };
        let s = cache.stats();
        let t = &s.totals;
        *stats = larder_stats {
            hits: t.hits,
            misses: t.misses,
            sets: t.sets,
            deletes: t.deletes,
            touches: t.touches,
            evictions: t.evictions,
            expired: t.expired,
            index_evictions: t.index_evictions,
            rejected: t.rejected,
            torn_retries: t.torn_retries,
            corrupt: t.corrupt,
            reclaimed: t.reclaimed,
            items: s.items,
            bytes_used: s.bytes_used,
            capacity: s.capacity,
            arena_size: s.arena_size,
            segments: s.segments,
            free_segments: s.free_segments,
            processes: s.processes.iter().filter(|p| p.alive).count() as u32,
        };
        Ok(LARDER_OK)
    })
}
