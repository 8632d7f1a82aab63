//! Eviction quality: the hit ratio of larder's real CLOCK (a real arena, driven in this
//! process) against exact LRU simulated in process (a cross-check of libCacheSim's LRU),
//! and against libCacheSim's policies (LRU, FIFO, CLOCK, SIEVE, S3-FIFO, ARC, 2Q,
//! W-TinyLFU: `bench/libcachesim_replay.py`, run on the very same request stream written
//! out as an oracleGeneral trace), all with the same capacity in items. Cache-aside: a GET
//! that misses is followed by a SET of that key.
//!
//! The arena is sized (from its item size and segment geometry) to hold a target fraction of
//! the key universe. What it really holds is measured: the simulations get the mean
//! `stats().items` of the arena over the measured requests, so the comparison is between
//! policies at equal item counts, whatever the arena's space overhead (that is
//! `memory`'s subject).

use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::time::Instant;

use crate::log_model::{LogModel, LogPolicy};
use crate::util::{key, machine_description, progress, shm_dir, KeyGen, Table, KEY_LEN};

#[derive(Clone, Debug)]
pub struct Opts {
    /// Key universe of the Zipf part.
    pub keys: u64,
    /// Cache sizes as fractions of `keys`.
    pub fractions: Vec<f64>,
    /// Requests before measuring (fills the cache).
    pub warmup: u64,
    /// Measured requests.
    pub requests: u64,
    /// Value length (items are 16 + 12 + this, rounded up to 8).
    pub value: usize,
    pub out: std::path::PathBuf,
    pub command: String,
}

/// Segment size of the test arenas: the smallest larder allows, so the segment-granular
/// CLOCK is as fine-grained as it can be.
const SEG: u64 = 64 << 10;
/// Scan workload: after every `SCAN_EVERY` Zipf requests, `SCAN_LEN` requests walk keys
/// that are never requested otherwise (ids above the Zipf universe), sequentially.
const SCAN_EVERY: u64 = 200_000;
const SCAN_LEN: u64 = 20_000;
const SCAN_FLAG: u32 = 1 << 31;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Workload {
    Zipf99,
    Zipf80,
    Zipf99Scan,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Zipf99 => "Zipf(0.99)",
            Workload::Zipf80 => "Zipf(0.8)",
            Workload::Zipf99Scan => "Zipf(0.99) + scans",
        }
    }
    fn theta(self) -> f64 {
        match self {
            Workload::Zipf80 => 0.8,
            Workload::Zipf99 | Workload::Zipf99Scan => 0.99,
        }
    }
}

/// The request stream: key ids, `SCAN_FLAG` marking scan requests.
fn stream(w: Workload, keys: u64, total: u64, seed: u64) -> Vec<u32> {
    let mut g = KeyGen::zipf(keys, w.theta(), seed);
    let mut next_cold = keys;
    (0..total)
        .map(|i| {
            if w == Workload::Zipf99Scan && i % (SCAN_EVERY + SCAN_LEN) >= SCAN_EVERY {
                let id = next_cold;
                next_cold += 1;
                id as u32 | SCAN_FLAG
            } else {
                g.next_id() as u32
            }
        })
        .collect()
}

/// The policies `bench/libcachesim_replay.py` runs, by libCacheSim's class name, and the
/// column each gets.
const LCS_POLICIES: [(&str, &str); 8] = [
    ("LRU", "LRU"),
    ("FIFO", "FIFO"),
    ("Clock", "CLOCK"),
    ("Sieve", "SIEVE"),
    ("S3FIFO", "S3-FIFO"),
    ("ARC", "ARC"),
    ("TwoQ", "2Q"),
    ("WTinyLFU", "W-TinyLFU"),
];

/// Writes `reqs` as a libCacheSim oracleGeneral trace: per request a u32 time, a u64
/// object id (the key id + 1), a u32 size (1: capacities are in objects) and an i64 next
/// access (-1: unknown), little-endian.
fn write_trace(path: &Path, reqs: &[u32]) -> io::Result<()> {
    let mut b = Vec::with_capacity(reqs.len() * 24);
    for (i, &r) in reqs.iter().enumerate() {
        b.extend_from_slice(&(i as u32).to_le_bytes());
        b.extend_from_slice(&(u64::from(r & !SCAN_FLAG) + 1).to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&(-1i64).to_le_bytes());
    }
    std::fs::write(path, b)
}

/// libCacheSim's hit ratios over the measured Zipf requests, in `LCS_POLICIES` order, with
/// `cap` objects; `Err` says why they could not be had (no Python with `libcachesim`).
fn libcachesim(
    python: &str,
    trace: &Path,
    warmup: usize,
    requests: usize,
    cap: usize,
    score: &Score,
) -> Result<Vec<f64>, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("libcachesim_replay.py");
    let names: Vec<&str> = LCS_POLICIES.iter().map(|p| p.0).collect();
    let out = std::process::Command::new(python)
        .arg(&script)
        .arg(trace)
        .args([
            warmup.to_string(),
            requests.to_string(),
            cap.to_string(),
            names.join(","),
        ])
        .output()
        .map_err(|e| format!("{python}: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let misses: std::collections::HashMap<&str, f64> = text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(n, m)| Some((n, m.trim().parse().ok()?)))
        .collect();
    // Scan requests are each a key's only request, so they miss under every policy: the
    // hits are all Zipf hits.
    names
        .iter()
        .map(|n| {
            let miss = misses
                .get(n)
                .ok_or_else(|| format!("no result for {n} in {text:?}"))?;
            Ok((1.0 - miss) * requests as f64 / score.zipf.max(1) as f64)
        })
        .collect()
}

/// Hits counted over the measured part, Zipf requests and scan requests apart.
#[derive(Default, Clone, Copy)]
struct Score {
    zipf: u64,
    zipf_hits: u64,
    scan: u64,
    scan_hits: u64,
}

impl Score {
    fn add(&mut self, req: u32, hit: bool) {
        if req & SCAN_FLAG != 0 {
            self.scan += 1;
            self.scan_hits += u64::from(hit);
        } else {
            self.zipf += 1;
            self.zipf_hits += u64::from(hit);
        }
    }
    fn zipf_ratio(&self) -> f64 {
        self.zipf_hits as f64 / self.zipf.max(1) as f64
    }
}

/// A cache policy simulated over dense key ids.
trait Policy {
    /// Looks `id` up; on a miss inserts it (evicting as needed). Returns hit.
    fn access(&mut self, id: u32) -> bool;
}

const NIL: u32 = u32::MAX;

/// Exact LRU: an intrusive doubly linked list over key ids.
struct Lru {
    cap: usize,
    len: usize,
    prev: Vec<u32>,
    next: Vec<u32>,
    present: Vec<bool>,
    head: u32, // most recent
    tail: u32, // least recent
}

impl Lru {
    fn new(cap: usize, ids: usize) -> Lru {
        Lru {
            cap,
            len: 0,
            prev: vec![NIL; ids],
            next: vec![NIL; ids],
            present: vec![false; ids],
            head: NIL,
            tail: NIL,
        }
    }
    fn unlink(&mut self, id: u32) {
        let (p, n) = (self.prev[id as usize], self.next[id as usize]);
        if p == NIL {
            self.head = n;
        } else {
            self.next[p as usize] = n;
        }
        if n == NIL {
            self.tail = p;
        } else {
            self.prev[n as usize] = p;
        }
    }
    fn push_front(&mut self, id: u32) {
        self.prev[id as usize] = NIL;
        self.next[id as usize] = self.head;
        if self.head != NIL {
            self.prev[self.head as usize] = id;
        }
        self.head = id;
        if self.tail == NIL {
            self.tail = id;
        }
    }
}

impl Policy for Lru {
    fn access(&mut self, id: u32) -> bool {
        if self.present[id as usize] {
            self.unlink(id);
            self.push_front(id);
            return true;
        }
        if self.len == self.cap {
            let victim = self.tail;
            self.unlink(victim);
            self.present[victim as usize] = false;
            self.len -= 1;
        }
        self.push_front(id);
        self.present[id as usize] = true;
        self.len += 1;
        false
    }
}

fn run_policy(p: &mut impl Policy, reqs: &[u32], warmup: usize, requests: usize) -> Score {
    for &r in &reqs[..warmup] {
        p.access(r & !SCAN_FLAG);
    }
    let mut s = Score::default();
    for &r in &reqs[warmup..warmup + requests] {
        s.add(r, p.access(r & !SCAN_FLAG));
    }
    s
}

fn to_io(e: impl std::error::Error) -> io::Error {
    io::Error::other(e.to_string())
}

fn config(capacity: u64, item: u64) -> larder::Config {
    larder::Config::new(capacity)
        .max_key_len(KEY_LEN as u32)
        // The largest value an item of `item` bytes holds (the bench's values are all one
        // size).
        .max_value_len(item.max(64) as u32)
        .segment_size(SEG)
        .avg_item_size(item)
        .max_processes(8)
}

/// Smallest arena (to 4 KiB) with at least `nsegs` segments, by bisection on real arenas.
fn arena_size_for(dir: &Path, nsegs: u32, item: u64) -> io::Result<u64> {
    let segs_of = |cap: u64| -> io::Result<u32> {
        let p = dir.join("sizing");
        let _ = std::fs::remove_file(&p);
        let n = match larder::Cache::create(&p, &config(cap, item)) {
            Ok(c) => c.info().segments,
            Err(larder::OpenError::InvalidConfig { .. }) => 0,
            Err(e) => return Err(to_io(e)),
        };
        let _ = std::fs::remove_file(&p);
        Ok(n)
    };
    let (mut lo, mut hi) = (SEG, u64::from(nsegs) * SEG * 2 + (8 << 20));
    while segs_of(hi)? < nsegs {
        hi *= 2;
    }
    while hi - lo > 4096 {
        let mid = (lo + hi) / 2 / 4096 * 4096;
        if segs_of(mid)? >= nsegs {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

struct LarderRun {
    score: Score,
    /// Requests of warm-up before the measured ones.
    warmup: usize,
    /// Whether the arena was full (evicting) before the measured part.
    filled: bool,
    target_items: u64,
    nsegs: u32,
    arena_bytes: u64,
    mean_items: f64,
    evictions: u64,
    index_evictions: u64,
    secs: f64,
}

/// Runs the stream through a real arena. The warm-up lasts at least `min_warmup` requests
/// and until the arena has been evicting for a third of the warm-up (so the measured part
/// sees a full cache); the measured part is the `requests` after it.
fn run_larder(
    dir: &Path,
    target_items: u64,
    value_len: usize,
    reqs: &[u32],
    min_warmup: usize,
    requests: usize,
    pb: &indicatif::ProgressBar,
) -> io::Result<LarderRun> {
    let item = larder::layout::item_size(KEY_LEN as u64, value_len as u64);
    let per_seg = SEG / item;
    // Segments that hold items: all but the copy-forward reserve (max(2, n/32), design §4.4)
    // and the one the writer is filling.
    let mut nsegs = 4u32;
    while (u64::from(nsegs) - u64::from((nsegs / 32).max(2)) - 1) * per_seg < target_items {
        nsegs += 1;
    }
    let cap = arena_size_for(dir, nsegs, item)?;
    let path = dir.join(format!("evict-{target_items}"));
    let _ = std::fs::remove_file(&path);
    let cache = larder::Cache::create(&path, &config(cap, item)).map_err(to_io)?;
    let nsegs = cache.info().segments;
    let val = vec![b'v'; value_len];
    let mut buf = Vec::with_capacity(64);
    let t = Instant::now();
    let mut access = |id: u32| -> io::Result<bool> {
        let k = key(u64::from(id));
        buf.clear();
        if cache.get_into(&k, &mut buf).map_err(to_io)? {
            Ok(true)
        } else {
            cache.set(&k, &val, None).map_err(to_io)?;
            Ok(false)
        }
    };
    let max_warmup = reqs.len() - requests;
    let mut first_eviction = None;
    let mut warmup = max_warmup;
    for (i, &r) in reqs[..max_warmup].iter().enumerate() {
        if i % 65536 == 0 {
            pb.set_position(i as u64);
            if first_eviction.is_none() && cache.stats().totals.evictions > 0 {
                first_eviction = Some(i);
            }
            if let Some(e) = first_eviction {
                if i >= min_warmup && i >= e + e / 2 {
                    warmup = i;
                    break;
                }
            }
        }
        access(r & !SCAN_FLAG)?;
    }
    let before = cache.stats().totals;
    let mut score = Score::default();
    let (mut item_sum, mut samples) = (0f64, 0u64);
    for (i, &r) in reqs[warmup..warmup + requests].iter().enumerate() {
        score.add(r, access(r & !SCAN_FLAG)?);
        if i % 50_000 == 0 {
            item_sum += cache.stats().items as f64;
            samples += 1;
            pb.set_position((warmup + i) as u64);
        }
    }
    let after = cache.stats().totals;
    drop(cache);
    let _ = std::fs::remove_file(&path);
    Ok(LarderRun {
        score,
        warmup,
        filled: first_eviction.is_some(),
        target_items,
        nsegs,
        arena_bytes: cap,
        mean_items: item_sum / samples.max(1) as f64,
        evictions: after.evictions - before.evictions,
        index_evictions: after.index_evictions - before.index_evictions,
        secs: t.elapsed().as_secs_f64(),
    })
}

/// The cells of the grid: each Zipf(0.99) fraction asked for, then Zipf(0.8) and the
/// scan mix at 10 %.
fn cells(opts: &Opts) -> Vec<(Workload, f64)> {
    let mut c: Vec<(Workload, f64)> = opts
        .fractions
        .iter()
        .map(|&f| (Workload::Zipf99, f))
        .collect();
    c.push((Workload::Zipf80, 0.10));
    c.push((Workload::Zipf99Scan, 0.10));
    c
}

pub fn run(opts: &Opts) -> io::Result<()> {
    assert!(opts.keys <= u64::from(u32::MAX >> 2), "too many keys");
    let shm = tempfile::Builder::new()
        .prefix("larder-evict-")
        .tempdir_in(shm_dir())?;
    std::fs::create_dir_all(&opts.out)?;
    // Room for a warm-up up to five times the minimum (large caches take long to fill).
    let total = opts.warmup.max(100_000) * 5 + opts.requests;
    let requests = opts.requests as usize;
    let item = larder::layout::item_size(KEY_LEN as u64, opts.value as u64);
    let started = Instant::now();
    let mut head = vec![
        "workload".to_string(),
        "cache size".into(),
        "larder arena (segments)".into(),
        "warm-up requests".into(),
        "items held (mean)".into(),
        "larder".into(),
        "LRU (in-process)".into(),
    ];
    head.extend(LCS_POLICIES.iter().map(|p| p.1.to_string()));
    head.extend(LOG_MODELS.iter().map(|m| format!("{} (items)", m.0)));
    head.push("larder − best of SIEVE, S3-FIFO".into());
    head.push("larder evictions (index)".into());
    let mut t = Table::new(head);
    let mut verdicts = Vec::new();
    let mut lcs_missing = None;
    let python = std::env::var("LARDER_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut streams: Vec<(Workload, Vec<u32>, std::path::PathBuf)> = Vec::new();
    for (w, f) in cells(opts) {
        if !streams.iter().any(|(sw, ..)| *sw == w) {
            let reqs = stream(w, opts.keys, total, 0x2c0ffee);
            let trace = opts.out.join(format!("eviction-{w:?}.oracleGeneral"));
            write_trace(&trace, &reqs)?;
            streams.push((w, reqs, trace));
        }
        let (_, reqs, trace) = streams
            .iter()
            .find(|(sw, ..)| *sw == w)
            .expect("made above");
        let ids = (reqs.iter().map(|r| r & !SCAN_FLAG).max().unwrap_or(0) + 1) as usize;
        let target = ((opts.keys as f64 * f).round() as u64).max(100);
        let pb = progress(total, &format!("{:.0}%", f * 100.0));
        pb.set_message(format!("{} larder", w.name()));
        let l = run_larder(
            shm.path(),
            target,
            opts.value,
            reqs,
            opts.warmup as usize,
            requests,
            &pb,
        )?;
        let warmup = l.warmup;
        let cap = l.mean_items.round().max(1.0) as usize;
        pb.set_message(format!("{} LRU, libCacheSim at {cap} items", w.name()));
        let lru = run_policy(&mut Lru::new(cap, ids), reqs, warmup, requests);
        let lcs = libcachesim(&python, trace, warmup, requests, cap, &l.score);
        let per_seg = (SEG / item) as usize;
        let models: Vec<String> = LOG_MODELS
            .iter()
            .map(|&(_, policy)| {
                let reserve = (l.nsegs as usize / 32).max(2);
                let mut m = LogModel::new(policy, l.nsegs as usize, per_seg, reserve, ids);
                let s = run_policy(&mut m, reqs, warmup, requests);
                format!("{:.2}% ({})", s.zipf_ratio() * 100.0, m.items())
            })
            .collect();
        pb.finish_and_clear();
        let pct = |r: f64| format!("{:.2}%", r * 100.0);
        let mut row = vec![
            w.name().to_string(),
            format!("{:.0}% of {} keys", f * 100.0, opts.keys),
            format!("{:.2} MiB ({})", l.arena_bytes as f64 / 1048576.0, l.nsegs),
            if l.filled {
                l.warmup.to_string()
            } else {
                format!("{} (never full)", l.warmup)
            },
            format!("{:.0}", l.mean_items),
            pct(l.score.zipf_ratio()),
            pct(lru.zipf_ratio()),
        ];
        let larder = l.score.zipf_ratio();
        match &lcs {
            Ok(r) => {
                row.extend(r.iter().map(|&x| pct(x)));
                row.extend(models.iter().cloned());
                let of = |name: &str| r[LCS_POLICIES.iter().position(|p| p.1 == name).unwrap()];
                let best = of("SIEVE").max(of("S3-FIFO"));
                row.push(format!("{:+.2} pp", (larder - best) * 100.0));
                let cell = format!("{} at {:.0} %", w.name(), f * 100.0);
                let mut check = |what: String, ok: bool| {
                    verdicts.push(format!(
                        "- {cell}: {what}: **{}**",
                        if ok { "met" } else { "not met" }
                    ))
                };
                check(
                    format!(
                        "within 1 point of the better of SIEVE and S3-FIFO ({} vs {})",
                        pct(larder),
                        pct(best)
                    ),
                    larder >= best - 0.01,
                );
                if w == Workload::Zipf99Scan {
                    check(
                        format!(
                            "at least S3-FIFO ({} vs {})",
                            pct(larder),
                            pct(of("S3-FIFO"))
                        ),
                        larder >= of("S3-FIFO"),
                    );
                }
            }
            Err(why) => {
                row.extend(LCS_POLICIES.iter().map(|_| "–".to_string()));
                row.extend(models.iter().cloned());
                row.push("–".into());
                lcs_missing.get_or_insert_with(|| why.clone());
            }
        }
        row.push(format!("{} ({})", l.evictions, l.index_evictions));
        println!(
            "{:<20} {:>4.0}% ({} items target, held {:.0}, {:.1} s): {}",
            w.name(),
            f * 100.0,
            l.target_items,
            l.mean_items,
            l.secs,
            row[5..].join(" ")
        );
        t.row(row);
    }
    for (.., trace) in &streams {
        let _ = std::fs::remove_file(trace);
    }
    if let Some(why) = &lcs_missing {
        eprintln!(
            "libCacheSim's policies left out: {why}\n(bash bench/eviction.sh makes a venv with \
             libcachesim and runs this with it; or set LARDER_BENCH_PYTHON to a python that \
             has it)"
        );
        if std::env::var_os("LARDER_REQUIRE_LIBCACHESIM").is_some() {
            return Err(io::Error::other(format!("libCacheSim required: {why}")));
        }
    }
    let mut md = String::new();
    let _ = writeln!(md, "<!-- generated by: {} -->", opts.command);
    let _ = writeln!(
        md,
        "Machine: {}. {} keys of {KEY_LEN} B with {} B values ({item} B items); per cell a warm-up of at \
         least {} requests that lasts until the arena has been evicting for a third of it, then \
         {} measured requests; {:.0} s in all. Hit ratios are over the measured Zipf \
         requests (scan requests — {SCAN_LEN} fresh keys after every {SCAN_EVERY} — miss under \
         every policy and are excluded). Every policy has the capacity larder really held (mean \
         `stats().items` over the measured requests) and sees the same requests: the in-process \
         LRU and, through `bench/libcachesim_replay.py`, libCacheSim {}'s policies with their \
         default parameters, on the stream written out as an oracleGeneral trace.\n",
        machine_description(),
        opts.keys,
        opts.value,
        opts.warmup,
        opts.requests,
        started.elapsed().as_secs_f64(),
        LCS_VERSION,
    );
    let _ = writeln!(md, "{}", t.markdown());
    for v in &verdicts {
        let _ = writeln!(md, "{v}");
    }
    let path = opts.out.join("eviction.md");
    std::fs::write(&path, &md)?;
    println!("\n{md}\ntable: {}", path.display());
    Ok(())
}

/// Policies in log form simulated on the arena's geometry (segments, items per segment,
/// reserve): larder's CLOCK as a check of the model, and candidates for the engine.
const LOG_MODELS: [(&str, LogPolicy); 3] = [
    ("CLOCK log model", LogPolicy::Clock),
    (
        "S3-FIFO log model, small 10 %",
        LogPolicy::S3Fifo {
            small_frac: 0.10,
            freq_max: 3,
            ghost_table: true,
        },
    ),
    (
        "S3-FIFO log model, small 5 %",
        LogPolicy::S3Fifo {
            small_frac: 0.05,
            freq_max: 3,
            ghost_table: true,
        },
    ),
];

impl Policy for LogModel {
    fn access(&mut self, id: u32) -> bool {
        LogModel::access(self, id)
    }
}

/// The libCacheSim release `bench/eviction.sh` installs (and the replay script checks).
const LCS_VERSION: &str = "0.3.5";

#[cfg(test)]
mod tests {
    use super::*;

    fn all(p: &mut impl Policy, ids: &[u32]) -> Vec<bool> {
        ids.iter().map(|&i| p.access(i)).collect()
    }

    #[test]
    fn lru_evicts_least_recent() {
        let mut l = Lru::new(2, 10);
        // 1 2 1 3 (evicts 2) 2 (miss, evicts 1) 3 (hit)
        assert_eq!(
            all(&mut l, &[1, 2, 1, 3, 2, 3, 1]),
            [false, false, true, false, false, true, false]
        );
    }

    #[test]
    fn the_trace_is_oracle_general() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        write_trace(&p, &[7, 3 | SCAN_FLAG]).unwrap();
        let b = std::fs::read(&p).unwrap();
        assert_eq!(b.len(), 48);
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        // time, id + 1 (the scan flag is not part of the id), size 1, next access -1
        assert_eq!(
            (u32_at(0), u64_at(4), u32_at(12), u64_at(16)),
            (0, 8, 1, u64::MAX)
        );
        assert_eq!((u32_at(24), u64_at(28), u32_at(36)), (1, 4, 1));
    }

    #[test]
    fn a_python_without_libcachesim_is_a_reason_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        write_trace(&p, &[1, 2, 1]).unwrap();
        let r = libcachesim("/nonexistent/python", &p, 1, 2, 10, &Score::default());
        assert!(r.unwrap_err().contains("/nonexistent/python"));
    }

    /// libCacheSim's LRU and ours, on the same trace at the same capacity, must agree
    /// request for request (exact LRU is deterministic): the trace format, the id mapping
    /// and the warm-up split are right. Skipped without a Python that has libcachesim
    /// (`LARDER_BENCH_PYTHON`), unless LARDER_REQUIRE_LIBCACHESIM is set.
    #[test]
    fn libcachesims_lru_agrees_with_ours_on_the_same_trace() {
        let python = std::env::var("LARDER_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
        let has = std::process::Command::new(&python)
            .args(["-c", "import libcachesim"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !has {
            assert!(
                std::env::var_os("LARDER_REQUIRE_LIBCACHESIM").is_none(),
                "libcachesim required but {python} does not have it"
            );
            eprintln!("{python} has no libcachesim: skipped");
            return;
        }
        let reqs = stream(Workload::Zipf99Scan, 5_000, 60_000, 3);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        write_trace(&p, &reqs).unwrap();
        let ids = 5_000 + 60_000;
        let ours = run_policy(&mut Lru::new(300, ids), &reqs, 20_000, 40_000);
        let theirs = libcachesim(&python, &p, 20_000, 40_000, 300, &ours).unwrap();
        let lru = theirs[LCS_POLICIES.iter().position(|p| p.0 == "LRU").unwrap()];
        assert!(
            (lru - ours.zipf_ratio()).abs() < 1e-9,
            "libCacheSim LRU {lru} vs ours {}",
            ours.zipf_ratio()
        );
    }

    #[test]
    fn scan_stream_marks_scans() {
        let s = stream(Workload::Zipf99Scan, 1000, SCAN_EVERY + SCAN_LEN + 5, 1);
        assert!(s[..SCAN_EVERY as usize].iter().all(|r| r & SCAN_FLAG == 0));
        assert!(s[SCAN_EVERY as usize..(SCAN_EVERY + SCAN_LEN) as usize]
            .iter()
            .all(|r| r & SCAN_FLAG != 0));
        assert_eq!(s[SCAN_EVERY as usize] & !SCAN_FLAG, 1000);
    }
}
