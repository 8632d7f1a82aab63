//! GET latency while the expiry sweeper works: a reader thread times GETs of live keys in an
//! arena where most items have expired, first with nothing else running, then while another
//! thread runs the daemon's sweep steps (`sweep_expired(64)`, back to back, the worst case:
//! the daemon runs one step per sweep interval) until nothing is left to sweep. The sweeper
//! unlinks expired items with CASes on index words next to the live keys' and reads every
//! segment: what it costs readers is the difference between the two histograms.

use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};

use crate::util::{fmt_ns, key, machine_description, new_hist, pct, shm_dir, value, Table};

#[derive(Clone, Debug)]
pub struct Opts {
    pub arena_mib: u64,
    pub value: usize,
    /// Idle measurement before the sweep.
    pub idle: Duration,
    pub out: PathBuf,
    pub command: String,
}

/// Steps per sweep call, as larderd's maintenance (`SWEEP_SEGMENTS`).
const SWEEP_SEGMENTS: u32 = 64;

/// Times GETs of random keys of `live` until `stop`, recording those made while `record`; returns the histogram and hit count.
fn read_until(
    cache: &larder::Cache,
    live: &[u64],
    stop: &AtomicBool,
    record: &AtomicBool,
    seed: u64,
) -> (Histogram<u64>, u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut h = new_hist();
    let mut buf = Vec::with_capacity(4096);
    let mut hits = 0;
    // Relaxed: a stop flag; nothing is published with it.
    while !stop.load(Ordering::Relaxed) {
        let k = key(live[rng.gen_range(0..live.len())]);
        buf.clear();
        let t = Instant::now();
        let hit = cache.get_into(&k, &mut buf).expect("larder get");
        let ns = t.elapsed().as_nanos() as u64;
        // Relaxed: as `stop`.
        if record.load(Ordering::Relaxed) {
            h.saturating_record(ns.max(1));
            hits += u64::from(hit);
        }
    }
    (h, hits)
}

pub fn run(opts: &Opts) -> io::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("larder-sweep-")
        .tempdir_in(shm_dir())?;
    std::fs::create_dir_all(&opts.out)?;
    let path = dir.path().join("arena");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let clock = Arc::new(AtomicU64::new(now));
    let config = larder::Config::new(opts.arena_mib << 20).max_value_len(64 << 10);
    let writer = larder::Cache::create(&path, &config)
        .map_err(io::Error::other)?
        .with_manual_clock(clock.clone());
    let item = larder::layout::item_size(12, opts.value as u64);
    // Fill half of the log, so nothing is evicted; one item in five is live (no TTL),
    // four in five expire.
    let info = writer.info();
    let total = u64::from(info.segments) * info.segment_size / 2 / item;
    let live = total / 5;
    let v = value(opts.value, 7);
    let (mut next_live, mut next_exp) = (0u64, 0u64);
    for i in 0..total {
        if i % 5 == 0 {
            writer
                .set(&key(next_live), &v, None)
                .map_err(io::Error::other)?;
            next_live += 1;
        } else {
            // Expiring keys live above the live ones in the key space.
            writer
                .set(&key(live + next_exp), &v, Some(Duration::from_secs(10)))
                .map_err(io::Error::other)?;
            next_exp += 1;
        }
    }
    let filled = writer.stats();
    let items_before = filled.items;
    // The reader asks only for live keys the fill left in place (a full 14-slot neighbourhood
    // drops a key now and then, even in a half-empty index), so each of its GETs must hit.
    let present: Vec<u64> = (0..next_live)
        .filter(|&i| writer.get(&key(i)).ok().flatten().is_some())
        .collect();
    // Relaxed: the manual clock only needs to be seen by the sweeper's own handle.
    clock.store(now + 60, Ordering::Relaxed);

    let reader = larder::Cache::open(&path).map_err(io::Error::other)?;
    let stop = AtomicBool::new(false);
    let always = AtomicBool::new(true);
    let sweeping = AtomicBool::new(false);

    // Phase 1: idle.
    let (idle, idle_hits) = std::thread::scope(|s| {
        let r = s.spawn(|| read_until(&reader, &present, &stop, &always, 1));
        std::thread::sleep(opts.idle);
        // Relaxed: see read_until.
        stop.store(true, Ordering::Relaxed);
        r.join().expect("reader")
    });

    // Phase 2: the sweeper runs until a whole pass finds nothing more to free.
    stop.store(false, Ordering::Relaxed);
    let mut steps = 0u32;
    let mut swept_segments = 0u64;
    let mut sweep_time = Duration::ZERO;
    let (during, during_hits) = std::thread::scope(|s| {
        let r = s.spawn(|| read_until(&reader, &present, &stop, &sweeping, 2));
        // Let the reader get going; it records only from here on.
        std::thread::sleep(Duration::from_millis(20));
        sweeping.store(true, Ordering::Relaxed);
        let t = Instant::now();
        // Done once steps covering every segment found nothing due (segments with nothing
        // due are skipped, not counted).
        let nsegs = u64::from(writer.info().segments);
        let mut quiet = 0u64;
        while quiet * u64::from(SWEEP_SEGMENTS) < nsegs {
            let rep = writer.sweep_expired(SWEEP_SEGMENTS).expect("sweep");
            steps += 1;
            swept_segments += u64::from(rep.segments);
            quiet = if rep.segments == 0 { quiet + 1 } else { 0 };
        }
        sweep_time = t.elapsed();
        stop.store(true, Ordering::Relaxed);
        r.join().expect("reader")
    });
    let st = writer.stats();

    let mut t = Table::new([
        "phase", "GETs", "hits", "p50", "p99", "p99.9", "p99.99", "max",
    ]);
    for (name, h, hits) in [
        ("idle", &idle, idle_hits),
        ("during sweep", &during, during_hits),
    ] {
        t.row(vec![
            name.into(),
            h.len().to_string(),
            format!("{:.2}%", hits as f64 * 100.0 / h.len().max(1) as f64),
            fmt_ns(pct(h, 0.50)),
            fmt_ns(pct(h, 0.99)),
            fmt_ns(pct(h, 0.999)),
            fmt_ns(pct(h, 0.9999)),
            fmt_ns(Some(h.max())),
        ]);
    }
    let ratio = |q: f64| match (pct(&during, q), pct(&idle, q)) {
        (Some(d), Some(i)) if i > 0 => format!("{:.2}×", d as f64 / i as f64),
        _ => "–".into(),
    };
    let mut md = String::new();
    let _ = writeln!(md, "<!-- generated by: {} -->", opts.command);
    let _ = writeln!(md, "{}\n", machine_description());
    let _ = writeln!(
        md,
        "Arena {} MiB, {} items of {} B values before the sweep ({} live, {} of them present \
         after {} index evictions; the rest expired); \
         the sweep ran {} steps of up to {SWEEP_SEGMENTS} segments ({} segments walked) in {:.1} ms \
         and left {} items ({} expired counted). One reader thread, random live keys.\n",
        opts.arena_mib,
        items_before,
        opts.value,
        next_live,
        present.len(),
        filled.totals.index_evictions,
        steps,
        swept_segments,
        sweep_time.as_secs_f64() * 1e3,
        st.items,
        st.totals.expired,
    );
    md.push_str(&t.markdown());
    let _ = writeln!(
        md,
        "\nduring ÷ idle: p50 {}, p99 {}, p99.9 {}\n\n`{}`",
        ratio(0.50),
        ratio(0.99),
        ratio(0.999),
        opts.command
    );
    print!("{md}");
    std::fs::write(opts.out.join("sweep.md"), &md)?;
    if idle_hits != idle.len() || during_hits != during.len() {
        return Err(io::Error::other(format!(
            "live keys missed: {} of {} idle, {} of {} during the sweep",
            idle.len() - idle_hits,
            idle.len(),
            during.len() - during_hits,
            during.len()
        )));
    }
    Ok(())
}
