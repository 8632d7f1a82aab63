//! Real multi-process tests: several OS processes attached to one arena file, some of them
//! SIGKILLed at random moments.
//!
//! Workers are this test binary re-executed (`current_exe --exact worker_entry`) with
//! `LARDER_TEST_ROLE` naming what to do; the harness process itself never forks. A worker
//! exits 0 on success and 3 (after printing the reason on stderr) on any error or any value
//! that fails `check_value`. Every child's stdout and stderr go to files in the test's
//! temporary directory, so a failure message can quote them.

mod common;

use std::fs::File;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
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

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run_worker(role: &str) -> Result<(), String> {
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
fn mixed(cache: &Cache, seed: u64, millis: u64, set_pct: u32) -> Result<(), String> {
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
fn counter(cache: &Cache, count: u64) -> Result<(), String> {
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

fn my_slots(cache: &Cache, pid: u32) -> Vec<u32> {
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
fn forker(cache: &Cache, seed: u64) -> Result<(), String> {
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

fn fork_child(cache: &Cache, ppid: u32, parent_slot: u32, seed: u64) -> Result<(), String> {
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
fn fork_orphan(cache: &Cache) -> Result<(), String> {
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

/// Keys each `owner` worker owns, besides its counter.
const OWNED: u64 = 8;
/// Longest value an owner writes: the owners' items together stay a sliver of the log.
const OWNED_VALUE: usize = 160;
/// A get reports a miss after this many torn lookups in a row (`READ_RETRIES` in
/// client/src/protocol/index.rs), each counted in `torn_retries`.
const TORN_GIVE_UP: u64 = 8;

fn owned_key(owner: u64, i: u64) -> Vec<u8> {
    format!("own-{owner}-{i}").into_bytes()
}

fn owned_counter(owner: u64) -> Vec<u8> {
    format!("own-{owner}-ctr").into_bytes()
}

/// An `owner` worker: the only process that ever writes the keys `owned_key(me, 0..OWNED)`
/// and `owned_counter(me)`, so it knows at every moment what each must hold. It reads its
/// keys over and over (keeping their reference bits set, so that evictions copy them
/// forward instead of dropping them); every 64 rounds it increments its counter, overwrites
/// a key, or deletes a key and sets it again, in turn. When `stop` appears in the directory
/// `LARDER_TEST_SIGNALS` names, it stops writing, says so with a file `quiet-<me>`, and goes
/// on reading until `exit` appears; then it reads everything once more and prints the final
/// state: the version of each key (0: confirmed absent) and the counter (`ctr_gone=1`:
/// confirmed absent).
///
/// What it checks, and why no check can fire on a correct cache:
/// - A hit must carry exactly the version last written. Nobody else writes the key, and
///   an older copy is never made reachable again (an update or a copy-forward CASes the
///   key's one slot; a copy whose CAS fails is dead space), so any other value is a bug.
/// - A miss of a `get`, a `delete` that returns false or an `incr` that returns None is
///   *confirmed* with `ttl`, whose lookup, unlike a get's, never gives up on torn reads.
///   If `ttl` finds the key, it was present all along (nothing but this process could
///   have put it back): a present key was read as absent, the bug of commit b3bcf57. If
///   not, the key is really gone. That can happen legitimately under this pressure (an
///   eviction that finds the bit clear because this process was descheduled for a whole
///   turn of the log; a walk without a copy-forward destination; an index eviction, made
///   unlikely by the index sizing): it is only counted (`dropped`), and the key is written
///   again (or, once quiet, recorded as absent). The one other way a present key reads as
///   absent is a `get` that gave up after `TORN_GIVE_UP` torn lookups in a row: such a
///   miss is excused (`excused`) when this process's `torn_retries` rose by that much since
///   it was last read. (`delete` and `incr` never give up on a torn lookup.)
/// - After a `delete` that returned true, `ttl` finding the key is a bug: it was in a
///   second slot.
/// - `incr` must return the previous value + 1.
///
/// `moves` counts the times the cas token of a key changed although this process had not
/// written it: a copy-forward that the process observed. The harness requires some, so the
/// run demonstrably exercised the window.
struct Owner<'a> {
    cache: &'a Cache,
    me: u64,
    keys: Vec<Vec<u8>>,
    /// The version last written of each key; 0 once confirmed absent while quiet.
    version: Vec<u64>,
    /// The cas token last read of each key (`None` after our own write).
    token: Vec<Option<u64>>,
    counter: Vec<u8>,
    /// The counter's value as last acknowledged.
    count: u64,
    pad_key: Vec<u8>,
    pad: Vec<u8>,
    /// Cleared at `stop`: from then on nothing is written.
    writing: bool,
    /// Our `torn_retries` when last read.
    torn_mark: u64,
    gets: u64,
    moves: u64,
    deletes: u64,
    dropped: u64,
    excused: u64,
}

impl<'a> Owner<'a> {
    fn new(cache: &'a Cache, me: u64) -> Owner<'a> {
        Owner {
            cache,
            me,
            keys: (0..OWNED).map(|i| owned_key(me, i)).collect(),
            version: vec![0; OWNED as usize],
            token: vec![None; OWNED as usize],
            counter: owned_counter(me),
            count: 0,
            pad_key: format!("own-{me}-pad").into_bytes(),
            pad: vec![0x5a; cache.limits().1 as usize],
            writing: true,
            torn_mark: 0,
            gets: 0,
            moves: 0,
            deletes: 0,
            dropped: 0,
            excused: 0,
        }
    }

    fn name(&self, i: usize) -> String {
        String::from_utf8_lossy(&self.keys[i]).into_owned()
    }

    /// This process's `torn_retries` (stats walks the index: called rarely).
    fn torn(&self) -> u64 {
        let me = std::process::id();
        self.cache
            .stats()
            .processes
            .iter()
            .find(|p| p.pid == me)
            .map_or(0, |p| p.counters.torn_retries)
    }

    /// Whether `key` is present, by a lookup that never gives up on torn reads.
    fn present(&self, key: &[u8]) -> Result<bool, String> {
        self.cache
            .ttl(key)
            .map(|t| t.is_some())
            .map_err(|e| format!("ttl {:?}: {e}", String::from_utf8_lossy(key)))
    }

    /// Writes a new version of key `i`.
    fn write(&mut self, i: usize) -> Result<(), String> {
        if !self.writing {
            return Err("a write after stop".into());
        }
        self.version[i] += 1;
        let v = make_value(&self.keys[i], self.version[i], OWNED_VALUE);
        self.cache
            .set(&self.keys[i], &v, None)
            .map_err(|e| format!("set {}: {e}", self.name(i)))?;
        self.token[i] = None;
        self.seal()
    }

    fn set_counter(&mut self) -> Result<(), String> {
        if !self.writing {
            return Err("a write after stop".into());
        }
        self.cache
            .set(&self.counter, self.count.to_string().as_bytes(), None)
            .map_err(|e| format!("set counter: {e}"))?;
        self.seal()
    }

    /// Pushes what this process just wrote into the log. Its writes go to its lane's OPEN
    /// segment, which is never evicted; as little as the owners write, it would keep their
    /// keys out of reach of every eviction for most of the run. So every write is followed
    /// by a pad item of the largest value the arena takes, which the harness's config
    /// makes more than half a segment: the lane's segment then always holds a pad, so the
    /// next pad does not fit behind the write and the segment holding it is sealed into
    /// the log at once (or, for a write that began a segment, at the next write). One pad
    /// key per owner, overwritten each time: dead space by the next write.
    fn seal(&mut self) -> Result<(), String> {
        self.cache
            .set(&self.pad_key, &self.pad, None)
            .map_err(|e| format!("set pad: {e}"))
    }

    /// Reads key `i`: a hit must be the version last written, and none is expected of a
    /// key confirmed absent.
    fn read(&mut self, i: usize) -> Result<bool, String> {
        self.gets += 1;
        let Some((v, t)) = self
            .cache
            .gets(&self.keys[i])
            .map_err(|e| format!("get {}: {e}", self.name(i)))?
        else {
            return Ok(false);
        };
        match check_value(&self.keys[i], &v) {
            Ok(s) if s == self.version[i] => {}
            Ok(s) if self.version[i] == 0 => {
                return Err(format!(
                    "KEY CAME BACK: {} read version {s} after ttl had found it absent, and nothing writes it",
                    self.name(i)
                ))
            }
            Ok(s) => {
                return Err(format!(
                    "WRONG VALUE: {} read version {s}, but version {} was written last (a second copy?)",
                    self.name(i),
                    self.version[i]
                ))
            }
            Err(e) => return Err(format!("CORRUPT read of {}: {e}", self.name(i))),
        }
        if self.token[i].is_some_and(|old| old != t.0) {
            self.moves += 1;
        }
        self.token[i] = Some(t.0);
        Ok(true)
    }

    /// After `what` found key `i` absent: asks `ttl`. Present means it was present all
    /// along (a failure, unless `what` was a get that gave up on torn reads); absent means
    /// it was legitimately dropped: it is written again, or once quiet recorded as absent.
    fn confirm_absent(&mut self, i: usize, what: &str, get: bool) -> Result<(), String> {
        if self.present(&self.keys[i])? {
            if get {
                let torn = self.torn();
                let gave_up = torn >= self.torn_mark + TORN_GIVE_UP;
                self.torn_mark = torn;
                if gave_up {
                    self.excused += 1;
                    return Ok(());
                }
            }
            return Err(format!(
                "FALSE MISS: {what} found {} absent, yet ttl finds it (version {}), and only this process writes it",
                self.name(i),
                self.version[i]
            ));
        }
        self.dropped += 1;
        if self.writing {
            self.write(i)
        } else {
            self.version[i] = 0;
            Ok(())
        }
    }

    /// Reads key `i`, which must be present unless confirmed absent.
    fn expect(&mut self, i: usize, what: &str) -> Result<(), String> {
        if self.read(i)? || self.version[i] == 0 {
            return Ok(());
        }
        self.confirm_absent(i, what, true)
    }

    /// Deletes key `i` (which must have been live), checks it is gone, writes it again.
    fn delete_and_reset(&mut self, i: usize) -> Result<(), String> {
        let live = self
            .cache
            .delete(&self.keys[i])
            .map_err(|e| format!("delete {}: {e}", self.name(i)))?;
        if !live {
            // Written again already if it was really gone.
            return self.confirm_absent(i, "delete", false);
        }
        self.deletes += 1;
        if self.present(&self.keys[i])? {
            return Err(format!(
                "DELETED KEY STILL PRESENT: {} after delete returned true: it was in a second slot",
                self.name(i)
            ));
        }
        self.write(i)?;
        self.expect(i, "the get after the re-set")
    }

    fn incr(&mut self) -> Result<(), String> {
        let name = String::from_utf8_lossy(&self.counter).into_owned();
        match self.cache.incr(&self.counter, 1) {
            Ok(Some(v)) if v == self.count + 1 => {
                self.count = v;
                self.seal()
            }
            Ok(Some(v)) => Err(format!(
                "incr {name} returned {v}, after {}: want {}",
                self.count,
                self.count + 1
            )),
            Ok(None) if self.present(&self.counter)? => Err(format!(
                "FALSE MISS: incr found {name} absent, yet ttl finds it, and only this process writes it"
            )),
            Ok(None) => {
                self.dropped += 1;
                self.set_counter()
            }
            Err(e) => Err(format!("incr {name}: {e}")),
        }
    }

    fn run(mut self) -> Result<(), String> {
        let signals =
            PathBuf::from(std::env::var(SIGNALS).map_err(|_| "no signals directory".to_string())?);
        for i in 0..OWNED as usize {
            self.write(i)?;
        }
        self.set_counter()?;
        self.torn_mark = self.torn();
        let mut round = 0u64;
        let (mut next_write, mut next_delete) = (0u64, 0u64);
        loop {
            round += 1;
            for i in 0..OWNED as usize {
                self.expect(i, "get")?;
            }
            if round.is_multiple_of(256) {
                self.torn_mark = self.torn();
            }
            // Writes are rare next to reads: a key must outlive several turns of the log to
            // be copied forward under the reads (each key is overwritten every 1024 rounds,
            // deleted and set again every 2048, the counter incremented every 256).
            if !round.is_multiple_of(64) {
                continue;
            }
            if !self.writing {
                if signals.join("exit").exists() {
                    break;
                }
                continue;
            }
            // Checked before every write: once `stop` exists, nothing more is written.
            if signals.join("stop").exists() {
                self.writing = false;
                File::create(signals.join(format!("quiet-{}", self.me)))
                    .map_err(|e| format!("quiet file: {e}"))?;
                continue;
            }
            match (round / 64) % 4 {
                0 => self.incr()?,
                3 => {
                    self.delete_and_reset((next_delete % OWNED) as usize)?;
                    next_delete += 1;
                }
                _ => {
                    self.write((next_write % OWNED) as usize)?;
                    next_write += 1;
                }
            }
        }
        // Final pass, reads only: every key as recorded.
        for i in 0..OWNED as usize {
            self.expect(i, "the final get")?;
        }
        let ctr_gone = match self.cache.get(&self.counter) {
            Ok(Some(v)) if v == self.count.to_string().as_bytes() => 0,
            Ok(Some(v)) => {
                return Err(format!(
                    "counter reads {:?}, want {}",
                    String::from_utf8_lossy(&v),
                    self.count
                ))
            }
            Ok(None) if self.present(&self.counter)? => {
                return Err("FALSE MISS: the final get missed the counter, yet ttl finds it".into())
            }
            Ok(None) => 1,
            Err(e) => return Err(format!("final get of the counter: {e}")),
        };
        let versions: Vec<String> = (0..OWNED as usize)
            .map(|i| format!("v{i}={}", self.version[i]))
            .collect();
        println!(
            "RESULT owner={} rounds={round} gets={} moves={} deletes={} dropped={} excused={} ctr={} ctr_gone={ctr_gone} {}",
            self.me,
            self.gets,
            self.moves,
            self.deletes,
            self.dropped,
            self.excused,
            self.count,
            versions.join(" ")
        );
        Ok(())
    }
}

/// Sets unique keys with 1-3 KiB values until killed: with nothing ever read again, each
/// eviction drops them and copies only the referenced items (the owners') forward.
fn filler(cache: &Cache, seed: u64) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut value = vec![0u8; 3072];
    rng.fill(&mut value[..]);
    let mut n = 0u64;
    loop {
        n += 1;
        let k = format!("fill-{seed}-{n}").into_bytes();
        let len = rng.gen_range(1024..=3072);
        cache
            .set(&k, &value[..len], None)
            .map_err(|e| format!("set {:?}: {e}", String::from_utf8_lossy(&k)))?;
    }
}

// ------------------------------------------------------------------------------------------
// Harness side
// ------------------------------------------------------------------------------------------

struct Worker {
    child: Child,
    name: String,
    out: PathBuf,
    err: PathBuf,
    /// We SIGKILLed it (a signal death is then expected).
    killed: bool,
}

impl Worker {
    fn output(&self) -> String {
        let o = std::fs::read_to_string(&self.out).unwrap_or_default();
        let e = std::fs::read_to_string(&self.err).unwrap_or_default();
        format!(
            "--- {} stdout:\n{o}--- {} stderr:\n{e}",
            self.name, self.name
        )
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        self.killed = true;
    }
}

/// Every child of a test. Dropping it (also when an assertion fails) kills and reaps them.
struct Workers {
    dir: PathBuf,
    arena: PathBuf,
    list: Vec<Worker>,
    spawned: u32,
}

impl Workers {
    fn new(dir: &TempDir) -> Workers {
        Workers {
            dir: dir.0.clone(),
            arena: dir.arena(),
            list: Vec::new(),
            spawned: 0,
        }
    }

    /// Starts a worker and returns its index in `list`.
    fn spawn(&mut self, role: &str, seed: u64, extra: &[(&str, String)]) -> usize {
        self.spawned += 1;
        let name = format!("{role}#{}", self.spawned);
        let out = self.dir.join(format!("{name}.out"));
        let err = self.dir.join(format!("{name}.err"));
        let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
        cmd.args(["--exact", "worker_entry", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env(ARENA, &self.arena)
            .env(SEED, seed.to_string())
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("stdout file"))
            .stderr(File::create(&err).expect("stderr file"));
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn worker");
        self.list.push(Worker {
            child,
            name,
            out,
            err,
            killed: false,
        });
        self.list.len() - 1
    }

    /// Waits for worker `i` to exit, failing the test if it takes longer than `limit`
    /// (a hang).
    fn wait(&mut self, i: usize, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.list[i].child.try_wait().expect("try_wait") {
                return st;
            }
            if Instant::now() >= deadline {
                self.list[i].kill();
                let _ = self.list[i].child.wait();
                panic!(
                    "worker {} still running after {limit:?} (hang?)\n{}",
                    self.list[i].name,
                    self.list[i].output()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for every worker and asserts that each exited 0.
    fn wait_all_ok(&mut self, limit: Duration) {
        for i in 0..self.list.len() {
            let st = self.wait(i, limit);
            assert!(
                st.success(),
                "worker {} ended with {st}\n{}",
                self.list[i].name,
                self.list[i].output()
            );
        }
    }

    /// Fails the test if worker `i` has exited by itself (not by our SIGKILL).
    fn assert_running(&mut self, i: usize) {
        if let Some(st) = self.list[i].child.try_wait().expect("try_wait") {
            panic!(
                "worker {} exited by itself with {st} (signal {:?})\n{}",
                self.list[i].name,
                st.signal(),
                self.list[i].output()
            );
        }
    }

    /// SIGKILLs worker `i` and reaps it; fails if it had already exited by itself.
    fn kill_and_reap(&mut self, i: usize) {
        self.assert_running(i);
        self.list[i].kill();
        let st = self.list[i].child.wait().expect("wait");
        // It may have exited 3 between the check and the kill: that is a failure too.
        assert!(
            st.signal() == Some(libc::SIGKILL),
            "worker {} ended with {st}, not by our SIGKILL\n{}",
            self.list[i].name,
            self.list[i].output()
        );
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for w in &mut self.list {
            if let Ok(None) = w.child.try_wait() {
                w.kill();
            }
            let _ = w.child.wait();
        }
    }
}

/// The `RESULT` line of a worker's stdout as `name=value` pairs.
fn parse_result(stdout: &str, field: &str) -> u64 {
    // libtest prints "test worker_entry ... " without a newline before the worker's output.
    let line = stdout
        .lines()
        .find_map(|l| l.find("RESULT ").map(|i| &l[i..]))
        .unwrap_or_else(|| panic!("no RESULT line in worker output:\n{stdout}"));
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == field)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field}= in {line:?}"))
}

/// Reads every key of the shared key space; returns how many are present. Panics on a value
/// that fails verification.
fn verify_all_keys(c: &Cache) -> u64 {
    let mut present = 0;
    for i in 0..NKEYS {
        let k = key(i);
        if let Some(v) = c.get(&k).unwrap() {
            if let Err(e) = check_value(&k, &v) {
                panic!("key {i}: {e} ({} bytes)", v.len());
            }
            present += 1;
        }
    }
    present
}

fn seed_base() -> u64 {
    let s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    (s ^ u64::from(std::process::id())) & 0xffff_fff0
}

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
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "worker_entry", "--nocapture", "--test-threads=1"])
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

/// The bug of commit b3bcf57 under real processes: a reader loads a slot word `W`, an
/// evictor copies the (referenced) item forward into the *same slot* (`W -> W''`) and frees
/// the old segment, the reader sees the new generation, fails to clear the "stale" slot,
/// and skipped it: a present key read as absent, `delete` returned false, and a `set`
/// whose two lookups both met the window put the key into a second slot.
///
/// A 6 MiB arena of 64 KiB segments (80 of them) turns over constantly: filler processes
/// write unique keys with 1-3 KiB values, never read again, so every eviction walks a
/// segment of unreferenced items; owner processes (see `Owner`) keep a few keys each
/// referenced, so every turn of the log (tens of milliseconds) copies each of them forward
/// into its slot, and read, delete, re-set and increment them meanwhile, confirming every
/// miss they meet. The owners' live data (36 items of at most 200 bytes, and one 36 KiB
/// pad each) is a few percent of the 5 MiB log. The index is planned for 64-byte items
/// while the fillers' average 2 KiB, so it is loaded to about 2 %: a full 16-slot
/// neighbourhood (an index eviction, a legitimate drop) practically never happens, and the
/// owners' checks stay sound if one does (`Owner`), as for any other legitimate drop.
///
/// Afterwards: the fillers are SIGKILLed and reaped; the owners are told to stop writing
/// and each says when it has; only when all have (so that nothing is written, hence
/// nothing evicted, from then on) are they told to take their final reads and exit, and
/// each must exit 0. Then no key is in two slots (`keys()` yields the key of every slot
/// holding a live item, bucket by bucket, so a key in two slots appears twice), and the
/// arena holds exactly what each owner last saw: the same version of every key, the same
/// counter, and absent what it confirmed absent.
///
/// Runs `LARDER_TEST_COPY_FORWARD_MILLIS` (default 4000) of churn.
#[test]
fn copy_forward_never_hides_a_live_key() {
    const OWNERS: u64 = 4;
    const FILLERS: u64 = 2;
    let millis = env_u64(CF_MILLIS, 4000);
    let dir = TempDir::new("mp-cf");
    // Values up to 36 KiB: more than half a segment, so an owner's pad (`Owner::seal`)
    // never shares a segment with another pad.
    let config = larder::Config::new(6 << 20)
        .max_value_len(36 << 10)
        .segment_size(64 << 10)
        .avg_item_size(64)
        .max_processes(64);
    let c = Cache::create(dir.arena(), &config).unwrap();
    let segments = c.stats().segments;
    let signals = dir.0.join("signals");
    std::fs::create_dir(&signals).unwrap();
    let mut w = Workers::new(&dir);
    let base = seed_base();
    let owners: Vec<usize> = (0..OWNERS)
        .map(|o| w.spawn("owner", o, &[(SIGNALS, signals.display().to_string())]))
        .collect();
    let fillers: Vec<usize> = (0..FILLERS)
        .map(|i| w.spawn("filler", base + i, &[]))
        .collect();
    // Every worker keeps running (an owner exits 3 at its first failed check).
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(millis) {
        std::thread::sleep(Duration::from_millis(20));
        for &i in owners.iter().chain(&fillers) {
            w.assert_running(i);
        }
    }
    for &i in &fillers {
        w.kill_and_reap(i);
    }
    c.reclaim_dead_clients().unwrap();
    File::create(signals.join("stop")).unwrap();
    let limit = Instant::now() + Duration::from_secs(20);
    for o in 0..OWNERS {
        while !signals.join(format!("quiet-{o}")).exists() {
            w.assert_running(owners[o as usize]);
            assert!(Instant::now() < limit, "owner {o} never stopped writing");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    File::create(signals.join("exit")).unwrap();
    for &i in &owners {
        let st = w.wait(i, Duration::from_secs(20));
        assert!(
            st.success(),
            "worker {} ended with {st}\n{}",
            w.list[i].name,
            w.list[i].output()
        );
    }

    // No key in two slots.
    let mut seen = std::collections::HashMap::<Vec<u8>, u32>::new();
    for k in c.keys() {
        *seen.entry(k).or_default() += 1;
    }
    let twice: Vec<String> = seen
        .iter()
        .filter(|&(_, &n)| n > 1)
        .map(|(k, n)| format!("{} x{n}", String::from_utf8_lossy(k)))
        .collect();
    assert!(twice.is_empty(), "keys in more than one slot: {twice:?}");

    // The arena holds what each owner last saw.
    let mut summary = Vec::new();
    let mut moves = 0;
    for (o, &i) in owners.iter().enumerate() {
        let o = o as u64;
        let out = w.list[i].stdout();
        assert_eq!(parse_result(&out, "owner"), o);
        moves += parse_result(&out, "moves");
        summary.push(
            ["rounds", "moves", "deletes", "dropped", "excused"]
                .map(|f| format!("{f}={}", parse_result(&out, f)))
                .join(" "),
        );
        for k in 0..OWNED {
            let key = owned_key(o, k);
            let got = c.get(&key).unwrap().map(|v| check_value(&key, &v));
            let want = parse_result(&out, &format!("v{k}"));
            let want = (want > 0).then_some(Ok(want));
            assert_eq!(got, want, "owner {o}'s key {k} (None: absent)");
            assert_eq!(
                seen.contains_key(&key),
                want.is_some(),
                "owner {o}'s key {k} in keys()"
            );
        }
        let ctr = c.get(&owned_counter(o)).unwrap();
        let want = (parse_result(&out, "ctr_gone") == 0)
            .then(|| parse_result(&out, "ctr").to_string().into_bytes());
        assert_eq!(ctr, want, "owner {o}'s counter");
    }

    let st = c.stats();
    eprintln!(
        "copy_forward_never_hides_a_live_key: {segments} segments, {:?}; owners: {summary:?}; totals {:?}",
        start.elapsed(),
        st.totals
    );
    assert_eq!(st.totals.corrupt, 0, "corrupt items met: {st:?}");
    // The owners saw their keys move: copy-forward happened under their reads.
    assert!(
        moves > 0,
        "no owned key was seen copied forward: {summary:?}"
    );
}
