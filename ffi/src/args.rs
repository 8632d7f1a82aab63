//! From C's arguments to Rust's: pointers checked for NULL, byte strings with their
//! lengths, the handle's magic word, and values copied out into the caller's buffer.
//!
//! What cannot be checked is the caller's promise, as in any C API: a non-NULL pointer
//! points to as many valid bytes as its length says, for the duration of the call.

use std::ffi::{c_char, CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use larder::Cache;

use crate::handle::{larder_cache, MAGIC};
use crate::status::{larder_status, Failure};

/// `ptr[..len]` as a slice; a NULL `ptr` is allowed only with `len == 0`.
///
/// # Safety
/// A non-NULL `ptr` points to `len` readable bytes that stay valid and unchanged for `'a`.
pub(crate) unsafe fn bytes<'a>(
    ptr: *const u8,
    len: usize,
    what: &str,
) -> Result<&'a [u8], Failure> {
    if ptr.is_null() {
        return if len == 0 { Ok(&[]) } else { Err(null(what)) };
    }
    // SAFETY: non-NULL, and the caller promises `len` readable bytes for `'a`.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// The place an out-parameter points to.
///
/// # Safety
/// A non-NULL `ptr` is aligned and writable for `'a`, with no other reference to it.
pub(crate) unsafe fn out<'a, T>(ptr: *mut T, what: &str) -> Result<&'a mut T, Failure> {
    // SAFETY: the caller promises an aligned, writable, unaliased place when non-NULL.
    unsafe { ptr.as_mut() }.ok_or_else(|| null(what))
}

/// A read-only struct argument.
///
/// # Safety
/// A non-NULL `ptr` is aligned and readable for `'a`.
pub(crate) unsafe fn input<'a, T>(ptr: *const T) -> Option<&'a T> {
    // SAFETY: the caller promises an aligned, readable value when non-NULL.
    unsafe { ptr.as_ref() }
}

/// The `Cache` of a handle, after checking its magic word.
///
/// # Safety
/// A non-NULL `c` points to a handle from `larder_open`/`larder_create` not yet closed, or
/// at least to 8 readable bytes (then anything but the magic word is refused).
pub(crate) unsafe fn handle<'a>(c: *const larder_cache) -> Result<&'a Cache, Failure> {
    // SAFETY: the caller promises a live handle when non-NULL.
    let h = unsafe { c.as_ref() }.ok_or_else(|| null("cache"))?;
    if h.magic != MAGIC {
        return Err(bad_handle());
    }
    Ok(&h.cache)
}

#[cold]
#[inline(never)]
fn bad_handle() -> Failure {
    Failure::new(
        larder_status::LARDER_E_BAD_HANDLE,
        "not an open larder handle (closed, or never opened)",
    )
}

/// A NUL-terminated path; NULL means the default arena path.
///
/// # Safety
/// A non-NULL `p` points to a NUL-terminated string.
pub(crate) unsafe fn path(p: *const c_char) -> PathBuf {
    if p.is_null() {
        return larder::default_arena_path();
    }
    // SAFETY: the caller promises a NUL-terminated string.
    let s = unsafe { CStr::from_ptr(p) };
    PathBuf::from(OsStr::from_bytes(s.to_bytes()))
}

/// Copies `v` into `buf[..cap]` and stores its length in `*len`: `LARDER_OK`, or
/// `LARDER_TOO_SMALL` (nothing copied, `*len` the length needed).
///
/// # Safety
/// A non-NULL `buf` points to `cap` writable bytes that do not overlap `v`.
pub(crate) unsafe fn copy_out(
    v: &[u8],
    buf: *mut u8,
    cap: usize,
    len: &mut usize,
) -> Result<larder_status, Failure> {
    *len = v.len();
    if v.len() > cap {
        return Ok(larder_status::LARDER_TOO_SMALL);
    }
    if !v.is_empty() {
        if buf.is_null() {
            return Err(null("buf"));
        }
        // SAFETY: `buf` has room for `cap >= v.len()` bytes (the caller's promise) and does
        // not overlap `v`, which larder owns.
        unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), buf, v.len()) };
    }
    Ok(larder_status::LARDER_OK)
}

#[cold]
#[inline(never)]
pub(crate) fn null(what: &str) -> Failure {
    Failure::new(
        larder_status::LARDER_E_NULL,
        format!("argument `{what}` is NULL"),
    )
}

/// Milliseconds to an optional `Duration` (0: none).
pub(crate) fn ms(v: u64) -> Option<std::time::Duration> {
    (v != 0).then(|| std::time::Duration::from_millis(v))
}
