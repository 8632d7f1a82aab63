//! Eviction quality: the hit ratio of larder's real CLOCK (a real arena, driven in this
//! process) against exact LRU, FIFO and an item-granular one-bit CLOCK, simulated in process
//! with the same capacity in items, on the same request stream. Cache-aside: a GET that
//! misses is followed by a SET of that key.
//!
//! The arena is sized (from its item size and segment geometry) to hold a target fraction of
//! the key universe. What it really holds is measured: the simulations get the mean
//! `stats().items` of the arena over the measured requests, so the comparison is between
//! policies at equal item counts, whatever the arena's space overhead (that is
//! `memory`'s subject).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::time::Instant;

use crate::util::{key, machine_description, progress, shm_dir, Dist, KeyGen, Table, KEY_LEN};

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
const SCAN_EVERY: u64 = 80_000;
const SCAN_LEN: u64 = 20_000;
const SCAN_FLAG: u32 = 1 << 31;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Workload {
    Zipf,
    ZipfScan,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Zipf => "Zipf(0.99)",
            Workload::ZipfScan => "Zipf(0.99) + scans",
        }
    }
}

/// The request stream: key ids, `SCAN_FLAG` marking scan requests.
fn stream(w: Workload, keys: u64, total: u64, seed: u64) -> Vec<u32> {
    let mut g = KeyGen::new(Dist::Zipf, keys, seed);
    let mut next_cold = keys;
    (0..total)
        .map(|i| {
            if w == Workload::ZipfScan && i % (SCAN_EVERY + SCAN_LEN) >= SCAN_EVERY {
                let id = next_cold;
                next_cold += 1;
                id as u32 | SCAN_FLAG
            } else {
                g.next_id() as u32
            }
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
    fn all_ratio(&self) -> f64 {
        (self.zipf_hits + self.scan_hits) as f64 / (self.zipf + self.scan).max(1) as f64
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

/// FIFO: insertion order, hits change nothing.
struct Fifo {
    cap: usize,
    queue: VecDeque<u32>,
    present: Vec<bool>,
}

impl Policy for Fifo {
    fn access(&mut self, id: u32) -> bool {
        if self.present[id as usize] {
            return true;
        }
        if self.queue.len() == self.cap {
            let v = self.queue.pop_front().expect("full queue");
            self.present[v as usize] = false;
        }
        self.queue.push_back(id);
        self.present[id as usize] = true;
        false
    }
}

/// Textbook CLOCK, one reference bit per item, item-granular: what larder's segment-wise
/// CLOCK approximates.
struct Clock {
    cap: usize,
    slots: Vec<u32>,
    refbit: Vec<bool>,
    hand: usize,
    slot_of: Vec<u32>,
}

impl Policy for Clock {
    fn access(&mut self, id: u32) -> bool {
        let s = self.slot_of[id as usize];
        if s != NIL {
            self.refbit[s as usize] = true;
            return true;
        }
        let slot = if self.slots.len() < self.cap {
            self.slots.push(id);
            self.refbit.push(false);
            self.slots.len() - 1
        } else {
            while self.refbit[self.hand] {
                self.refbit[self.hand] = false;
                self.hand = (self.hand + 1) % self.cap;
            }
            let h = self.hand;
            self.slot_of[self.slots[h] as usize] = NIL;
            self.slots[h] = id;
            self.hand = (h + 1) % self.cap;
            h
        };
        self.slot_of[id as usize] = slot as u32;
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
        .max_value_len(64)
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
    let mut t = Table::new([
        "workload",
        "cache size",
        "larder arena (segments)",
        "warm-up requests",
        "items held (mean)",
        "larder CLOCK",
        "exact LRU",
        "FIFO",
        "CLOCK, item-granular",
        "larder − LRU",
        "larder evictions (index)",
    ]);
    let mut verdicts = Vec::new();
    for w in [Workload::Zipf, Workload::ZipfScan] {
        let reqs = stream(w, opts.keys, total, 0x2c0ffee);
        let ids = (reqs.iter().map(|r| r & !SCAN_FLAG).max().unwrap_or(0) + 1) as usize;
        for &f in &opts.fractions {
            let target = ((opts.keys as f64 * f).round() as u64).max(10_000);
            let pb = progress(total, &format!("{:.0}%", f * 100.0));
            pb.set_message(format!("{} larder", w.name()));
            let l = run_larder(
                shm.path(),
                target,
                opts.value,
                &reqs,
                opts.warmup as usize,
                requests,
                &pb,
            )?;
            let warmup = l.warmup;
            let cap = l.mean_items.round().max(1.0) as usize;
            pb.set_message(format!("{} LRU/FIFO/CLOCK at {cap} items", w.name()));
            let lru = run_policy(&mut Lru::new(cap, ids), &reqs, warmup, requests);
            let fifo = run_policy(
                &mut Fifo {
                    cap,
                    queue: VecDeque::with_capacity(cap),
                    present: vec![false; ids],
                },
                &reqs,
                warmup,
                requests,
            );
            let clock = run_policy(
                &mut Clock {
                    cap,
                    slots: Vec::with_capacity(cap),
                    refbit: Vec::with_capacity(cap),
                    hand: 0,
                    slot_of: vec![NIL; ids],
                },
                &reqs,
                warmup,
                requests,
            );
            pb.finish_and_clear();
            let pct = |s: &Score| format!("{:.2}%", s.zipf_ratio() * 100.0);
            let diff = (l.score.zipf_ratio() - lru.zipf_ratio()) * 100.0;
            println!(
                "{:<20} {:>4.0}% ({} items target): larder {} LRU {} FIFO {} CLOCK {} (held {:.0} items, {:.1} s)",
                w.name(),
                f * 100.0,
                l.target_items,
                pct(&l.score),
                pct(&lru),
                pct(&fifo),
                pct(&clock),
                l.mean_items,
                l.secs
            );
            t.row(vec![
                w.name().into(),
                format!("{:.0}% of {} keys", f * 100.0, opts.keys),
                format!("{:.2} MiB ({})", l.arena_bytes as f64 / 1048576.0, l.nsegs),
                if l.filled {
                    l.warmup.to_string()
                } else {
                    format!("{} (never full)", l.warmup)
                },
                format!("{:.0}", l.mean_items),
                pct(&l.score),
                pct(&lru),
                pct(&fifo),
                pct(&clock),
                format!("{diff:+.2} pp"),
                format!("{} ({})", l.evictions, l.index_evictions),
            ]);
            if w == Workload::Zipf && (f - 0.10).abs() < 1e-9 {
                verdicts.push(format!(
                    "- CLOCK hit ratio ≥ exact LRU on Zipf(0.99) at 10 %: larder {} vs LRU {} \
                     ({diff:+.2} pp): **{}**",
                    pct(&l.score),
                    pct(&lru),
                    if l.score.zipf_ratio() >= lru.zipf_ratio() {
                        "met"
                    } else {
                        "not met"
                    }
                ));
            }
            if w == Workload::ZipfScan {
                // Overall ratios (scan requests included) for the record.
                println!(
                    "{:<20}       overall incl. scans: larder {:.2}% LRU {:.2}% FIFO {:.2}% CLOCK {:.2}%",
                    "",
                    l.score.all_ratio() * 100.0,
                    lru.all_ratio() * 100.0,
                    fifo.all_ratio() * 100.0,
                    clock.all_ratio() * 100.0
                );
            }
        }
    }
    let mut md = String::new();
    let _ = writeln!(md, "<!-- generated by: {} -->", opts.command);
    let _ = writeln!(
        md,
        "Machine: {}. {} keys of {KEY_LEN} B with {} B values ({item} B items); per cell a warm-up of at \
         least {} requests that lasts until the arena has been evicting for a third of it, then \
         {} measured requests; {:.0} s in all. Hit ratios are over the measured Zipf \
         requests (scan requests, which miss under every policy, excluded). The simulated \
         policies have the capacity larder really held (mean `stats().items` over the \
         measured requests).\n",
        machine_description(),
        opts.keys,
        opts.value,
        opts.warmup,
        opts.requests,
        started.elapsed().as_secs_f64()
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
    fn fifo_ignores_hits() {
        let mut f = Fifo {
            cap: 2,
            queue: VecDeque::new(),
            present: vec![false; 10],
        };
        // 1 2 1 3 (evicts 1 despite the hit) 1 (miss)
        assert_eq!(
            all(&mut f, &[1, 2, 1, 3, 1]),
            [false, false, true, false, false]
        );
    }

    #[test]
    fn clock_gives_a_second_chance() {
        let mut c = Clock {
            cap: 2,
            slots: Vec::new(),
            refbit: Vec::new(),
            hand: 0,
            slot_of: vec![NIL; 10],
        };
        // 1 2 1(ref) 3: hand skips 1 (clears), evicts 2; then 1 hits, 2 misses.
        assert_eq!(
            all(&mut c, &[1, 2, 1, 3, 1, 2]),
            [false, false, true, false, true, false]
        );
    }

    #[test]
    fn scan_stream_marks_scans() {
        let s = stream(Workload::ZipfScan, 1000, SCAN_EVERY + SCAN_LEN + 5, 1);
        assert!(s[..SCAN_EVERY as usize].iter().all(|r| r & SCAN_FLAG == 0));
        assert!(s[SCAN_EVERY as usize..(SCAN_EVERY + SCAN_LEN) as usize]
            .iter()
            .all(|r| r & SCAN_FLAG != 0));
        assert_eq!(s[SCAN_EVERY as usize] & !SCAN_FLAG, 1000);
    }
}
