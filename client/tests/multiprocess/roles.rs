//! Worker roles: mixed reads and writes, counters, and the fork scenarios.

use super::*;

pub(crate) fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub(crate) fn run_worker(role: &str) -> Result<(), String> {
    let arena = PathBuf::from(std::env::var(ARENA).map_err(|_| "no arena path".to_string())?);
    let seed = env_u64(SEED, 1);
    // 0 = run until killed.
    let millis = env_u64(MILLIS, 0);
    let cache = Cache::open(&arena).map_err(|e| format!("open: {e}"))?;
    match role {
        "mixed" => mixed(&cache, seed, millis, 50),
        "writer" => mixed(&cache, seed, millis, 85),
        "reader" => mixed(&cache, seed, millis, 0),
        "counter" => counter(&cache, env_u64(COUNT, 0)),
        "forker" => forker(&cache, seed),
        "fork-orphan" => fork_orphan(&cache),
        "owner" => Owner::new(&cache, seed).run(),
        "filler" => filler(&cache, seed),
        other => Err(format!("unknown role {other}")),
    }
}

/// Random sets (`set_pct` % of operations) and verified gets over the shared key space.
/// Worker `seed` first writes its share of the keys, so every key exists afterwards.
pub(crate) fn mixed(cache: &Cache, seed: u64, millis: u64, set_pct: u32) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let deadline = (millis > 0).then(|| Instant::now() + Duration::from_millis(millis));
    let (mut sets, mut gets, mut hits) = (0u64, 0u64, 0u64);
    // Sequence numbers: the seed in the high bits keeps them distinct between workers and
    // small enough for make_value's length arithmetic.
    let mut seq = (seed & 0xffff) << 32;
    if set_pct > 0 {
        for i in (seed % 4..NKEYS).step_by(4) {
            let k = key(i);
            seq += 1;
            cache
                .set(&k, &make_value(&k, seq, MAX_VALUE), None)
                .map_err(|e| format!("set {:?}: {e}", String::from_utf8_lossy(&k)))?;
            sets += 1;
        }
    }
    let mut buf = Vec::with_capacity(MAX_VALUE);
    let mut n = 0u64;
    loop {
        n += 1;
        if n.is_multiple_of(64) {
            if let Some(d) = deadline {
                if Instant::now() >= d {
                    break;
                }
            }
        }
        let k = key(rng.gen_range(0..NKEYS));
        if rng.gen_range(0..100) < set_pct {
            seq += 1;
            cache
                .set(&k, &make_value(&k, seq, MAX_VALUE), None)
                .map_err(|e| format!("set {:?}: {e}", String::from_utf8_lossy(&k)))?;
            sets += 1;
        } else {
            buf.clear();
            gets += 1;
            let hit = if rng.gen_bool(0.5) {
                cache.get_into(&k, &mut buf)
            } else {
                cache.get(&k).map(|v| match v {
                    Some(v) => {
                        buf = v;
                        true
                    }
                    None => false,
                })
            }
            .map_err(|e| format!("get {:?}: {e}", String::from_utf8_lossy(&k)))?;
            if hit {
                hits += 1;
                check_value(&k, &buf).map_err(|e| {
                    format!(
                        "CORRUPT read of {:?} ({} bytes): {e}",
                        String::from_utf8_lossy(&k),
                        buf.len()
                    )
                })?;
            }
        }
    }
    println!("RESULT sets={sets} gets={gets} hits={hits}");
    Ok(())
}

/// `incr(b"ctr", 1)` `count` times (0 = until killed). With `LARDER_TEST_ACKS` set, appends
/// one byte to that file after every acknowledged increment: the file's length is the
/// number of increments this process knows happened (it lags by at most one if killed).
pub(crate) fn counter(cache: &Cache, count: u64) -> Result<(), String> {
    let mut acks = match std::env::var(ACKS) {
        Ok(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .map_err(|e| format!("ack file {p}: {e}"))?,
        ),
        Err(_) => None,
    };
    let mut last = 0u64;
    let mut i = 0u64;
    while count == 0 || i < count {
        i += 1;
        match cache.incr(b"ctr", 1) {
            Ok(Some(v)) => {
                if v <= last {
                    return Err(format!("incr went backwards: {last} then {v}"));
                }
                last = v;
            }
            Ok(None) => return Err(format!("incr #{i}: the counter vanished")),
            Err(e) => return Err(format!("incr #{i}: {e}")),
        }
        if let Some(f) = acks.as_mut() {
            f.write_all(b"+").map_err(|e| format!("ack write: {e}"))?;
        }
    }
    println!("RESULT incrs={i}");
    Ok(())
}

pub(crate) fn my_slots(cache: &Cache, pid: u32) -> Vec<u32> {
    cache
        .stats()
        .processes
        .iter()
        .filter(|p| p.pid == pid)
        .map(|p| p.slot)
        .collect()
}

/// Opens, writes (so it owns a lane segment), forks. The child uses the cache and checks
/// that it has its own slot; the parent waits for it.
pub(crate) fn forker(cache: &Cache, seed: u64) -> Result<(), String> {
    let ppid = std::process::id();
    for i in 0..50u64 {
        let k = format!("fork-parent-{i}").into_bytes();
        cache
            .set(&k, &make_value(&k, seed + i, 200), None)
            .map_err(|e| format!("parent set: {e}"))?;
    }
    let parent_slots = my_slots(cache, ppid);
    if parent_slots.len() != 1 {
        return Err(format!(
            "parent pid {ppid} has slots {parent_slots:?}, want one"
        ));
    }
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: fork in a worker process (never in the test harness). The child only runs
    // this function's code and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        let code = match fork_child(cache, ppid, parent_slots[0], seed) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("FORK CHILD FAILED: {e}");
                3
            }
        };
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        // SAFETY: ends the forked child without running the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for the child we just forked.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    if r != pid {
        return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("forked child ended with wait status {status:#x}"));
    }
    // The parent still works, still in its own slot, and sees the child's writes.
    let after = my_slots(cache, ppid);
    if after != parent_slots {
        return Err(format!(
            "parent slots changed: {parent_slots:?} -> {after:?}"
        ));
    }
    for i in 0..50u64 {
        let k = format!("fork-child-{i}").into_bytes();
        match cache.get(&k).map_err(|e| format!("parent get: {e}"))? {
            Some(v) => {
                let s = check_value(&k, &v).map_err(|e| format!("parent reads child's: {e}"))?;
                if s != seed + 1000 + i {
                    return Err(format!("child's key {i} has seq {s}"));
                }
            }
            None => return Err(format!("child's key {i} missing in the parent")),
        }
        let k = format!("fork-parent-{i}").into_bytes();
        cache
            .set(&k, &make_value(&k, seed + 2000 + i, 200), None)
            .map_err(|e| format!("parent set after fork: {e}"))?;
    }
    // The child _exited without detaching: its slot is dead and must be reapable, and the
    // reaper must not touch ours.
    let reaped = cache
        .reclaim_dead_clients()
        .map_err(|e| format!("reclaim: {e}"))?;
    if reaped < 1 {
        return Err("the dead forked child's slot was not reaped".into());
    }
    let after = my_slots(cache, ppid);
    if after != parent_slots {
        return Err(format!("parent slots after reclaim: {after:?}"));
    }
    println!("RESULT forked={pid} reaped={reaped}");
    Ok(())
}

pub(crate) fn fork_child(
    cache: &Cache,
    ppid: u32,
    parent_slot: u32,
    seed: u64,
) -> Result<(), String> {
    let me = std::process::id();
    for i in 0..50u64 {
        let k = format!("fork-child-{i}").into_bytes();
        cache
            .set(&k, &make_value(&k, seed + 1000 + i, 200), None)
            .map_err(|e| format!("child set: {e}"))?;
        let k = format!("fork-parent-{i}").into_bytes();
        match cache.get(&k).map_err(|e| format!("child get: {e}"))? {
            Some(v) => {
                check_value(&k, &v).map_err(|e| format!("child reads parent's: {e}"))?;
            }
            None => return Err(format!("parent's key {i} missing in the child")),
        }
    }
    let st = cache.stats();
    let mine: Vec<u32> = st
        .processes
        .iter()
        .filter(|p| p.pid == me)
        .map(|p| p.slot)
        .collect();
    let parents: Vec<u32> = st
        .processes
        .iter()
        .filter(|p| p.pid == ppid)
        .map(|p| p.slot)
        .collect();
    if mine.len() != 1 {
        return Err(format!(
            "child pid {me} has slots {mine:?}: {:?}",
            st.processes
        ));
    }
    if mine[0] == parent_slot {
        return Err(format!(
            "child registered in its parent's slot {parent_slot}"
        ));
    }
    if parents != [parent_slot] {
        return Err(format!("parent's slots seen by the child: {parents:?}"));
    }
    let own = st.processes.iter().find(|p| p.pid == me).unwrap();
    if own.counters.sets < 50 || own.counters.hits < 50 {
        return Err(format!("child's own counters: {:?}", own.counters));
    }
    Ok(())
}

/// Opens, writes, forks a child that never touches the cache and lives until its stdin
/// (inherited from us) reaches EOF, then dies without detaching. The harness checks that
/// our slot is reapable although the child still holds every descriptor we had.
pub(crate) fn fork_orphan(cache: &Cache) -> Result<(), String> {
    cache
        .set(b"orphan", b"x", None)
        .map_err(|e| format!("set: {e}"))?;
    let _ = std::io::stdout().flush();
    // SAFETY: fork in a worker process; the child only reads stdin and _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        let mut b = [0u8; 16];
        // SAFETY: reads into a local buffer until EOF, then ends the child.
        unsafe {
            while libc::read(0, b.as_mut_ptr().cast(), b.len()) > 0 {}
            libc::_exit(0);
        }
    }
    println!("RESULT grandchild={pid}");
    let _ = std::io::stdout().flush();
    // Die without detaching (no destructors).
    // SAFETY: ends this worker immediately.
    unsafe { libc::_exit(0) };
}
