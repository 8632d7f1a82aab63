//! The stampede lease as two calls (`get_or_lease`, then `fill_lease` or `release_lease`):
//! who gets the lease, what the others see while it is held, and what invalidation and a
//! lease for the wrong key do. Across processes it is tested through the C ABI (ffi/tests).

mod common;

use std::time::Duration;

use common::{small, TempDir};
use larder::{Cache, Error, Lease, Leased, LoadOptions, SetOptions};

fn cache(tag: &str) -> (TempDir, Cache) {
    let d = TempDir::new(tag);
    let c = Cache::create(d.arena(), &small(4 << 20)).unwrap();
    (d, c)
}

fn opts(lease: Duration) -> LoadOptions {
    LoadOptions::new().lease(lease)
}

fn acquired(l: Leased) -> Lease {
    match l {
        Leased::Acquired(lease) => lease,
        other => panic!("expected the lease, got {other:?}"),
    }
}

#[test]
fn a_miss_gives_one_caller_the_lease_and_the_others_wait_for_its_value() {
    let (_d, c) = cache("lease-miss");
    let other = Cache::open(c.path()).unwrap();
    let o = opts(Duration::from_secs(10));
    let mut buf = b"old contents".to_vec();
    let lease = acquired(c.get_or_lease(b"k", &o, &mut buf).unwrap());
    assert!(buf.is_empty(), "the holder's buffer is emptied");
    for _ in 0..3 {
        match other.get_or_lease(b"k", &o, &mut buf).unwrap() {
            Leased::Wait { retry_after } => {
                assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(10))
            }
            l => panic!("a second caller must wait while the lease is held, got {l:?}"),
        }
    }
    assert!(c
        .fill_lease(b"k", lease, b"loaded", &SetOptions::new())
        .unwrap());
    assert_eq!(other.get_or_lease(b"k", &o, &mut buf).unwrap(), Leased::Hit);
    assert_eq!(buf, b"loaded");
    // The lease is free again: a later miss of the same key takes it anew.
    c.delete(b"k").unwrap();
    let again = acquired(other.get_or_lease(b"k", &o, &mut buf).unwrap());
    other.release_lease(b"k", again).unwrap();
}

#[test]
fn a_released_lease_goes_to_the_next_caller_and_nothing_is_stored() {
    let (_d, c) = cache("lease-release");
    let o = opts(Duration::from_secs(10));
    let mut buf = Vec::new();
    let lease = acquired(c.get_or_lease(b"k", &o, &mut buf).unwrap());
    c.release_lease(b"k", lease).unwrap();
    assert_eq!(c.get(b"k").unwrap(), None);
    let next = acquired(c.get_or_lease(b"k", &o, &mut buf).unwrap());
    c.release_lease(b"k", next).unwrap();
}

#[test]
fn an_expired_value_within_its_grace_is_served_stale_while_one_caller_refreshes() {
    let (_d, c) = cache("lease-stale");
    let set = SetOptions::new()
        .ttl(Duration::from_secs(1))
        .stale_grace(Duration::from_secs(60));
    c.set_with(b"k", b"v1", &set).unwrap();
    let o = opts(Duration::from_secs(10));
    let mut buf = Vec::new();
    assert_eq!(c.get_or_lease(b"k", &o, &mut buf).unwrap(), Leased::Hit);
    assert_eq!(buf, b"v1");
    std::thread::sleep(Duration::from_millis(2100));
    let lease = acquired(c.get_or_lease(b"k", &o, &mut buf).unwrap());
    assert!(buf.is_empty());
    assert_eq!(c.get_or_lease(b"k", &o, &mut buf).unwrap(), Leased::Stale);
    assert_eq!(buf, b"v1");
    assert!(c.fill_lease(b"k", lease, b"v2", &set).unwrap());
    assert_eq!(c.get_or_lease(b"k", &o, &mut buf).unwrap(), Leased::Hit);
    assert_eq!(buf, b"v2");
}

#[test]
fn an_invalidation_while_loading_keeps_the_loaded_value_out() {
    let (_d, c) = cache("lease-poison");
    let o = opts(Duration::from_secs(10));
    let mut buf = Vec::new();
    let lease = acquired(c.get_or_lease(b"k", &o, &mut buf).unwrap());
    // A writer changes the backing store and invalidates while the holder loads.
    c.invalidate(b"k").unwrap();
    assert!(!c
        .fill_lease(b"k", lease, b"loaded before the change", &SetOptions::new())
        .unwrap());
    assert_eq!(c.get(b"k").unwrap(), None);
}

#[test]
fn an_invalidation_then_a_new_loader_in_the_same_instant_still_keeps_the_old_value_out() {
    // The hot-key stampede after a write: the invalidation frees the lease and the next
    // reader's miss takes it microseconds later, with the same lease time, usually in the
    // same 10 ms lease tick. The first loader's value predates the write and must not stay.
    let (_d, c) = cache("lease-poison-retaken");
    let other = Cache::open(c.path()).unwrap();
    let o = opts(Duration::from_secs(10));
    let mut buf = Vec::new();
    for round in 0..50 {
        let first = acquired(c.get_or_lease(b"k", &o, &mut buf).unwrap());
        c.invalidate(b"k").unwrap();
        let second = acquired(other.get_or_lease(b"k", &o, &mut buf).unwrap());
        assert!(
            !c.fill_lease(b"k", first, b"read before the write", &SetOptions::new())
                .unwrap(),
            "round {round}: the first loader's value was kept"
        );
        assert_eq!(c.get(b"k").unwrap(), None);
        // The second loader read after the write: its value stays.
        assert!(other
            .fill_lease(b"k", second, b"read after the write", &SetOptions::new())
            .unwrap());
        assert_eq!(
            c.get(b"k").unwrap().as_deref(),
            Some(&b"read after the write"[..])
        );
        c.delete(b"k").unwrap();
    }
}

#[test]
fn a_lease_for_another_key_is_refused_and_the_real_one_still_works() {
    let (_d, c) = cache("lease-wrong");
    let o = opts(Duration::from_secs(10));
    let mut buf = Vec::new();
    let lease = acquired(c.get_or_lease(b"a", &o, &mut buf).unwrap());
    assert!(matches!(
        c.fill_lease(b"b", lease, b"x", &SetOptions::new()),
        Err(Error::WrongLease)
    ));
    assert!(matches!(
        c.release_lease(b"b", lease),
        Err(Error::WrongLease)
    ));
    assert_eq!(c.get(b"b").unwrap(), None);
    // Through its words and back, as a C caller keeps it.
    let kept = Lease::from_words(lease.to_words());
    assert!(c.fill_lease(b"a", kept, b"x", &SetOptions::new()).unwrap());
    assert_eq!(c.get(b"a").unwrap().as_deref(), Some(&b"x"[..]));
}

#[test]
fn a_lease_nobody_gives_back_runs_out() {
    let (_d, c) = cache("lease-expire");
    let o = opts(Duration::from_millis(300));
    let mut buf = Vec::new();
    let _forgotten = acquired(c.get_or_lease(b"k", &o, &mut buf).unwrap());
    assert!(matches!(
        c.get_or_lease(b"k", &o, &mut buf).unwrap(),
        Leased::Wait { .. }
    ));
    std::thread::sleep(Duration::from_millis(700));
    let lease = acquired(c.get_or_lease(b"k", &o, &mut buf).unwrap());
    c.release_lease(b"k", lease).unwrap();
}

#[test]
fn bad_keys_and_lease_times_are_errors() {
    let (_d, c) = cache("lease-bad");
    let mut buf = Vec::new();
    assert!(matches!(
        c.get_or_lease(b"", &LoadOptions::new(), &mut buf),
        Err(Error::EmptyKey { .. })
    ));
    assert!(matches!(
        c.get_or_lease(b"k", &opts(Duration::MAX), &mut buf),
        Err(Error::InvalidTtl { .. })
    ));
}

#[test]
fn mark_stale_and_get_revalidating_hand_out_one_refresh_of_a_stale_value() {
    use larder::{Found, Revalidate};
    let (_d, c) = cache("revalidate");
    let long = Duration::from_secs(30);
    let tagged = SetOptions::new()
        .ttl(Duration::from_secs(600))
        .tag("t")
        .flags(7);
    c.set_with(b"k", b"old", &tagged).unwrap();
    assert!(c.mark_stale(b"k", Duration::from_secs(60)).unwrap());
    assert!(!c.mark_stale(b"absent", long).unwrap());
    // Stale now: get misses, get_stale serves it; flags and tags came through.
    assert_eq!(c.get(b"k").unwrap(), None);
    assert!(c.get_stale(b"k").unwrap().unwrap().stale);
    let mut v = Vec::new();
    let (found, first) = c.get_revalidating(b"k", &mut v, long, false, None).unwrap();
    let Found::Stale(meta, left) = found else {
        panic!("{found:?}")
    };
    assert_eq!((v.as_slice(), meta.flags), (&b"old"[..], 7));
    assert!(
        left <= Duration::from_secs(60) && left >= Duration::from_secs(58),
        "{left:?}"
    );
    let Revalidate::Won(lease) = first else {
        panic!("{first:?}")
    };
    let (_, second) = c.get_revalidating(b"k", &mut v, long, false, None).unwrap();
    assert!(
        matches!(second, Revalidate::Held(d) if d <= long),
        "{second:?}"
    );
    c.invalidate_tag("t").unwrap();
    assert!(c.get_stale(b"k").unwrap().is_none(), "its tag still counts");
    c.fill_lease(b"k", lease, b"new", &SetOptions::new())
        .unwrap();
    // Live: no refresh unless near its end.
    let (found, rv) = c.get_revalidating(b"k", &mut v, long, false, None).unwrap();
    assert!(matches!(found, Found::Live(_, None)) && rv == Revalidate::NotNeeded);
    c.set(b"n", b"v", Some(Duration::from_secs(10))).unwrap();
    let (_, rv) = c
        .get_revalidating(b"n", &mut v, long, false, Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(rv, Revalidate::NotNeeded, "10 s left is not below 5 s");
    let (_, rv) = c
        .get_revalidating(b"n", &mut v, long, false, Some(Duration::from_secs(20)))
        .unwrap();
    let Revalidate::Won(l) = rv else {
        panic!("{rv:?}")
    };
    c.release_lease(b"n", l).unwrap();
    // A miss: a refresh only when asked to vivify.
    let (found, rv) = c.get_revalidating(b"m", &mut v, long, false, None).unwrap();
    assert_eq!((found, rv), (Found::Missing, Revalidate::NotNeeded));
    let (_, rv) = c.get_revalidating(b"m", &mut v, long, true, None).unwrap();
    assert!(matches!(rv, Revalidate::Won(_)));
}
