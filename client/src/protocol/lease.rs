//! Per-key leases in the arena's lease table, for stampede protection
//! (docs/design.md §2.6). A lease is one word, taken and released by CAS, with an expiry:
//! a holder that dies or hangs stops blocking others when its lease runs out.

use std::time::Duration;

use crate::protocol::engine::Engine;
use crate::protocol::layout::{
    EXPIRES_LIMIT, LEASE_EXPIRY_BITS, LEASE_EXPIRY_MASK, LEASE_SIZE, LEASE_TICK_MS,
};
use crate::protocol::mem::Mem;
use crate::protocol::sync::Ordering::*;
use crate::Error;

/// Outcome of trying to take a key's lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeaseTry {
    /// We hold it; release with this word.
    Acquired(u64),
    /// Someone holds it (for this key, or one sharing its table entry) until this time,
    /// in milliseconds after the arena epoch.
    Held { until_ms: u64 },
}

impl<M: Mem> Engine<M> {
    /// Milliseconds since the arena's epoch.
    pub(crate) fn now_ms(&self) -> u64 {
        self.clock
            .unix_now_ms()
            .saturating_sub(self.epoch.saturating_mul(1000))
    }

    /// A lease time in milliseconds (a zero lease lasts 1 ms), if it ends inside the arena's
    /// time range; beyond it is `InvalidTtl`, as a TTL would be.
    pub(crate) fn lease_ms(&self, d: Duration) -> Result<u64, Error> {
        u64::try_from(d.as_millis())
            .ok()
            .map(|ms| ms.max(1))
            .filter(|&ms| {
                self.now_ms()
                    .checked_add(ms)
                    .is_some_and(|end| end <= u64::from(EXPIRES_LIMIT) * 1000)
            })
            .ok_or(Error::InvalidTtl {
                ttl: d,
                reason:
                    "the lease ends beyond the arena's time range (~68 years from its creation)",
            })
    }

    fn lease_off(&self, hash: u64) -> Option<u64> {
        if self.geo.nleases == 0 {
            return None;
        }
        // Low half of the hash picks the entry (the index uses the high bits).
        let idx = ((hash & 0xffff_ffff) * u64::from(self.geo.nleases)) >> 32;
        Some(self.geo.leases_off + idx * LEASE_SIZE)
    }

    /// Tries to take the lease of the key with `hash` for `dur_ms` milliseconds.
    pub(crate) fn lease_try(&self, hash: u64, dur_ms: u64) -> LeaseTry {
        let Some(off) = self.lease_off(hash) else {
            return LeaseTry::Acquired(0);
        };
        let check = (hash >> 40) << LEASE_EXPIRY_BITS;
        let dur = dur_ms.div_ceil(LEASE_TICK_MS).max(1);
        loop {
            let now = self.now_ms() / LEASE_TICK_MS;
            // Acquire: pairs with the Release of lease_release, so a waiter that sees the
            // lease gone also sees the value its holder stored before releasing.
            let cur = self.mem.load(off, Acquire);
            let until = cur & LEASE_EXPIRY_MASK;
            if cur != 0 && until > now {
                return LeaseTry::Held {
                    until_ms: until * LEASE_TICK_MS,
                };
            }
            let mine = check | ((now + dur) & LEASE_EXPIRY_MASK);
            // AcqRel: taking over a free or expired entry; Relaxed failure: re-read.
            if self.mem.cas(off, cur, mine, AcqRel, Relaxed).is_ok() {
                return LeaseTry::Acquired(mine);
            }
        }
    }

    /// The lease word of the key's entry (0 = free).
    pub(crate) fn lease_current(&self, hash: u64) -> u64 {
        // Acquire: as in lease_try.
        self.lease_off(hash)
            .map_or(0, |off| self.mem.load(off, Acquire))
    }

    /// Takes the key's lease away from whoever holds it (a writer invalidating the key):
    /// the holder sees it gone when it re-checks after storing, and drops what it stored.
    pub(crate) fn lease_poison(&self, hash: u64) {
        if let Some(off) = self.lease_off(hash) {
            // AcqRel: ordered with the holder's re-check (lease_current, Acquire).
            let cur = self.mem.load(off, Acquire);
            if cur != 0 {
                let _ = self.mem.cas(off, cur, 0, AcqRel, Relaxed);
            }
        }
    }

    /// Gives a lease back (if it is still ours: an expired one may have been taken over).
    pub(crate) fn lease_release(&self, hash: u64, mine: u64) {
        if let Some(off) = self.lease_off(hash) {
            // Release: the value set before releasing happens-before a waiter's Acquire.
            let _ = self.mem.cas(off, mine, 0, Release, Relaxed);
        }
    }
}
