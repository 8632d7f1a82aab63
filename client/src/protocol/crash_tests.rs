//! SIGKILL at every step: each operation is run by a "process" whose arena accesses are cut
//! off after k steps, for every k until it completes; after each kill the survivor reaps it
//! and checks that the arena is consistent, nothing is locked, and every key holds a value
//! it was given. (design.md §1: "safe when SIGKILLed between any two instructions".)

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::protocol::alloc::Lane;
use crate::protocol::engine::{Engine, Who};
use crate::protocol::index::Mode;
use crate::protocol::layout::{
    ctl_state, item_flags, item_meta, Counter, Geometry, Params, SegState, PS_COUNTERS,
};
use crate::protocol::mem::{Mem, VecMem};
use crate::protocol::testkit::{survives, tiny, KillMem, Shared, TestLiveness};

struct World {
    mem: Arc<VecMem>,
    p: Params,
    g: Geometry,
    dead: Arc<AtomicU64>,
    b: Engine<Shared>,
    bw: Who,
    aw: Who,
}

fn world() -> World {
    let (p, g) = tiny(8, 16, 4, 2, 200);
    let mem = Arc::new(VecMem::new(g.arena_size));
    let dead = Arc::new(AtomicU64::new(0));
    let b = Engine::new(
        Shared(mem.clone()),
        &p,
        g,
        Box::new(TestLiveness(dead.clone())),
    );
    let aw = b.claim_slot(0, 1, 0).unwrap();
    let bw = b.claim_slot(1, 2, 0).unwrap();
    World {
        mem,
        p,
        g,
        dead,
        b,
        bw,
        aw,
    }
}

impl World {
    /// Process A, which dies after `budget` arena accesses.
    fn victim(&self, budget: u64) -> Engine<KillMem> {
        let m = KillMem {
            inner: self.mem.clone(),
            budget: AtomicU64::new(budget),
        };
        Engine::new(
            m,
            &self.p,
            self.g,
            Box::new(TestLiveness(self.dead.clone())),
        )
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.b.get(self.bw, key, &mut out).unwrap().map(|_| out)
    }

    fn set(&self, key: &[u8], v: &[u8], lane: &mut Lane) {
        self.b
            .write(self.bw, lane, key, v, None, Mode::Set)
            .unwrap();
    }

    /// A is dead: the kernel dropped its lock; B reaps it.
    fn bury_a(&self) {
        self.dead.store(1 << self.aw.slot, Relaxed);
        self.b.reap(self.bw, self.aw.slot, self.aw.reg);
    }

    /// The invariants that must hold whatever step A died at.
    fn check_consistent(&self) {
        let e = &self.b;
        // No segment is left owned by the dead process.
        for seg in 0..self.g.nsegs {
            let c = e.mem.load(self.g.seg_ctl_off(seg), Relaxed);
            let st = ctl_state(c).expect("valid state");
            assert!(
                !(matches!(st, SegState::Open | SegState::Evicting) && c as u32 == self.aw.reg),
                "segment {seg} still owned by the dead: {st:?}"
            );
        }
        // Every slot reads as a valid item, and no key is in two slots.
        let mut keys = Vec::new();
        e.for_each_slot(|s, w| keys.push(e.read_key(s, w).expect("slot points at a valid item").0));
        keys.sort();
        let n = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), n, "a key is in two slots");
        // Every segment can be walked without meeting damage.
        let corrupt = |e: &Engine<Shared>| {
            e.mem.load(
                self.g.proc_off(self.bw.slot) + PS_COUNTERS + Counter::Corrupt as u64 * 8,
                Relaxed,
            )
        };
        let before = corrupt(e);
        e.sweep_expired(self.bw, self.g.nsegs);
        assert_eq!(corrupt(e), before, "a walk met damaged bytes");
        // Nothing is locked for ever: every bucket takes an insert (stealing A's lock).
        let mut lane = Lane::default();
        let mut i = 0u32;
        let mut seen = vec![false; self.g.nbuckets as usize];
        while seen.iter().any(|s| !s) {
            let key = format!("probe{i}");
            seen[self.g.home_bucket(e.hash(key.as_bytes())) as usize] = true;
            self.set(key.as_bytes(), b"p", &mut lane);
            assert_eq!(self.get(key.as_bytes()).as_deref(), Some(&b"p"[..]));
            e.delete(self.bw, key.as_bytes()).unwrap();
            i += 1;
        }
        for b in 0..self.g.nbuckets {
            let lock = self.g.lock_off(self.g.bucket_off(b));
            assert_eq!(e.mem.load(lock, Relaxed), 0);
        }
    }
}

/// Runs `op` in process A killed at every step in turn; `check(world, completed)` after each.
fn at_every_step(
    setup: impl Fn(&World),
    op: impl Fn(&Engine<KillMem>, Who, &mut Lane),
    check: impl Fn(&World, bool),
) {
    for budget in 0.. {
        let w = world();
        setup(&w);
        let a = w.victim(budget);
        let mut lane = Lane::default();
        let done = survives(|| op(&a, w.aw, &mut lane));
        w.bury_a();
        check(&w, done);
        w.check_consistent();
        if done {
            assert!(
                budget > 3,
                "the operation should take more than a few steps"
            );
            return;
        }
    }
}

#[test]
fn overwrite_killed_at_every_step() {
    at_every_step(
        |w| w.set(b"k", b"old value", &mut Lane::default()),
        |a, who, lane| {
            a.write(who, lane, b"k", b"new value!", None, Mode::Set)
                .unwrap();
        },
        |w, done| {
            let v = w.get(b"k").expect("an overwrite never loses the key");
            assert!(v == b"new value!" || (!done && v == b"old value"), "{v:?}");
        },
    );
}

#[test]
fn a_flagged_overwrite_and_a_touch_of_it_killed_at_every_step_keep_value_and_flags_together() {
    let flagged = |flags| [item_meta(0, 0, 0, true), item_flags(flags)];
    let read = |w: &World| {
        let mut out = Vec::new();
        let (info, _) = w.b.get(w.bw, b"k", &mut out).unwrap().expect("never lost");
        (out, info.flags)
    };
    let setup = |w: &World| {
        let mut lane = Lane::default();
        w.b.write_ext(w.bw, &mut lane, b"k", b"old", None, Mode::Set, &flagged(3))
            .unwrap();
    };
    at_every_step(
        setup,
        |a, who, lane| {
            a.write_ext(who, lane, b"k", b"new!", None, Mode::Set, &flagged(9))
                .unwrap();
        },
        |w, done| {
            let got = read(w);
            assert!(
                got == (b"new!".to_vec(), 9) || (!done && got == (b"old".to_vec(), 3)),
                "{got:?}"
            );
        },
    );
    at_every_step(
        setup,
        |a, who, lane| {
            assert!(a
                .touch(who, lane, b"k", Some(std::time::Duration::from_secs(60)))
                .unwrap());
        },
        |w, _| assert_eq!(read(w), (b"old".to_vec(), 3), "a touch keeps the flags"),
    );
}

#[test]
fn insert_killed_at_every_step() {
    at_every_step(
        |w| w.set(b"other", b"x", &mut Lane::default()),
        |a, who, lane| {
            a.write(who, lane, b"k", b"v", None, Mode::Add).unwrap();
        },
        |w, done| {
            let v = w.get(b"k");
            assert!(
                v.as_deref() == Some(b"v") || (!done && v.is_none()),
                "{v:?}"
            );
            assert_eq!(w.get(b"other").as_deref(), Some(&b"x"[..]));
        },
    );
}

#[test]
fn incr_killed_at_every_step() {
    at_every_step(
        |w| w.set(b"n", b"5", &mut Lane::default()),
        |a, who, lane| {
            a.incr(who, lane, b"n", 1, false).unwrap();
        },
        |w, done| {
            let v = w.get(b"n").expect("counter present");
            assert!(v == b"6" || (!done && v == b"5"), "{v:?}");
        },
    );
}

#[test]
fn delete_killed_at_every_step() {
    at_every_step(
        |w| w.set(b"k", b"v", &mut Lane::default()),
        |a, who, _| {
            a.delete(who, b"k").unwrap();
        },
        |w, done| {
            let v = w.get(b"k");
            assert!(
                v.is_none() || (!done && v.as_deref() == Some(b"v")),
                "{v:?}"
            );
        },
    );
}

#[test]
fn eviction_killed_at_every_step() {
    let keys: Vec<String> = (0..12).map(|i| format!("k{i}")).collect();
    at_every_step(
        |w| {
            let mut lane = Lane::default();
            for k in &keys {
                w.set(k.as_bytes(), k.repeat(5).as_bytes(), &mut lane);
            }
            // The first half is hot.
            for k in &keys[..6] {
                w.get(k.as_bytes()).unwrap();
            }
            w.b.seal(w.bw, lane.seg.take().unwrap());
        },
        |a, who, _| {
            a.evict_one(who).expect("a victim");
        },
        |w, done| {
            for (i, k) in keys.iter().enumerate() {
                match w.get(k.as_bytes()) {
                    Some(v) => assert_eq!(v, k.repeat(5).as_bytes()),
                    None => assert!(i >= 6, "hot key {k} lost"),
                }
                if done && i >= 6 {
                    assert_eq!(
                        w.get(k.as_bytes()),
                        None,
                        "cold key {k} survived a completed eviction"
                    );
                }
            }
        },
    );
}

#[test]
fn eviction_that_compacts_a_dead_segment_instead_killed_at_every_step() {
    // The oldest segment holds cold keys, all live and unreferenced; the next ones hold
    // nothing but dead copies of one hot key. A completed eviction must compact a dead
    // segment and keep the cold keys (plain CLOCK would drop them); a killed one must lose
    // nothing either.
    let cold: Vec<String> = (0..6).map(|i| format!("c{i}")).collect();
    let hot = |n: u32| format!("{n:>190}");
    let writes = 2 * 290 + 10;
    at_every_step(
        |w| {
            let mut lane = Lane::default();
            for k in &cold {
                w.set(k.as_bytes(), k.repeat(5).as_bytes(), &mut lane);
            }
            w.b.seal(w.bw, lane.seg.take().unwrap());
            for n in 0..writes {
                w.set(b"hot", hot(n).as_bytes(), &mut lane);
            }
            w.b.seal(w.bw, lane.seg.take().unwrap());
        },
        |a, who, _| {
            a.evict_one(who).expect("a victim");
        },
        |w, _done| {
            for k in &cold {
                assert_eq!(
                    w.get(k.as_bytes()).as_deref(),
                    Some(k.repeat(5).as_bytes()),
                    "cold key {k} lost"
                );
            }
            assert_eq!(
                w.get(b"hot").as_deref(),
                Some(hot(writes - 1).as_bytes()),
                "hot key"
            );
        },
    );
}

#[test]
fn registration_and_reaping_killed_at_every_step() {
    // A reaper that dies mid-reap is followed by another; the slot ends free exactly once.
    for budget in 0.. {
        let w = world();
        let mut lane = Lane::default();
        // A holds an open segment with a published item, then dies.
        let a_full = w.victim(u64::MAX);
        a_full
            .write(w.aw, &mut lane, b"k", b"v", None, Mode::Set)
            .unwrap();
        w.dead.store(1 << w.aw.slot, Relaxed);
        // Reaper C dies after `budget` steps; B finishes.
        let c = w.victim(budget);
        let done = survives(|| {
            c.reap(w.bw, w.aw.slot, w.aw.reg);
        });
        w.b.reap(w.bw, w.aw.slot, w.aw.reg);
        assert_eq!(w.b.slot_reg(w.aw.slot), 0);
        assert_eq!(w.get(b"k").as_deref(), Some(&b"v"[..]));
        w.check_consistent();
        if done {
            return;
        }
    }
}
