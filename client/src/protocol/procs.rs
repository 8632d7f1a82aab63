//! Process slots: registration, liveness by OFD lock, and reaping of the dead
//! (docs/design.md §2.2, §3, §6.1).

use crate::protocol::engine::{Engine, Who};
use crate::protocol::layout::{
    ctl_gen, ctl_state, seg_ctl, Counter, SegState, H_NEXT_REG, NCOUNTERS, PS_BASE, PS_COUNTERS,
    PS_PID, PS_REG, PS_STARTED,
};
use crate::protocol::mem::Mem;
use crate::protocol::sync::Ordering::*;

impl<M: Mem> Engine<M> {
    /// The registration id currently in `slot` (0 = free).
    pub(crate) fn slot_reg(&self, slot: u32) -> u32 {
        // Acquire: pairs with the Release of claim_slot/reap, so a reader of a slot's other
        // words sees the registrant's writes.
        self.mem.load(self.geo.proc_off(slot) + PS_REG, Acquire) as u32
    }

    /// Takes a free slot for a new registration. The caller holds the slot's liveness lock
    /// and has reaped any previous holder.
    pub(crate) fn claim_slot(&self, slot: u32, pid: u32, now_unix: u64) -> Option<Who> {
        let base = self.geo.proc_off(slot);
        let reg = loop {
            // Relaxed: uniqueness comes from the RMW itself.
            let r = self.mem.fetch_add(H_NEXT_REG, 1, Relaxed).wrapping_add(1) as u32;
            if r != 0 {
                break r;
            }
        };
        // AcqRel: Acquire pairs with the reaper's Release (its segment changes are done);
        // Release orders nothing before it. Relaxed failure: the caller moves on.
        self.mem
            .cas(base + PS_REG, 0, u64::from(reg), AcqRel, Relaxed)
            .ok()?;
        // Relaxed: informational words and bases are read only for statistics.
        self.mem.store(base + PS_PID, u64::from(pid), Relaxed);
        self.mem.store(base + PS_STARTED, now_unix, Relaxed);
        for i in 0..NCOUNTERS as u64 {
            let v = self.mem.load(base + PS_COUNTERS + i * 8, Relaxed);
            self.mem.store(base + PS_BASE + i * 8, v, Relaxed);
        }
        Some(Who { slot, reg })
    }

    /// Releases our own slot at a clean detach.
    pub(crate) fn release_slot(&self, who: Who) {
        // Release: our segment parking happens-before a reaper or registrant sees the slot free.
        let _ = self.mem.cas(
            self.geo.proc_off(who.slot) + PS_REG,
            u64::from(who.reg),
            0,
            Release,
            Relaxed,
        );
    }

    /// Reclaims what registration `reg` in `slot` left behind: parks its open segments,
    /// returns its half-evicted ones to the log, frees the slot. The caller holds the slot's
    /// liveness lock, so it is the only reaper; every step is a CAS from the dead owner's
    /// exact word, so a reaper killed midway can be followed by another. Returns the number
    /// of segments recovered.
    pub(crate) fn reap(&self, reaper: Who, slot: u32, reg: u32) -> u64 {
        let mut n = 0;
        let owned: Vec<(u32, u64)> = self.segments_owned_by(reg).collect();
        for (seg, c) in owned {
            let to = match ctl_state(c) {
                Some(SegState::Open) => {
                    // Its newest items are the dead writer's last: it joins the log's back.
                    self.enqueue(seg);
                    SegState::Parked
                }
                _ => SegState::Sealed,
            };
            // AcqRel: Acquire sees the dead owner's last wptr; Release hands it to the next
            // claimer. Relaxed failure: already handled.
            if self
                .mem
                .cas(
                    self.geo.seg_ctl_off(seg),
                    c,
                    seg_ctl(ctl_gen(c), to, 0),
                    AcqRel,
                    Relaxed,
                )
                .is_ok()
            {
                n += 1;
            }
        }
        // Release: the segment changes above happen-before the slot is seen free.
        let _ = self.mem.cas(
            self.geo.proc_off(slot) + PS_REG,
            u64::from(reg),
            0,
            Release,
            Relaxed,
        );
        if n > 0 {
            self.count_n(reaper, Counter::Reclaimed, n);
        }
        n
    }

    /// Reaps every registration whose process is dead (design.md §6.1): the daemon does it
    /// every sweep, and a client that finds no segment does it before giving up, so an arena
    /// without a daemon recovers what killed clients held. Returns the slots reaped.
    pub(crate) fn reap_dead(&self, me: Who) -> std::io::Result<u32> {
        let probe = self.live.probe()?;
        let mut reaped = 0;
        for slot in 0..self.geo.nprocs {
            let reg = self.slot_reg(slot);
            if reg == 0 || slot == me.slot {
                continue;
            }
            if probe.try_lock(slot)? {
                // We hold the slot's lock: nobody alive is registered there, and no other
                // reaper can be at work on it.
                if self.slot_reg(slot) == reg {
                    self.reap(me, slot, reg);
                    reaped += 1;
                }
                probe.unlock(slot);
            }
        }
        Ok(reaped)
    }

    /// `true` if the process registered as `reg` in `slot` is certainly gone. A holder
    /// naming a slot that does not exist (a damaged lock word) counts as gone.
    pub(crate) fn is_dead(&self, slot: u32, reg: u32) -> bool {
        slot >= self.geo.nprocs || self.slot_reg(slot) != reg || self.live.slot_unlocked(slot)
    }
}
