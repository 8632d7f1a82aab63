//! Descriptors that hold OFD locks, and what `fork` does to them (design.md §3, hazard 9).
//!
//! A process is alive to the others exactly while a description it opened holds its slot's
//! OFD lock. A forked child shares its parent's open file descriptions, so a child that kept
//! one would keep a dead parent "alive" for as long as the child lives (a prefork server's
//! workers live for days): its insert locks never stolen, its segments never reaped. So
//! every description that may hold a lock is a [`LockFd`], and every forked child closes all
//! of them before it returns from `fork`.
//!
//! No window, no cap: a `LockFd` is opened and recorded, and removed and closed, while the
//! registry lock is held, and the `pthread_atfork` prepare handler takes the same lock, so a
//! fork in another thread happens either before the descriptor exists or after it is
//! recorded, never in between; the record is a growable table, not a fixed array. The child
//! handler runs in the only thread of the child, holding the lock its own prepare took.

use std::cell::UnsafeCell;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::Once;

/// How many forks separate this process from the one that started the program: +1 in
/// every forked child, before `fork` returns there.
static EPOCH: AtomicU64 = AtomicU64::new(0);

/// The registry lock (a spin lock: it is held for an `open` or a `close`, and taken by the
/// prepare handler of every `fork`, where no blocking primitive could be released again in
/// the child).
static LOCKED: AtomicBool = AtomicBool::new(false);

/// The open lock-holding descriptors of this process.
struct Table(UnsafeCell<Vec<RawFd>>);

// SAFETY: the vector is touched only by a thread holding LOCKED (or by the child handler,
// which holds it too and is the child's only thread).
unsafe impl Sync for Table {}

static TABLE: Table = Table(UnsafeCell::new(Vec::new()));
static INSTALL: Once = Once::new();

fn lock() {
    let mut round = 0u32;
    // Acquire: pairs with unlock's Release; the table's last state is visible to us.
    while LOCKED
        .compare_exchange_weak(false, true, Acquire, Relaxed)
        .is_err()
    {
        crate::protocol::sync::backoff(round);
        round = round.saturating_add(1);
    }
}

fn unlock() {
    // Release: our table changes happen-before the next holder's view of them.
    LOCKED.store(false, Release);
}

/// Runs `f` on the table, holding the registry lock.
fn with_table<T>(f: impl FnOnce(&mut Vec<RawFd>) -> T) -> T {
    lock();
    // SAFETY: we hold LOCKED, so no other thread touches the table until we release it.
    let t = f(unsafe { &mut *TABLE.0.get() });
    unlock();
    t
}

extern "C" fn prepare() {
    lock();
}

extern "C" fn parent() {
    unlock();
}

extern "C" fn child() {
    // SAFETY: the child has one thread, this one, and it holds LOCKED (taken by prepare
    // in the parent before the fork).
    let fds = unsafe { &mut *TABLE.0.get() };
    for &fd in fds.iter() {
        // SAFETY: close is async-signal-safe; `fd` is the child's copy of a descriptor the
        // parent recorded, which no code of the child uses (its LockFd sees the epoch move).
        unsafe { libc::close(fd) };
    }
    // Keeps the allocation: nothing in a fork handler may allocate or free.
    fds.clear();
    // Relaxed: the child's only thread; threads it creates later are ordered by their spawn.
    EPOCH.fetch_add(1, Relaxed);
    unlock();
}

/// The current fork epoch (see [`EPOCH`]): one relaxed load, for the hot path.
#[inline]
pub(crate) fn epoch() -> u64 {
    // Relaxed: EPOCH changes only in a child's fork handler, before any other thread of the
    // child exists.
    EPOCH.load(Relaxed)
}

/// A file description that may hold OFD locks, closed in every forked child at the fork.
#[derive(Debug)]
pub(crate) struct LockFd {
    /// `None` only while dropping.
    fd: Option<OwnedFd>,
    /// The fork epoch it was opened in; in a later one (a child) the number is not ours.
    epoch: u64,
}

impl LockFd {
    /// Opens a description with `open` and records it, with no fork possible in between.
    pub(crate) fn open(open: impl FnOnce() -> std::io::Result<File>) -> std::io::Result<LockFd> {
        INSTALL.call_once(|| {
            // SAFETY: registers handlers with the C runtime; they use only atomics, close
            // and a vector that never allocates in them.
            unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
        });
        with_table(|t| {
            let fd = OwnedFd::from(open()?);
            t.push(fd.as_raw_fd());
            Ok(LockFd {
                fd: Some(fd),
                epoch: epoch(),
            })
        })
    }
}

impl LockFd {
    /// The fork epoch it was opened in.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }
}

impl AsFd for LockFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_ref().expect("open until dropped").as_fd()
    }
}

impl Drop for LockFd {
    fn drop(&mut self) {
        let Some(fd) = self.fd.take() else { return };
        with_table(|t| {
            if self.epoch != epoch() {
                // We are in a forked child: the fork closed our copy, and the number may
                // name another file since. Forget it without closing.
                let _ = fd.into_raw_fd();
                return;
            }
            if let Some(i) = t.iter().position(|&n| n == fd.as_raw_fd()) {
                t.swap_remove(i);
            }
            // Closed here, under the lock, so no fork sees it recorded but closed (a child
            // would close a number reused by then).
            drop(fd);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_are_recorded_until_dropped_however_many() {
        let before = with_table(|t| t.len());
        let fds: Vec<LockFd> = (0..200)
            .map(|_| LockFd::open(|| File::open("/dev/null")).unwrap())
            .collect();
        assert_eq!(with_table(|t| t.len()), before + 200, "no cap");
        drop(fds);
        assert_eq!(with_table(|t| t.len()), before);
    }
}
