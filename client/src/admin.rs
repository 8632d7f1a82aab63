//! Operations for the daemon and operators rather than for applications: snapshot requests
//! and acknowledgements, the retired flag, sweeping, evicting ahead, reaping, huge pages, the
//! daemon's attach/detach words, and a manual clock for tests (docs/design.md §6).

use std::sync::Arc;

use crate::cache::{unix_now, Cache};
use crate::mapping::HugePages;
use crate::protocol::engine::Clock;
use crate::protocol::expiry::SweepReport;
use crate::protocol::layout::{
    H_CLEAN, H_DAEMON_PID, H_DAEMON_STARTED, H_GENERATION, H_RETIRED, H_SNAP_ACK, H_SNAP_BYTES,
    H_SNAP_REQ, H_SNAP_TIME,
};
use crate::protocol::mem::Mem;
use crate::protocol::sync::Ordering::Relaxed;
use crate::Error;

impl Cache {
    /// Asks the daemon for a snapshot; returns the request number to wait for with
    /// [`Cache::snapshot_done`].
    pub fn request_snapshot(&self) -> u64 {
        // Relaxed: a counter the daemon polls; no data is published with it.
        self.inner.eng.mem.fetch_add(H_SNAP_REQ, 1, Relaxed) + 1
    }

    /// `(requests, completed, unix time of last snapshot, its size in bytes)`.
    pub fn snapshot_status(&self) -> (u64, u64, u64, u64) {
        let m = &self.inner.eng.mem;
        // Relaxed: informational words.
        (
            m.load(H_SNAP_REQ, Relaxed),
            m.load(H_SNAP_ACK, Relaxed),
            m.load(H_SNAP_TIME, Relaxed),
            m.load(H_SNAP_BYTES, Relaxed),
        )
    }

    /// `true` once the daemon completed snapshot request `n`.
    pub fn snapshot_done(&self, n: u64) -> bool {
        self.snapshot_status().1 >= n
    }

    /// Daemon-side: record that every request up to `req` is served by a snapshot of
    /// `bytes` bytes written at unix time `time`.
    #[doc(hidden)]
    pub fn ack_snapshot(&self, req: u64, time: u64, bytes: u64) {
        let m = &self.inner.eng.mem;
        // Relaxed: informational words; `ack` last so a waiter sees time and size too (the
        // waiter re-reads them after seeing ack; a stale pair is only cosmetic).
        m.store(H_SNAP_TIME, time, Relaxed);
        m.store(H_SNAP_BYTES, bytes, Relaxed);
        m.store(H_SNAP_ACK, req, Relaxed);
    }

    /// Daemon-side: mark this arena file as replaced, so attached clients re-open the path.
    #[doc(hidden)]
    pub fn mark_retired(&self) {
        // Relaxed: an advisory flag.
        self.inner.eng.mem.store(H_RETIRED, 1, Relaxed);
    }

    /// One bounded step of the expiry sweeper (the daemon calls this periodically).
    pub fn sweep_expired(&self, max_segments: u32) -> Result<SweepReport, Error> {
        let who = self.inner.who()?;
        Ok(self.inner.eng.sweep_expired(who, max_segments))
    }

    /// Evicts ahead of demand (the daemon calls this often): while writers have less than
    /// `target_bytes` of room they can take without evicting (FREE segments beyond the
    /// copy-forward reserve, the unwritten part of PARKED ones), evicts one segment the way a
    /// writer would, at most `max_evictions` times. Returns how many it did. Writers then
    /// rarely evict inline; they still do when this falls behind.
    #[doc(hidden)]
    pub fn evict_ahead(&self, target_bytes: u64, max_evictions: u32) -> Result<u32, Error> {
        let who = self.inner.who()?;
        Ok(self.inner.eng.evict_ahead(who, target_bytes, max_evictions))
    }

    /// Reaps every process slot whose process is dead: parks its segments, frees the slot.
    /// Returns the number of slots reaped. Safe to run from several processes at once.
    pub fn reclaim_dead_clients(&self) -> Result<u32, Error> {
        let who = self.inner.who()?;
        self.inner
            .eng
            .reap_dead(who)
            .map_err(|e| Error::io("locking a process slot of", &self.inner.path, e))
    }

    /// Asks the kernel to back the arena with transparent huge pages (see
    /// [`crate::Config::huge_pages`]); safe while other processes use it. `larderd` does this when
    /// it attaches; it takes about 1–2 ms per 2 MiB of arena still on small pages, and a few
    /// microseconds per 2 MiB already huge. Every process maps the arena aligned, so each
    /// one gets huge mappings of whatever is huge in the file.
    pub fn collapse_huge_pages(&self) -> HugePages {
        let eng = &self.inner.eng;
        // Relaxed: a read whose only purpose is to make the page present.
        eng.mem.mapping().collapse(|off| {
            eng.mem.load(off as u64, Relaxed);
        })
    }

    /// Bytes of the arena backed by huge pages, as this process maps them (from
    /// `/proc/self/smaps`; `None` where that cannot be read). Reads one word in every
    /// huge-page-sized range first, so that the whole arena is mapped and counted.
    pub fn huge_page_bytes(&self) -> Option<u64> {
        let eng = &self.inner.eng;
        let map = eng.mem.mapping();
        let step = crate::mapping::pmd_size() as u64;
        for off in (0..map.len() as u64).step_by(step as usize) {
            // Relaxed: a read whose only purpose is to map the page.
            eng.mem.load(off, Relaxed);
        }
        map.pmd_mapped()
    }

    /// Daemon-side: record an attaching daemon (generation + 1, dirty, pid).
    #[doc(hidden)]
    pub fn mark_daemon_attached(&self, pid: u32) {
        let m = &self.inner.eng.mem;
        // Relaxed: informational words, read by cachectl.
        m.fetch_add(H_GENERATION, 1, Relaxed);
        m.store(H_CLEAN, 0, Relaxed);
        m.store(H_DAEMON_PID, u64::from(pid), Relaxed);
        m.store(H_DAEMON_STARTED, unix_now(), Relaxed);
    }

    /// Daemon-side: record a clean detach.
    #[doc(hidden)]
    pub fn mark_daemon_detached(&self) {
        let m = &self.inner.eng.mem;
        // Relaxed: informational words.
        m.store(H_DAEMON_PID, 0, Relaxed);
        m.store(H_CLEAN, 1, Relaxed);
    }

    /// Replaces the wall clock used for TTLs by a manual one (tests of expiry).
    #[doc(hidden)]
    pub fn with_manual_clock(mut self, unix_secs: Arc<std::sync::atomic::AtomicU64>) -> Cache {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.eng.clock = Clock::Manual(unix_secs),
            None => panic!("with_manual_clock must be called before the handle is cloned"),
        }
        self
    }
}
