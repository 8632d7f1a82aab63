//! OFD byte-range locks on the arena file: the kernel's record of who is alive
//! (docs/design.md §2.2). Through nix's `fcntl`; the lock description is libc's `flock`,
//! which nix takes as it is.

use std::io;
use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg};

/// A lock of the one byte at `off`.
fn flock(kind: libc::c_short, off: u64) -> libc::flock {
    // SAFETY: flock is a plain C struct for which all-zero is a valid value (a literal would
    // have to name the padding some targets add).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = off as libc::off_t;
    fl.l_len = 1;
    fl
}

/// Tries to write-lock one byte through `fd`'s open file description.
pub(crate) fn try_lock(fd: impl AsFd, off: u64) -> io::Result<bool> {
    match fcntl(fd, FcntlArg::F_OFD_SETLK(&flock(libc::F_WRLCK as _, off))) {
        Ok(_) => Ok(true),
        Err(Errno::EAGAIN | Errno::EACCES) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Releases the byte (a no-op if we do not hold it).
pub(crate) fn unlock(fd: impl AsFd, off: u64) {
    let _ = fcntl(fd, FcntlArg::F_OFD_SETLK(&flock(libc::F_UNLCK as _, off)));
}

/// `true` if some other open file description holds a lock on the byte.
pub(crate) fn is_locked(fd: impl AsFd, off: u64) -> bool {
    let mut fl = flock(libc::F_WRLCK as _, off);
    // On error, say "locked": never declare a process dead on a failed check.
    fcntl(fd, FcntlArg::F_OFD_GETLK(&mut fl)).is_err() || fl.l_type != libc::F_UNLCK as _
}
