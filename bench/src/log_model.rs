//! Eviction policies *in log form*, simulated: what a policy can reach when, as in larder,
//! items live in fixed-size segments of an append-only log, a whole segment is evicted at
//! once and an item kept is copied forward to the head. `larder-bench eviction` runs these
//! beside the real arena so a policy for the engine is chosen by measurement before it is
//! built (issue #20; docs/performance.md §3):
//!
//! - `Clock` is larder's eviction today (design.md §4.4): one log, the oldest segment is the
//!   victim, items read since they were written are copied into a destination segment from
//!   the reserve, the rest dropped; the destination then takes new writes. Its hit ratio
//!   next to the real arena's checks that the model is faithful.
//! - `S3Fifo` is S3-FIFO (Yang et al., SOSP 2023) in log form: new items are written to
//!   *small* segments; while the small segments exceed `small_frac` of the log, the oldest of
//!   them is the victim, its items read since they were written move to the *main* log and
//!   the rest leave, their ids remembered in a ghost FIFO as large as main; a miss on a
//!   ghost id is written straight to main. Otherwise the oldest main segment is the victim:
//!   items with a read count above zero are copied forward with the count lowered by one.
//!   Reads raise the count up to `freq_max`.
//!
//! Item sizes are all one (the bench's values are), so a segment holds `per_seg` items.

use std::collections::VecDeque;

const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
pub enum LogPolicy {
    Clock,
    /// `ghost_table`: the ghost as the arena would hold it, a direct-mapped table of 16-bit
    /// fingerprints (as many as main holds items; a newer id overwrites an older one of the
    /// same entry, a hit clears it) instead of an exact FIFO.
    S3Fifo {
        small_frac: f64,
        freq_max: u8,
        ghost_table: bool,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Small,
    Main,
}

pub struct LogModel {
    policy: LogPolicy,
    per_seg: usize,
    reserve: usize,
    /// The ids written into each segment, in order (copies left behind stay: dead space).
    segs: Vec<Vec<u32>>,
    free: Vec<u32>,
    /// Sealed segments, oldest first, per class (`Clock` uses `small` as its only log).
    small: VecDeque<u32>,
    main: VecDeque<u32>,
    /// The segment new writes go to, and (S3-FIFO) the one main's writes go to.
    open_small: u32,
    open_main: u32,
    /// Per id: the segment holding its live copy, and its read count since written.
    loc: Vec<u32>,
    freq: Vec<u8>,
    /// Ghost FIFO of ids evicted from small, and how many times each id is in it.
    ghost: VecDeque<u32>,
    in_ghost: Vec<u8>,
    ghost_cap: usize,
    table: Vec<u16>,
    items: usize,
}

/// The table entry and fingerprint of `id` (a 64-bit mix, as the arena's key hash).
fn ghost_hash(id: u32, entries: usize) -> (usize, u16) {
    let h = u64::from(id)
        .wrapping_add(0x9e37_79b9_7f4a_7c15)
        .wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let h = (h ^ (h >> 31)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (((h >> 16) % entries as u64) as usize, (h >> 48) as u16 | 1)
}

impl LogModel {
    /// `nsegs` segments of `per_seg` items, `reserve` of them kept free for copy-forward
    /// (as the arena keeps them), ids below `ids`.
    pub fn new(
        policy: LogPolicy,
        nsegs: usize,
        per_seg: usize,
        reserve: usize,
        ids: usize,
    ) -> Self {
        assert!(nsegs > reserve + 3, "too few segments to model");
        let mut m = LogModel {
            policy,
            per_seg,
            reserve,
            segs: vec![Vec::with_capacity(per_seg); nsegs],
            free: (0..nsegs as u32).rev().collect(),
            small: VecDeque::new(),
            main: VecDeque::new(),
            open_small: NIL,
            open_main: NIL,
            loc: vec![NIL; ids],
            freq: vec![0; ids],
            ghost: VecDeque::new(),
            in_ghost: vec![0; ids],
            ghost_cap: 0,
            table: Vec::new(),
            items: 0,
        };
        m.open_small = m.free.pop().unwrap();
        if let LogPolicy::S3Fifo { small_frac, .. } = policy {
            m.open_main = m.free.pop().unwrap();
            let item_segs = nsegs - reserve;
            m.ghost_cap = ((1.0 - small_frac) * (item_segs * per_seg) as f64) as usize;
            if let LogPolicy::S3Fifo {
                ghost_table: true, ..
            } = policy
            {
                m.table = vec![0; m.ghost_cap.max(1)];
            }
        }
        m
    }

    /// Live items held.
    pub fn items(&self) -> usize {
        self.items
    }

    /// Looks `id` up (a read counts); on a miss writes it. Returns hit.
    pub fn access(&mut self, id: u32) -> bool {
        let i = id as usize;
        if self.loc[i] != NIL {
            let max = match self.policy {
                LogPolicy::Clock => 1,
                LogPolicy::S3Fifo { freq_max, .. } => freq_max,
            };
            self.freq[i] = (self.freq[i] + 1).min(max);
            return true;
        }
        let class = if self.ghost_hit(id) {
            Class::Main
        } else {
            Class::Small
        };
        self.freq[i] = 0;
        self.append(class, id);
        self.items += 1;
        false
    }

    fn open(&self, class: Class) -> u32 {
        match class {
            Class::Small => self.open_small,
            Class::Main => self.open_main,
        }
    }

    fn has_room(&self, seg: u32) -> bool {
        seg != NIL && self.segs[seg as usize].len() < self.per_seg
    }

    /// Writes `id` at the head of `class`'s log, sealing its open segment and taking a new
    /// one when it is full.
    fn append(&mut self, class: Class, id: u32) {
        if !self.has_room(self.open(class)) {
            let full = self.open(class);
            match class {
                Class::Small => {
                    self.small.push_back(full);
                    self.open_small = NIL;
                    self.open_small = self.acquire();
                }
                Class::Main => {
                    self.main.push_back(full);
                    self.open_main = NIL;
                    let next = self.acquire();
                    if self.open_main == NIL {
                        self.open_main = next;
                    } else {
                        // The eviction that made room opened a main segment of its own.
                        self.free.push(next);
                    }
                }
            }
        }
        let s = self.open(class);
        self.segs[s as usize].push(id);
        self.loc[id as usize] = s;
    }

    /// A segment for `class`: a free one beyond the reserve, else one evicted.
    fn acquire(&mut self) -> u32 {
        if self.free.len() > self.reserve {
            return self.free.pop().unwrap();
        }
        match self.policy {
            LogPolicy::Clock => self.evict_clock(),
            LogPolicy::S3Fifo { small_frac, .. } => {
                // An eviction frees its victim but may fill main's open segment and take a
                // new one: evict until the reserve is whole again.
                while self.free.len() <= self.reserve {
                    self.evict_s3fifo(small_frac);
                }
                self.free.pop().unwrap()
            }
        }
    }

    fn drop_item(&mut self, id: u32) {
        self.loc[id as usize] = NIL;
        self.items -= 1;
    }

    /// larder today: the oldest segment's read items into a destination from the reserve,
    /// which then takes new writes (or, if full, is sealed and the victim taken instead).
    /// With the reserve used up, read items get their second chance in place, and after
    /// three victims so spared everything in the next is dropped (design.md §4.4 step 2).
    fn evict_clock(&mut self) -> u32 {
        let mut spared = 0;
        loop {
            let v = self.small.pop_front().expect("a sealed segment to evict");
            let ids = std::mem::take(&mut self.segs[v as usize]);
            let Some(d) = self.free.pop() else {
                let keep = spared < 3;
                for &id in &ids {
                    if self.loc[id as usize] == v {
                        if keep && self.freq[id as usize] > 0 {
                            self.freq[id as usize] = 0;
                        } else {
                            self.drop_item(id);
                        }
                    }
                }
                if keep {
                    self.segs[v as usize] = ids;
                    self.small.push_back(v);
                    spared += 1;
                    continue;
                }
                return v;
            };
            for id in ids {
                if self.loc[id as usize] != v {
                    continue;
                }
                if self.freq[id as usize] > 0 {
                    self.freq[id as usize] = 0;
                    self.segs[d as usize].push(id);
                    self.loc[id as usize] = d;
                } else {
                    self.drop_item(id);
                }
            }
            if self.segs[d as usize].len() == self.per_seg {
                self.small.push_back(d);
                return v;
            }
            self.free.push(v);
            return d;
        }
    }

    fn evict_s3fifo(&mut self, small_frac: f64) {
        let item_segs = self.segs.len() - self.reserve;
        let small_target = ((item_segs as f64 * small_frac).round() as usize).max(1);
        let from_small =
            !self.small.is_empty() && (self.small.len() + 1 > small_target || self.main.is_empty());
        let v = if from_small {
            self.small.pop_front().unwrap()
        } else {
            self.main.pop_front().unwrap()
        };
        let ids = std::mem::take(&mut self.segs[v as usize]);
        for id in ids {
            let i = id as usize;
            if self.loc[i] != v {
                continue;
            }
            if from_small {
                if self.freq[i] > 0 {
                    self.freq[i] = 0;
                    self.append_evicting(id);
                } else {
                    self.drop_item(id);
                    self.remember(id);
                }
            } else if self.freq[i] > 0 {
                self.freq[i] -= 1;
                self.append_evicting(id);
            } else {
                self.drop_item(id);
            }
        }
        self.free.push(v);
    }

    /// A copy forward into main during an eviction: a full open main segment is sealed and
    /// replaced from the reserve (never by evicting again).
    fn append_evicting(&mut self, id: u32) {
        if !self.has_room(self.open_main) {
            if self.open_main != NIL {
                self.main.push_back(self.open_main);
            }
            self.open_main = self.free.pop().expect("the reserve");
        }
        self.segs[self.open_main as usize].push(id);
        self.loc[id as usize] = self.open_main;
    }

    fn ghost_hit(&mut self, id: u32) -> bool {
        match self.policy {
            LogPolicy::Clock => false,
            LogPolicy::S3Fifo {
                ghost_table: false, ..
            } => self.in_ghost[id as usize] > 0,
            LogPolicy::S3Fifo {
                ghost_table: true, ..
            } => {
                let (e, fp) = ghost_hash(id, self.table.len());
                let hit = self.table[e] == fp;
                if hit {
                    self.table[e] = 0;
                }
                hit
            }
        }
    }

    fn remember(&mut self, id: u32) {
        if !self.table.is_empty() {
            let (e, fp) = ghost_hash(id, self.table.len());
            self.table[e] = fp;
            return;
        }
        self.ghost.push_back(id);
        self.in_ghost[id as usize] += 1;
        while self.ghost.len() > self.ghost_cap {
            let old = self.ghost.pop_front().unwrap();
            self.in_ghost[old as usize] -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Below capacity every repeat is a hit and nothing is dropped; the scan of ids never
    /// read again leaves the read ones in place under S3-FIFO but not under CLOCK.
    #[test]
    fn hits_below_capacity_and_s3fifo_keeps_read_items_through_a_scan() {
        for p in [
            LogPolicy::Clock,
            LogPolicy::S3Fifo {
                small_frac: 0.1,
                freq_max: 3,
                ghost_table: false,
            },
        ] {
            let mut m = LogModel::new(p, 20, 10, 2, 10_000);
            for id in 0..50 {
                assert!(!m.access(id));
            }
            for id in 0..50 {
                assert!(m.access(id), "{p:?} {id}");
            }
            assert_eq!(m.items(), 50);
        }
        let hot_survives = |p| {
            let mut m = LogModel::new(p, 20, 10, 2, 10_000);
            for _ in 0..3 {
                for id in 0..50 {
                    m.access(id);
                }
            }
            for id in 1000..1400 {
                m.access(id);
            }
            (0..50).filter(|&id| m.loc[id as usize] != NIL).count()
        };
        let s3 = hot_survives(LogPolicy::S3Fifo {
            small_frac: 0.1,
            freq_max: 3,
            ghost_table: true,
        });
        let clock = hot_survives(LogPolicy::Clock);
        assert_eq!(s3, 50, "a scan three times the cache leaves main alone");
        assert!(
            clock < 50,
            "CLOCK loses read items to a long scan ({clock})"
        );
    }
}
