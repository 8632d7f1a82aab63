//! The leases the listener's `mg` requests won (the meta protocol's `W`), held for the
//! listener as a whole: memcached clients use pools and fresh connections, so the `ms`
//! that stores the refreshed value may come on another connection than the `mg` that won,
//! or after the winner's connection closed. The `ms` of the key gives it back; otherwise it
//! runs out after its time, as any lease does (design.md §2.6). An `md` or `delete` of the
//! key meanwhile poisons the lease in the arena and leaves it here, so the winner's `ms`
//! finds it, is not stored (its value may predate the delete) and answers `NS`. A lease is a
//! word in the arena's lease table: linked clients' `get_or_load` and these wait for each
//! other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use larder::{Cache, Lease};

/// The most leases held at once; past it (after dropping those run out), a won lease is
/// given back at once and the request answered as if another client held it.
pub const MAX_LEASES: usize = 4096;

/// How much sooner than the arena the table lets a lease run out. The arena counts a lease
/// in 10 ms ticks from the tick it was taken in, so it may end up to a tick before `time`
/// after the win; the table's clock starts a little later still. A store that comes in
/// the margin is stored as a plain `ms` (the lease left to run out moments later), not
/// through a lease another client may already have taken over.
const MARGIN: Duration = Duration::from_millis(50);

struct Held {
    lease: Lease,
    until: Instant,
}

#[derive(Default)]
struct Table {
    map: HashMap<Vec<u8>, Held>,
    /// No lease in `map` runs out before this: a full table of live leases refuses a win
    /// without walking all of them again (`None`: not known, walk).
    first_end: Option<Instant>,
}

#[derive(Default)]
pub struct Leases {
    map: Mutex<Table>,
    /// How many are held, read without the lock so that a store finds nothing to give back
    /// cheaply. Relaxed: a store that misses a lease just won by another thread leaves it
    /// to run out (bounded by its time); nothing else is published through this count.
    count: AtomicUsize,
}

impl Leases {
    fn map(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic while holding the lock leaves a map that is still whole.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `lease` for `key` for `time`; `false` (and the lease given back) when the table
    /// is full of live leases.
    pub fn hold(&self, cache: &Cache, key: &[u8], lease: Lease, time: Duration) -> bool {
        let mut t = self.map();
        let now = Instant::now();
        if t.map.len() >= MAX_LEASES && t.first_end.is_none_or(|end| end <= now) {
            t.map.retain(|_, h| h.until > now);
            t.first_end = t.map.values().map(|h| h.until).min();
        }
        if t.map.len() >= MAX_LEASES {
            let _ = cache.release_lease(key, lease);
            return false;
        }
        let until = now + time.saturating_sub(MARGIN);
        t.first_end = t.first_end.map(|end| end.min(until));
        if let Some(old) = t.map.insert(key.to_vec(), Held { lease, until }) {
            let _ = cache.release_lease(key, old.lease);
        }
        self.count.store(t.map.len(), Relaxed);
        true
    }

    /// The lease held for `key`, now the caller's to give back; `None` if none is held or
    /// it ran out (another client may have taken the key's lease since: storing through
    /// the old one would drop the value as if it had been invalidated).
    pub fn take(&self, key: &[u8]) -> Option<Lease> {
        if self.count.load(Relaxed) == 0 {
            return None;
        }
        let mut t = self.map();
        let h = t.map.remove(key);
        self.count.store(t.map.len(), Relaxed);
        h.filter(|h| h.until > Instant::now()).map(|h| h.lease)
    }

    /// Gives every lease back (the listener stops).
    pub fn release_all(&self, cache: &Cache) {
        let mut t = self.map();
        t.first_end = None;
        for (key, h) in t.map.drain() {
            let _ = cache.release_lease(&key, h.lease);
        }
        self.count.store(0, Relaxed);
    }
}
