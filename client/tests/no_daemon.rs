//! Without a daemon, clients recover what killed clients held (design.md §6.1): real
//! processes, SIGKILLed, and nobody but clients left to reap them.
//!
//! Workers are this test binary re-executed (`--exact worker_entry`) with
//! `LARDER_NODAEMON_ROLE` set.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};
use std::time::Duration;

use common::TempDir;
use larder::{Cache, Config, Error};

const ROLE: &str = "LARDER_NODAEMON_ROLE";
const ARENA: &str = "LARDER_NODAEMON_ARENA";

/// Worker: attaches, writes one item (so its lane holds an OPEN segment), says "ready" and
/// waits to be killed.
#[test]
fn worker_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    assert_eq!(role, "hold-a-segment");
    let cache = Cache::open(std::env::var(ARENA).expect("arena path")).expect("open");
    let key = format!("held-{}", std::process::id());
    cache.set(key.as_bytes(), b"v", None).expect("set");
    println!("ready");
    std::io::stdout().flush().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn spawn_holder(arena: &std::path::Path) -> Child {
    let mut child = larder_testkit::worker("worker_entry")
        .env(ROLE, "hold-a-segment")
        .env(ARENA, arena)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    while !line.contains("ready") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the worker ended before it was ready"
        );
    }
    child
}

#[test]
fn clients_reap_killed_clients_segments_when_the_arena_runs_out() {
    let d = TempDir::new("nodaemon");
    // Four segments of 64 KiB: four writers, each holding one OPEN lane segment, hold the
    // whole log (the copy-forward reserve included: a writer that finds nothing else takes
    // from it).
    let config = Config::new(400 << 10)
        .segment_size(64 << 10)
        .max_value_len(4096)
        .max_processes(16);
    let c = Cache::create(d.arena(), &config).unwrap();
    assert_eq!(c.info().segments, 4);
    let mut holders: Vec<Child> = (0..4).map(|_| spawn_holder(&d.arena())).collect();
    let pids: Vec<u32> = holders.iter().map(Child::id).collect();
    let alive = |c: &Cache| {
        c.stats()
            .processes
            .iter()
            .filter(|p| pids.contains(&p.pid) && p.alive)
            .count()
    };
    assert_eq!(alive(&c), 4);
    for h in &mut holders {
        h.kill().unwrap();
        h.wait().unwrap();
    }
    // Dead, not yet reaped: registered, but not shown as alive.
    let stats = c.stats();
    assert_eq!(
        stats
            .processes
            .iter()
            .filter(|p| pids.contains(&p.pid))
            .count(),
        4,
        "{stats:?}"
    );
    assert_eq!(alive(&c), 0, "killed processes are listed as alive");
    // This process has no segment of its own yet and nobody reaps: every write must find
    // room all the same, again and again (the log turns over many times).
    let value = vec![7u8; 3000];
    for i in 0..2000u32 {
        match c.set(format!("k{i}").as_bytes(), &value, None) {
            Ok(()) => {}
            Err(Error::ArenaFull) => panic!("ArenaFull at write {i}: the dead were never reaped"),
            Err(e) => panic!("write {i}: {e}"),
        }
    }
    let after = c.stats();
    assert!(
        after.processes.iter().all(|p| !pids.contains(&p.pid)),
        "the killed processes' slots were not freed: {after:?}"
    );
    assert!(after.totals.reclaimed >= 4, "{:?}", after.totals);
    // The killed writers' items were kept (their segments were parked, not dropped), until
    // evicted like any other.
    assert_eq!(c.get(b"k1999").unwrap().as_deref(), Some(&value[..]));
}
