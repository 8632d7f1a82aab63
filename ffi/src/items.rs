//! Operations on items: get (into a caller buffer, or a library-owned one), stale get,
//! set / add / replace with options, gets + cas, delete, invalidation, counters, touch, ttl,
//! get_multi and flush.

use std::cell::Cell;

use larder::{Cache, CasOutcome, CasToken, SetOptions};

use crate::args::{bytes, copy_out, handle, input, ms, out};
use crate::handle::larder_cache;
use crate::status::{guard, larder_status, larder_status::*, Failure};

/// A byte string: `len` bytes at `ptr` (NULL allowed when `len` is 0).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
#[allow(non_camel_case_types)]
pub struct larder_bytes {
    pub ptr: *const u8,
    pub len: usize,
}

/// How to store an item. All zero (or a NULL pointer to it) is "no TTL, no grace, no tags".
#[repr(C)]
#[derive(Clone, Copy, Debug)]
#[allow(non_camel_case_types)]
pub struct larder_set_options {
    /// Expire this many milliseconds from now (rounded up to whole seconds); 0: never.
    pub ttl_ms: u64,
    /// After expiry, serve the value as stale for this long (`larder_get_stale`, leases).
    pub stale_grace_ms: u64,
    /// `ntags` tags (at most 8); `larder_invalidate_tag` makes every item with a tag miss.
    pub tags: *const larder_bytes,
    pub ntags: usize,
    /// Client flags: 32 opaque bits kept with the item, memcached's (the listener shows
    /// them), which the bindings use for the value's type (docs/bindings.md); 0: none.
    pub flags: u32,
}

/// One value of `larder_get_multi`: `found` is 1 with `data[..len]` malloc'd by larder (free
/// it with `larder_free`), or 0 with `data` NULL.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
#[allow(non_camel_case_types)]
pub struct larder_value {
    pub data: *mut u8,
    pub len: usize,
    pub found: i32,
}

thread_local! {
    /// Each thread's read buffer: values are read into it, then copied to the caller. Taken
    /// out for the call (a loader that calls larder again gets a fresh one, not a panic).
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Runs `read` with this thread's scratch buffer.
pub(crate) fn with_scratch<R>(read: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut buf = SCRATCH.take();
    let r = read(&mut buf);
    // Keep a buffer that grew for one large value from pinning its memory for ever.
    if buf.capacity() > 1 << 20 {
        buf = Vec::new();
    }
    SCRATCH.set(buf);
    r
}

/// # Safety
/// `opts` is NULL or points to a valid struct whose `tags` (when `ntags > 0`) point to
/// `ntags` valid `larder_bytes`.
pub(crate) unsafe fn set_options(opts: *const larder_set_options) -> Result<SetOptions, Failure> {
    let mut o = SetOptions::new();
    // SAFETY: NULL or a valid struct, by the caller's promise.
    let Some(opts) = (unsafe { input(opts) }) else {
        return Ok(o);
    };
    if let Some(t) = ms(opts.ttl_ms) {
        o = o.ttl(t);
    }
    if let Some(g) = ms(opts.stale_grace_ms) {
        o = o.stale_grace(g);
    }
    if opts.flags != 0 {
        o = o.flags(opts.flags);
    }
    if opts.ntags > 0 {
        if opts.tags.is_null() {
            return Err(crate::args::null("opts->tags"));
        }
        // SAFETY: `ntags` valid larder_bytes at `tags`, by the caller's promise.
        let tags = unsafe { std::slice::from_raw_parts(opts.tags, opts.ntags) };
        for t in tags {
            // SAFETY: each tag's bytes are valid, by the caller's promise.
            o = o.tag(unsafe { bytes(t.ptr, t.len, "opts->tags[i].ptr") }?);
        }
    }
    Ok(o)
}

/// The common prologue: handle and key.
///
/// # Safety
/// `c` is NULL or a live handle; `key` is NULL or points to `klen` bytes.
unsafe fn cache_key<'a>(
    c: *const larder_cache,
    key: *const u8,
    klen: usize,
) -> Result<(&'a Cache, &'a [u8]), Failure> {
    // SAFETY: forwarded from the caller.
    Ok((unsafe { handle(c) }?, unsafe { bytes(key, klen, "key") }?))
}

/// Reads the value of `key` into `buf[..cap]`; `*len` receives its length. `LARDER_OK`,
/// `LARDER_NOT_FOUND`, or `LARDER_TOO_SMALL` (nothing copied; `*len` is the length needed:
/// call again with a larger buffer). `buf` may be NULL when `cap` is 0, to ask the length.
/// Bytes of `buf` past the value may be overwritten.
#[no_mangle]
pub unsafe extern "C" fn larder_get(
    c: *const larder_cache,
    key: *const u8,
    klen: usize,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> larder_status {
    // SAFETY: forwarded from the caller.
    unsafe { get_to_buf(c, key, klen, buf, cap, len, None) }
}

/// `larder_get` and `larder_get_flags`: straight from the arena into the caller's buffer
/// (no scratch, no second copy), and the flags into `*flags` when asked for.
///
/// # Safety
/// As `larder_get`; `flags`, when given, is NULL or writable.
unsafe fn get_to_buf(
    c: *const larder_cache,
    key: *const u8,
    klen: usize,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
    flags: Option<*mut u32>,
) -> larder_status {
    guard(|| {
        // SAFETY: the caller's promises on c, key, len and buf (see the header).
        let (cache, key) = unsafe { cache_key(c, key, klen) }?;
        // SAFETY: as above.
        let len = unsafe { out(len, "len") }?;
        let flags = match flags {
            // SAFETY: NULL or writable, by the caller's promise.
            Some(f) => Some(unsafe { out(f, "flags") }?),
            None => None,
        };
        let dst: &mut [u8] = if buf.is_null() {
            if cap != 0 {
                return Err(crate::args::null("buf"));
            }
            &mut []
        } else {
            // SAFETY: `buf` has `cap` writable bytes for the call, by the caller's promise,
            // and nothing else refers to them meanwhile.
            unsafe { std::slice::from_raw_parts_mut(buf, cap) }
        };
        Ok(match cache.get_flags_into_slice(key, dst)? {
            None => {
                *len = 0;
                LARDER_NOT_FOUND
            }
            Some((n, f)) => {
                *len = n;
                if let Some(out) = flags {
                    *out = f;
                }
                if n > cap {
                    LARDER_TOO_SMALL
                } else {
                    LARDER_OK
                }
            }
        })
    })
}

/// Reads the value of `key` into a buffer larder allocates with `malloc`: `*value` and
/// `*len` receive it (free it with `larder_free`, or `free`). `LARDER_NOT_FOUND` leaves
/// `*value` NULL.
#[no_mangle]
pub unsafe extern "C" fn larder_get_alloc(
    c: *const larder_cache,
    key: *const u8,
    klen: usize,
    value: *mut *mut u8,
    len: *mut usize,
) -> larder_status {
    guard(|| {
        // SAFETY: the caller's promises on c and key.
        let (cache, key) = unsafe { cache_key(c, key, klen) }?;
        // SAFETY: writable places, by the caller's promise.
        let (value, len) = unsafe { (out(value, "value")?, out(len, "len")?) };
        *value = std::ptr::null_mut();
        *len = 0;
        with_scratch(|v| {
            if !cache.get_into(key, v)? {
                return Ok(LARDER_NOT_FOUND);
            }
            *value = malloc_copy(v)?;
            *len = v.len();
            Ok(LARDER_OK)
        })
    })
}

/// A `malloc`'d copy of `v` (at least one byte allocated, so an empty value is not NULL).
fn malloc_copy(v: &[u8]) -> Result<*mut u8, Failure> {
    // SAFETY: malloc has no preconditions; the result is checked for NULL.
    let p = unsafe { libc::malloc(v.len().max(1)) }.cast::<u8>();
    if p.is_null() {
        return Err(Failure::new(LARDER_E_IO, "out of memory"));
    }
    // SAFETY: `p` has room for `v.len()` bytes and is a fresh allocation.
    unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), p, v.len()) };
    Ok(p)
}

/// Frees a buffer larder returned (`larder_get_alloc`, `larder_get_multi`); NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn larder_free(p: *mut u8) {
    // SAFETY: `p` came from larder's malloc (the caller's promise) and is freed once.
    unsafe { libc::free(p.cast()) }
}

/// As `larder_get`, also serving a value past its TTL while within its stale grace: then
/// the status is `LARDER_STALE` instead of `LARDER_OK`.
#[no_mangle]
pub unsafe extern "C" fn larder_get_stale(
    c: *const larder_cache,
    key: *const u8,
    klen: usize,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> larder_status {
    guard(|| {
        // SAFETY: the caller's promises on c and key.
        let (cache, key) = unsafe { cache_key(c, key, klen) }?;
        // SAFETY: a writable size_t, by the caller's promise.
        let len = unsafe { out(len, "len") }?;
        let Some(s) = cache.get_stale(key)? else {
            *len = 0;
            return Ok(LARDER_NOT_FOUND);
        };
        // SAFETY: `buf` has `cap` writable bytes, by the caller's promise.
        match unsafe { copy_out(&s.value, buf, cap, len) }? {
            LARDER_OK if s.stale => Ok(LARDER_STALE),
            st => Ok(st),
        }
    })
}

/// What to do with a value: the store modes.
#[derive(Clone, Copy)]
enum Store {
    Set,
    Add,
    Replace,
    /// Only over the version this CAS token names.
    Cas(u64),
}

/// # Safety
/// As the exported store functions.
unsafe fn store(
    c: *const larder_cache,
    key: *const u8,
    klen: usize,
    value: *const u8,
    vlen: usize,
    opts: *const larder_set_options,
    mode: Store,
) -> larder_status {
    guard(|| {
        // SAFETY: the caller's promises on c and key.
        let (cache, key) = unsafe { cache_key(c, key, klen) }?;
        // SAFETY: `vlen` bytes at `value`, by the caller's promise.
        let value = unsafe { bytes(value, vlen, "value") }?;
        // SAFETY: NULL or a valid options struct, by the caller's promise.
        let o = unsafe { set_options(opts) }?;
        Ok(match mode {
            Store::Set => {
                cache.set_with(key, value, &o)?;
                LARDER_OK
            }
            Store::Add if cache.add_with(key, value, &o)? => LARDER_OK,
            Store::Add => LARDER_EXISTS,
            Store::Replace if cache.replace_with(key, value, &o)? => LARDER_OK,
            Store::Replace => LARDER_NOT_FOUND,
            Store::Cas(token) => match cache.cas_with(key, value, CasToken(token), &o)? {
                CasOutcome::Stored => LARDER_OK,
                CasOutcome::Exists => LARDER_EXISTS,
                CasOutcome::NotFound => LARDER_NOT_FOUND,
            },
        })
    })
}

/// Stores `value[..vlen]` under `key[..klen]` with `opts` (NULL: no TTL). `LARDER_OK`.
#[no_mangle]
pub unsafe extern "C" fn larder_set(
    c: *const larder_cache,
    key: *const u8,
    klen: usize,
    value: *const u8,
    vlen: usize,
    opts: *const larder_set_options,
) -> larder_status {
    // SAFETY: forwarded from the caller.
    unsafe { store(c, key, klen, value, vlen, opts, Store::Set) }
}

/// Stores only if `key` has no live value: `LARDER_OK`, or `LARDER_EXISTS`.
#[no_mangle]
pub unsafe extern "C" fn larder_add(
    c: *const larder_cache,
    key: *const u8,
    klen: usize,
    value: *const u8,
    vlen: usize,
    opts: *const larder_set_options,
) -> larder_status {
    // SAFETY: forwarded from the caller.
    unsafe { store(c, key, klen, value, vlen, opts, Store::Add) }
}

/// Stores only if `key` has a live value: `LARDER_OK`, or `LARDER_NOT_FOUND`.
#[no_mangle]
pub unsafe extern "C" fn larder_replace(
    c: *const larder_cache,
    key: *const u8,
    klen: usize,
    value: *const u8,
    vlen: usize,
    opts: *const larder_set_options,
) -> larder_status {
    // SAFETY: forwarded from the caller.
    unsafe { store(c, key, klen, value, vlen, opts, Store::Replace) }
}

/// As `larder_get`, also giving the item's CAS token in `*cas` for `larder_cas`.
#[no_mangle]
pub unsafe extern "C" fn larder_gets(
    c: *const larder_cache,
    key: *const u8,
    klen: usize,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
    cas: *mut u64,
) -> larder_status {
    guard(|| {
        // SAFETY: the caller's promises on c and key.
        let (cache, key) = unsafe { cache_key(c, key, klen) }?;
        // SAFETY: writable places, by the caller's promise.
        let (len, cas) = unsafe { (out(len, "len")?, out(cas, "cas")?) };
        let Some((v, token)) = cache.gets(key)? else {
            *len = 0;
            return Ok(LARDER_NOT_FOUND);
        };
        *cas = token.0;
        // SAFETY: `buf` has `cap` writable bytes, by the caller's promise.
        unsafe { copy_out(&v, buf, cap, len) }
    })
}

/// As `larder_get`, also giving the item's client flags in `*flags` (0 when it was stored
/// without: `larder_set_options.flags`).
#[no_mangle]
pub unsafe extern "C" fn larder_get_flags(
    c: *const larder_cache,
    key: *const u8,
    klen: usize,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
    flags: *mut u32,
) -> larder_status {
    // SAFETY: forwarded from the caller.
    unsafe { get_to_buf(c, key, klen, buf, cap, len, Some(flags)) }
}

/// Stores `value` only if the item is still the one `cas` (from `larder_gets`) names:
/// `LARDER_OK`; `LARDER_EXISTS` if it changed since; `LARDER_NOT_FOUND` if it is gone.
/// `ttl_ms` 0: no TTL.
#[no_mangle]
pub unsafe extern "C" fn larder_cas(
    c: *const larder_cache,
    key: *const u8,
    klen: usize,
    value: *const u8,
    vlen: usize,
    ttl_ms: u64,
    cas: u64,
) -> larder_status {
    guard(|| {
        // SAFETY: the caller's promises on c and key.
        let (cache, key) = unsafe { cache_key(c, key, klen) }?;
        // SAFETY: `vlen` bytes at `value`, by the caller's promise.
        let value = unsafe { bytes(value, vlen, "value") }?;
        Ok(match cache.cas(key, value, CasToken(cas), ms(ttl_ms))? {
            CasOutcome::Stored => LARDER_OK,
            CasOutcome::Exists => LARDER_EXISTS,
            CasOutcome::NotFound => LARDER_NOT_FOUND,
        })
    })
}

/// As `larder_cas`, with the options of a set (TTL, grace, tags, client flags: the PHP
/// binding's `cas` keeps a counter's type flag).
#[no_mangle]
pub unsafe extern "C" fn larder_cas_with(
    c: *const larder_cache,
    key: *const u8,
    klen: usize,
    value: *const u8,
    vlen: usize,
    opts: *const larder_set_options,
    cas: u64,
) -> larder_status {
    // SAFETY: forwarded from the caller.
    unsafe { store(c, key, klen, value, vlen, opts, Store::Cas(cas)) }
}

/// Deletes `key`: `LARDER_OK`, or `LARDER_NOT_FOUND`.
#[no_mangle]
pub unsafe extern "C" fn larder_delete(
    c: *const larder_cache,
    key: *const u8,
    klen: usize,
) -> larder_status {
    guard(|| {
        // SAFETY: the caller's promises on c and key.
        let (cache, key) = unsafe { cache_key(c, key, klen) }?;
        Ok(if cache.delete(key)? {
            LARDER_OK
        } else {
            LARDER_NOT_FOUND
        })
    })
}

/// For a writer that changed the backing store: deletes `key` and takes over its lease, so
/// a loader already in flight does not cache the older value. `LARDER_OK` or
/// `LARDER_NOT_FOUND` (nothing was cached; the lease is taken over all the same).
#[no_mangle]
pub unsafe extern "C" fn larder_invalidate(
    c: *const larder_cache,
    key: *const u8,
    klen: usize,
) -> larder_status {
    guard(|| {
        // SAFETY: the caller's promises on c and key.
        let (cache, key) = unsafe { cache_key(c, key, klen) }?;
        Ok(if cache.invalidate(key)? {
            LARDER_OK
        } else {
            LARDER_NOT_FOUND
        })
    })
}

/// Makes every item stored with tag `tag[..len]` miss from now on, in every process.
#[no_mangle]
pub unsafe extern "C" fn larder_invalidate_tag(
    c: *const larder_cache,
    tag: *const u8,
    len: usize,
) -> larder_status {
    guard(|| {
        // SAFETY: the caller's promises on c and tag.
        let (cache, tag) = unsafe { cache_key(c, tag, len) }?;
        cache.invalidate_tag(tag)?;
        Ok(LARDER_OK)
    })
}

/// # Safety
/// As the exported counter functions.
unsafe fn counter(
    c: *const larder_cache,
    key: *const u8,
    klen: usize,
    delta: u64,
    result: *mut u64,
    up: bool,
) -> larder_status {
    guard(|| {
        // SAFETY: the caller's promises on c and key.
        let (cache, key) = unsafe { cache_key(c, key, klen) }?;
        // SAFETY: a writable uint64_t, by the caller's promise.
        let result = unsafe { out(result, "result") }?;
        let v = if up {
            cache.incr(key, delta)?
        } else {
            cache.decr(key, delta)?
        };
        Ok(match v {
            Some(n) => {
                *result = n;
                LARDER_OK
            }
            None => LARDER_NOT_FOUND,
        })
    })
}

/// Adds `delta` to the decimal value of `key` (wrapping at 2^64, as memcached does),
/// atomically across processes; `*result` receives the new value. `LARDER_NOT_FOUND` if
/// absent; `LARDER_E_NOT_A_NUMBER` if the value is not a decimal unsigned number.
#[no_mangle]
pub unsafe extern "C" fn larder_incr(
    c: *const larder_cache,
    key: *const u8,
    klen: usize,
    delta: u64,
    result: *mut u64,
) -> larder_status {
    // SAFETY: forwarded from the caller.
    unsafe { counter(c, key, klen, delta, result, true) }
}

/// Subtracts `delta`, stopping at 0; otherwise as `larder_incr`.
#[no_mangle]
pub unsafe extern "C" fn larder_decr(
    c: *const larder_cache,
    key: *const u8,
    klen: usize,
    delta: u64,
    result: *mut u64,
) -> larder_status {
    // SAFETY: forwarded from the caller.
    unsafe { counter(c, key, klen, delta, result, false) }
}

/// Gives `key` a new TTL (`ttl_ms` 0: never expires): `LARDER_OK`, or `LARDER_NOT_FOUND`.
#[no_mangle]
pub unsafe extern "C" fn larder_touch(
    c: *const larder_cache,
    key: *const u8,
    klen: usize,
    ttl_ms: u64,
) -> larder_status {
    guard(|| {
        // SAFETY: the caller's promises on c and key.
        let (cache, key) = unsafe { cache_key(c, key, klen) }?;
        Ok(if cache.touch(key, ms(ttl_ms))? {
            LARDER_OK
        } else {
            LARDER_NOT_FOUND
        })
    })
}

/// The remaining lifetime of `key` in `*ttl_ms`, -1 if it never expires. `LARDER_OK`, or
/// `LARDER_NOT_FOUND`.
#[no_mangle]
pub unsafe extern "C" fn larder_ttl(
    c: *const larder_cache,
    key: *const u8,
    klen: usize,
    ttl_ms: *mut i64,
) -> larder_status {
    guard(|| {
        // SAFETY: the caller's promises on c and key.
        let (cache, key) = unsafe { cache_key(c, key, klen) }?;
        // SAFETY: a writable int64_t, by the caller's promise.
        let ttl_ms = unsafe { out(ttl_ms, "ttl_ms") }?;
        Ok(match cache.ttl(key)? {
            None => LARDER_NOT_FOUND,
            Some(t) => {
                *ttl_ms = t.map_or(-1, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                LARDER_OK
            }
        })
    })
}

/// Reads `n` keys at once into `values[0..n]` (see `larder_value`; free each found value
/// with `larder_free`). `LARDER_OK` whether or not each key was found. On an error no value
/// is left allocated.
#[no_mangle]
pub unsafe extern "C" fn larder_get_multi(
    c: *const larder_cache,
    keys: *const larder_bytes,
    n: usize,
    values: *mut larder_value,
) -> larder_status {
    guard(|| {
        // SAFETY: a live handle, by the caller's promise.
        let cache = unsafe { handle(c) }?;
        if n == 0 {
            return Ok(LARDER_OK);
        }
        if keys.is_null() {
            return Err(crate::args::null("keys"));
        }
        if values.is_null() {
            return Err(crate::args::null("values"));
        }
        // SAFETY: `n` valid larder_bytes at `keys`, by the caller's promise.
        let keys = unsafe { std::slice::from_raw_parts(keys, n) };
        let keys = keys
            .iter()
            // SAFETY: each key's bytes are valid, by the caller's promise.
            .map(|k| unsafe { bytes(k.ptr, k.len, "keys[i].ptr") })
            .collect::<Result<Vec<_>, _>>()?;
        let found = cache.get_multi(&keys)?;
        // SAFETY: `n` writable larder_value at `values`, by the caller's promise.
        let values = unsafe { std::slice::from_raw_parts_mut(values, n) };
        for (i, v) in found.iter().enumerate() {
            values[i] = match v {
                Some(v) => match malloc_copy(v) {
                    Ok(data) => larder_value {
                        data,
                        len: v.len(),
                        found: 1,
                    },
                    Err(e) => {
                        for done in &mut values[..i] {
                            // SAFETY: allocated above by malloc_copy (or NULL).
                            unsafe { libc::free(done.data.cast()) };
                            done.data = std::ptr::null_mut();
                        }
                        return Err(e);
                    }
                },
                None => larder_value {
                    data: std::ptr::null_mut(),
                    len: 0,
                    found: 0,
                },
            };
        }
        Ok(LARDER_OK)
    })
}

/// Removes every item; `*removed` (may be NULL) receives how many there were.
#[no_mangle]
pub unsafe extern "C" fn larder_flush(c: *const larder_cache, removed: *mut u64) -> larder_status {
    guard(|| {
        // SAFETY: a live handle, by the caller's promise.
        let cache = unsafe { handle(c) }?;
        let n = cache.flush()?;
        // SAFETY: NULL or a writable uint64_t, by the caller's promise.
        if let Some(r) = unsafe { removed.as_mut() } {
            *r = n;
        }
        Ok(LARDER_OK)
    })
}
