//! Loom models of the protocol (run with `RUSTFLAGS="--cfg larder_loom"`; see .ci/run).
//! Each explores every interleaving of two or three "processes" over a tiny arena of
//! 128-byte segments, up to LOOM_MAX_PREEMPTIONS.

use loom::sync::Arc;
use loom::thread;

use crate::protocol::alloc::Lane;
use crate::protocol::engine::Engine;
use crate::protocol::index::{Lookup, Mode, Outcome};
use crate::protocol::layout::{ctl_gen, item_flags, item_meta};
use crate::protocol::mem::{Mem, VecMem};
use crate::protocol::sync::Ordering::Relaxed;
use crate::protocol::testkit::engine;

const V1: &[u8] = b"first value, 24 bytes!!!";
const V2: &[u8] = b"SECOND VALUE, 24 BYTES??";

fn get(e: &Engine<VecMem>, who: crate::protocol::engine::Who, key: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    e.get(who, key, &mut out).unwrap().map(|_| out)
}

/// Writes `key`, reads it (so its reference bit is set: an eviction copies it forward) and
/// seals its segment into the log; returns the segment.
fn hot_sealed(
    e: &Engine<VecMem>,
    who: crate::protocol::engine::Who,
    key: &[u8],
    value: &[u8],
) -> u32 {
    let mut lane = Lane::default();
    e.write(who, &mut lane, key, value, None, Mode::Set)
        .unwrap();
    assert!(get(e, who, key).is_some());
    let s = lane.seg.take().unwrap();
    e.seal(who, s);
    s.seg
}

/// Evicts `seg`, copying its referenced items forward into a FREE segment if there is one.
fn evict_copying(e: &Engine<VecMem>, who: crate::protocol::engine::Who, seg: u32) {
    let prev = e.take_for_walk(who, seg).unwrap();
    let mut dest = e.claim_any_free(who);
    e.walk_segment(
        who,
        seg,
        ctl_gen(prev),
        crate::protocol::eviction::Walk::Evict,
        dest.as_mut(),
    );
    e.free_segment(who, seg, ctl_gen(prev));
}

/// Evicts `seg` without copying anything forward, frees it and claims it again: the next
/// generation of the same bytes, about to be written over.
fn evict_and_reclaim(
    e: &Engine<VecMem>,
    who: crate::protocol::engine::Who,
    seg: u32,
) -> crate::protocol::alloc::OpenSeg {
    let prev = e.take_for_walk(who, seg).unwrap();
    let gen = ctl_gen(prev);
    e.walk_segment(who, seg, gen, crate::protocol::eviction::Walk::Evict, None);
    e.free_segment(who, seg, gen);
    // Relaxed: this thread just freed the segment; claim_free's CAS decides.
    let c = e.mem.load(e.geo.seg_ctl_off(seg), Relaxed);
    e.claim_free(who, seg, c).expect("just freed")
}

/// A reader racing an overwrite sees the old or the new value, whole.
#[test]
fn loom_publish_vs_read() {
    loom::model(|| {
        let (e, w, _) = engine(4, 7, 2, 2, 40);
        let w = [w[0], w[1]];
        let e = Arc::new(e);
        e.write(w[0], &mut Lane::default(), b"k", V1, None, Mode::Set)
            .unwrap();
        let e2 = e.clone();
        let t = thread::spawn(move || {
            e2.write(w[1], &mut Lane::default(), b"k", V2, None, Mode::Set)
                .unwrap();
        });
        let v = get(&e, w[0], b"k").expect("present throughout");
        assert!(v == V1 || v == V2, "torn read {v:?}");
        t.join().unwrap();
        assert_eq!(get(&e, w[0], b"k").as_deref(), Some(V2));
    });
}

/// The seqlock: a reader racing an evictor that frees the item's segment and a writer that
/// reuses it for another key returns the old value whole or misses — never the new bytes.
/// (Without the claimer's fence(Release) or the reader's generation re-check, loom finds
/// the interleaving where the reader copies the other key's bytes.)
#[test]
fn loom_evict_and_recycle_vs_read() {
    loom::model(|| {
        let (e, w, _) = engine(4, 7, 2, 2, 40);
        let w = [w[0], w[1]];
        let e = Arc::new(e);
        let mut lane = Lane::default();
        e.write(w[0], &mut lane, b"k", V1, None, Mode::Set).unwrap();
        let s = lane.seg.take().unwrap();
        e.seal(w[0], s);
        let e2 = e.clone();
        let t = thread::spawn(move || {
            let re = evict_and_reclaim(&e2, w[1], s.seg);
            e2.write_item(e2.geo.seg_base(re.seg), b"j", V2, 0);
        });
        if let Some(v) = get(&e, w[0], b"k") {
            assert_eq!(v, V1, "read another key's bytes");
        }
        t.join().unwrap();
        assert_eq!(get(&e, w[0], b"k"), None);
    });
}

/// As `loom_evict_and_recycle_vs_read` for an item with client flags, whose recycled bytes
/// hold an item *of the same key* with other flags: the flags word is read inside the
/// seqlock window, so a reader returns the old value with the old flags, or misses.
#[test]
fn loom_flags_vs_evict_and_recycle() {
    loom::model(|| {
        let (e, w, _) = engine(4, 7, 2, 2, 40);
        let w = [w[0], w[1]];
        let e = Arc::new(e);
        let flagged = |f| [item_meta(0, 0, 0, true), item_flags(f)];
        let mut lane = Lane::default();
        e.write_ext(w[0], &mut lane, b"k", V1, None, Mode::Set, &flagged(3))
            .unwrap();
        let s = lane.seg.take().unwrap();
        e.seal(w[0], s);
        let e2 = e.clone();
        let t = thread::spawn(move || {
            let re = evict_and_reclaim(&e2, w[1], s.seg);
            e2.write_item_ext(e2.geo.seg_base(re.seg), b"k", V2, 0, &flagged(9));
        });
        let mut out = Vec::new();
        if let Some((info, _)) = e.get(w[0], b"k", &mut out).unwrap() {
            assert_eq!((out.as_slice(), info.flags), (V1, 3), "read recycled bytes");
        }
        t.join().unwrap();
        assert_eq!(get(&e, w[0], b"k"), None);
    });
}

/// A referenced key that nobody deletes must hit while an evictor copies it forward into
/// the same slot and frees its old segment: the reader that loaded the old word and then
/// sees the new generation must look at the slot again, not skip it (a skip is a false miss;
/// under a `set`, a second copy of the key). `loom_evict_and_recycle_vs_read` accepts a
/// miss, so it could not see this.
#[test]
fn loom_copy_forward_vs_read_always_hits() {
    loom::model(|| {
        let (e, w, _) = engine(4, 7, 2, 2, 40);
        let w = [w[0], w[1]];
        let e = Arc::new(e);
        let seg = hot_sealed(&e, w[0], b"k", V1);
        let e2 = e.clone();
        let t = thread::spawn(move || evict_copying(&e2, w[1], seg));
        assert_eq!(get(&e, w[0], b"k").as_deref(), Some(V1), "false miss");
        t.join().unwrap();
        assert_eq!(get(&e, w[0], b"k").as_deref(), Some(V1));
    });
}

/// Two processes adding the same new key: exactly one succeeds and one slot holds it.
#[test]
fn loom_concurrent_add_of_one_key() {
    loom::model(|| {
        let (e, w, _) = engine(4, 7, 2, 2, 40);
        let w = [w[0], w[1]];
        let e = Arc::new(e);
        let e2 = e.clone();
        let t = thread::spawn(move || {
            e2.write(w[1], &mut Lane::default(), b"k", V2, None, Mode::Add)
                .unwrap()
        });
        let mine = e
            .write(w[0], &mut Lane::default(), b"k", V1, None, Mode::Add)
            .unwrap();
        let theirs = t.join().unwrap();
        assert_eq!(
            (mine == Outcome::Stored) as u8 + (theirs == Outcome::Stored) as u8,
            1
        );
        let v = get(&e, w[0], b"k").unwrap();
        assert_eq!(v, if mine == Outcome::Stored { V1 } else { V2 });
        let mut copies = 0;
        e.for_each_slot(|_, _| copies += 1);
        assert_eq!(copies, 1);
    });
}

/// An increment racing an evictor copying the counter forward is never lost.
#[test]
fn loom_incr_vs_evict() {
    loom::model(|| {
        let (e, w, _) = engine(5, 7, 2, 2, 40);
        let w = [w[0], w[1]];
        let e = Arc::new(e);
        let seg = hot_sealed(&e, w[0], b"n", b"41");
        let e2 = e.clone();
        let t = thread::spawn(move || evict_copying(&e2, w[1], seg));
        assert_eq!(
            e.incr(w[0], &mut Lane::default(), b"n", 1, false).unwrap(),
            Some(42)
        );
        t.join().unwrap();
        assert_eq!(get(&e, w[0], b"n").as_deref(), Some(&b"42"[..]));
        assert!(matches!(
            e.lookup(w[0], b"n", e.hash(b"n"), None::<&mut Vec<u8>>),
            Lookup::Found(_)
        ));
    });
}

/// A process killed while holding an insert lock does not block inserts for ever.
#[test]
fn loom_dead_lock_holder_is_robbed() {
    loom::model(|| {
        let (e, w, dead) = engine(4, 7, 2, 2, 40);
        let w = [w[0], w[1]];
        let e = Arc::new(e);
        dead.store(1 << w[1].slot, std::sync::atomic::Ordering::Relaxed);
        let [home, _] = e.neighbourhood(e.hash(b"k"));
        let e2 = e.clone();
        // Process 1 takes the lock and dies before releasing it.
        let t = thread::spawn(move || e2.lock_bucket(w[1], home));
        assert_eq!(
            e.write(w[0], &mut Lane::default(), b"k", V1, None, Mode::Set)
                .unwrap(),
            Outcome::Stored
        );
        t.join().unwrap();
        assert_eq!(get(&e, w[0], b"k").as_deref(), Some(V1));
    });
}
