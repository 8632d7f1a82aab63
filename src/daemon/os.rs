//! What larderd asks of the operating system: the arena's owner and group, the one-daemon
//! lock, and the signals the main loop takes synchronously.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};

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

/// One daemon per arena: an exclusive flock on `<arena>.lock`, holding our pid.
pub(crate) fn take_daemon_lock(arena: &Path) -> anyhow::Result<std::fs::File> {
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
pub(crate) enum Sig {
    /// SIGTERM or SIGINT.
    Stop(i32),
    /// SIGUSR1.
    Snapshot,
}

/// SIGTERM, SIGINT (stop) and SIGUSR1 (snapshot) taken synchronously.
pub(crate) struct Signals(libc::sigset_t);

impl Signals {
    pub(crate) fn block() -> anyhow::Result<Signals> {
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
    pub(crate) fn wait(&self, d: Duration) -> anyhow::Result<Option<Sig>> {
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
