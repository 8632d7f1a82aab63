//! What the header says about an arena: [`ArenaInfo`].

use std::path::PathBuf;

use crate::cache::Cache;
use crate::protocol::layout::{
    H_CLEAN, H_DAEMON_PID, H_DAEMON_STARTED, H_GENERATION, SLOTS_PER_BUCKET,
};
use crate::protocol::mem::Mem;
use crate::protocol::sync::Ordering::Relaxed;

/// What the header says about an arena.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArenaInfo {
    pub path: PathBuf,
    pub arena_size: u64,
    pub layout_version: u32,
    pub segment_size: u64,
    pub segments: u32,
    pub buckets: u64,
    /// Index slots (8 per bucket).
    pub index_slots: u64,
    /// The item size (header + key + value) at which the item log and the index (at 0.7
    /// load) fill together. Items much larger leave index memory unused; much smaller ones
    /// fill the index first, and it then drops items.
    pub planned_item_size: u64,
    pub max_processes: u32,
    pub max_key: u32,
    pub max_value: u32,
    /// Unix seconds at creation.
    pub created: u64,
    /// Number of daemon attaches so far.
    pub generation: u64,
    /// The last daemon detached cleanly.
    pub clean: bool,
    /// 0 when no daemon is attached.
    pub daemon_pid: u32,
    pub daemon_started: u64,
}

impl Cache {
    /// Header words the daemon maintains.
    pub fn info(&self) -> ArenaInfo {
        let m = &self.inner.eng.mem;
        let g = &self.inner.eng.geo;
        // Relaxed: informational words.
        ArenaInfo {
            path: self.inner.path.clone(),
            arena_size: g.arena_size,
            layout_version: self.inner.params.layout_version,
            segment_size: g.seg_size(),
            segments: g.nsegs,
            buckets: g.nbuckets,
            index_slots: g.nbuckets * SLOTS_PER_BUCKET as u64,
            planned_item_size: (u64::from(g.nsegs) << g.seg_shift) * 10
                / (g.nbuckets * SLOTS_PER_BUCKET as u64 * 7).max(1),
            max_processes: g.nprocs,
            max_key: self.inner.params.max_key,
            max_value: self.inner.params.max_value,
            created: self.inner.params.epoch,
            generation: m.load(H_GENERATION, Relaxed),
            clean: m.load(H_CLEAN, Relaxed) != 0,
            daemon_pid: m.load(H_DAEMON_PID, Relaxed) as u32,
            daemon_started: m.load(H_DAEMON_STARTED, Relaxed),
        }
    }
}
