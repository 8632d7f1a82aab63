//! The public handle: [`Cache`].

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicPtr;
use std::sync::Arc;
use std::time::Duration;

use crate::arena::{create_file, open_validated, Config};
use crate::mapping::{MapMem, Mapping};
use crate::protocol::alloc::Lane;
use crate::protocol::engine::{Clock, Engine, Who};
use crate::protocol::index::{Mode, Outcome};
use crate::protocol::layout::{Params, H_RETIRED};
use crate::protocol::mem::Mem;
use crate::protocol::stats::Stats;
use crate::protocol::sync::Ordering::*;
use crate::registration::{Attachment, OfdLiveness};
use crate::{Error, OpenError};

/// A token naming the exact version of an item read by [`Cache::gets`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CasToken(pub u64);

/// What a read found beside the value ([`Cache::get_meta_into`], [`Cache::get_multi_with`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ItemMeta {
    /// Client flags stored with [`crate::SetOptions::flags`] (or by a memcached client through
    /// the listener); 0 for items stored without them.
    pub flags: u32,
    /// The token [`Cache::cas`] takes to store over exactly this version.
    pub cas: CasToken,
}

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
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Cache {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) eng: Engine<MapMem>,
    pub(crate) params: Params,
    pub(crate) path: PathBuf,
    /// The description the mapping was made from; used for GETLK probes only (it never
    /// holds a lock, so sharing it with a forked child is harmless).
    pub(crate) file: Arc<File>,
    /// This process's registration, of the current fork epoch. Never null; in a forked
    /// child it is replaced by the child's own, and the parent's is leaked (design.md §3).
    pub(crate) att: AtomicPtr<Attachment>,
    /// Write lanes per attachment.
    pub(crate) nlanes: usize,
    /// Opened with `open_observer`: no process slot, no item operations.
    pub(crate) observer: bool,
}

// `Cache` is shared between threads freely.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Cache>();
};

pub(crate) fn unix_now() -> u64 {
    Clock::System.unix_now()
}

impl Cache {
    /// Formats a new arena file at `path` and attaches to it. Fails with
    /// [`OpenError::AlreadyExists`] if the path exists.
    pub fn create(path: impl AsRef<Path>, config: &Config) -> Result<Cache, OpenError> {
        create_file(path.as_ref(), config)?;
        Cache::open(path)
    }

    /// Attaches to an existing arena, validating it first.
    pub fn open(path: impl AsRef<Path>) -> Result<Cache, OpenError> {
        Cache::attach(path.as_ref(), false)
    }

    /// Attaches for monitoring only, without taking a process slot: [`Cache::info`],
    /// [`Cache::stats`], [`Cache::keys`], snapshot requests and [`Cache::huge_page_bytes`]
    /// work; every operation on items fails with [`Error::Observer`] (and
    /// [`Cache::entries`] yields nothing). Works when every process slot is taken, which is
    /// when an operator most needs to look; `cachectl info`, `stats` and `watch` use it.
    pub fn open_observer(path: impl AsRef<Path>) -> Result<Cache, OpenError> {
        Cache::attach(path.as_ref(), true)
    }

    fn attach(path: &Path, observer: bool) -> Result<Cache, OpenError> {
        let (file, params, geo) = open_validated(path)?;
        let len = usize::try_from(geo.arena_size).map_err(|_| OpenError::BadArena {
            path: path.to_owned(),
            reason: "arena larger than the address space".into(),
        })?;
        let map = Mapping::map(&file, len).map_err(|e| OpenError::io("mapping", path, e))?;
        // Touching a mapped page past the end of the file raises SIGBUS: make sure the file
        // is still as long as what we validated.
        let file_len = file
            .metadata()
            .map_err(|e| OpenError::io("reading the size of", path, e))?
            .len();
        if file_len != geo.arena_size {
            return Err(OpenError::BadArena {
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
            Attachment::observer()
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

    /// Copies the value of `key` to the front of `buf` when it fits, and returns its length
    /// (`None` on a miss). A length larger than `buf` means nothing was copied: call again
    /// with a buffer at least that long. Bytes of `buf` past the value may be overwritten.
    /// For callers that own a fixed buffer (the C ABI): no allocation, no second copy.
    #[inline]
    pub fn get_into_slice(&self, key: &[u8], buf: &mut [u8]) -> Result<Option<usize>, Error> {
        Ok(self.get_flags_into_slice(key, buf)?.map(|(len, _)| len))
    }

    /// As [`Cache::get_into_slice`], also giving the item's client flags.
    #[inline]
    pub fn get_flags_into_slice(
        &self,
        key: &[u8],
        buf: &mut [u8],
    ) -> Result<Option<(usize, u32)>, Error> {
        let who = self.inner.who()?;
        self.inner.eng.get_slice(who, key, buf)
    }

    /// Replaces the contents of `out` with the value of `key` and returns `true` on a hit;
    /// on a miss (or an error) `out` is left empty. Its capacity is kept, so a buffer reused
    /// across calls allocates nothing once it has room: the hot path for repeated reads.
    #[inline]
    pub fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, Error> {
        out.clear();
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
            if hit.is_some() {
                values[i] = Some(out.clone());
            }
        })?;
        Ok(values)
    }

    /// As [`Cache::get_multi`], without a vector per value: `each(index, value, meta)` is
    /// called, in order, for every key found. The memcached listener writes its replies from
    /// here.
    pub fn get_multi_with<K: AsRef<[u8]>>(
        &self,
        keys: &[K],
        mut each: impl FnMut(usize, &[u8], ItemMeta),
    ) -> Result<(), Error> {
        let who = self.inner.who()?;
        let keys: Vec<&[u8]> = keys.iter().map(AsRef::as_ref).collect();
        self.inner.eng.get_batch(who, &keys, |i, out, hit| {
            if let Some((info, token)) = hit {
                each(i, out, meta(&info, token));
            }
        })
    }

    /// As [`Cache::get_into`], and on a hit the item's client flags and CAS token.
    pub fn get_meta_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<Option<ItemMeta>, Error> {
        out.clear();
        let who = self.inner.who()?;
        Ok(self
            .inner
            .eng
            .get(who, key, out)?
            .map(|(info, token)| meta(&info, token)))
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
    pub fn keys(&self) -> Keys {
        Keys {
            cache: self.clone(),
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
            let (ttl, info) = self.inner.eng.peek(who, &key, &mut value)?;
            let grace =
                (ttl.is_some() && info.grace > 0).then(|| Duration::from_secs(info.grace.into()));
            (!info.tagged).then_some(Entry {
                key,
                value,
                ttl,
                grace,
                flags: info.flags,
            })
        })
    }

    /// Counters summed over every process that ever attached, and per attached process.
    pub fn stats(&self) -> Stats {
        self.inner.eng.stats()
    }

    /// The mean size of the live items (8-byte header, extension words, key, value, padding
    /// to 8), from a sample of up to 10 000 of them; `None` when the arena is empty. What
    /// `--avg-item-size` should be: dead space awaiting eviction is not counted.
    pub fn sampled_item_size(&self) -> Option<u64> {
        self.inner.eng.sampled_item_size(10_000)
    }

    /// `true` if the daemon replaced this arena file: re-open the path to get the new one.
    pub fn is_retired(&self) -> bool {
        // Relaxed: an advisory flag.
        self.inner.eng.mem.load(H_RETIRED, Relaxed) != 0
    }
}

fn meta(info: &crate::protocol::item::ItemInfo, token: u64) -> ItemMeta {
    ItemMeta {
        flags: info.flags,
        cas: CasToken(token),
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
    /// Client flags (`SetOptions::flags`); 0 for most items.
    pub flags: u32,
}

impl Entry {
    /// The options that store this entry again as it was: its TTL, stale grace and client
    /// flags (for copies, dumps and restores).
    pub fn options(&self) -> crate::SetOptions {
        let o = crate::SetOptions::new().flags(self.flags);
        let o = match self.ttl {
            Some(t) => o.ttl(t),
            None => o,
        };
        match self.grace {
            Some(g) => o.stale_grace(g),
            None => o,
        }
    }
}

/// Streaming iterator over keys; see [`Cache::keys`]. It holds its own handle to the arena
/// (a clone of the `Cache`), so it can outlive the borrow that made it (a binding's cursor).
pub struct Keys {
    cache: Cache,
    bucket: u64,
    pending: Vec<Vec<u8>>,
}

impl Iterator for Keys {
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
