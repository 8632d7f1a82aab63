//! Segments: claiming, appending, sealing and parking (docs/design.md §2.3, §4.5).

use crate::protocol::engine::{Engine, Who};
use crate::protocol::layout::{ctl_gen, ctl_owner, ctl_state, seg_ctl, SegState, H_SEAL_SEQ};
use crate::protocol::mem::Mem;
use crate::protocol::sync::{fence, Ordering::*};

/// A writer's append position: at most one OPEN segment, owned by the lane's process.
#[derive(Debug, Default)]
pub(crate) struct Lane {
    pub seg: Option<OpenSeg>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct OpenSeg {
    pub seg: u32,
    pub gen: u64,
    /// Bytes used from the segment start (mirrors the segment's `wptr`).
    pub wptr: u64,
}

/// The arena has no segment a writer could use: all are held open or being evicted.
#[derive(Debug)]
pub(crate) struct NoSpace;

impl<M: Mem> Engine<M> {
    /// Returns the lane's segment with at least `size` bytes free, sealing the current one
    /// and acquiring another if needed.
    pub(crate) fn lane_room(
        &self,
        who: Who,
        lane: &mut Lane,
        size: u64,
    ) -> Result<OpenSeg, NoSpace> {
        if let Some(s) = lane.seg {
            if s.wptr + size <= self.geo.seg_size() {
                return Ok(s);
            }
            self.seal(who, s);
            lane.seg = None;
        }
        let s = self.acquire(who, size)?;
        lane.seg = Some(s);
        // Every path of acquire hands over a segment with room (a FREE one from 0, an
        // adopted or copy-forward one checked); checked again here, where a wrong answer
        // would write over the next segment's items (design.md §4.5).
        if s.wptr + size > self.geo.seg_size() {
            self.seal(who, s);
            lane.seg = None;
            return Err(NoSpace);
        }
        Ok(s)
    }

    /// Records that `size` bytes at the lane's `wptr` now hold a complete item.
    pub(crate) fn lane_commit(&self, lane: &mut Lane, size: u64, expires_at: u32) {
        let s = lane.seg.as_mut().expect("lane_commit after lane_room");
        self.note_expiry(s.seg, expires_at);
        s.wptr += size;
        // Release: a walker that loads wptr with Acquire sees the complete item bytes below it.
        self.mem
            .store(self.geo.seg_wptr_off(s.seg), s.wptr, Release);
    }

    /// Lowers the segment's `min_expiry` to cover an item about to be committed. Only the
    /// segment's owner calls this, before the item can be published or walked.
    pub(crate) fn note_expiry(&self, seg: u32, expires_at: u32) {
        if expires_at == 0 {
            return;
        }
        let off = self.geo.seg_min_expiry_off(seg);
        // Relaxed: single writer (the owner); the sweeper reads it after loading the state
        // with Acquire, which orders it after the owner's last wptr/state Release.
        let cur = self.mem.load(off, Relaxed);
        if cur == 0 || u64::from(expires_at) < cur {
            self.mem.store(off, u64::from(expires_at), Relaxed);
        }
    }

    /// Puts a segment at the back of the log (before the state change that lets evictors
    /// see it).
    pub(crate) fn enqueue(&self, seg: u32) {
        // Relaxed: a position for the evictor's choice of victim; the state CAS that follows
        // (Release) publishes it; a stale read only changes which segment goes first.
        let seq = self.mem.fetch_add(H_SEAL_SEQ, 1, Relaxed) + 1;
        self.mem.store(self.geo.seg_seq_off(seg), seq, Relaxed);
    }

    /// OPEN(me) → SEALED: the segment joins the log.
    pub(crate) fn seal(&self, who: Who, s: OpenSeg) {
        self.release_lane_segment(who, s, SegState::Sealed);
    }

    /// OPEN(me) → PARKED: give a partly filled segment back for others to adopt.
    pub(crate) fn park(&self, who: Who, s: OpenSeg) {
        self.release_lane_segment(who, s, SegState::Parked);
    }

    /// OPEN(me) → `to` (SEALED or PARKED), at the back of the log.
    fn release_lane_segment(&self, who: Who, s: OpenSeg, to: SegState) {
        self.enqueue(s.seg);
        // AcqRel: Release orders our item writes before the state change evictors act on
        // (they also load wptr with Acquire); Relaxed failure: someone reaped us, nothing to do.
        let _ = self.mem.cas(
            self.geo.seg_ctl_off(s.seg),
            seg_ctl(s.gen, SegState::Open, who.reg),
            seg_ctl(s.gen, to, 0),
            AcqRel,
            Relaxed,
        );
    }

    /// Acquires a segment with `size` free bytes: a PARKED one, else a FREE one beyond the
    /// reserve, else by evicting; as a last resort any FREE one.
    fn acquire(&self, who: Who, size: u64) -> Result<OpenSeg, NoSpace> {
        for _ in 0..4 {
            let mut free = 0u32;
            let mut first_free = None;
            for seg in 0..self.geo.nsegs {
                // Relaxed: a survey; every claim below is a CAS from the value seen.
                let c = self.mem.load(self.geo.seg_ctl_off(seg), Relaxed);
                match ctl_state(c) {
                    Some(SegState::Parked) => {
                        if let Some(s) = self.adopt(who, seg, c, size) {
                            return Ok(s);
                        }
                    }
                    Some(SegState::Free) => {
                        free += 1;
                        first_free.get_or_insert((seg, c));
                    }
                    _ => {}
                }
            }
            if free > self.reserve {
                if let Some((seg, c)) = first_free {
                    if let Some(s) = self.claim_free(who, seg, c) {
                        return Ok(s);
                    }
                    continue;
                }
            }
            if let Some(s) = self.evict_one(who) {
                if s.wptr + size <= self.geo.seg_size() {
                    return Ok(s);
                }
                // A copy-forward destination that filled with the victim's live items has no
                // room for this one: it joins the log as it is, and the victim it emptied
                // (now FREE) is taken below. (Returning it regardless let the caller write
                // past the segment's end, over the next segment's items.)
                self.seal(who, s);
            }
            if let Some(s) = self.claim_any_free(who) {
                return Ok(s);
            }
        }
        Err(NoSpace)
    }

    /// `c` (FREE or PARKED, generation g) → OPEN(g, me) by one CAS; the generation if won.
    fn take_open(&self, who: Who, seg: u32, c: u64) -> Option<u64> {
        let gen = ctl_gen(c);
        // Acquire: pairs with the Release of whatever CAS left the state `c` (free_segment,
        // park, reap), as each caller says. Relaxed failure: someone else took it.
        self.mem
            .cas(
                self.geo.seg_ctl_off(seg),
                c,
                seg_ctl(gen, SegState::Open, who.reg),
                Acquire,
                Relaxed,
            )
            .ok()?;
        Some(gen)
    }

    /// FREE(g) → OPEN(g, me), then the fence that makes recycling visible to readers.
    pub(crate) fn claim_free(&self, who: Who, seg: u32, c: u64) -> Option<OpenSeg> {
        if ctl_state(c) != Some(SegState::Free) {
            return None;
        }
        // The Acquire pairs with the Release of the CAS that freed it: the evictor's unlinks
        // happen-before our writes.
        let gen = self.take_open(who, seg, c)?;
        // Relaxed: wptr and min_expiry are ours alone now; walkers read them only after
        // the state changes again (Release).
        self.mem.store(self.geo.seg_wptr_off(seg), 0, Relaxed);
        self.mem.store(self.geo.seg_min_expiry_off(seg), 0, Relaxed);
        // Release fence: pairs with the reader's fence(Acquire) before its generation
        // re-check (item.rs): any reader that sees a byte we write from here on also sees
        // the generation this segment was freed with.
        fence(Release);
        Some(OpenSeg { seg, gen, wptr: 0 })
    }

    /// Claims the first FREE segment, reserve included.
    pub(crate) fn claim_any_free(&self, who: Who) -> Option<OpenSeg> {
        for seg in 0..self.geo.nsegs {
            // Relaxed: a survey; the claim is a CAS.
            let c = self.mem.load(self.geo.seg_ctl_off(seg), Relaxed);
            if let Some(s) = self.claim_free(who, seg, c) {
                return Some(s);
            }
        }
        None
    }

    /// PARKED(g) → OPEN(g, me), continuing after its `wptr`, if `size` bytes still fit.
    fn adopt(&self, who: Who, seg: u32, c: u64, size: u64) -> Option<OpenSeg> {
        // The Acquire pairs with the Release of park/reap, so the wptr we load is the last.
        let gen = self.take_open(who, seg, c)?;
        // Relaxed: ordered by the Acquire CAS above.
        let wptr = self
            .mem
            .load(self.geo.seg_wptr_off(seg), Relaxed)
            .min(self.geo.seg_size());
        let s = OpenSeg { seg, gen, wptr };
        if wptr + size > self.geo.seg_size() {
            self.seal(who, s);
            return None;
        }
        // Release fence: bytes past wptr may be a dead writer's unpublished garbage that no
        // reader can reach; the fence keeps the same discipline as claim_free regardless.
        fence(Release);
        Some(s)
    }

    /// Segments owned by `reg` (for reaping and tests).
    pub(crate) fn segments_owned_by(&self, reg: u32) -> impl Iterator<Item = (u32, u64)> + '_ {
        (0..self.geo.nsegs).filter_map(move |seg| {
            // Acquire: the reaper's next CAS is from this value.
            let c = self.mem.load(self.geo.seg_ctl_off(seg), Acquire);
            (ctl_owner(c) == reg
                && matches!(ctl_state(c), Some(SegState::Open | SegState::Evicting)))
            .then_some((seg, c))
        })
    }
}
