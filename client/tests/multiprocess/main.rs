//! Real multi-process tests: several OS processes attached to one arena file, some of them
//! SIGKILLed at random moments.
//!
//! Workers are this test binary re-executed (`current_exe --exact worker_entry`) with
//! `LARDER_TEST_ROLE` naming what to do; the harness process itself never forks. A worker
//! exits 0 on success and 3 (after printing the reason on stderr) on any error or any value
//! that fails `check_value`. Every child's stdout and stderr go to files in the test's
//! temporary directory, so a failure message can quote them.

#[path = "../common/mod.rs"]
mod common;
mod harness;
mod owner;
mod roles;

use harness::*;
use owner::*;
use roles::*;

use std::fs::File;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{check_value, make_value, small, TempDir};
use larder::Cache;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ROLE: &str = "LARDER_TEST_ROLE";
const ARENA: &str = "LARDER_TEST_ARENA";
const SEED: &str = "LARDER_TEST_SEED";
const MILLIS: &str = "LARDER_TEST_MILLIS";
const COUNT: &str = "LARDER_TEST_COUNT";
const ACKS: &str = "LARDER_TEST_ACKS";
/// A directory through which the harness and `owner` workers signal with empty files.
const SIGNALS: &str = "LARDER_TEST_SIGNALS";
/// How long `copy_forward_never_hides_a_live_key` churns the log (milliseconds).
const CF_MILLIS: &str = "LARDER_TEST_COPY_FORWARD_MILLIS";

/// Size of the shared key space.
const NKEYS: u64 = 2000;
/// Longest value written by the workers.
const MAX_VALUE: usize = 1000;

fn key(i: u64) -> Vec<u8> {
    format!("key-{i}").into_bytes()
}

// ------------------------------------------------------------------------------------------
// Worker side
// ------------------------------------------------------------------------------------------

/// The entry point of every worker process. Without `LARDER_TEST_ROLE` (the normal test run)
/// it does nothing.
#[test]
fn worker_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let code = match run_worker(&role) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("WORKER {role} pid {} FAILED: {e}", std::process::id());
            3
        }
    };
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(code);
}

// ------------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------------

#[test]
fn four_processes_share_one_arena() {
    let dir = TempDir::new("mp-share");
    let c = Cache::create(dir.arena(), &small(16 << 20)).unwrap();
    let mut w = Workers::new(&dir);
    let base = seed_base();
    for i in 0..4 {
        w.spawn("mixed", base + i, &[(MILLIS, "2000".into())]);
    }
    w.wait_all_ok(Duration::from_secs(20));

    let (mut sets, mut hits) = (0, 0);
    for wk in &w.list {
        let out = wk.stdout();
        sets += parse_result(&out, "sets");
        hits += parse_result(&out, "hits");
    }
    eprintln!("four_processes_share_one_arena: workers reported {sets} sets, {hits} hits");
    assert!(sets >= NKEYS, "workers reported only {sets} sets");
    assert!(hits > 0, "workers reported no hits");

    let present = verify_all_keys(&c);
    let st = c.stats();
    assert!(
        st.totals.sets >= sets,
        "stats count {} sets, workers reported {sets}",
        st.totals.sets
    );
    assert!(
        st.totals.hits >= hits,
        "stats count {} hits, workers reported {hits}",
        st.totals.hits
    );
    assert_eq!(st.totals.corrupt, 0, "corrupt items met: {st:?}");
    // Every key was written; with ~1 MiB live in 16 MiB, only a rare eviction may drop one.
    assert!(
        present + 20 >= NKEYS,
        "only {present} of {NKEYS} keys present: {st:?}"
    );
    // The workers detached cleanly: only we are registered.
    let me = std::process::id();
    assert!(
        st.processes.iter().all(|p| p.pid == me),
        "processes left registered: {:?}",
        st.processes
    );
}

#[test]
fn sigkill_writers_never_corrupts_and_space_comes_back() {
    let dir = TempDir::new("mp-kill");
    // Small enough that the writers evict (and get killed while evicting) all the time.
    let c = Cache::create(dir.arena(), &small(4 << 20)).unwrap();
    let mut w = Workers::new(&dir);
    let base = seed_base();
    let mut writers: Vec<usize> = (0..3).map(|i| w.spawn("writer", base + i, &[])).collect();
    let reader = w.spawn("reader", base + 3, &[]);
    // Let everyone attach and fill the key space before the killing starts.
    std::thread::sleep(Duration::from_millis(200));

    let mut rng = StdRng::seed_from_u64(base);
    let start = Instant::now();
    let mut kills = 0u32;
    let mut next_seed = base + 4;
    while start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(rng.gen_range(5..=50)));
        w.assert_running(reader);
        for &i in &writers {
            w.assert_running(i);
        }
        let victim = rng.gen_range(0..writers.len());
        w.kill_and_reap(writers[victim]);
        kills += 1;
        writers[victim] = w.spawn("writer", next_seed, &[]);
        next_seed += 1;
    }
    // The reader survived every kill (it exits 3 on any bad value).
    w.assert_running(reader);
    for &i in &writers {
        w.assert_running(i);
    }
    eprintln!(
        "sigkill_writers: {kills} writers SIGKILLed in {:?}",
        start.elapsed()
    );
    assert!(kills >= 30, "only {kills} kills");
    for &i in &writers {
        w.kill_and_reap(i);
    }
    w.kill_and_reap(reader);

    let reaped = c.reclaim_dead_clients().unwrap();
    let me = std::process::id();
    let st = c.stats();
    assert!(reaped >= 1, "nothing reaped after killing everyone: {st:?}");
    assert_eq!(
        st.processes.iter().map(|p| p.pid).collect::<Vec<_>>(),
        vec![me],
        "processes still registered after reclaim"
    );
    assert_eq!(st.totals.corrupt, 0, "corrupt items met: {st:?}");

    let present = verify_all_keys(&c);
    assert!(present > 0, "no key survived");
    // Every key the index yields is one of ours with a valid value.
    for k in c.keys() {
        let ks = String::from_utf8_lossy(&k).into_owned();
        assert!(ks.starts_with("key-"), "foreign key {ks:?} in the index");
        if let Some(v) = c.get(&k).unwrap() {
            check_value(&k, &v).unwrap_or_else(|e| panic!("{ks}: {e}"));
        }
    }

    // The arena is fully usable: twice its capacity of fresh writes never fail.
    let cap = st.capacity;
    let mut written = 0u64;
    let mut n = 0u64;
    while written < 2 * cap {
        let k = format!("fresh-{n}").into_bytes();
        let v = make_value(&k, n, MAX_VALUE);
        c.set(&k, &v, None)
            .unwrap_or_else(|e| panic!("fresh set #{n} after {written} bytes: {e}"));
        written += (k.len() + v.len() + 16) as u64;
        n += 1;
    }
    for i in n - 20..n {
        let k = format!("fresh-{i}").into_bytes();
        let v = c
            .get(&k)
            .unwrap()
            .unwrap_or_else(|| panic!("fresh-{i} (of {n}) missing"));
        assert_eq!(check_value(&k, &v), Ok(i), "fresh-{i}");
    }
    let st = c.stats();
    assert_eq!(st.totals.corrupt, 0, "corrupt items met: {st:?}");
    eprintln!(
        "sigkill_writers: reaped {reaped}, {present}/{NKEYS} keys present, {n} fresh sets, stats {:?}",
        st.totals
    );
}

#[test]
fn incr_is_never_lost_across_processes() {
    const N: u64 = 2000;
    let dir = TempDir::new("mp-incr");
    let c = Cache::create(dir.arena(), &small(4 << 20)).unwrap();

    // 1. Four processes, N increments each, nobody killed: exact.
    c.set(b"ctr", b"0", None).unwrap();
    let mut w = Workers::new(&dir);
    for i in 0..4 {
        w.spawn("counter", i, &[(COUNT, N.to_string())]);
    }
    w.wait_all_ok(Duration::from_secs(20));
    let v = c.get(b"ctr").unwrap().expect("ctr vanished");
    assert_eq!(
        String::from_utf8_lossy(&v),
        (4 * N).to_string(),
        "lost or duplicated increments"
    );
    drop(w);

    // 2. Counters SIGKILLed at random moments: acknowledged ≤ value ≤ acknowledged + kills.
    c.set(b"ctr", b"0", None).unwrap();
    let mut w = Workers::new(&dir);
    let mut rng = StdRng::seed_from_u64(seed_base());
    let mut ack_files = Vec::new();
    let spawn_counter = |w: &mut Workers, ack_files: &mut Vec<PathBuf>| {
        let p = dir.0.join(format!("acks-{}", ack_files.len()));
        ack_files.push(p.clone());
        w.spawn(
            "counter",
            0,
            &[(COUNT, "0".into()), (ACKS, p.display().to_string())],
        )
    };
    let mut live: Vec<usize> = (0..4)
        .map(|_| spawn_counter(&mut w, &mut ack_files))
        .collect();
    let start = Instant::now();
    let mut kills = 0u64;
    while start.elapsed() < Duration::from_millis(2000) {
        std::thread::sleep(Duration::from_millis(rng.gen_range(5..=50)));
        let victim = rng.gen_range(0..live.len());
        w.kill_and_reap(live[victim]);
        kills += 1;
        live[victim] = spawn_counter(&mut w, &mut ack_files);
    }
    for &i in &live {
        w.kill_and_reap(i);
        kills += 1;
    }
    let acked: u64 = ack_files
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    let v = c.get(b"ctr").unwrap().expect("ctr vanished");
    let v: u64 = String::from_utf8_lossy(&v)
        .parse()
        .unwrap_or_else(|e| panic!("ctr = {v:?}: {e}"));
    eprintln!("incr: {kills} counters SIGKILLed, {acked} acknowledged, final value {v}");
    assert!(acked > 0, "no increment acknowledged");
    assert!(
        v >= acked,
        "lost increments: value {v} < acknowledged {acked}"
    );
    assert!(
        v <= acked + kills,
        "phantom increments: value {v} > acknowledged {acked} + {kills} killed"
    );
    // The counter still works after the massacre.
    let before = v;
    c.reclaim_dead_clients().unwrap();
    assert_eq!(c.incr(b"ctr", 5).unwrap(), Some(before + 5));
    assert_eq!(c.stats().totals.corrupt, 0);
}

#[test]
fn forked_child_registers_its_own_slot() {
    let dir = TempDir::new("mp-fork");
    let c = Cache::create(dir.arena(), &small(4 << 20)).unwrap();
    let mut w = Workers::new(&dir);
    let i = w.spawn("forker", 7, &[]);
    let st = w.wait(i, Duration::from_secs(20));
    assert!(
        st.success(),
        "forker ended with {st}\n{}",
        w.list[i].output()
    );
    assert!(parse_result(&w.list[i].stdout(), "reaped") >= 1);
    // The parent detached cleanly; the child's slot was reaped by the parent.
    let me = std::process::id();
    let st = c.stats();
    assert!(
        st.processes.iter().all(|p| p.pid == me),
        "processes left registered: {:?}",
        st.processes
    );
    for i in 0..50u64 {
        let k = format!("fork-parent-{i}").into_bytes();
        let v = c.get(&k).unwrap().expect("parent's key missing");
        assert_eq!(check_value(&k, &v), Ok(7 + 2000 + i));
    }
}

#[test]
fn forked_child_does_not_keep_a_dead_parent_registered() {
    let dir = TempDir::new("mp-orphan");
    let c = Cache::create(dir.arena(), &small(4 << 20)).unwrap();
    let mut w = Workers::new(&dir);
    // The grandchild inherits the worker's stdin and lives until we close our end.
    let out = dir.0.join("orphan.out");
    let err = dir.0.join("orphan.err");
    let child = larder_testkit::worker("worker_entry")
        .env(ROLE, "fork-orphan")
        .env(ARENA, dir.arena())
        .stdin(Stdio::piped())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap())
        .spawn()
        .unwrap();
    w.list.push(Worker {
        child,
        name: "fork-orphan".into(),
        out,
        err,
        killed: false,
    });
    let st = w.wait(0, Duration::from_secs(20));
    assert!(
        st.success(),
        "fork-orphan ended with {st}\n{}",
        w.list[0].output()
    );
    let grandchild = parse_result(&w.list[0].stdout(), "grandchild") as i32;
    let worker_pid = w.list[0].child.id();
    // SAFETY: signal 0 only probes for existence.
    let alive = unsafe { libc::kill(grandchild, 0) } == 0;
    let seen = c.stats().processes.iter().any(|p| p.pid == worker_pid);
    let reaped = c.reclaim_dead_clients().unwrap();
    let after = c.stats().processes;
    // Let the grandchild go: EOF on the stdin it inherited.
    drop(w.list[0].child.stdin.take());
    assert!(
        alive,
        "the grandchild should still be alive during the check"
    );
    assert!(seen, "the dead worker was not registered at all");
    assert!(
        reaped >= 1 && after.iter().all(|p| p.pid != worker_pid),
        "the dead worker's slot was kept alive by its forked child: reaped {reaped}, {after:?}"
    );
    assert_eq!(c.get(b"orphan").unwrap().as_deref(), Some(&b"x"[..]));
}
