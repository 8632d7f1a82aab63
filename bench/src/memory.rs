//! Memory efficiency: how many items a 256 MiB larder arena holds next to `memcached -m 256`
//! (and Redis with `maxmemory 256mb`), at each value size. Each is filled with unique keys
//! until the number of items it holds stops growing; the count comes from the system's own
//! statistics (larder `stats().items`, memcached `curr_items`, Redis `DBSIZE`) and is checked
//! by looking up a random sample of every key inserted.

use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::proto::{connect_unix, Client, Memcached, Redis, Target};
use crate::servers;
use crate::util::{
    fmt_ratio, key, machine_description, progress, shm_dir, value, Key, Table, KEY_LEN,
};

#[derive(Clone, Debug)]
pub struct Opts {
    pub values: Vec<usize>,
    /// Memory for each system, MiB: one measurement per size.
    pub mem_mbs: Vec<u32>,
    pub redis: bool,
    /// Keys looked up to check the count.
    pub sample: usize,
    pub out: PathBuf,
    pub command: String,
}

struct Filled {
    items: f64,
    inserted: u64,
    sampled: f64,
    /// Mean time per inserted key over the batches after the count stopped growing (the
    /// cost of an insert that evicts).
    full_ns_per_insert: f64,
}

/// Inserts keys `0..` in batches until the count stops growing; returns the mean of the last
/// counts, the number of keys inserted and the sampled estimate of retrievable keys.
fn fill_until_plateau(
    estimate: u64,
    pb: &indicatif::ProgressBar,
    mut insert: impl FnMut(std::ops::Range<u64>) -> io::Result<()>,
    mut count: impl FnMut() -> io::Result<u64>,
    mut present: impl FnMut(&Key) -> io::Result<bool>,
    sample: usize,
) -> io::Result<Filled> {
    let batch = (estimate / 25).max(500);
    let (mut next, mut best, mut stale) = (0u64, 0u64, 0u32);
    let mut last = Vec::new();
    let (mut full_ns, mut full_n) = (0u128, 0u64);
    pb.set_length(estimate * 2);
    loop {
        let t = Instant::now();
        insert(next..next + batch)?;
        if stale > 0 {
            full_ns += t.elapsed().as_nanos();
            full_n += batch;
        }
        next += batch;
        let c = count()?;
        last.push(c);
        if c > best + best / 500 {
            stale = 0;
        } else {
            stale += 1;
        }
        best = best.max(c);
        pb.set_position(next.min(estimate * 2));
        // Stop once three batches added nothing and every key was replaced at least once
        // (so the count is a steady state, not the first pass), or far past any estimate.
        if (stale >= 3 && next >= 2 * best) || next > 40 * estimate {
            break;
        }
    }
    let tail = &last[last.len().saturating_sub(3)..];
    let items = tail.iter().sum::<u64>() as f64 / tail.len() as f64;
    let mut rng = StdRng::seed_from_u64(99);
    let mut hits = 0usize;
    for _ in 0..sample {
        hits += usize::from(present(&key(rng.gen_range(0..next)))?);
    }
    Ok(Filled {
        items,
        inserted: next,
        sampled: hits as f64 / sample.max(1) as f64 * next as f64,
        full_ns_per_insert: full_ns as f64 / full_n.max(1) as f64,
    })
}

fn rss_bytes(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let l = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    Some(l.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

struct Result1 {
    /// The memory size (MiB) this result belongs to.
    mem_mb: u32,
    value: usize,
    system: String,
    accounted: u64,
    accounted_note: String,
    /// Where a larder arena's bytes went, from one snapshot at the end of the fill.
    breakdown: Option<Breakdown>,
    filled: Filled,
}

/// A larder arena's bytes per item held, by what they are, from one `stats()` snapshot
/// (its own item count, not the mean the table uses, so the parts add up exactly).
struct Breakdown {
    items: u64,
    index_evictions: u64,
    /// Item header and alignment padding (item size minus key and value).
    header: f64,
    /// Hash index buckets.
    index: f64,
    /// FREE segments (the copy-forward reserve, and any not yet used).
    free: f64,
    /// Unwritten tails of segments in use (open lane segments, early-sealed segments).
    tails: f64,
    /// Written but unreachable bytes (overwritten, index-evicted or deleted items).
    dead: f64,
    /// Header page, process slots, tag/lease tables, segment table, alignment, and the
    /// remainder the planner left unused.
    fixed: f64,
}

impl Breakdown {
    fn of(info: &larder::ArenaInfo, st: &larder::Stats, item: u64, payload: u64) -> Breakdown {
        let n = st.items.max(1) as f64;
        let seg = info.segment_size;
        let index = info.buckets * 64;
        let used_segs = u64::from(st.segments - st.free_segments);
        let live = st.items * item;
        Breakdown {
            items: st.items,
            index_evictions: st.totals.index_evictions,
            header: (item - payload) as f64,
            index: index as f64 / n,
            free: (u64::from(st.free_segments) * seg) as f64 / n,
            tails: (used_segs * seg).saturating_sub(st.bytes_used) as f64 / n,
            dead: st.bytes_used.saturating_sub(live) as f64 / n,
            fixed: info.arena_size.saturating_sub(st.capacity + index) as f64 / n,
        }
    }

    fn total(&self) -> f64 {
        self.header + self.index + self.free + self.tails + self.dead + self.fixed
    }
}

fn larder_fill(
    dir: &std::path::Path,
    mem: u64,
    value_len: usize,
    tuned: bool,
    sample: usize,
    pb: &indicatif::ProgressBar,
) -> io::Result<Result1> {
    let item = larder::layout::item_size(KEY_LEN as u64, value_len as u64);
    let mut cfg = larder::Config::new(mem);
    if tuned {
        cfg = cfg.avg_item_size(item);
    }
    let path = dir.join(format!("mem-{value_len}-{tuned}"));
    let _ = std::fs::remove_file(&path);
    let cache = larder::Cache::create(&path, &cfg).map_err(|e| io::Error::other(e.to_string()))?;
    let val = value(value_len, 1);
    let err = |e: larder::Error| io::Error::other(e.to_string());
    let mut buf = Vec::new();
    let filled = fill_until_plateau(
        mem / (value_len + KEY_LEN) as u64,
        pb,
        |r| {
            for i in r {
                cache.set(&key(i), &val, None).map_err(err)?;
            }
            Ok(())
        },
        || Ok(cache.stats().items),
        |k| {
            buf.clear();
            cache.get_into(k, &mut buf).map_err(err)
        },
        sample,
    )?;
    let info = cache.info();
    let st = cache.stats();
    let breakdown = Breakdown::of(&info, &st, item, (value_len + KEY_LEN) as u64);
    drop(cache);
    let _ = std::fs::remove_file(&path);
    Ok(Result1 {
        mem_mb: 0,
        value: value_len,
        system: if tuned {
            format!("larder, avg_item_size {item}")
        } else {
            "larder, default Config".into()
        },
        accounted: info.arena_size,
        accounted_note: format!(
            "arena file; {} segments of {} KiB, {} index buckets; {} evictions, {} index evictions",
            info.segments,
            info.segment_size >> 10,
            info.buckets,
            st.totals.evictions,
            st.totals.index_evictions
        ),
        breakdown: Some(breakdown),
        filled,
    })
}

fn memcached_fill(
    bin: &std::path::Path,
    dir: &std::path::Path,
    mem_mb: u32,
    value_len: usize,
    sample: usize,
    pb: &indicatif::ProgressBar,
) -> io::Result<Result1> {
    let (server, target) = servers::memcached(bin, dir, mem_mb, true)?;
    let Target::McUnix(sock) = &target else {
        unreachable!("memcached on a Unix socket")
    };
    let mut c = Memcached::new(connect_unix(sock)?);
    let mut q = Memcached::new(connect_unix(sock)?);
    let mut p = Memcached::new(connect_unix(sock)?);
    let val = value(value_len, 1);
    let mut buf = Vec::new();
    let stat = |c: &mut Memcached<_>, name: &str| -> io::Result<u64> {
        c.stats()?
            .into_iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.parse().ok())
            .ok_or_else(|| io::Error::other(format!("memcached stats has no {name}")))
    };
    let filled = fill_until_plateau(
        (u64::from(mem_mb) << 20) / (value_len + KEY_LEN) as u64,
        pb,
        |r| {
            let keys: Vec<Key> = r.map(key).collect();
            c.set_many(keys.iter().map(|k| (&k[..], &val[..])))
        },
        || stat(&mut q, "curr_items"),
        |k| p.get(k, &mut buf),
        sample,
    )?;
    let hash = stat(&mut q, "hash_bytes")?;
    let limit = stat(&mut q, "limit_maxbytes")?;
    let evictions = stat(&mut q, "evictions")?;
    let rss = rss_bytes(server.pid());
    drop(server);
    Ok(Result1 {
        mem_mb: 0,
        value: value_len,
        system: format!("memcached -m {mem_mb}"),
        accounted: limit + hash,
        accounted_note: format!(
            "limit_maxbytes + hash_bytes ({} MiB); RSS {}; {evictions} evictions",
            hash >> 20,
            rss.map_or("?".into(), |r| format!("{:.0} MiB", r as f64 / 1048576.0))
        ),
        breakdown: None,
        filled,
    })
}

fn redis_fill(
    bin: &std::path::Path,
    dir: &std::path::Path,
    mem_mb: u32,
    value_len: usize,
    sample: usize,
    pb: &indicatif::ProgressBar,
) -> io::Result<Result1> {
    let (server, unix, _) = servers::redis(bin, dir, Some(mem_mb))?;
    let Target::RedisUnix(sock) = &unix else {
        unreachable!("redis on a Unix socket")
    };
    let mut c = Redis::new(connect_unix(sock)?);
    let mut q = Redis::new(connect_unix(sock)?);
    let mut p = Redis::new(connect_unix(sock)?);
    let val = value(value_len, 1);
    let mut buf = Vec::new();
    let filled = fill_until_plateau(
        (u64::from(mem_mb) << 20) / (value_len + KEY_LEN) as u64,
        pb,
        |r| {
            let keys: Vec<Key> = r.map(key).collect();
            c.set_many(keys.iter().map(|k| (&k[..], &val[..])))
        },
        || q.integer(&[b"DBSIZE"]).map(|n| n as u64),
        |k| p.get(k, &mut buf),
        sample,
    )?;
    let info = q.bulk(&[b"INFO", b"memory"])?.unwrap_or_default();
    let info = String::from_utf8_lossy(&info);
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(':')))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let maxmemory = field("maxmemory").unwrap_or(u64::from(mem_mb) << 20);
    let rss = rss_bytes(server.pid());
    drop(server);
    Ok(Result1 {
        mem_mb: 0,
        value: value_len,
        system: format!("redis maxmemory {mem_mb}mb"),
        accounted: maxmemory,
        accounted_note: format!(
            "maxmemory (used_memory {} MiB); RSS {}",
            field("used_memory").map_or(0, |u| u >> 20),
            rss.map_or("?".into(), |r| format!("{:.0} MiB", r as f64 / 1048576.0))
        ),
        breakdown: None,
        filled,
    })
}

pub fn run(opts: &Opts) -> io::Result<()> {
    let tmp = tempfile::Builder::new().prefix("larder-mem-").tempdir()?;
    let shm = tempfile::Builder::new()
        .prefix("larder-mem-")
        .tempdir_in(shm_dir())?;
    std::fs::create_dir_all(&opts.out)?;
    let mc = servers::installed("memcached", "memcached");
    let rd = if opts.redis {
        servers::installed("redis-server", "redis-server")
    } else {
        None
    };
    let started = Instant::now();
    let mut results: Vec<Result1> = Vec::new();
    for (&mem_mb, &v) in opts
        .mem_mbs
        .iter()
        .flat_map(|m| opts.values.iter().map(move |v| (m, v)))
    {
        let mem = u64::from(mem_mb) << 20;
        let mut one = |what: &str,
                       f: &mut dyn FnMut(&indicatif::ProgressBar) -> io::Result<Result1>|
         -> io::Result<()> {
            let pb = progress(0, &format!("{v} B"));
            pb.set_message(what.to_owned());
            let t = Instant::now();
            let mut r = f(&pb)?;
            r.mem_mb = mem_mb;
            pb.finish_and_clear();
            println!(
                "{:>5} MiB {:>6} B {:<28} {:>10.0} items (sampled {:>10.0}) after {} keys, {:.1} s",
                mem_mb,
                v,
                r.system,
                r.filled.items,
                r.filled.sampled,
                r.filled.inserted,
                t.elapsed().as_secs_f64()
            );
            results.push(r);
            Ok(())
        };
        one("larder", &mut |pb| {
            larder_fill(shm.path(), mem, v, false, opts.sample, pb)
        })?;
        one("larder tuned", &mut |pb| {
            larder_fill(shm.path(), mem, v, true, opts.sample, pb)
        })?;
        if let Some(bin) = &mc {
            one("memcached", &mut |pb| {
                memcached_fill(bin, tmp.path(), mem_mb, v, opts.sample, pb)
            })?;
        }
        if let Some(bin) = &rd {
            one("redis", &mut |pb| {
                redis_fill(bin, tmp.path(), mem_mb, v, opts.sample, pb)
            })?;
        }
    }

    let mut t = Table::new([
        "memory",
        "value",
        "system",
        "memory counted",
        "items held",
        "retrievable (sampled)",
        "bytes / item",
        "overhead / item",
        "larder (default) ÷",
        "ns / insert when full",
        "what is counted",
    ]);
    let mut verdicts = Vec::new();
    for r in &results {
        let base = results.iter().find(|x| {
            x.mem_mb == r.mem_mb && x.value == r.value && x.system.starts_with("larder, default")
        });
        let per_item = r.accounted as f64 / r.filled.items;
        let payload = (r.value + KEY_LEN) as f64;
        t.row(vec![
            format!("{} MiB", r.mem_mb),
            format!("{} B", r.value),
            r.system.clone(),
            format!("{:.1} MiB", r.accounted as f64 / 1048576.0),
            format!("{:.0}", r.filled.items),
            format!("{:.0}", r.filled.sampled),
            format!("{per_item:.1}"),
            format!("{:.1}", per_item - payload),
            base.map_or("–".into(), |b| fmt_ratio(b.filled.items / r.filled.items)),
            if r.system.starts_with("larder") {
                format!("{:.0}", r.filled.full_ns_per_insert)
            } else {
                // Filled by pipelined batches: a throughput of the server, not comparable.
                "–".into()
            },
            r.accounted_note.clone(),
        ]);
        if r.value == 100 && r.system.starts_with("memcached") {
            if let Some(b) = base {
                let ratio = b.filled.items / r.filled.items;
                let want = if r.mem_mb >= 256 { 1.4 } else { 1.3 };
                verdicts.push(format!(
                    "- {} MiB: larder holds ≥ {want}× the items of memcached at 100 B values: \
                     {:.0} vs {:.0} = {ratio:.2}×: **{}**",
                    r.mem_mb,
                    b.filled.items,
                    r.filled.items,
                    if ratio >= want { "met" } else { "not met" }
                ));
            }
        }
        if r.value == 100 && r.system.starts_with("larder, default") {
            let over = per_item - payload;
            verdicts.push(format!(
                "- {} MiB: per-item overhead ≤ 24 B, index share included (100 B values, \
                 default Config): {over:.1} B: **{}**",
                r.mem_mb,
                if over <= 24.0 { "met" } else { "not met" }
            ));
        }
    }
    let mut parts = Table::new([
        "memory",
        "value",
        "system",
        "items (snapshot)",
        "item header + padding",
        "index",
        "free segments",
        "unwritten segment tails",
        "dead items",
        "fixed regions + unplanned",
        "overhead / item",
        "index evictions / M inserts",
    ]);
    for r in &results {
        if let Some(b) = &r.breakdown {
            let f = |v: f64| format!("{v:.1}");
            parts.row(vec![
                format!("{} MiB", r.mem_mb),
                format!("{} B", r.value),
                r.system.clone(),
                b.items.to_string(),
                f(b.header),
                f(b.index),
                f(b.free),
                f(b.tails),
                f(b.dead),
                f(b.fixed),
                f(b.total()),
                format!(
                    "{:.0}",
                    b.index_evictions as f64 * 1e6 / r.filled.inserted.max(1) as f64
                ),
            ]);
        }
    }
    let mut md = String::new();
    let _ = writeln!(md, "<!-- generated by: {} -->", opts.command);
    let _ = writeln!(
        md,
        "Machine: {}. Keys of {KEY_LEN} B; {:.0} s in all. bytes / item = memory counted ÷ \
         items held; overhead = that minus key and value. ns / insert when full: \
         larder's mean `set` time for a new key once the arena is full (each insert evicts), \
         in this one process.\n",
        machine_description(),
        started.elapsed().as_secs_f64()
    );
    let _ = writeln!(md, "{}", t.markdown());
    let _ = writeln!(
        md,
        "larder's overhead per item held, by where the bytes are (one `stats()` snapshot at \
         the end of the fill; bytes per item):\n"
    );
    let _ = writeln!(md, "{}", parts.markdown());
    for v in &verdicts {
        let _ = writeln!(md, "{v}");
    }
    let path = opts.out.join("memory.md");
    std::fs::write(&path, &md)?;
    println!("\n{md}\ntable: {}", path.display());
    Ok(())
}
