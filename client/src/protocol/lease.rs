//! Per-key leases in the arena's lease table, for stampede protection
//! (docs/design.md §2.6). A lease is one word, taken and released by CAS, with an expiry:
//! a holder that dies or hangs stops blocking others when its lease runs out.

use std::time::Duration;

use crate::protocol::engine::Engine;
use crate::protocol::layout::{
    lease_freed, lease_taken, EXPIRES_LIMIT, LEASE_EXPIRY_MASK, LEASE_SIZE, LEASE_TICK_MS,
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
        let dur = dur_ms.div_ceil(LEASE_TICK_MS).max(1);
        loop {
            let now = self.now_ms() / LEASE_TICK_MS;
            // Acquire: pairs with the Release of lease_release, so a waiter that sees the
            // lease gone also sees the value its holder stored before releasing.
            let cur = self.mem.load(off, Acquire);
            let until = cur & LEASE_EXPIRY_MASK;
            if until > now {
                return LeaseTry::Held {
                    until_ms: until * LEASE_TICK_MS,
                };
            }
            // A new take count: `mine` differs from the word of any holder still running
            // after a poisoning or a takeover, even one that took it in this very tick with
            // the same duration (its re-check must see the lease gone).
            let mine = lease_taken(cur, now + dur);
            // AcqRel: taking over a free or expired entry; Relaxed failure: re-read.
            if self.mem.cas(off, cur, mine, AcqRel, Relaxed).is_ok() {
                return LeaseTry::Acquired(mine);
            }
        }
    }

    /// The lease word of the key's entry (expiry 0 = free).
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
            if cur & LEASE_EXPIRY_MASK != 0 {
                let _ = self.mem.cas(off, cur, lease_freed(cur), AcqRel, Relaxed);
            }
        }
    }

    /// Gives a lease back (if it is still ours: an expired one may have been taken over).
    pub(crate) fn lease_release(&self, hash: u64, mine: u64) {
        if let Some(off) = self.lease_off(hash) {
            // Release: the value set before releasing happens-before a waiter's Acquire.
            let _ = self.mem.cas(off, mine, lease_freed(mine), Release, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    use super::LeaseTry;
    use crate::protocol::engine::{Clock, Engine};
    use crate::protocol::layout::{Geometry, LEASE_EXPIRY_BITS, LEASE_EXPIRY_MASK};
    use crate::protocol::mem::{Mem, VecMem};
    use crate::protocol::sync::Ordering::Relaxed;
    use crate::protocol::testkit::{tiny, TestLiveness};

    /// A small engine with a lease table of four entries and a clock held still (every
    /// step below happens in the same 10 ms tick).
    fn leased() -> Engine<VecMem> {
        let (mut p, g) = tiny(4, 16, 8, 2, 200);
        let g = Geometry::from_counts(g.arena_size, 16, 4, 2, 8, 0, 4).expect("counts");
        p.nleases = 4;
        p.leases_off = g.leases_off;
        p.segtab_off = g.segtab_off;
        p.index_off = g.index_off;
        p.segs_off = g.segs_off;
        p.arena_size = g.arena_size;
        let mut e = Engine::new(
            VecMem::new(g.arena_size),
            &p,
            g,
            Box::new(TestLiveness::default()),
        );
        e.clock = Clock::Manual(Arc::new(AtomicU64::new(1_000)));
        e
    }

    fn take(e: &Engine<VecMem>, hash: u64, ms: u64) -> u64 {
        match e.lease_try(hash, ms) {
            LeaseTry::Acquired(w) => w,
            LeaseTry::Held { .. } => panic!("the lease should be free"),
        }
    }

    #[test]
    fn a_lease_poisoned_and_taken_again_in_the_same_tick_is_not_the_first_holders() {
        let e = leased();
        let a = take(&e, 42, 5_000);
        e.lease_poison(42);
        // Another caller of the same key, the same tick, the same duration: with a word of
        // key check and expiry only it was A's word again, and A's re-check after storing
        // what it loaded before the invalidation passed.
        let b = take(&e, 42, 5_000);
        assert_ne!(a, b);
        assert_ne!(e.lease_current(42), a, "A must see its lease gone");
        assert_eq!(e.lease_current(42), b);
    }

    #[test]
    fn the_take_count_survives_release_poisoning_and_takeover() {
        let e = leased();
        let w1 = take(&e, 7, 1_000);
        e.lease_release(7, w1);
        let w2 = take(&e, 7, 1_000);
        e.lease_poison(7);
        let w3 = take(&e, 7, 1_000);
        // w3 runs out; a takeover after it gets the next count.
        if let Clock::Manual(t) = &e.clock {
            t.fetch_add(2, Relaxed);
        }
        let w4 = take(&e, 7, 1_000);
        let counts: Vec<u64> = [w1, w2, w3, w4]
            .iter()
            .map(|w| w >> LEASE_EXPIRY_BITS)
            .collect();
        assert_eq!(counts, [1, 2, 3, 4]);
        // Released and poisoned entries are free: expiry 0, count kept.
        e.lease_release(7, w4);
        assert_eq!(e.lease_current(7) & LEASE_EXPIRY_MASK, 0);
        assert_eq!(e.lease_current(7) >> LEASE_EXPIRY_BITS, 4);
    }

    #[test]
    fn a_free_word_with_a_count_is_free_and_a_held_one_is_held() {
        let e = leased();
        let w = take(&e, 9, 1_000);
        assert!(matches!(e.lease_try(9, 1_000), LeaseTry::Held { .. }));
        e.lease_poison(9);
        // A poisoned word is free to take; poisoning a free word changes nothing.
        let before = e.lease_current(9);
        e.lease_poison(9);
        assert_eq!(e.lease_current(9), before);
        assert_ne!(take(&e, 9, 1_000), w);
        // A release with a word no longer current (a poisoned holder's) changes nothing.
        let now = e.lease_current(9);
        e.lease_release(9, w);
        assert_eq!(e.lease_current(9), now);
        // The count wraps at 2^26 into a word still valid.
        let off = e.lease_off(9).unwrap();
        e.mem.store(off, !LEASE_EXPIRY_MASK, Relaxed);
        let wrapped = take(&e, 9, 1_000);
        assert_eq!(wrapped >> LEASE_EXPIRY_BITS, 0);
        assert!(matches!(e.lease_try(9, 1_000), LeaseTry::Held { .. }));
    }
}
