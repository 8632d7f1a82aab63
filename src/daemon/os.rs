//! What larderd asks of the operating system: the arena's owner and group, the one-daemon
//! lock, and the signals the main loop takes synchronously.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use std::os::fd::AsFd;

use anyhow::Context;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::*;

/// The arena file gets exactly the configured mode (whatever the umask, and also when it
/// existed) and, with `--group`, that group. The client crate creates the file with the
/// mode; the group is set here by path, right after creation and before READY=1.
pub(crate) fn set_owner(path: &Path, mode: u32, gid: Option<u32>) -> anyhow::Result<()> {
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
pub(crate) fn lookup_group(name: &str) -> anyhow::Result<u32> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    if name.contains('\0') {
        return Err(anyhow::Error::new(Exit(2)).context(format!("bad group name {name:?}")));
    }
    match nix::unistd::Group::from_name(name)
        .with_context(|| format!("looking up group {name:?}"))?
    {
        Some(g) => Ok(g.gid.as_raw()),
        None => Err(anyhow::Error::new(Exit(2)).context(format!(
            "--group {name:?}: no such group (create it, e.g. with systemd-sysusers)"
        ))),
    }
}

/// One daemon per arena: an exclusive flock on `<arena>.lock`, holding our pid, for as
/// long as the returned guard lives.
pub(crate) fn take_daemon_lock(arena: &Path) -> anyhow::Result<Flock<std::fs::File>> {
    use std::io::{Read, Seek};
    let lock_path = arena.with_extension("lock");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o640)
        .open(&lock_path)
        .with_context(|| format!("opening lock file {}", lock_path.display()))?;
    let mut f = match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
        Ok(locked) => locked,
        Err((mut f, Errno::EWOULDBLOCK)) => {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(anyhow::Error::new(Exit(2))).context(format!(
                "another larderd (pid {}) already serves {}",
                if holder.is_empty() { "unknown" } else { holder },
                arena.display()
            ));
        }
        Err((_, e)) => return Err(e).with_context(|| format!("locking {}", lock_path.display())),
    };
    f.set_len(0)?;
    f.rewind()?;
    writeln!(f, "{}", std::process::id())?;
    Ok(f)
}

/// A signal the main loop acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sig {
    /// SIGTERM or SIGINT.
    Stop(i32),
    /// SIGUSR1.
    Snapshot,
}

/// SIGTERM, SIGINT (stop) and SIGUSR1 (snapshot), blocked and taken synchronously from a
/// signalfd by the main loop.
pub(crate) struct Signals(SignalFd);

impl Signals {
    /// Blocks the signals in this thread — call it before any other thread exists, so that
    /// every thread inherits the mask and only the main loop takes them — and opens the
    /// signalfd that delivers them.
    pub(crate) fn block() -> anyhow::Result<Signals> {
        let mut set = SigSet::empty();
        for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGUSR1] {
            set.add(s);
        }
        set.thread_block().context("blocking signals")?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .context("opening a signalfd")?;
        Ok(Signals(fd))
    }

    /// Waits up to `d` for one of our signals.
    pub(crate) fn wait(&self, d: Duration) -> anyhow::Result<Option<Sig>> {
        let ms = u16::try_from(d.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(0) | Err(Errno::EINTR) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(e).context("waiting for signals"),
        }
        let Some(info) = self.0.read_signal().context("reading the signalfd")? else {
            return Ok(None);
        };
        let sig = info.ssi_signo as i32;
        Ok(Some(if sig == libc::SIGUSR1 {
            Sig::Snapshot
        } else {
            Sig::Stop(sig)
        }))
    }
}
