//! `larder.Cache`: one arena, shared by every process on the host that opens it.

use std::path::PathBuf;
use std::time::Duration;

use pyo3::exceptions::{PyKeyError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::convert::{key, ttl, value};
use crate::errors;
use crate::keys::KeyIter;
use larder::{CasOutcome, CasToken, Leased, LoadOptions, SetOptions};

/// Values up to this size are read into a buffer on the stack and copied once into the
/// new `bytes`; larger ones through a vector.
const STACK_READ: usize = 2048;

/// The default arena path (`$LARDER_ARENA`, `/run/larder/arena`, `$XDG_RUNTIME_DIR/larder/
/// arena`, `/dev/shm/larder-$UID/arena`: the first that applies), as larderd uses it.
#[pyfunction]
pub fn default_path() -> PathBuf {
    larder::default_arena_path()
}

/// A handle to a larder arena. Thread-safe and fork-safe: open it once (in a gunicorn
/// master with `--preload`, say) and use it in every worker.
#[pyclass(module = "larder._larder", frozen)]
pub struct Cache {
    inner: larder::Cache,
}

fn options(
    ttl_s: Option<f64>,
    grace: Option<f64>,
    tags: Option<Vec<Bound<'_, PyAny>>>,
) -> PyResult<SetOptions> {
    let mut o = SetOptions::new();
    if let Some(t) = ttl(ttl_s)? {
        o = o.ttl(t);
    }
    if let Some(g) = ttl(grace)? {
        o = o.stale_grace(g);
    }
    for t in tags.unwrap_or_default() {
        o = o.tag(key(&t)?);
    }
    Ok(o)
}

/// One of the three ways to store: set, add, replace (whether it stored).
type StoreFn = fn(&larder::Cache, &[u8], &[u8], &SetOptions) -> Result<bool, larder::Error>;

impl Cache {
    /// Reads `k`'s live value into a new `bytes`, or `None`.
    fn read<'py>(&self, py: Python<'py>, k: &[u8]) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let mut stack = [0u8; STACK_READ];
        let op = |e| errors::op(py, e);
        let Some(n) = self.inner.get_into_slice(k, &mut stack).map_err(op)? else {
            return Ok(None);
        };
        if n <= STACK_READ {
            return Ok(Some(PyBytes::new(py, &stack[..n])));
        }
        // Larger: read it again into a vector sized by the read itself (the value may have
        // changed since), then one copy into the bytes object.
        let mut v = Vec::with_capacity(n);
        Ok(if self.inner.get_into(k, &mut v).map_err(op)? {
            Some(PyBytes::new(py, &v))
        } else {
            None
        })
    }

    fn store(
        &self,
        py: Python<'_>,
        k: &Bound<'_, PyAny>,
        v: &Bound<'_, PyAny>,
        o: SetOptions,
        how: StoreFn,
    ) -> PyResult<bool> {
        let (k, v) = (key(k)?, value(v)?);
        // A write may wait for a segment or evict: let other Python threads run meanwhile.
        let inner = &self.inner;
        py.detach(|| how(inner, &k, &v, &o))
            .map_err(|e| errors::op(py, e))
    }
}

#[pymethods]
impl Cache {
    /// Attaches to the arena at `path` (default: `larder.default_path()`).
    #[new]
    #[pyo3(signature = (path=None))]
    fn new(py: Python<'_>, path: Option<PathBuf>) -> PyResult<Self> {
        let path = path.unwrap_or_else(larder::default_arena_path);
        let inner = py
            .detach(|| larder::Cache::open(&path))
            .map_err(|e| errors::open(py, e))?;
        Ok(Cache { inner })
    }

    /// Creates a new arena file of `capacity` bytes at `path` and attaches to it (larderd
    /// normally does this; for tests and programs that run without it).
    #[staticmethod]
    #[pyo3(signature = (path, capacity, *, max_key=250, max_value=None, segment_size=None, max_processes=256, huge_pages=true))]
    #[allow(clippy::too_many_arguments)]
    fn create(
        py: Python<'_>,
        path: PathBuf,
        capacity: u64,
        max_key: u32,
        max_value: Option<u32>,
        segment_size: Option<u64>,
        max_processes: u32,
        huge_pages: bool,
    ) -> PyResult<Self> {
        let mut cfg = larder::Config::new(capacity)
            .max_key_len(max_key)
            .max_processes(max_processes)
            .huge_pages(huge_pages);
        if let Some(v) = max_value {
            cfg = cfg.max_value_len(v);
        }
        if let Some(s) = segment_size {
            cfg = cfg.segment_size(s);
        }
        let inner = py
            .detach(|| larder::Cache::create(&path, &cfg))
            .map_err(|e| errors::open(py, e))?;
        Ok(Cache { inner })
    }

    /// The arena file this handle is attached to.
    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.path().to_owned()
    }

    /// `(max_key, max_value)`: the longest key and value the arena accepts, in bytes.
    #[getter]
    fn limits(&self) -> (u32, u32) {
        self.inner.limits()
    }

    /// True once larderd has replaced this arena (open the path again).
    fn is_retired(&self) -> bool {
        self.inner.is_retired()
    }

    /// The value of `key`, or `default` when it is absent or expired.
    #[pyo3(signature = (key, default=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let k = crate::convert::key(key)?;
        Ok(match self.read(py, &k)? {
            Some(b) => Some(b.into_any()),
            None => default,
        })
    }

    /// Stores `value` under `key`; `ttl` in seconds (None: no expiry), `stale_grace`
    /// seconds during which `get_stale` and `get_or_set` may still serve it after expiry,
    /// `tags` to invalidate it with `invalidate_tag`.
    #[pyo3(signature = (key, value, ttl=None, *, stale_grace=None, tags=None))]
    fn set(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<f64>,
        stale_grace: Option<f64>,
        tags: Option<Vec<Bound<'_, PyAny>>>,
    ) -> PyResult<()> {
        let o = options(ttl, stale_grace, tags)?;
        self.store(py, key, value, o, |c, k, v, o| {
            c.set_with(k, v, o).map(|()| true)
        })
        .map(|_| ())
    }

    /// Stores only if `key` has no live value; True if stored.
    #[pyo3(signature = (key, value, ttl=None, *, stale_grace=None, tags=None))]
    fn add(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<f64>,
        stale_grace: Option<f64>,
        tags: Option<Vec<Bound<'_, PyAny>>>,
    ) -> PyResult<bool> {
        let o = options(ttl, stale_grace, tags)?;
        self.store(py, key, value, o, larder::Cache::add_with)
    }

    /// Stores only if `key` has a live value; True if stored.
    #[pyo3(signature = (key, value, ttl=None, *, stale_grace=None, tags=None))]
    fn replace(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<f64>,
        stale_grace: Option<f64>,
        tags: Option<Vec<Bound<'_, PyAny>>>,
    ) -> PyResult<bool> {
        let o = options(ttl, stale_grace, tags)?;
        self.store(py, key, value, o, larder::Cache::replace_with)
    }

    /// `(value, cas_token)` of `key`, or None.
    fn gets<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Option<(Bound<'py, PyBytes>, u64)>> {
        let k = crate::convert::key(key)?;
        Ok(self
            .inner
            .gets(&k)
            .map_err(|e| errors::op(py, e))?
            .map(|(v, t)| (PyBytes::new(py, &v), t.0)))
    }

    /// Stores `value` only if `key` is still the item `token` (from `gets`) names. True if
    /// stored; False if it changed since or is gone.
    #[pyo3(signature = (key, value, token, ttl=None))]
    fn cas(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        token: u64,
        ttl: Option<f64>,
    ) -> PyResult<bool> {
        let (k, v, t) = (
            crate::convert::key(key)?,
            crate::convert::value(value)?,
            crate::convert::ttl(ttl)?,
        );
        let inner = &self.inner;
        let r = py.detach(|| inner.cas(&k, &v, CasToken(token), t));
        Ok(r.map_err(|e| errors::op(py, e))? == CasOutcome::Stored)
    }

    /// Deletes `key`; True if it was there.
    fn delete(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let k = crate::convert::key(key)?;
        self.inner.delete(&k).map_err(|e| errors::op(py, e))
    }

    /// For a writer that changed the backing store: deletes `key` and takes over its lease,
    /// so a `get_or_set` loading it meanwhile does not cache the older value.
    fn invalidate(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let k = crate::convert::key(key)?;
        self.inner.invalidate(&k).map_err(|e| errors::op(py, e))
    }

    /// Makes every item stored with `tag` miss from now on, in every process.
    fn invalidate_tag(&self, py: Python<'_>, tag: &Bound<'_, PyAny>) -> PyResult<()> {
        let t = crate::convert::key(tag)?;
        self.inner
            .invalidate_tag(&*t)
            .map_err(|e| errors::op(py, e))
    }

    /// Adds `delta` to the decimal value of `key` atomically across processes (wrapping at
    /// 2**64); the new value, or None if absent. `larder.NotANumber` if it is not one.
    #[pyo3(signature = (key, delta=1))]
    fn incr(&self, py: Python<'_>, key: &Bound<'_, PyAny>, delta: u64) -> PyResult<Option<u64>> {
        let k = crate::convert::key(key)?;
        self.inner.incr(&k, delta).map_err(|e| errors::op(py, e))
    }

    /// Subtracts `delta`, stopping at 0; otherwise as `incr`.
    #[pyo3(signature = (key, delta=1))]
    fn decr(&self, py: Python<'_>, key: &Bound<'_, PyAny>, delta: u64) -> PyResult<Option<u64>> {
        let k = crate::convert::key(key)?;
        self.inner.decr(&k, delta).map_err(|e| errors::op(py, e))
    }

    /// Gives `key` a new TTL (None: never expires); True if it was there.
    #[pyo3(signature = (key, ttl=None))]
    fn touch(&self, py: Python<'_>, key: &Bound<'_, PyAny>, ttl: Option<f64>) -> PyResult<bool> {
        let (k, t) = (crate::convert::key(key)?, crate::convert::ttl(ttl)?);
        self.inner.touch(&k, t).map_err(|e| errors::op(py, e))
    }

    /// Seconds `key` has left (`math.inf` if it never expires), or None if absent.
    fn ttl(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Option<f64>> {
        let k = crate::convert::key(key)?;
        Ok(self
            .inner
            .ttl(&k)
            .map_err(|e| errors::op(py, e))?
            .map(|t| t.map_or(f64::INFINITY, |d| d.as_secs_f64())))
    }

    /// `(value, stale)` of `key` even past its TTL while within its stale grace, or None.
    fn get_stale<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Option<(Bound<'py, PyBytes>, bool)>> {
        let k = crate::convert::key(key)?;
        Ok(self
            .inner
            .get_stale(&k)
            .map_err(|e| errors::op(py, e))?
            .map(|s| (PyBytes::new(py, &s.value), s.stale)))
    }

    /// The keys found among `keys`, as a dict of key (as given) to value.
    fn get_many<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let given: Vec<Bound<'py, PyAny>> = keys.try_iter()?.collect::<PyResult<_>>()?;
        let bytes = given
            .iter()
            .map(|k| crate::convert::key(k))
            .collect::<PyResult<Vec<_>>>()?;
        let inner = &self.inner;
        let found = py
            .detach(|| inner.get_multi(&bytes))
            .map_err(|e| errors::op(py, e))?;
        let out = PyDict::new(py);
        for (k, v) in given.iter().zip(found) {
            if let Some(v) = v {
                out.set_item(k, PyBytes::new(py, &v))?;
            }
        }
        Ok(out)
    }

    /// Stores every `key: value` of `mapping`; returns the keys that could not be stored
    /// (the arena full), as Django's `set_many` does.
    #[pyo3(signature = (mapping, ttl=None))]
    fn set_many<'py>(
        &self,
        py: Python<'py>,
        mapping: &Bound<'py, PyAny>,
        ttl: Option<f64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let o = options(ttl, None, None)?;
        let items = mapping.call_method0("items")?;
        let (mut given, mut pairs) = (Vec::new(), Vec::new());
        for kv in items.try_iter()? {
            let (k, v): (Bound<'py, PyAny>, Bound<'py, PyAny>) = kv?.extract()?;
            let kb = crate::convert::key(&k)?.into_owned();
            let vb = crate::convert::value(&v)?.into_owned();
            given.push(k);
            pairs.push((kb, vb));
        }
        let inner = &self.inner;
        let results: Vec<Result<(), larder::Error>> = py.detach(|| {
            pairs
                .iter()
                .map(|(k, v)| inner.set_with(k, v, &o))
                .collect()
        });
        let failed = PyList::empty(py);
        for (k, r) in given.iter().zip(results) {
            match r {
                Ok(()) => {}
                Err(larder::Error::ArenaFull) => failed.append(k)?,
                Err(e) => return Err(errors::op(py, e)),
            }
        }
        Ok(failed)
    }

    /// Deletes every key of `keys`; returns how many were there.
    fn delete_many(&self, py: Python<'_>, keys: &Bound<'_, PyAny>) -> PyResult<usize> {
        let bytes = keys
            .try_iter()?
            .map(|k| k.and_then(|k| crate::convert::key(&k).map(|c| c.into_owned())))
            .collect::<PyResult<Vec<_>>>()?;
        let inner = &self.inner;
        let r: Result<usize, larder::Error> = py.detach(|| {
            let mut n = 0;
            for k in &bytes {
                n += usize::from(inner.delete(k)?);
            }
            Ok(n)
        });
        r.map_err(|e| errors::op(py, e))
    }

    /// Removes every item of the arena, for every process; returns how many there were.
    fn flush(&self, py: Python<'_>) -> PyResult<u64> {
        let inner = &self.inner;
        py.detach(|| inner.flush()).map_err(|e| errors::op(py, e))
    }

    /// The keys present (bytes), those matching the glob `pattern` if given (`*`, `?`,
    /// `[set]`, `[!set]`, `\\` escapes). Streams; keys changed meanwhile may or may not appear.
    #[pyo3(signature = (pattern=None))]
    fn keys(&self, pattern: Option<&Bound<'_, PyAny>>) -> PyResult<KeyIter> {
        let glob = match pattern {
            None => None,
            Some(p) => Some(
                larder::Glob::new(&crate::convert::key(p)?)
                    .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?,
            ),
        };
        Ok(KeyIter {
            keys: std::sync::Mutex::new(self.inner.keys()),
            glob,
        })
    }

    /// The arena's statistics as a dict (totals over every process that ever attached).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.stats();
        let t = &s.totals;
        let d = PyDict::new(py);
        for (name, v) in [
            ("hits", t.hits),
            ("misses", t.misses),
            ("sets", t.sets),
            ("deletes", t.deletes),
            ("touches", t.touches),
            ("evictions", t.evictions),
            ("expired", t.expired),
            ("index_evictions", t.index_evictions),
            ("rejected", t.rejected),
            ("torn_retries", t.torn_retries),
            ("corrupt", t.corrupt),
            ("reclaimed", t.reclaimed),
            ("items", s.items),
            ("bytes_used", s.bytes_used),
            ("capacity", s.capacity),
            ("arena_size", s.arena_size),
            ("segments", u64::from(s.segments)),
            ("free_segments", u64::from(s.free_segments)),
            (
                "processes",
                s.processes.iter().filter(|p| p.alive).count() as u64,
            ),
        ] {
            d.set_item(name, v)?;
        }
        Ok(d)
    }

    /// The value of `key`; when there is none, `loader()` is called — by one caller at a
    /// time across every process on the host; the others wait for its value — and what it
    /// returns (bytes-like) is stored with `ttl` and returned. An exception from `loader`
    /// propagates and nothing is cached. `lease`: seconds a loader may take before another
    /// caller may try in its place.
    #[pyo3(signature = (key, loader, ttl=None, *, stale_grace=None, tags=None, lease=10.0))]
    #[allow(clippy::too_many_arguments)]
    fn get_or_set<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        loader: &Bound<'py, PyAny>,
        ttl: Option<f64>,
        stale_grace: Option<f64>,
        tags: Option<Vec<Bound<'py, PyAny>>>,
        lease: f64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let k = crate::convert::key(key)?;
        let set = options(ttl, stale_grace, tags)?;
        let lease = crate::convert::ttl(Some(lease))?.unwrap_or(Duration::from_secs(10));
        let lo = LoadOptions::new().lease(lease);
        let mut buf = Vec::new();
        let mut nap = Duration::from_millis(1);
        loop {
            match self
                .inner
                .get_or_lease(&k, &lo, &mut buf)
                .map_err(|e| errors::op(py, e))?
            {
                Leased::Hit | Leased::Stale => return Ok(PyBytes::new(py, &buf)),
                Leased::Acquired(l) => {
                    let loaded = loader
                        .call0()
                        .and_then(|v| crate::convert::value(&v).map(|c| c.into_owned()));
                    let v = match loaded {
                        Ok(v) => v,
                        Err(e) => {
                            let _ = self.inner.release_lease(&k, l);
                            return Err(e);
                        }
                    };
                    let inner = &self.inner;
                    py.detach(|| inner.fill_lease(&k, l, &v, &set))
                        .map_err(|e| errors::op(py, e))?;
                    return Ok(PyBytes::new(py, &v));
                }
                Leased::Wait { retry_after } => {
                    let d = nap.min(retry_after);
                    py.detach(|| std::thread::sleep(d));
                    // Ctrl-C while waiting raises KeyboardInterrupt here.
                    py.check_signals()?;
                    nap = (nap * 2).min(Duration::from_millis(50));
                }
            }
        }
    }

    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let k = crate::convert::key(key)?;
        self.read(py, &k)?
            .ok_or_else(|| PyKeyError::new_err(key.clone().unbind()))
    }

    fn __setitem__(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.store(py, key, value, SetOptions::new(), |c, k, v, o| {
            c.set_with(k, v, o).map(|()| true)
        })
        .map(|_| ())
    }

    fn __delitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.delete(py, key)? {
            Ok(())
        } else {
            Err(PyKeyError::new_err(key.clone().unbind()))
        }
    }

    fn __contains__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let k = crate::convert::key(key)?;
        let mut probe = [0u8; 0];
        Ok(self
            .inner
            .get_into_slice(&k, &mut probe)
            .map_err(|e| errors::op(py, e))?
            .is_some())
    }

    fn __repr__(&self) -> String {
        format!("larder.Cache({:?})", self.inner.path())
    }

    /// Not iterable by itself: use `keys()`.
    fn __iter__(&self) -> PyResult<()> {
        Err(PyTypeError::new_err(
            "larder.Cache is not iterable; use cache.keys()",
        ))
    }
}
