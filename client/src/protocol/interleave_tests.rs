//! Deterministic interleavings: process A is interrupted at one exact arena access while
//! process B runs whole steps (design.md §8). Each test names the window it opens; a chaos
//! run would need a preemption inside a few instructions to hit any of them.

use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex};

use crate::protocol::alloc::{Lane, OpenSeg};
use crate::protocol::engine::{Engine, Who};
use crate::protocol::eviction::Walk;
use crate::protocol::index::{Lookup, Mode};
use crate::protocol::layout::{
    ctl_gen, hash_tag, item_flags, item_meta, seg_ctl, slot_loc, Geometry, Params, SegState,
    REF_BIT, SEG_ENTRY_SIZE, SLOT_GEN_BITS,
};
use crate::protocol::mem::{Mem, VecMem};
use crate::protocol::sync::Ordering::{Relaxed, Release};
use crate::protocol::testkit::{tiny, HookMem, Shared, TestLiveness};

struct World {
    mem: Arc<VecMem>,
    p: Params,
    g: Geometry,
    /// Process B, which runs inside A's hooks.
    b: Arc<Engine<Shared>>,
    aw: Who,
    bw: Who,
}

fn world() -> World {
    let (p, g) = tiny(8, 16, 8, 2, 200);
    let mem = Arc::new(VecMem::new(g.arena_size));
    let b = Engine::new(
        Shared(mem.clone()),
        &p,
        g,
        Box::new(TestLiveness::default()),
    );
    let aw = b.claim_slot(0, 1, 0).unwrap();
    let bw = b.claim_slot(1, 2, 0).unwrap();
    World {
        mem,
        p,
        g,
        b: Arc::new(b),
        aw,
        bw,
    }
}

impl World {
    /// Process A: before each access to a word `when` picks (while armed), `run(offset)`.
    fn a(
        &self,
        when: impl Fn(u64) -> bool + Send + Sync + 'static,
        run: impl FnMut(u64) + Send + 'static,
    ) -> Engine<HookMem> {
        let m = HookMem {
            inner: self.mem.clone(),
            when: Box::new(when),
            run: Mutex::new(Box::new(run)),
            fires: AtomicU32::new(0),
        };
        Engine::new(m, &self.p, self.g, Box::new(TestLiveness::default()))
    }

    /// Process A, in which `run` happens right before A's second access to the word at
    /// `off` (armed).
    fn at_second_access(&self, off: u64, run: impl FnOnce() + Send + 'static) -> Engine<HookMem> {
        let (mut seen, mut run) = (0, Some(run));
        let a = self.a(
            move |o| o == off,
            move |_| {
                seen += 1;
                if seen == 2 {
                    (run.take().expect("runs once"))();
                }
            },
        );
        a.mem.arm(2);
        a
    }

    /// B writes `key` into a segment of its own, reads it (so it is referenced: an eviction
    /// copies it forward), and seals the segment into the log. Returns the segment.
    fn hot_sealed(&self, key: &[u8], value: &[u8]) -> u32 {
        let mut lane = Lane::default();
        self.b
            .write(self.bw, &mut lane, key, value, None, Mode::Set)
            .unwrap();
        assert!(self.b.get(self.bw, key, &mut Vec::new()).unwrap().is_some());
        let s = lane.seg.take().unwrap();
        self.b.seal(self.bw, s);
        s.seg
    }

    fn slots_holding(&self, key: &[u8]) -> usize {
        let mut n = 0;
        self.b.for_each_slot(|s, w| {
            n += usize::from(self.b.read_key(s, w).is_some_and(|(k, _)| k == key));
        });
        n
    }
}

/// B evicts `seg`, copying its referenced items forward into a FREE segment that stays B's
/// open lane segment (as an evictor's destination does). Returns the destination.
fn copy_forward(b: &Engine<Shared>, who: Who, seg: u32) -> OpenSeg {
    let prev = b.take_for_walk(who, seg).expect("the victim is in the log");
    let mut dest = b.claim_any_free(who).expect("a destination");
    b.walk_segment(who, seg, ctl_gen(prev), Walk::Evict, Some(&mut dest));
    b.free_segment(who, seg, ctl_gen(prev));
    dest
}

/// A's first load of `seg`'s control word, which comes right after its load of the slot
/// word: B moves the key forward into the same slot and frees `seg` there.
fn moved_under_a(w: &World, seg: u32) -> Engine<HookMem> {
    let (b, bw, ctl) = (w.b.clone(), w.bw, w.g.seg_ctl_off(seg));
    let a = w.a(
        move |off| off == ctl,
        move |_| {
            copy_forward(&b, bw, seg);
        },
    );
    a.mem.arm(1);
    a
}

#[test]
fn a_get_that_meets_its_key_moved_into_the_same_slot_still_hits() {
    let w = world();
    let seg = w.hot_sealed(b"k", b"hot value");
    let a = moved_under_a(&w, seg);
    let mut out = Vec::new();
    assert!(a.get(w.aw, b"k", &mut out).unwrap().is_some(), "false miss");
    assert_eq!(a.mem.left(), 0, "the window was not reached");
    assert_eq!(out, b"hot value");
}

#[test]
fn a_delete_that_meets_its_key_moved_into_the_same_slot_deletes_it() {
    let w = world();
    let seg = w.hot_sealed(b"k", b"v");
    let a = moved_under_a(&w, seg);
    assert!(a.delete(w.aw, b"k").unwrap(), "delete found nothing");
    assert_eq!(a.mem.left(), 0);
    assert!(w.b.get(w.bw, b"k", &mut Vec::new()).unwrap().is_none());
}

#[test]
fn an_incr_that_meets_its_counter_moved_into_the_same_slot_counts() {
    let w = world();
    let seg = w.hot_sealed(b"n", b"41");
    let a = moved_under_a(&w, seg);
    assert_eq!(
        a.incr(w.aw, &mut Lane::default(), b"n", 1, false).unwrap(),
        Some(42)
    );
    assert_eq!(a.mem.left(), 0);
}

#[test]
fn a_set_whose_two_lookups_both_meet_a_move_leaves_the_key_in_one_slot() {
    let w = world();
    let seg = w.hot_sealed(b"k", b"old");
    // A's lane has room, so its write touches no segment control word before publishing.
    let mut lane = Lane::default();
    w.b.write(w.aw, &mut lane, b"warm", b"x", None, Mode::Set)
        .unwrap();
    // Wherever the key lives, B moves it on as A reads that segment's control word: once
    // under A's first lookup, once under its rescan with the insert lock held.
    let here = Arc::new(AtomicU64::new(w.g.seg_ctl_off(seg)));
    let (b, bw, g, at) = (w.b.clone(), w.bw, w.g, here.clone());
    let a = w.a(
        move |off| off == here.load(Relaxed),
        move |off| {
            let seg = ((off - g.segtab_off) / SEG_ENTRY_SIZE) as u32;
            // Referenced again, so the second eviction copies it too.
            assert!(b.get(bw, b"k", &mut Vec::new()).unwrap().is_some());
            let dest = copy_forward(&b, bw, seg);
            b.seal(bw, dest);
            at.store(g.seg_ctl_off(dest.seg), Relaxed);
        },
    );
    a.mem.arm(2);
    a.write(w.aw, &mut lane, b"k", b"new", None, Mode::Set)
        .unwrap();
    assert_eq!(a.mem.left(), 0, "both windows reached");
    assert_eq!(w.slots_holding(b"k"), 1, "the key is in two slots");
    let mut out = Vec::new();
    assert!(w.b.get(w.bw, b"k", &mut out).unwrap().is_some());
    assert_eq!(out, b"new");
    assert!(w.b.delete(w.bw, b"k").unwrap());
    assert!(
        w.b.get(w.bw, b"k", &mut Vec::new()).unwrap().is_none(),
        "an older copy came back after the delete"
    );
}

#[test]
fn a_get_whose_corrupt_slot_is_overwritten_before_it_clears_it_reads_the_new_item() {
    let w = world();
    let mut lane = Lane::default();
    w.b.write(w.bw, &mut lane, b"k", b"old", None, Mode::Set)
        .unwrap();
    let Lookup::Found(f) = w.b.lookup(w.bw, b"k", w.b.hash(b"k"), None::<&mut Vec<u8>>) else {
        panic!("k is present");
    };
    // Damage the item's header from outside: readers see a corrupt item.
    w.mem.word(slot_loc(f.w) * 8).store(u64::MAX, Relaxed);
    // A finds the damage and re-checks the slot (its first access to the slot word on its
    // own: the scan loads through `words`); then B clears the garbage slot and writes the
    // key again, into the same slot, just before A's own clearing CAS (its second access).
    let (b, bw, slot) = (w.b.clone(), w.bw, f.slot);
    let a = w.at_second_access(slot, move || {
        b.write(bw, &mut Lane::default(), b"k", b"fresh", None, Mode::Set)
            .unwrap();
        let Lookup::Found(f) = b.lookup(bw, b"k", b.hash(b"k"), None::<&mut Vec<u8>>) else {
            panic!("k was just written");
        };
        assert_eq!(f.slot, slot, "the test needs the same slot");
    });
    let mut out = Vec::new();
    assert!(a.get(w.aw, b"k", &mut out).unwrap().is_some(), "false miss");
    assert_eq!(out, b"fresh");
}

#[test]
fn a_flush_that_meets_a_key_being_moved_still_removes_it() {
    let w = world();
    let seg = w.hot_sealed(b"k", b"v");
    let Lookup::Found(f) = w.b.lookup(w.bw, b"k", w.b.hash(b"k"), None::<&mut Vec<u8>>) else {
        panic!("k is present");
    };
    // Between the flush's load of the slot and its CAS, B moves the key forward into a
    // destination it keeps open (a flush leaves segments in use to their owners).
    let (b, bw) = (w.b.clone(), w.bw);
    let a = w.at_second_access(f.slot, move || {
        copy_forward(&b, bw, seg);
    });
    a.flush(w.aw);
    assert_eq!(a.mem.left(), 0);
    assert!(
        w.b.get(w.bw, b"k", &mut Vec::new()).unwrap().is_none(),
        "an item older than the flush survived it"
    );
}

#[test]
fn an_incr_stalled_across_2_14_recyclings_does_not_replace_the_word_republished_meanwhile() {
    let w = world();
    let mut setup = Lane::default();
    w.b.write(w.bw, &mut setup, b"n", b"41", None, Mode::Set)
        .unwrap();
    w.b.seal(w.bw, setup.seg.take().unwrap());
    let Lookup::Found(f) = w.b.lookup(w.bw, b"n", w.b.hash(b"n"), None::<&mut Vec<u8>>) else {
        panic!("n is present");
    };
    // Another key with the same tag and the same home bucket: its item, written at the
    // counter's old offset in a later generation, gets the very same slot word.
    let hn = w.b.hash(b"n");
    let j = (0u64..)
        .map(|i| format!("j{i}").into_bytes())
        .find(|k| {
            let h = w.b.hash(k);
            hash_tag(h) == hash_tag(hn) && w.g.home_bucket(h) == w.g.home_bucket(hn)
        })
        .unwrap();
    // A's lane has room, so the increment's append touches only that segment's words; its
    // `wptr` store comes after the counter was read and before the publishing CAS.
    let mut lane = Lane::default();
    w.b.write(w.aw, &mut lane, b"warm", b"x", None, Mode::Set)
        .unwrap();
    let wptr = w.g.seg_wptr_off(lane.seg.unwrap().seg);
    let (b, bw, jj) = (w.b.clone(), w.bw, j.clone());
    let a = w.a(
        move |off| off == wptr,
        move |_| {
            // Meanwhile: the counter is deleted, its segment recycled 2^14 times (the slot's
            // generation bits wrap), and `j` written at the same offset and inserted into the
            // same slot — the word A read is back, naming another item.
            assert!(b.delete(bw, b"n").unwrap());
            let off = slot_loc(f.w) * 8;
            let seg = b.geo.seg_of(off).unwrap();
            let c = b.mem.load(b.geo.seg_ctl_off(seg), Relaxed);
            b.mem.store(
                b.geo.seg_ctl_off(seg),
                seg_ctl(ctl_gen(c) + (1 << SLOT_GEN_BITS), SegState::Sealed, 0),
                Relaxed,
            );
            b.write_item_ext(off, &jj, b"j's value", 0, &[]);
            b.mem.store(f.slot, f.w & !REF_BIT, Release);
        },
    );
    a.mem.arm(1);
    let r = a.incr(w.aw, &mut lane, b"n", 1, false).unwrap();
    assert_eq!(a.mem.left(), 0, "the window was not reached");
    let mut out = Vec::new();
    assert!(
        w.b.get(w.bw, &j, &mut out).unwrap().is_some(),
        "the increment replaced another key's slot"
    );
    assert_eq!(out, b"j's value");
    assert_eq!(
        r, None,
        "the counter was deleted before the increment published"
    );
    assert!(w.b.get(w.bw, b"n", &mut Vec::new()).unwrap().is_none());
}

#[test]
fn a_get_whose_item_is_moved_and_its_bytes_reused_as_it_reads_the_flags_word_returns_the_moved_item(
) {
    let w = world();
    // k with client flags 3 (meta word + flags word), referenced, in a sealed segment.
    let mut lane = Lane::default();
    let ext = [item_meta(0, 0, 0, true), item_flags(3)];
    w.b.write_ext(w.bw, &mut lane, b"k", b"old", None, Mode::Set, &ext)
        .unwrap();
    assert!(w.b.get(w.bw, b"k", &mut Vec::new()).unwrap().is_some());
    let s = lane.seg.take().unwrap();
    w.b.seal(w.bw, s);
    let Lookup::Found(f) = w.b.lookup(w.bw, b"k", w.b.hash(b"k"), None::<&mut Vec<u8>>) else {
        panic!("k is present");
    };
    let off = slot_loc(f.w) * 8;
    // Header, meta, then the flags word.
    let flags_word = off + 16;
    // Right before A loads the flags word: B copies k forward (flags and all), frees the
    // segment, and a later generation of it holds another item for k at the same offset,
    // with other flags and another value of the same length (never published).
    let (b, bw, seg) = (w.b.clone(), w.bw, s.seg);
    let a = w.a(
        move |o| o == flags_word,
        move |_| {
            copy_forward(&b, bw, seg);
            let ctl = b.geo.seg_ctl_off(seg);
            // B stands in for a recycler: Relaxed load of the word it alone changes here;
            // the Release store pairs with A's Acquire re-check of the generation.
            let c = b.mem.load(ctl, Relaxed);
            b.mem
                .store(ctl, seg_ctl(ctl_gen(c) + 1, SegState::Sealed, 0), Release);
            let ext = [item_meta(0, 0, 0, true), item_flags(9)];
            b.write_item_ext(off, b"k", b"zzz", 0, &ext);
        },
    );
    a.mem.arm(1);
    let mut out = Vec::new();
    let (info, _) = a.get(w.aw, b"k", &mut out).unwrap().expect("false miss");
    assert_eq!(a.mem.left(), 0, "the window was not reached");
    // The flags word is read inside the seqlock window: the torn read is retried and the
    // moved item returned whole, not its value with the reused bytes' flags (or theirs).
    assert_eq!((out.as_slice(), info.flags), (&b"old"[..], 3));
}
