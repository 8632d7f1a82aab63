//! The public handle: [`Cache`].

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering as StdOrdering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::arena::{create_file, open_validated, Config};
use crate::fork::LockFd;
use crate::mapping::{HugePages, MapMem, Mapping};
use crate::ofd;
use crate::protocol::alloc::Lane;
use crate::protocol::engine::{Clock, Engine, Liveness, SlotProbe, Who};
use crate::protocol::expiry::SweepReport;
use crate::protocol::index::{Mode, Outcome};
use crate::protocol::layout::{
    Geometry, Params, H_CLEAN, H_DAEMON_PID, H_DAEMON_STARTED, H_GENERATION, H_RETIRED, H_SNAP_ACK,
    H_SNAP_BYTES, H_SNAP_REQ, H_SNAP_TIME, SLOTS_PER_BUCKET,
};
use crate::protocol::mem::Mem;
use crate::protocol::stats::Stats;
use crate::protocol::sync::Ordering::*;
use crate::Error;

/// A token naming the exact version of an item read by [`Cache::gets`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CasToken(pub u64);

/// What [`Cache::cas`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CasOutcome {
    /// The item still was the one the token names; it is replaced.
    Stored,
    /// The item changed since the token was taken; nothing was written.
    Exists,
    /// There is no live item under the key; nothing was written.
    NotFound,
}

/// A handle to an arena, attached to this process. Cheap to clone; `Send + Sync`.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("larder-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// # let path = dir.join("arena");
/// # let _ = std::fs::remove_file(&path);
/// use larder::{Cache, Config};
/// use std::time::Duration;
///
/// let cache = Cache::create(&path, &Config::new(8 << 20).max_value_len(4096))?;
/// cache.set(b"greeting", b"hello", Some(Duration::from_secs(60)))?;
/// assert_eq!(cache.get(b"greeting")?.as_deref(), Some(&b"hello"[..]));
///
/// // Another process (or this one) attaches to the same file:
/// let other = Cache::open(&path)?;
/// assert!(other.delete(b"greeting")?);
/// assert_eq!(cache.get(b"greeting")?, None);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), larder::Error>(())
/// ```
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    eng: Engine<MapMem>,
    params: Params,
    path: PathBuf,
    /// The description the mapping was made from; used for GETLK probes only (it never
    /// holds a lock, so sharing it with a forked child is harmless).
    file: Arc<File>,
    /// This process's registration, of the current fork epoch. Never null; in a forked
    /// child it is replaced by the child's own, and the parent's is leaked (design.md §3).
    att: AtomicPtr<Attachment>,
    /// Write lanes per attachment.
    nlanes: usize,
    /// Opened with `open_observer`: no process slot, no item operations.
    observer: bool,
}

/// What one process — one fork epoch of it — holds in the arena: a process slot and its
/// lock, and the lanes it appends through. A forked child makes its own and never touches
/// its parent's: the lanes' mutexes may be held by threads that do not exist in the child,
/// and their segments are the parent's.
struct Attachment {
    /// The fork epoch it was made in (`u64::MAX` for an observer's, which none reaches).
    epoch: u64,
    who: Who,
    /// Holds the OFD lock on our slot's byte (`None` for an observer); never read: closing
    /// it, when the attachment is dropped, releases the lock.
    _lock: Option<LockFd>,
    lanes: Box<[Mutex<Lane>]>,
}

impl Attachment {
    /// A lane for this thread: the first free one from a per-thread start, else wait.
    fn lane(&self) -> MutexGuard<'_, Lane> {
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

struct OfdLiveness {
    file: Arc<File>,
    geo: Geometry,
}

impl Liveness for OfdLiveness {
    fn slot_unlocked(&self, slot: u32) -> bool {
        !ofd::is_locked(self.file.as_raw_fd(), self.geo.proc_off(slot))
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
        ofd::try_lock(self.fd.as_raw_fd(), self.geo.proc_off(slot))
    }

    fn unlock(&self, slot: u32) {
        ofd::unlock(self.fd.as_raw_fd(), self.geo.proc_off(slot));
    }
}

/// A new open file description of the file `f` describes (so its locks are ours alone).
fn reopen(f: &File) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/self/fd/{}", f.as_raw_fd()))
}

// `Cache` is shared between threads freely.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Cache>();
};

fn unix_now() -> u64 {
    Clock::System.unix_now()
}

impl Cache {
    /// Formats a new arena file at `path` and attaches to it. Fails with
    /// [`Error::AlreadyExists`] if the path exists.
    pub fn create(path: impl AsRef<Path>, config: &Config) -> Result<Cache, Error> {
        create_file(path.as_ref(), config)?;
        Cache::open(path)
    }

    /// Attaches to an existing arena, validating it first.
    pub fn open(path: impl AsRef<Path>) -> Result<Cache, Error> {
        Cache::attach(path.as_ref(), false)
    }

    /// Attaches for monitoring only, without taking a process slot: [`Cache::info`],
    /// [`Cache::stats`], [`Cache::keys`], snapshot requests and [`Cache::huge_page_bytes`]
    /// work; every operation on items fails with [`Error::Observer`] (and
    /// [`Cache::entries`] yields nothing). Works when every process slot is taken, which is
    /// when an operator most needs to look; `cachectl info`, `stats` and `watch` use it.
    pub fn open_observer(path: impl AsRef<Path>) -> Result<Cache, Error> {
        Cache::attach(path.as_ref(), true)
    }

    fn attach(path: &Path, observer: bool) -> Result<Cache, Error> {
        let (file, params, geo) = open_validated(path)?;
        let len = usize::try_from(geo.arena_size).map_err(|_| Error::BadArena {
            path: path.to_owned(),
            reason: "arena larger than the address space".into(),
        })?;
        let map = Mapping::map(&file, len).map_err(|e| Error::io("mapping", path, e))?;
        // Touching a mapped page past the end of the file raises SIGBUS: make sure the file
        // is still as long as what we validated.
        let file_len = file
            .metadata()
            .map_err(|e| Error::io("reading the size of", path, e))?
            .len();
        if file_len != geo.arena_size {
            return Err(Error::BadArena {
                path: path.to_owned(),
                reason: "file changed size while opening".into(),
            });
        }
        let file = Arc::new(file);
        let live = Box::new(OfdLiveness {
            file: file.clone(),
            geo,
        });
        let eng = Engine::new(MapMem::new(map), &params, geo, live);
        let nlanes = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(1, 4);
        let mut inner = Inner {
            eng,
            params,
            path: path.to_owned(),
            file,
            att: AtomicPtr::new(std::ptr::null_mut()),
            nlanes,
            observer,
        };
        let first = if observer {
            // An epoch the fork epoch never reaches: every `att()` takes the cold path,
            // which refuses, so the hot path carries no observer check.
            Attachment {
                epoch: u64::MAX,
                who: Who { slot: 0, reg: 0 },
                _lock: None,
                lanes: Box::new([]),
            }
        } else {
            inner.register()?
        };
        *inner.att.get_mut() = Box::into_raw(Box::new(first));
        Ok(Cache {
            inner: Arc::new(inner),
        })
    }

    /// The arena file this handle is attached to.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Longest key and value this arena accepts.
    pub fn limits(&self) -> (u32, u32) {
        (self.inner.params.max_key, self.inner.params.max_value)
    }

    /// Appends the value of `key` to `out` and returns `true` on a hit. Allocates nothing
    /// when `out` has room: the hot path for repeated reads.
    #[inline]
    pub fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, Error> {
        let who = self.inner.who()?;
        Ok(self.inner.eng.get(who, key, out)?.is_some())
    }

    /// The value of `key`, if it is present and not expired.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        let mut out = Vec::new();
        Ok(self.get_into(key, &mut out)?.then_some(out))
    }

    /// The values of several keys, in order. Faster than one `get` per key: the lookups'
    /// memory accesses overlap (up to 16 keys at a time). A bad key fails the whole call
    /// before anything is read.
    pub fn get_multi<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<Option<Vec<u8>>>, Error> {
        let who = self.inner.who()?;
        let keys: Vec<&[u8]> = keys.iter().map(AsRef::as_ref).collect();
        let mut values = vec![None; keys.len()];
        self.inner.eng.get_batch(who, &keys, |i, out, hit| {
            if hit {
                values[i] = Some(out.clone());
            }
        })?;
        Ok(values)
    }

    /// The value of `key` with a token for [`Cache::cas`].
    pub fn gets(&self, key: &[u8]) -> Result<Option<(Vec<u8>, CasToken)>, Error> {
        let who = self.inner.who()?;
        let mut out = Vec::new();
        Ok(self
            .inner
            .eng
            .get(who, key, &mut out)?
            .map(|(_, t)| (out, CasToken(t))))
    }

    /// Stores `value` under `key`, replacing any previous value. `ttl: None` never expires;
    /// a TTL is rounded up to whole seconds.
    pub fn set(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<(), Error> {
        self.write(key, value, ttl, Mode::Set).map(|_| ())
    }

    /// Stores only if `key` has no live value. `true` if stored.
    pub fn add(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<bool, Error> {
        Ok(self.write(key, value, ttl, Mode::Add)? == Outcome::Stored)
    }

    /// Stores only if `key` has a live value. `true` if stored.
    pub fn replace(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<bool, Error> {
        Ok(self.write(key, value, ttl, Mode::Replace)? == Outcome::Stored)
    }

    /// Stores only if `key` still holds the exact item `token` was taken from.
    pub fn cas(
        &self,
        key: &[u8],
        value: &[u8],
        token: CasToken,
        ttl: Option<Duration>,
    ) -> Result<CasOutcome, Error> {
        Ok(match self.write(key, value, ttl, Mode::Cas(token.0))? {
            Outcome::Stored => CasOutcome::Stored,
            Outcome::Exists => CasOutcome::Exists,
            Outcome::NotStored => CasOutcome::NotFound,
        })
    }

    /// Runs `f` with the engine and this process's registration (patterns.rs).
    pub(crate) fn with_engine<T>(
        &self,
        f: impl FnOnce(&Engine<MapMem>, Who) -> T,
    ) -> Result<T, Error> {
        let who = self.inner.who()?;
        Ok(f(&self.inner.eng, who))
    }

    /// Runs `f` with the engine, this process's registration and a write lane.
    pub(crate) fn with_writer<T>(
        &self,
        f: impl FnOnce(&Engine<MapMem>, Who, &mut Lane) -> T,
    ) -> Result<T, Error> {
        let a = self.inner.att()?;
        let (who, mut lane) = (a.who, a.lane());
        Ok(f(&self.inner.eng, who, &mut lane))
    }

    fn write(
        &self,
        key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
        mode: Mode,
    ) -> Result<Outcome, Error> {
        let a = self.inner.att()?;
        let (who, mut lane) = (a.who, a.lane());
        self.inner.eng.write(who, &mut lane, key, value, ttl, mode)
    }

    /// Removes `key`. `true` if a live value was removed.
    pub fn delete(&self, key: &[u8]) -> Result<bool, Error> {
        let who = self.inner.who()?;
        self.inner.eng.delete(who, key)
    }

    /// Gives a live item a new TTL. `true` if there was one.
    pub fn touch(&self, key: &[u8], ttl: Option<Duration>) -> Result<bool, Error> {
        let a = self.inner.att()?;
        let (who, mut lane) = (a.who, a.lane());
        self.inner.eng.touch(who, &mut lane, key, ttl)
    }

    /// Remaining lifetime: `None` if absent, `Some(None)` if it never expires.
    pub fn ttl(&self, key: &[u8]) -> Result<Option<Option<Duration>>, Error> {
        let who = self.inner.who()?;
        self.inner.eng.ttl(who, key)
    }

    /// Adds `delta` to a decimal value (wrapping at 2⁶⁴, like memcached), atomically across
    /// processes. `None` if the key is absent; [`Error::NotANumber`] if the value is not a
    /// decimal u64.
    pub fn incr(&self, key: &[u8], delta: u64) -> Result<Option<u64>, Error> {
        let a = self.inner.att()?;
        let (who, mut lane) = (a.who, a.lane());
        self.inner.eng.incr(who, &mut lane, key, delta, false)
    }

    /// Subtracts `delta` from a decimal value, stopping at 0.
    pub fn decr(&self, key: &[u8], delta: u64) -> Result<Option<u64>, Error> {
        let a = self.inner.att()?;
        let (who, mut lane) = (a.who, a.lane());
        self.inner.eng.incr(who, &mut lane, key, delta, true)
    }

    /// Removes every item. Returns how many index entries were cleared.
    pub fn flush(&self) -> Result<u64, Error> {
        let who = self.inner.who()?;
        Ok(self.inner.eng.flush(who))
    }

    /// Streams the keys present (expired ones excluded), bucket by bucket, without loading
    /// them all. Keys written or removed during the walk may or may not appear.
    pub fn keys(&self) -> Keys<'_> {
        Keys {
            cache: self,
            bucket: 0,
            pending: Vec::new(),
        }
    }

    /// Streams the live items (key, value, remaining TTL) without counting hits or setting
    /// reference bits: for dumps, snapshots and resizes. Items changed during the walk may
    /// appear with their old or new value, or not at all.
    ///
    /// Items stored with tags are left out: a tag is a version counter of this arena, which
    /// does not travel, and an item restored without its tags would survive the
    /// `invalidate_tag` meant to drop it. Leaving it out only costs a miss.
    pub fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        self.keys().filter_map(move |key| {
            let who = self.inner.who().ok()?;
            let mut value = Vec::new();
            let (ttl, grace, tagged) = self.inner.eng.peek(who, &key, &mut value)?;
            let grace = (ttl.is_some() && grace > 0).then(|| Duration::from_secs(grace.into()));
            (!tagged).then_some(Entry {
                key,
                value,
                ttl,
                grace,
            })
        })
    }

    /// Asks the daemon for a snapshot; returns the request number to wait for with
    /// [`Cache::snapshot_done`].
    pub fn request_snapshot(&self) -> u64 {
        // Relaxed: a counter the daemon polls; no data is published with it.
        self.inner.eng.mem.fetch_add(H_SNAP_REQ, 1, Relaxed) + 1
    }

    /// `(requests, completed, unix time of last snapshot, its size in bytes)`.
    pub fn snapshot_status(&self) -> (u64, u64, u64, u64) {
        let m = &self.inner.eng.mem;
        // Relaxed: informational words.
        (
            m.load(H_SNAP_REQ, Relaxed),
            m.load(H_SNAP_ACK, Relaxed),
            m.load(H_SNAP_TIME, Relaxed),
            m.load(H_SNAP_BYTES, Relaxed),
        )
    }

    /// `true` once the daemon completed snapshot request `n`.
    pub fn snapshot_done(&self, n: u64) -> bool {
        self.snapshot_status().1 >= n
    }

    /// Daemon-side: record that every request up to `req` is served by a snapshot of
    /// `bytes` bytes written at unix time `time`.
    #[doc(hidden)]
    pub fn ack_snapshot(&self, req: u64, time: u64, bytes: u64) {
        let m = &self.inner.eng.mem;
        // Relaxed: informational words; `ack` last so a waiter sees time and size too (the
        // waiter re-reads them after seeing ack; a stale pair is only cosmetic).
        m.store(H_SNAP_TIME, time, Relaxed);
        m.store(H_SNAP_BYTES, bytes, Relaxed);
        m.store(H_SNAP_ACK, req, Relaxed);
    }

    /// Daemon-side: mark this arena file as replaced, so attached clients re-open the path.
    #[doc(hidden)]
    pub fn mark_retired(&self) {
        // Relaxed: an advisory flag.
        self.inner.eng.mem.store(H_RETIRED, 1, Relaxed);
    }

    /// Counters summed over every process that ever attached, and per attached process.
    pub fn stats(&self) -> Stats {
        self.inner.eng.stats()
    }

    /// One bounded step of the expiry sweeper (the daemon calls this periodically).
    pub fn sweep_expired(&self, max_segments: u32) -> Result<SweepReport, Error> {
        let who = self.inner.who()?;
        Ok(self.inner.eng.sweep_expired(who, max_segments))
    }

    /// Evicts ahead of demand (the daemon calls this often): while writers have less than
    /// `target_bytes` of room they can take without evicting (FREE segments beyond the
    /// copy-forward reserve, the unwritten part of PARKED ones), evicts one segment the way a
    /// writer would, at most `max_evictions` times. Returns how many it did. Writers then
    /// rarely evict inline; they still do when this falls behind.
    #[doc(hidden)]
    pub fn evict_ahead(&self, target_bytes: u64, max_evictions: u32) -> Result<u32, Error> {
        let who = self.inner.who()?;
        Ok(self.inner.eng.evict_ahead(who, target_bytes, max_evictions))
    }

    /// Reaps every process slot whose process is dead: parks its segments, frees the slot.
    /// Returns the number of slots reaped. Safe to run from several processes at once.
    pub fn reclaim_dead_clients(&self) -> Result<u32, Error> {
        let who = self.inner.who()?;
        self.inner
            .eng
            .reap_dead(who)
            .map_err(|e| Error::io("locking a process slot of", &self.inner.path, e))
    }

    /// `true` if the daemon replaced this arena file: re-open the path to get the new one.
    pub fn is_retired(&self) -> bool {
        // Relaxed: an advisory flag.
        self.inner.eng.mem.load(H_RETIRED, Relaxed) != 0
    }

    /// Asks the kernel to back the arena with transparent huge pages (see
    /// [`Config::huge_pages`]); safe while other processes use it. `larderd` does this when
    /// it attaches; it takes about 1–2 ms per 2 MiB of arena still on small pages, and a few
    /// microseconds per 2 MiB already huge. Every process maps the arena aligned, so each
    /// one gets huge mappings of whatever is huge in the file.
    pub fn collapse_huge_pages(&self) -> HugePages {
        let eng = &self.inner.eng;
        // Relaxed: a read whose only purpose is to make the page present.
        eng.mem.mapping().collapse(|off| {
            eng.mem.load(off as u64, Relaxed);
        })
    }

    /// Bytes of the arena backed by huge pages, as this process maps them (from
    /// `/proc/self/smaps`; `None` where that cannot be read). Reads one word in every
    /// huge-page-sized range first, so that the whole arena is mapped and counted.
    pub fn huge_page_bytes(&self) -> Option<u64> {
        let eng = &self.inner.eng;
        let map = eng.mem.mapping();
        let step = crate::mapping::pmd_size() as u64;
        for off in (0..map.len() as u64).step_by(step as usize) {
            // Relaxed: a read whose only purpose is to map the page.
            eng.mem.load(off, Relaxed);
        }
        map.pmd_mapped()
    }

    /// Header words the daemon maintains.
    pub fn info(&self) -> ArenaInfo {
        let m = &self.inner.eng.mem;
        let g = &self.inner.eng.geo;
        // Relaxed: informational words.
        ArenaInfo {
            path: self.inner.path.clone(),
            arena_size: g.arena_size,
            layout_version: self.inner.params.layout_version,
            segment_size: g.seg_size(),
            segments: g.nsegs,
            buckets: g.nbuckets,
            index_slots: g.nbuckets * SLOTS_PER_BUCKET as u64,
            planned_item_size: (u64::from(g.nsegs) << g.seg_shift) * 10
                / (g.nbuckets * SLOTS_PER_BUCKET as u64 * 7).max(1),
            max_processes: g.nprocs,
            max_key: self.inner.params.max_key,
            max_value: self.inner.params.max_value,
            created: self.inner.params.epoch,
            generation: m.load(H_GENERATION, Relaxed),
            clean: m.load(H_CLEAN, Relaxed) != 0,
            daemon_pid: m.load(H_DAEMON_PID, Relaxed) as u32,
            daemon_started: m.load(H_DAEMON_STARTED, Relaxed),
        }
    }

    /// Daemon-side: record an attaching daemon (generation + 1, dirty, pid).
    #[doc(hidden)]
    pub fn mark_daemon_attached(&self, pid: u32) {
        let m = &self.inner.eng.mem;
        // Relaxed: informational words, read by cachectl.
        m.fetch_add(H_GENERATION, 1, Relaxed);
        m.store(H_CLEAN, 0, Relaxed);
        m.store(H_DAEMON_PID, u64::from(pid), Relaxed);
        m.store(H_DAEMON_STARTED, unix_now(), Relaxed);
    }

    /// Daemon-side: record a clean detach.
    #[doc(hidden)]
    pub fn mark_daemon_detached(&self) {
        let m = &self.inner.eng.mem;
        // Relaxed: informational words.
        m.store(H_DAEMON_PID, 0, Relaxed);
        m.store(H_CLEAN, 1, Relaxed);
    }

    /// Replaces the wall clock used for TTLs by a manual one (tests of expiry).
    #[doc(hidden)]
    pub fn with_manual_clock(mut self, unix_secs: Arc<std::sync::atomic::AtomicU64>) -> Cache {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.eng.clock = Clock::Manual(unix_secs),
            None => panic!("with_manual_clock must be called before the handle is cloned"),
        }
        self
    }
}

/// One live item, as streamed by [`Cache::entries`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Remaining lifetime; `None` never expires.
    pub ttl: Option<Duration>,
    /// How long after `ttl` the value may still be served stale (`SetOptions::stale_grace`).
    pub grace: Option<Duration>,
}

/// What the header says about an arena.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArenaInfo {
    pub path: PathBuf,
    pub arena_size: u64,
    pub layout_version: u32,
    pub segment_size: u64,
    pub segments: u32,
    pub buckets: u64,
    /// Index slots (8 per bucket).
    pub index_slots: u64,
    /// The item size (header + key + value) at which the item log and the index (at 0.7
    /// load) fill together. Items much larger leave index memory unused; much smaller ones
    /// fill the index first, and it then drops items.
    pub planned_item_size: u64,
    pub max_processes: u32,
    pub max_key: u32,
    pub max_value: u32,
    /// Unix seconds at creation.
    pub created: u64,
    /// Number of daemon attaches so far.
    pub generation: u64,
    /// The last daemon detached cleanly.
    pub clean: bool,
    /// 0 when no daemon is attached.
    pub daemon_pid: u32,
    pub daemon_started: u64,
}

/// Streaming iterator over keys; see [`Cache::keys`].
pub struct Keys<'a> {
    cache: &'a Cache,
    bucket: u64,
    pending: Vec<Vec<u8>>,
}

impl Iterator for Keys<'_> {
    type Item = Vec<u8>;
    fn next(&mut self) -> Option<Vec<u8>> {
        let eng = &self.cache.inner.eng;
        while self.pending.is_empty() {
            if self.bucket >= eng.geo.nbuckets {
                return None;
            }
            eng.keys_in_bucket(self.bucket, &mut self.pending);
            self.bucket += 1;
        }
        self.pending.pop()
    }
}

impl Inner {
    /// This process's attachment, registering anew first in a forked child.
    #[inline]
    fn att(&self) -> Result<&Attachment, Error> {
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
    fn who(&self) -> Result<Who, Error> {
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
            let new = Box::into_raw(Box::new(self.register()?));
            // AcqRel: Release publishes the new attachment to att's Acquire loads; Acquire
            // on failure reads the winner's. The parent's attachment is leaked, not freed:
            // another thread of this child may be reading it right now.
            match self
                .att
                .compare_exchange(cur, new, StdOrdering::AcqRel, StdOrdering::Acquire)
            {
                // SAFETY: `new` stays allocated while self lives (see att).
                Ok(_) => return Ok(unsafe { &*new }),
                Err(_) => {
                    // SAFETY: `new` came from Box::into_raw above and was never shared.
                    let lost = unsafe { Box::from_raw(new) };
                    self.detach(*lost);
                }
            }
        }
    }

    /// Registers this process: takes the first slot whose lock it can take through a new
    /// description (reaping a dead previous holder first), with empty lanes.
    fn register(&self) -> Result<Attachment, Error> {
        let fd = LockFd::open(|| reopen(&self.file))
            .map_err(|e| Error::io("reopening", &self.path, e))?;
        let eng = &self.eng;
        for slot in 0..eng.geo.nprocs {
            let off = eng.geo.proc_off(slot);
            if !ofd::try_lock(fd.as_raw_fd(), off)
                .map_err(|e| Error::io("locking a process slot of", &self.path, e))?
            {
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
                });
            }
            ofd::unlock(fd.as_raw_fd(), off);
        }
        Err(Error::TooManyProcesses {
            max: eng.geo.nprocs,
        })
    }

    /// Gives up an attachment of this fork epoch: parks its lane segments, frees the slot,
    /// and closes the descriptor (dropping the slot's lock).
    fn detach(&self, mut a: Attachment) {
        for lane in a.lanes.iter_mut() {
            let lane = lane.get_mut().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = lane.seg.take() {
                self.eng.park(a.who, s);
            }
        }
        self.eng.release_slot(a.who);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let p = *self.att.get_mut();
        if p.is_null() {
            // attach failed before there was an attachment.
            return;
        }
        // SAFETY: set in attach from Box::into_raw, and we are the last user of self.
        let a = unsafe { Box::from_raw(p) };
        if !self.observer && a.epoch == crate::fork::epoch() {
            self.detach(*a);
        }
        // Otherwise an observer's, or — in a forked child that never used the handle —
        // the parent's: its slot and segments are the parent's, and its descriptor was
        // closed by the fork (LockFd knows not to close it again).
    }
}
