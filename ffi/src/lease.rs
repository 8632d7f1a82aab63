//! The stampede lease as two calls (`larder_get_or_lease`, then `larder_fill_lease` or
//! `larder_release_lease`) for callers that cannot run a loader inside larder (LuaJIT in
//! nginx cannot yield across a C callback), and `larder_get_or_load`, the callback form on
//! top for C callers.

use std::ffi::c_void;
use std::time::Duration;

use larder::{Lease, Leased, LoadOptions};

use crate::args::{bytes, copy_out, handle, out};
use crate::handle::larder_cache;
use crate::items::{larder_set_options, set_options, with_scratch};
use crate::status::{guard, larder_status, larder_status::*, Failure};

/// A lease: filled by `larder_get_or_lease`, given back to `larder_fill_lease` or
/// `larder_release_lease`. Plain data the caller keeps (copying it is fine); `words` are
/// larder's, `retry_after_ms` is set with `LARDER_WAIT`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
#[allow(non_camel_case_types)]
pub struct larder_lease {
    pub words: [u64; 3],
    /// With `LARDER_WAIT`: ask again after this many milliseconds (at most what is left of
    /// the holder's lease).
    pub retry_after_ms: u64,
}

/// How long a lease lasts when the caller passes 0: as `get_or_load`'s default.
const DEFAULT_LEASE_MS: u64 = 10_000;

fn load_options(lease_ms: u64, early_refresh: f64) -> Result<LoadOptions, Failure> {
    let mut o = LoadOptions::new().lease(Duration::from_millis(if lease_ms == 0 {
        DEFAULT_LEASE_MS
    } else {
        lease_ms
    }));
    if early_refresh != 0.0 {
        if !(early_refresh.is_finite() && early_refresh > 0.0) {
            return Err(Failure::new(
                LARDER_E_INVALID_ARGUMENT,
                format!("early_refresh must be 0 (off) or a positive number, not {early_refresh}"),
            ));
        }
        o = o.early_refresh(early_refresh);
    }
    Ok(o)
}

/// Reads `key` into `buf[..cap]`, or hands the caller the key's lease when there is no
/// value to serve. Returns:
/// - `LARDER_OK`: a live value is in `buf` (`*len` its length).
/// - `LARDER_STALE`: a value past its TTL (within its grace) is in `buf`; another caller is
///   refreshing it.
/// - `LARDER_LEASED`: `*lease` is the key's lease, held by this caller for `lease_ms`
///   (0: 10 s): load the value, then `larder_fill_lease` (or `larder_release_lease` if
///   loading failed). Across every process of the host, one caller holds it at a time.
/// - `LARDER_WAIT`: another caller holds the lease and there is nothing to serve; call again
///   after `lease->retry_after_ms`.
/// - `LARDER_TOO_SMALL`: a value is there but longer than `cap` (`*len` is its length).
///
/// `early_refresh` > 0 (a beta such as 1.0) lets a caller take the lease shortly before the
/// value expires, with a probability growing as expiry nears (0: off).
#[no_mangle]
pub unsafe extern "C" fn larder_get_or_lease(
    c: *const larder_cache,
    key: *const u8,
    klen: usize,
    lease_ms: u64,
    early_refresh: f64,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
    lease: *mut larder_lease,
) -> larder_status {
    guard(|| {
        // SAFETY: the caller's promises on c and key (see the header).
        let (cache, key) = unsafe { (handle(c)?, bytes(key, klen, "key")?) };
        // SAFETY: writable places, by the caller's promise.
        let (len, lease) = unsafe { (out(len, "len")?, out(lease, "lease")?) };
        let opts = load_options(lease_ms, early_refresh)?;
        *len = 0;
        with_scratch(|v| match cache.get_or_lease(key, &opts, v)? {
            // SAFETY: `buf` has `cap` writable bytes, by the caller's promise.
            Leased::Hit => unsafe { copy_out(v, buf, cap, len) },
            // SAFETY: as above.
            Leased::Stale => match unsafe { copy_out(v, buf, cap, len) }? {
                LARDER_OK => Ok(LARDER_STALE),
                st => Ok(st),
            },
            Leased::Acquired(l) => {
                *lease = larder_lease {
                    words: l.to_words(),
                    retry_after_ms: 0,
                };
                Ok(LARDER_LEASED)
            }
            Leased::Wait { retry_after } => {
                lease.retry_after_ms = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX);
                Ok(LARDER_WAIT)
            }
        })
    })
}

/// Stores `value` for `key` with `opts` (NULL: no TTL) and gives the lease back.
/// `LARDER_OK`: stored. `LARDER_NOT_STORED`: the key was invalidated while the lease was
/// held, so the value (which may predate the change) was not kept. The lease is given back
/// in every case, errors included.
#[no_mangle]
pub unsafe extern "C" fn larder_fill_lease(
    c: *const larder_cache,
    key: *const u8,
    klen: usize,
    lease: *const larder_lease,
    value: *const u8,
    vlen: usize,
    opts: *const larder_set_options,
) -> larder_status {
    guard(|| {
        // SAFETY: the caller's promises on c, key and value.
        let (cache, key, value) = unsafe {
            (
                handle(c)?,
                bytes(key, klen, "key")?,
                bytes(value, vlen, "value")?,
            )
        };
        // SAFETY: NULL or a valid lease, by the caller's promise.
        let l = unsafe { crate::args::input(lease) }.ok_or_else(|| crate::args::null("lease"))?;
        let l = Lease::from_words(l.words);
        // SAFETY: NULL or a valid options struct, by the caller's promise.
        let o = match unsafe { set_options(opts) } {
            Ok(o) => o,
            Err(e) => {
                let _ = cache.release_lease(key, l);
                return Err(e);
            }
        };
        Ok(if cache.fill_lease(key, l, value, &o)? {
            LARDER_OK
        } else {
            LARDER_NOT_STORED
        })
    })
}

/// Gives the lease of `key` back without storing anything (loading failed): the next
/// caller of `larder_get_or_lease` gets it.
#[no_mangle]
pub unsafe extern "C" fn larder_release_lease(
    c: *const larder_cache,
    key: *const u8,
    klen: usize,
    lease: *const larder_lease,
) -> larder_status {
    guard(|| {
        // SAFETY: the caller's promises on c and key.
        let (cache, key) = unsafe { (handle(c)?, bytes(key, klen, "key")?) };
        // SAFETY: NULL or a valid lease, by the caller's promise.
        let l = unsafe { crate::args::input(lease) }.ok_or_else(|| crate::args::null("lease"))?;
        cache.release_lease(key, Lease::from_words(l.words))?;
        Ok(LARDER_OK)
    })
}

/// A loader for `larder_get_or_load`: loads the value of `key[..klen]` and hands it to
/// larder with `larder_loaded(sink, value, len)` (which copies it), returning 0; any other
/// return value is a failed load (nothing is cached, the lease is given back, and
/// `larder_get_or_load` returns `LARDER_NOT_FOUND`).
#[allow(non_camel_case_types)]
pub type larder_loader = Option<
    unsafe extern "C" fn(
        ctx: *mut c_void,
        key: *const u8,
        klen: usize,
        sink: *mut larder_sink,
    ) -> i32,
>;

/// Where a loader puts the value it loaded (`larder_loaded`). Opaque.
#[allow(non_camel_case_types)]
pub struct larder_sink {
    value: Option<Vec<u8>>,
}

/// Called by a loader: copies `value[..len]` as the value it loaded.
#[no_mangle]
pub unsafe extern "C" fn larder_loaded(
    sink: *mut larder_sink,
    value: *const u8,
    len: usize,
) -> larder_status {
    guard(|| {
        // SAFETY: the sink larder passed to the loader, by the caller's promise.
        let sink = unsafe { out(sink, "sink") }?;
        // SAFETY: `len` bytes at `value`, by the caller's promise.
        sink.value = Some(unsafe { bytes(value, len, "value") }?.to_vec());
        Ok(LARDER_OK)
    })
}

/// Cache-aside with stampede protection in one call: the value of `key` into
/// `buf[..cap]`, or, when there is none, `loader(ctx, key, klen, sink)` runs — in one caller
/// at a time across every process on the host; the others wait for its value (or get the
/// stale one, `LARDER_STALE`) — and what it loaded is stored with `opts` and copied out.
/// `LARDER_OK`, `LARDER_STALE`, `LARDER_NOT_FOUND` (the loader failed), `LARDER_TOO_SMALL`
/// (the value is cached all the same; `*len` is its length). `lease_ms` 0: 10 s.
#[no_mangle]
pub unsafe extern "C" fn larder_get_or_load(
    c: *const larder_cache,
    key: *const u8,
    klen: usize,
    lease_ms: u64,
    opts: *const larder_set_options,
    loader: larder_loader,
    ctx: *mut c_void,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> larder_status {
    guard(|| {
        // SAFETY: the caller's promises on c and key.
        let (cache, key_bytes) = unsafe { (handle(c)?, bytes(key, klen, "key")?) };
        // SAFETY: a writable size_t, by the caller's promise.
        let len = unsafe { out(len, "len") }?;
        let loader = loader.ok_or_else(|| crate::args::null("loader"))?;
        // SAFETY: NULL or a valid options struct, by the caller's promise.
        let o = unsafe { set_options(opts) }?;
        let lo = load_options(lease_ms, 0.0)?;
        *len = 0;
        let mut nap = Duration::from_millis(1);
        loop {
            let got = with_scratch(|v| -> Result<Option<larder_status>, Failure> {
                Ok(Some(match cache.get_or_lease(key_bytes, &lo, v)? {
                    // SAFETY: `buf` has `cap` writable bytes, by the caller's promise.
                    Leased::Hit => unsafe { copy_out(v, buf, cap, len) }?,
                    // SAFETY: as above.
                    Leased::Stale => match unsafe { copy_out(v, buf, cap, len) }? {
                        LARDER_OK => LARDER_STALE,
                        st => st,
                    },
                    Leased::Acquired(l) => {
                        let mut sink = larder_sink { value: None };
                        // SAFETY: the caller's loader, called as its contract says, with
                        // the caller's key and context and a sink that outlives the call.
                        let rc = unsafe { loader(ctx, key, klen, &mut sink) };
                        match (rc, sink.value) {
                            (0, Some(value)) => {
                                cache.fill_lease(key_bytes, l, &value, &o)?;
                                // SAFETY: as above.
                                unsafe { copy_out(&value, buf, cap, len) }?
                            }
                            _ => {
                                cache.release_lease(key_bytes, l)?;
                                LARDER_NOT_FOUND
                            }
                        }
                    }
                    Leased::Wait { retry_after } => {
                        std::thread::sleep(nap.min(retry_after));
                        nap = (nap * 2).min(Duration::from_millis(50));
                        return Ok(None);
                    }
                }))
            })?;
            if let Some(st) = got {
                return Ok(st);
            }
        }
    })
}
