//! Key iteration: a cursor over the keys present, optionally filtered by a glob pattern.

use larder::{Glob, Keys};

use crate::args::{bytes, copy_out, handle, out};
use crate::handle::larder_cache;
use crate::status::{guard, larder_status, larder_status::*};

/// A cursor over keys (`larder_keys_open`). Opaque; used by one thread at a time.
#[allow(non_camel_case_types)]
pub struct larder_keys {
    keys: Keys,
    glob: Option<Glob>,
    /// A key that did not fit the caller's buffer, returned again by the next call.
    held: Option<Vec<u8>>,
}

/// Opens a cursor over the keys present (expired ones excluded), those matching the glob
/// `pattern[..plen]` when `pattern` is not NULL (`*`, `?`, `[set]`, `[!set]`, `\` escapes,
/// byte-wise). Keys written or removed while iterating may or may not appear. Close it with
/// `larder_keys_close`. `LARDER_E_BAD_PATTERN` for an unclosed `[`.
#[no_mangle]
pub unsafe extern "C" fn larder_keys_open(
    c: *const larder_cache,
    pattern: *const u8,
    plen: usize,
    it: *mut *mut larder_keys,
) -> larder_status {
    guard(|| {
        // SAFETY: a live handle and a writable place, by the caller's promise.
        let (cache, it) = unsafe { (handle(c)?, out(it, "it")?) };
        *it = std::ptr::null_mut();
        let glob = if pattern.is_null() {
            None
        } else {
            // SAFETY: `plen` bytes at `pattern`, by the caller's promise.
            Some(Glob::new(unsafe { bytes(pattern, plen, "pattern") }?)?)
        };
        *it = Box::into_raw(Box::new(larder_keys {
            keys: cache.keys(),
            glob,
            held: None,
        }));
        Ok(LARDER_OK)
    })
}

/// The next key into `buf[..cap]` (`*len` its length): `LARDER_OK`, `LARDER_END` when there
/// are no more, or `LARDER_TOO_SMALL` (`*len` is the length needed; the same key comes
/// again with the next call).
#[no_mangle]
pub unsafe extern "C" fn larder_keys_next(
    it: *mut larder_keys,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> larder_status {
    guard(|| {
        // SAFETY: a cursor from larder_keys_open, not closed, used by this thread only; a
        // writable size_t (the caller's promises).
        let (it, len) = unsafe { (out(it, "it")?, out(len, "len")?) };
        *len = 0;
        let next = match it.held.take() {
            Some(k) => Some(k),
            None => loop {
                match it.keys.next() {
                    Some(k) if it.glob.as_ref().is_some_and(|g| !g.matches(&k)) => continue,
                    other => break other,
                }
            },
        };
        let Some(k) = next else {
            return Ok(LARDER_END);
        };
        // SAFETY: `buf` has `cap` writable bytes, by the caller's promise.
        let st = unsafe { copy_out(&k, buf, cap, len) }?;
        if st == LARDER_TOO_SMALL {
            it.held = Some(k);
        }
        Ok(st)
    })
}

/// Closes a cursor (NULL is ignored).
#[no_mangle]
pub unsafe extern "C" fn larder_keys_close(it: *mut larder_keys) {
    if !it.is_null() {
        // SAFETY: a cursor from larder_keys_open, closed once (the caller's promise).
        drop(unsafe { Box::from_raw(it) });
    }
}
