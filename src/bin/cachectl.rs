//! `cachectl`: inspect and operate a larder cache from the shell.
//!
//! Exit codes: 0 success, 1 key not found / condition not met, 2 any error.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use larder::{Cache, Error};

// Shared with larderd; cachectl uses only part of it.
#[allow(dead_code)]
#[path = "../units.rs"]
mod units;

/// Inspect and operate a larder shared-memory cache.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Arena file [default: the same discovery order as larderd and every client]
    #[arg(long, global = true, env = "LARDER_ARENA")]
    arena: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Print a value (raw bytes) to stdout
    Get { key: String },
    /// Store a value (from the argument, or stdin when omitted or "-")
    Set {
        key: String,
        value: Option<String>,
        /// Time to live: 30s, 5m, 1h; 0 = never expires
        #[arg(long, value_parser = units::parse_duration)]
        ttl: Option<Duration>,
    },
    /// Delete keys
    Del { keys: Vec<String> },
    /// Add N (default 1) to a decimal value
    Incr { key: String, n: Option<u64> },
    /// Subtract N (default 1) from a decimal value, stopping at 0
    Decr { key: String, n: Option<u64> },
    /// Remaining time to live in seconds (-1: never expires)
    Ttl { key: String },
    /// List keys
    Keys {
        /// Stop after this many
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Counters and occupancy
    Stats,
    /// What the arena header says
    Info,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("cachectl: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn open(arena: Option<PathBuf>) -> anyhow::Result<Cache> {
    let path = arena.unwrap_or_else(larder::default_arena_path);
    Cache::open(&path).map_err(|e| match &e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            anyhow::anyhow!("no arena at {} — is larderd running? (start it with `larderd`, or see `systemctl status larderd`)", path.display())
        }
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            anyhow::anyhow!("permission denied on {} — add your user to the arena's group (usually `larder`)", path.display())
        }
        _ => anyhow::Error::new(e),
    })
}

fn ttl_arg(t: Option<Duration>) -> Option<Duration> {
    t.filter(|d| !d.is_zero())
}

fn run(cli: Cli) -> anyhow::Result<bool> {
    let cache = open(cli.arena)?;
    let mut out = std::io::stdout().lock();
    match cli.cmd {
        Cmd::Get { key } => match cache.get(key.as_bytes())? {
            Some(v) => out.write_all(&v)?,
            None => return Ok(false),
        },
        Cmd::Set { key, value, ttl } => {
            let v = match value.as_deref() {
                None | Some("-") => {
                    let mut b = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut b)
                        .context("reading the value from stdin")?;
                    b
                }
                Some(v) => v.as_bytes().to_vec(),
            };
            cache.set(key.as_bytes(), &v, ttl_arg(ttl))?;
        }
        Cmd::Del { keys } => {
            let mut any = false;
            for k in keys {
                any |= cache.delete(k.as_bytes())?;
            }
            return Ok(any);
        }
        Cmd::Incr { key, n } => {
            return print_num(&mut out, cache.incr(key.as_bytes(), n.unwrap_or(1))?)
        }
        Cmd::Decr { key, n } => {
            return print_num(&mut out, cache.decr(key.as_bytes(), n.unwrap_or(1))?)
        }
        Cmd::Ttl { key } => match cache.ttl(key.as_bytes())? {
            None => return Ok(false),
            Some(None) => writeln!(out, "-1")?,
            Some(Some(d)) => writeln!(out, "{}", d.as_secs())?,
        },
        Cmd::Keys { limit } => {
            for k in cache.keys().take(limit.unwrap_or(usize::MAX)) {
                out.write_all(&k)?;
                out.write_all(b"\n")?;
            }
        }
        Cmd::Stats => {
            let s = cache.stats();
            let t = s.totals;
            writeln!(out, "items           {}", s.items)?;
            writeln!(out, "bytes_used      {}", s.bytes_used)?;
            writeln!(out, "capacity        {}", s.capacity)?;
            writeln!(out, "hits            {}", t.hits)?;
            writeln!(out, "misses          {}", t.misses)?;
            writeln!(out, "hit_ratio       {:.4}", t.hit_ratio())?;
            writeln!(out, "sets            {}", t.sets)?;
            writeln!(out, "deletes         {}", t.deletes)?;
            writeln!(out, "evictions       {}", t.evictions)?;
            writeln!(out, "expired         {}", t.expired)?;
            writeln!(out, "index_evictions {}", t.index_evictions)?;
            writeln!(out, "rejected        {}", t.rejected)?;
            writeln!(out, "torn_retries    {}", t.torn_retries)?;
            writeln!(out, "corrupt         {}", t.corrupt)?;
            writeln!(out, "reclaimed       {}", t.reclaimed)?;
            writeln!(out, "processes       {}", s.processes.len())?;
            for p in &s.processes {
                writeln!(
                    out,
                    "  pid {:>7}  slot {:>3}  hits {}  misses {}  sets {}",
                    p.pid, p.slot, p.counters.hits, p.counters.misses, p.counters.sets
                )?;
            }
        }
        Cmd::Info => {
            let i = cache.info();
            writeln!(out, "arena           {}", i.path.display())?;
            writeln!(out, "size            {}", i.arena_size)?;
            writeln!(out, "layout_version  {}", i.layout_version)?;
            writeln!(
                out,
                "segments        {} x {} bytes",
                i.segments, i.segment_size
            )?;
            writeln!(
                out,
                "limits          key {} bytes, value {} bytes",
                i.max_key, i.max_value
            )?;
            writeln!(out, "generation      {}", i.generation)?;
            writeln!(out, "clean           {}", i.clean)?;
            writeln!(
                out,
                "daemon_pid      {}",
                if i.daemon_pid == 0 {
                    "none".to_string()
                } else {
                    i.daemon_pid.to_string()
                }
            )?;
        }
    }
    Ok(true)
}

fn print_num(out: &mut impl Write, n: Option<u64>) -> anyhow::Result<bool> {
    match n {
        Some(n) => {
            writeln!(out, "{n}")?;
            Ok(true)
        }
        None => Ok(false),
    }
}
