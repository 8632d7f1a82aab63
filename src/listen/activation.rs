//! Sockets handed over by systemd (socket activation, `systemd/larderd.socket`): the
//! `LISTEN_PID`/`LISTEN_FDS` protocol of sd_listen_fds(3). The listening sockets are
//! descriptors 3 .. 3 + LISTEN_FDS, already bound (by systemd, with the unit's address,
//! mode and group), and served as if `--listen-memcached` had bound them — except that a
//! Unix socket file is systemd's to remove, not larderd's.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use anyhow::{bail, Context};
use nix::sys::socket::{
    getsockname, getsockopt, sockopt, AddressFamily, SockaddrLike, SockaddrStorage,
};

use super::{Addr, Bound};

/// The first descriptor sd_listen_fds passes.
const FIRST: RawFd = 3;

/// The sockets systemd passed this process (none when it passed none). The variables are
/// removed so that nothing larderd starts takes them for its own.
pub(super) fn inherited() -> anyhow::Result<Vec<(Addr, Bound)>> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    for v in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(v);
    }
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(Vec::new());
    };
    // For another process (the variables leaked through a parent): not ours.
    if pid.parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(Vec::new());
    }
    let n: RawFd = fds
        .parse()
        .ok()
        .filter(|&n| (0..=64).contains(&n))
        .with_context(|| format!("LISTEN_FDS={fds:?} is not a count of sockets"))?;
    (FIRST..FIRST + n).map(take).collect()
}

fn take(fd: RawFd) -> anyhow::Result<(Addr, Bound)> {
    // SAFETY: sd_listen_fds's protocol gives this process descriptors 3.. for its own; we
    // take each exactly once.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let listening = getsockopt(&owned, sockopt::AcceptConn)
        .with_context(|| format!("descriptor {fd} from systemd is not a socket"))?;
    if !listening {
        bail!("descriptor {fd} from systemd is not a listening stream socket (ListenStream=)");
    }
    // Close it in whatever larderd executes (the CLOEXEC systemd may not have set).
    nix::fcntl::fcntl(
        &owned,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .with_context(|| format!("descriptor {fd} from systemd"))?;
    let name: SockaddrStorage = getsockname(fd).with_context(|| format!("descriptor {fd}"))?;
    Ok(match name.family() {
        Some(AddressFamily::Inet | AddressFamily::Inet6) => {
            let l = std::net::TcpListener::from(owned);
            (Addr::Tcp(l.local_addr()?), Bound::Tcp(l))
        }
        Some(AddressFamily::Unix) => {
            let l = std::os::unix::net::UnixListener::from(owned);
            let path = l
                .local_addr()?
                .as_pathname()
                .map(|p| p.to_owned())
                .unwrap_or_default();
            (Addr::Unix(path), Bound::Unix(l))
        }
        other => bail!("descriptor {fd} from systemd is a {other:?} socket, not TCP or Unix"),
    })
}
