//! `larderd`: creates the arena, keeps it healthy while clients come and go, saves and
//! restores it with snapshots, and leaves it in place for a warm restart.
//!
//! `args` (the command line), `lifecycle` (attach, create, replace, move aside, restore),
//! `serve` (the loop), `os` (owner, lock, signals); the binary calls [`main`].

mod args;
mod lifecycle;
mod os;
mod serve;

pub(crate) use args::*;
pub(crate) use lifecycle::*;
pub(crate) use os::*;
pub(crate) use serve::*;

use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use larder::Config;

use crate::metrics::DaemonMetrics;
use crate::notify::Notifier;
use crate::snapshot::unix_now;

pub fn main() -> ExitCode {
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
pub(crate) fn init_logging() {
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
pub(crate) struct Exit(u8);
impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}
impl std::error::Error for Exit {}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    // Before any thread exists, so every thread (the snapshot writer) inherits the mask and
    // the signals can only be taken by the main loop.
    let signals = Signals::block()?;
    // A configuration no arena can have is a bad argument (exit 2, like clap's), found
    // before anything is created or locked.
    let max_value = args
        .max_value
        .map(|v| {
            u32::try_from(v)
                .map_err(|_| anyhow::Error::new(Exit(2)).context("--max-value must be below 4 GiB"))
        })
        .transpose()?;
    let config = {
        let c = Config::new(args.size)
            .max_key_len(args.max_key)
            .avg_item_size(args.avg_item_size)
            .mode(args.mode)
            .huge_pages(args.huge_pages);
        let c = match max_value {
            Some(v) => c.max_value_len(v),
            None => c,
        };
        match args.segment_size {
            Some(s) => c.segment_size(s),
            None => c,
        }
    };
    let (segment, segments) = config.check().map_err(|e| {
        anyhow::Error::new(Exit(2)).context(format!(
            "--size {} with these limits is not an arena larderd can make: {e}",
            args.size
        ))
    })?;
    tracing::info!(
        size = args.size,
        segment_size = segment,
        segments,
        max_value = config.value_limit().unwrap_or(0),
        max_key = args.max_key,
        "arena layout"
    );
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
    let (cache, origin) = attach_or_create(&path, &config)?;
    match larder::Backing::of(&path) {
        Ok(b) => match b.warning(&path) {
            Some(w) => tracing::warn!(file_system = b.name(), "{w}"),
            None => tracing::info!(file_system = b.name(), "arena in memory"),
        },
        Err(e) => tracing::warn!(error = %e, "cannot tell which file system the arena is on"),
    }
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
    // `--listen-memcached` addresses, and sockets systemd passed (larderd.socket).
    let listener = crate::listen::start(
        &cache,
        &args.listen_memcached,
        crate::listen::Options {
            max_connections: args.max_connections,
            idle_timeout: args.idle_timeout,
            socket_mode: args.mode,
        },
        unix_now(),
    )?;
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
        listener,
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
    if let Some(l) = d.listener.take() {
        // Requests in flight finish (each is short); then the daemon stops as before.
        l.stop(std::time::Duration::from_secs(5));
    }
    if let Some(e) = evictor {
        e.stop();
    }
    d.stop();
    d.cache.mark_daemon_detached();
    tracing::info!(arena = %path.display(), "arena left in place for a warm restart");
    Ok(())
}
