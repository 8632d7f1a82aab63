//! Operator commands: `stats`, `info`, `snapshot`, `watch`.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::bail;
use larder::{ArenaInfo, Cache, Counters, Stats};
use larderd::metrics::{counters, ListenerMetrics};
use serde_json::{json, Map, Value};

use crate::cli::StatsFormat;
use crate::fmt;
use crate::{Out, Status};

fn counters_json(c: &Counters) -> Value {
    let mut m: Map<String, Value> = counters(c)
        .iter()
        .map(|&(n, v, _)| (n.to_owned(), v.into()))
        .collect();
    m.insert("hit_ratio".into(), c.hit_ratio().into());
    Value::Object(m)
}

/// The attached clients that are alive. cachectl observes without a process slot, so it is
/// never one; a killed client's slot stays registered until someone reaps it (the daemon's
/// sweep, or a client out of segments), and is not shown meanwhile.
fn others(s: &Stats) -> impl Iterator<Item = &larder::ProcessStats> {
    s.processes.iter().filter(|p| p.alive)
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// `cachectl stats`.
pub fn stats(
    cache: &Cache,
    format: Option<StatsFormat>,
    listener: Option<&ListenerMetrics>,
    out: &mut Out,
) -> anyhow::Result<Status> {
    let s = cache.stats();
    let format = format.unwrap_or(if out.json {
        StatsFormat::Json
    } else {
        StatsFormat::Text
    });
    match format {
        StatsFormat::Json => out.json_line(&json!({
            "arena": cache.path(),
            "items": s.items,
            "bytes_used": s.bytes_used,
            "capacity": s.capacity,
            "arena_size": s.arena_size,
            "segments": s.segments,
            "free_segments": s.free_segments,
            "totals": counters_json(&s.totals),
            "processes": others(&s).map(|p| json!({
                "pid": p.pid,
                "slot": p.slot,
                "attached_at": p.attached_at,
                "counters": counters_json(&p.counters),
            })).collect::<Vec<_>>(),
            "listener": listener.map(|l| Value::Object(l.samples().iter().map(|(name, _, _, v)| {
                (name.trim_start_matches("larder_listener_").to_string(), json!(v))
            }).collect())),
        }))?,
        StatsFormat::Prometheus => {
            prometheus(&s, out)?;
            for (name, kind, help, v) in listener.map(|l| l.samples()).into_iter().flatten() {
                writeln!(out, "# HELP {name} {help}")?;
                writeln!(out, "# TYPE {name} {kind}")?;
                writeln!(out, "{name} {v}")?;
            }
        }
        StatsFormat::Text => {
            let t = &s.totals;
            writeln!(out, "items            {}", s.items)?;
            writeln!(
                out,
                "bytes used       {} of {} ({:.1}%)",
                fmt::size(s.bytes_used),
                fmt::size(s.capacity),
                pct(s.bytes_used, s.capacity)
            )?;
            writeln!(
                out,
                "segments         {} ({} free)",
                s.segments, s.free_segments
            )?;
            writeln!(out, "hit ratio        {:.2}%", t.hit_ratio() * 100.0)?;
            for (name, v, _) in counters(t) {
                writeln!(out, "{:<16} {v}", name.replace('_', " "))?;
            }
            if let Some(l) = listener {
                writeln!(
                    out,
                    "listener         {} connections ({} accepted, {} refused)",
                    l.connections, l.connections_total, l.rejected_connections
                )?;
                writeln!(
                    out,
                    "  get keys {}, sets {}, touches {}, flushes {}, protocol errors {}",
                    l.cmd_get, l.cmd_set, l.cmd_touch, l.cmd_flush, l.protocol_errors
                )?;
                writeln!(
                    out,
                    "  read {}, written {}",
                    fmt::size(l.bytes_read),
                    fmt::size(l.bytes_written)
                )?;
            }
            let procs: Vec<_> = others(&s).collect();
            writeln!(out, "processes        {} attached", procs.len())?;
            if !procs.is_empty() {
                writeln!(
                    out,
                    "  {:>8} {:>4} {:>12} {:>12} {:>12} {:>10} {:>10}  attached",
                    "pid", "slot", "hits", "misses", "sets", "deletes", "evictions"
                )?;
                let now = fmt::unix_now();
                for p in procs {
                    let c = &p.counters;
                    writeln!(
                        out,
                        "  {:>8} {:>4} {:>12} {:>12} {:>12} {:>10} {:>10}  {} ago",
                        p.pid,
                        p.slot,
                        c.hits,
                        c.misses,
                        c.sets,
                        c.deletes,
                        c.evictions,
                        fmt::duration(now.saturating_sub(p.attached_at))
                    )?;
                }
            }
        }
    }
    Ok(Status::Done)
}

fn prometheus(s: &Stats, out: &mut Out) -> std::io::Result<()> {
    let gauges: [(&str, f64, &str); 7] = [
        (
            "items",
            s.items as f64,
            "Items reachable through the index.",
        ),
        (
            "bytes_used",
            s.bytes_used as f64,
            "Bytes of the item log in use.",
        ),
        (
            "capacity_bytes",
            s.capacity as f64,
            "Bytes the item log can hold.",
        ),
        (
            "arena_size_bytes",
            s.arena_size as f64,
            "Size of the arena file.",
        ),
        (
            "segments",
            f64::from(s.segments),
            "Segments of the item log.",
        ),
        (
            "free_segments",
            f64::from(s.free_segments),
            "Segments holding nothing.",
        ),
        (
            "hit_ratio",
            s.totals.hit_ratio(),
            "Hits over lookups since the arena was created.",
        ),
    ];
    for (name, v, help) in gauges {
        writeln!(out, "# HELP larder_{name} {help}")?;
        writeln!(out, "# TYPE larder_{name} gauge")?;
        writeln!(out, "larder_{name} {v}")?;
    }
    let procs: Vec<_> = others(s).collect();
    writeln!(
        out,
        "# HELP larder_processes Client processes attached to the arena."
    )?;
    writeln!(out, "# TYPE larder_processes gauge")?;
    writeln!(out, "larder_processes {}", procs.len())?;
    for (i, (name, v, help)) in counters(&s.totals).into_iter().enumerate() {
        writeln!(out, "# HELP larder_{name}_total {help}")?;
        writeln!(out, "# TYPE larder_{name}_total counter")?;
        writeln!(out, "larder_{name}_total {v}")?;
        let pname = format!("larder_process_{name}_total");
        if !procs.is_empty() {
            writeln!(
                out,
                "# HELP {pname} {help} Per attached process, since it attached."
            )?;
            writeln!(out, "# TYPE {pname} counter")?;
        }
        for p in &procs {
            writeln!(
                out,
                "{pname}{{pid=\"{}\",slot=\"{}\"}} {}",
                p.pid,
                p.slot,
                counters(&p.counters)[i].1
            )?;
        }
    }
    Ok(())
}

/// Whether the daemon the header names is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Daemon {
    None,
    Running(u32),
    /// The header names a pid that no longer exists: the daemon died without detaching.
    Dead(u32),
}

fn daemon(i: &ArenaInfo) -> Daemon {
    let pid = i.daemon_pid;
    if pid == 0 {
        return Daemon::None;
    }
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return Daemon::Dead(pid);
    };
    // Signal 0 (None) only checks that the process exists and may be signalled; EPERM
    // means it exists under another user.
    let exists = matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None),
        Ok(()) | Err(nix::errno::Errno::EPERM)
    );
    if exists && !is_zombie(pid) {
        Daemon::Running(pid)
    } else {
        Daemon::Dead(pid)
    }
}

/// A process that exited but was not reaped yet still answers `kill(pid, 0)`.
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        // The state follows the parenthesised command name, which may contain anything.
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
    })
}

/// `cachectl info`.
pub fn info(cache: &Cache, out: &mut Out) -> anyhow::Result<Status> {
    let i = cache.info();
    let stats = cache.stats();
    // Live items only (a sample): dead space awaiting eviction would inflate it.
    let avg_item = cache.sampled_item_size();
    let (req, done, snap_time, snap_bytes) = cache.snapshot_status();
    let huge = cache.huge_page_bytes();
    let backing = larder::Backing::of(&i.path).ok();
    let d = daemon(&i);
    let now = fmt::unix_now();
    let state = match (d, i.clean) {
        (Daemon::Running(_), _) => "dirty (a daemon is attached)",
        (_, true) => "clean (the last daemon detached cleanly)",
        (_, false) => "dirty (no clean detach recorded: a daemon died, or none ever ran)",
    };
    if out.json {
        let (pid, running, uptime) = match d {
            Daemon::None => (None, false, None),
            Daemon::Running(p) => (Some(p), true, Some(now.saturating_sub(i.daemon_started))),
            Daemon::Dead(p) => (Some(p), false, None),
        };
        out.json_line(&json!({
            "arena": i.path,
            "arena_size": i.arena_size,
            "layout_version": i.layout_version,
            "segment_size": i.segment_size,
            "segments": i.segments,
            "buckets": i.buckets,
            "index_slots": i.index_slots,
            "planned_item_size": i.planned_item_size,
            "avg_item_size": avg_item,
            "huge_page_bytes": huge,
            "file_system": backing.as_ref().map(|b| b.name().to_string()),
            "in_memory": backing.as_ref().map(|b| matches!(b, larder::Backing::Memory(_))),
            "max_processes": i.max_processes,
            "max_key": i.max_key,
            "max_value": i.max_value,
            "created": i.created,
            "generation": i.generation,
            "clean": i.clean,
            "daemon": {
                "pid": pid,
                "running": running,
                "started": (i.daemon_started != 0).then_some(i.daemon_started),
                "uptime": uptime,
            },
            "snapshot": {
                "requested": req,
                "completed": done,
                "last_time": (snap_time != 0).then_some(snap_time),
                "last_bytes": (snap_time != 0).then_some(snap_bytes),
            },
        }))?;
        return Ok(Status::Done);
    }
    writeln!(out, "arena            {}", i.path.display())?;
    writeln!(
        out,
        "size             {} ({} bytes)",
        fmt::size(i.arena_size),
        i.arena_size
    )?;
    writeln!(out, "layout version   {}", i.layout_version)?;
    writeln!(
        out,
        "segments         {} x {}",
        i.segments,
        fmt::size(i.segment_size)
    )?;
    writeln!(
        out,
        "index            {} buckets, {} slots: sized for items of ~{} bytes",
        i.buckets, i.index_slots, i.planned_item_size
    )?;
    if let Some(avg) = avg_item {
        writeln!(
            out,
            "items average    ~{avg} bytes (live items, a sample of up to 10 000)"
        )?;
        if let Some(hint) = sizing_hint(avg, i.planned_item_size, stats.items) {
            writeln!(out, "                 {hint}")?;
        }
    }
    match &backing {
        Some(b @ larder::Backing::Memory(_)) => {
            writeln!(out, "file system      {} (memory)", b.name())?
        }
        Some(b) => {
            writeln!(out, "file system      {} (NOT in memory)", b.name())?;
            writeln!(
                out,
                "                 {}",
                b.warning(&i.path).unwrap_or_default()
            )?
        }
        None => writeln!(out, "file system      unknown")?,
    }
    match huge {
        Some(h) => writeln!(
            out,
            "huge pages       {} of {} ({:.0} %)",
            fmt::size(h),
            fmt::size(i.arena_size),
            h as f64 * 100.0 / i.arena_size.max(1) as f64
        )?,
        None => writeln!(out, "huge pages       unknown (no /proc/self/smaps)")?,
    }
    writeln!(
        out,
        "limits           key {} bytes, value {} bytes ({}), {} processes",
        i.max_key,
        i.max_value,
        fmt::size(u64::from(i.max_value)),
        i.max_processes
    )?;
    writeln!(out, "created          {}", fmt::timestamp_ago(i.created))?;
    match d {
        Daemon::None => writeln!(out, "daemon           none attached")?,
        Daemon::Running(p) => writeln!(
            out,
            "daemon           pid {p}, up {} (since {})",
            fmt::duration(now.saturating_sub(i.daemon_started)),
            fmt::timestamp(i.daemon_started)
        )?,
        Daemon::Dead(p) => writeln!(
            out,
            "daemon           pid {p} recorded but not running (it died without detaching)"
        )?,
    }
    writeln!(out, "daemon attaches  {}", i.generation)?;
    writeln!(out, "state            {state}")?;
    if snap_time == 0 {
        writeln!(out, "last snapshot    never")?;
    } else {
        writeln!(
            out,
            "last snapshot    {}, {} ({snap_bytes} bytes)",
            fmt::timestamp_ago(snap_time),
            fmt::size(snap_bytes)
        )?;
    }
    writeln!(out, "snapshot reqs    {req} requested, {done} completed")?;
    Ok(Status::Done)
}

/// Advice when the items are far from the size the index was planned for (and there are
/// enough of them to tell).
fn sizing_hint(avg: u64, planned: u64, items: u64) -> Option<String> {
    if items < 1000 || (avg < planned * 2 && avg * 2 > planned) {
        return None;
    }
    let why = if avg > planned {
        "larger than planned: part of the index stays empty, memory the log could use"
    } else {
        "smaller than planned: the index fills before the log and drops items"
    };
    Some(format!(
        "{why}; restart larderd with --avg-item-size {avg} to re-plan (items are carried over)"
    ))
}

/// `cachectl snapshot`.
pub fn snapshot(cache: &Cache, timeout: Duration, out: &mut Out) -> anyhow::Result<Status> {
    let path = cache.path().display().to_string();
    let pid = match daemon(&cache.info()) {
        Daemon::Running(p) => p,
        Daemon::None => bail!(
            "no daemon is attached to {path} — snapshots are written by larderd; start it (`larderd --arena {path}` or `systemctl start larderd`) and retry"
        ),
        Daemon::Dead(p) => bail!(
            "no daemon is attached to {path}: larderd pid {p} is recorded but not running — restart larderd and retry"
        ),
    };
    let n = cache.request_snapshot();
    let start = Instant::now();
    while !cache.snapshot_done(n) {
        if start.elapsed() >= timeout {
            bail!(
                "larderd (pid {pid}) has not finished snapshot request {n} after {} — it may still be writing; check its log (`journalctl -u larderd`), `cachectl info`, or retry with a longer --timeout",
                fmt::duration(timeout.as_secs())
            );
        }
        if daemon(&cache.info()) != Daemon::Running(pid) {
            bail!("larderd (pid {pid}) detached or exited before finishing the snapshot — check its log (`journalctl -u larderd`)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, done, time, bytes) = cache.snapshot_status();
    if out.json {
        out.json_line(&json!({
            "arena": cache.path(),
            "request": n,
            "completed": done,
            "time": time,
            "bytes": bytes,
        }))?;
    } else {
        writeln!(
            out,
            "snapshot written at {}: {} ({bytes} bytes)",
            fmt::timestamp(time),
            fmt::size(bytes)
        )?;
    }
    Ok(Status::Done)
}

/// Per-second rates between two samples.
struct Rates {
    hits: f64,
    misses: f64,
    sets: f64,
    evictions: f64,
    expired: f64,
}

impl Rates {
    fn between(a: &Counters, b: &Counters, secs: f64) -> Rates {
        let r = |x: u64, y: u64| y.saturating_sub(x) as f64 / secs;
        Rates {
            hits: r(a.hits, b.hits),
            misses: r(a.misses, b.misses),
            sets: r(a.sets, b.sets),
            evictions: r(a.evictions, b.evictions),
            expired: r(a.expired, b.expired),
        }
    }

    /// Hit ratio over the interval, if there were lookups.
    fn hit_ratio(&self) -> Option<f64> {
        let n = self.hits + self.misses;
        (n > 0.0).then(|| self.hits / n)
    }
}

/// `cachectl watch`.
pub fn watch(
    cache: &Cache,
    interval: Duration,
    count: Option<u64>,
    out: &mut Out,
) -> anyhow::Result<Status> {
    let screen = !out.json && std::io::stdout().is_terminal();
    let mut prev = cache.stats();
    let mut prev_t = Instant::now();
    let mut prev_procs: HashMap<(u32, u32), Counters> = others(&prev)
        .map(|p| ((p.slot, p.pid), p.counters))
        .collect();
    let mut n = 0u64;
    while count.is_none_or(|c| n < c) {
        std::thread::sleep(interval);
        let s = cache.stats();
        let now = Instant::now();
        let secs = now.duration_since(prev_t).as_secs_f64().max(1e-9);
        let r = Rates::between(&prev.totals, &s.totals, secs);
        n += 1;
        if out.json {
            out.json_line(&json!({
                "time": fmt::unix_now(),
                "interval": secs,
                "items": s.items,
                "bytes_used": s.bytes_used,
                "capacity": s.capacity,
                "processes": others(&s).count(),
                "hits_per_s": r.hits,
                "misses_per_s": r.misses,
                "sets_per_s": r.sets,
                "evictions_per_s": r.evictions,
                "expired_per_s": r.expired,
                "hit_ratio": r.hit_ratio(),
            }))?;
        } else if screen {
            // Home the cursor and clear the screen, then draw the frame.
            write!(out, "\x1b[H\x1b[2J")?;
            writeln!(
                out,
                "larder {} — every {}, {} (Ctrl-C to quit)",
                cache.path().display(),
                fmt_interval(interval),
                fmt::timestamp(fmt::unix_now())
            )?;
            writeln!(
                out,
                "items {}   used {} of {} ({:.1}%)   processes {}",
                s.items,
                fmt::size(s.bytes_used),
                fmt::size(s.capacity),
                pct(s.bytes_used, s.capacity),
                others(&s).count()
            )?;
            writeln!(
                out,
                "hits/s {:.1}   misses/s {:.1}   hit ratio {}   sets/s {:.1}   evictions/s {:.1}   expired/s {:.1}",
                r.hits,
                r.misses,
                r.hit_ratio().map_or("-".into(), |h| format!("{:.1}%", h * 100.0)),
                r.sets,
                r.evictions,
                r.expired
            )?;
            writeln!(out)?;
            writeln!(
                out,
                "{:>8} {:>4} {:>10} {:>10} {:>10} {:>12}",
                "PID", "SLOT", "HITS/S", "MISSES/S", "SETS/S", "EVICTIONS/S"
            )?;
            for p in others(&s) {
                let before = prev_procs
                    .get(&(p.slot, p.pid))
                    .copied()
                    .unwrap_or_default();
                let pr = Rates::between(&before, &p.counters, secs);
                writeln!(
                    out,
                    "{:>8} {:>4} {:>10.1} {:>10.1} {:>10.1} {:>12.1}",
                    p.pid, p.slot, pr.hits, pr.misses, pr.sets, pr.evictions
                )?;
            }
        } else {
            if n == 1 {
                writeln!(
                    out,
                    "{:<20} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12} {:>7}",
                    "time", "items", "used", "hits/s", "misses/s", "sets/s", "evictions/s", "hit%"
                )?;
            }
            writeln!(
                out,
                "{:<20} {:>10} {:>10} {:>10.1} {:>10.1} {:>10.1} {:>12.1} {:>7}",
                fmt::timestamp(fmt::unix_now()),
                s.items,
                fmt::size(s.bytes_used),
                r.hits,
                r.misses,
                r.sets,
                r.evictions,
                r.hit_ratio()
                    .map_or("-".into(), |h| format!("{:.1}", h * 100.0))
            )?;
        }
        out.flush()?;
        prev_procs = others(&s).map(|p| ((p.slot, p.pid), p.counters)).collect();
        prev = s;
        prev_t = now;
    }
    Ok(Status::Done)
}

fn fmt_interval(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
