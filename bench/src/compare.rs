//! larder against memcached and Redis: the same workload, from separate client processes,
//! one request at a time.
//!
//! For every value size the parent starts fresh servers (memcached on a Unix socket,
//! memcached on TCP loopback, one redis-server on both) in a temporary directory and a fresh
//! 256 MiB larder arena on /dev/shm, fills all of them with the same keys, and then for every
//! (key distribution, read/write mix, process count, system) re-executes this binary as N
//! worker processes. A worker connects (or opens the arena), builds its request sequence,
//! says `ready` on stdout and blocks on its stdin; once every worker is ready the parent
//! writes one byte to each, so all start together. Each runs for the same wall time, timing
//! every request with `Instant::now()` into HdrHistograms (GET and SET apart), and writes its
//! counts and histograms to a file the parent merges.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::Rng;

use crate::proto::{connect_tcp, connect_unix, Client, Larder, Memcached, Redis, Target};
use crate::servers::{self, die_with_parent, Server};
use crate::util::{
    fmt_ns, fmt_rate, fmt_ratio, key, machine_description, new_hist, pct, progress, read_hist,
    shm_dir, stamp_value, timer_overhead_ns, value, write_hist, Dist, Key, KeyGen, Table, KEY_LEN,
};

/// Environment variable that turns this binary into a worker (its value is the job).
pub const WORKER_ENV: &str = "LARDER_BENCH_WORKER";

/// Arena and memcached memory, MiB.
const MEM_MB: u32 = 256;
/// Requests pre-generated per worker (cycled).
const SEQ_LEN: usize = 1 << 18;
const SET_BIT: u32 = 1 << 31;

/// The systems a run can include, in table order.
pub const ALL_SYSTEMS: [&str; 7] = [
    "larder",
    "memcached/unix",
    "larder-mc/unix",
    "redis/unix",
    "memcached/tcp",
    "larder-mc/tcp",
    "redis/tcp",
];

#[derive(Clone, Debug)]
pub struct Opts {
    pub keys: u64,
    pub values: Vec<usize>,
    pub dists: Vec<Dist>,
    /// Read percentages (100 = GET only).
    pub mixes: Vec<u32>,
    pub procs: Vec<u32>,
    pub duration: Duration,
    pub systems: Vec<String>,
    /// Key count is capped so keys + values take at most this many bytes (so the data set
    /// fits in 256 MiB with room for each system's overhead: 16 KiB values use fewer keys).
    pub data_budget: u64,
    pub out: PathBuf,
    pub plot: Option<PathBuf>,
    /// Bytes of room larderd's evict-ahead thread keeps (run in this process); 0 = off.
    pub evict_ahead: u64,
    /// The command line, for the report.
    pub command: String,
}

/// One cell of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cfg {
    pub value: usize,
    pub dist_zipf: bool,
    pub read_pct: u32,
    pub procs: u32,
}

impl Cfg {
    fn dist(&self) -> Dist {
        if self.dist_zipf {
            Dist::Zipf
        } else {
            Dist::Uniform
        }
    }
    fn mix(&self) -> String {
        format!("{}/{}", self.read_pct, 100 - self.read_pct)
    }
}

/// Merged result of one (config, system) run.
pub struct Row {
    pub cfg: Cfg,
    pub nkeys: u64,
    pub system: &'static str,
    pub ops: u64,
    pub ops_per_s: f64,
    pub gets: u64,
    pub hits: u64,
    pub sets: u64,
    pub get: Histogram<u64>,
    pub set: Histogram<u64>,
    pub all: Histogram<u64>,
}

impl Row {
    fn hit_ratio(&self) -> f64 {
        if self.gets == 0 {
            f64::NAN
        } else {
            self.hits as f64 / self.gets as f64
        }
    }
}

/// Key count for a value size under the data budget.
pub fn nkeys_for(opts: &Opts, value: usize) -> u64 {
    opts.keys
        .min(opts.data_budget / (value + KEY_LEN) as u64)
        .max(1)
}

// ---------------------------------------------------------------------------------------
// Worker side.

struct Job {
    target: Target,
    value: usize,
    keys: u64,
    dist: Dist,
    read_pct: u32,
    seed: u64,
    duration: Duration,
    out: PathBuf,
}

impl Job {
    fn encode(&self) -> String {
        format!(
            "target={}\nvalue={}\nkeys={}\ndist={}\nread={}\nseed={}\nms={}\nout={}",
            self.target.encode(),
            self.value,
            self.keys,
            self.dist.name(),
            self.read_pct,
            self.seed,
            self.duration.as_millis(),
            self.out.display()
        )
    }
    fn decode(s: &str) -> Option<Job> {
        let m: BTreeMap<&str, &str> = s.lines().filter_map(|l| l.split_once('=')).collect();
        Some(Job {
            target: Target::decode(m.get("target")?)?,
            value: m.get("value")?.parse().ok()?,
            keys: m.get("keys")?.parse().ok()?,
            dist: Dist::parse(m.get("dist")?)?,
            read_pct: m.get("read")?.parse().ok()?,
            seed: m.get("seed")?.parse().ok()?,
            duration: Duration::from_millis(m.get("ms")?.parse().ok()?),
            out: PathBuf::from(m.get("out")?),
        })
    }
}

/// Entry point of a worker process.
pub fn worker_main(spec: &str) -> io::Result<()> {
    let job = Job::decode(spec).ok_or_else(|| io::Error::other(format!("bad job {spec:?}")))?;
    let keys: Vec<Key> = (0..job.keys).map(key).collect();
    let mut gen = KeyGen::new(job.dist, job.keys, job.seed);
    let seq: Vec<u32> = (0..SEQ_LEN)
        .map(|_| {
            let id = gen.next_id() as u32;
            if gen.rng().gen_range(0..100) < job.read_pct {
                id
            } else {
                id | SET_BIT
            }
        })
        .collect();
    match &job.target {
        Target::Larder(p) => {
            let cache = larder::Cache::open(p).map_err(|e| io::Error::other(e.to_string()))?;
            measure(Larder(cache), &job, &keys, &seq)
        }
        Target::McUnix(p) | Target::LdUnix(p) => {
            measure(Memcached::new(connect_unix(p)?), &job, &keys, &seq)
        }
        Target::McTcp(port) | Target::LdTcp(port) => {
            measure(Memcached::new(connect_tcp(*port)?), &job, &keys, &seq)
        }
        Target::RedisUnix(p) => measure(Redis::new(connect_unix(p)?), &job, &keys, &seq),
        Target::RedisTcp(port) => measure(Redis::new(connect_tcp(*port)?), &job, &keys, &seq),
    }
}

fn measure<C: Client>(mut c: C, job: &Job, keys: &[Key], seq: &[u32]) -> io::Result<()> {
    let mut val = value(job.value, job.seed);
    let mut out = Vec::with_capacity(job.value + 64);
    // One untimed request of each kind: first-touch costs (page faults, connection setup).
    c.get(&keys[0], &mut out)?;
    let (mut hget, mut hset) = (new_hist(), new_hist());

    // Barrier: say ready, wait for the parent's byte.
    {
        let mut so = io::stdout().lock();
        so.write_all(b"ready\n")?;
        so.flush()?;
    }
    let mut go = [0u8; 1];
    io::stdin().read_exact(&mut go)?;

    let (mut gets, mut hits, mut sets, mut stamp) = (0u64, 0u64, 0u64, job.seed << 20);
    let mask = seq.len() - 1;
    let start = Instant::now();
    let deadline = start + job.duration;
    let mut t0 = start;
    let mut i = 0usize;
    loop {
        let op = seq[i & mask];
        i += 1;
        let k = &keys[(op & !SET_BIT) as usize];
        let is_set = op & SET_BIT != 0;
        if is_set {
            stamp += 1;
            stamp_value(&mut val, stamp);
            c.set(k, &val)?;
        } else {
            hits += u64::from(c.get(k, &mut out)?);
        }
        let t1 = Instant::now();
        let ns = (t1 - t0).as_nanos() as u64;
        t0 = t1;
        if is_set {
            sets += 1;
            hset.saturating_record(ns.max(1));
        } else {
            gets += 1;
            hget.saturating_record(ns.max(1));
        }
        if t1 >= deadline {
            break;
        }
    }
    let elapsed = start.elapsed();
    let mut f = io::BufWriter::new(std::fs::File::create(&job.out)?);
    writeln!(
        f,
        "counts {} {} {} {}",
        elapsed.as_nanos(),
        gets,
        hits,
        sets
    )?;
    write_hist(&mut f, "get", &hget)?;
    write_hist(&mut f, "set", &hset)?;
    f.flush()
}

// ---------------------------------------------------------------------------------------
// Parent side.

struct WorkerOut {
    elapsed_ns: u64,
    gets: u64,
    hits: u64,
    sets: u64,
    get: Histogram<u64>,
    set: Histogram<u64>,
}

fn read_worker_out(path: &Path) -> io::Result<WorkerOut> {
    let mut r = BufReader::new(std::fs::File::open(path)?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let n: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|s| s.parse().ok())
        .collect();
    if n.len() != 4 {
        return Err(io::Error::other(format!("bad worker output {line:?}")));
    }
    let mut hist = |name: &str| -> io::Result<Histogram<u64>> {
        let mut l = String::new();
        r.read_line(&mut l)?;
        if l.trim() != format!("hist {name}") {
            return Err(io::Error::other(format!("expected hist {name}, got {l:?}")));
        }
        read_hist(&mut r)
    };
    let get = hist("get")?;
    let set = hist("set")?;
    Ok(WorkerOut {
        elapsed_ns: n[0],
        gets: n[1],
        hits: n[2],
        sets: n[3],
        get,
        set,
    })
}

/// Kills the worker processes still running if a run is abandoned (error or panic).
struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

fn run_one(
    target: &Target,
    cfg: Cfg,
    nkeys: u64,
    duration: Duration,
    dir: &Path,
    run_id: u64,
) -> io::Result<Row> {
    let exe = std::env::current_exe()?;
    let mut workers = Workers(Vec::new());
    let mut outs = Vec::new();
    for w in 0..cfg.procs {
        let out = dir.join(format!("run{run_id}-w{w}.txt"));
        let job = Job {
            target: target.clone(),
            value: cfg.value,
            keys: nkeys,
            dist: cfg.dist(),
            read_pct: cfg.read_pct,
            seed: 0x5eed_0000 + run_id * 64 + u64::from(w),
            duration,
            out: out.clone(),
        };
        let mut cmd = Command::new(&exe);
        cmd.env(WORKER_ENV, job.encode())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        die_with_parent(&mut cmd);
        workers.0.push(cmd.spawn()?);
        outs.push(out);
    }
    // Barrier: every worker ready, then release them all.
    for c in &mut workers.0 {
        let mut line = String::new();
        BufReader::new(c.stdout.as_mut().expect("piped stdout")).read_line(&mut line)?;
        if line.trim() != "ready" {
            return Err(io::Error::other(format!(
                "{} worker failed before the start",
                target.system()
            )));
        }
    }
    for c in &mut workers.0 {
        let mut stdin = c.stdin.take().expect("piped stdin");
        stdin.write_all(b"g")?;
    }
    for c in &mut workers.0 {
        let st = c.wait()?;
        if !st.success() {
            return Err(io::Error::other(format!(
                "{} worker exited with {st}",
                target.system()
            )));
        }
    }
    let mut row = Row {
        cfg,
        nkeys,
        system: target.system(),
        ops: 0,
        ops_per_s: 0.0,
        gets: 0,
        hits: 0,
        sets: 0,
        get: new_hist(),
        set: new_hist(),
        all: new_hist(),
    };
    for p in &outs {
        let w = read_worker_out(p)?;
        let _ = std::fs::remove_file(p);
        row.ops += w.gets + w.sets;
        row.ops_per_s += (w.gets + w.sets) as f64 / (w.elapsed_ns as f64 / 1e9);
        row.gets += w.gets;
        row.hits += w.hits;
        row.sets += w.sets;
        row.get
            .add(&w.get)
            .map_err(|e| io::Error::other(e.to_string()))?;
        row.set
            .add(&w.set)
            .map_err(|e| io::Error::other(e.to_string()))?;
    }
    row.all
        .add(&row.get)
        .map_err(|e| io::Error::other(e.to_string()))?;
    row.all
        .add(&row.set)
        .map_err(|e| io::Error::other(e.to_string()))?;
    Ok(row)
}

/// The servers and arena for one value size.
struct Systems {
    _servers: Vec<Server>,
    /// Declared before the arena: stopped (joined) before the handle it uses is dropped.
    _evictor: Option<larder::Evictor>,
    _arena: Option<larder::Cache>,
    targets: Vec<Target>,
}

fn start_systems(opts: &Opts, dir: &Path, shm: &Path, value: usize) -> io::Result<Systems> {
    let want = |s: &str| opts.systems.iter().any(|x| x == s);
    let mut servers = Vec::new();
    let mut targets = Vec::new();
    let mut arena = None;
    let mut evictor = None;
    if want("larder") {
        let path = shm.join(format!("arena-{value}"));
        let _ = std::fs::remove_file(&path);
        let cache = larder::Cache::create(&path, &larder::Config::new(u64::from(MEM_MB) << 20))
            .map_err(|e| io::Error::other(format!("creating {}: {e}", path.display())))?;
        if opts.evict_ahead > 0 {
            evictor = Some(cache.spawn_evictor(opts.evict_ahead)?);
        }
        arena = Some(cache);
        targets.push(Target::Larder(path));
    }
    let mc_unix = want("memcached/unix");
    let mc_tcp = want("memcached/tcp");
    if mc_unix || mc_tcp {
        if let Some(bin) = servers::installed("memcached", "memcached") {
            for (on, unix) in [(mc_unix, true), (mc_tcp, false)] {
                if on {
                    let (s, t) = servers::memcached(&bin, dir, MEM_MB, unix)?;
                    servers.push(s);
                    targets.push(t);
                }
            }
        }
    }
    let ld_unix = want("larder-mc/unix");
    let ld_tcp = want("larder-mc/tcp");
    if ld_unix || ld_tcp {
        match servers::larderd_bin() {
            Some(bin) => {
                let (s, ts) = servers::larderd(&bin, dir, MEM_MB, ld_unix, ld_tcp)?;
                servers.push(s);
                targets.extend(ts);
            }
            None => eprintln!(
                "larderd is not built: skipping larder-mc/* (cargo build --release --bin larderd)"
            ),
        }
    }
    let r_unix = want("redis/unix");
    let r_tcp = want("redis/tcp");
    if r_unix || r_tcp {
        if let Some(bin) = servers::installed("redis-server", "redis-server") {
            let (s, u, t) = servers::redis(&bin, dir, None)?;
            servers.push(s);
            if r_unix {
                targets.push(u);
            }
            if r_tcp {
                targets.push(t);
            }
        }
    }
    // Table order.
    targets.sort_by_key(|t| ALL_SYSTEMS.iter().position(|s| *s == t.system()));
    Ok(Systems {
        _servers: servers,
        _evictor: evictor,
        _arena: arena,
        targets,
    })
}

/// Stores every key once, in each system. Redis' TCP and Unix targets share one server, as
/// do... nothing else: memcached's two transports are two servers.
fn fill(
    targets: &[Target],
    arena: Option<&larder::Cache>,
    nkeys: u64,
    value_len: usize,
) -> io::Result<()> {
    let keys: Vec<Key> = (0..nkeys).map(key).collect();
    let vals: Vec<Vec<u8>> = (0..64).map(|s| value(value_len, s)).collect();
    let items = || {
        keys.iter()
            .enumerate()
            .map(|(i, k)| (&k[..], &vals[i % vals.len()][..]))
    };
    let mut redis_done = false;
    for t in targets {
        match t {
            Target::Larder(_) => {
                let c = arena.expect("larder arena");
                for (k, v) in items() {
                    c.set(k, v, None)
                        .map_err(|e| io::Error::other(format!("larder fill: {e}")))?;
                }
            }
            Target::McUnix(p) => Memcached::new(connect_unix(p)?).set_many(items())?,
            Target::McTcp(port) => Memcached::new(connect_tcp(*port)?).set_many(items())?,
            // Both listeners of one larderd serve one arena: filled once, through Unix.
            Target::LdUnix(p) => Memcached::new(connect_unix(p)?).set_many(items())?,
            Target::LdTcp(port) if !targets.iter().any(|t| matches!(t, Target::LdUnix(_))) => {
                Memcached::new(connect_tcp(*port)?).set_many(items())?
            }
            Target::LdTcp(_) => {}
            Target::RedisUnix(p) if !redis_done => {
                Redis::new(connect_unix(p)?).set_many(items())?;
                redis_done = true;
            }
            Target::RedisTcp(port) if !redis_done => {
                Redis::new(connect_tcp(*port)?).set_many(items())?;
                redis_done = true;
            }
            _ => {}
        }
    }
    Ok(())
}

pub fn run(opts: &Opts) -> io::Result<()> {
    let tmp = tempfile::Builder::new().prefix("larder-bench-").tempdir()?;
    let shm = tempfile::Builder::new()
        .prefix("larder-bench-")
        .tempdir_in(shm_dir())?;
    std::fs::create_dir_all(&opts.out)?;
    let timer_ns = timer_overhead_ns();

    let mut cfgs = Vec::new();
    for &value in &opts.values {
        for &dist in &opts.dists {
            for &read_pct in &opts.mixes {
                for &procs in &opts.procs {
                    cfgs.push(Cfg {
                        value,
                        dist_zipf: dist == Dist::Zipf,
                        read_pct,
                        procs,
                    });
                }
            }
        }
    }
    let nsys = opts.systems.len() as u64;
    let pb = progress(cfgs.len() as u64 * nsys, "compare");
    let mut rows: Vec<Row> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let mut run_id = 0u64;
    let started = Instant::now();
    for &value in &opts.values {
        let nkeys = nkeys_for(opts, value);
        pb.set_message(format!(
            "starting servers, filling {nkeys} keys of {value} B"
        ));
        let sys = start_systems(opts, tmp.path(), shm.path(), value)?;
        fill(&sys.targets, sys._arena.as_ref(), nkeys, value)?;
        for cfg in cfgs.iter().filter(|c| c.value == value) {
            for t in &sys.targets {
                pb.set_message(format!(
                    "{value} B {} {} x{} {}",
                    cfg.dist().name(),
                    cfg.mix(),
                    cfg.procs,
                    t.system()
                ));
                run_id += 1;
                match run_one(t, *cfg, nkeys, opts.duration, tmp.path(), run_id) {
                    Ok(row) => {
                        say(&pb, format!(
                            "{:>6} B {:>8} {:>6} x{} {:<15} {:>10} ops/s  GET p50 {:>9} p99 {:>9}  SET p50 {:>9}  hit {:.1}%",
                            value,
                            cfg.dist().name(),
                            cfg.mix(),
                            cfg.procs,
                            row.system,
                            fmt_rate(row.ops_per_s),
                            fmt_ns(pct(&row.get, 0.5)),
                            fmt_ns(pct(&row.get, 0.99)),
                            fmt_ns(pct(&row.set, 0.5)),
                            row.hit_ratio() * 100.0
                        ));
                        rows.push(row);
                    }
                    Err(e) => {
                        let msg = format!(
                            "{value} B {} {} x{} {}: {e}",
                            cfg.dist().name(),
                            cfg.mix(),
                            cfg.procs,
                            t.system()
                        );
                        say(&pb, format!("FAILED {msg}"));
                        failures.push(msg);
                    }
                }
                pb.inc(1);
            }
        }
        // Unreached systems (not installed) still count for the bar.
        let missing = nsys.saturating_sub(sys.targets.len() as u64);
        pb.inc(missing * cfgs.iter().filter(|c| c.value == value).count() as u64);
    }
    pb.finish_and_clear();
    let wall = started.elapsed();

    let csv = opts.out.join("compare.csv");
    write_csv(&csv, &rows)?;
    let md = report(opts, &rows, &failures, timer_ns, wall);
    let md_path = opts.out.join("compare.md");
    std::fs::write(&md_path, &md)?;
    println!("\n{md}");
    if let Some(plot) = &opts.plot {
        match plot_scaling(opts, &rows, plot) {
            Ok(true) => println!("plot: {}", plot.display()),
            Ok(false) => {}
            Err(e) => eprintln!("plot {}: {e}", plot.display()),
        }
    }
    println!("tables: {}\nall rows: {}", md_path.display(), csv.display());
    if !failures.is_empty() {
        return Err(io::Error::other(format!("{} runs failed", failures.len())));
    }
    Ok(())
}

/// A line above the progress bar, or on stdout when there is no bar (not a terminal).
fn say(pb: &indicatif::ProgressBar, line: String) {
    if pb.is_hidden() {
        println!("{line}");
    } else {
        pb.println(line);
    }
}

fn write_csv(path: &Path, rows: &[Row]) -> io::Result<()> {
    let mut f = io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(
        f,
        "value_bytes,keys,dist,read_pct,procs,system,ops,ops_per_s,get_hit_ratio,\
         get_p50_ns,get_p99_ns,get_p999_ns,set_p50_ns,set_p99_ns,set_p999_ns,\
         all_p50_ns,all_p99_ns,all_p999_ns"
    )?;
    let p = |h: &Histogram<u64>, q: f64| pct(h, q).map_or(String::new(), |v| v.to_string());
    for r in rows {
        writeln!(
            f,
            "{},{},{},{},{},{},{},{:.0},{:.4},{},{},{},{},{},{},{},{},{}",
            r.cfg.value,
            r.nkeys,
            r.cfg.dist().name(),
            r.cfg.read_pct,
            r.cfg.procs,
            r.system,
            r.ops,
            r.ops_per_s,
            r.hit_ratio(),
            p(&r.get, 0.5),
            p(&r.get, 0.99),
            p(&r.get, 0.999),
            p(&r.set, 0.5),
            p(&r.set, 0.99),
            p(&r.set, 0.999),
            p(&r.all, 0.5),
            p(&r.all, 0.99),
            p(&r.all, 0.999),
        )?;
    }
    f.flush()
}

fn find<'a>(rows: &'a [Row], cfg: Cfg, system: &str) -> Option<&'a Row> {
    rows.iter().find(|r| r.cfg == cfg && r.system == system)
}

/// The value size the summary tables use: 100 B when it was run.
fn base_value(opts: &Opts) -> usize {
    if opts.values.contains(&100) {
        100
    } else {
        opts.values[0]
    }
}

fn base_mix(opts: &Opts) -> u32 {
    if opts.mixes.contains(&90) {
        90
    } else {
        opts.mixes[0]
    }
}

fn base_dist_zipf(opts: &Opts) -> bool {
    opts.dists.contains(&Dist::Zipf)
}

fn report(opts: &Opts, rows: &[Row], failures: &[String], timer_ns: f64, wall: Duration) -> String {
    let mut s = String::new();
    let systems: Vec<&str> = ALL_SYSTEMS
        .iter()
        .copied()
        .filter(|s| rows.iter().any(|r| r.system == *s))
        .collect();
    let _ = writeln!(s, "<!-- generated by: {} -->", opts.command);
    let _ = writeln!(
        s,
        "Machine: {}. Run took {:.0} s; {} ms per run; `Instant::now()` costs {timer_ns:.0} ns \
         and is included once in every latency (and in the ops/s).\n",
        machine_description(),
        wall.as_secs_f64(),
        opts.duration.as_millis()
    );

    // Targets first.
    let _ = writeln!(s, "### Targets (from this run)\n");
    let _ = writeln!(s, "{}", targets(opts, rows));

    let bv = base_value(opts);
    // 1. Single process at the base value size: every mix, every system.
    let _ = writeln!(
        s,
        "### One client process, {bv} B values\n\nratio = larder ops/s ÷ that system's ops/s \
         (for larder's own row: 1).\n"
    );
    for &dist in &opts.dists {
        let mut t = Table::new([
            "dist",
            "mix",
            "system",
            "ops/s",
            "larder ÷",
            "GET p50",
            "GET p99",
            "GET p99.9",
            "SET p50",
            "SET p99",
            "SET p99.9",
        ]);
        for &mix in &opts.mixes {
            let cfg = Cfg {
                value: bv,
                dist_zipf: dist == Dist::Zipf,
                read_pct: mix,
                procs: 1,
            };
            let larder = find(rows, cfg, "larder");
            for sys in &systems {
                if let Some(r) = find(rows, cfg, sys) {
                    t.row(vec![
                        dist.name().into(),
                        cfg.mix(),
                        sys.to_string(),
                        fmt_rate(r.ops_per_s),
                        larder.map_or("–".into(), |l| fmt_ratio(l.ops_per_s / r.ops_per_s)),
                        fmt_ns(pct(&r.get, 0.5)),
                        fmt_ns(pct(&r.get, 0.99)),
                        fmt_ns(pct(&r.get, 0.999)),
                        fmt_ns(pct(&r.set, 0.5)),
                        fmt_ns(pct(&r.set, 0.99)),
                        fmt_ns(pct(&r.set, 0.999)),
                    ]);
                }
            }
        }
        if !t.is_empty() {
            let _ = writeln!(s, "{}", t.markdown());
        }
    }

    // 2. Scaling with processes.
    let _ = writeln!(
        s,
        "### Processes: aggregate ops/s and p99 (all requests), {bv} B values\n"
    );
    let mut header: Vec<String> = vec!["dist".into(), "mix".into(), "system".into()];
    for p in &opts.procs {
        header.push(format!("ops/s ×{p}"));
    }
    for p in opts.procs.iter().skip(1) {
        header.push(format!("×{p} ÷ ×{}", opts.procs[0]));
    }
    for p in &opts.procs {
        header.push(format!("p99 ×{p}"));
    }
    let mut t = Table::new(header);
    for &dist in &opts.dists {
        for &mix in &opts.mixes {
            for sys in &systems {
                let at = |procs: u32| {
                    find(
                        rows,
                        Cfg {
                            value: bv,
                            dist_zipf: dist == Dist::Zipf,
                            read_pct: mix,
                            procs,
                        },
                        sys,
                    )
                };
                if at(opts.procs[0]).is_none() {
                    continue;
                }
                let mut cells = vec![
                    dist.name().into(),
                    format!("{mix}/{}", 100 - mix),
                    sys.to_string(),
                ];
                for &p in &opts.procs {
                    cells.push(at(p).map_or("–".into(), |r| fmt_rate(r.ops_per_s)));
                }
                let one = at(opts.procs[0]).map_or(f64::NAN, |r| r.ops_per_s);
                for &p in opts.procs.iter().skip(1) {
                    cells.push(at(p).map_or("–".into(), |r| format!("{:.2}", r.ops_per_s / one)));
                }
                for &p in &opts.procs {
                    cells.push(at(p).map_or("–".into(), |r| fmt_ns(pct(&r.all, 0.99))));
                }
                t.row(cells);
            }
        }
    }
    let _ = writeln!(s, "{}", t.markdown());

    // 3. Value sizes, one process, base mix and dist.
    let bm = base_mix(opts);
    let bz = base_dist_zipf(opts);
    let dname = if bz { "zipf0.99" } else { "uniform" };
    let _ = writeln!(
        s,
        "### Value sizes: one process, {dname}, {bm}/{} mix\n",
        100 - bm
    );
    let mut header: Vec<String> = vec!["system".into()];
    for v in &opts.values {
        header.push(format!("{v} B ops/s"));
        header.push(format!("{v} B GET p50"));
        header.push(format!("larder ÷ ({v} B)"));
    }
    let mut t = Table::new(header);
    for sys in &systems {
        let mut cells = vec![sys.to_string()];
        for &v in &opts.values {
            let cfg = Cfg {
                value: v,
                dist_zipf: bz,
                read_pct: bm,
                procs: opts.procs[0],
            };
            let r = find(rows, cfg, sys);
            let l = find(rows, cfg, "larder");
            cells.push(r.map_or("–".into(), |r| fmt_rate(r.ops_per_s)));
            cells.push(r.map_or("–".into(), |r| fmt_ns(pct(&r.get, 0.5))));
            cells.push(match (r, l) {
                (Some(r), Some(l)) => fmt_ratio(l.ops_per_s / r.ops_per_s),
                _ => "–".into(),
            });
        }
        t.row(cells);
    }
    let _ = writeln!(s, "{}", t.markdown());

    // 4. Everything.
    let _ = writeln!(s, "<details><summary>All {} runs</summary>\n", rows.len());
    let mut t = Table::new([
        "value",
        "keys",
        "dist",
        "mix",
        "procs",
        "system",
        "ops/s",
        "larder ÷",
        "GET hit",
        "GET p50",
        "GET p99",
        "GET p99.9",
        "SET p50",
        "SET p99",
        "SET p99.9",
    ]);
    for r in rows {
        let l = find(rows, r.cfg, "larder");
        t.row(vec![
            format!("{} B", r.cfg.value),
            r.nkeys.to_string(),
            r.cfg.dist().name().into(),
            r.cfg.mix(),
            r.cfg.procs.to_string(),
            r.system.into(),
            fmt_rate(r.ops_per_s),
            l.map_or("–".into(), |l| fmt_ratio(l.ops_per_s / r.ops_per_s)),
            if r.gets == 0 {
                "–".into()
            } else {
                format!("{:.1}%", r.hit_ratio() * 100.0)
            },
            fmt_ns(pct(&r.get, 0.5)),
            fmt_ns(pct(&r.get, 0.99)),
            fmt_ns(pct(&r.get, 0.999)),
            fmt_ns(pct(&r.set, 0.5)),
            fmt_ns(pct(&r.set, 0.99)),
            fmt_ns(pct(&r.set, 0.999)),
        ]);
    }
    let _ = writeln!(s, "{}\n</details>\n", t.markdown());
    if !failures.is_empty() {
        let _ = writeln!(s, "Failed runs:\n");
        for f in failures {
            let _ = writeln!(s, "- {f}");
        }
    }
    s
}

/// The targets that this benchmark measures, with the numbers.
fn targets(opts: &Opts, rows: &[Row]) -> String {
    let bv = base_value(opts);
    let mut s = String::new();
    let ok = |b: bool| if b { "**met**" } else { "**not met**" };
    for &zipf in &[false, true] {
        let dname = if zipf { "zipf0.99" } else { "uniform" };
        let cfg = |read_pct, procs| Cfg {
            value: bv,
            dist_zipf: zipf,
            read_pct,
            procs,
        };
        // GET vs memcached over a Unix socket, p50 of 1 process, GET only.
        if let (Some(l), Some(m)) = (
            find(rows, cfg(100, 1), "larder"),
            find(rows, cfg(100, 1), "memcached/unix"),
        ) {
            if let (Some(lp), Some(mp)) = (pct(&l.get, 0.5), pct(&m.get, 0.5)) {
                let r = mp as f64 / lp as f64;
                let _ = writeln!(
                    s,
                    "- GET ≥ 100× faster than memcached/unix ({bv} B, {dname}, 1 process, p50): \
                     larder {} vs {} = {}: {}",
                    fmt_ns(Some(lp)),
                    fmt_ns(Some(mp)),
                    fmt_ratio(r),
                    ok(r >= 100.0)
                );
            }
        }
        // SET under 1 µs and ≥ 40× memcached: p50 of SETs in the 50/50 mix, 1 process.
        if let (Some(l), Some(m)) = (
            find(rows, cfg(50, 1), "larder"),
            find(rows, cfg(50, 1), "memcached/unix"),
        ) {
            if let (Some(lp), Some(mp)) = (pct(&l.set, 0.5), pct(&m.set, 0.5)) {
                let r = mp as f64 / lp as f64;
                let _ = writeln!(
                    s,
                    "- SET < 1 µs and ≥ 40× memcached/unix ({bv} B, {dname}, 50/50, 1 process, \
                     p50): larder {} ({}), memcached {} = {}: {}",
                    fmt_ns(Some(lp)),
                    ok(lp < 1000),
                    fmt_ns(Some(mp)),
                    fmt_ratio(r),
                    ok(r >= 40.0)
                );
            }
        }
        // 2 reader processes ≥ 1.6× the throughput of 1.
        if let (Some(one), Some(two)) = (
            find(rows, cfg(100, 1), "larder"),
            find(rows, cfg(100, 2), "larder"),
        ) {
            let r = two.ops_per_s / one.ops_per_s;
            let _ = writeln!(
                s,
                "- 2 reader processes ≥ 1.6× one ({bv} B, {dname}, GET only): {} vs {} ops/s = \
                 {r:.2}×: {}",
                fmt_rate(two.ops_per_s),
                fmt_rate(one.ops_per_s),
                ok(r >= 1.6)
            );
        }
    }
    if s.is_empty() {
        s.push_str("(this selection of runs measures none of the targets)\n");
    }
    s
}

fn plot_scaling(opts: &Opts, rows: &[Row], path: &Path) -> io::Result<bool> {
    let bv = base_value(opts);
    let bm = base_mix(opts);
    let bz = base_dist_zipf(opts);
    let mut series = Vec::new();
    for sys in ALL_SYSTEMS {
        let pts: Vec<(u32, f64, f64)> = opts
            .procs
            .iter()
            .filter_map(|&procs| {
                find(
                    rows,
                    Cfg {
                        value: bv,
                        dist_zipf: bz,
                        read_pct: bm,
                        procs,
                    },
                    sys,
                )
                .and_then(|r| pct(&r.all, 0.99).map(|p| (procs, r.ops_per_s, p as f64 / 1e3)))
            })
            .collect();
        if !pts.is_empty() {
            series.push((sys, pts));
        }
    }
    if series.is_empty() {
        return Ok(false);
    }
    let title = format!(
        "{bv} B values, {}, {bm}/{} GET/SET, no pipelining",
        if bz { "Zipf(0.99)" } else { "uniform" },
        100 - bm
    );
    crate::plot::scaling(path, &title, &series)?;
    Ok(true)
}

/// Redraws the scaling plot from a `compare.csv` (rows for `value` B, `dist`, `read_pct`).
pub fn plot_from_csv(
    csv: &Path,
    png: &Path,
    value: usize,
    dist: Dist,
    read_pct: u32,
) -> io::Result<()> {
    let text = std::fs::read_to_string(csv)?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| io::Error::other(format!("{} has no column {name}", csv.display())))
    };
    let (cv, cd, cr, cp, cs, co, c99) = (
        col("value_bytes")?,
        col("dist")?,
        col("read_pct")?,
        col("procs")?,
        col("system")?,
        col("ops_per_s")?,
        col("all_p99_ns")?,
    );
    let mut series: Vec<crate::plot::Series<'_>> = Vec::new();
    for sys in ALL_SYSTEMS {
        let mut pts: Vec<(u32, f64, f64)> = lines
            .clone()
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| {
                f.len() == header.len()
                    && f[cv] == value.to_string()
                    && f[cd] == dist.name()
                    && f[cr] == read_pct.to_string()
                    && f[cs] == sys
            })
            .filter_map(|f| {
                Some((
                    f[cp].parse().ok()?,
                    f[co].parse().ok()?,
                    f[c99].parse::<f64>().ok()? / 1e3,
                ))
            })
            .collect();
        pts.sort_by_key(|p| p.0);
        if !pts.is_empty() {
            series.push((sys, pts));
        }
    }
    if series.is_empty() {
        return Err(io::Error::other("no matching rows"));
    }
    let title = format!(
        "{value} B values, {}, {read_pct}/{} GET/SET, no pipelining",
        if dist == Dist::Zipf {
            "Zipf(0.99)"
        } else {
            "uniform"
        },
        100 - read_pct
    );
    crate::plot::scaling(png, &title, &series)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_round_trip() {
        let j = Job {
            target: Target::McTcp(1234),
            value: 100,
            keys: 1000,
            dist: Dist::Zipf,
            read_pct: 90,
            seed: 7,
            duration: Duration::from_millis(250),
            out: "/tmp/x y".into(),
        };
        let k = Job::decode(&j.encode()).unwrap();
        assert_eq!(k.target, j.target);
        assert_eq!(
            (k.value, k.keys, k.dist, k.read_pct, k.seed, k.duration, k.out),
            (j.value, j.keys, j.dist, j.read_pct, j.seed, j.duration, j.out)
        );
    }
}
