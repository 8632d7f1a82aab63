//! The chaos run: its two settings and the loop of kills, daemon restarts and checks.

use super::*;

/// One chaos run's setting.
pub(crate) struct Run {
    pub(crate) name: &'static str,
    /// LARDER_SIZE of the daemon.
    pub(crate) size: &'static str,
    /// Counters and persistent keys in use; nothing may be evicted (asserted).
    pub(crate) roomy: bool,
    /// Data keys in use.
    pub(crate) ndata: u64,
}

/// The roomy run: the live data (≈ 0.5 MiB) is a small fraction of a 64 MiB arena, whose
/// sweeper frees dead segments long before the log needs eviction, so nothing may be
/// evicted: counters are checked exactly, persistent keys must survive every restart.
#[test]
pub(crate) fn chaos_roomy_counters_exact_across_kills_and_daemon_restarts() {
    run_chaos(Run {
        name: "roomy",
        size: "64MiB",
        roomy: true,
        ndata: 800,
    });
}

/// The pressure run: the same workload in an 8 MiB arena of 7 segments, where writers
/// evict all the time, so they are SIGKILLed mid-eviction, mid-copy-forward and holding
/// segments the reaper must hand back. Values may be evicted; none may be corrupt.
#[test]
pub(crate) fn chaos_pressure_evicting_writers_killed() {
    run_chaos(Run {
        name: "pressure",
        size: "8MiB",
        roomy: false,
        ndata: 6000,
    });
}

pub(crate) fn run_chaos(run: Run) {
    if std::env::var_os(ROLE).is_some() {
        return;
    }
    let target = env_u64("LARDER_CHAOS_KILLS", 300) / 2;
    let writers = env_u64("LARDER_CHAOS_WRITERS", 3);
    let readers = env_u64("LARDER_CHAOS_READERS", 2);
    let name = run.name;
    let seed = seed_base();
    eprintln!("chaos {name}: seed {seed} (LARDER_CHAOS_SEED={seed} replays the harness's choices)");
    let mut rng = StdRng::seed_from_u64(seed);
    let t0 = Instant::now();
    let dir = TempDir::new(name);
    let arena = dir.0.join("arena");
    let snap = dir.0.join("snapshot");
    let snap_s = snap.to_str().unwrap().to_owned();
    // The daemon rewrites its metrics file every sweep: its heartbeat.
    let metrics = dir.0.join("metrics.prom");
    let metrics_s = metrics.to_str().unwrap().to_owned();
    let daemon_env = [
        ("LARDER_SIZE", run.size),
        ("LARDER_SWEEP_INTERVAL", "100ms"),
        ("LARDER_SNAPSHOT", snap_s.as_str()),
        ("LARDER_SNAPSHOT_INTERVAL", "1s"),
        ("LARDER_METRICS_TEXTFILE", metrics_s.as_str()),
    ];
    let mut watch = DaemonWatch::new(&metrics);
    let mut restarts = 0u64;
    let mut daemon = Daemon::spawn(
        env!("CARGO_BIN_EXE_larderd"),
        &dir.0,
        &arena,
        "0",
        &daemon_env,
    );
    daemon.ready().expect("larderd starts");
    let inode = std::fs::metadata(&arena).unwrap().ino();

    let c = Cache::open(&arena).unwrap();
    let capacity = c.stats().capacity;
    if run.roomy {
        for j in 0..NCTR {
            c.set(&ctr_key(j), b"0", None).unwrap();
        }
        for i in 0..NPERSIST {
            let k = persist_key(i);
            c.set(&k, &make_value(&k, i, 40 + (i as usize * 13) % 300), None)
                .unwrap();
        }
    }
    let setup_done = SystemTime::now();

    let mut pool = Pool {
        dir: dir.0.clone(),
        arena: arena.clone(),
        seed,
        counters: run.roomy,
        ndata: run.ndata,
        next_id: 0,
        live: Vec::new(),
        done_att: [0; NCTR as usize],
        done_ack: [0; NCTR as usize],
        done_hb: [0; 4],
        spawned: 0,
        diag: Some(c.clone()),
    };
    pool.spawn(Role::Writer, true);
    pool.spawn(Role::Reader, true);
    for _ in 0..writers {
        pool.spawn(Role::Writer, false);
    }
    for _ in 0..readers {
        pool.spawn(Role::Reader, false);
    }

    let mut kills = 0u64;
    let mut snapshots_checked = 0u64;
    let mut snapshot_items = 0u64;
    let mut last_snap: Option<(SystemTime, u64)> = None;
    while kills < target {
        std::thread::sleep(Duration::from_millis(rng.gen_range(2..=40)));
        pool.check();
        watch.check(&c, &arena);
        let killable: Vec<usize> = (0..pool.live.len())
            .filter(|&i| !pool.live[i].sentinel)
            .collect();
        let victim = killable[rng.gen_range(0..killable.len())];
        pool.kill_and_respawn(victim);
        kills += 1;
        if run.roomy && kills.is_multiple_of(10) {
            check_counters(&c, &pool, "under load");
        }
        if kills.is_multiple_of(DAEMON_EVERY) {
            // Kill the daemon: right after a snapshot it wrote, while it writes one (the
            // request is polled every 100 ms), or in between.
            let gen = c.info().generation;
            match rng.gen_range(0..3) {
                0 => {
                    let req = c.request_snapshot();
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while !c.snapshot_done(req) {
                        assert!(
                            Instant::now() < deadline,
                            "larderd did not write a requested snapshot within 10 s\n{}",
                            daemon.log()
                        );
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                1 => {
                    c.request_snapshot();
                    std::thread::sleep(Duration::from_millis(rng.gen_range(80..=140)));
                }
                _ => {}
            }
            daemon.kill();
            restarts += 1;
            // Clients work on without a daemon.
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..=100)));
            pool.check();
            daemon = Daemon::spawn(
                env!("CARGO_BIN_EXE_larderd"),
                &dir.0,
                &arena,
                &restarts.to_string(),
                &daemon_env,
            );
            daemon
                .ready()
                .unwrap_or_else(|st| panic!("larderd restart #{restarts} exited with {st}"));
            watch = DaemonWatch::new(&metrics);
            let when = format!("after daemon restart #{restarts}");
            let info = c.info();
            assert_eq!(
                std::fs::metadata(&arena).unwrap().ino(),
                inode,
                "{when}: the arena file was replaced instead of re-attached"
            );
            assert!(!c.is_retired(), "{when}: the arena is marked retired");
            assert_eq!(info.generation, gen + 1, "{when}: generation");
            assert_eq!(info.daemon_pid, daemon.child.id(), "{when}: daemon pid");
            if run.roomy {
                check_persistent(&c, &when);
                check_counters(&c, &pool, &when);
            }
            // The newest snapshot left by the killed daemon loads.
            if let Ok(m) = std::fs::metadata(&snap) {
                let id = (m.modified().unwrap(), m.ino());
                if m.modified().unwrap() > setup_done && last_snap != Some(id) {
                    last_snap = Some(id);
                    let attempted = pool.incrs("att");
                    snapshot_items +=
                        check_snapshot(&dir.0, &snap, restarts, &attempted, run.roomy);
                    snapshots_checked += 1;
                }
            }
        }
    }
    let chaos_secs = t0.elapsed().as_secs_f64();

    // ---- the end: everyone stops cleanly, nothing is lost or leaked ----
    pool.stop_all();
    let reaped = c.reclaim_dead_clients().unwrap();
    let st = c.stats();
    let me = std::process::id();
    let dpid = daemon.child.id();
    assert!(
        st.processes.iter().all(|p| p.pid == me || p.pid == dpid),
        "processes still registered after reclaim: {:?}",
        st.processes
    );
    let orphans = orphaned_segments(&arena);
    assert!(orphans.is_empty(), "LEAK: {orphans:?}");
    let (acked, total) = if run.roomy {
        check_persistent(&c, "at the end");
        check_counters(&c, &pool, "at the end")
    } else {
        (0, 0)
    };
    let mut live = 0u64;
    let mut items = 0u64;
    for e in c.entries() {
        check_any(&e.key, &e.value).unwrap_or_else(|err| panic!("at the end: {err}"));
        live += item_size(e.key.len() as u64, e.value.len() as u64);
        items += 1;
    }
    eprintln!(
        "chaos {name}: end state: {items} items needing {live} bytes; {} bytes in use of \
         {capacity}; {} free segments of {}; reaped {reaped}; totals {:?}",
        st.bytes_used, st.free_segments, st.segments, st.totals
    );
    assert_eq!(st.totals.corrupt, 0, "corrupt items met: {:?}", st.totals);
    assert!(
        live <= st.bytes_used && st.bytes_used <= capacity,
        "live items need {live} bytes, but {} are in use of {capacity}",
        st.bytes_used
    );
    if run.roomy {
        assert_eq!(
            (st.totals.evictions, st.totals.index_evictions),
            (0, 0),
            "the roomy run evicted: its counter and persistence checks assume it never does"
        );
    } else {
        assert!(
            st.totals.evictions > 0,
            "the pressure run never evicted: {:?}",
            st.totals
        );
    }

    // No leak (the pressure run; the roomy arena is slow to fill in a debug build): the log
    // turns over completely, the space in use is then what the live items need, and a fresh
    // fill after a flush reads back whole.
    let seg_size = capacity / u64::from(st.segments);
    let (turnover, fill) = if run.roomy {
        ((0, 0), (0, 0))
    } else {
        fill_and_read_back(&c, capacity, seg_size)
    };
    assert_eq!(c.stats().totals.corrupt, 0);
    let orphans = orphaned_segments(&arena);
    assert!(orphans.is_empty(), "LEAK after the fill: {orphans:?}");

    daemon.signal(libc::SIGTERM);
    let st = daemon.wait_exit(Duration::from_secs(20));
    assert!(
        st.is_some_and(|s| s.success()),
        "larderd did not stop cleanly: {st:?}\n{}",
        daemon.log()
    );
    let hb = pool.done_hb;
    println!(
        "chaos {name} summary: kills={} (workers {kills}, daemon {restarts}), workers spawned {}, \
         reads verified {}, writes {}, incrs acknowledged {acked} (counters total {total}), \
         daemon restarts {restarts}, snapshots loaded and verified {snapshots_checked} \
         ({snapshot_items} items), after a turnover {} bytes in use for {} live, \
         fill {} keys / {} bytes read back, {:.1} s chaos, {:.1} s total",
        kills + restarts,
        pool.spawned,
        hb[1],
        hb[2],
        turnover.0,
        turnover.1,
        fill.0,
        fill.1,
        chaos_secs,
        t0.elapsed().as_secs_f64()
    );
}

/// Every segment's state, owner, generation and write pointer, and the registered
/// process slots, for failure messages.
pub(crate) fn segment_table(arena: &Path) -> String {
    let f = File::open(arena).expect("open the arena file");
    let mut head = [0u8; PARAMS_LEN];
    f.read_exact_at(&mut head, 0).expect("read the header");
    let g = Params::from_bytes(&head).geometry().expect("geometry");
    let mut out = String::from("process slots:");
    for s in 0..g.nprocs {
        let reg = file_u64(&f, g.proc_off(s) + PS_REG);
        if reg != 0 {
            let pid = file_u64(&f, g.proc_off(s) + larder::layout::PS_PID);
            out += &format!(" [{s}: reg {reg} pid {pid}]");
        }
    }
    out += "\nsegments:";
    for seg in 0..g.nsegs {
        let c = file_u64(&f, g.seg_ctl_off(seg));
        let wptr = file_u64(&f, g.seg_wptr_off(seg));
        out += &format!(
            "\n  {seg}: {:?} owner {} gen {} wptr {wptr}",
            ctl_state(c),
            ctl_owner(c),
            larder::layout::ctl_gen(c)
        );
    }
    out
}

/// The stacks of the daemon attached to `c`.
pub(crate) fn daemon_stacks(c: &Cache) -> String {
    match c.info().daemon_pid {
        0 => "no daemon attached".into(),
        pid => format!("larderd pid {pid}:\n{}", stacks(pid)),
    }
}

/// Every thread's stack of process `pid` (gdb if installed, else the kernel's view).
pub(crate) fn stacks(pid: u32) -> String {
    let gdb = Command::new("gdb")
        .args([
            "-p",
            &pid.to_string(),
            "-batch",
            "-ex",
            "thread apply all bt",
        ])
        .stdin(Stdio::null())
        .output();
    if let Ok(out) = gdb {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("Thread") {
            return text;
        }
    }
    let mut out = String::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            let wchan = std::fs::read_to_string(t.path().join("wchan")).unwrap_or_default();
            out += &format!("{stat} wchan {wchan}\n");
        }
    }
    out
}

/// Space accounting and refill, after the chaos:
/// 1. the log is turned over with twice its capacity of fresh unique keys (no write may
///    fail), after which every segment not free holds only those keys: the bytes in use
///    must then be what the live items need, plus at most one segment (bound);
/// 2. after a flush, fresh keys filling all but the copy-forward reserve and two segments
///    of slack must all read back.
///
/// Returns (bytes in use, bytes the live items need) after 1, and (keys, bytes) of 2.
pub(crate) fn fill_and_read_back(
    c: &Cache,
    capacity: u64,
    seg_size: u64,
) -> ((u64, u64), (u64, u64)) {
    let mut n = 0u64;
    let put = |n: &mut u64, written: &mut u64| {
        let k = fill_key(*n);
        let v = make_value(&k, *n, 100 + (*n as usize * 7919) % 1900);
        c.set(&k, &v, None)
            .unwrap_or_else(|e| panic!("fill set #{n} after {written} bytes: {e}"));
        *written += item_size(k.len() as u64, v.len() as u64);
        *n += 1;
    };
    let mut written = 0u64;
    while written < 2 * capacity {
        put(&mut n, &mut written);
    }
    let used = c.stats().bytes_used;
    let mut live = 0u64;
    for e in c.entries() {
        check_any(&e.key, &e.value).unwrap_or_else(|err| panic!("after the turnover: {err}"));
        live += item_size(e.key.len() as u64, e.value.len() as u64);
    }
    assert!(
        live <= used && used <= live + seg_size,
        "LEAK: {used} bytes in use for {live} bytes of live items after the log turned over \
         (bound: live + one segment of {seg_size})"
    );

    c.flush().unwrap();
    let first = n;
    let nsegs = capacity / seg_size;
    let reserve = (nsegs / 32).max(2);
    let room = capacity - (reserve + 2) * seg_size;
    written = 0;
    while written < room {
        put(&mut n, &mut written);
    }
    for i in first..n {
        let k = fill_key(i);
        let v = c.get(&k).unwrap().unwrap_or_else(|| {
            panic!(
                "LEAK: fill key f{i} ({} of {}) is gone from a cache filled to {room} of \
                 {capacity} bytes after a flush",
                i - first,
                n - first
            )
        });
        assert_eq!(check_value(&k, &v), Ok(i));
    }
    ((used, live), (n - first, written))
}
