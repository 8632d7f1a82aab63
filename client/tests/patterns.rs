//! Caching patterns: stampede protection across processes (and a loader SIGKILLed mid-load),
//! stale reads during a refresh, early refresh, tags across processes, write-through and
//! write-behind, warm-up.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use common::{small, TempDir};
use larder::{Cache, LoadOptions, SetOptions, Store, WriteBehind, WriteError, WriteThrough};

const ROLE: &str = "LARDER_PATTERNS_ROLE";

/// Re-executes this test binary as a worker process running `role`.
fn spawn(role: &str, arena: &Path, extra: &[(&str, &str)]) -> Child {
    let mut c = larder_testkit::worker("worker");
    c.env(ROLE, role).env("LARDER_TEST_ARENA", arena);
    for (k, v) in extra {
        c.env(k, v);
    }
    c.stdout(std::process::Stdio::null()).spawn().unwrap()
}

struct Reap(Vec<Child>);
impl Drop for Reap {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Entry point of worker processes (does nothing in a normal test run).
#[test]
fn worker() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let arena = std::env::var("LARDER_TEST_ARENA").unwrap();
    let cache = Cache::open(&arena).unwrap();
    match role.as_str() {
        "stampede" => {
            // 8 threads miss the same key at once; the loader counts its runs in the arena.
            let start: u64 = std::env::var("START_AT_MS").unwrap().parse().unwrap();
            let now = || {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as u64
            };
            while now() < start {
                std::thread::sleep(Duration::from_millis(1));
            }
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    let c = cache.clone();
                    std::thread::spawn(move || {
                        c.get_or_insert_with(b"hot", None, || {
                            c.incr(b"loads", 1).unwrap();
                            std::thread::sleep(Duration::from_millis(300));
                            Ok::<_, String>(b"loaded once".to_vec())
                        })
                        .unwrap()
                    })
                })
                .collect();
            for t in threads {
                assert_eq!(t.join().unwrap(), b"loaded once");
            }
        }
        "hang-in-loader" => {
            let _ = cache.get_or_load(
                b"k",
                &LoadOptions::new().lease(Duration::from_secs(1)),
                || {
                    std::fs::write(std::env::var("STARTED").unwrap(), b"1").unwrap();
                    std::thread::sleep(Duration::from_secs(600));
                    Ok::<_, String>(b"never".to_vec())
                },
            );
        }
        "invalidate" => cache.invalidate_tag(std::env::var("TAG").unwrap()).unwrap(),
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn stampede_across_4_processes_x_8_threads_loads_once() {
    let d = TempDir::new("patterns");
    let c = Cache::create(d.arena(), &small(4 << 20)).unwrap();
    c.set(b"loads", b"0", None).unwrap();
    let start = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 700)
        .to_string();
    let mut kids = Reap(
        (0..4)
            .map(|_| spawn("stampede", &d.arena(), &[("START_AT_MS", &start)]))
            .collect(),
    );
    for k in &mut kids.0 {
        assert!(k.wait().unwrap().success());
    }
    assert_eq!(
        c.get(b"loads").unwrap().as_deref(),
        Some(&b"1"[..]),
        "the loader must run exactly once"
    );
    assert_eq!(c.get(b"hot").unwrap().as_deref(), Some(&b"loaded once"[..]));
}

#[test]
fn a_loader_killed_mid_load_blocks_others_only_until_its_lease_expires() {
    let d = TempDir::new("patterns");
    let c = Cache::create(d.arena(), &small(4 << 20)).unwrap();
    let started = d.0.join("started");
    let mut kids = Reap(vec![spawn(
        "hang-in-loader",
        &d.arena(),
        &[("STARTED", started.to_str().unwrap())],
    )]);
    let t0 = Instant::now();
    while !started.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the loader never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    kids.0[0].kill().unwrap();
    kids.0[0].wait().unwrap();
    let t1 = Instant::now();
    let ran = AtomicUsize::new(0);
    let v = c
        .get_or_load(
            b"k",
            &LoadOptions::new().lease(Duration::from_secs(1)),
            || {
                ran.fetch_add(1, Ordering::Relaxed);
                Ok::<_, String>(b"second".to_vec())
            },
        )
        .unwrap();
    assert_eq!(v, b"second");
    assert_eq!(ran.load(Ordering::Relaxed), 1);
    assert!(
        t1.elapsed() < Duration::from_secs(5),
        "waited {:?}",
        t1.elapsed()
    );
}

#[test]
fn loader_errors_are_returned_and_not_cached() {
    let d = TempDir::new("patterns");
    let c = Cache::create(d.arena(), &small(4 << 20)).unwrap();
    let r = c.get_or_insert_with(b"k", None, || Err::<Vec<u8>, _>("backend down"));
    assert!(matches!(r, Err(larder::LoadError::Loader("backend down"))));
    assert_eq!(c.get(b"k").unwrap(), None);
    assert_eq!(
        c.get_or_insert_with(b"k", None, || Ok::<_, String>(b"v".to_vec()))
            .unwrap(),
        b"v"
    );
}

#[test]
fn add_with_stores_only_over_no_live_value_and_keeps_its_options() {
    let d = TempDir::new("patterns");
    let clock = Arc::new(AtomicU64::new(3_000_000_000));
    let c = Cache::create(d.arena(), &small(4 << 20))
        .unwrap()
        .with_manual_clock(clock.clone());
    let opts = SetOptions::new()
        .ttl(Duration::from_secs(10))
        .stale_grace(Duration::from_secs(100));
    assert!(c.add_with(b"k", b"first", &opts).unwrap());
    assert!(
        !c.add_with(b"k", b"second", &opts).unwrap(),
        "a live value stays"
    );
    assert_eq!(c.get(b"k").unwrap().as_deref(), Some(&b"first"[..]));
    clock.store(3_000_000_020, Ordering::Relaxed);
    let s = c
        .get_stale(b"k")
        .unwrap()
        .expect("within the grace add_with gave it");
    assert_eq!((s.value.as_slice(), s.stale), (&b"first"[..], true));
    assert!(
        c.add_with(b"k", b"third", &opts).unwrap(),
        "over an expired value"
    );
}

#[test]
fn replace_with_stores_only_over_a_live_value_and_keeps_its_options() {
    let d = TempDir::new("patterns");
    let clock = Arc::new(AtomicU64::new(3_000_000_000));
    let c = Cache::create(d.arena(), &small(4 << 20))
        .unwrap()
        .with_manual_clock(clock.clone());
    let opts = SetOptions::new()
        .ttl(Duration::from_secs(10))
        .stale_grace(Duration::from_secs(100))
        .tag("t");
    assert!(
        !c.replace_with(b"k", b"v", &opts).unwrap(),
        "nothing to replace"
    );
    assert_eq!(c.get(b"k").unwrap(), None);
    c.set(b"k", b"first", None).unwrap();
    assert!(c.replace_with(b"k", b"second", &opts).unwrap());
    assert_eq!(c.get(b"k").unwrap().as_deref(), Some(&b"second"[..]));
    clock.store(3_000_000_020, Ordering::Relaxed);
    let s = c
        .get_stale(b"k")
        .unwrap()
        .expect("within the grace replace_with gave it");
    assert_eq!((s.value.as_slice(), s.stale), (&b"second"[..], true));
    assert!(
        !c.replace_with(b"k", b"third", &opts).unwrap(),
        "over an expired value"
    );
    c.set_with(b"k", b"fourth", &opts).unwrap();
    c.invalidate_tag("t").unwrap();
    assert_eq!(c.get(b"k").unwrap(), None, "the tag it was stored with");
}

#[test]
fn stale_value_is_served_exactly_while_a_refresh_is_in_flight() {
    let d = TempDir::new("patterns");
    let clock = Arc::new(AtomicU64::new(3_000_000_000));
    let c = Cache::create(d.arena(), &small(4 << 20))
        .unwrap()
        .with_manual_clock(clock.clone());
    let opts = LoadOptions::new().store(
        SetOptions::new()
            .ttl(Duration::from_secs(10))
            .stale_grace(Duration::from_secs(100)),
    );
    assert_eq!(
        c.get_or_load(b"k", &opts, || Ok::<_, String>(b"old".to_vec()))
            .unwrap(),
        b"old"
    );
    clock.store(3_000_000_020, Ordering::Relaxed); // expired, within grace
    assert_eq!(c.get(b"k").unwrap(), None, "expired: a plain get misses");
    let s = c.get_stale(b"k").unwrap().unwrap();
    assert_eq!((s.value.as_slice(), s.stale), (&b"old"[..], true));
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let in_loader = Arc::new(Barrier::new(2));
    let refresher = {
        let (c, opts, in_loader) = (c.clone(), opts.clone(), in_loader.clone());
        std::thread::spawn(move || {
            c.get_or_load(b"k", &opts, || {
                in_loader.wait();
                rx.recv().unwrap();
                Ok::<_, String>(b"new".to_vec())
            })
            .unwrap()
        })
    };
    in_loader.wait();
    // The refresh is in flight: others get the stale value at once, without loading.
    let v = c
        .get_or_load(b"k", &opts, || -> Result<Vec<u8>, String> {
            panic!("a second loader ran")
        })
        .unwrap();
    assert_eq!(v, b"old");
    assert_eq!(c.get_stale(b"k").unwrap().unwrap().value, b"old");
    tx.send(()).unwrap();
    assert_eq!(refresher.join().unwrap(), b"new");
    let s = c.get_stale(b"k").unwrap().unwrap();
    assert_eq!((s.value.as_slice(), s.stale), (&b"new"[..], false));
    clock.store(3_000_000_200, Ordering::Relaxed); // past expiry and grace
    assert_eq!(c.get_stale(b"k").unwrap(), None);
}

#[test]
fn early_refresh_happens_near_expiry_only_when_asked() {
    let d = TempDir::new("patterns");
    let clock = Arc::new(AtomicU64::new(3_000_000_000));
    let c = Cache::create(d.arena(), &small(4 << 20))
        .unwrap()
        .with_manual_clock(clock.clone());
    let loads = AtomicUsize::new(0);
    let load = || {
        loads.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(20));
        Ok::<_, String>(b"v".to_vec())
    };
    let plain = LoadOptions::new().store(SetOptions::new().ttl(Duration::from_secs(100)));
    let early = plain.clone().early_refresh(200.0);
    c.get_or_load(b"k", &plain, load).unwrap();
    assert_eq!(loads.load(Ordering::Relaxed), 1);
    // Far from expiry, even an eager beta does not refresh.
    for _ in 0..20 {
        c.get_or_load(b"k", &early, load).unwrap();
    }
    assert_eq!(loads.load(Ordering::Relaxed), 1);
    // One second before expiry: without early refresh, never; with beta 200 and a 20 ms
    // load, each hit refreshes with probability ~0.8.
    clock.store(3_000_000_099, Ordering::Relaxed);
    for _ in 0..20 {
        c.get_or_load(b"k", &plain, load).unwrap();
    }
    assert_eq!(loads.load(Ordering::Relaxed), 1);
    c.get_or_load(b"k", &early, load).unwrap();
    for _ in 0..20 {
        c.get_or_load(b"k", &early, load).unwrap();
        if loads.load(Ordering::Relaxed) > 1 {
            break;
        }
    }
    assert!(
        loads.load(Ordering::Relaxed) > 1,
        "no early refresh in 21 hits"
    );
}

#[test]
fn tag_invalidation_from_another_process_is_seen_at_once() {
    let d = TempDir::new("patterns");
    let c = Cache::create(d.arena(), &small(4 << 20)).unwrap();
    c.set_with(b"a", b"1", &SetOptions::new().tag("user:1"))
        .unwrap();
    c.set_with(b"b", b"2", &SetOptions::new().tag("user:1").tag("team:9"))
        .unwrap();
    c.set_with(b"c", b"3", &SetOptions::new().tag("team:9"))
        .unwrap();
    c.set(b"d", b"4", None).unwrap();
    let mut kid = Reap(vec![spawn("invalidate", &d.arena(), &[("TAG", "user:1")])]);
    assert!(kid.0[0].wait().unwrap().success());
    assert_eq!(c.get(b"a").unwrap(), None);
    assert_eq!(c.get(b"b").unwrap(), None);
    assert_eq!(c.get(b"c").unwrap().as_deref(), Some(&b"3"[..]));
    assert_eq!(c.get(b"d").unwrap().as_deref(), Some(&b"4"[..]));
    // Items tagged after the invalidation are live; incr and touch keep the tags.
    c.set_with(b"n", b"1", &SetOptions::new().tag("user:1"))
        .unwrap();
    assert_eq!(c.incr(b"n", 1).unwrap(), Some(2));
    c.invalidate_tag("user:1").unwrap();
    assert_eq!(c.get(b"n").unwrap(), None, "incr must keep the item's tags");
    assert!(matches!(
        c.set_with(
            b"x",
            b"v",
            &(0..9).fold(SetOptions::new(), |o, i| o.tag(format!("t{i}")))
        ),
        Err(larder::Error::TooManyTags { count: 9, max: 8 })
    ));
}

#[derive(Default)]
struct MapStore {
    data: Mutex<HashMap<Vec<u8>, Vec<u8>>>,
    writes: AtomicUsize,
}

impl Store for MapStore {
    type Error = String;
    fn write(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        if key.starts_with(b"bad") {
            return Err(format!("refused {}", String::from_utf8_lossy(key)));
        }
        self.data
            .lock()
            .unwrap()
            .insert(key.to_vec(), value.to_vec());
        Ok(())
    }
    fn remove(&self, key: &[u8]) -> Result<(), String> {
        self.data.lock().unwrap().remove(key);
        Ok(())
    }
}

#[test]
fn write_through_invalidates_and_a_store_failure_changes_nothing() {
    let d = TempDir::new("patterns");
    let c = Cache::create(d.arena(), &small(4 << 20)).unwrap();
    let wt = WriteThrough::new(c.clone(), MapStore::default());
    let load = |k: &[u8]| {
        let k = k.to_vec();
        let store = wt.store();
        move || {
            Ok::<_, String>(
                store
                    .data
                    .lock()
                    .unwrap()
                    .get(&k)
                    .cloned()
                    .unwrap_or_default(),
            )
        }
    };
    wt.write(b"k", b"v1").unwrap();
    assert_eq!(c.get_or_insert_with(b"k", None, load(b"k")).unwrap(), b"v1");
    wt.write(b"k", b"v2").unwrap();
    assert_eq!(
        c.get(b"k").unwrap(),
        None,
        "the write invalidated the cached value"
    );
    assert_eq!(c.get_or_insert_with(b"k", None, load(b"k")).unwrap(), b"v2");
    c.set(b"bad1", b"cached", None).unwrap();
    assert!(matches!(wt.write(b"bad1", b"x"), Err(WriteError::Store(_))));
    assert_eq!(
        c.get(b"bad1").unwrap().as_deref(),
        Some(&b"cached"[..]),
        "a failed store write leaves the cache alone"
    );
    // A loader that read the store before a concurrent write must not leave its older
    // value cached.
    assert!(c.delete(b"k").unwrap());
    let v = c
        .get_or_insert_with(b"k", None, || {
            let old = wt
                .store()
                .data
                .lock()
                .unwrap()
                .get(&b"k"[..])
                .cloned()
                .unwrap();
            wt.write(b"k", b"v3").unwrap();
            Ok::<_, String>(old)
        })
        .unwrap();
    assert_eq!(v, b"v2");
    assert_eq!(
        c.get(b"k").unwrap(),
        None,
        "the stale load must not stay cached"
    );
    assert_eq!(c.get_or_insert_with(b"k", None, load(b"k")).unwrap(), b"v3");
}

#[test]
fn write_behind_delivers_every_acknowledged_write_and_reports_failures() {
    let d = TempDir::new("patterns");
    let c = Cache::create(d.arena(), &small(4 << 20)).unwrap();
    let store = Arc::new(MapStore::default());
    let wb = WriteBehind::new(c.clone(), store.clone(), 16);
    for i in 0..500 {
        wb.write(format!("k{i}").as_bytes(), format!("v{i}").as_bytes(), None)
            .unwrap();
        assert!(
            c.get(format!("k{i}").as_bytes()).unwrap().is_some(),
            "the cache is updated at once"
        );
    }
    wb.write(b"bad-a", b"x", None).unwrap();
    wb.write(b"bad-b", b"y", None).unwrap();
    wb.remove(b"k0").unwrap();
    let failed = wb.flush().unwrap_err();
    let mut keys: Vec<_> = failed.iter().map(|(k, _)| k.clone()).collect();
    keys.sort();
    assert_eq!(keys, vec![b"bad-a".to_vec(), b"bad-b".to_vec()]);
    let data = store.data.lock().unwrap();
    assert_eq!(data.len(), 499);
    for i in 1..500 {
        assert_eq!(
            data.get(format!("k{i}").as_bytes()).map(|v| v.as_slice()),
            Some(format!("v{i}").as_bytes())
        );
    }
    drop(data);
    assert!(wb.flush().is_ok(), "errors are reported once");
}

#[test]
fn warm_preloads_everything() {
    let d = TempDir::new("patterns");
    let c = Cache::create(d.arena(), &small(4 << 20)).unwrap();
    let n = c
        .warm((0..300).map(|i| (format!("w{i}"), format!("{i}"), None)))
        .unwrap();
    assert_eq!(n, 300);
    for i in 0..300 {
        assert_eq!(
            c.get(format!("w{i}").as_bytes()).unwrap(),
            Some(format!("{i}").into_bytes())
        );
    }
}

#[test]
fn tagged_items_do_not_travel_so_a_restored_copy_cannot_escape_invalidation() {
    // Snapshots, dumps and resizes all copy `entries()` into another arena, where tag
    // versions start afresh. A tagged item copied without its tags would be served after
    // the invalidate_tag meant to drop it, so it is not copied at all.
    let d = TempDir::new("tags-travel");
    let a = Cache::create(d.0.join("a"), &small(4 << 20)).unwrap();
    a.set(b"plain", b"1", None).unwrap();
    a.set_with(b"tagged", b"2", &SetOptions::new().tag("user:42"))
        .unwrap();
    let copied: Vec<_> = a.entries().collect();
    assert_eq!(copied.len(), 1, "{copied:?}");
    assert_eq!(copied[0].key, b"plain");

    let b = Cache::create(d.0.join("b"), &small(4 << 20)).unwrap();
    for e in copied {
        b.set(&e.key, &e.value, e.ttl).unwrap();
    }
    b.invalidate_tag("user:42").unwrap();
    a.invalidate_tag("user:42").unwrap();
    for c in [&a, &b] {
        assert_eq!(c.get(b"tagged").unwrap(), None);
        assert_eq!(c.get(b"plain").unwrap().as_deref(), Some(&b"1"[..]));
    }
}
