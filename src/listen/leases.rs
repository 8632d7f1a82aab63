//! The leases the listener's `mg` requests won (the meta protocol's `W`), held for the
//! listener as a whole: memcached clients use pools and fresh connections, so the `ms`
//! that stores the refreshed value may come on another connection than the `mg` that won,
//! or after the winner's connection closed. The `ms` (or `md`) of the key gives it back;
//! otherwise it runs out after its time, as any lease does (design.md §2.6). A lease is a
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

struct Held {
    lease: Lease,
    until: Instant,
}

#[derive(Default)]
pub struct Leases {
    map: Mutex<HashMap<Vec<u8>, Held>>,
    /// How many are held, read without the lock so that a store finds nothing to give back
    /// cheaply. Relaxed: a store that misses a lease just won by another thread leaves it
    /// to run out (bounded by its time); nothing else is published through this count.
    count: AtomicUsize,
}

impl Leases {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Held>> {
        // A panic while holding the lock leaves a map that is still whole.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `lease` for `key` for `time`; `false` (and the lease given back) when the table
    /// is full of live leases.
    pub fn hold(&self, cache: &Cache, key: &[u8], lease: Lease, time: Duration) -> bool {
        let mut m = self.map();
        if m.len() >= MAX_LEASES {
            let now = Instant::now();
            m.retain(|_, h| h.until > now);
        }
        if m.len() >= MAX_LEASES {
            let _ = cache.release_lease(key, lease);
            return false;
        }
        let held = Held {
            lease,
            until: Instant::now() + time,
        };
        if let Some(old) = m.insert(key.to_vec(), held) {
            let _ = cache.release_lease(key, old.lease);
        }
        self.count.store(m.len(), Relaxed);
        true
    }

    /// The lease held for `key`, now the caller's to give back; `None` if none is held or
    /// it ran out (another client may have taken the key's lease since: storing through
    /// the old one would drop the value as if it had been invalidated).
    pub fn take(&self, key: &[u8]) -> Option<Lease> {
        if self.count.load(Relaxed) == 0 {
            return None;
        }
        let mut m = self.map();
        let h = m.remove(key);
        self.count.store(m.len(), Relaxed);
        h.filter(|h| h.until > Instant::now()).map(|h| h.lease)
    }

    /// Gives back the lease held for `key`, if any.
    pub fn release(&self, cache: &Cache, key: &[u8]) {
        if let Some(l) = self.take(key) {
            let _ = cache.release_lease(key, l);
        }
    }

    /// Gives every lease back (the listener stops).
    pub fn release_all(&self, cache: &Cache) {
        let mut m = self.map();
        for (key, h) in m.drain() {
            let _ = cache.release_lease(&key, h.lease);
        }
        self.count.store(0, Relaxed);
    }
}
