//! The caching patterns applications use, each one call: cache-aside with stampede
//! protection and early refresh, stale reads, tags, write-through, write-behind, warm-up.

use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cache::Cache;
use crate::protocol::index::Mode;
use crate::protocol::layout::{item_meta, MAX_DELTA_MS, MAX_TAGS};
use crate::protocol::lease::LeaseTry;
use crate::protocol::ops::Fetched;
use crate::Error;

/// How to store an item: TTL, stale grace and tags. Built with [`SetOptions::new`].
///
/// ```
/// use std::time::Duration;
/// let o = larder::SetOptions::new().ttl(Duration::from_secs(60)).stale_grace(Duration::from_secs(30)).tag("user:42");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetOptions {
    ttl: Option<Duration>,
    grace: Option<Duration>,
    tags: Vec<Vec<u8>>,
}

impl SetOptions {
    pub fn new() -> SetOptions {
        SetOptions::default()
    }
    /// Expire after `ttl` (rounded up to whole seconds).
    pub fn ttl(mut self, ttl: Duration) -> SetOptions {
        self.ttl = Some(ttl);
        self
    }
    /// After expiry, keep serving the value to [`Cache::get_stale`] for this long.
    pub fn stale_grace(mut self, grace: Duration) -> SetOptions {
        self.grace = Some(grace);
        self
    }
    /// Tag the item: [`Cache::invalidate_tag`] makes every item with the tag miss. At most 8.
    pub fn tag(mut self, tag: impl AsRef<[u8]>) -> SetOptions {
        self.tags.push(tag.as_ref().to_vec());
        self
    }
}

/// How [`Cache::get_or_load`] behaves.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadOptions {
    set: SetOptions,
    lease: Duration,
    beta: Option<f64>,
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions {
            set: SetOptions::default(),
            lease: Duration::from_secs(10),
            beta: None,
        }
    }
}

impl LoadOptions {
    pub fn new() -> LoadOptions {
        LoadOptions::default()
    }
    /// TTL, grace and tags of the stored value.
    pub fn store(mut self, set: SetOptions) -> LoadOptions {
        self.set = set;
        self
    }
    /// How long one caller may hold the right to load before others take over (default 10 s).
    /// A loader that dies or hangs blocks others for at most this long.
    pub fn lease(mut self, lease: Duration) -> LoadOptions {
        self.lease = lease;
        self
    }
    /// Probabilistic early refresh (XFetch, Vattani et al. 2015): a hit refreshes the value
    /// early with probability growing as expiry nears, scaled by how long the last load
    /// took and by `beta` (1.0 is the usual choice; larger refreshes earlier).
    pub fn early_refresh(mut self, beta: f64) -> LoadOptions {
        self.beta = Some(beta);
        self
    }
}

/// A failure of [`Cache::get_or_load`]: the cache's, or the loader's own (never cached).
#[derive(Debug)]
pub enum LoadError<E> {
    Cache(Error),
    Loader(E),
}

impl<E: std::fmt::Display> std::fmt::Display for LoadError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Cache(e) => write!(f, "cache: {e}"),
            LoadError::Loader(e) => write!(f, "loader: {e}"),
        }
    }
}

impl<E: std::fmt::Debug + std::fmt::Display> std::error::Error for LoadError<E> {}

impl<E> From<Error> for LoadError<E> {
    fn from(e: Error) -> Self {
        LoadError::Cache(e)
    }
}

/// A value read by [`Cache::get_stale`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaybeStale {
    pub value: Vec<u8>,
    /// Past its TTL, inside its stale-grace period.
    pub stale: bool,
}

/// A uniform draw in (0, 1] from a per-thread xorshift generator.
fn uniform() -> f64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(
            (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) ^ (std::process::id() as u64) << 32) | 1,
        );
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        ((x >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    })
}

impl Cache {
    /// Stores with options: TTL, stale grace, tags.
    pub fn set_with(&self, key: &[u8], value: &[u8], opts: &SetOptions) -> Result<(), Error> {
        self.set_ext(key, value, opts, 0, Mode::Set).map(|_| ())
    }

    /// As [`Cache::add`] (stores only if `key` has no live value; `true` if stored), with
    /// options.
    pub fn add_with(&self, key: &[u8], value: &[u8], opts: &SetOptions) -> Result<bool, Error> {
        self.set_ext(key, value, opts, 0, Mode::Add)
    }

    fn set_ext(
        &self,
        key: &[u8],
        value: &[u8],
        o: &SetOptions,
        delta_ms: u32,
        mode: Mode,
    ) -> Result<bool, Error> {
        if o.tags.len() > MAX_TAGS {
            return Err(Error::TooManyTags {
                count: o.tags.len(),
                max: MAX_TAGS,
            });
        }
        self.with_writer(|e, who, lane| {
            let mut ext = Vec::with_capacity(1 + o.tags.len());
            if o.grace.is_some() || !o.tags.is_empty() || delta_ms > 0 {
                let grace = match o.grace {
                    Some(g) => e.grace_secs(e.expires_at(o.ttl)?, g)?,
                    None => 0,
                };
                ext.push(item_meta(
                    grace,
                    o.tags.len() as u8,
                    delta_ms.min(MAX_DELTA_MS),
                ));
                ext.extend(o.tags.iter().map(|t| e.tag_word(t)));
            }
            e.write_ext(who, lane, key, value, o.ttl, mode, &ext)
                .map(|o| o == crate::protocol::index::Outcome::Stored)
        })?
    }

    /// Makes every item stored with `tag` miss from now on, in every process, in O(1): the
    /// tag's version counter moves on. (Tags share 1024 counters by hash, so invalidating
    /// one tag may also drop items of another tag that shares its counter: extra misses,
    /// never stale hits.)
    pub fn invalidate_tag(&self, tag: impl AsRef<[u8]>) -> Result<(), Error> {
        self.with_engine(|e, _| e.invalidate_tag(tag.as_ref()))
    }

    /// The value of `key` even if it expired, while within its stale-grace period.
    pub fn get_stale(&self, key: &[u8]) -> Result<Option<MaybeStale>, Error> {
        self.with_engine(|e, who| {
            e.check_key(key)?;
            let mut value = Vec::new();
            Ok(match e.fetch(who, key, e.hash(key), &mut value) {
                Fetched::Live(..) => Some(MaybeStale {
                    value,
                    stale: false,
                }),
                Fetched::Stale => Some(MaybeStale { value, stale: true }),
                Fetched::Missing => None,
            })
        })?
    }

    /// Cache-aside with stampede protection: returns the cached value, or runs `loader`
    /// and caches its result with `ttl`. Across all processes only one caller at a time runs
    /// the loader for a key; the others wait (sleeping, with backoff) for its value.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("larder-goi-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// # let path = dir.join("arena");
    /// # let _ = std::fs::remove_file(&path);
    /// let cache = larder::Cache::create(&path, &larder::Config::new(8 << 20).max_value_len(4096))?;
    /// let v = cache.get_or_insert_with(b"answer", None, || Ok::<_, std::io::Error>(b"42".to_vec()));
    /// assert_eq!(v.unwrap(), b"42");
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), larder::Error>(())
    /// ```
    pub fn get_or_insert_with<E>(
        &self,
        key: &[u8],
        ttl: Option<Duration>,
        loader: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<Vec<u8>, LoadError<E>> {
        let mut set = SetOptions::new();
        set.ttl = ttl;
        self.get_or_load(key, &LoadOptions::new().store(set), loader)
    }

    /// [`Cache::get_or_insert_with`] with every option: the stored value's TTL, grace and
    /// tags; the lease time; early refresh. While one caller refreshes an expired value that
    /// is still within its grace period, the others get the stale value at once. Loader
    /// errors are returned and not cached.
    pub fn get_or_load<E>(
        &self,
        key: &[u8],
        opts: &LoadOptions,
        loader: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<Vec<u8>, LoadError<E>> {
        let hash = self.with_engine(|e, _| e.check_key(key).map(|()| e.hash(key)))??;
        let lease_ms = self.with_engine(|e, _| e.lease_ms(opts.lease))??;
        let mut loader = Some(loader);
        let mut buf = Vec::new();
        let mut nap = Duration::from_millis(1);
        loop {
            buf.clear();
            let found = self.with_engine(|e, who| e.fetch(who, key, hash, &mut buf))?;
            let refresh_early = match &found {
                Fetched::Live(info, _) => match opts.beta {
                    Some(beta) if info.expires_at != 0 => self.with_engine(|e, _| {
                        let left_ms =
                            (u64::from(info.expires_at) * 1000).saturating_sub(e.now_ms()) as f64;
                        let delta = f64::from(info.delta_ms.max(1));
                        -delta * beta * uniform().ln() >= left_ms
                    })?,
                    _ => false,
                },
                _ => true,
            };
            if !refresh_early {
                return Ok(buf);
            }
            match self.with_engine(|e, _| e.lease_try(hash, lease_ms))? {
                LeaseTry::Acquired(mine) => {
                    let load = loader
                        .take()
                        .expect("the loader runs at most once per call");
                    let started = Instant::now();
                    let result = load();
                    let took = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
                    let stored = match &result {
                        Ok(v) => self
                            .set_ext(key, v, &opts.set, took.max(1), Mode::Set)
                            .map(|_| ()),
                        Err(_) => Ok(()),
                    };
                    // Released after the set, so a waiter that sees the lease gone finds the value.
                    let poisoned = self.with_engine(|e, _| {
                        let still_ours = e.lease_current(hash) == mine;
                        e.lease_release(hash, mine);
                        !still_ours
                    })?;
                    if poisoned && result.is_ok() {
                        // A write-through invalidated the key while we loaded: what we
                        // loaded may predate it. Do not leave it cached.
                        self.delete(key)?;
                    }
                    stored?;
                    return result.map_err(LoadError::Loader);
                }
                LeaseTry::Held { until_ms } => {
                    if matches!(found, Fetched::Live(..) | Fetched::Stale) {
                        // Someone else refreshes: serve what we have.
                        return Ok(buf);
                    }
                    let left = until_ms.saturating_sub(self.with_engine(|e, _| e.now_ms())?);
                    std::thread::sleep(nap.min(Duration::from_millis(left.max(1))));
                    nap = (nap * 2).min(Duration::from_millis(50));
                }
            }
        }
    }

    /// Bulk preload: stores every `(key, value, ttl)`; returns how many were stored. Stops at
    /// the first error (earlier items stay stored).
    pub fn warm<K, V, I>(&self, items: I) -> Result<usize, Error>
    where
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
        I: IntoIterator<Item = (K, V, Option<Duration>)>,
    {
        let mut n = 0;
        for (k, v, ttl) in items {
            self.set(k.as_ref(), v.as_ref(), ttl)?;
            n += 1;
        }
        Ok(n)
    }

    /// Invalidates `key` for a writer that changed the backing store: deletes it and takes
    /// over its lease, so a concurrent loader that read the store before the change does not
    /// leave its older value cached.
    pub fn invalidate(&self, key: &[u8]) -> Result<bool, Error> {
        self.with_engine(|e, _| {
            e.check_key(key)?;
            e.lease_poison(e.hash(key));
            Ok::<(), Error>(())
        })??;
        self.delete(key)
    }
}

/// The backing store behind write-through and write-behind.
pub trait Store {
    type Error: std::fmt::Debug + Send + 'static;
    fn write(&self, key: &[u8], value: &[u8]) -> Result<(), Self::Error>;
    fn remove(&self, key: &[u8]) -> Result<(), Self::Error>;
}

/// A shared store is a store (so the application can keep a handle to it).
impl<S: Store + ?Sized> Store for Arc<S> {
    type Error = S::Error;
    fn write(&self, key: &[u8], value: &[u8]) -> Result<(), Self::Error> {
        (**self).write(key, value)
    }
    fn remove(&self, key: &[u8]) -> Result<(), Self::Error> {
        (**self).remove(key)
    }
}

/// A failure of a write-through or write-behind write.
#[derive(Debug)]
pub enum WriteError<E> {
    /// The store refused the write; the cache was not changed.
    Store(E),
    Cache(Error),
}

/// Write-through: the store first, then the cache entry is invalidated (never set), so two
/// interleaved writers cannot leave the older value cached, and a store failure leaves the
/// cache unchanged. Reads go through [`Cache::get_or_load`].
pub struct WriteThrough<S: Store> {
    cache: Cache,
    store: S,
}

impl<S: Store> WriteThrough<S> {
    pub fn new(cache: Cache, store: S) -> Self {
        WriteThrough { cache, store }
    }
    pub fn write(&self, key: &[u8], value: &[u8]) -> Result<(), WriteError<S::Error>> {
        self.store.write(key, value).map_err(WriteError::Store)?;
        self.cache.invalidate(key).map_err(WriteError::Cache)?;
        Ok(())
    }
    pub fn remove(&self, key: &[u8]) -> Result<(), WriteError<S::Error>> {
        self.store.remove(key).map_err(WriteError::Store)?;
        self.cache.invalidate(key).map_err(WriteError::Cache)?;
        Ok(())
    }
    pub fn cache(&self) -> &Cache {
        &self.cache
    }
    pub fn store(&self) -> &S {
        &self.store
    }
}

enum Job {
    Write(Vec<u8>, Vec<u8>),
    Remove(Vec<u8>),
}

/// A store write that failed: the key and the store's error.
pub type Failed<E> = (Vec<u8>, E);

struct Pending<E> {
    queued: usize,
    failed: Vec<Failed<E>>,
}

/// Write-behind: the cache is updated at once and the store later, by a background thread
/// fed through a bounded queue (a full queue makes writers wait). [`WriteBehind::flush`]
/// waits for the queue and returns every store error since the last flush; dropping flushes
/// and reports remaining errors on stderr — an error is never silently dropped.
pub struct WriteBehind<S: Store + Send + 'static> {
    cache: Cache,
    tx: Option<SyncSender<Job>>,
    state: Arc<(Mutex<Pending<S::Error>>, Condvar)>,
    worker: Option<JoinHandle<()>>,
}

impl<S: Store + Send + 'static> WriteBehind<S> {
    /// Starts the background writer with a queue of `capacity` writes.
    pub fn new(cache: Cache, store: S, capacity: usize) -> Self {
        let (tx, rx) = sync_channel::<Job>(capacity.max(1));
        let state = Arc::new((
            Mutex::new(Pending {
                queued: 0,
                failed: Vec::new(),
            }),
            Condvar::new(),
        ));
        let st = state.clone();
        let worker = std::thread::Builder::new()
            .name("larder-write-behind".into())
            .spawn(move || {
                for job in rx {
                    let (key, r) = match job {
                        Job::Write(k, v) => {
                            let r = store.write(&k, &v);
                            (k, r)
                        }
                        Job::Remove(k) => {
                            let r = store.remove(&k);
                            (k, r)
                        }
                    };
                    let (m, cv) = &*st;
                    let mut p = m.lock().unwrap_or_else(|e| e.into_inner());
                    if let Err(e) = r {
                        p.failed.push((key, e));
                    }
                    p.queued -= 1;
                    cv.notify_all();
                }
            })
            .expect("spawning the write-behind thread");
        WriteBehind {
            cache,
            tx: Some(tx),
            state,
            worker: Some(worker),
        }
    }

    fn enqueue(&self, job: Job) {
        self.state
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .queued += 1;
        let sent = self.tx.as_ref().map(|tx| tx.send(job));
        assert!(
            matches!(sent, Some(Ok(()))),
            "the write-behind thread is gone"
        );
    }

    /// Stores in the cache now (with `ttl`) and queues the store write.
    pub fn write(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<(), Error> {
        self.cache.set(key, value, ttl)?;
        self.enqueue(Job::Write(key.to_vec(), value.to_vec()));
        Ok(())
    }

    /// Deletes from the cache now and queues the store removal.
    pub fn remove(&self, key: &[u8]) -> Result<(), Error> {
        self.cache.delete(key)?;
        self.enqueue(Job::Remove(key.to_vec()));
        Ok(())
    }

    /// Waits until every queued write reached the store; returns the ones that failed.
    pub fn flush(&self) -> Result<(), Vec<Failed<S::Error>>> {
        let (m, cv) = &*self.state;
        let mut p = m.lock().unwrap_or_else(|e| e.into_inner());
        while p.queued > 0 {
            p = cv.wait(p).unwrap_or_else(|e| e.into_inner());
        }
        let failed = std::mem::take(&mut p.failed);
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed)
        }
    }
}

impl<S: Store + Send + 'static> Drop for WriteBehind<S> {
    fn drop(&mut self) {
        if let Err(failed) = self.flush() {
            for (key, e) in failed {
                eprintln!(
                    "larder write-behind: store write of key {:?} failed: {e:?}",
                    String::from_utf8_lossy(&key)
                );
            }
        }
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}
