//! Handles: creating and opening an arena, closing, noticing that the daemon replaced it,
//! and what the arena accepts.

use std::ffi::{c_char, c_int};
use std::os::unix::ffi::OsStrExt;

use larder::{Cache, Config};

use crate::args::{self, copy_out, handle, out};
use crate::status::{guard, larder_status, larder_status::*};

/// "LARDERh1" read as a little-endian word: what an open handle starts with.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"LARDERh1");

/// A handle to an arena attached to this process. Opaque; thread-safe (any number of
/// threads may use one handle at once); survives `fork` (the child registers itself on its
/// first call).
#[allow(non_camel_case_types)]
pub struct larder_cache {
    pub(crate) magic: u64,
    pub(crate) cache: Cache,
}

/// How to format a new arena (`larder_create`). Get one from `larder_config_default` and
/// change the fields you need. Zero in `max_value` or `segment_size` means "derived".
#[repr(C)]
#[derive(Clone, Copy, Debug)]
#[allow(non_camel_case_types)]
pub struct larder_config {
    /// Size of the arena file in bytes.
    pub capacity: u64,
    /// Longest key accepted (1..=255; default 250).
    pub max_key: u32,
    /// Longest value accepted (0: 1 MiB, or what the segment size allows).
    pub max_value: u32,
    /// Segment size, a power of two from 64 KiB to 1 GiB (0: derived from the value limit).
    pub segment_size: u64,
    /// Expected average item size (8-byte header + key + value), which sizes the index.
    pub avg_item_size: u64,
    /// How many processes may be attached at once (default 256).
    pub max_processes: u32,
    /// Permission bits of the arena file (default 0660).
    pub mode: u32,
    /// Non-zero: back the arena with transparent huge pages where the kernel allows it.
    pub huge_pages: u8,
}

/// The defaults of a new arena of `capacity` bytes.
#[no_mangle]
pub extern "C" fn larder_config_default(capacity: u64) -> larder_config {
    larder_config {
        capacity,
        max_key: 250,
        max_value: 0,
        segment_size: 0,
        avg_item_size: 128,
        max_processes: 256,
        mode: 0o660,
        huge_pages: 1,
    }
}

impl larder_config {
    fn to_config(self) -> Config {
        let mut c = Config::new(self.capacity)
            .max_key_len(self.max_key)
            .avg_item_size(self.avg_item_size)
            .max_processes(self.max_processes)
            .mode(self.mode)
            .huge_pages(self.huge_pages != 0);
        if self.max_value != 0 {
            c = c.max_value_len(self.max_value);
        }
        if self.segment_size != 0 {
            c = c.segment_size(self.segment_size);
        }
        c
    }
}

fn boxed(cache: Cache) -> *mut larder_cache {
    Box::into_raw(Box::new(larder_cache {
        magic: MAGIC,
        cache,
    }))
}

/// Formats a new arena file at `path` (NUL-terminated) with `config` and attaches to it;
/// `*out` receives the handle, to be closed with `larder_close`. `LARDER_EXISTS` if a file
/// is at the path. Arenas are normally created by larderd; this is for tests and for
/// programs that run without it.
#[no_mangle]
pub unsafe extern "C" fn larder_create(
    path: *const c_char,
    config: *const larder_config,
    out_cache: *mut *mut larder_cache,
) -> larder_status {
    guard(|| {
        // SAFETY: the caller passes a writable `larder_cache *` place.
        let slot = unsafe { out(out_cache, "out") }?;
        *slot = std::ptr::null_mut();
        if path.is_null() {
            return Err(args::null("path"));
        }
        // SAFETY: the caller passes a valid config struct when non-NULL.
        let cfg = unsafe { args::input(config) }.ok_or_else(|| args::null("config"))?;
        // SAFETY: non-NULL and NUL-terminated by the caller's promise.
        let p = unsafe { args::path(path) };
        *slot = boxed(Cache::create(&p, &cfg.to_config())?);
        Ok(LARDER_OK)
    })
}

/// Attaches to the arena at `path` (NUL-terminated), or at the default path when `path` is
/// NULL (`$LARDER_ARENA`, `/run/larder/arena`, `$XDG_RUNTIME_DIR/larder/arena`,
/// `/dev/shm/larder-$UID/arena`, the first that applies). `*out` receives the handle, to be
/// closed with `larder_close`; it is NULL after a failure.
#[no_mangle]
pub unsafe extern "C" fn larder_open(
    path: *const c_char,
    out_cache: *mut *mut larder_cache,
) -> larder_status {
    // SAFETY: as documented for the caller.
    unsafe { open_with(path, out_cache, Cache::open) }
}

/// As `larder_open`, for monitoring: takes no process slot; `larder_stats` and key
/// iteration work, every operation on items fails with `LARDER_E_OBSERVER`.
#[no_mangle]
pub unsafe extern "C" fn larder_open_observer(
    path: *const c_char,
    out_cache: *mut *mut larder_cache,
) -> larder_status {
    // SAFETY: as documented for the caller.
    unsafe { open_with(path, out_cache, Cache::open_observer) }
}

/// # Safety
/// As `larder_open`.
unsafe fn open_with(
    path: *const c_char,
    out_cache: *mut *mut larder_cache,
    open: fn(std::path::PathBuf) -> Result<Cache, larder::OpenError>,
) -> larder_status {
    guard(|| {
        // SAFETY: the caller passes a writable `larder_cache *` place.
        let slot = unsafe { out(out_cache, "out") }?;
        *slot = std::ptr::null_mut();
        // SAFETY: NULL or NUL-terminated, by the caller's promise.
        let p = unsafe { args::path(path) };
        *slot = boxed(open(p)?);
        Ok(LARDER_OK)
    })
}

/// Closes a handle (NULL is ignored). The handle must not be used afterwards, by any
/// thread; closing the last handle of a process gives its process slot back.
#[no_mangle]
pub unsafe extern "C" fn larder_close(c: *mut larder_cache) {
    let _ = guard(|| {
        if c.is_null() {
            return Ok(LARDER_OK);
        }
        // SAFETY: a handle from larder_open/larder_create, not closed before (the caller's
        // promise); checked by its magic word before it is freed.
        unsafe { handle(c) }?;
        // SAFETY: as above; the box was made by `boxed`. The magic is cleared first so a
        // use after close is more likely refused than honoured.
        let mut b = unsafe { Box::from_raw(c) };
        b.magic = 0;
        drop(b);
        Ok(LARDER_OK)
    });
}

/// Stores 1 in `*retired` if larderd has replaced the arena this handle is attached to
/// (the daemon restarted on a new arena), else 0. A retired handle keeps working on the old
/// arena, which nobody else uses: open the path again (`larder_reopen`).
#[no_mangle]
pub unsafe extern "C" fn larder_is_retired(
    c: *const larder_cache,
    retired: *mut c_int,
) -> larder_status {
    guard(|| {
        // SAFETY: a live handle, by the caller's promise.
        let cache = unsafe { handle(c) }?;
        // SAFETY: a writable int, by the caller's promise.
        *unsafe { out(retired, "retired") }? = c_int::from(cache.is_retired());
        Ok(LARDER_OK)
    })
}

/// Opens the arena at the path `c` was opened with, as a new handle in `*out` (the current
/// arena there, after larderd replaced it). `c` stays open: close it when no thread uses
/// it any more.
#[no_mangle]
pub unsafe extern "C" fn larder_reopen(
    c: *const larder_cache,
    out_cache: *mut *mut larder_cache,
) -> larder_status {
    guard(|| {
        // SAFETY: a live handle, by the caller's promise.
        let cache = unsafe { handle(c) }?;
        // SAFETY: a writable `larder_cache *` place, by the caller's promise.
        let slot = unsafe { out(out_cache, "out") }?;
        *slot = std::ptr::null_mut();
        *slot = boxed(Cache::open(cache.path())?);
        Ok(LARDER_OK)
    })
}

/// The longest key and value the arena accepts.
#[no_mangle]
pub unsafe extern "C" fn larder_limits(
    c: *const larder_cache,
    max_key: *mut u32,
    max_value: *mut u32,
) -> larder_status {
    guard(|| {
        // SAFETY: a live handle, by the caller's promise.
        let cache = unsafe { handle(c) }?;
        let (k, v) = cache.limits();
        // SAFETY: writable places, by the caller's promise.
        *unsafe { out(max_key, "max_key") }? = k;
        // SAFETY: as above.
        *unsafe { out(max_value, "max_value") }? = v;
        Ok(LARDER_OK)
    })
}

/// The path of the arena this handle is attached to, copied into `buf[..cap]` without a
/// terminating NUL; `*len` receives its length (`LARDER_TOO_SMALL` if `cap` is less).
#[no_mangle]
pub unsafe extern "C" fn larder_path(
    c: *const larder_cache,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> larder_status {
    guard(|| {
        // SAFETY: a live handle, by the caller's promise.
        let cache = unsafe { handle(c) }?;
        // SAFETY: a writable size_t, by the caller's promise.
        let len = unsafe { out(len, "len") }?;
        // SAFETY: `buf` has `cap` writable bytes, by the caller's promise.
        unsafe { copy_out(cache.path().as_os_str().as_bytes(), buf, cap, len) }
    })
}

/// The version of liblarder, e.g. "0.1.0" (static: never free it).
#[no_mangle]
pub extern "C" fn larder_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

// Handles are shared between C threads.
const _: fn() = || {
    fn is<T: Send + Sync>() {}
    is::<larder_cache>();
};
