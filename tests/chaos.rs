//! Chaos: the real `larderd` and many client processes sharing one arena, SIGKILLed at
//! random moments, while every value read is verified (README: Reliability).
//!
//! `run_chaos` starts larderd, three writer processes (set/add/replace/delete/gets+cas on a
//! shared key space, incr on counters) and two readers (verifying every value, counter and
//! key they see), one of each never killed, and kills and respawns random workers until its
//! share of `LARDER_CHAOS_KILLS` (default 300, split between the two runs) is done; every
//! `DAEMON_EVERY` kills it SIGKILLs the daemon itself (after a snapshot, during one, or in
//! between) and restarts it. Continuously: no worker ever reads a corrupt or foreign value (it
//! exits 3), no worker and no daemon is silent for 10 s (heartbeat files; the daemon's is its
//! metrics file), counters stay between their acknowledged and attempted increments, every
//! restart re-attaches to the same file with the data, and every snapshot file left by a
//! killed daemon loads into a fresh one. At the end: no segment is left to a dead process,
//! the space in use is accounted for by the live items, and the arena refills completely.
//! Two settings: `chaos_roomy_…` (64 MiB, nothing may be evicted: exact counters) and
//! `chaos_pressure_…` (8 MiB, evicting all the time).
//!
//! By hand, at a large size (release build recommended):
//!
//! ```sh
//! LARDER_CHAOS_KILLS=10000 cargo test --release --test chaos -- --nocapture
//! ```
//!
//! `hostile_arena_files_never_crash_the_daemon_or_a_client` runs larderd and a client, each
//! in a process of its own, on files that are not arenas (short, grown, wrong magic, wrong
//! layout version, a directory, a FIFO, /dev/zero) and larderd on bad snapshot files: each
//! must end by itself or serve, never die of a signal, and never destroy the file it refused.
//!
//! Workers are this test binary re-executed (`--exact worker_entry`) with
//! `LARDER_CHAOS_ROLE` naming what to do; the harness itself never forks.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use larder::layout::{ctl_owner, ctl_state, item_size, Params, SegState, PARAMS_LEN, PS_REG};
use larder::{Cache, CasOutcome};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

mod support;
use support::{files_starting, Daemon};

const ROLE: &str = "LARDER_CHAOS_ROLE";
const ARENA: &str = "LARDER_CHAOS_ARENA";
const DIR: &str = "LARDER_CHAOS_DIR";
const ID: &str = "LARDER_CHAOS_ID";
const SEED: &str = "LARDER_CHAOS_WORKER_SEED";
/// "1": counters and persistent keys exist (the roomy run); "0": they do not (pressure).
const COUNTERS: &str = "LARDER_CHAOS_COUNTERS";
/// How many data keys the run uses.
const KEYS: &str = "LARDER_CHAOS_WORKER_KEYS";

/// Data keys `d0..`: written, deleted and read by everyone; may be evicted. A run uses the
/// first `Run::ndata` of them.
const NDATA: u64 = 8000;
/// Counter keys `c0..`: only ever incremented, never expire.
const NCTR: u64 = 16;
/// Keys `p0..` written once by the harness before the chaos starts; read, never written.
const NPERSIST: u64 = 200;
/// The daemon's limit (LARDER_MAX_VALUE) and the longest value the workers write.
const MAX_VALUE: usize = 4096;
const LONGEST: usize = 3000;
/// A live worker silent this long is stuck.
const STALL: Duration = Duration::from_secs(10);
/// Worker kills between two daemon kills.
const DAEMON_EVERY: u64 = 15;

fn data_key(i: u64) -> Vec<u8> {
    format!("d{i}").into_bytes()
}
fn ctr_key(j: u64) -> Vec<u8> {
    format!("c{j}").into_bytes()
}
fn persist_key(i: u64) -> Vec<u8> {
    format!("p{i}").into_bytes()
}
fn fill_key(i: u64) -> Vec<u8> {
    format!("f{i}").into_bytes()
}

// ------------------------------------------------------------------------------------------
// Values: key, sequence number and checksum (an FNV-1a independent of the cache's xxh3)
// ------------------------------------------------------------------------------------------

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3)
    })
}

/// `len` bytes (at least the minimum for `key`): key length, key, `seq`, filler derived from
/// `seq`, checksum of all that.
fn make_value(key: &[u8], seq: u64, len: usize) -> Vec<u8> {
    let len = len.max(key.len() + 18);
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&(key.len() as u16).to_le_bytes());
    v.extend_from_slice(key);
    v.extend_from_slice(&seq.to_le_bytes());
    let mut x = seq ^ 0x9e37_79b9_7f4a_7c15;
    while v.len() < len - 8 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        v.push((x >> 56) as u8);
    }
    let sum = fnv(&v);
    v.extend_from_slice(&sum.to_le_bytes());
    v
}

/// Checks a value made by [`make_value`] for `key`; returns its sequence number.
fn check_value(key: &[u8], v: &[u8]) -> Result<u64, String> {
    if v.len() < key.len() + 18 {
        return Err(format!("value of {} bytes is too short", v.len()));
    }
    let (body, sum) = v.split_at(v.len() - 8);
    if fnv(body) != u64::from_le_bytes(sum.try_into().expect("8 bytes")) {
        return Err(format!(
            "checksum mismatch (torn or foreign value of {} bytes)",
            v.len()
        ));
    }
    let klen = usize::from(u16::from_le_bytes([body[0], body[1]]));
    if klen + 10 > body.len() || &body[2..2 + klen] != key {
        return Err(format!(
            "value belongs to key {:?}, read under {:?}",
            String::from_utf8_lossy(&body[2..(2 + klen).min(body.len())]),
            String::from_utf8_lossy(key)
        ));
    }
    Ok(u64::from_le_bytes(
        body[2 + klen..10 + klen].try_into().expect("8 bytes"),
    ))
}

fn parse_counter(v: &[u8]) -> Result<u64, String> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            format!(
                "counter value {:?} is not a number",
                String::from_utf8_lossy(v)
            )
        })
}

/// Keys the workers and the harness write: `d<NDATA`, `c<NCTR`, `p<NPERSIST`, `f…`.
fn known_key(key: &[u8]) -> bool {
    let k = String::from_utf8_lossy(key);
    let n = k.get(1..).and_then(|s| s.parse::<u64>().ok());
    match (k.get(..1), n) {
        (Some("d"), Some(i)) => i < NDATA && k[1..] == i.to_string(),
        (Some("c"), Some(j)) => j < NCTR && k[1..] == j.to_string(),
        (Some("p"), Some(i)) => i < NPERSIST && k[1..] == i.to_string(),
        (Some("f"), Some(i)) => k[1..] == i.to_string(),
        _ => false,
    }
}

/// Checks any item the workers or the harness can have written; a key of no known kind is
/// a foreign key in the index.
fn check_any(key: &[u8], v: &[u8]) -> Result<(), String> {
    let k = String::from_utf8_lossy(key);
    if !known_key(key) {
        return Err(format!("foreign key {k:?} in the index"));
    }
    match key[0] {
        b'c' => parse_counter(v).map(|_| ()),
        b'p' => match check_value(key, v)? {
            s if s.to_string() == k[1..] => Ok(()),
            s => Err(format!("persistent key has seq {s}")),
        },
        _ => check_value(key, v).map(|_| ()),
    }
    .map_err(|e| format!("{k}: {e}"))
}

// ------------------------------------------------------------------------------------------
// Worker side
// ------------------------------------------------------------------------------------------

/// The entry point of every worker process. Without `LARDER_CHAOS_ROLE` (the normal test
/// run) it does nothing.
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

/// Progress a worker publishes: `[ops, verified reads, writes, acknowledged incrs]`.
struct Heartbeat {
    file: File,
    words: [u64; 4],
}

impl Heartbeat {
    fn publish(&mut self) -> Result<(), String> {
        let mut b = [0u8; 32];
        for (i, w) in self.words.iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        self.file
            .write_all_at(&b, 0)
            .map_err(|e| format!("heartbeat: {e}"))
    }
}

struct WorkerCtx {
    cache: Cache,
    rng: StdRng,
    hb: Heartbeat,
    stop: PathBuf,
    id: u64,
    /// Counters and persistent keys are in use (the roomy run).
    counters: bool,
    /// Data keys in use.
    ndata: u64,
}

fn run_worker(role: &str) -> Result<(), String> {
    let arena = PathBuf::from(std::env::var(ARENA).map_err(|_| "no arena path".to_string())?);
    if role == "open-hostile" {
        return open_hostile(&arena);
    }
    let dir = PathBuf::from(std::env::var(DIR).map_err(|_| "no directory".to_string())?);
    let id = env_u64(ID, 0);
    let hb_file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(format!("hb-{id}")))
        .map_err(|e| format!("heartbeat file: {e}"))?;
    let cache = Cache::open(&arena).map_err(|e| format!("open: {e}"))?;
    let mut w = WorkerCtx {
        cache,
        rng: StdRng::seed_from_u64(env_u64(SEED, id)),
        hb: Heartbeat {
            file: hb_file,
            words: [0; 4],
        },
        stop: dir.join("stop"),
        id,
        counters: env_u64(COUNTERS, 0) == 1,
        ndata: env_u64(KEYS, 800).clamp(1, NDATA),
    };
    w.hb.publish()?;
    match role {
        "writer" => writer(&mut w, &dir),
        "reader" => reader(&mut w),
        other => Err(format!("unknown role {other}")),
    }?;
    w.hb.publish()?;
    println!(
        "RESULT ops={} verified={} writes={} incrs={}",
        w.hb.words[0], w.hb.words[1], w.hb.words[2], w.hb.words[3]
    );
    Ok(())
}

impl WorkerCtx {
    /// Every 32 operations: publish progress; `true` when the harness asks to stop.
    fn tick(&mut self) -> Result<bool, String> {
        self.hb.words[0] += 1;
        if self.hb.words[0].is_multiple_of(32) {
            self.hb.publish()?;
            if self.hb.words[0].is_multiple_of(256) && self.stop.exists() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn verify(&mut self, key: &[u8], v: &[u8], what: &str) -> Result<(), String> {
        check_any(key, v).map_err(|e| format!("CORRUPT value from {what}: {e}"))?;
        self.hb.words[1] += 1;
        Ok(())
    }

    fn value_len(&mut self) -> usize {
        // Mostly small, sometimes up to LONGEST: items of every size class.
        if self.rng.gen_bool(0.8) {
            self.rng.gen_range(20..400)
        } else {
            self.rng.gen_range(400..=LONGEST)
        }
    }
}

/// An append-only file of one byte per event (the counter's number): what this worker
/// attempted (written before the call) and what was acknowledged (written after it).
fn append_file(dir: &Path, name: &str) -> Result<File, String> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .map_err(|e| format!("{name}: {e}"))
}

fn writer(w: &mut WorkerCtx, dir: &Path) -> Result<(), String> {
    let mut attempts = append_file(dir, &format!("att-{}", w.id))?;
    let mut acks = append_file(dir, &format!("ack-{}", w.id))?;
    let mut last_ctr = [0u64; NCTR as usize];
    // Sequence numbers distinct between workers.
    let mut seq = w.id << 32;
    let c = w.cache.clone();
    let e = |op: &str, k: &[u8], err: larder::Error| {
        format!("{op} {:?}: {err}", String::from_utf8_lossy(k))
    };
    while !w.tick()? {
        seq += 1;
        let k = data_key(w.rng.gen_range(0..w.ndata));
        let r = w.rng.gen_range(0..100);
        match r {
            0..=29 => {
                let v = make_value(&k, seq, w.value_len());
                c.set(&k, &v, None).map_err(|x| e("set", &k, x))?;
                w.hb.words[2] += 1;
            }
            30..=39 => {
                let v = make_value(&k, seq, w.value_len());
                if c.add(&k, &v, None).map_err(|x| e("add", &k, x))? {
                    w.hb.words[2] += 1;
                }
            }
            40..=49 => {
                let v = make_value(&k, seq, w.value_len());
                if c.replace(&k, &v, None).map_err(|x| e("replace", &k, x))? {
                    w.hb.words[2] += 1;
                }
            }
            50..=56 => {
                c.delete(&k).map_err(|x| e("delete", &k, x))?;
            }
            57..=66 => {
                if let Some((old, token)) = c.gets(&k).map_err(|x| e("gets", &k, x))? {
                    w.verify(&k, &old, "gets")?;
                    let v = make_value(&k, seq, w.value_len());
                    match c.cas(&k, &v, token, None).map_err(|x| e("cas", &k, x))? {
                        CasOutcome::Stored => w.hb.words[2] += 1,
                        CasOutcome::Exists | CasOutcome::NotFound => {}
                    }
                }
            }
            67..=81 if w.counters => {
                let j = w.rng.gen_range(0..NCTR);
                let k = ctr_key(j);
                attempts
                    .write_all(&[j as u8])
                    .map_err(|x| format!("attempts file: {x}"))?;
                match c.incr(&k, 1).map_err(|x| e("incr", &k, x))? {
                    Some(v) if v > last_ctr[j as usize] => last_ctr[j as usize] = v,
                    Some(v) => {
                        return Err(format!(
                            "LOST INCREMENT: {} went from {} to {v}",
                            String::from_utf8_lossy(&k),
                            last_ctr[j as usize]
                        ))
                    }
                    None => {
                        return Err(format!(
                            "LOST COUNTER: {} vanished",
                            String::from_utf8_lossy(&k)
                        ))
                    }
                }
                acks.write_all(&[j as u8])
                    .map_err(|x| format!("acks file: {x}"))?;
                w.hb.words[3] += 1;
            }
            _ => {
                if let Some(v) = c.get(&k).map_err(|x| e("get", &k, x))? {
                    w.verify(&k, &v, "get")?;
                }
            }
        }
    }
    Ok(())
}

fn reader(w: &mut WorkerCtx) -> Result<(), String> {
    let c = w.cache.clone();
    let mut last_ctr = [0u64; NCTR as usize];
    let mut buf = Vec::with_capacity(MAX_VALUE);
    let e = |op: &str, k: &[u8], err: larder::Error| {
        format!("{op} {:?}: {err}", String::from_utf8_lossy(k))
    };
    while !w.tick()? {
        let r = w.rng.gen_range(0..1000);
        match r {
            0..=599 => {
                let k = data_key(w.rng.gen_range(0..w.ndata));
                buf.clear();
                if c.get_into(&k, &mut buf).map_err(|x| e("get_into", &k, x))? {
                    let v = std::mem::take(&mut buf);
                    w.verify(&k, &v, "get_into")?;
                    buf = v;
                }
            }
            600..=749 => {
                let k = data_key(w.rng.gen_range(0..w.ndata));
                if let Some((v, _)) = c.gets(&k).map_err(|x| e("gets", &k, x))? {
                    w.verify(&k, &v, "gets")?;
                }
            }
            750..=899 if w.counters => {
                // Counters only grow: a read going backwards is a lost increment.
                let j = w.rng.gen_range(0..NCTR);
                let k = ctr_key(j);
                match c.get(&k).map_err(|x| e("get", &k, x))? {
                    Some(v) => {
                        w.verify(&k, &v, "get")?;
                        let n = parse_counter(&v)?;
                        if n < last_ctr[j as usize] {
                            return Err(format!(
                                "LOST INCREMENT: c{j} read {} then {n}",
                                last_ctr[j as usize]
                            ));
                        }
                        last_ctr[j as usize] = n;
                    }
                    None => return Err(format!("LOST COUNTER: c{j} vanished")),
                }
            }
            900..=998 if w.counters => {
                let i = w.rng.gen_range(0..NPERSIST);
                let k = persist_key(i);
                if let Some(v) = c.get(&k).map_err(|x| e("get", &k, x))? {
                    w.verify(&k, &v, "get")?;
                }
            }
            999 => {
                // Every key the index yields is one of ours, and its value checks out.
                for k in c.keys() {
                    if let Some(v) = c.get(&k).map_err(|x| e("get", &k, x))? {
                        w.verify(&k, &v, "keys+get")?;
                    } else if !known_key(&k) {
                        return Err(format!(
                            "CORRUPT: foreign key {:?} from keys()",
                            String::from_utf8_lossy(&k)
                        ));
                    }
                }
            }
            _ => {
                let k = data_key(w.rng.gen_range(0..w.ndata));
                if let Some(v) = c.get(&k).map_err(|x| e("get", &k, x))? {
                    w.verify(&k, &v, "get")?;
                }
            }
        }
    }
    Ok(())
}

/// A hostile file at `arena`: opening it must fail cleanly or give a working handle.
fn open_hostile(arena: &Path) -> Result<(), String> {
    match Cache::open(arena) {
        Err(e) => println!("RESULT refused: {e}"),
        Ok(c) => {
            // It was accepted: it must then work like an arena.
            let _ = c.get(b"k");
            let _ = c.set(b"k", b"v", None);
            let _ = c.keys().count();
            let _ = c.stats();
            let _ = c.reclaim_dead_clients();
            println!("RESULT accepted");
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Harness side: temporary directory, the daemon
// ------------------------------------------------------------------------------------------

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("larder-chaos-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os("LARDER_CHAOS_KEEP").is_some() {
            eprintln!("keeping {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ------------------------------------------------------------------------------------------
// Harness side: workers
// ------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Writer,
    Reader,
}

struct Worker {
    child: Child,
    role: Role,
    id: u64,
    /// Never killed: sees every other process die around it for the whole run.
    sentinel: bool,
    hb: [u64; 4],
    last_progress: Instant,
}

struct Pool {
    dir: PathBuf,
    arena: PathBuf,
    seed: u64,
    /// The roomy run: workers use counters and persistent keys.
    counters: bool,
    ndata: u64,
    next_id: u64,
    live: Vec<Worker>,
    /// Counter increments of workers already reaped: (attempted, acknowledged) per counter.
    done_att: [u64; NCTR as usize],
    done_ack: [u64; NCTR as usize],
    /// Progress of reaped workers: ops, verified reads, writes, incrs.
    done_hb: [u64; 4],
    spawned: u64,
    /// For the failure messages: the cache's counters when a worker fails.
    diag: Option<Cache>,
}

impl Pool {
    fn path(&self, name: &str, id: u64) -> PathBuf {
        self.dir.join(format!("{name}-{id}"))
    }

    fn spawn(&mut self, role: Role, sentinel: bool) {
        let id = self.next_id;
        self.next_id += 1;
        self.spawned += 1;
        let role_name = match role {
            Role::Writer => "writer",
            Role::Reader => "reader",
        };
        let child = Command::new(std::env::current_exe().expect("current_exe"))
            .args(["--exact", "worker_entry", "--nocapture", "--test-threads=1"])
            .env(ROLE, role_name)
            .env(ARENA, &self.arena)
            .env(DIR, &self.dir)
            .env(ID, id.to_string())
            .env(SEED, (self.seed ^ (id << 20)).to_string())
            .env(COUNTERS, if self.counters { "1" } else { "0" })
            .env(KEYS, self.ndata.to_string())
            .stdin(Stdio::null())
            .stdout(File::create(self.path("out", id)).expect("stdout file"))
            .stderr(File::create(self.path("err", id)).expect("stderr file"))
            .spawn()
            .expect("spawn worker");
        self.live.push(Worker {
            child,
            role,
            id,
            sentinel,
            hb: [0; 4],
            last_progress: Instant::now(),
        });
    }

    fn output(&self, id: u64) -> String {
        let o = std::fs::read_to_string(self.path("out", id)).unwrap_or_default();
        let e = std::fs::read_to_string(self.path("err", id)).unwrap_or_default();
        let st = self.diag.as_ref().map(|c| c.stats());
        format!("--- worker {id} stdout:\n{o}--- worker {id} stderr:\n{e}--- cache stats: {st:?}")
    }

    fn read_hb(&self, id: u64) -> [u64; 4] {
        let mut b = [0u8; 32];
        match File::open(self.path("hb", id)) {
            Ok(f) if f.read_exact_at(&mut b, 0).is_ok() => {
                std::array::from_fn(|i| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap()))
            }
            _ => [0; 4],
        }
    }

    /// Per-counter event counts of one worker's append file.
    fn count_events(&self, name: &str, id: u64) -> [u64; NCTR as usize] {
        let mut n = [0u64; NCTR as usize];
        for b in std::fs::read(self.path(name, id)).unwrap_or_default() {
            n[usize::from(b)] += 1;
        }
        n
    }

    /// Fails the test if a worker exited by itself or stalled; records progress.
    fn check(&mut self) {
        let now = Instant::now();
        for i in 0..self.live.len() {
            let id = self.live[i].id;
            if let Some(st) = self.live[i].child.try_wait().expect("try_wait") {
                panic!(
                    "worker {id} ({:?}) exited by itself with {st}\n{}",
                    self.live[i].role,
                    self.output(id)
                );
            }
            let hb = self.read_hb(id);
            let w = &mut self.live[i];
            if hb[0] != w.hb[0] {
                w.hb = hb;
                w.last_progress = now;
            } else if now.duration_since(w.last_progress) > STALL {
                let (role, silent) = (w.role, now.duration_since(w.last_progress));
                panic!(
                    "STALL: worker {id} ({role:?}) made no progress for {silent:?} (ops {})\n{}",
                    hb[0],
                    self.output(id)
                );
            }
        }
    }

    /// Folds a reaped worker's files into the totals and removes them.
    fn retire(&mut self, id: u64) {
        let hb = self.read_hb(id);
        for (t, x) in self.done_hb.iter_mut().zip(hb) {
            *t += x;
        }
        let att = self.count_events("att", id);
        let ack = self.count_events("ack", id);
        for j in 0..NCTR as usize {
            self.done_att[j] += att[j];
            self.done_ack[j] += ack[j];
        }
        for name in ["out", "err", "hb", "att", "ack"] {
            let _ = std::fs::remove_file(self.path(name, id));
        }
    }

    /// SIGKILLs live worker `i` and respawns its role.
    fn kill_and_respawn(&mut self, i: usize) {
        let mut w = self.live.swap_remove(i);
        if let Some(st) = w.child.try_wait().expect("try_wait") {
            panic!(
                "worker {} ({:?}) exited by itself with {st}\n{}",
                w.id,
                w.role,
                self.output(w.id)
            );
        }
        let _ = w.child.kill();
        let st = w.child.wait().expect("wait");
        assert_eq!(
            st.signal(),
            Some(libc::SIGKILL),
            "worker {} ended with {st}, not by our SIGKILL\n{}",
            w.id,
            self.output(w.id)
        );
        self.retire(w.id);
        self.spawn(w.role, false);
    }

    /// Acknowledged (`ack`) or attempted (`att`) increments so far, per counter.
    fn incrs(&self, name: &str) -> [u64; NCTR as usize] {
        let mut n = if name == "ack" {
            self.done_ack
        } else {
            self.done_att
        };
        for w in &self.live {
            let m = self.count_events(name, w.id);
            for j in 0..NCTR as usize {
                n[j] += m[j];
            }
        }
        n
    }

    /// Asks every worker to stop and waits for each to exit 0 (a stuck one fails the test).
    fn stop_all(&mut self) {
        File::create(self.dir.join("stop")).expect("stop file");
        let deadline = Instant::now() + STALL;
        for w in &mut self.live {
            loop {
                if let Some(st) = w.child.try_wait().expect("try_wait") {
                    if !st.success() {
                        let id = w.id;
                        panic!(
                            "worker {id} ended with {st} when asked to stop\n{}",
                            std::fs::read_to_string(self.dir.join(format!("err-{id}")))
                                .unwrap_or_default()
                        );
                    }
                    break;
                }
                if Instant::now() >= deadline {
                    let _ = w.child.kill();
                    panic!(
                        "STALL: worker {} did not stop within {STALL:?}\n{}",
                        w.id,
                        std::fs::read_to_string(self.dir.join(format!("err-{}", w.id)))
                            .unwrap_or_default()
                    );
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        for w in std::mem::take(&mut self.live) {
            self.retire(w.id);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for w in &mut self.live {
            let _ = w.child.kill();
            let _ = w.child.wait();
        }
    }
}

// ------------------------------------------------------------------------------------------
// Harness side: checks
// ------------------------------------------------------------------------------------------

/// Reads `len` little-endian u64 words of the arena file at `off`.
fn file_u64(f: &File, off: u64) -> u64 {
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, off).expect("read the arena file");
    u64::from_le_bytes(b)
}

/// Segments left OPEN or EVICTING by a registration that is no longer in any process slot
/// (a leak: nobody would ever seal, park or free them), and segments in no valid state.
fn orphaned_segments(arena: &Path) -> Vec<String> {
    let f = File::open(arena).expect("open the arena file");
    let mut head = [0u8; PARAMS_LEN];
    f.read_exact_at(&mut head, 0).expect("read the header");
    let g = Params::from_bytes(&head)
        .geometry()
        .expect("a valid arena's geometry");
    let regs: HashSet<u32> = (0..g.nprocs)
        .map(|s| file_u64(&f, g.proc_off(s) + PS_REG) as u32)
        .filter(|&r| r != 0)
        .collect();
    let mut bad = Vec::new();
    for seg in 0..g.nsegs {
        let c = file_u64(&f, g.seg_ctl_off(seg));
        match ctl_state(c) {
            Some(s @ (SegState::Open | SegState::Evicting)) if !regs.contains(&ctl_owner(c)) => bad
                .push(format!(
                    "segment {seg} {s:?} owned by dead registration {}",
                    ctl_owner(c)
                )),
            None => bad.push(format!("segment {seg} has an invalid control word {c:#x}")),
            _ => {}
        }
    }
    bad
}

/// Checks every counter: acknowledged ≤ value ≤ attempted. Reads the acknowledgements
/// first and the attempts last, so increments racing with the check cannot fail it.
fn check_counters(c: &Cache, pool: &Pool, when: &str) -> (u64, u64) {
    let acked = pool.incrs("ack");
    let values: Vec<u64> = (0..NCTR)
        .map(|j| {
            let v = c
                .get(&ctr_key(j))
                .unwrap()
                .unwrap_or_else(|| panic!("LOST COUNTER {when}: c{j} is gone"));
            parse_counter(&v).unwrap()
        })
        .collect();
    let attempted = pool.incrs("att");
    for j in 0..NCTR as usize {
        assert!(
            values[j] >= acked[j],
            "LOST INCREMENTS {when}: c{j} = {}, but {} increments were acknowledged",
            values[j],
            acked[j]
        );
        assert!(
            values[j] <= attempted[j],
            "PHANTOM INCREMENTS {when}: c{j} = {}, but only {} were attempted",
            values[j],
            attempted[j]
        );
    }
    (acked.iter().sum(), values.iter().sum())
}

fn check_persistent(c: &Cache, when: &str) {
    for i in 0..NPERSIST {
        let k = persist_key(i);
        let v = c
            .get(&k)
            .unwrap()
            .unwrap_or_else(|| panic!("{when}: persistent key p{i} is gone"));
        check_any(&k, &v).unwrap_or_else(|e| panic!("{when}: {e}"));
    }
}

/// Loads a copy of a snapshot file into a fresh arena by a second larderd and checks what
/// it loaded: every item verifies, counters are at most what was attempted, and every
/// persistent key is there. Returns the number of items loaded.
fn check_snapshot(dir: &Path, snap: &Path, n: u64, attempted: &[u64], roomy: bool) -> u64 {
    let sub = dir.join(format!("load-{n}"));
    std::fs::create_dir_all(&sub).unwrap();
    let copy = sub.join("snapshot");
    std::fs::copy(snap, &copy).unwrap();
    let arena = sub.join("arena");
    let copy_s = copy.to_str().unwrap().to_owned();
    let mut d = Daemon::spawn(
        &sub,
        &arena,
        "load",
        &[
            ("LARDER_SNAPSHOT", copy_s.as_str()),
            ("LARDER_SNAPSHOT_INTERVAL", "0"),
        ],
    );
    if let Err(st) = d.ready() {
        panic!("the snapshot loader exited with {st}; log:\n{}", d.log());
    }
    let log = d.log();
    assert!(
        log.contains("snapshot loaded") && !log.contains("damaged"),
        "SNAPSHOT left by a killed daemon does not load (copy kept in {}):\n{log}",
        sub.display()
    );
    let c = Cache::open(&arena).unwrap();
    let mut items = 0;
    let mut persist = 0;
    for e in c.entries() {
        check_any(&e.key, &e.value).unwrap_or_else(|err| panic!("in a snapshot: {err}"));
        if let Some(j) = e.key.strip_prefix(b"c") {
            let j: usize = String::from_utf8_lossy(j).parse().unwrap();
            let v = parse_counter(&e.value).unwrap();
            assert!(
                v <= attempted[j],
                "PHANTOM INCREMENTS in a snapshot: c{j} = {v} > {} attempted",
                attempted[j]
            );
        }
        if e.key.starts_with(b"p") {
            persist += 1;
        }
        items += 1;
    }
    if roomy {
        assert_eq!(persist, NPERSIST, "persistent keys missing from a snapshot");
    }
    drop(c);
    d.kill();
    drop(d);
    let _ = std::fs::remove_dir_all(&sub);
    items
}

/// The daemon's heartbeat: its metrics file, rewritten every sweep (100 ms).
struct DaemonWatch {
    path: PathBuf,
    seen: Option<SystemTime>,
    since: Instant,
}

impl DaemonWatch {
    fn new(path: &Path) -> DaemonWatch {
        DaemonWatch {
            path: path.to_owned(),
            seen: None,
            since: Instant::now(),
        }
    }

    /// Fails the test if the daemon has not completed a sweep for [`STALL`].
    fn check(&mut self, c: &Cache, arena: &Path) {
        let m = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if m != self.seen {
            self.seen = m;
            self.since = Instant::now();
        } else if self.since.elapsed() > STALL {
            panic!(
                "STALL: larderd has not swept (nor written its metrics file) for {:?}\n{}\n{}",
                self.since.elapsed(),
                daemon_stacks(c),
                segment_table(arena)
            );
        }
    }
}

fn seed_base() -> u64 {
    if let Ok(s) = std::env::var("LARDER_CHAOS_SEED") {
        return s.parse().expect("LARDER_CHAOS_SEED is a number");
    }
    let s = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    s ^ u64::from(std::process::id())
}

// ------------------------------------------------------------------------------------------
// The chaos run
// ------------------------------------------------------------------------------------------

/// One chaos run's setting.
struct Run {
    name: &'static str,
    /// LARDER_SIZE of the daemon.
    size: &'static str,
    /// Counters and persistent keys in use; nothing may be evicted (asserted).
    roomy: bool,
    /// Data keys in use.
    ndata: u64,
}

/// The roomy run: the live data (≈ 0.5 MiB) is a small fraction of a 64 MiB arena, whose
/// sweeper frees dead segments long before the log needs eviction, so nothing may be
/// evicted: counters are checked exactly, persistent keys must survive every restart.
#[test]
fn chaos_roomy_counters_exact_across_kills_and_daemon_restarts() {
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
fn chaos_pressure_evicting_writers_killed() {
    run_chaos(Run {
        name: "pressure",
        size: "8MiB",
        roomy: false,
        ndata: 6000,
    });
}

fn run_chaos(run: Run) {
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
    let mut daemon = Daemon::spawn(&dir.0, &arena, "0", &daemon_env);
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
            daemon = Daemon::spawn(&dir.0, &arena, &restarts.to_string(), &daemon_env);
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
fn segment_table(arena: &Path) -> String {
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
fn daemon_stacks(c: &Cache) -> String {
    match c.info().daemon_pid {
        0 => "no daemon attached".into(),
        pid => format!("larderd pid {pid}:\n{}", stacks(pid)),
    }
}

/// Every thread's stack of process `pid` (gdb if installed, else the kernel's view).
fn stacks(pid: u32) -> String {
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
fn fill_and_read_back(c: &Cache, capacity: u64, seg_size: u64) -> ((u64, u64), (u64, u64)) {
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

// ------------------------------------------------------------------------------------------
// Hostile files
// ------------------------------------------------------------------------------------------

/// Runs a client (`Cache::open`, then a few operations if it opened) in a process of its
/// own on `path`; it must exit 0, never panic or die of a signal.
fn client_on(path: &Path, dir: &Path, case: &str) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "worker_entry", "--nocapture", "--test-threads=1"])
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
fn daemon_on(dir: &Path, arena: &Path, case: &str) -> String {
    let mut d = Daemon::spawn(dir, arena, case, &[]);
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
fn hostile_arena_files_never_crash_the_daemon_or_a_client() {
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
        let mut d = Daemon::spawn(&sub, &arena, "model", &[("LARDER_SNAPSHOT", &snap_s)]);
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
fn live_counters_survive_in_a_mostly_empty_arena_of_few_segments() {
    if std::env::var_os(ROLE).is_some() {
        return;
    }
    let dir = TempDir::new("evict");
    let arena = dir.0.join("arena");
    let mut daemon = Daemon::spawn(&dir.0, &arena, "0", &[("LARDER_SWEEP_INTERVAL", "100ms")]);
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
fn a_fifo_at_the_snapshot_path_does_not_hang_the_daemon() {
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
