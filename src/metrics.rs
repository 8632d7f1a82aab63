//! Metrics in the Prometheus text exposition format, written to a file for node_exporter's
//! textfile collector (`--collector.textfile.directory`; it reads `*.prom`).
//!
//! Every sample carries an `arena` label so several `larderd@` instances can write into one
//! collector directory without clashing. The names are those of `cachectl stats
//! --format prometheus`, plus the daemon's own (snapshots, sweeps, reaping).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use larder::{ArenaInfo, Counters, Stats};

/// What the daemon itself knows, beside the arena's counters.
#[derive(Debug, Default, Clone)]
pub struct DaemonMetrics {
    pub started: u64,
    pub snapshots: u64,
    pub snapshot_failures: u64,
    /// Unix seconds of the last good snapshot, 0 if none.
    pub snapshot_time: u64,
    pub snapshot_bytes: u64,
    pub snapshot_items: u64,
    pub snapshot_seconds: f64,
    pub swept_segments: u64,
    pub freed_segments: u64,
    pub reaped_processes: u64,
    /// The memcached listener's counters, when it runs.
    pub listener: Option<ListenerMetrics>,
}

/// A copy of the listener's counters (`listen::exec::ListenerStats`) at one instant.
#[derive(Debug, Default, Clone, Copy)]
pub struct ListenerMetrics {
    pub connections: u64,
    pub connections_total: u64,
    pub rejected_connections: u64,
    pub cmd_get: u64,
    pub cmd_set: u64,
    pub cmd_touch: u64,
    pub cmd_flush: u64,
    pub protocol_errors: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

impl ListenerMetrics {
    /// Each counter as (Prometheus name, type, help, value): the metrics file and `cachectl
    /// stats --listener` print the same names.
    pub fn samples(&self) -> [(&'static str, &'static str, &'static str, u64); 10] {
        let l = self;
        [
            (
                "larder_listener_connections",
                "gauge",
                "Connections the memcached listener serves now.",
                l.connections,
            ),
            (
                "larder_listener_connections_total",
                "counter",
                "Connections the memcached listener accepted.",
                l.connections_total,
            ),
            (
                "larder_listener_rejected_connections_total",
                "counter",
                "Connections refused over --max-connections.",
                l.rejected_connections,
            ),
            (
                "larder_listener_get_keys_total",
                "counter",
                "Keys asked for by get/gets over the listener.",
                l.cmd_get,
            ),
            (
                "larder_listener_set_total",
                "counter",
                "Storage commands over the listener.",
                l.cmd_set,
            ),
            (
                "larder_listener_touch_total",
                "counter",
                "touch/gat keys over the listener.",
                l.cmd_touch,
            ),
            (
                "larder_listener_flush_total",
                "counter",
                "flush_all commands over the listener.",
                l.cmd_flush,
            ),
            (
                "larder_listener_protocol_errors_total",
                "counter",
                "Requests the listener refused (ERROR, CLIENT_ERROR).",
                l.protocol_errors,
            ),
            (
                "larder_listener_read_bytes_total",
                "counter",
                "Bytes the listener read from clients.",
                l.bytes_read,
            ),
            (
                "larder_listener_written_bytes_total",
                "counter",
                "Bytes the listener wrote to clients.",
                l.bytes_written,
            ),
        ]
    }

    /// The counters from the listener's reply to memcached's `stats` (its `STAT name value`
    /// lines); `None` if a counter is missing.
    pub fn from_stats_reply(reply: &str) -> Option<ListenerMetrics> {
        let stat = |name: &str| {
            reply.lines().find_map(|l| {
                let mut t = l.trim_end().splitn(3, ' ');
                (t.next() == Some("STAT") && t.next() == Some(name))
                    .then(|| t.next()?.parse::<u64>().ok())
                    .flatten()
            })
        };
        Some(ListenerMetrics {
            connections: stat("curr_connections")?,
            connections_total: stat("total_connections")?,
            rejected_connections: stat("rejected_connections")?,
            cmd_get: stat("cmd_get")?,
            cmd_set: stat("cmd_set")?,
            cmd_touch: stat("cmd_touch")?,
            cmd_flush: stat("cmd_flush")?,
            protocol_errors: stat("protocol_errors")?,
            bytes_read: stat("bytes_read")?,
            bytes_written: stat("bytes_written")?,
        })
    }
}

/// Renders one complete exposition.
pub fn render(stats: &Stats, info: &ArenaInfo, d: &DaemonMetrics, now: u64) -> String {
    let label = format!("{{arena=\"{}\"}}", escape(&info.path.to_string_lossy()));
    let mut out = String::with_capacity(4096);
    let mut put = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name}{label} {value}");
    };
    if let Some(l) = &d.listener {
        for (name, kind, help, v) in l.samples() {
            put(name, kind, help, v as f64);
        }
    }
    let t = &stats.totals;
    let me = std::process::id();
    let clients = stats.processes.iter().filter(|p| p.pid != me).count();
    let c = "counter";
    let g = "gauge";
    for (name, v, help) in counters(t) {
        put(&format!("larder_{name}_total"), c, help, v as f64);
    }
    put(
        "larder_items",
        g,
        "Items reachable through the index (expired ones not yet swept included).",
        stats.items as f64,
    );
    put(
        "larder_bytes_used",
        g,
        "Bytes of the item log in use.",
        stats.bytes_used as f64,
    );
    put(
        "larder_capacity_bytes",
        g,
        "Bytes the item log can hold.",
        stats.capacity as f64,
    );
    put(
        "larder_arena_size_bytes",
        g,
        "Size of the arena file.",
        stats.arena_size as f64,
    );
    put(
        "larder_segments",
        g,
        "Segments in the arena.",
        f64::from(stats.segments),
    );
    put(
        "larder_free_segments",
        g,
        "Segments that hold nothing.",
        f64::from(stats.free_segments),
    );
    put(
        "larder_processes",
        g,
        "Client processes attached to the arena (the daemon not counted).",
        clients as f64,
    );
    put(
        "larder_hit_ratio",
        g,
        "Hits over lookups since the arena was created.",
        t.hit_ratio(),
    );
    put(
        "larder_generation",
        g,
        "Daemon attaches to this arena so far.",
        info.generation as f64,
    );
    put(
        "larder_daemon_start_time_seconds",
        g,
        "Unix time the daemon started.",
        d.started as f64,
    );
    put(
        "larder_snapshots_total",
        c,
        "Snapshots written.",
        d.snapshots as f64,
    );
    put(
        "larder_snapshot_failures_total",
        c,
        "Snapshots that failed.",
        d.snapshot_failures as f64,
    );
    put(
        "larder_snapshot_last_success_timestamp_seconds",
        g,
        "Unix time of the last good snapshot (0: none yet).",
        d.snapshot_time as f64,
    );
    put(
        "larder_snapshot_last_bytes",
        g,
        "Size of the last good snapshot.",
        d.snapshot_bytes as f64,
    );
    put(
        "larder_snapshot_last_items",
        g,
        "Items in the last good snapshot.",
        d.snapshot_items as f64,
    );
    put(
        "larder_snapshot_last_duration_seconds",
        g,
        "How long the last good snapshot took.",
        d.snapshot_seconds,
    );
    put(
        "larder_sweep_segments_total",
        c,
        "Segments visited by the expiry sweeper.",
        d.swept_segments as f64,
    );
    put(
        "larder_sweep_freed_segments_total",
        c,
        "Segments the expiry sweeper freed.",
        d.freed_segments as f64,
    );
    put(
        "larder_reaped_processes_total",
        c,
        "Dead client processes reaped by the daemon.",
        d.reaped_processes as f64,
    );
    put(
        "larder_metrics_timestamp_seconds",
        g,
        "Unix time this file was written (to detect a stale file).",
        now as f64,
    );
    out
}

/// Label values escape backslash, double quote and newline.
fn escape(s: &str) -> String {
    s.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Replaces `path` with `text` atomically: a reader sees the old file or the new one whole.
/// The temporary name starts with a dot and does not end in `.prom`, so the collector skips it.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let mut f = crate::atomic_file::AtomicFile::create(path, 0o644)?;
    f.file().write_all(text.as_bytes())?;
    f.commit()
}

/// Every counter, with its name (`cachectl stats` text and JSON; `larder_<name>_total` in
/// Prometheus) and its Prometheus help, in display order: the one table both `larderd`'s
/// textfile and `cachectl stats --format prometheus` print from.
pub fn counters(c: &Counters) -> [(&'static str, u64, &'static str); 12] {
    [
        ("hits", c.hits, "Lookups that found a live item."),
        ("misses", c.misses, "Lookups that found nothing."),
        ("sets", c.sets, "Items stored."),
        ("deletes", c.deletes, "Items deleted."),
        ("touches", c.touches, "TTLs changed by touch."),
        (
            "evictions",
            c.evictions,
            "Items dropped by CLOCK eviction of their segment.",
        ),
        (
            "expired",
            c.expired,
            "Expired items unlinked (on read or by the sweeper).",
        ),
        (
            "index_evictions",
            c.index_evictions,
            "Items displaced because their index neighbourhood was full.",
        ),
        ("rejected", c.rejected, "Writes refused for lack of space."),
        (
            "torn_retries",
            c.torn_retries,
            "Reads restarted because a segment was recycled under them.",
        ),
        (
            "corrupt",
            c.corrupt,
            "Damaged slots or items met and cleared.",
        ),
        (
            "reclaimed",
            c.reclaimed,
            "Segments recovered from dead processes.",
        ),
    ]
}
