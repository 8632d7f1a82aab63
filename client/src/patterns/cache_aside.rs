//! Cache-aside with stampede protection and early refresh, options on writes, tags, stale
//! reads, warm-up and invalidation: the `Cache` methods the patterns add.

use std::time::Duration;

use super::lease::Leased;
use super::options::*;
use crate::cache::Cache;
use crate::protocol::index::{Mode, Outcome};
use crate::protocol::layout::{item_flags, item_meta, MAX_DELTA_MS, MAX_TAGS};
use crate::protocol::ops::Fetched;
use crate::Error;

/// A uniform draw in (0, 1] from a per-thread xorshift generator.
pub(super) fn uniform() -> f64 {
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

    /// [`Cache::replace`] with every option: stores only if `key` is present; `false` if it
    /// is not.
    pub fn replace_with(&self, key: &[u8], value: &[u8], opts: &SetOptions) -> Result<bool, Error> {
        self.set_ext(key, value, opts, 0, Mode::Replace)
    }

    /// As [`Cache::cas`] (stores only over the exact version `token` was read from), with
    /// options: the listener's `cas` keeps the client flags it is sent.
    pub fn cas_with(
        &self,
        key: &[u8],
        value: &[u8],
        token: crate::CasToken,
        opts: &SetOptions,
    ) -> Result<crate::CasOutcome, Error> {
        Ok(
            match self.store_ext(key, value, opts, 0, Mode::Cas(token.0))? {
                Outcome::Stored => crate::CasOutcome::Stored,
                Outcome::Exists => crate::CasOutcome::Exists,
                Outcome::NotStored => crate::CasOutcome::NotFound,
            },
        )
    }

    pub(super) fn set_ext(
        &self,
        key: &[u8],
        value: &[u8],
        o: &SetOptions,
        delta_ms: u32,
        mode: Mode,
    ) -> Result<bool, Error> {
        Ok(self.store_ext(key, value, o, delta_ms, mode)? == Outcome::Stored)
    }

    fn store_ext(
        &self,
        key: &[u8],
        value: &[u8],
        o: &SetOptions,
        delta_ms: u32,
        mode: Mode,
    ) -> Result<Outcome, Error> {
        if o.tags.len() > MAX_TAGS {
            return Err(Error::TooManyTags {
                count: o.tags.len(),
                max: MAX_TAGS,
            });
        }
        self.with_writer(|e, who, lane| {
            let mut ext = Vec::with_capacity(2 + o.tags.len());
            if o.grace.is_some() || !o.tags.is_empty() || delta_ms > 0 || o.flags != 0 {
                let grace = match o.grace {
                    Some(g) => e.grace_secs(e.expires_at(o.ttl)?, g)?,
                    None => 0,
                };
                ext.push(item_meta(
                    grace,
                    o.tags.len() as u8,
                    delta_ms.min(MAX_DELTA_MS),
                    o.flags != 0,
                ));
                ext.extend(o.tags.iter().map(|t| e.tag_word(t)));
                if o.flags != 0 {
                    ext.push(item_flags(o.flags));
                }
            }
            e.write_ext(who, lane, key, value, o.ttl, mode, &ext)
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
                Fetched::Stale(..) => Some(MaybeStale { value, stale: true }),
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
    /// # Ok::<(), Box<dyn std::error::Error>>(())
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
        let mut loader = Some(loader);
        let mut buf = Vec::new();
        let mut nap = Duration::from_millis(1);
        loop {
            match self.get_or_lease(key, opts, &mut buf)? {
                Leased::Hit | Leased::Stale => return Ok(buf),
                Leased::Acquired(lease) => {
                    let load = loader
                        .take()
                        .expect("the loader runs at most once per call");
                    let result = load();
                    match &result {
                        Ok(v) => {
                            self.fill_lease(key, lease, v, &opts.set)?;
                        }
                        Err(_) => self.release_lease(key, lease)?,
                    }
                    return result.map_err(LoadError::Loader);
                }
                Leased::Wait { retry_after } => {
                    std::thread::sleep(nap.min(retry_after));
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
        self.poison_lease(key)?;
        self.delete(key)
    }

    /// Takes the key's lease away from whoever holds it (design.md §2.6, "poison").
    pub(crate) fn poison_lease(&self, key: &[u8]) -> Result<(), Error> {
        self.with_engine(|e, _| {
            e.check_key(key)?;
            e.lease_poison(e.hash(key));
            Ok::<(), Error>(())
        })?
    }
}
