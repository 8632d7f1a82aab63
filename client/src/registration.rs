//! Registration: how a process holds a slot of the arena — its liveness lock, taken
//! through a description of its own, and its write lanes — one attachment per fork epoch,
//! replaced lock-free in a forked child (docs/design.md §2.2, §3, §6.1).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering as StdOrdering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::cache::{unix_now, Inner};
use crate::error::Unregistered;
use crate::fork::LockFd;
use crate::ofd;
use crate::protocol::alloc::Lane;
use crate::protocol::engine::{Liveness, SlotProbe, Who};
use crate::protocol::layout::Geometry;
use crate::Error;

/// What one process — one fork epoch of it — holds in the arena: a process slot and its
/// lock, and the lanes it appends through. A forked child makes its own and never touches
/// its parent's: the lanes' mutexes may be held by threads that do not exist in the child,
/// and their segments are the parent's.
pub(crate) struct Attachment {
    /// The fork epoch it was made in (`u64::MAX` for an observer's, which none reaches).
    pub(crate) epoch: u64,
    pub(crate) who: Who,
    /// Holds the OFD lock on our slot's byte (`None` for an observer); never read: closing
    /// it, when the attachment is dropped, releases the lock.
    _lock: Option<LockFd>,
    lanes: Box<[Mutex<Lane>]>,
    /// In a forked child, the attachment this one replaced (null if none), owned from the
    /// moment the CAS in `reattach` installed this one. Another thread of the child may
    /// still be reading it, so it is freed only with this one, when the handle is dropped
    /// and nothing can read either (until then it was leaked: ~100 bytes per fork).
    replaced: Replaced,
}

/// A pointer from `Box::into_raw` (or null), freed by `Attachment`'s drop.
struct Replaced(*mut Attachment);

// SAFETY: the pointee is an Attachment (Send + Sync itself); the pointer is only
// dereferenced to free it, by the one Attachment that owns it, in drop.
unsafe impl Send for Replaced {}
// SAFETY: as for Send; nothing reads through it while shared.
unsafe impl Sync for Replaced {}

impl Drop for Attachment {
    fn drop(&mut self) {
        if !self.replaced.0.is_null() {
            // SAFETY: set by reattach from the Box::into_raw'd pointer it replaced, once,
            // and owned by this attachment alone (a loser of the CAS clears it first).
            // This attachment is dropped only when no thread can read either.
            drop(unsafe { Box::from_raw(self.replaced.0) });
        }
    }
}

impl Attachment {
    /// An observer's: no slot, no lock, no lanes, and an epoch the fork epoch never
    /// reaches, so every `att()` takes the cold path, which refuses — the hot path carries
    /// no observer check.
    pub(crate) fn observer() -> Attachment {
        Attachment {
            epoch: u64::MAX,
            who: Who { slot: 0, reg: 0 },
            _lock: None,
            lanes: Box::new([]),
            replaced: Replaced(std::ptr::null_mut()),
        }
    }

    /// A lane for this thread: the first free one from a per-thread start, else wait.
    pub(crate) fn lane(&self) -> MutexGuard<'_, Lane> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            // Relaxed: only spreads threads over lanes.
            static START: usize = NEXT.fetch_add(1, StdOrdering::Relaxed);
        }
        let n = self.lanes.len();
        let start = START.with(|s| *s) % n;
        for i in 0..n {
            if let Ok(g) = self.lanes[(start + i) % n].try_lock() {
                return g;
            }
        }
        self.lanes[start].lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) struct OfdLiveness {
    pub(crate) file: Arc<File>,
    pub(crate) geo: Geometry,
}

impl Liveness for OfdLiveness {
    fn slot_unlocked(&self, slot: u32) -> bool {
        !ofd::is_locked(&*self.file, self.geo.proc_off(slot))
    }

    fn probe(&self) -> std::io::Result<Box<dyn SlotProbe + '_>> {
        Ok(Box::new(OfdProbe {
            // A LockFd: a fork while it holds a dead slot's lock must not leave the child
            // holding it (the slot would stay "alive" for the child's lifetime).
            fd: LockFd::open(|| reopen(&self.file))?,
            geo: self.geo,
        }))
    }
}

/// A description of the arena of its own, whose locks are its own: taking a slot's lock
/// through it fails while the slot's holder (or another reaper) holds it.
struct OfdProbe {
    fd: LockFd,
    geo: Geometry,
}

impl SlotProbe for OfdProbe {
    fn try_lock(&self, slot: u32) -> std::io::Result<bool> {
        ofd::try_lock(&self.fd, self.geo.proc_off(slot))
    }

    fn unlock(&self, slot: u32) {
        ofd::unlock(&self.fd, self.geo.proc_off(slot));
    }
}

/// A new open file description of the file `f` describes (so its locks are ours alone).
fn reopen(f: &File) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/self/fd/{}", f.as_raw_fd()))
}

impl Inner {
    /// This process's attachment, registering anew first in a forked child.
    #[inline]
    pub(crate) fn att(&self) -> Result<&Attachment, Error> {
        // Acquire: pairs with the Release of the CAS that installed it (reattach), so its
        // fields are initialised.
        let a = self.att.load(StdOrdering::Acquire);
        // SAFETY: never null (set in attach); an attachment stays allocated while its Inner
        // lives (replaced ones are leaked, the current one freed in Drop).
        let a = unsafe { &*a };
        if a.epoch != crate::fork::epoch() {
            return self.reattach();
        }
        Ok(a)
    }

    #[inline]
    pub(crate) fn who(&self) -> Result<Who, Error> {
        self.att().map(|a| a.who)
    }

    /// In a forked child: registers the child (a slot, a lock, empty lanes of its own) and
    /// installs it. Lock-free: threads of the child racing here each register, one wins the
    /// CAS and the others give their slot back, so none can wait on anything the fork left
    /// held (the registration mutex this replaces could be held by a thread of the parent).
    #[cold]
    fn reattach(&self) -> Result<&Attachment, Error> {
        if self.observer {
            return Err(Error::Observer);
        }
        loop {
            // Acquire: as in att.
            let cur = self.att.load(StdOrdering::Acquire);
            // SAFETY: as in att.
            if unsafe { &*cur }.epoch == crate::fork::epoch() {
                // SAFETY: as in att.
                return Ok(unsafe { &*cur });
            }
            let mut fresh = self.register()?;
            fresh.replaced = Replaced(cur);
            let new = Box::into_raw(Box::new(fresh));
            // AcqRel: Release publishes the new attachment to att's Acquire loads; Acquire
            // on failure reads the winner's. The parent's attachment is not freed: another
            // thread of this child may be reading it right now; the new one owns it.
            match self
                .att
                .compare_exchange(cur, new, StdOrdering::AcqRel, StdOrdering::Acquire)
            {
                // SAFETY: `new` stays allocated while self lives (see att).
                Ok(_) => return Ok(unsafe { &*new }),
                Err(_) => {
                    // SAFETY: `new` came from Box::into_raw above and was never shared.
                    let mut lost = unsafe { Box::from_raw(new) };
                    // The winner owns what it replaced.
                    lost.replaced = Replaced(std::ptr::null_mut());
                    self.detach(*lost);
                }
            }
        }
    }

    /// Registers this process: takes the first slot whose lock it can take through a new
    /// description (reaping a dead previous holder first), with empty lanes.
    pub(crate) fn register(&self) -> Result<Attachment, Unregistered> {
        let io = |what, source| Unregistered::Io {
            what,
            path: self.path.clone(),
            source,
        };
        let fd = LockFd::open(|| reopen(&self.file)).map_err(|e| io("reopening", e))?;
        let eng = &self.eng;
        for slot in 0..eng.geo.nprocs {
            let off = eng.geo.proc_off(slot);
            if !ofd::try_lock(&fd, off).map_err(|e| io("locking a process slot of", e))? {
                continue;
            }
            let old = eng.slot_reg(slot);
            if old != 0 {
                // Holding its lock proves the previous holder dead; reap before reuse.
                eng.reap(Who { slot, reg: old }, slot, old);
            }
            if let Some(who) = eng.claim_slot(slot, std::process::id(), unix_now()) {
                return Ok(Attachment {
                    epoch: fd.epoch(),
                    who,
                    _lock: Some(fd),
                    lanes: (0..self.nlanes)
                        .map(|_| Mutex::new(Lane::default()))
                        .collect(),
                    replaced: Replaced(std::ptr::null_mut()),
                });
            }
            ofd::unlock(&fd, off);
        }
        Err(Unregistered::Full {
            max: eng.geo.nprocs,
        })
    }

    /// Gives up an attachment of this fork epoch: parks its lane segments, frees the slot,
    /// and closes the descriptor (dropping the slot's lock).
    pub(crate) fn detach(&self, mut a: Attachment) {
        for lane in a.lanes.iter_mut() {
            let lane = lane.get_mut().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = lane.seg.take() {
                self.eng.park(a.who, s);
            }
        }
        self.eng.release_slot(a.who);
    }
}
