//! Time-to-live: expiry times and the bounded sweeper (docs/design.md §4.7).

use std::time::Duration;

use crate::protocol::engine::{Engine, Who};
use crate::protocol::item::ItemInfo;
use crate::protocol::layout::{ctl_gen, ctl_state, SegState, EXPIRES_LIMIT, H_SWEEP_HAND};
use crate::protocol::mem::Mem;
use crate::protocol::sync::Ordering::{Acquire, Relaxed};
use crate::Error;

/// What one sweep step did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Segments examined.
    pub segments: u32,
    /// Segments that held no referenced item afterwards and were freed.
    pub freed: u32,
}

/// Whether an item may be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fresh {
    /// Not expired, tags valid.
    Live,
    /// Expired, but within its stale-grace period: served only by `get_stale`.
    Stale,
    /// Past expiry and grace, or a tag was invalidated: unlinked by whoever meets it.
    Dead,
}

impl<M: Mem> Engine<M> {
    pub(crate) fn freshness(&self, expires_at: u32, grace: u32, tags_ok: bool) -> Fresh {
        if !tags_ok {
            return Fresh::Dead;
        }
        if expires_at == 0 {
            return Fresh::Live;
        }
        let now = u64::from(self.now_rel());
        if now < u64::from(expires_at) {
            Fresh::Live
        } else if now < u64::from(expires_at) + u64::from(grace) {
            Fresh::Stale
        } else {
            Fresh::Dead
        }
    }

    #[inline]
    pub(crate) fn fresh(&self, info: &ItemInfo) -> Fresh {
        if info.expires_at == 0 && info.tags_ok {
            return Fresh::Live;
        }
        self.freshness(info.expires_at, info.grace, info.tags_ok)
    }

    #[inline]
    pub(crate) fn is_live(&self, info: &ItemInfo) -> bool {
        self.fresh(info) == Fresh::Live
    }

    /// The `expires_at` to store for a TTL given now (design.md §2.5): 0 for none. Every
    /// step is checked: a TTL whose end lies past the arena's time range (31 bits of seconds
    /// after its epoch), `Duration::MAX` included, is `InvalidTtl`, never a wrapped expiry.
    pub(crate) fn expires_at(&self, ttl: Option<Duration>) -> Result<u32, Error> {
        let Some(ttl) = ttl else { return Ok(0) };
        if ttl.is_zero() {
            return Err(Error::InvalidTtl {
                ttl,
                reason: "a TTL must be positive; pass None for no expiry",
            });
        }
        self.in_range(u64::from(self.now_rel()), ttl)
            .ok_or(Error::InvalidTtl {
                ttl,
                reason: "expiry lies beyond the arena's time range (~68 years from its creation)",
            })
    }

    /// The stale grace to store (whole seconds, rounded up) for an item expiring at
    /// `expires_at` (0: never, when grace means nothing and counts from now): its end must
    /// lie in the arena's time range as the expiry itself must.
    pub(crate) fn grace_secs(&self, expires_at: u32, grace: Duration) -> Result<u32, Error> {
        let from = if expires_at == 0 {
            self.now_rel()
        } else {
            expires_at
        };
        self.in_range(u64::from(from), grace)
            .map(|end| end - from)
            .ok_or(Error::InvalidTtl {
                ttl: grace,
                reason: "the stale grace period ends beyond the arena's time range (~68 years from its creation)",
            })
    }

    /// `from + d` (seconds after the epoch, `d` rounded up to whole seconds) if it lies in
    /// the arena's time range.
    fn in_range(&self, from: u64, d: Duration) -> Option<u32> {
        d.as_secs()
            .checked_add(u64::from(d.subsec_nanos() > 0))
            .and_then(|secs| from.checked_add(secs))
            .filter(|&at| at <= u64::from(EXPIRES_LIMIT))
            .map(|at| at as u32)
    }

    /// The remaining lifetime of an item with this `expires_at` (None: no expiry).
    pub(crate) fn remaining(&self, expires_at: u32) -> Option<Duration> {
        (expires_at != 0)
            .then(|| Duration::from_secs(u64::from(expires_at.saturating_sub(self.now_rel()))))
    }

    /// Visits up to `max_segments` segments from the sweep hand, unlinks expired items and
    /// frees segments left with no referenced item. Bounded; never waits for a client.
    pub(crate) fn sweep_expired(&self, who: Who, max_segments: u32) -> SweepReport {
        let mut r = SweepReport::default();
        let n = u64::from(self.geo.nsegs);
        for _ in 0..max_segments.min(self.geo.nsegs) {
            // Relaxed: the hand only spreads work; each segment is taken by CAS.
            let seg = (self.mem.fetch_add(H_SWEEP_HAND, 1, Relaxed) % n) as u32;
            // Relaxed: a lower bound kept by the segment's owner (alloc.rs note_expiry); a
            // stale read only delays this segment to the next pass.
            let min = self.mem.load(self.geo.seg_min_expiry_off(seg), Relaxed);
            if min == 0 || min > u64::from(self.now_rel()) {
                continue;
            }
            let Some(prev) = self.take_for_walk(who, seg) else {
                self.sweep_open(who, seg);
                continue;
            };
            r.segments += 1;
            let gen = ctl_gen(prev);
            let live =
                self.walk_segment(who, seg, gen, crate::protocol::eviction::Walk::Sweep, None);
            if live == 0 {
                self.free_segment(who, seg, gen);
                r.freed += 1;
            } else {
                self.return_segment(who, seg, prev);
            }
        }
        r
    }

    /// Unlinks expired items of a segment a writer holds OPEN, without taking it: items
    /// below its `wptr` are complete and immutable. If the segment is recycled meanwhile, no
    /// slot matches the old generation any more, so nothing live can be unlinked.
    fn sweep_open(&self, who: Who, seg: u32) {
        // Acquire: pairs with the claim, as a walker's load of the state.
        let c = self.mem.load(self.geo.seg_ctl_off(seg), Acquire);
        if ctl_state(c) == Some(SegState::Open) {
            self.walk_segment(
                who,
                seg,
                ctl_gen(c),
                crate::protocol::eviction::Walk::SweepShared,
                None,
            );
        }
    }
}
