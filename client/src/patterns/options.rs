//! How to store and load: [`SetOptions`], [`LoadOptions`], and what loading returns.

use std::time::Duration;

use crate::Error;

/// How to store an item: TTL, stale grace and tags. Built with [`SetOptions::new`].
///
/// ```
/// use std::time::Duration;
/// let o = larder::SetOptions::new().ttl(Duration::from_secs(60)).stale_grace(Duration::from_secs(30)).tag("user:42");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetOptions {
    pub(crate) ttl: Option<Duration>,
    pub(crate) grace: Option<Duration>,
    pub(crate) tags: Vec<Vec<u8>>,
    pub(crate) flags: u32,
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
    /// After expiry, keep serving the value to [`crate::Cache::get_stale`] for this long.
    pub fn stale_grace(mut self, grace: Duration) -> SetOptions {
        self.grace = Some(grace);
        self
    }
    /// Tag the item: [`crate::Cache::invalidate_tag`] makes every item with the tag miss. At most 8.
    pub fn tag(mut self, tag: impl AsRef<[u8]>) -> SetOptions {
        self.tags.push(tag.as_ref().to_vec());
        self
    }
    /// Keep 32 bits of client flags with the item (memcached's: most memcached clients record
    /// the value's type in them). Readers through the library see the value unchanged;
    /// [`crate::Cache::get_meta_into`] and the memcached listener hand the flags back. Flags
    /// other than 0 cost the item one 8-byte word.
    pub fn flags(mut self, flags: u32) -> SetOptions {
        self.flags = flags;
        self
    }
}

/// How [`crate::Cache::get_or_load`] behaves.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadOptions {
    pub(crate) set: SetOptions,
    pub(crate) lease: Duration,
    pub(crate) beta: Option<f64>,
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

/// A failure of [`crate::Cache::get_or_load`]: the cache's, or the loader's own (never cached).
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

/// A value read by [`crate::Cache::get_stale`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaybeStale {
    pub value: Vec<u8>,
    /// Past its TTL, inside its stale-grace period.
    pub stale: bool,
}
