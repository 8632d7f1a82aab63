//! `larderd`: creates the arena, keeps it healthy while clients come and go, and leaves it
//! in place for a warm restart.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use larder::{Cache, Config, Error};

mod units;

/// The larder daemon: owns one shared-memory cache arena on this host.
///
/// With no arguments it creates (or re-attaches to) a 64 MiB arena at the default path and
/// prints where it is; clients find the same path with `larder::default_arena_path()`.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// Arena file [default: $LARDER_ARENA, /run/larder/arena if it exists,
    /// $XDG_RUNTIME_DIR/larder/arena, or /dev/shm/larder-$UID/arena]
    #[arg(long, env = "LARDER_ARENA")]
    arena: Option<PathBuf>,
    /// Arena size, with units (64MiB, 1GiB, 512M, 1048576)
    #[arg(long, env = "LARDER_SIZE", default_value = "64MiB", value_parser = units::parse_size)]
    size: u64,
    /// Longest key accepted, in bytes (1..=255)
    #[arg(long, env = "LARDER_MAX_KEY", default_value_t = 250)]
    max_key: u32,
    /// Longest value accepted, with units
    #[arg(long, env = "LARDER_MAX_VALUE", default_value = "1MiB", value_parser = units::parse_size)]
    max_value: u64,
    /// How often to sweep expired items and reclaim dead clients (30s, 500ms, 1m)
    #[arg(long, env = "LARDER_SWEEP_INTERVAL", default_value = "1s", value_parser = units::parse_duration)]
    sweep_interval: Duration,
    /// Permission bits of the arena file, in octal
    #[arg(long, env = "LARDER_MODE", default_value = "660", value_parser = units::parse_mode)]
    mode: u32,
}

fn main() -> ExitCode {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
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
    let path = args
        .arena
        .clone()
        .unwrap_or_else(larder::default_arena_path);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o770)
            .create(dir)
            .with_context(|| format!("creating directory {}", dir.display()))?;
    }
    let _lock = take_daemon_lock(&path)?;
    let max_value = u32::try_from(args.max_value).context("--max-value must be below 4 GiB")?;
    let config = Config::new(args.size)
        .max_key_len(args.max_key)
        .max_value_len(max_value)
        .mode(args.mode);
    let cache = attach_or_create(&path, &config)?;
    cache.mark_daemon_attached(std::process::id());
    let reaped = cache.reclaim_dead_clients()?;
    let info = cache.info();
    tracing::info!(arena = %path.display(), size = info.arena_size, segments = info.segments, generation = info.generation, reaped, "larderd ready");
    println!(
        "larderd: arena {} ({} bytes), pid {}",
        path.display(),
        info.arena_size,
        std::process::id()
    );
    let _ = std::io::stdout().flush();
    notify("READY=1");

    let signals = Signals::block()?;
    let mut next_sweep = Instant::now();
    loop {
        let now = Instant::now();
        if now >= next_sweep {
            let r = cache.sweep_expired(64)?;
            let reaped = cache.reclaim_dead_clients()?;
            if r.freed > 0 || reaped > 0 {
                tracing::debug!(
                    segments = r.segments,
                    freed = r.freed,
                    reaped,
                    "maintenance"
                );
            }
            next_sweep = now + args.sweep_interval;
        }
        if let Some(sig) = signals.wait(next_sweep.saturating_duration_since(Instant::now()))? {
            tracing::info!(signal = sig, "stopping");
            notify("STOPPING=1");
            break;
        }
    }
    cache.mark_daemon_detached();
    tracing::info!(arena = %path.display(), "arena left in place for a warm restart");
    Ok(())
}

/// Opens a valid arena (warm restart) or creates a new one. An existing file that is not a
/// usable arena is moved aside, never deleted.
fn attach_or_create(path: &Path, config: &Config) -> anyhow::Result<Cache> {
    match Cache::open(path) {
        Ok(c) => {
            let info = c.info();
            if info.arena_size == config.capacity() {
                tracing::info!(clean = info.clean, "re-attached to existing arena");
                return Ok(c);
            }
            drop(c);
            let aside = move_aside(path)?;
            tracing::warn!(old = %aside.display(), "existing arena has another size; moved aside");
        }
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
        Err(
            e @ (Error::NotAnArena { .. } | Error::BadArena { .. } | Error::LayoutVersion { .. }),
        ) => {
            let aside = move_aside(path)?;
            tracing::warn!(error = %e, old = %aside.display(), "unusable arena moved aside; starting empty");
        }
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    }
    Cache::create(path, config).with_context(|| format!("creating arena {}", path.display()))
}

fn move_aside(path: &Path) -> anyhow::Result<PathBuf> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = path.with_extension(format!("bad-{stamp}"));
    std::fs::rename(path, &aside).with_context(|| format!("moving {} aside", path.display()))?;
    Ok(aside)
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

/// SIGTERM, SIGINT (stop) and SIGUSR1 (reserved: snapshot) taken synchronously.
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
        // SAFETY: blocks the signals in this (only) thread so sigtimedwait can take them.
        if unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) } != 0 {
            bail!("blocking signals failed");
        }
        Ok(Signals(set))
    }

    /// Waits up to `d` for a stop signal; returns its number.
    fn wait(&self, d: Duration) -> anyhow::Result<Option<i32>> {
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
        Ok((sig != libc::SIGUSR1).then_some(sig))
    }
}

/// sd_notify: one datagram to $NOTIFY_SOCKET, if systemd (or a test) gave us one.
fn notify(msg: &str) {
    let Some(sock) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sock = PathBuf::from(sock);
    let Ok(s) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    if let Err(e) = s.send_to(msg.as_bytes(), &sock) {
        tracing::warn!(error = %e, socket = %sock.display(), "sd_notify failed");
    }
}
