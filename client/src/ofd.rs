//! OFD byte-range locks on the arena file: the kernel's record of who is alive
//! (docs/design.md §2.2).

use std::io;
use std::os::fd::RawFd;

fn flock(kind: libc::c_short, off: u64) -> libc::flock {
    // SAFETY: flock is a plain C struct for which all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = off as libc::off_t;
    fl.l_len = 1;
    fl
}

/// Tries to write-lock one byte through `fd`'s open file description.
pub(crate) fn try_lock(fd: RawFd, off: u64) -> io::Result<bool> {
    let fl = flock(libc::F_WRLCK as libc::c_short, off);
    // SAFETY: fcntl with F_OFD_SETLK reads a valid flock we own for the call's duration.
    let r = unsafe { libc::fcntl(fd, libc::F_OFD_SETLK, &fl) };
    if r == 0 {
        return Ok(true);
    }
    match io::Error::last_os_error() {
        e if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) => Ok(false),
        e => Err(e),
    }
}

pub(crate) fn unlock(fd: RawFd, off: u64) {
    let fl = flock(libc::F_UNLCK as libc::c_short, off);
    // SAFETY: as in try_lock. Unlocking a byte we do not hold is a no-op.
    unsafe { libc::fcntl(fd, libc::F_OFD_SETLK, &fl) };
}

/// `true` if some other open file description holds a lock on the byte.
pub(crate) fn is_locked(fd: RawFd, off: u64) -> bool {
    let mut fl = flock(libc::F_WRLCK as libc::c_short, off);
    // SAFETY: fcntl with F_OFD_GETLK writes into the flock we pass, which we own.
    let r = unsafe { libc::fcntl(fd, libc::F_OFD_GETLK, &mut fl) };
    // On error, say "locked": never declare a process dead on a failed check.
    r != 0 || fl.l_type != libc::F_UNLCK as libc::c_short
}
