//! Many threads of one process on one arena small enough that eviction runs all the time:
//! every value read is verified, adds of one key succeed once, increments are never lost.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{check_value, make_value, small, TempDir};
use larder::Cache;

#[test]
fn readers_never_see_torn_or_foreign_values_under_eviction() {
    let d = TempDir::new("stress");
    let c = Cache::create(d.arena(), &small(2 << 20)).unwrap();
    let stop = Instant::now() + Duration::from_millis(1500);
    let reads = Arc::new(AtomicU64::new(0));
    let hits = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (c, reads, hits) = (c.clone(), reads.clone(), hits.clone());
            std::thread::spawn(move || {
                let mut x = t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                let mut buf = Vec::new();
                let mut seq = t << 40;
                while Instant::now() < stop {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let key = format!("k{}", (x >> 20) % 3000).into_bytes();
                    if x % 3 == 0 {
                        seq += 1;
                        c.set(&key, &make_value(&key, seq, 1500), None).unwrap();
                    } else {
                        buf.clear();
                        reads.fetch_add(1, Ordering::Relaxed);
                        if c.get_into(&key, &mut buf).unwrap() {
                            hits.fetch_add(1, Ordering::Relaxed);
                            if let Err(e) = check_value(&key, &buf) {
                                panic!("bad value under {:?}: {e}", String::from_utf8_lossy(&key));
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = c.stats();
    assert!(
        s.totals.evictions > 0,
        "the arena must be small enough to evict: {s:?}"
    );
    assert!(
        hits.load(Ordering::Relaxed) > 1000,
        "{} hits of {} reads",
        hits.load(Ordering::Relaxed),
        reads.load(Ordering::Relaxed)
    );
    assert_eq!(s.totals.corrupt, 0);
    for k in c.keys() {
        let v = c.get(&k).unwrap();
        if let Some(v) = v {
            check_value(&k, &v).unwrap();
        }
    }
}

#[test]
fn concurrent_adds_of_one_key_succeed_once() {
    let d = TempDir::new("stress");
    let c = Cache::create(d.arena(), &small(4 << 20)).unwrap();
    let n = 4;
    for round in 0..300u32 {
        let key = format!("race{round}").into_bytes();
        let barrier = Arc::new(Barrier::new(n));
        let wins: u32 = (0..n)
            .map(|t| {
                let (c, key, barrier) = (c.clone(), key.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    u32::from(c.add(&key, format!("{t}").as_bytes(), None).unwrap())
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(wins, 1, "round {round}");
        assert!(c.delete(&key).unwrap());
        assert_eq!(
            c.get(&key).unwrap(),
            None,
            "a delete must not expose a second copy"
        );
    }
}

#[test]
fn increments_from_many_threads_are_never_lost() {
    let d = TempDir::new("stress");
    let c = Cache::create(d.arena(), &small(2 << 20)).unwrap();
    c.set(b"ctr", b"0", None).unwrap();
    let per = 3000;
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || {
                let filler = vec![t as u8; 2000];
                for i in 0..per {
                    assert!(c.incr(b"ctr", 1).unwrap().is_some());
                    // Churn other keys so segments fill, seal and get evicted meanwhile.
                    c.set(format!("f{t}-{i}").as_bytes(), &filler, None)
                        .unwrap();
                    // Keep the counter referenced so CLOCK copies it forward.
                    c.get(b"ctr").unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(c.stats().totals.evictions > 0);
    assert_eq!(
        c.get(b"ctr").unwrap().as_deref(),
        Some(format!("{}", 4 * per).as_bytes())
    );
}
