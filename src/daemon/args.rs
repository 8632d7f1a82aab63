//! larderd's command line: every flag, its `LARDER_*` variable and its default.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::units;

/// The larder daemon: owns one shared-memory cache arena on this host.
///
/// With no arguments it creates (or re-attaches to) a 64 MiB arena at the default path and
/// prints where it is; clients find the same path with `larder::default_arena_path()`.
/// Every flag can also be given as the environment variable shown.
///
/// Signals: SIGTERM/SIGINT save a final snapshot (if one is configured), mark the arena
/// clean and exit 0, leaving the arena for a warm restart; a second one abandons that
/// snapshot. SIGUSR1 saves a snapshot now (so does `cachectl snapshot`).
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
pub(crate) struct Args {
    /// Arena file [default: $LARDER_ARENA, /run/larder/arena if it exists,
    /// $XDG_RUNTIME_DIR/larder/arena, or /dev/shm/larder-$UID/arena]
    #[arg(long, env = "LARDER_ARENA")]
    pub(crate) arena: Option<PathBuf>,
    /// Arena size, with units (64MiB, 1GiB, 512M, 1048576). An existing arena of another
    /// size (or key/value limits, or index sizing) is replaced by a new one and its live
    /// items carried over
    #[arg(long, env = "LARDER_SIZE", default_value = "64MiB", value_parser = units::parse_size)]
    pub(crate) size: u64,
    /// Longest key accepted, in bytes (1..=255)
    #[arg(long, env = "LARDER_MAX_KEY", default_value_t = 250)]
    pub(crate) max_key: u32,
    /// Longest value accepted, with units (at most 16MiB - 1) [default: 1MiB, or the largest
    /// value a segment of a small arena holds: segments are about a sixty-fourth of the arena]
    #[arg(long, env = "LARDER_MAX_VALUE", value_parser = units::parse_size)]
    pub(crate) max_value: Option<u64>,
    /// Segment size, with units: a power of two from 64KiB, at least the largest item
    /// [default: about a sixty-fourth of the arena, 64KiB to 2MiB, and no less than the
    /// largest item needs]. Small segments suit small arenas: two are kept free for
    /// eviction, and eviction frees a whole one at a time
    #[arg(long, env = "LARDER_SEGMENT_SIZE", value_parser = units::parse_size)]
    pub(crate) segment_size: Option<u64>,
    /// Typical item size (8-byte header + key + value), with units: sizes the index. Items
    /// much larger than this leave index slots unused (memory the log could have had); much
    /// smaller ones fill the index first, which then drops items. `cachectl info` shows
    /// what the items average
    #[arg(long, env = "LARDER_AVG_ITEM_SIZE", default_value = "128", value_parser = units::parse_size)]
    pub(crate) avg_item_size: u64,
    /// How often to sweep expired items, reclaim dead clients and write the metrics file
    /// (30s, 500ms, 1m)
    #[arg(long, env = "LARDER_SWEEP_INTERVAL", default_value = "1s", value_parser = units::parse_duration)]
    pub(crate) sweep_interval: Duration,
    /// Permission bits of the arena file, in octal
    #[arg(long, env = "LARDER_MODE", default_value = "660", value_parser = units::parse_mode)]
    pub(crate) mode: u32,
    /// Group of the arena file (name or number); its members can use the cache. The daemon
    /// must be root or a member of that group
    #[arg(long, env = "LARDER_GROUP")]
    pub(crate) group: Option<String>,
    /// Snapshot file: written periodically, on SIGUSR1, on `cachectl snapshot` and at
    /// exit; loaded when a new arena is created [default: $STATE_DIRECTORY/snapshot when
    /// systemd gives a state directory, else none]
    #[arg(long, env = "LARDER_SNAPSHOT")]
    pub(crate) snapshot: Option<PathBuf>,
    /// Never read or write a snapshot (overrides --snapshot and the systemd default)
    #[arg(long, env = "LARDER_NO_SNAPSHOT")]
    pub(crate) no_snapshot: bool,
    /// How often to write a snapshot (5m, 1h); 0 = only on request and at exit
    #[arg(long, env = "LARDER_SNAPSHOT_INTERVAL", default_value = "5m", value_parser = units::parse_duration)]
    pub(crate) snapshot_interval: Duration,
    /// Snapshot write rate limit, so clients are not starved of I/O (256MiB/s, 50M); 0 = no
    /// limit. The final snapshot at exit is not limited
    #[arg(long, env = "LARDER_SNAPSHOT_RATE", default_value = "256MiB/s", value_parser = units::parse_rate)]
    pub(crate) snapshot_rate: u64,
    /// Write metrics in Prometheus text format to this file every sweep interval
    /// (atomically; for node_exporter's textfile collector, name it *.prom)
    #[arg(long, env = "LARDER_METRICS_TEXTFILE")]
    pub(crate) metrics_textfile: Option<PathBuf>,
    /// Back the arena with transparent huge pages (MADV_COLLAPSE, Linux 6.1+; works on
    /// tmpfs mounted huge=never): a GET touches two random lines of the arena, and on 4 KiB
    /// pages each is also a TLB miss. Commits the arena's memory up front
    #[arg(long, env = "LARDER_HUGE_PAGES", default_value_t = true, action = clap::ArgAction::Set)]
    pub(crate) huge_pages: bool,
    /// Room to keep ahead of writers, with units: a thread of the daemon evicts whenever
    /// less than this can be written without evicting, so writers rarely evict inline. The
    /// cache holds that much less data (0 = off; default: two segments, at most 1/32 of the
    /// arena's item log; at most 1/8 of it in any case)
    #[arg(long, env = "LARDER_EVICT_AHEAD", value_parser = units::parse_size)]
    pub(crate) evict_ahead: Option<u64>,
    /// Serve memcached's text protocol on this address too (repeatable; comma-separated in
    /// the variable): host:port for TCP (a bare port is 127.0.0.1:port), a path for a Unix
    /// socket (given the arena's mode). There is no authentication: keep TCP on loopback,
    /// or use a Unix socket and its permissions
    #[arg(long = "listen-memcached", env = "LARDER_LISTEN_MEMCACHED", value_name = "ADDR",
          value_delimiter = ',', value_parser = crate::listen::parse_addr)]
    pub(crate) listen_memcached: Vec<crate::listen::Addr>,
    /// Most connections the listener serves at once; more are refused
    #[arg(long, env = "LARDER_MAX_CONNECTIONS", default_value_t = 1024)]
    pub(crate) max_connections: usize,
    /// Close a listener connection idle this long (0 = never)
    #[arg(long, env = "LARDER_IDLE_TIMEOUT", default_value = "10m", value_parser = units::parse_duration)]
    pub(crate) idle_timeout: Duration,
}
