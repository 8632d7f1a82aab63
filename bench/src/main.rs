//! `larder-bench`: larder against memcached and Redis (throughput and latency from separate
//! client processes), eviction quality (larder's CLOCK against exact LRU and FIFO) and memory
//! efficiency (items held in 256 MiB). `docs/performance.md` shows the results and how to
//! reproduce them.

mod compare;
mod eviction;
mod log_model;
mod memory;
mod plot;
mod proto;
mod servers;
mod sweep;
mod util;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::util::Dist;

#[derive(Parser)]
#[command(version, about = "Benchmarks larder against memcached and Redis")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Throughput and latency against memcached and Redis, from separate client processes.
    Compare(CompareArgs),
    /// Hit ratio of larder's CLOCK against exact LRU and FIFO (Zipf, Zipf + scans).
    Eviction(EvictionArgs),
    /// Items held in 256 MiB: larder vs memcached -m 256 (and Redis maxmemory).
    Memory(MemoryArgs),
    /// GET latency of live keys while the expiry sweeper unlinks expired items around them.
    Sweep(SweepArgs),
    /// Everything, in the order compare, eviction, memory, sweep (each with its defaults).
    All(AllArgs),
    /// Redraws the processes plot from a compare.csv.
    Plot(PlotArgs),
}

#[derive(Args, Clone)]
struct PlotArgs {
    #[arg(long, default_value = "target/larder-bench/compare.csv")]
    csv: PathBuf,
    #[arg(long, default_value = "target/larder-bench/compare.png")]
    out: PathBuf,
    #[arg(long, default_value_t = 100)]
    value: usize,
    #[arg(long, default_value = "zipf")]
    dist: String,
    /// Read percentage of the mix to plot.
    #[arg(long, default_value_t = 90)]
    read: u32,
}

#[derive(Args, Clone)]
struct CompareArgs {
    /// Smoke run: 100 B values, Zipf, 90/10, 1 and 2 processes, 10 000 keys, 0.1 s per run.
    #[arg(long)]
    quick: bool,
    /// Keys (capped per value size by --data-budget-mib).
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Value sizes in bytes.
    #[arg(long, value_delimiter = ',', default_values_t = [64usize, 100, 1024, 16384])]
    values: Vec<usize>,
    /// Key distributions: uniform, zipf (exponent 0.99).
    #[arg(long, value_delimiter = ',', default_values_t = ["uniform".to_string(), "zipf".to_string()])]
    dists: Vec<String>,
    /// Read percentages: 100 = GET only, 90 = 90 % GET / 10 % SET, ...
    #[arg(long, value_delimiter = ',', default_values_t = [100u32, 90, 50])]
    mixes: Vec<u32>,
    /// Client process counts.
    #[arg(long, value_delimiter = ',', default_values_t = [1u32, 2, 4])]
    procs: Vec<u32>,
    /// Seconds each (configuration, system) runs.
    #[arg(long, default_value_t = 0.4)]
    duration: f64,
    /// Systems: larder, memcached/unix, larder-mc/unix (larderd's memcached listener), redis/unix, memcached/tcp, larder-mc/tcp, redis/tcp.
    #[arg(long, value_delimiter = ',', default_values_t = compare::ALL_SYSTEMS.map(String::from))]
    systems: Vec<String>,
    /// Keys × (key + value) stays under this many MiB (so the data fits every system).
    #[arg(long, default_value_t = 112)]
    data_budget_mib: u64,
    /// Directory for compare.md, compare.csv and the plot.
    #[arg(long, default_value = "target/larder-bench")]
    out: PathBuf,
    /// Where to write the PNG (default: <out>/compare.png).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Run larderd's evict-ahead thread in the benchmark's parent process while larder is
    /// measured, keeping this much room ahead of the writers (e.g. 4MiB; 0 = off, as
    /// without a daemon).
    #[arg(long, default_value = "0", value_parser = parse_bytes)]
    evict_ahead: u64,
}

/// `4MiB`, `512KiB`, `1048576`.
fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mul) = [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]
        .iter()
        .find_map(|(u, m)| s.strip_suffix(u).map(|n| (n, *m)))
        .unwrap_or((s, 1));
    num.trim()
        .parse::<u64>()
        .map(|n| n * mul)
        .map_err(|e| format!("{s:?}: {e} (a byte count, with KiB, MiB or GiB)"))
}

#[derive(Args, Clone)]
struct SweepArgs {
    /// Smoke run: a 64 MiB arena, 0.2 s idle.
    #[arg(long)]
    quick: bool,
    /// Arena size in MiB (filled to about 80 %, four items in five expired).
    #[arg(long, default_value_t = 1024)]
    arena_mib: u64,
    /// Value length in bytes.
    #[arg(long, default_value_t = 100)]
    value: usize,
    /// Seconds of idle measurement before the sweep.
    #[arg(long, default_value_t = 1.0)]
    idle: f64,
    #[arg(long, default_value = "target/larder-bench")]
    out: PathBuf,
}

fn sweep_opts(a: &SweepArgs) -> sweep::Opts {
    sweep::Opts {
        arena_mib: if a.quick { 64 } else { a.arena_mib },
        value: a.value,
        idle: Duration::from_secs_f64(if a.quick { 0.2 } else { a.idle }),
        out: a.out.clone(),
        command: command_line(),
    }
}

#[derive(Args, Clone)]
struct EvictionArgs {
    /// Smoke run: 200 000 warm-up + 500 000 measured requests.
    #[arg(long)]
    quick: bool,
    /// Key universe.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Cache sizes as fractions of the keys, for Zipf(0.99); Zipf(0.8) and the scan mix
    /// are measured at 10 %.
    #[arg(long, value_delimiter = ',', default_values_t = [0.01f64, 0.10, 0.50])]
    fractions: Vec<f64>,
    #[arg(long, default_value_t = 500_000)]
    warmup: u64,
    #[arg(long, default_value_t = 1_000_000)]
    requests: u64,
    /// Value length in bytes (12-byte keys: 1000 gives 1024-byte items).
    #[arg(long, default_value_t = 1000)]
    value: usize,
    #[arg(long, default_value = "target/larder-bench")]
    out: PathBuf,
}

#[derive(Args, Clone)]
struct MemoryArgs {
    /// Smoke run: 100 B values only, fewer sampled lookups.
    #[arg(long)]
    quick: bool,
    #[arg(long, value_delimiter = ',', default_values_t = [64usize, 100, 1024, 16384])]
    values: Vec<usize>,
    /// Memory for each system, MiB (a list: one measurement per size).
    #[arg(long, value_delimiter = ',', default_values_t = [16u32, 64, 256, 1024, 4096])]
    mem_mib: Vec<u32>,
    /// Also measure redis-server with maxmemory.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    redis: bool,
    /// Keys looked up to check each count.
    #[arg(long, default_value_t = 20_000)]
    sample: usize,
    #[arg(long, default_value = "target/larder-bench")]
    out: PathBuf,
}

#[derive(Args, Clone)]
struct AllArgs {
    /// Smoke run of every part.
    #[arg(long)]
    quick: bool,
    #[arg(long, default_value = "target/larder-bench")]
    out: PathBuf,
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("cargo run --release -p larder-bench -- {}", args.join(" "))
}

fn compare_opts(a: &CompareArgs) -> Result<compare::Opts, String> {
    let mut dists = Vec::new();
    for d in &a.dists {
        dists.push(Dist::parse(d).ok_or_else(|| format!("unknown distribution {d:?}"))?);
    }
    for s in &a.systems {
        if !compare::ALL_SYSTEMS.contains(&s.as_str()) {
            return Err(format!(
                "unknown system {s:?} (known: {})",
                compare::ALL_SYSTEMS.join(", ")
            ));
        }
    }
    if let Some(m) = a.mixes.iter().find(|&&m| m > 100) {
        return Err(format!("read percentage {m} is over 100"));
    }
    if a.values.is_empty() || a.procs.is_empty() || a.mixes.is_empty() || dists.is_empty() {
        return Err("empty parameter list".into());
    }
    let mut o = compare::Opts {
        keys: a.keys,
        values: a.values.clone(),
        dists,
        mixes: a.mixes.clone(),
        procs: a.procs.clone(),
        duration: Duration::from_secs_f64(a.duration),
        systems: a.systems.clone(),
        data_budget: a.data_budget_mib << 20,
        out: a.out.clone(),
        plot: Some(a.plot.clone().unwrap_or_else(|| a.out.join("compare.png"))),
        evict_ahead: a.evict_ahead,
        command: command_line(),
    };
    if a.quick {
        o.keys = o.keys.min(10_000);
        o.values = vec![100];
        o.dists = vec![Dist::Zipf];
        o.mixes = vec![90];
        o.procs = vec![1, 2];
        o.duration = Duration::from_millis(100);
    }
    Ok(o)
}

fn eviction_opts(a: &EvictionArgs) -> eviction::Opts {
    let (warmup, requests) = if a.quick {
        (200_000, 500_000)
    } else {
        (a.warmup, a.requests)
    };
    eviction::Opts {
        keys: a.keys,
        fractions: a.fractions.clone(),
        warmup,
        requests,
        value: a.value,
        out: a.out.clone(),
        command: command_line(),
    }
}

fn memory_opts(a: &MemoryArgs) -> memory::Opts {
    memory::Opts {
        values: if a.quick { vec![100] } else { a.values.clone() },
        mem_mbs: if a.quick { vec![16] } else { a.mem_mib.clone() },
        redis: a.redis,
        sample: if a.quick { 2_000 } else { a.sample },
        out: a.out.clone(),
        command: command_line(),
    }
}

fn main() -> ExitCode {
    // A worker process of `compare` (this binary re-executed with a job).
    if let Ok(spec) = std::env::var(compare::WORKER_ENV) {
        return match compare::worker_main(&spec) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("larder-bench worker: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let cli = Cli::parse();
    let res = match &cli.cmd {
        Cmd::Compare(a) => match compare_opts(a) {
            Ok(o) => compare::run(&o),
            Err(e) => {
                eprintln!("larder-bench compare: {e}");
                return ExitCode::from(2);
            }
        },
        Cmd::Eviction(a) => eviction::run(&eviction_opts(a)),
        Cmd::Memory(a) => memory::run(&memory_opts(a)),
        Cmd::Sweep(a) => sweep::run(&sweep_opts(a)),
        Cmd::Plot(a) => match Dist::parse(&a.dist) {
            Some(d) => compare::plot_from_csv(&a.csv, &a.out, a.value, d, a.read),
            None => {
                eprintln!("larder-bench plot: unknown distribution {:?}", a.dist);
                return ExitCode::from(2);
            }
        },
        Cmd::All(a) => {
            let parse = |sub: &[&str]| {
                let mut v = vec!["larder-bench"];
                v.extend_from_slice(sub);
                let out = a.out.to_str().unwrap_or("target/larder-bench");
                v.extend_from_slice(&["--out", out]);
                if a.quick {
                    v.push("--quick");
                }
                Cli::parse_from(v).cmd
            };
            let mut res = Ok(());
            for sub in ["compare", "eviction", "memory", "sweep"] {
                let r = match parse(&[sub]) {
                    Cmd::Compare(c) => compare_opts(&c)
                        .map_err(std::io::Error::other)
                        .and_then(|o| compare::run(&o)),
                    Cmd::Eviction(e) => eviction::run(&eviction_opts(&e)),
                    Cmd::Memory(m) => memory::run(&memory_opts(&m)),
                    Cmd::Sweep(w) => sweep::run(&sweep_opts(&w)),
                    Cmd::All(_) | Cmd::Plot(_) => unreachable!(),
                };
                if let Err(e) = r {
                    eprintln!("larder-bench {sub}: {e}");
                    res = Err(e);
                }
            }
            res
        }
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("larder-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
