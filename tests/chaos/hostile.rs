//! Hostile files: larderd and a client on files that are not arenas, and larderd on bad
//! snapshots.

use super::*;

/// Runs a client (`Cache::open`, then a few operations if it opened) in a process of its
/// own on `path`; it must exit 0, never panic or die of a signal.
pub(crate) fn client_on(path: &Path, dir: &Path, case: &str) -> String {
    let out = larder_testkit::worker("worker_entry")
        .env(ROLE, "open-hostile")
        .env(ARENA, path)
        .env(DIR, dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.code() == Some(0),
        "{case}: a client ended with {} (signal {:?})\n{text}",
        out.status,
        out.status.signal()
    );
    text.lines()
        .find_map(|l| l.find("RESULT ").map(|i| l[i + 7..].to_owned()))
        .unwrap_or_default()
}

/// What happened to the daemon started on a hostile file.
pub(crate) fn daemon_on(dir: &Path, arena: &Path, case: &str) -> String {
    let mut d = Daemon::spawn(env!("CARGO_BIN_EXE_larderd"), dir, arena, case, &[]);
    match d.ready() {
        Ok(()) => {
            // It served: the arena at the path must now be valid, and stop cleanly.
            let c = Cache::open(arena)
                .unwrap_or_else(|e| panic!("{case}: larderd is ready but the arena is not: {e}"));
            c.set(b"k", b"v", None).unwrap();
            drop(c);
            d.signal(libc::SIGTERM);
            let st = d.wait_exit(Duration::from_secs(20));
            assert!(
                st.is_some_and(|s| s.success()),
                "{case}: larderd did not stop cleanly: {st:?}\n{}",
                d.log()
            );
            "served".into()
        }
        Err(st) => {
            assert!(
                st.code().is_some(),
                "{case}: larderd died of signal {:?}\n{}",
                st.signal(),
                d.log()
            );
            assert_ne!(
                st.code(),
                Some(0),
                "{case}: larderd exited 0 without serving"
            );
            let log = d.log();
            assert!(
                !log.trim().is_empty(),
                "{case}: larderd exited {st} without a word"
            );
            format!("exited {}", st.code().unwrap())
        }
    }
}

#[test]
pub(crate) fn hostile_arena_files_never_crash_the_daemon_or_a_client() {
    if std::env::var_os(ROLE).is_some() {
        return;
    }
    let dir = TempDir::new("hostile");
    // A valid arena made by the daemon itself, the model for the damaged ones.
    let model = {
        let sub = dir.0.join("model");
        std::fs::create_dir_all(&sub).unwrap();
        let arena = sub.join("arena");
        let snap = dir.0.join("model-snapshot");
        let snap_s = snap.to_str().unwrap().to_owned();
        let mut d = Daemon::spawn(
            env!("CARGO_BIN_EXE_larderd"),
            &sub,
            &arena,
            "model",
            &[("LARDER_SNAPSHOT", &snap_s)],
        );
        d.ready().expect("larderd starts");
        let c = Cache::open(&arena).unwrap();
        for i in 0..100 {
            c.set(format!("k{i}").as_bytes(), b"v", None).unwrap();
        }
        drop(c);
        d.signal(libc::SIGTERM);
        assert!(d
            .wait_exit(Duration::from_secs(20))
            .is_some_and(|s| s.success()));
        std::fs::read(&arena).unwrap()
    };
    let mut head = [0u8; PARAMS_LEN];
    head.copy_from_slice(&model[..PARAMS_LEN]);
    let p = Params::from_bytes(&head);
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = model.clone();
        f(&mut b);
        b
    };
    let version_at = 8; // layout_ver, after the 8-byte magic (design.md §2.1)
    let cases: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("empty", Some(Vec::new())),
        ("short-header", Some(model[..100].to_vec())),
        ("short-body", Some(model[..model.len() / 2].to_vec())),
        ("grown", Some(with(&|b| b.extend_from_slice(&[0u8; 65536])))),
        ("magic", Some(with(&|b| b[0] ^= 0xff))),
        (
            "version",
            Some(with(&|b| {
                b[version_at..version_at + 4].copy_from_slice(&(p.layout_version + 1).to_le_bytes())
            })),
        ),
        ("crc", Some(with(&|b| b[40] ^= 1))),
        ("zeros", Some(vec![0u8; model.len()])),
        ("directory", None),
        ("fifo", None),
        ("dev-zero", None),
    ];
    let mut summary = Vec::new();
    for (case, bytes) in cases {
        let sub = dir.0.join(case);
        std::fs::create_dir_all(&sub).unwrap();
        let arena = sub.join("arena");
        match (case, &bytes) {
            (_, Some(b)) => std::fs::write(&arena, b).unwrap(),
            ("directory", None) => {
                std::fs::create_dir(&arena).unwrap();
                std::fs::write(arena.join("inside"), b"keep me").unwrap();
            }
            ("fifo", None) => {
                let p = std::ffi::CString::new(arena.to_str().unwrap()).unwrap();
                // SAFETY: mkfifo with a valid NUL-terminated path.
                assert_eq!(unsafe { libc::mkfifo(p.as_ptr(), 0o600) }, 0);
            }
            ("dev-zero", None) => std::os::unix::fs::symlink("/dev/zero", &arena).unwrap(),
            _ => unreachable!(),
        }
        let client = client_on(&arena, &sub, case);
        assert!(
            client.starts_with("refused"),
            "{case}: a client accepted a hostile file: {client}"
        );
        let daemon = daemon_on(&sub, &arena, case);
        // Whatever the daemon did, the refused file still exists, unchanged: in place or
        // moved aside.
        let kept: Vec<PathBuf> = if daemon == "served" {
            files_starting(&sub, "arena.")
                .into_iter()
                .filter(|p| !p.to_string_lossy().ends_with(".lock"))
                .collect()
        } else {
            vec![arena.clone()]
        };
        assert_eq!(kept.len(), 1, "{case}: the refused file is gone: {kept:?}");
        let k = &kept[0];
        let meta = std::fs::symlink_metadata(k).unwrap();
        match (case, &bytes) {
            (_, Some(b)) => assert!(
                std::fs::read(k).unwrap() == *b,
                "{case}: the refused file was changed"
            ),
            ("directory", None) => {
                assert_eq!(std::fs::read(k.join("inside")).unwrap(), b"keep me")
            }
            ("fifo", None) => assert!(std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type())),
            ("dev-zero", None) => assert!(meta.file_type().is_symlink()),
            _ => unreachable!(),
        }
        summary.push(format!("{case}: client {client}; daemon {daemon}"));
    }
    let arenas = summary.len();

    // Snapshots: the daemon creating a new arena loads the file, or moves a bad one aside
    // (unchanged) and starts empty; it never dies of it nor hangs on it.
    let snap = std::fs::read(dir.0.join("model-snapshot")).expect("the model's snapshot");
    let flip = |at: usize| {
        let mut b = snap.clone();
        b[at] ^= 0x10;
        b
    };
    let snap_cases: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("snap-valid", Some(snap.clone())),
        ("snap-empty", Some(Vec::new())),
        ("snap-truncated", Some(snap[..snap.len() - 3].to_vec())),
        ("snap-header-flip", Some(flip(20))),
        ("snap-body-flip", Some(flip(snap.len() / 2))),
        ("snap-grown", Some([&snap[..], b"trailing"].concat())),
        (
            "snap-garbage",
            Some((0..5000u32).map(|i| (i * 7919 % 251) as u8).collect()),
        ),
        ("snap-directory", None),
        // A FIFO at the snapshot path: see a_fifo_at_the_snapshot_path_does_not_hang_the_daemon.
        ("snap-dev-zero", None),
    ];
    for (case, bytes) in snap_cases {
        let sub = dir.0.join(case);
        std::fs::create_dir_all(&sub).unwrap();
        let arena = sub.join("arena");
        let path = sub.join("snapshot");
        match (case, &bytes) {
            (_, Some(b)) => std::fs::write(&path, b).unwrap(),
            ("snap-directory", None) => std::fs::create_dir(&path).unwrap(),
            ("snap-fifo", None) => {
                let p = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
                // SAFETY: mkfifo with a valid NUL-terminated path.
                assert_eq!(unsafe { libc::mkfifo(p.as_ptr(), 0o600) }, 0);
            }
            ("snap-dev-zero", None) => std::os::unix::fs::symlink("/dev/zero", &path).unwrap(),
            _ => unreachable!(),
        }
        let path_s = path.to_str().unwrap().to_owned();
        let mut d = Daemon::spawn(
            env!("CARGO_BIN_EXE_larderd"),
            &sub,
            &arena,
            case,
            &[
                ("LARDER_SNAPSHOT", &path_s),
                ("LARDER_SNAPSHOT_INTERVAL", "0"),
            ],
        );
        let outcome = match d.ready() {
            Ok(()) => {
                let c = Cache::open(&arena).unwrap_or_else(|e| {
                    panic!("{case}: larderd is ready but the arena is not: {e}")
                });
                let items = c.keys().count();
                drop(c);
                // SIGKILL: a clean stop would write a snapshot over the evidence.
                d.kill();
                if case == "snap-valid" {
                    assert_eq!(items, 100, "{case}: the valid snapshot's items");
                } else {
                    assert_eq!(items, 0, "{case}: items loaded from a bad snapshot");
                }
                format!("served with {items} items")
            }
            Err(st) => {
                assert!(
                    st.code().is_some(),
                    "{case}: larderd died of signal {:?}\n{}",
                    st.signal(),
                    d.log()
                );
                format!("exited {}", st.code().unwrap())
            }
        };
        // The file is still there, unchanged: in place or moved aside.
        let kept: Vec<PathBuf> = files_starting(&sub, "snapshot");
        assert_eq!(kept.len(), 1, "{case}: {kept:?}\n{}", d.log());
        if let Some(b) = &bytes {
            assert!(
                std::fs::read(&kept[0]).unwrap() == *b,
                "{case}: the snapshot file was changed"
            );
        }
        summary.push(format!("{case}: daemon {outcome}"));
    }
    eprintln!("hostile files:\n  {}", summary.join("\n  "));
    println!(
        "hostile summary: {arenas} arena files and {} snapshot files tried, none crashed a client or the daemon",
        summary.len() - arenas
    );
}

// ------------------------------------------------------------------------------------------
// Regressions found by this harness
// ------------------------------------------------------------------------------------------

/// Regression: three writer processes on the daemon's 8 MiB arena (7 segments of 1 MiB),
/// 800 data keys (≈0.4 MiB live) and 16 counters, no kill at all. A counter incremented a
/// few dozen operations earlier used to vanish within seconds: victims were chosen by array
/// position (not log age), and concurrent evictors emptied the reserve so victims were walked
/// without a copy-forward destination, dropping live items whose reference bit was clear.
/// Fixed by ordering the log by seal sequence and waiting briefly for a destination.
#[test]
pub(crate) fn live_counters_survive_in_a_mostly_empty_arena_of_few_segments() {
    if std::env::var_os(ROLE).is_some() {
        return;
    }
    let dir = TempDir::new("evict");
    let arena = dir.0.join("arena");
    let mut daemon = Daemon::spawn(
        env!("CARGO_BIN_EXE_larderd"),
        &dir.0,
        &arena,
        "0",
        &[("LARDER_SWEEP_INTERVAL", "100ms")],
    );
    daemon.ready().expect("larderd starts");
    let c = Cache::open(&arena).unwrap();
    for j in 0..NCTR {
        c.set(&ctr_key(j), b"0", None).unwrap();
    }
    let mut pool = Pool {
        dir: dir.0.clone(),
        arena: arena.clone(),
        seed: seed_base(),
        counters: true,
        ndata: 800,
        next_id: 0,
        live: Vec::new(),
        done_att: [0; NCTR as usize],
        done_ack: [0; NCTR as usize],
        done_hb: [0; 4],
        spawned: 0,
        diag: Some(c.clone()),
    };
    for _ in 0..3 {
        pool.spawn(Role::Writer, true);
    }
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(8) {
        std::thread::sleep(Duration::from_millis(50));
        // A writer exits 3 with "LOST COUNTER: cN vanished".
        pool.check();
    }
    pool.stop_all();
    check_counters(&c, &pool, "at the end");
    let st = c.stats();
    assert_eq!(st.totals.evictions, 0, "{st:?}");
}

/// Regression: with a FIFO at the snapshot path, larderd used to block for ever in
/// `open(2)` of the FIFO (opened for reading, waiting for a writer) and never became ready.
/// It now opens without blocking and refuses anything that is not a regular file.
#[test]
pub(crate) fn a_fifo_at_the_snapshot_path_does_not_hang_the_daemon() {
    if std::env::var_os(ROLE).is_some() {
        return;
    }
    let dir = TempDir::new("snapfifo");
    let path = dir.0.join("snapshot");
    let p = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(p.as_ptr(), 0o600) }, 0);
    let path_s = path.to_str().unwrap().to_owned();
    let mut d = Daemon::spawn(
        env!("CARGO_BIN_EXE_larderd"),
        &dir.0,
        &dir.0.join("arena"),
        "fifo",
        &[("LARDER_SNAPSHOT", &path_s)],
    );
    // Panics after 20 s: "larderd neither ready nor gone".
    match d.ready() {
        Ok(()) => d.kill(),
        Err(st) => assert!(st.code().is_some(), "larderd died of a signal: {st}"),
    }
}
