//! The real `larderd` binary: readiness, warm restarts after SIGTERM and SIGKILL, one daemon
//! per arena, snapshots (signal, request word, exit, damaged files), replacing an arena of
//! another size, the metrics file, the service protocol, and the systemd units.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use larder_testkit::{files_starting, Daemon};

/// A scratch directory (`.0` is its path), removed on drop.
struct Dir(PathBuf, #[allow(dead_code)] tempfile::TempDir);

fn tempdir(tag: &str) -> Dir {
    let d = tempfile::Builder::new()
        .prefix(&format!("larderd-test-{tag}-"))
        .tempdir()
        .unwrap();
    Dir(d.path().to_owned(), d)
}

/// Starts larderd on `arena` and waits for READY=1 on a notify socket we bind.
fn start(dir: &Path, arena: &Path) -> Daemon {
    start_with(dir, arena, &[])
}

/// As [`start`], with extra environment (`LARDER_*` overrides the test defaults). Logs go
/// to a file in `dir`, printed if the test fails.
fn start_with(dir: &Path, arena: &Path, env: &[(&str, &str)]) -> Daemon {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut d = Daemon::spawn(
        env!("CARGO_BIN_EXE_larderd"),
        dir,
        arena,
        &n.to_string(),
        env,
    );
    if let Err(st) = d.ready() {
        panic!("larderd exited {st} before READY=1; log:\n{}", d.log());
    }
    d
}

fn signal(d: &Daemon, sig: i32) {
    d.signal(sig);
}

/// Polls `f` every 20 ms for up to `limit`.
fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn warm_restart_after_sigterm_and_after_sigkill_keeps_every_key() {
    let dir = tempdir("restart");
    let arena = dir.0.join("arena");
    let mut d = start(&dir.0, &arena);
    {
        let c = larder::Cache::open(&arena).unwrap();
        for i in 0..500 {
            c.set(format!("k{i}").as_bytes(), format!("v{i}").as_bytes(), None)
                .unwrap();
        }
        assert_eq!(c.info().daemon_pid, d.child.id());
    }
    signal(&d, libc::SIGTERM);
    let st = d.child.wait().unwrap();
    assert!(st.success(), "{st:?}");
    let c = larder::Cache::open(&arena).unwrap();
    assert!(c.info().clean);
    drop(c);

    let mut d = start(&dir.0, &arena);
    let c = larder::Cache::open(&arena).unwrap();
    assert!(!c.info().clean);
    for i in 0..500 {
        assert_eq!(
            c.get(format!("k{i}").as_bytes()).unwrap(),
            Some(format!("v{i}").into_bytes())
        );
    }
    signal(&d, libc::SIGKILL);
    let _ = d.child.wait();
    drop(d);
    let _d = start(&dir.0, &arena);
    for i in 0..500 {
        assert_eq!(
            c.get(format!("k{i}").as_bytes()).unwrap(),
            Some(format!("v{i}").into_bytes())
        );
    }
    assert_eq!(c.info().generation, 3);
}

#[test]
fn a_second_daemon_is_refused_with_exit_code_2() {
    let dir = tempdir("second");
    let arena = dir.0.join("arena");
    let d = start(&dir.0, &arena);
    let out = Command::new(env!("CARGO_BIN_EXE_larderd"))
        .env("LARDER_ARENA", &arena)
        .env("LARDER_SIZE", "8MiB")
        .env("LARDER_MAX_VALUE", "4KiB")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("pid {}", d.child.id())), "{err}");
}

#[test]
fn a_file_that_is_not_an_arena_is_moved_aside_not_deleted() {
    let dir = tempdir("aside");
    let arena = dir.0.join("arena");
    std::fs::write(&arena, b"precious data that is not an arena").unwrap();
    let _d = start(&dir.0, &arena);
    larder::Cache::open(&arena).unwrap();
    let aside: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("arena.bad-"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(
        std::fs::read(aside[0].path()).unwrap(),
        b"precious data that is not an arena"
    );
}

/// Stale grace and client flags included: an item past its TTL is still served stale after
/// the restore, and a flagged item keeps its flags.
#[test]
fn an_arena_of_another_layout_version_is_moved_aside_and_the_snapshot_restores_it() {
    use std::os::unix::fs::FileExt;
    let dir = tempdir("layout");
    let arena = dir.0.join("arena");
    let snap = dir.0.join("snapshot");
    let env = [
        ("LARDER_SNAPSHOT", snap.to_str().unwrap()),
        ("LARDER_SNAPSHOT_INTERVAL", "0"),
    ];
    let mut d = start_with(&dir.0, &arena, &env);
    let c = larder::Cache::open(&arena).unwrap();
    c.set(b"k", b"survives the upgrade", None).unwrap();
    let graced = Instant::now();
    let opts = larder::SetOptions::new()
        .ttl(Duration::from_secs(3))
        .stale_grace(Duration::from_secs(3600));
    c.set_with(b"g", b"stale but served", &opts).unwrap();
    c.set_with(
        b"f",
        b"flagged",
        &larder::SetOptions::new().flags(0xdead_beef),
    )
    .unwrap();
    drop(c);
    assert!(d.stop().success(), "{}", d.log());
    drop(d);
    // What an older larder would have left: the same file, layout version 1.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&arena)
        .unwrap();
    f.write_all_at(&1u32.to_le_bytes(), 8).unwrap();
    drop(f);

    let mut d = start_with(&dir.0, &arena, &env);
    let log = d.log();
    assert!(log.contains("another larder version"), "{log}");
    assert_eq!(files_starting(&dir.0, "arena.layout1-").len(), 1);
    let c = larder::Cache::open(&arena).unwrap();
    assert_eq!(
        c.get(b"k").unwrap().as_deref(),
        Some(&b"survives the upgrade"[..])
    );
    let mut v = Vec::new();
    let m = c.get_meta_into(b"f", &mut v).unwrap().expect("restored");
    assert_eq!((v.as_slice(), m.flags), (&b"flagged"[..], 0xdead_beef));
    // Past its TTL, the restored item is still served stale: its grace came through.
    std::thread::sleep(Duration::from_millis(3500).saturating_sub(graced.elapsed()));
    assert_eq!(c.get(b"g").unwrap(), None);
    let s = c.get_stale(b"g").unwrap().expect("within its grace");
    assert!(s.stale);
    assert_eq!(s.value, b"stale but served");
    assert!(d.stop().success());
}

#[test]
fn the_daemon_evicts_ahead_of_writers_and_can_be_told_not_to() {
    let writes_evicted_by_daemon = |env: &[(&str, &str)], tag: &str| {
        let dir = tempdir(tag);
        let arena = dir.0.join("arena");
        let mut d = start_with(&dir.0, &arena, env);
        let c = larder::Cache::open(&arena).unwrap();
        // Four times what the 8 MiB arena holds, in unique keys never read again.
        for i in 0..32_000u32 {
            c.set(format!("k{i}").as_bytes(), &[3u8; 1000], None)
                .unwrap();
        }
        let pid = d.child.id();
        let by_daemon = c
            .stats()
            .processes
            .iter()
            .filter(|p| p.pid == pid)
            .map(|p| p.counters.evictions)
            .sum::<u64>();
        drop(c);
        assert!(d.stop().success(), "{}", d.log());
        by_daemon
    };
    assert!(writes_evicted_by_daemon(&[], "ahead") > 0);
    assert_eq!(
        writes_evicted_by_daemon(&[("LARDER_EVICT_AHEAD", "0")], "no-ahead"),
        0
    );
}

#[test]
fn bad_arguments_are_clear_errors() {
    for args in [
        &["--size", "lots"][..],
        &["--sweep-interval", "5y"],
        &["--mode", "999"],
        &["--snapshot-rate", "fast"],
        &["--snapshot-interval", "often"],
        &["--group", "no-such-group-for-larder"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_larderd"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
}

#[test]
fn sigusr1_snapshot_restores_keys_into_a_new_arena_and_skips_expired_ones() {
    let dir = tempdir("sigusr1");
    let arena = dir.0.join("arena");
    let snap = dir.0.join("snap");
    let env = [
        ("LARDER_SNAPSHOT", snap.to_str().unwrap()),
        ("LARDER_SNAPSHOT_INTERVAL", "0"),
    ];
    let mut d = start_with(&dir.0, &arena, &env);
    let c = larder::Cache::open(&arena).unwrap();
    for i in 0..200 {
        c.set(format!("k{i}").as_bytes(), format!("v{i}").as_bytes(), None)
            .unwrap();
    }
    c.set(b"long", b"L", Some(Duration::from_secs(60))).unwrap();
    c.set(b"short", b"S", Some(Duration::from_secs(2))).unwrap();
    let t_short = Instant::now();
    assert!(!snap.exists());
    signal(&d, libc::SIGUSR1);
    assert!(
        wait_until(Duration::from_secs(5), || snap.exists()),
        "no snapshot 5 s after SIGUSR1"
    );
    drop(c);
    // A reboot: the daemon dies without a final snapshot and the tmpfs is emptied.
    signal(&d, libc::SIGKILL);
    let _ = d.child.wait();
    std::fs::remove_file(&arena).unwrap();
    std::thread::sleep(
        (t_short + Duration::from_millis(3200)).saturating_duration_since(Instant::now()),
    );

    let d = start_with(&dir.0, &arena, &env);
    let c = larder::Cache::open(&arena).unwrap();
    for i in 0..200 {
        assert_eq!(
            c.get(format!("k{i}").as_bytes()).unwrap(),
            Some(format!("v{i}").into_bytes()),
            "k{i}"
        );
    }
    let ttl = c
        .ttl(b"long")
        .unwrap()
        .expect("long restored")
        .expect("with a TTL");
    assert!(
        ttl <= Duration::from_secs(60) && ttl >= Duration::from_secs(50),
        "{ttl:?}"
    );
    assert_eq!(
        c.get(b"short").unwrap(),
        None,
        "expired meanwhile, not restored"
    );
    let log = d.log();
    assert!(log.contains("snapshot loaded"), "{log}");
    assert!(
        log.contains("loaded=201") && log.contains("expired=1"),
        "{log}"
    );
}

#[test]
fn a_snapshot_requested_through_the_arena_is_acknowledged_and_sigterm_writes_a_final_one() {
    let dir = tempdir("request");
    let arena = dir.0.join("arena");
    // In a directory that does not exist yet: larderd creates it.
    let snap = dir.0.join("state/snap");
    let env = [
        ("LARDER_SNAPSHOT", snap.to_str().unwrap()),
        ("LARDER_SNAPSHOT_INTERVAL", "0"),
    ];
    let mut d = start_with(&dir.0, &arena, &env);
    let c = larder::Cache::open(&arena).unwrap();
    for i in 0..100 {
        c.set(format!("a{i}").as_bytes(), &[b'x'; 1000], None)
            .unwrap();
    }
    let n = c.request_snapshot();
    assert!(
        wait_until(Duration::from_secs(5), || c.snapshot_done(n)),
        "request {n} not acknowledged within 5 s"
    );
    let (req, ack, time, bytes) = c.snapshot_status();
    assert_eq!((req, ack), (n, n));
    assert_eq!(bytes, std::fs::metadata(&snap).unwrap().len());
    assert!(bytes > 100_000, "{bytes}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(time <= now && time + 10 >= now, "{time} vs {now}");

    c.set(b"late", b"after the requested snapshot", None)
        .unwrap();
    drop(c);
    let st = d.stop();
    assert!(st.success(), "{st:?}");
    std::fs::remove_file(&arena).unwrap();
    let _d = start_with(&dir.0, &arena, &env);
    let c = larder::Cache::open(&arena).unwrap();
    assert_eq!(
        c.get(b"late").unwrap().as_deref(),
        Some(&b"after the requested snapshot"[..]),
        "the final snapshot at SIGTERM holds the last write"
    );
    assert_eq!(c.get(b"a99").unwrap(), Some(vec![b'x'; 1000]));
}

#[test]
fn a_damaged_snapshot_is_moved_aside_and_the_daemon_starts_empty() {
    let dir = tempdir("damaged");
    let arena = dir.0.join("arena");
    let snap = dir.0.join("snap");
    let env = [
        ("LARDER_SNAPSHOT", snap.to_str().unwrap()),
        ("LARDER_SNAPSHOT_INTERVAL", "0"),
    ];
    let mut d = start_with(&dir.0, &arena, &env);
    {
        let c = larder::Cache::open(&arena).unwrap();
        for i in 0..50 {
            c.set(format!("k{i}").as_bytes(), format!("v{i}").as_bytes(), None)
                .unwrap();
        }
    }
    assert!(d.stop().success());
    drop(d);
    let good = std::fs::read(&snap).unwrap();
    let mid = good.len() / 2;
    let mut flipped = good.clone();
    flipped[mid] ^= 0x10;
    let damages: [(&str, Vec<u8>); 3] = [
        ("a flipped byte", flipped),
        ("truncated in the middle", good[..mid].to_vec()),
        (
            "truncated in the end frame",
            good[..good.len() - 3].to_vec(),
        ),
    ];
    for (i, (what, bytes)) in damages.into_iter().enumerate() {
        std::fs::write(&snap, &bytes).unwrap();
        std::fs::remove_file(&arena).unwrap();
        let mut d = start_with(&dir.0, &arena, &env);
        let c = larder::Cache::open(&arena).unwrap();
        assert_eq!(c.get(b"k0").unwrap(), None, "{what}: starts empty");
        assert_eq!(c.stats().items, 0, "{what}");
        let aside = files_starting(&dir.0, "snap.corrupt-");
        assert_eq!(aside.len(), i + 1, "{what}: {aside:?}");
        assert!(
            aside.iter().any(|p| std::fs::read(p).unwrap() == bytes),
            "{what}: the damaged file is kept, unchanged"
        );
        let log = d.log();
        assert!(log.contains("snapshot is damaged"), "{what}: {log}");
        drop(c);
        let st = d.stop();
        assert!(st.success(), "{what}: {st:?}");
    }
}

#[test]
fn an_arena_of_another_size_is_replaced_and_its_items_carried_over() {
    let dir = tempdir("resize");
    let arena = dir.0.join("arena");
    let mut d = start(&dir.0, &arena);
    let old = larder::Cache::open(&arena).unwrap();
    for i in 0..300 {
        old.set(format!("k{i}").as_bytes(), format!("v{i}").as_bytes(), None)
            .unwrap();
    }
    old.set(b"ttl", b"t", Some(Duration::from_secs(100)))
        .unwrap();
    let graced = larder::SetOptions::new()
        .ttl(Duration::from_secs(100))
        .stale_grace(Duration::from_secs(50));
    old.set_with(b"graced", b"g", &graced).unwrap();
    assert!(d.stop().success());
    drop(d);

    let d = start_with(&dir.0, &arena, &[("LARDER_SIZE", "16MiB")]);
    assert!(
        old.is_retired(),
        "clients of the old arena are told to re-open"
    );
    let c = larder::Cache::open(&arena).unwrap();
    assert_eq!(c.info().arena_size, 16 << 20);
    assert!(!c.is_retired());
    for i in 0..300 {
        assert_eq!(
            c.get(format!("k{i}").as_bytes()).unwrap(),
            Some(format!("v{i}").into_bytes()),
            "k{i}"
        );
    }
    let ttl = c.ttl(b"ttl").unwrap().unwrap().unwrap();
    assert!(ttl > Duration::from_secs(90), "{ttl:?}");
    let e = c
        .entries()
        .find(|e| e.key == b"graced")
        .expect("carried over");
    assert_eq!(
        e.grace,
        Some(Duration::from_secs(50)),
        "stale grace carried over"
    );
    let aside = files_starting(&dir.0, "arena.replaced-");
    assert_eq!(aside.len(), 1, "the old arena is kept aside");
    let kept = larder::Cache::open(&aside[0]).unwrap();
    assert!(kept.is_retired());
    assert_eq!(kept.info().arena_size, 8 << 20);
    let log = d.log();
    assert!(log.contains("carried=302"), "{log}");
}

#[test]
fn another_avg_item_size_re_plans_the_index_and_the_same_one_re_attaches() {
    let dir = tempdir("replan");
    let arena = dir.0.join("arena");
    // Large enough that the index is mostly planned, not the leftover after whole segments.
    let size = ("LARDER_SIZE", "64MiB");
    let mut d = start_with(&dir.0, &arena, &[size]);
    let c = larder::Cache::open(&arena).unwrap();
    let default = c.info();
    c.set(b"k", b"v", None).unwrap();
    drop(c);
    assert!(d.stop().success());
    drop(d);

    let big = [size, ("LARDER_AVG_ITEM_SIZE", "2KiB")];
    let mut d = start_with(&dir.0, &arena, &big);
    let c = larder::Cache::open(&arena).unwrap();
    let info = c.info();
    assert!(
        info.buckets * 3 < default.buckets && info.segments > default.segments,
        "{info:?} vs {default:?}"
    );
    assert!(info.planned_item_size > 3 * default.planned_item_size);
    assert_eq!(c.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    drop(c);
    assert!(d.log().contains("index sizing"), "{}", d.log());
    assert!(d.stop().success());
    drop(d);

    let mut d = start_with(&dir.0, &arena, &big);
    assert!(d.log().contains("re-attached"), "{}", d.log());
    assert_eq!(files_starting(&dir.0, "arena.replaced-").len(), 1);
    assert!(d.stop().success());
}

/// `name{labels} value` with a valid metric name and a number.
fn parse_sample(line: &str) -> Option<(String, f64)> {
    let (series, value) = line.rsplit_once(' ')?;
    let name = match series.find('{') {
        Some(i) => {
            if !series.ends_with('}') {
                return None;
            }
            &series[..i]
        }
        None => series,
    };
    let mut chars = name.chars();
    let first = chars.next()?;
    if !(first.is_ascii_alphabetic() || first == '_' || first == ':')
        || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return None;
    }
    Some((name.to_string(), value.parse().ok()?))
}

fn parse_prometheus(text: &str) -> std::collections::HashMap<String, f64> {
    let mut typed = std::collections::HashSet::new();
    let mut samples = std::collections::HashMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with("# HELP ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect(line);
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            typed.insert(name.to_string());
            continue;
        }
        let (name, v) = parse_sample(line).unwrap_or_else(|| panic!("not a sample: {line:?}"));
        assert!(typed.contains(&name), "sample before its TYPE: {line}");
        assert!(samples.insert(name, v).is_none(), "duplicate: {line}");
    }
    samples
}

#[test]
fn the_metrics_file_is_prometheus_text_and_current() {
    let dir = tempdir("metrics");
    let arena = dir.0.join("arena");
    let prom = dir.0.join("larder.prom");
    let _d = start_with(
        &dir.0,
        &arena,
        &[
            ("LARDER_METRICS_TEXTFILE", prom.to_str().unwrap()),
            ("LARDER_SWEEP_INTERVAL", "100ms"),
        ],
    );
    let c = larder::Cache::open(&arena).unwrap();
    for i in 0..10 {
        c.set(format!("m{i}").as_bytes(), b"value", None).unwrap();
        assert!(c.get(format!("m{i}").as_bytes()).unwrap().is_some());
    }
    for i in 0..3 {
        assert!(c.get(format!("absent{i}").as_bytes()).unwrap().is_none());
    }
    let mut last = Default::default();
    let current = wait_until(Duration::from_secs(5), || {
        let Ok(text) = std::fs::read_to_string(&prom) else {
            return false;
        };
        last = parse_prometheus(&text);
        last.get("larder_hits_total") == Some(&10.0) && last.get("larder_items") == Some(&10.0)
    });
    assert!(current, "{last:?}");
    assert_eq!(last["larder_misses_total"], 3.0);
    assert_eq!(last["larder_sets_total"], 10.0);
    assert_eq!(
        last["larder_processes"], 1.0,
        "this test; the daemon is not a client"
    );
    assert!((last["larder_hit_ratio"] - 10.0 / 13.0).abs() < 1e-9);
    assert!(last["larder_capacity_bytes"] > 0.0);
    assert!(last["larder_bytes_used"] > 0.0);
    for name in [
        "larder_evictions_total",
        "larder_expired_total",
        "larder_metrics_timestamp_seconds",
    ] {
        assert!(last.contains_key(name), "{name}");
    }
    assert_eq!(
        files_starting(&dir.0, ".larder.prom").len(),
        0,
        "no temporary file left behind"
    );
}

#[test]
fn watchdog_status_and_stopping_are_sent_to_systemd() {
    let dir = tempdir("notify");
    let arena = dir.0.join("arena");
    let mut d = start_with(&dir.0, &arena, &[("WATCHDOG_USEC", "200000")]);
    let t0 = Instant::now();
    let (mut pings, mut status) = (0, None);
    while t0.elapsed() < Duration::from_millis(1000) {
        match d.next_message(Duration::from_millis(300)) {
            Some(m) if m == "WATCHDOG=1" => pings += 1,
            Some(m) if m.starts_with("STATUS=") => status = Some(m),
            _ => {}
        }
    }
    assert!(
        pings >= 4,
        "{pings} WATCHDOG=1 in 1 s with WATCHDOG_USEC=200ms"
    );
    let status = status.expect("a STATUS= message");
    assert!(
        status.contains("items") && status.contains("hit ratio"),
        "{status}"
    );
    signal(&d, libc::SIGTERM);
    let mut stopping = false;
    while let Some(m) = d.next_message(Duration::from_secs(5)) {
        if m == "STOPPING=1" {
            stopping = true;
            break;
        }
    }
    assert!(stopping, "STOPPING=1 on SIGTERM");
    assert!(d.stop().success());
}

#[test]
fn the_arena_gets_the_configured_mode_and_group() {
    let dir = tempdir("owner");
    let arena = dir.0.join("arena");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let daemon_group = std::fs::read_to_string("/etc/group")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("daemon:x:")?
                .split(':')
                .next()?
                .parse::<u32>()
                .ok()
        });
    let mut env = vec![("LARDER_MODE", "640")];
    match (root, daemon_group) {
        (true, Some(_)) => env.push(("LARDER_GROUP", "daemon")),
        _ => println!("not root or no group `daemon`: checking the mode only"),
    }
    let _d = start_with(&dir.0, &arena, &env);
    let meta = std::fs::metadata(&arena).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    if let (true, Some(gid)) = (root, daemon_group) {
        assert_eq!(meta.gid(), gid);
    }
}

#[test]
fn the_systemd_units_pass_systemd_analyze_verify() {
    let found = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .iter()
        .any(|p| Path::new(p).exists())
        || Command::new("systemd-analyze")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !found {
        println!("skipped: systemd-analyze is not installed");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/verify.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_larderd"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("larderd.service ok"), "{text}");
    assert!(text.contains("larderd@check.service ok"), "{text}");
}

#[test]
fn sweeps_reclaim_expired_space_without_any_reader() {
    let dir = tempdir("sweep");
    let arena = dir.0.join("arena");
    let _d = start_with(&dir.0, &arena, &[("LARDER_SWEEP_INTERVAL", "100ms")]);
    let c = larder::Cache::open(&arena).unwrap();
    let before = c.stats();
    {
        let w = larder::Cache::open(&arena).unwrap();
        for i in 0..3000 {
            w.set(
                format!("e{i}").as_bytes(),
                &[b'e'; 1000],
                Some(Duration::from_secs(1)),
            )
            .unwrap();
        }
    }
    let filled = c.stats();
    assert!(filled.bytes_used >= 3_000_000, "{filled:?}");
    assert!(
        filled.free_segments + 3 <= before.free_segments,
        "{filled:?}"
    );
    let mut last = filled.clone();
    let swept = wait_until(Duration::from_secs(6), || {
        last = c.stats();
        last.items == 0 && last.free_segments + 1 >= last.segments
    });
    assert!(swept, "{last:?}");
    assert!(last.totals.expired >= 3000, "{:?}", last.totals);
    assert_eq!(last.totals.hits + last.totals.misses, 0, "nobody read");
}

/// Role of the test binary re-executed by `a_killed_client_is_reaped...`: attach, write,
/// say so, and wait to be killed. Does nothing in a normal test run.
#[test]
fn killed_client_role() {
    let Some(arena) = std::env::var_os("LARDERD_TEST_WRITER") else {
        return;
    };
    let c = larder::Cache::open(PathBuf::from(arena)).unwrap();
    for i in 0..200 {
        c.set(format!("w{i}").as_bytes(), &[b'w'; 500], None)
            .unwrap();
    }
    println!("writer ready {}", std::process::id());
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_killed_client_is_reaped_and_its_segments_come_back() {
    use std::io::BufRead;
    let dir = tempdir("reap");
    let arena = dir.0.join("arena");
    let _d = start_with(&dir.0, &arena, &[("LARDER_SWEEP_INTERVAL", "100ms")]);
    let mut child = larder_testkit::worker("killed_client_role")
        .env("LARDERD_TEST_WRITER", &arena)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let writer = KillOnDrop(child);
    let ready = stdout
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("writer ready"));
    assert!(ready, "the writer process did not start");
    let c = larder::Cache::open(&arena).unwrap();
    assert!(c.stats().processes.iter().any(|p| p.pid == pid));
    let reclaimed_before = c.stats().totals.reclaimed;
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    drop(writer);
    let mut last = c.stats();
    let reaped = wait_until(Duration::from_secs(5), || {
        last = c.stats();
        !last.processes.iter().any(|p| p.pid == pid)
    });
    assert!(reaped, "the daemon did not reap the dead writer: {last:?}");
    assert!(
        last.totals.reclaimed > reclaimed_before,
        "{:?}",
        last.totals
    );
    assert_eq!(
        c.get(b"w199").unwrap(),
        Some(vec![b'w'; 500]),
        "its items stay"
    );
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn snapshots_are_written_periodically() {
    let dir = tempdir("interval");
    let arena = dir.0.join("arena");
    let snap = dir.0.join("snap");
    let _d = start_with(
        &dir.0,
        &arena,
        &[
            ("LARDER_SNAPSHOT", snap.to_str().unwrap()),
            ("LARDER_SNAPSHOT_INTERVAL", "200ms"),
        ],
    );
    let c = larder::Cache::open(&arena).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || snap.exists()),
        "no periodic snapshot"
    );
    let before = c.snapshot_status().3;
    c.set(b"big", &[b'b'; 4000], None).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || c.snapshot_status().3
            > before + 4000),
        "the next periodic snapshot does not hold the new item"
    );
    assert_eq!(
        c.snapshot_status().3,
        std::fs::metadata(&snap).unwrap().len()
    );
}

/// Small arenas work with the default limits (segments and the value limit follow the
/// size), and say their layout at start; a size no arena can have is a bad argument.
#[test]
fn small_arenas_start_with_their_own_limits_and_a_too_small_one_exits_2() {
    for (size, seg, max_value) in [
        ("1MiB", 64u64 << 10, 65_198u32),
        ("8MiB", 128 << 10, 130_734),
    ] {
        let dir = tempdir("small");
        let arena = dir.0.join("arena");
        // No value limit given: the default follows the arena's size.
        let mut d = start_with(
            &dir.0,
            &arena,
            &[
                ("LARDER_SIZE", size),
                ("LARDER_MAX_VALUE", ""),
                ("LARDER_SEGMENT_SIZE", ""),
            ],
        );
        assert!(
            d.log().contains(&format!("segment_size={seg}")),
            "{size}: {}",
            d.log()
        );
        let c = larder::Cache::open(&arena).unwrap();
        let info = c.info();
        assert_eq!(
            (info.segment_size, info.max_value),
            (seg, max_value),
            "{size}"
        );
        // Filled several times over: items are evicted, the newest are there, the largest
        // value is stored.
        for i in 0..60_000u32 {
            c.set(format!("k{i}").as_bytes(), &[7u8; 200], None)
                .unwrap();
        }
        assert_eq!(c.get(b"k59999").unwrap().as_deref(), Some(&[7u8; 200][..]));
        let big = vec![1u8; max_value as usize];
        c.set(b"big", &big, None).unwrap();
        assert_eq!(c.get(b"big").unwrap().as_deref(), Some(&big[..]));
        let t = c.stats().totals;
        assert!(t.evictions + t.index_evictions > 0, "{size}: {t:?}");
        drop(c);
        assert!(d.stop().success(), "{}", d.log());
    }
    let dir = tempdir("tiny");
    let out = Command::new(env!("CARGO_BIN_EXE_larderd"))
        .env("LARDER_ARENA", dir.0.join("arena"))
        .env("LARDER_SIZE", "100KiB")
        .env_remove("LARDER_MAX_VALUE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--size 102400") && err.contains("fewer than 4 segments"),
        "{err}"
    );
    assert!(!dir.0.join("arena").exists(), "nothing is created");
}

/// An arena on a disk file system is called out at start (and by `cachectl info`), one on
/// tmpfs is not. `stat -f` (coreutils) is the independent judge of which is which.
#[test]
fn an_arena_on_a_disk_file_system_is_called_out() {
    let fs_of = |d: &Path| {
        let out = Command::new("stat")
            .args(["-f", "-c", "%T"])
            .arg(d)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let disk_dir = tempfile::Builder::new()
        .prefix("larderd-fs-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let shm = Path::new("/dev/shm");
    let mut dirs = vec![disk_dir.path().to_owned()];
    if shm.is_dir() {
        dirs.push(
            tempfile::Builder::new()
                .prefix("larderd-fs-")
                .tempdir_in(shm)
                .unwrap()
                .keep(),
        );
    }
    let mut seen_disk = false;
    for d in dirs {
        let memory = ["tmpfs", "ramfs", "hugetlbfs"].contains(&fs_of(&d).as_str());
        seen_disk |= !memory;
        let arena = d.join("arena");
        let mut daemon = start_with(&d, &arena, &[]);
        let log = daemon.log();
        assert_eq!(
            log.contains("is on a disk file system"),
            !memory,
            "{}: {log}",
            d.display()
        );
        assert_eq!(log.contains("arena in memory"), memory, "{log}");
        let info = Command::new(env!("CARGO_BIN_EXE_cachectl"))
            .env_remove("LARDER_ARENA")
            .arg("--arena")
            .arg(&arena)
            .arg("info")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&info.stdout);
        assert_eq!(text.contains("NOT in memory"), !memory, "{text}");
        assert!(daemon.stop().success());
        if memory {
            let _ = std::fs::remove_dir_all(&d);
        }
    }
    if !seen_disk {
        eprintln!("the target directory is on tmpfs here: the disk case was not met");
    }
}
