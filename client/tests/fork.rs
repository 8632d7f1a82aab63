//! Fork (design.md §3, hazard 9): a forked child must never keep its parent's slot lock —
//! else a killed parent stays "alive" for as long as the child lives, its insert locks never
//! stolen and its segments never reaped — and must never wait on a lane or registration
//! its parent's other threads held at the fork.
//!
//! The forking is done by workers (this test binary re-executed with `LARDER_FORK_ROLE`),
//! never by the harness process. A worker prints `RESULT ...` lines and exits 0, or prints
//! the reason on stderr and exits 3.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{small, TempDir};
use larder::Cache;

const ROLE: &str = "LARDER_FORK_ROLE";
const ARENA: &str = "LARDER_FORK_ARENA";

/// Handles a worker opens before it forks: one more than the old fixed table of
/// registration descriptors the fork handler closed (64), which silently gave up when full.
const HANDLES: usize = 65;

#[test]
fn worker_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let arena = std::env::var(ARENA).expect("arena path");
    let r = match role.as_str() {
        "many-handles" => many_handles(&arena),
        "fork-storm" => fork_storm(&arena),
        "fork-writers" => fork_writers(&arena),
        other => Err(format!("unknown role {other}")),
    };
    let _ = std::io::stdout().flush();
    match r {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("WORKER {role} FAILED: {e}");
            std::process::exit(3);
        }
    }
}

/// Forks; the child runs `f` and ends with its exit code, without unwinding into the
/// parent's code or running its exit handlers.
fn fork(f: impl FnOnce() -> i32) -> Result<libc::pid_t, String> {
    // SAFETY: fork in a worker process; the child only runs `f` and then _exit.
    match unsafe { libc::fork() } {
        -1 => Err(format!("fork: {}", std::io::Error::last_os_error())),
        0 => {
            let code = f();
            // SAFETY: ends the forked child at once.
            unsafe { libc::_exit(code) }
        }
        pid => Ok(pid),
    }
}

/// Waits up to `limit` for child `pid`; its exit status, or `None` if it hung (then it is
/// killed).
fn wait_child(pid: libc::pid_t, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        let mut status = 0;
        // SAFETY: waits for our own child without blocking.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return Some(if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            });
        }
        if Instant::now() > deadline {
            // SAFETY: kills and reaps our own hung child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Opens `HANDLES` handles, forks a grandchild that lives on (until its stdin, inherited
/// from us, reaches EOF), reports its pid and waits to be killed.
fn many_handles(arena: &str) -> Result<(), String> {
    let handles: Vec<Cache> = (0..HANDLES)
        .map(|_| Cache::open(arena))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("open: {e}"))?;
    for (i, c) in handles.iter().enumerate() {
        c.set(format!("h{i}").as_bytes(), b"v", None)
            .map_err(|e| format!("set: {e}"))?;
    }
    let grandchild = fork(|| {
        // Past the fork handlers (they run before fork returns here): whatever they close
        // is closed by now. The harness waits for this line before it kills the parent.
        println!("GRANDCHILD up");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        0
    })?;
    println!("RESULT grandchild={grandchild}");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// `true` if this process holds any file lock through any of its descriptors
/// (`/proc/self/fdinfo/N` lists the locks held through the description of fd N).
fn holds_a_lock() -> bool {
    let Ok(dir) = std::fs::read_dir("/proc/self/fdinfo") else {
        return true;
    };
    dir.flatten().any(|e| {
        std::fs::read_to_string(e.path()).is_ok_and(|s| s.lines().any(|l| l.starts_with("lock:")))
    })
}

/// One thread opens and drops handles (each registration takes a slot lock) and reaps (a
/// reaper's probe takes dead slots' locks), as fast as it can; this one forks again and
/// again, and every child checks at once that it holds no lock at all.
fn fork_storm(arena: &str) -> Result<(), String> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    let a = arena.to_owned();
    let churn = std::thread::spawn(move || -> Result<u64, String> {
        let mut n = 0;
        while !s2.load(std::sync::atomic::Ordering::Relaxed) {
            let c = Cache::open(&a).map_err(|e| format!("open: {e}"))?;
            c.reclaim_dead_clients()
                .map_err(|e| format!("reclaim: {e}"))?;
            drop(c);
            n += 1;
        }
        Ok(n)
    });
    let forks = 300;
    let mut held = 0;
    for _ in 0..forks {
        let pid = fork(|| i32::from(holds_a_lock()))?;
        match wait_child(pid, Duration::from_secs(10)) {
            Some(0) => {}
            Some(1) => held += 1,
            other => return Err(format!("a forked child ended with {other:?}")),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let opened = churn.join().map_err(|_| "churn thread panicked")??;
    println!("RESULT forks={forks} held={held} opened={opened}");
    Ok(())
}

/// Two threads write without pause through one handle (so at almost any moment one of
/// them holds a lane); this one forks, and every child writes and reads from four threads
/// at once through the same handle. A child that waits on a lane its parent held at the
/// fork hangs.
fn fork_writers(arena: &str) -> Result<(), String> {
    let c = Cache::open(arena).map_err(|e| format!("open: {e}"))?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let (c, stop) = (c.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = c.set(format!("p{t}-{}", i % 500).as_bytes(), &[1; 200], None);
                    i += 1;
                }
            })
        })
        .collect();
    let forks = 40;
    let mut hung = 0;
    for f in 0..forks {
        let child_cache = c.clone();
        let pid = fork(move || {
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    let c = child_cache.clone();
                    std::thread::spawn(move || {
                        for i in 0..200u32 {
                            let k = format!("c{f}-{t}-{i}");
                            if c.set(k.as_bytes(), b"x", None).is_err()
                                || c.get(k.as_bytes()).ok().flatten().as_deref() != Some(b"x")
                            {
                                return false;
                            }
                        }
                        true
                    })
                })
                .collect();
            let ok = threads.into_iter().all(|t| t.join().unwrap_or(false));
            if ok {
                0
            } else {
                1
            }
        })?;
        match wait_child(pid, Duration::from_secs(20)) {
            Some(0) => {}
            None => hung += 1,
            Some(code) => return Err(format!("a forked child failed with {code}")),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        let _ = w.join();
    }
    println!("RESULT forks={forks} hung={hung}");
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Harness side
// ------------------------------------------------------------------------------------------

/// Starts a worker; its stderr goes to `stderr` next to the arena (quoted on failure).
fn spawn(role: &str, arena: &std::path::Path) -> Child {
    larder_testkit::worker("worker_entry")
        .env(ROLE, role)
        .env(ARENA, arena)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(arena.with_file_name("stderr")).unwrap())
        .spawn()
        .unwrap()
}

fn stderr_of(arena: &std::path::Path) -> String {
    std::fs::read_to_string(arena.with_file_name("stderr")).unwrap_or_default()
}

/// The value of `name=` on the worker's `RESULT` line.
fn result(line: &str, name: &str) -> u64 {
    let rest = &line[line.find("RESULT").expect("a RESULT line")..];
    rest.split_whitespace()
        .find_map(|f| f.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
        .parse()
        .unwrap()
}

/// Runs a worker to its end; its `RESULT` line.
fn run(role: &str, arena: &std::path::Path) -> String {
    let out = spawn(role, arena).wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{role} ended with {}\n{stdout}\n{}",
        out.status,
        stderr_of(arena)
    );
    stdout
        .lines()
        .find(|l| l.contains("RESULT"))
        .expect("a RESULT line")
        .to_owned()
}

#[test]
fn a_child_keeps_none_of_its_parents_65_slots_alive() {
    let d = TempDir::new("fork-many");
    // Room for a lane segment per handle.
    let c = Cache::create(d.arena(), &small(16 << 20).max_processes(80)).unwrap();
    let mut worker = spawn("many-handles", &d.arena());
    let mut out = BufReader::new(worker.stdout.take().unwrap());
    // Both lines, in either order: the parent's result, and the grandchild running.
    let (mut result_line, mut up) = (None, false);
    while result_line.is_none() || !up {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the worker ended early: {}",
            stderr_of(&d.arena())
        );
        up |= line.contains("GRANDCHILD up");
        if line.contains("RESULT") {
            result_line = Some(line);
        }
    }
    let grandchild = result(&result_line.unwrap(), "grandchild") as i32;
    // Hold the worker's stdin: the grandchild lives until it reads EOF there (and
    // `Child::wait` would close it).
    let stdin = worker.stdin.take();
    worker.kill().unwrap();
    worker.wait().unwrap();
    let reaped = c.reclaim_dead_clients().unwrap();
    // Running or sleeping, not a zombie (which `kill(pid, 0)` would not tell apart).
    let state = std::fs::read_to_string(format!("/proc/{grandchild}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("State:"))
                .map(str::to_owned)
        });
    // Let the grandchild go: EOF on the stdin it inherited from the worker.
    drop(stdin);
    assert!(
        state.as_deref().is_some_and(|s| !s.contains('Z')),
        "the grandchild should be alive during the check: {state:?}"
    );
    assert_eq!(
        reaped, HANDLES as u32,
        "slots of the killed parent kept alive by its forked child"
    );
    for i in 0..HANDLES {
        assert!(c.get(format!("h{i}").as_bytes()).unwrap().is_some());
    }
}

#[test]
fn a_fork_at_any_moment_of_registration_or_reaping_leaves_the_child_no_lock() {
    let d = TempDir::new("fork-storm");
    drop(Cache::create(d.arena(), &small(4 << 20)).unwrap());
    let line = run("fork-storm", &d.arena());
    assert!(result(&line, "opened") > 0, "{line}");
    assert_eq!(result(&line, "held"), 0, "children held a lock: {line}");
}

#[test]
fn a_child_never_waits_on_a_lane_its_parent_held_at_the_fork() {
    let d = TempDir::new("fork-writers");
    drop(Cache::create(d.arena(), &small(8 << 20)).unwrap());
    let line = run("fork-writers", &d.arena());
    assert_eq!(result(&line, "hung"), 0, "forked children hung: {line}");
}
