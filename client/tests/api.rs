//! The public API, operation by operation, and every bad input.

mod common;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use common::{small, TempDir};
use larder::{Cache, CasOutcome, Config, Error, LoadError, LoadOptions, OpenError, SetOptions};

#[test]
fn set_get_delete_round_trip() {
    let d = TempDir::new("api");
    let c = Cache::create(d.arena(), &small(4 << 20)).unwrap();
    assert_eq!(c.get(b"k").unwrap(), None);
    c.set(b"k", b"v1", None).unwrap();
    assert_eq!(c.get(b"k").unwrap().as_deref(), Some(&b"v1"[..]));
    c.set(b"k", b"value two", None).unwrap();
    assert_eq!(c.get(b"k").unwrap().as_deref(), Some(&b"value two"[..]));
    assert!(c.delete(b"k").unwrap());
    assert!(!c.delete(b"k").unwrap());
    assert_eq!(c.get(b"k").unwrap(), None);
    // Empty values and every alignment of key and value lengths.
    for klen in 1..20usize {
        for vlen in [0usize, 1, 7, 8, 9, 15, 16, 17, 100] {
            let key: Vec<u8> = (0..klen).map(|i| b'a' + (i % 26) as u8).collect();
            let val: Vec<u8> = (0..vlen).map(|i| (i * 31 + klen) as u8).collect();
            c.set(&key, &val, None).unwrap();
            assert_eq!(
                c.get(&key).unwrap().as_deref(),
                Some(&val[..]),
                "klen {klen} vlen {vlen}"
            );
        }
    }
}

#[test]
fn get_into_replaces_the_buffer_and_keeps_its_capacity() {
    let d = TempDir::new("api");
    let c = Cache::create(d.arena(), &small(4 << 20)).unwrap();
    c.set(b"a", b"xyz", None).unwrap();
    c.set(b"long", &[7u8; 300], None).unwrap();
    // A reused buffer, as the README shows it: each hit holds exactly the value asked for.
    let mut buf = b"pre-".to_vec();
    assert!(c.get_into(b"long", &mut buf).unwrap());
    assert_eq!(buf, [7u8; 300]);
    let cap = buf.capacity();
    let ptr = buf.as_ptr();
    assert!(c.get_into(b"a", &mut buf).unwrap());
    assert_eq!(buf, b"xyz");
    assert_eq!((buf.capacity(), buf.as_ptr()), (cap, ptr), "reallocated");
    // A miss leaves it empty, never holding an earlier value that could pass for this key's.
    assert!(!c.get_into(b"nope", &mut buf).unwrap());
    assert!(buf.is_empty());
    assert!(matches!(
        c.get_into(b"", &mut buf),
        Err(Error::EmptyKey { .. })
    ));
    assert!(buf.is_empty());
    let got = c.get_multi(&[&b"a"[..], b"nope"]).unwrap();
    assert_eq!(got, vec![Some(b"xyz".to_vec()), None]);
}

#[test]
fn add_replace_cas() {
    let d = TempDir::new("api");
    let c = Cache::create(d.arena(), &small(4 << 20)).unwrap();
    assert!(!c.replace(b"k", b"r", None).unwrap());
    assert!(c.add(b"k", b"a1", None).unwrap());
    assert!(!c.add(b"k", b"a2", None).unwrap());
    assert_eq!(c.get(b"k").unwrap().as_deref(), Some(&b"a1"[..]));
    assert!(c.replace(b"k", b"r", None).unwrap());
    let (v, t) = c.gets(b"k").unwrap().unwrap();
    assert_eq!(v, b"r");
    c.set(b"k", b"changed", None).unwrap();
    assert_eq!(c.cas(b"k", b"late", t, None).unwrap(), CasOutcome::Exists);
    let (_, t2) = c.gets(b"k").unwrap().unwrap();
    assert_ne!(t, t2);
    assert_eq!(c.cas(b"k", b"won", t2, None).unwrap(), CasOutcome::Stored);
    assert_eq!(c.get(b"k").unwrap().as_deref(), Some(&b"won"[..]));
    assert_eq!(c.cas(b"k", b"again", t2, None).unwrap(), CasOutcome::Exists);
    c.delete(b"k").unwrap();
    assert_eq!(c.cas(b"k", b"x", t2, None).unwrap(), CasOutcome::NotFound);
}

#[test]
fn incr_decr() {
    let d = TempDir::new("api");
    let c = Cache::create(d.arena(), &small(4 << 20)).unwrap();
    assert_eq!(c.incr(b"n", 1).unwrap(), None);
    c.set(b"n", b"41", None).unwrap();
    assert_eq!(c.incr(b"n", 1).unwrap(), Some(42));
    assert_eq!(c.decr(b"n", 50).unwrap(), Some(0));
    c.set(b"n", b"18446744073709551615", None).unwrap();
    assert_eq!(c.incr(b"n", 2).unwrap(), Some(1));
    c.set(b"s", b"abc", None).unwrap();
    assert!(matches!(c.incr(b"s", 1), Err(Error::NotANumber)));
    assert_eq!(c.get(b"s").unwrap().as_deref(), Some(&b"abc"[..]));
}

#[test]
fn ttl_touch_and_expiry_with_a_manual_clock() {
    let d = TempDir::new("api");
    let now = Arc::new(AtomicU64::new(3_000_000_000));
    let c = Cache::create(d.arena(), &small(4 << 20))
        .unwrap()
        .with_manual_clock(now.clone());
    let set_now = |t: u64| now.store(t, std::sync::atomic::Ordering::Relaxed);
    c.set(b"t", b"v", Some(Duration::from_secs(10))).unwrap();
    c.set(b"forever", b"v", None).unwrap();
    assert_eq!(c.ttl(b"t").unwrap(), Some(Some(Duration::from_secs(10))));
    assert_eq!(c.ttl(b"forever").unwrap(), Some(None));
    assert_eq!(c.ttl(b"missing").unwrap(), None);
    set_now(3_000_000_009);
    assert!(c.get(b"t").unwrap().is_some());
    assert!(c.touch(b"t", Some(Duration::from_secs(100))).unwrap());
    set_now(3_000_000_050);
    assert!(c.get(b"t").unwrap().is_some());
    set_now(3_000_000_109);
    assert_eq!(
        c.get(b"t").unwrap(),
        None,
        "expired items are never returned"
    );
    assert!(!c.touch(b"t", Some(Duration::from_secs(5))).unwrap());
    assert!(
        c.add(b"t", b"new", None).unwrap(),
        "add succeeds over an expired item"
    );
    assert_eq!(c.get(b"forever").unwrap().as_deref(), Some(&b"v"[..]));
    // Sub-second TTLs round up; zero is refused.
    c.set(b"ms", b"v", Some(Duration::from_millis(1))).unwrap();
    assert!(c.get(b"ms").unwrap().is_some());
    assert!(matches!(
        c.set(b"z", b"v", Some(Duration::ZERO)),
        Err(Error::InvalidTtl { .. })
    ));
    assert!(matches!(
        c.set(b"z", b"v", Some(Duration::from_secs(u64::MAX / 4))),
        Err(Error::InvalidTtl { .. })
    ));
    // The arena's time range ends 2^31 s after its creation (its epoch: the real clock
    // when it was created, now ~38 years behind the manual one).
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let left = (1u64 << 31) - (3_000_000_109 - epoch);
    let day = 86_400;
    assert!(c
        .set(b"far", b"v", Some(Duration::from_secs(left - day)))
        .is_ok());
    assert!(matches!(
        c.set(b"far", b"v", Some(Duration::from_secs(left + day))),
        Err(Error::InvalidTtl { .. })
    ));
}

#[test]
fn ttls_grace_and_leases_beyond_the_arena_time_range_are_invalid_ttls_not_overflows() {
    let d = TempDir::new("api");
    let c = Cache::create(d.arena(), &small(4 << 20)).unwrap();
    c.set(b"k", b"kept", None).unwrap();
    let huge = [
        Duration::MAX,
        Duration::from_secs(u64::MAX),
        Duration::new(u64::MAX - 1, 1),
        Duration::from_secs(u64::from(u32::MAX)),
        Duration::from_secs(1 << 31),
    ];
    for ttl in huge {
        for r in [
            c.set(b"k", b"v", Some(ttl)),
            c.add(b"new", b"v", Some(ttl)).map(|_| ()),
            c.touch(b"k", Some(ttl)).map(|_| ()),
            c.set_with(b"k", b"v", &SetOptions::new().ttl(ttl)),
        ] {
            assert!(matches!(r, Err(Error::InvalidTtl { .. })), "{ttl:?}: {r:?}");
        }
        // Stale grace: the end of the grace period must lie in the arena's range too.
        let r = c.set_with(
            b"k",
            b"v",
            &SetOptions::new()
                .ttl(Duration::from_secs(60))
                .stale_grace(ttl),
        );
        assert!(
            matches!(r, Err(Error::InvalidTtl { .. })),
            "grace {ttl:?}: {r:?}"
        );
        let r = c.get_or_load(b"loaded", &LoadOptions::new().lease(ttl), || {
            Ok::<_, std::io::Error>(b"v".to_vec())
        });
        assert!(
            matches!(r, Err(LoadError::Cache(Error::InvalidTtl { .. }))),
            "lease {ttl:?}"
        );
    }
    // Nothing was stored or changed by the refused calls.
    assert_eq!(c.get(b"k").unwrap().as_deref(), Some(&b"kept"[..]));
    assert_eq!(c.ttl(b"k").unwrap(), Some(None));
    assert_eq!(c.get(b"new").unwrap(), None);
    assert_eq!(c.get(b"loaded").unwrap(), None);
    // A long but representable grace and lease work.
    let year = Duration::from_secs(365 * 86_400);
    c.set_with(b"g", b"v", &SetOptions::new().ttl(year).stale_grace(year))
        .unwrap();
    let v = c
        .get_or_load(b"loaded", &LoadOptions::new().lease(year), || {
            Ok::<_, std::io::Error>(b"v".to_vec())
        })
        .unwrap();
    assert_eq!(v, b"v");
}

#[test]
fn the_largest_item_with_every_extension_word_fits_a_segment() {
    let d = TempDir::new("api");
    let tags: Vec<String> = (0..8).map(|i| format!("t{i}")).collect();
    let all = |o: SetOptions| tags.iter().fold(o, |o, t| o.tag(t));
    // A limit that fits a 64 KiB segment only without extension words is refused, naming
    // the value that would fit.
    let r = Cache::create(
        d.arena(),
        &Config::new(1 << 20)
            .segment_size(64 << 10)
            .max_key_len(250)
            .max_value_len((64 << 10) - 258),
    );
    match r {
        Err(OpenError::InvalidConfig { reason }) => assert!(reason.contains("65198"), "{reason}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    // Without a value limit, an explicit segment size lowers the default one to what fits.
    let c = Cache::create(
        d.arena(),
        &Config::new(1 << 20).segment_size(64 << 10).max_key_len(250),
    )
    .unwrap();
    let (max_key, max_value) = c.limits();
    assert_eq!((max_key, max_value), (250, (64 << 10) - 8 - 80 - 250));
    // A value of the limit with every extension word is stored and reads back, through
    // get_or_load (which always adds its load time) and with eight tags and client flags,
    // and the items around it are intact.
    let key = vec![b'k'; 250];
    let value = vec![9u8; max_value as usize];
    c.set(b"before", b"x", None).unwrap();
    let opts = LoadOptions::new().store(all(SetOptions::new()
        .stale_grace(Duration::from_secs(5))
        .flags(7)));
    let v = c
        .get_or_load(&key, &opts, || Ok::<_, std::io::Error>(value.clone()))
        .unwrap();
    assert_eq!(v, value);
    assert_eq!(c.get(&key).unwrap().as_deref(), Some(&value[..]));
    for i in 0..20u32 {
        let k = format!("big{i}");
        c.set_with(
            k.as_bytes(),
            &value,
            &all(SetOptions::new().flags(u32::MAX)),
        )
        .unwrap();
        c.set(format!("small{i}").as_bytes(), b"s", None).unwrap();
    }
    assert_eq!(c.get(b"small19").unwrap().as_deref(), Some(&b"s"[..]));
    assert_eq!(c.get(b"big19").unwrap().as_deref(), Some(&value[..]));
    let mut got = Vec::new();
    let meta = c.get_meta_into(b"big19", &mut got).unwrap().unwrap();
    assert_eq!((got == value, meta.flags), (true, u32::MAX));
    assert_eq!(c.stats().totals.corrupt, 0);
    assert!(matches!(
        c.set(&key, &vec![0; max_value as usize + 1], None),
        Err(Error::ValueTooLarge { .. })
    ));
}

#[test]
fn sweep_frees_segments_of_expired_items() {
    let d = TempDir::new("api");
    let now = Arc::new(AtomicU64::new(3_000_000_000));
    let c = Cache::create(d.arena(), &small(4 << 20))
        .unwrap()
        .with_manual_clock(now.clone());
    let val = vec![7u8; 1000];
    for i in 0..600u32 {
        c.set(
            format!("k{i}").as_bytes(),
            &val,
            Some(Duration::from_secs(5)),
        )
        .unwrap();
    }
    let before = c.stats();
    assert!(before.items >= 590, "{before:?}");
    now.store(3_000_000_010, std::sync::atomic::Ordering::Relaxed);
    let r = c.sweep_expired(u32::MAX).unwrap();
    assert!(r.freed >= 8, "{r:?}");
    let after = c.stats();
    assert_eq!(after.items, 0);
    assert!(after.free_segments > before.free_segments);
    assert!(after.totals.expired >= 590);
}

#[test]
fn bad_inputs_are_errors_and_change_nothing() {
    let d = TempDir::new("api");
    let c = Cache::create(d.arena(), &small(4 << 20)).unwrap();
    c.set(b"k", b"v", None).unwrap();
    assert!(matches!(
        c.set(b"", b"v", None),
        Err(Error::EmptyKey { .. })
    ));
    assert!(matches!(c.get(b""), Err(Error::EmptyKey { .. })));
    let long = vec![b'k'; 251];
    assert!(matches!(
        c.set(&long, b"v", None),
        Err(Error::KeyTooLarge { len: 251, max: 250 })
    ));
    assert!(matches!(
        c.set(b"k", &vec![0; 4097], None),
        Err(Error::ValueTooLarge {
            len: 4097,
            max: 4096
        })
    ));
    assert_eq!(c.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(c.stats().totals.sets, 1);
}

#[test]
fn bad_configs_are_errors() {
    let d = TempDir::new("api");
    for cfg in [
        Config::new(0),
        Config::new(100 << 10),
        // 1 MiB values need 2 MiB segments: not four of them in 1 MiB.
        Config::new(1 << 20).max_value_len(1 << 20),
        Config::new(64 << 20).max_key_len(0),
        Config::new(64 << 20).max_key_len(256),
        Config::new(64 << 20).segment_size(1000),
        Config::new(64 << 20)
            .max_value_len(100_000)
            .segment_size(64 << 10),
        Config::new(64 << 20).max_processes(0),
        // Over the item header's 24-bit value length.
        Config::new(256 << 20).max_value_len(16 << 20),
    ] {
        assert!(
            matches!(
                Cache::create(d.arena(), &cfg),
                Err(OpenError::InvalidConfig { .. })
            ),
            "{cfg:?}"
        );
        assert!(!d.arena().exists());
    }
    Cache::create(d.arena(), &small(4 << 20)).unwrap();
    assert!(matches!(
        Cache::create(d.arena(), &small(4 << 20)),
        Err(OpenError::AlreadyExists { .. })
    ));
}

#[test]
fn bad_arena_files_are_refused_before_mapping() {
    use std::os::unix::fs::FileExt;
    let d = TempDir::new("api");
    let p = d.arena();
    // Missing.
    assert!(matches!(Cache::open(&p), Err(OpenError::Io { .. })));
    // A directory.
    assert!(matches!(
        Cache::open(&d.0),
        Err(OpenError::NotAnArena { .. }) | Err(OpenError::Io { .. })
    ));
    // Short, and not an arena.
    std::fs::write(&p, b"hello").unwrap();
    assert!(matches!(Cache::open(&p), Err(OpenError::NotAnArena { .. })));
    std::fs::write(&p, vec![0u8; 8192]).unwrap();
    assert!(matches!(Cache::open(&p), Err(OpenError::NotAnArena { .. })));
    std::fs::remove_file(&p).unwrap();
    // A real arena, then damaged in various ways.
    drop(Cache::create(&p, &small(4 << 20)).unwrap());
    let f = std::fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(&p)
        .unwrap();
    let orig = std::fs::read(&p).unwrap();
    f.write_all_at(&1u32.to_le_bytes(), 8).unwrap();
    assert!(matches!(
        Cache::open(&p),
        Err(OpenError::LayoutVersion {
            found: 1,
            expected: 4,
            ..
        })
    ));
    f.write_all_at(&orig[8..12], 8).unwrap();
    f.write_all_at(&[orig[40] ^ 1], 40).unwrap();
    assert!(
        matches!(Cache::open(&p), Err(OpenError::BadArena { .. })),
        "crc must catch a flipped count"
    );
    f.write_all_at(&orig[40..41], 40).unwrap();
    f.set_len(orig.len() as u64 - 4096).unwrap();
    assert!(
        matches!(Cache::open(&p), Err(OpenError::BadArena { .. })),
        "truncated"
    );
    f.set_len(orig.len() as u64 + 4096).unwrap();
    assert!(
        matches!(Cache::open(&p), Err(OpenError::BadArena { .. })),
        "grown"
    );
    f.set_len(orig.len() as u64).unwrap();
    Cache::open(&p).expect("restored arena opens");
}

/// A valid arena whose header is rewritten field by field, with the derived offsets and
/// the checksum recomputed: what random byte patches never produce (they break the offsets
/// or the crc), and what the validator must refuse on its own.
fn open_with_header(
    d: &TempDir,
    patch: impl FnOnce(&mut larder::layout::Params),
) -> Result<Cache, OpenError> {
    use std::os::unix::fs::FileExt;
    let p = d.arena();
    let _ = std::fs::remove_file(&p);
    drop(Cache::create(&p, &small(4 << 20)).unwrap());
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .unwrap();
    let mut head = [0u8; larder::layout::PARAMS_LEN];
    f.read_exact_at(&mut head, 0).unwrap();
    let mut params = larder::layout::Params::from_bytes(&head);
    patch(&mut params);
    f.write_all_at(&params.with_derived_offsets().to_bytes_with_crc(), 0)
        .unwrap();
    Cache::open(&p)
}

#[test]
fn headers_with_valid_checksums_but_unusable_parameters_are_refused() {
    let d = TempDir::new("api");
    // The unchanged header round-trips and opens.
    let c = open_with_header(&d, |_| {}).expect("an untouched header opens");
    c.set(b"k", b"v", None).unwrap();
    drop(c);
    type Patch = fn(&mut larder::layout::Params);
    let refused: [(&str, Patch); 5] = [
        // invalidate_tag would increment a word outside the tag table (with both counts 0,
        // segment 0's control word).
        ("no tag table", |p| p.ntags = 0),
        ("no lease table", |p| p.nleases = 0),
        ("no tag or lease table", |p| {
            p.ntags = 0;
            p.nleases = 0;
        }),
        // epoch * 1000 overflows in the lease clock.
        ("epoch", |p| p.epoch = u64::MAX),
        ("epoch", |p| p.epoch = u64::MAX / 1000 + 1),
    ];
    for (what, patch) in refused {
        match open_with_header(&d, patch) {
            Err(OpenError::BadArena { reason, .. }) => {
                assert!(
                    reason.contains(what.split(' ').next_back().unwrap()),
                    "{what}: {reason}"
                )
            }
            Err(e) => panic!("{what}: refused for another reason: {e}"),
            Ok(c) => {
                // What accepting it does.
                let _ = c.invalidate_tag("t");
                let _ = c.get_or_insert_with(b"k", None, || Ok::<_, std::io::Error>(b"v".to_vec()));
                panic!("{what}: accepted")
            }
        }
    }
}

#[test]
fn flush_and_keys() {
    let d = TempDir::new("api");
    let c = Cache::create(d.arena(), &small(4 << 20)).unwrap();
    for i in 0..100 {
        c.set(format!("key{i}").as_bytes(), b"v", None).unwrap();
    }
    let mut keys: Vec<String> = c.keys().map(|k| String::from_utf8(k).unwrap()).collect();
    keys.sort();
    let mut want: Vec<String> = (0..100).map(|i| format!("key{i}")).collect();
    want.sort();
    assert_eq!(keys, want);
    assert_eq!(c.flush().unwrap(), 100);
    assert_eq!(c.keys().count(), 0);
    assert_eq!(c.get(b"key1").unwrap(), None);
}

#[test]
fn eviction_keeps_the_cache_usable_and_prefers_hot_keys() {
    let d = TempDir::new("api");
    let c = Cache::create(d.arena(), &small(2 << 20)).unwrap();
    let val = vec![1u8; 200];
    // A hot set that is read constantly, and a stream of cold keys 20x the capacity.
    for i in 0..200u32 {
        c.set(format!("hot{i}").as_bytes(), &val, None).unwrap();
    }
    let mut hot_hits = 0;
    let mut hot_reads = 0;
    for round in 0..40_000u32 {
        c.set(format!("cold{round}").as_bytes(), &val, None)
            .unwrap();
        let k = format!("hot{}", round % 200);
        hot_reads += 1;
        if c.get(k.as_bytes()).unwrap().is_some() {
            hot_hits += 1;
        } else {
            c.set(k.as_bytes(), &val, None).unwrap();
        }
    }
    let s = c.stats();
    assert!(s.totals.evictions > 10_000, "{s:?}");
    assert!(
        hot_hits * 10 > hot_reads * 9,
        "CLOCK should keep the hot set: {hot_hits}/{hot_reads}"
    );
    assert_eq!(c.get(b"cold39999").unwrap().as_deref(), Some(&val[..]));
}

#[test]
fn stats_count_per_process_and_survive_reaping() {
    let d = TempDir::new("api");
    let a = Cache::create(d.arena(), &small(4 << 20)).unwrap();
    a.set(b"x", b"1", None).unwrap();
    assert!(a.get(b"x").unwrap().is_some());
    assert!(a.get(b"y").unwrap().is_none());
    let b = Cache::open(d.arena()).unwrap();
    assert!(b.get(b"x").unwrap().is_some());
    let s = a.stats();
    assert_eq!(s.processes.len(), 2);
    assert_eq!((s.totals.hits, s.totals.misses, s.totals.sets), (2, 1, 1));
    drop(b);
    let s = a.stats();
    assert_eq!(s.processes.len(), 1);
    assert_eq!(
        s.totals.hits, 2,
        "a detached process's counts stay in the totals"
    );
}

#[test]
fn entries_stream_values_and_ttls_without_counting_hits() {
    let d = TempDir::new("api");
    let c = Cache::create(d.arena(), &small(4 << 20)).unwrap();
    c.set(b"a", b"1", None).unwrap();
    c.set(b"b", b"22", Some(Duration::from_secs(100))).unwrap();
    let mut e: Vec<_> = c.entries().collect();
    e.sort_by(|x, y| x.key.cmp(&y.key));
    assert_eq!(e.len(), 2);
    assert_eq!(
        (e[0].key.as_slice(), e[0].value.as_slice(), e[0].ttl),
        (&b"a"[..], &b"1"[..], None)
    );
    assert_eq!(
        (e[1].key.as_slice(), e[1].value.as_slice()),
        (&b"b"[..], &b"22"[..])
    );
    assert!(e[1].ttl.unwrap() > Duration::from_secs(98));
    assert_eq!(c.stats().totals.hits, 0);
}

#[test]
fn snapshot_request_and_acknowledge_words() {
    let d = TempDir::new("api");
    let c = Cache::create(d.arena(), &small(4 << 20)).unwrap();
    let n = c.request_snapshot();
    assert_eq!(n, 1);
    assert!(!c.snapshot_done(n));
    c.ack_snapshot(n, 1234, 99);
    assert!(c.snapshot_done(n));
    assert_eq!(c.snapshot_status(), (1, 1, 1234, 99));
    assert!(!c.is_retired());
    c.mark_retired();
    assert!(Cache::open(d.arena()).unwrap().is_retired());
}

#[test]
fn overwrites_in_a_roomy_arena_lose_no_key() {
    // 5000 live keys of ~230 bytes (~1.2 MB) in a 4 MiB arena, overwritten 60 000 times at
    // random: the log wraps several times, but victims are mostly dead space, so live items
    // are compacted forward instead of evicted.
    let d = TempDir::new("api");
    let c = Cache::create(d.arena(), &small(4 << 20)).unwrap();
    let val = |i: u64, n: u64| format!("{i}:{n}:{}", "x".repeat(200)).into_bytes();
    for i in 0..5000u64 {
        c.set(format!("k{i}").as_bytes(), &val(i, 0), None).unwrap();
    }
    let mut x = 7u64;
    let mut last = vec![0u64; 5000];
    for n in 1..60_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = x % 5000;
        c.set(format!("k{i}").as_bytes(), &val(i, n), None).unwrap();
        last[i as usize] = n;
    }
    let s = c.stats();
    assert!(
        s.totals.sets > 3 * s.capacity / 240,
        "the log must have wrapped several times: {s:?}"
    );
    let lost = (0..5000u64)
        .filter(|&i| c.get(format!("k{i}").as_bytes()).unwrap() != Some(val(i, last[i as usize])))
        .count();
    assert_eq!(lost, 0, "{s:?}");
}

#[test]
fn reads_between_overwrite_bursts_do_not_get_live_items_evicted() {
    // Live keys filling a fifth of the arena, overwritten in bursts that replay one random
    // sequence, with reads between them (benches/engine.rs does exactly this). Copy-forward
    // destinations begin with their victim's survivors, which a replayed sequence keeps live
    // longest; a live-fraction estimate taken from a segment's head read such segments as
    // mostly live and evicted live items from an arena 80 % dead.
    let d = TempDir::new("api");
    // 2 MiB segments of ~16 000 items; 25 000 live keys (~3.2 MB) in a 16 MiB arena.
    let c = Cache::create(d.arena(), &larder::Config::new(16 << 20)).unwrap();
    let keys = 25_000u64;
    let burst = 125_000;
    let key = |i: u64| format!("key:{i:08}").into_bytes();
    let val = |i: u64, n: u64| {
        let mut v = format!("{i}:{n}:").into_bytes();
        v.resize(100, b'x');
        v
    };
    let mut last = vec![0u64; keys as usize];
    for i in 0..keys {
        c.set(&key(i), &val(i, 0), None).unwrap();
    }
    let mut n = 0;
    for _round in 0..6 {
        // Every burst writes the same sequence of keys, as a benchmark replaying one
        // pre-generated sequence does.
        let mut x = 7u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % keys
        };
        for _ in 0..burst {
            let i = next();
            n += 1;
            c.set(&key(i), &val(i, n), None).unwrap();
            last[i as usize] = n;
        }
        for _ in 0..burst {
            let i = next();
            assert_eq!(
                c.get(&key(i)).unwrap(),
                Some(val(i, last[i as usize])),
                "key {i} after {n} sets"
            );
        }
    }
    let s = c.stats();
    assert_eq!(s.totals.evictions, 0, "{s:?}");
}

#[test]
fn an_observer_sees_a_full_process_table_and_cannot_touch_items() {
    let d = TempDir::new("api");
    let a = Cache::create(d.arena(), &small(4 << 20).max_processes(2)).unwrap();
    let b = Cache::open(d.arena()).unwrap();
    a.set(b"k", b"v", None).unwrap();
    assert!(matches!(
        Cache::open(d.arena()),
        Err(OpenError::TooManyProcesses { max: 2 })
    ));

    let o = Cache::open_observer(d.arena()).unwrap();
    let s = o.stats();
    assert_eq!(s.items, 1);
    assert_eq!(s.processes.len(), 2, "{s:?}");
    assert_eq!(o.info().max_processes, 2);
    assert_eq!(o.keys().collect::<Vec<_>>(), vec![b"k".to_vec()]);
    assert!(matches!(o.get(b"k"), Err(Error::Observer)));
    assert!(matches!(o.set(b"x", b"y", None), Err(Error::Observer)));
    assert!(matches!(o.delete(b"k"), Err(Error::Observer)));
    assert_eq!(o.entries().count(), 0);
    let n = o.request_snapshot();
    assert_eq!(a.snapshot_status().0, n);
    drop(o);

    // The observer took and released nothing: both clients still work, the table is full.
    assert_eq!(b.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(a.stats().processes.len(), 2);
    assert!(Cache::open(d.arena()).is_err());
}

#[test]
fn index_evictions_leave_little_dead_space_in_a_full_arena() {
    // 12-byte keys, 100-byte values: 128-byte items, with an index sized for 160-byte items
    // so that full neighbourhoods (index evictions) are frequent.
    let d = TempDir::new("api");
    let c = Cache::create(d.arena(), &small(8 << 20).avg_item_size(160)).unwrap();
    let info = c.info();
    let log_items = u64::from(info.segments) * info.segment_size / 128;
    let value = [7u8; 100];
    let inserts = 4 * log_items;
    for i in 0..inserts {
        c.set(format!("key:{i:08}").as_bytes(), &value, None)
            .unwrap();
    }
    let s = c.stats();
    assert!(
        s.totals.index_evictions * 50 > inserts,
        "the test needs index evictions: {s:?}"
    );
    // An index-evicted item's bytes stay in the log until its segment is evicted. The victim
    // is the oldest item of the neighbourhood, evicted soon anyway, so little of what is
    // written is dead: here ~2 % (the first unreferenced slot instead left ~7 % dead).
    let live = s.items * 128;
    assert!(
        live * 100 >= s.bytes_used * 96,
        "{live} of {} written log bytes are live items: {s:?}",
        s.bytes_used
    );
    // Nothing of the arena is left unplanned: segments and index fill it but for the fixed
    // regions (well under 1 %).
    let index = info.buckets * 64;
    assert!(s.capacity + index > info.arena_size / 100 * 99, "{info:?}");
    // The newest keys are all there.
    for i in inserts - 100..inserts {
        assert!(
            c.get(format!("key:{i:08}").as_bytes()).unwrap().is_some(),
            "key {i}"
        );
    }
}

#[test]
fn cold_keys_survive_hot_overwrites_while_the_log_is_mostly_dead() {
    // Cold keys written once fill 40 % of the log; a few hot keys are then overwritten
    // until the log has turned over many times. The oldest segments hold only cold keys,
    // all live; every younger segment is almost all dead copies of the hot keys. A cache
    // this empty must reclaim the dead copies, not drop the cold keys.
    let d = TempDir::new("api");
    let c = Cache::create(d.arena(), &small(4 << 20)).unwrap();
    let info = c.info();
    let log = u64::from(info.segments) * info.segment_size;
    let val = |i: u64, n: u64| {
        let mut v = format!("{i}:{n}:").into_bytes();
        v.resize(200, b'c');
        v
    };
    let item = 16 + 12 + 200;
    let cold = log * 4 / 10 / item;
    for i in 0..cold {
        c.set(format!("cold:{i:07}").as_bytes(), &val(i, 0), None)
            .unwrap();
    }
    let hot_writes = 10 * log / item;
    for n in 0..hot_writes {
        let i = n % 50;
        c.set(format!("hot:{i:08}").as_bytes(), &val(i, n), None)
            .unwrap();
    }
    let lost: Vec<u64> = (0..cold)
        .filter(|&i| c.get(format!("cold:{i:07}").as_bytes()).unwrap() != Some(val(i, 0)))
        .collect();
    let s = c.stats();
    assert!(
        lost.is_empty(),
        "{} of {cold} cold keys lost: {s:?}",
        lost.len()
    );
    assert_eq!(s.totals.evictions, 0, "{s:?}");
}

#[test]
fn a_write_after_an_eviction_that_filled_its_destination_stays_in_its_segment() {
    // Every item is read (referenced), so an eviction copies a victim's items forward and
    // fills its destination almost completely; the large value that asked for space then
    // does not fit there. It must go to another segment, not past the destination's end
    // over the next segment's items.
    let d = TempDir::new("api");
    let config = Config::new(1 << 20)
        .max_value_len(32 << 10)
        .segment_size(64 << 10)
        .max_processes(4);
    let c = Cache::create(d.arena(), &config).unwrap();
    let small_val = |i: u64| format!("{i:>1000}").into_bytes();
    let big_val = |i: u64| format!("{i:>30000}").into_bytes();
    for round in 0..40u64 {
        for i in 0..60u64 {
            let k = format!("s{round}-{i}");
            c.set(k.as_bytes(), &small_val(i), None).unwrap();
        }
        // Reference everything present, so eviction copies rather than drops.
        for k in c.keys().collect::<Vec<_>>() {
            c.get(&k).unwrap();
        }
        let k = format!("big{round}");
        c.set(k.as_bytes(), &big_val(round), None).unwrap();
        // (Not assert_eq: a 30 000-byte value in a failure message helps nobody.)
        let got = c.get(k.as_bytes()).unwrap();
        assert!(
            got == Some(big_val(round)),
            "{k}: {:?}",
            got.map(|v| v.len())
        );
        let s = c.stats();
        assert_eq!(s.totals.corrupt, 0, "round {round}: {s:?}");
    }
    // Whatever survived reads back exactly as written.
    for k in c.keys().collect::<Vec<_>>() {
        let name = String::from_utf8(k.clone()).unwrap();
        let v = c.get(&k).unwrap().expect("listed key");
        let i: u64 = name.rsplit(['-', 'g']).next().unwrap().parse().unwrap();
        let want = if name.starts_with("big") {
            big_val(i)
        } else {
            small_val(i)
        };
        assert!(v == want, "{name}: {} bytes differ", v.len());
    }
    assert_eq!(c.stats().totals.corrupt, 0);
}

#[test]
fn skewed_overwrites_of_a_half_full_cache_evict_nothing() {
    // Keys whose values fill about half of the log, overwritten with a skew (a few keys
    // very often, most rarely): the hot keys' dead copies spread over every segment, which
    // then hover around half live. The cache has room for all its keys and must keep them.
    let d = TempDir::new("api");
    let config = Config::new(8 << 20)
        .max_value_len(16 << 10)
        .segment_size(256 << 10)
        .max_processes(4);
    let c = Cache::create(d.arena(), &config).unwrap();
    let info = c.info();
    let log = u64::from(info.segments) * info.segment_size;
    let value = vec![7u8; 4000];
    let n = log / 2 / 4032;
    for i in 0..n {
        c.set(format!("key:{i:08}").as_bytes(), &value, None)
            .unwrap();
    }
    let mut x = 99u64;
    for _ in 0..60 * n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // n^u for u uniform in [0, 1): rank 1 is written far more often than rank n.
        let u = (x >> 11) as f64 / (1u64 << 53) as f64;
        let k = ((n as f64).powf(u) as u64).clamp(1, n) - 1;
        c.set(format!("key:{k:08}").as_bytes(), &value, None)
            .unwrap();
    }
    let lost = (0..n)
        .filter(|i| c.get(format!("key:{i:08}").as_bytes()).unwrap().is_none())
        .count();
    let s = c.stats();
    assert_eq!(lost, 0, "{lost} of {n} keys lost: {s:?}");
}

#[test]
fn arenas_from_1_mib_up_work_with_the_default_limits() {
    for (cap, seg) in [
        (1u64 << 20, 64u64 << 10),
        (8 << 20, 128 << 10),
        (16 << 20, 256 << 10),
        (256 << 20, 2 << 20),
    ] {
        let d = TempDir::new("api");
        let config = Config::new(cap).huge_pages(false);
        let (planned_seg, segs) = config.check().unwrap();
        assert_eq!(planned_seg, seg, "{cap}");
        assert!(segs >= 13, "{cap}: {segs} segments");
        let c = Cache::create(d.arena(), &config).unwrap();
        let (_, max_value) = c.limits();
        assert_eq!(
            u64::from(max_value),
            (seg - 8 - 80 - 250).min(1 << 20),
            "the value limit follows the segment size, at most 1 MiB"
        );
        // Enough to evict in the small arenas; a bounded number in the large one.
        let n = (cap / 100).min(200_000) as u32;
        for i in 0..n {
            c.set(format!("k{i}").as_bytes(), &[3u8; 100], None)
                .unwrap();
        }
        assert!(c.get(format!("k{}", n - 1).as_bytes()).unwrap().is_some());
        let big = vec![5u8; max_value as usize];
        c.set(b"big", &big, None).unwrap();
        assert_eq!(c.get(b"big").unwrap().as_deref(), Some(&big[..]));
        assert!(matches!(
            c.set(b"big", &vec![0; max_value as usize + 1], None),
            Err(Error::ValueTooLarge { .. })
        ));
    }
    assert!(matches!(
        Config::new(100 << 10).check(),
        Err(OpenError::InvalidConfig { .. })
    ));
}
