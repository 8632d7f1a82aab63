//! The leases the listener's `mg` requests won (the meta protocol's `W`), each held for
//! the connection that won it. A lease is a word in the arena's lease table (design.md
//! §2.6): linked clients' `get_or_load` and these wait for each other.
//!
//! memcached's protocol names no winner: an `ms` does not say it is the refresh of an
//! earlier `W`. The connection is the only identity there is, so the winner's `ms` is the
//! next `ms` of the key *on the connection that won it*; it stores through the lease
//! ([`Cache::fill_lease`]), so a delete of the key meanwhile (text `delete`, `md`,
//! `md … I`, a linked `invalidate`), which poisons the lease, makes it store nothing and
//! answer `NS`: its value may have been read before the delete. An `ms` or `set` of the
//! key on any other connection is a plain store; it also ends the other connections'
//! refreshes that are still current (a pooled client may store on another connection than
//! the one it won on), but keeps the poisoned ones, so a winner whose refresh predates a
//! delete still gets its `NS`. A lease outlives its connection, as memcached's win
//! outlives the client's: it ends with a store of the key, with its time, or when the
//! same connection wins the key again.

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

/// A connection's identity for its leases (unique for the listener's life).
pub type ConnId = u64;

struct Held {
    conn: ConnId,
    lease: Lease,
    until: Instant,
}

#[derive(Default)]
struct Table {
    /// Per key, the leases of the connections that won it (a few at most: a new win needs
    /// the previous lease poisoned or run out).
    map: HashMap<Vec<u8>, Vec<Held>>,
    /// Leases held, over every key.
    len: usize,
    /// No lease in `map` runs out before this: a full table of live leases refuses a win
    /// without walking all of them again (`None`: not known, walk).
    first_end: Option<Instant>,
}

impl Table {
    /// Removes the leases of `key` that `drop_it` picks, giving each back; returns how
    /// many went.
    fn remove_where(
        &mut self,
        cache: &Cache,
        key: &[u8],
        mut drop_it: impl FnMut(&Held) -> bool,
    ) -> usize {
        let Some(v) = self.map.get_mut(key) else {
            return 0;
        };
        let before = v.len();
        v.retain(|h| {
            let gone = drop_it(h);
            if gone {
                let _ = cache.release_lease(key, h.lease);
            }
            !gone
        });
        let removed = before - v.len();
        if v.is_empty() {
            self.map.remove(key);
        }
        self.len -= removed;
        removed
    }
}

#[derive(Default)]
pub struct Leases {
    table: Mutex<Table>,
    /// How many are held, read without the lock so that a store finds nothing to look at
    /// cheaply. Relaxed: a store that misses a lease just won by another thread treats it
    /// as not yet won (the refresh is then a plain store, or the lease runs out); nothing
    /// else is published through this count.
    count: AtomicUsize,
}

impl Leases {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic while holding the lock leaves a table that is still whole.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, t: &Table) {
        self.count.store(t.len, Relaxed);
    }

    /// Keeps `lease` for `key`, won by `conn`, for `time`; `false` (and the lease given
    /// back) when the table is full of live leases.
    pub fn hold(
        &self,
        cache: &Cache,
        key: &[u8],
        conn: ConnId,
        lease: Lease,
        time: Duration,
    ) -> bool {
        let mut t = self.table();
        let now = Instant::now();
        if t.len >= MAX_LEASES && t.first_end.is_none_or(|end| end <= now) {
            t.map.retain(|_, v| {
                v.retain(|h| h.until > now);
                !v.is_empty()
            });
            t.len = t.map.values().map(Vec::len).sum();
            t.first_end = t.map.values().flatten().map(|h| h.until).min();
        }
        // The same connection winning the key again: its earlier refresh is over.
        t.remove_where(cache, key, |h| h.conn == conn);
        if t.len >= MAX_LEASES {
            self.publish(&t);
            let _ = cache.release_lease(key, lease);
            return false;
        }
        let until = now + time.saturating_sub(MARGIN);
        t.first_end = t.first_end.map(|end| end.min(until));
        t.map
            .entry(key.to_vec())
            .or_default()
            .push(Held { conn, lease, until });
        t.len += 1;
        self.publish(&t);
        true
    }

    /// The lease `conn` holds for `key`, now the caller's to give back; `None` if it holds
    /// none or it ran out (another client may have taken the key's lease since: storing
    /// through the old one would drop the value as if it had been invalidated).
    pub fn take(&self, key: &[u8], conn: ConnId) -> Option<Lease> {
        if self.count.load(Relaxed) == 0 {
            return None;
        }
        let mut t = self.table();
        let v = t.map.get_mut(key)?;
        let at = v.iter().position(|h| h.conn == conn)?;
        let h = v.swap_remove(at);
        if v.is_empty() {
            t.map.remove(key);
        }
        t.len -= 1;
        self.publish(&t);
        (h.until > Instant::now()).then_some(h.lease)
    }

    /// A plain store of `key` by `conn`: the other connections' refreshes of the key that
    /// are still current are over (given back); poisoned ones stay, for their `NS`.
    pub fn settle(&self, cache: &Cache, key: &[u8], conn: ConnId) {
        if self.count.load(Relaxed) == 0 {
            return;
        }
        let mut t = self.table();
        let now = Instant::now();
        t.remove_where(cache, key, |h| {
            h.conn != conn
                && (h.until <= now || cache.lease_is_current(key, h.lease).unwrap_or(false))
        });
        self.publish(&t);
    }

    /// Gives every lease back (the listener stops).
    pub fn release_all(&self, cache: &Cache) {
        let mut t = self.table();
        for (key, v) in t.map.drain() {
            for h in v {
                let _ = cache.release_lease(&key, h.lease);
            }
        }
        t.len = 0;
        t.first_end = None;
        self.publish(&t);
    }
}
