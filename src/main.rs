//! `larderd`: creates the arena, keeps it healthy while clients come and go, saves and
//! restores it with snapshots, and leaves it in place for a warm restart.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use larder::{Cache, Config, Error};

mod metrics;
mod notify;
mod snapshot;
mod units;

use metrics::DaemonMetrics;
use notify::Notifier;
use snapshot::{unix_now, Job, ReadError};

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
struct Args {
    /// Arena file [default: $LARDER_ARENA, /run/larder/arena if it exists,
    /// $XDG_RUNTIME_DIR/larder/arena, or /dev/shm/larder-$UID/arena]
    #[arg(long, env = "LARDER_ARENA")]
    arena: Option<PathBuf>,
    /// Arena size, with units (64MiB, 1GiB, 512M, 1048576). An existing arena of another
    /// size (or key/value limits, or index sizing) is replaced by a new one and its live
    /// items carried over
    #[arg(long, env = "LARDER_SIZE", default_value = "64MiB", value_parser = units::parse_size)]
    size: u64,
    /// Longest key accepted, in bytes (1..=255)
    #[arg(long, env = "LARDER_MAX_KEY", default_value_t = 250)]
    max_key: u32,
    /// Longest value accepted, with units (at most 16MiB - 1)
    #[arg(long, env = "LARDER_MAX_VALUE", default_value = "1MiB", value_parser = units::parse_size)]
    max_value: u64,
    /// Typical item size (8-byte header + key + value), with units: sizes the index. Items
    /// much larger than this leave index slots unused (memory the log could have had); much
    /// smaller ones fill the index first, which then drops items. `cachectl info` shows
    /// what the items average
    #[arg(long, env = "LARDER_AVG_ITEM_SIZE", default_value = "128", value_parser = units::parse_size)]
    avg_item_size: u64,
    /// How often to sweep expired items, reclaim dead clients and write the metrics file
    /// (30s, 500ms, 1m)
    #[arg(long, env = "LARDER_SWEEP_INTERVAL", default_value = "1s", value_parser = units::parse_duration)]
    sweep_interval: Duration,
    /// Permission bits of the arena file, in octal
    #[arg(long, env = "LARDER_MODE", default_value = "660", value_parser = units::parse_mode)]
    mode: u32,
    /// Group of the arena file (name or number); its members can use the cache. The daemon
    /// must be root or a member of that group
    #[arg(long, env = "LARDER_GROUP")]
    group: Option<String>,
    /// Snapshot file: written periodically, on SIGUSR1, on `cachectl snapshot` and at
    /// exit; loaded when a new arena is created [default: $STATE_DIRECTORY/snapshot when
    /// systemd gives a state directory, else none]
    #[arg(long, env = "LARDER_SNAPSHOT")]
    snapshot: Option<PathBuf>,
    /// Never read or write a snapshot (overrides --snapshot and the systemd default)
    #[arg(long, env = "LARDER_NO_SNAPSHOT")]
    no_snapshot: bool,
    /// How often to write a snapshot (5m, 1h); 0 = only on request and at exit
    #[arg(long, env = "LARDER_SNAPSHOT_INTERVAL", default_value = "5m", value_parser = units::parse_duration)]
    snapshot_interval: Duration,
    /// Snapshot write rate limit, so clients are not starved of I/O (256MiB/s, 50M); 0 = no
    /// limit. The final snapshot at exit is not limited
    #[arg(long, env = "LARDER_SNAPSHOT_RATE", default_value = "256MiB/s", value_parser = units::parse_rate)]
    snapshot_rate: u64,
    /// Write metrics in Prometheus text format to this file every sweep interval
    /// (atomically; for node_exporter's textfile collector, name it *.prom)
    #[arg(long, env = "LARDER_METRICS_TEXTFILE")]
    metrics_textfile: Option<PathBuf>,
    /// Back the arena with transparent huge pages (MADV_COLLAPSE, Linux 6.1+; works on
    /// tmpfs mounted huge=never): a GET touches two random lines of the arena, and on 4 KiB
    /// pages each is also a TLB miss. Commits the arena's memory up front
    #[arg(long, env = "LARDER_HUGE_PAGES", default_value_t = true, action = clap::ArgAction::Set)]
    huge_pages: bool,
    /// Room to keep ahead of writers, with units: a thread of the daemon evicts whenever
    /// less than this can be written without evicting, so writers rarely evict inline. The
    /// cache holds that much less data (0 = off; default: two segments, at most 1/32 of the
    /// arena's item log; at most 1/8 of it in any case)
    #[arg(long, env = "LARDER_EVICT_AHEAD", value_parser = units::parse_size)]
    evict_ahead: Option<u64>,
}

/// How often STATUS= is sent to systemd.
const STATUS_EVERY: Duration = Duration::from_secs(10);
/// How often the snapshot request word in the arena header is polled.
const REQUEST_POLL: Duration = Duration::from_millis(100);
/// Segments visited per sweep step.
const SWEEP_SEGMENTS: u32 = 64;

fn main() -> ExitCode {
    init_logging();
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("larderd: {e:#}");
            ExitCode::from(match e.downcast_ref::<Exit>() {
                Some(Exit(code)) => *code,
                None => 1,
            })
        }
    }
}

/// `RUST_LOG`-filtered logs on stderr. Under systemd stderr is the journal
/// (`$JOURNAL_STREAM` is set): no colours and no timestamps, the journal adds its own.
fn init_logging() {
    use std::io::IsTerminal;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(!journald && std::io::stderr().is_terminal());
    if journald {
        b.without_time().with_target(false).init();
    } else {
        b.init();
    }
}

/// An error that carries its own exit code.
#[derive(Debug)]
struct Exit(u8);
impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}
impl std::error::Error for Exit {}

fn run(args: Args) -> anyhow::Result<()> {
    // Before any thread exists, so every thread (the snapshot writer) inherits the mask and
    // the signals can only be taken by the main loop.
    let signals = Signals::block()?;
    let notifier = Notifier::from_env();
    let gid = args.group.as_deref().map(lookup_group).transpose()?;
    let path = args
        .arena
        .clone()
        .unwrap_or_else(larder::default_arena_path);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let existed = dir.exists();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o770)
            .create(dir)
            .with_context(|| format!("creating directory {}", dir.display()))?;
        if let (false, Some(gid)) = (existed, gid) {
            std::os::unix::fs::chown(dir, None, Some(gid))
                .with_context(|| format!("giving directory {} group {gid}", dir.display()))?;
        }
    }
    let _lock = take_daemon_lock(&path)?;
    let max_value = u32::try_from(args.max_value).context("--max-value must be below 4 GiB")?;
    let config = Config::new(args.size)
        .max_key_len(args.max_key)
        .max_value_len(max_value)
        .avg_item_size(args.avg_item_size)
        .mode(args.mode)
        .huge_pages(args.huge_pages);
    let (cache, origin) = attach_or_create(&path, &config)?;
    set_owner(&path, args.mode, gid)?;
    cache.mark_daemon_attached(std::process::id());
    let reaped = cache.reclaim_dead_clients()?;
    let snapshot_path = if args.no_snapshot {
        None
    } else {
        args.snapshot.clone().or_else(|| {
            let dirs = std::env::var_os("STATE_DIRECTORY")?;
            let first = std::env::split_paths(&dirs).next()?;
            Some(first.join("snapshot"))
        })
    };
    if let Some(dir) = snapshot_path.as_deref().and_then(Path::parent) {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            if let Err(e) = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)
            {
                tracing::warn!(error = %e, dir = %dir.display(), "cannot create the snapshot directory; snapshots will fail");
            }
        }
    }
    if let (Origin::Created, Some(snap)) = (origin, &snapshot_path) {
        if snap.exists() {
            load_snapshot(&cache, snap, &notifier);
        }
    }
    let info = cache.info();
    tracing::info!(arena = %path.display(), size = info.arena_size, segments = info.segments, generation = info.generation, reaped, snapshot = ?snapshot_path, "larderd ready");
    println!(
        "larderd: arena {} ({} bytes), pid {}",
        path.display(),
        info.arena_size,
        std::process::id()
    );
    let _ = std::io::stdout().flush();
    notifier.send("READY=1");
    if args.huge_pages {
        collapse_in_background(&cache);
    }
    let log = u64::from(info.segments) * info.segment_size;
    let ahead = match args.evict_ahead {
        None => (2 * info.segment_size).min(log / 32),
        Some(n) if n > log / 8 => {
            tracing::warn!(
                asked = n,
                used = log / 8,
                "--evict-ahead is capped at 1/8 of the item log"
            );
            log / 8
        }
        Some(n) => n,
    };
    let evictor = match ahead {
        0 => None,
        target => match cache.spawn_evictor(target) {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the evict-ahead thread; writers evict inline");
                None
            }
        },
    };

    let mut d = Daemon {
        metrics: DaemonMetrics {
            started: unix_now(),
            reaped_processes: u64::from(reaped),
            ..DaemonMetrics::default()
        },
        args,
        cache,
        snapshot: snapshot_path,
        notifier,
        signals,
        job: None,
        want: None,
        failed_req: 0,
        warned_req: 0,
        next_interval: None,
    };
    let sig = d.serve()?;
    tracing::info!(signal = sig, "stopping");
    if let Some(e) = evictor {
        e.stop();
    }
    d.stop();
    d.cache.mark_daemon_detached();
    tracing::info!(arena = %path.display(), "arena left in place for a warm restart");
    Ok(())
}

/// Backs the arena with huge pages from a background thread: a new arena mostly is already
/// (creation collapses it), one re-attached after a restart or replaced may not be, and
/// collapsing it takes 1–2 ms per 2 MiB that serving should not wait for.
fn collapse_in_background(cache: &Cache) {
    let cache = cache.clone();
    let spawned = std::thread::Builder::new()
        .name("huge-pages".into())
        .spawn(move || {
            let r = cache.collapse_huge_pages();
            let (huge, total) = (r.huge_bytes >> 20, r.total_bytes >> 20);
            match r.error {
                None => tracing::info!(huge_mib = huge, arena_mib = total, "arena backed by huge pages"),
                Some(e) if huge > 0 => tracing::info!(huge_mib = huge, arena_mib = total, refused = %e, "arena partly backed by huge pages"),
                Some(e) => tracing::warn!(error = %e, "no huge pages for the arena; it works on 4 KiB pages, GETs are slower"),
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the huge-page thread");
    }
}

/// How the arena came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// A valid arena was there: warm restart.
    Attached,
    /// New and empty: a snapshot may fill it.
    Created,
    /// New, filled from the arena it replaced.
    Replaced,
}

/// Opens a valid arena (warm restart) or creates a new one. An existing file that is not a
/// usable arena is moved aside, never deleted; a valid arena of another size or limits is
/// replaced by a new one that gets its live items.
fn attach_or_create(path: &Path, config: &Config) -> anyhow::Result<(Cache, Origin)> {
    match Cache::open(path) {
        Ok(old) => {
            let info = old.info();
            if config.fits(&info)? {
                tracing::info!(clean = info.clean, "re-attached to existing arena");
                return Ok((old, Origin::Attached));
            }
            return replace(path, config, old).map(|c| (c, Origin::Replaced));
        }
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
        Err(Error::LayoutVersion {
            found, expected, ..
        }) => {
            let aside = move_aside(path, &format!("layout{found}"))?;
            tracing::warn!(
                found,
                expected,
                old = %aside.display(),
                "the arena was made by another larder version (another layout): moved aside; starting from the snapshot (snapshots do not depend on the layout) or empty; processes still using the old library keep the old file until they restart"
            );
        }
        Err(e @ (Error::NotAnArena { .. } | Error::BadArena { .. })) => {
            let aside = move_aside(path, "bad")?;
            tracing::warn!(error = %e, old = %aside.display(), "unusable arena moved aside; starting from the snapshot or empty");
        }
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    }
    let c = Cache::create(path, config)
        .with_context(|| format!("creating arena {}", path.display()))?;
    Ok((c, Origin::Created))
}

/// Moves `old` aside, creates the new arena at `path`, marks the old one retired (attached
/// clients re-open the path) and copies its live items over. Items written to the new
/// arena meanwhile win: copies are stored with `add`.
fn replace(path: &Path, config: &Config, old: Cache) -> anyhow::Result<Cache> {
    let info = old.info();
    let (max_key, max_value) = old.limits();
    let aside = move_aside(path, "replaced")?;
    let new = Cache::create(path, config)
        .with_context(|| format!("creating arena {}", path.display()))?;
    old.mark_retired();
    let t0 = Instant::now();
    let (mut carried, mut refused) = (0u64, 0u64);
    for e in old.entries() {
        let ttl = match e.ttl {
            Some(t) if t.is_zero() => continue,
            t => t,
        };
        let added = match (ttl, e.grace) {
            (Some(t), Some(g)) => new.add_with(
                &e.key,
                &e.value,
                &larder::SetOptions::new().ttl(t).stale_grace(g),
            ),
            _ => new.add(&e.key, &e.value, ttl),
        };
        match added {
            Ok(_) => carried += 1,
            Err(_) => refused += 1,
        }
    }
    tracing::warn!(
        old = %aside.display(),
        old_size = info.arena_size,
        old_max_key = max_key,
        old_max_value = max_value,
        old_buckets = info.buckets,
        new_size = config.capacity(),
        new_buckets = new.info().buckets,
        carried,
        refused,
        ms = t0.elapsed().as_millis() as u64,
        "the existing arena has another size, limits or index sizing: replaced it, carried its live items over, marked it retired and left it aside (remove it once no client maps it)"
    );
    Ok(new)
}

/// Loads `snap` into the new arena; a damaged snapshot is moved aside and the cache
/// starts empty. Never fails the start.
fn load_snapshot(cache: &Cache, snap: &Path, notifier: &Notifier) {
    tracing::info!(snapshot = %snap.display(), "loading snapshot");
    notifier.send("STATUS=loading snapshot");
    let mut progress = |done: u64, total: u64| {
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        tracing::info!(done, total, "loading snapshot: {pct}%");
        // Loading a large snapshot may outlast systemd's start timeout: it is progress.
        notifier.send(&format!(
            "EXTEND_TIMEOUT_USEC=30000000\nSTATUS=loading snapshot: {done} of {total} items"
        ));
    };
    match snapshot::load(cache, snap, &mut progress) {
        Ok(r) => tracing::info!(
            items = r.items,
            loaded = r.loaded,
            expired = r.expired,
            refused = r.rejected,
            age_s = unix_now().saturating_sub(r.created),
            ms = r.elapsed.as_millis() as u64,
            "snapshot loaded"
        ),
        Err(ReadError::Corrupt(why)) => {
            // The whole file is checked before anything is stored; flush anyway in case
            // it changed between the check and the load.
            let _ = cache.flush();
            match move_aside(snap, "corrupt") {
                Ok(aside) => tracing::warn!(
                    snapshot = %snap.display(),
                    moved_to = %aside.display(),
                    reason = %why,
                    "snapshot is damaged: moved it aside, starting with an empty cache"
                ),
                Err(e) => tracing::error!(
                    snapshot = %snap.display(),
                    reason = %why,
                    error = %format!("{e:#}"),
                    "snapshot is damaged and could not be moved aside; starting with an empty cache"
                ),
            }
        }
        Err(ReadError::Io(e)) => {
            // Keep it from being replaced by the next snapshot of a cache that starts empty.
            let aside = move_aside(snap, "unreadable").map_err(|e| format!("{e:#}"));
            tracing::error!(
                snapshot = %snap.display(),
                error = %e,
                moved_to = ?aside,
                "cannot read the snapshot; starting with an empty cache"
            );
        }
    }
}

/// Renames `path` to `<path>.<tag>-<unix time>` (never over an existing file).
fn move_aside(path: &Path, tag: &str) -> anyhow::Result<PathBuf> {
    let name = path
        .file_name()
        .map_or_else(|| "arena".into(), |n| n.to_string_lossy());
    let stamp = unix_now();
    let mut aside = path.with_file_name(format!("{name}.{tag}-{stamp}"));
    let mut n = 1;
    while aside.symlink_metadata().is_ok() {
        aside = path.with_file_name(format!("{name}.{tag}-{stamp}-{n}"));
        n += 1;
    }
    std::fs::rename(path, &aside).with_context(|| format!("moving {} aside", path.display()))?;
    Ok(aside)
}

/// The arena file gets exactly the configured mode (whatever the umask, and also when it
/// existed) and, with `--group`, that group. The client crate creates the file with the
/// mode; the group is set here by path, right after creation and before READY=1.
fn set_owner(path: &Path, mode: u32, gid: Option<u32>) -> anyhow::Result<()> {
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid))
            .with_context(|| format!("giving arena {} group {gid}", path.display()))?;
    }
    let meta = std::fs::metadata(path).with_context(|| format!("inspecting {}", path.display()))?;
    if meta.permissions().mode() & 0o7777 != mode {
        if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
            tracing::warn!(error = %e, mode = format!("{mode:o}"), "cannot set the arena's mode");
        }
    }
    Ok(())
}

/// A group name (or number) to its id; an unknown group is a bad argument (exit 2).
fn lookup_group(name: &str) -> anyhow::Result<u32> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    let cname = std::ffi::CString::new(name)
        .map_err(|_| anyhow::Error::new(Exit(2)).context(format!("bad group name {name:?}")))?;
    let mut buf = vec![0 as libc::c_char; 4096];
    loop {
        // SAFETY: group is plain data that getgrnam_r fills in.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call: the name is NUL-terminated, buf has
        // buf.len() bytes, grp and result are ours.
        let r = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut grp,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if r == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if r != 0 {
            return Err(std::io::Error::from_raw_os_error(r))
                .with_context(|| format!("looking up group {name:?}"));
        }
        if result.is_null() {
            return Err(anyhow::Error::new(Exit(2)).context(format!(
                "--group {name:?}: no such group (create it, e.g. with systemd-sysusers)"
            )));
        }
        return Ok(grp.gr_gid);
    }
}

/// The running daemon's state.
struct Daemon {
    args: Args,
    cache: Cache,
    snapshot: Option<PathBuf>,
    notifier: Notifier,
    signals: Signals,
    metrics: DaemonMetrics,
    /// The snapshot being written, if any.
    job: Option<Job>,
    /// A snapshot is wanted (for this reason) and starts as soon as none is running.
    want: Option<&'static str>,
    /// Requests up to this one failed; they are not retried (a new request is).
    failed_req: u64,
    /// Requests up to this one were answered with "no snapshot configured" in the log.
    warned_req: u64,
    next_interval: Option<Instant>,
}

impl Daemon {
    /// Runs until a stop signal; returns its number.
    fn serve(&mut self) -> anyhow::Result<i32> {
        let start = Instant::now();
        let watchdog = self.notifier.watchdog_interval();
        let (mut next_sweep, mut next_status, mut next_wd, mut next_poll) =
            (start, start, start, start);
        self.reset_interval(start);
        loop {
            let now = Instant::now();
            if now >= next_sweep {
                self.maintenance()?;
                next_sweep = now + self.args.sweep_interval;
            }
            if let Some(w) = watchdog.filter(|_| now >= next_wd) {
                self.notifier.send("WATCHDOG=1");
                next_wd = now + w;
            }
            if now >= next_status {
                self.send_status();
                next_status = now + STATUS_EVERY;
            }
            self.poll_job();
            if now >= next_poll {
                self.poll_requests();
                next_poll = now + REQUEST_POLL;
            }
            if self.next_interval.is_some_and(|t| now >= t) {
                self.want.get_or_insert("interval");
                self.next_interval = None;
            }
            self.start_wanted();

            let mut deadline = next_sweep.min(next_status).min(next_poll);
            if watchdog.is_some() {
                deadline = deadline.min(next_wd);
            }
            if let Some(t) = self.next_interval {
                deadline = deadline.min(t);
            }
            match self
                .signals
                .wait(deadline.saturating_duration_since(Instant::now()))?
            {
                Some(Sig::Stop(s)) => return Ok(s),
                Some(Sig::Snapshot) => self.snapshot_wanted("SIGUSR1"),
                None => {}
            }
        }
    }

    /// Sweep expired items, reap dead clients, write the metrics file.
    fn maintenance(&mut self) -> anyhow::Result<()> {
        let r = self.cache.sweep_expired(SWEEP_SEGMENTS)?;
        let reaped = self.cache.reclaim_dead_clients()?;
        self.metrics.swept_segments += u64::from(r.segments);
        self.metrics.freed_segments += u64::from(r.freed);
        self.metrics.reaped_processes += u64::from(reaped);
        if r.freed > 0 || reaped > 0 {
            tracing::debug!(
                segments = r.segments,
                freed = r.freed,
                reaped,
                "maintenance"
            );
        }
        if let Some(path) = &self.args.metrics_textfile {
            let text = metrics::render(
                &self.cache.stats(),
                &self.cache.info(),
                &self.metrics,
                unix_now(),
            );
            if let Err(e) = metrics::write_atomic(path, &text) {
                tracing::warn!(error = %e, file = %path.display(), "cannot write the metrics file");
            }
        }
        Ok(())
    }

    fn send_status(&self) {
        let s = self.cache.stats();
        let snap = match self.metrics.snapshot_time {
            0 => String::new(),
            t => format!(
                ", last snapshot {} ago",
                human_age(unix_now().saturating_sub(t))
            ),
        };
        self.notifier.send(&format!(
            "STATUS={} items, hit ratio {:.1}%, {} clients{snap}",
            s.items,
            s.totals.hit_ratio() * 100.0,
            s.processes
                .iter()
                .filter(|p| p.pid != std::process::id())
                .count()
        ));
    }

    fn reset_interval(&mut self, from: Instant) {
        let i = self.args.snapshot_interval;
        self.next_interval = (self.snapshot.is_some() && !i.is_zero()).then(|| from + i);
    }

    fn snapshot_wanted(&mut self, reason: &'static str) {
        if self.snapshot.is_some() {
            self.want.get_or_insert(reason);
        } else {
            tracing::warn!(
                trigger = reason,
                "snapshot requested but none is configured (--snapshot)"
            );
        }
    }

    /// `cachectl snapshot` increments the request word; completed requests are acknowledged.
    fn poll_requests(&mut self) {
        let (req, ack, _, _) = self.cache.snapshot_status();
        if req <= ack {
            return;
        }
        if self.snapshot.is_none() {
            if req > self.warned_req {
                tracing::warn!(
                    request = req,
                    "snapshot requested through the arena but none is configured (--snapshot)"
                );
                self.warned_req = req;
            }
            return;
        }
        if req <= self.failed_req || self.job.as_ref().is_some_and(|j| j.req >= req) {
            return;
        }
        self.want.get_or_insert("request");
    }

    fn start_wanted(&mut self) {
        let (Some(reason), None, Some(path)) = (self.want, &self.job, &self.snapshot) else {
            return;
        };
        self.want = None;
        let req = self.cache.snapshot_status().0;
        match Job::spawn(&self.cache, path, self.args.snapshot_rate, req, reason) {
            Ok(job) => {
                tracing::debug!(trigger = reason, "snapshot started");
                self.job = Some(job);
            }
            Err(e) => {
                self.failed(req, reason, &e);
            }
        }
    }

    fn poll_job(&mut self) {
        if self.job.as_ref().is_some_and(|j| j.is_finished()) {
            let job = self.job.take().expect("checked");
            self.finish(job);
        }
    }

    fn finish(&mut self, job: Job) {
        let (req, reason) = (job.req, job.reason);
        match job.join() {
            Ok(r) => {
                self.cache.ack_snapshot(req, r.created, r.bytes);
                let m = &mut self.metrics;
                m.snapshots += 1;
                m.snapshot_time = r.created;
                m.snapshot_bytes = r.bytes;
                m.snapshot_items = r.items;
                m.snapshot_seconds = r.elapsed.as_secs_f64();
                tracing::info!(
                    trigger = reason,
                    items = r.items,
                    bytes = r.bytes,
                    ms = r.elapsed.as_millis() as u64,
                    "snapshot written"
                );
            }
            Err(e) => self.failed(req, reason, &e),
        }
        self.reset_interval(Instant::now());
    }

    fn failed(&mut self, req: u64, reason: &str, e: &anyhow::Error) {
        self.metrics.snapshot_failures += 1;
        self.failed_req = self.failed_req.max(req);
        tracing::error!(trigger = reason, error = %format!("{e:#}"), "snapshot failed; the previous one (if any) is intact");
    }

    /// Finishes a running snapshot without rate limit, then writes the final one.
    fn stop(&mut self) {
        self.notifier.send("STOPPING=1");
        let Some(path) = self.snapshot.clone() else {
            return;
        };
        if let Some(job) = self.job.take() {
            job.hurry();
            self.wait_for(&job);
            self.finish(job);
        }
        self.notifier.send("STATUS=writing the final snapshot");
        let req = self.cache.snapshot_status().0;
        match Job::spawn(&self.cache, &path, 0, req, "exit") {
            Ok(job) => {
                self.wait_for(&job);
                self.finish(job);
            }
            Err(e) => self.failed(req, "exit", &e),
        }
    }

    /// Waits for a snapshot while keeping the watchdog fed and systemd's stop timeout
    /// extended; a second stop signal abandons it.
    fn wait_for(&self, job: &Job) {
        let mut next_ping = Instant::now();
        let mut aborted = false;
        while !job.is_finished() {
            if Instant::now() >= next_ping {
                self.notifier
                    .send("WATCHDOG=1\nEXTEND_TIMEOUT_USEC=30000000");
                next_ping = Instant::now() + Duration::from_secs(5);
            }
            match self.signals.wait(Duration::from_millis(50)) {
                Ok(Some(Sig::Stop(s))) if !aborted => {
                    tracing::warn!(
                        signal = s,
                        "second stop signal: abandoning the snapshot (the previous one stays)"
                    );
                    job.abort();
                    aborted = true;
                }
                _ => {}
            }
        }
    }
}

fn human_age(s: u64) -> String {
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        _ => format!("{}h", s / 3600),
    }
}

/// One daemon per arena: an exclusive flock on `<arena>.lock`, holding our pid.
fn take_daemon_lock(arena: &Path) -> anyhow::Result<std::fs::File> {
    use std::io::{Read, Seek};
    use std::os::fd::AsRawFd;
    let lock_path = arena.with_extension("lock");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o640)
        .open(&lock_path)
        .with_context(|| format!("opening lock file {}", lock_path.display()))?;
    // SAFETY: flock on a descriptor we own; no memory is passed.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let mut holder = String::new();
        let _ = f.read_to_string(&mut holder);
        let holder = holder.trim();
        return Err(anyhow::Error::new(Exit(2))).context(format!(
            "another larderd (pid {}) already serves {}",
            if holder.is_empty() { "unknown" } else { holder },
            arena.display()
        ));
    }
    f.set_len(0)?;
    f.rewind()?;
    writeln!(f, "{}", std::process::id())?;
    Ok(f)
}

/// A signal the main loop acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sig {
    /// SIGTERM or SIGINT.
    Stop(i32),
    /// SIGUSR1.
    Snapshot,
}

/// SIGTERM, SIGINT (stop) and SIGUSR1 (snapshot) taken synchronously.
struct Signals(libc::sigset_t);

impl Signals {
    fn block() -> anyhow::Result<Signals> {
        // SAFETY: sigset_t is plain data; the calls below initialise and fill it.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: set points at a sigset_t we own; the signal numbers are valid.
        unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGUSR1);
        }
        // SAFETY: blocks the signals in this thread (and the threads it starts later) so
        // sigtimedwait can take them.
        if unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) } != 0 {
            bail!("blocking signals failed");
        }
        Ok(Signals(set))
    }

    /// Waits up to `d` for one of our signals.
    fn wait(&self, d: Duration) -> anyhow::Result<Option<Sig>> {
        let ts = libc::timespec {
            tv_sec: d.as_secs() as libc::time_t,
            tv_nsec: d.subsec_nanos() as libc::c_long,
        };
        // SAFETY: the set was initialised in block(); info may be null; ts is valid.
        let sig = unsafe { libc::sigtimedwait(&self.0, std::ptr::null_mut(), &ts) };
        if sig < 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
                _ => Err(e).context("waiting for signals"),
            };
        }
        Ok(Some(if sig == libc::SIGUSR1 {
            Sig::Snapshot
        } else {
            Sig::Stop(sig)
        }))
    }
}
