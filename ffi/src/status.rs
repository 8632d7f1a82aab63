//! Status codes, the calling thread's last error message, and the wrapper every exported
//! function runs its body in, so that no panic unwinds into C.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use larder::{Error, GlobError, OpenError};

/// What a call did. Zero and positive values are outcomes a caller branches on; negative
/// values are errors, described by `larder_strerror(code)` and, in more detail (the key's
/// length, the path, the OS error), by `larder_last_error()`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum larder_status {
    /// Done: the value was found / stored / deleted.
    LARDER_OK = 0,
    /// No live item under the key (or, for `larder_replace` and `larder_cas`, nothing
    /// stored because of that).
    LARDER_NOT_FOUND = 1,
    /// `larder_add`: the key has a live value; `larder_cas`: the item changed since its
    /// token was taken; `larder_create`: a file exists at the path. Nothing was written.
    LARDER_EXISTS = 2,
    /// The caller's buffer is smaller than the value: `*len` holds the length needed and
    /// nothing was copied. Call again with a buffer of at least that size.
    LARDER_TOO_SMALL = 3,
    /// `larder_get_or_lease` and `larder_get_stale`: the buffer holds a value past its TTL,
    /// within its stale grace.
    LARDER_STALE = 4,
    /// `larder_get_or_lease`: the caller now holds the key's lease; load the value and call
    /// `larder_fill_lease` (or `larder_release_lease`).
    LARDER_LEASED = 5,
    /// `larder_get_or_lease`: another caller holds the lease and there is nothing to serve;
    /// call again after `lease->retry_after_ms`.
    LARDER_WAIT = 6,
    /// `larder_fill_lease`: the key was invalidated while the lease was held, so the value
    /// (which may predate the change) was not kept.
    LARDER_NOT_STORED = 7,
    /// `larder_keys_next`: no more keys.
    LARDER_END = 8,
    /// A required pointer argument was NULL.
    LARDER_E_NULL = -1,
    /// The handle is not an open larder handle (closed, or not one at all).
    LARDER_E_BAD_HANDLE = -2,
    /// An argument out of its range (a config or options struct field, a flag).
    LARDER_E_INVALID_ARGUMENT = -3,
    /// The key is empty.
    LARDER_E_EMPTY_KEY = -4,
    /// The key is longer than the arena's limit (`larder_limits`).
    LARDER_E_KEY_TOO_LARGE = -5,
    /// The value is longer than the arena's limit (`larder_limits`).
    LARDER_E_VALUE_TOO_LARGE = -6,
    /// A TTL, stale grace or lease time the arena cannot store.
    LARDER_E_INVALID_TTL = -7,
    /// No segment could be claimed or evicted right now; nothing was stored. Retry.
    LARDER_E_ARENA_FULL = -8,
    /// The handle was opened with `larder_open_observer`, which cannot touch items.
    LARDER_E_OBSERVER = -9,
    /// All process slots of the arena are held by live processes.
    LARDER_E_TOO_MANY_PROCESSES = -10,
    /// More tags than an item may carry (8).
    LARDER_E_TOO_MANY_TAGS = -11,
    /// `larder_incr` / `larder_decr` on a value that is not a decimal unsigned 64-bit number.
    LARDER_E_NOT_A_NUMBER = -12,
    /// A lease given back with another key than the one it was taken for.
    LARDER_E_WRONG_LEASE = -13,
    /// A glob pattern that does not compile (an unclosed `[`).
    LARDER_E_BAD_PATTERN = -14,
    /// The configuration given to `larder_create` is unusable.
    LARDER_E_INVALID_CONFIG = -15,
    /// The file is not a larder arena.
    LARDER_E_NOT_AN_ARENA = -16,
    /// The arena was made by a build with another layout version (restart larderd).
    LARDER_E_LAYOUT_VERSION = -17,
    /// The arena's header is damaged.
    LARDER_E_BAD_ARENA = -18,
    /// An operating-system error (opening, mapping, locking); `larder_last_error` says which.
    LARDER_E_IO = -19,
    /// A bug in larder (a panic, caught at the boundary). Please report it with
    /// `larder_last_error()`.
    LARDER_E_INTERNAL = -20,
}

use larder_status::*;

/// Every status, for `larder_strerror` and the tests.
pub(crate) const ALL: [larder_status; 29] = [
    LARDER_OK,
    LARDER_NOT_FOUND,
    LARDER_EXISTS,
    LARDER_TOO_SMALL,
    LARDER_STALE,
    LARDER_LEASED,
    LARDER_WAIT,
    LARDER_NOT_STORED,
    LARDER_END,
    LARDER_E_NULL,
    LARDER_E_BAD_HANDLE,
    LARDER_E_INVALID_ARGUMENT,
    LARDER_E_EMPTY_KEY,
    LARDER_E_KEY_TOO_LARGE,
    LARDER_E_VALUE_TOO_LARGE,
    LARDER_E_INVALID_TTL,
    LARDER_E_ARENA_FULL,
    LARDER_E_OBSERVER,
    LARDER_E_TOO_MANY_PROCESSES,
    LARDER_E_TOO_MANY_TAGS,
    LARDER_E_NOT_A_NUMBER,
    LARDER_E_WRONG_LEASE,
    LARDER_E_BAD_PATTERN,
    LARDER_E_INVALID_CONFIG,
    LARDER_E_NOT_AN_ARENA,
    LARDER_E_LAYOUT_VERSION,
    LARDER_E_BAD_ARENA,
    LARDER_E_IO,
    LARDER_E_INTERNAL,
];

impl larder_status {
    /// The fixed description `larder_strerror` returns, NUL-terminated.
    fn describe(self) -> &'static CStr {
        match self {
            LARDER_OK => c"ok",
            LARDER_NOT_FOUND => c"not found",
            LARDER_EXISTS => c"exists",
            LARDER_TOO_SMALL => c"buffer too small",
            LARDER_STALE => c"stale value",
            LARDER_LEASED => c"lease acquired",
            LARDER_WAIT => c"lease held by another caller",
            LARDER_NOT_STORED => c"not stored: invalidated while leased",
            LARDER_END => c"end of keys",
            LARDER_E_NULL => c"a required pointer argument is NULL",
            LARDER_E_BAD_HANDLE => c"not an open larder handle",
            LARDER_E_INVALID_ARGUMENT => c"invalid argument",
            LARDER_E_EMPTY_KEY => c"empty key",
            LARDER_E_KEY_TOO_LARGE => c"key too large",
            LARDER_E_VALUE_TOO_LARGE => c"value too large",
            LARDER_E_INVALID_TTL => c"invalid TTL",
            LARDER_E_ARENA_FULL => c"arena full",
            LARDER_E_OBSERVER => c"handle only observes the arena",
            LARDER_E_TOO_MANY_PROCESSES => c"all process slots in use",
            LARDER_E_TOO_MANY_TAGS => c"too many tags",
            LARDER_E_NOT_A_NUMBER => c"value is not a decimal unsigned 64-bit number",
            LARDER_E_WRONG_LEASE => c"lease taken for another key",
            LARDER_E_BAD_PATTERN => c"bad glob pattern",
            LARDER_E_INVALID_CONFIG => c"invalid configuration",
            LARDER_E_NOT_AN_ARENA => c"not a larder arena",
            LARDER_E_LAYOUT_VERSION => c"arena layout version not supported by this build",
            LARDER_E_BAD_ARENA => c"damaged arena",
            LARDER_E_IO => c"I/O error",
            LARDER_E_INTERNAL => c"internal error in larder",
        }
    }
}

/// An error on its way to C: its code and the message `larder_last_error` will return.
/// Boxed, so that the `Result` every call returns is one word on the fast path.
pub(crate) struct Failure(Box<(larder_status, String)>);

impl Failure {
    #[cold]
    pub(crate) fn new(status: larder_status, message: impl Into<String>) -> Failure {
        Failure(Box::new((status, message.into())))
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let status = match e {
            Error::EmptyKey { .. } => LARDER_E_EMPTY_KEY,
            Error::KeyTooLarge { .. } => LARDER_E_KEY_TOO_LARGE,
            Error::ValueTooLarge { .. } => LARDER_E_VALUE_TOO_LARGE,
            Error::InvalidTtl { .. } => LARDER_E_INVALID_TTL,
            Error::ArenaFull => LARDER_E_ARENA_FULL,
            Error::Observer => LARDER_E_OBSERVER,
            Error::TooManyProcesses { .. } => LARDER_E_TOO_MANY_PROCESSES,
            Error::TooManyTags { .. } => LARDER_E_TOO_MANY_TAGS,
            Error::NotANumber => LARDER_E_NOT_A_NUMBER,
            Error::WrongLease => LARDER_E_WRONG_LEASE,
            Error::Io { .. } => LARDER_E_IO,
            _ => LARDER_E_INTERNAL,
        };
        Failure::new(status, e.to_string())
    }
}

impl From<OpenError> for Failure {
    fn from(e: OpenError) -> Failure {
        let status = match e {
            OpenError::InvalidConfig { .. } => LARDER_E_INVALID_CONFIG,
            OpenError::NotAnArena { .. } => LARDER_E_NOT_AN_ARENA,
            OpenError::LayoutVersion { .. } => LARDER_E_LAYOUT_VERSION,
            OpenError::BadArena { .. } => LARDER_E_BAD_ARENA,
            OpenError::AlreadyExists { .. } => LARDER_EXISTS,
            OpenError::TooManyProcesses { .. } => LARDER_E_TOO_MANY_PROCESSES,
            OpenError::Io { .. } => LARDER_E_IO,
            _ => LARDER_E_INTERNAL,
        };
        Failure::new(status, e.to_string())
    }
}

impl From<GlobError> for Failure {
    fn from(e: GlobError) -> Failure {
        Failure::new(LARDER_E_BAD_PATTERN, e.to_string())
    }
}

thread_local! {
    /// The message of this thread's last failed call (empty before the first failure).
    static LAST: RefCell<Option<CString>> = const { RefCell::new(None) };
}

#[cold]
#[inline(never)]
fn failed(f: Failure) -> larder_status {
    let (status, message) = *f.0;
    set_last(message);
    status
}

fn set_last(message: String) {
    // A message with a NUL in it (a key's bytes) is cut at the NUL rather than lost.
    let mut bytes = message.into_bytes();
    if let Some(nul) = bytes.iter().position(|&b| b == 0) {
        bytes.truncate(nul);
    }
    let c = CString::new(bytes).unwrap_or_default();
    LAST.with(|l| *l.borrow_mut() = Some(c));
}

/// Runs an exported function's body: its error becomes a status code and this thread's
/// last error message, and a panic is caught here instead of unwinding into C (undefined
/// behaviour) and reported as `LARDER_E_INTERNAL`.
pub(crate) fn guard(body: impl FnOnce() -> Result<larder_status, Failure>) -> larder_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(status)) => status,
        Ok(Err(f)) => failed(f),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            set_last(format!(
                "internal error in larder (please report it): {what}"
            ));
            LARDER_E_INTERNAL
        }
    }
}

/// The fixed description of `code` (any integer: an unknown one says so). The string is
/// static: never free it.
#[no_mangle]
pub extern "C" fn larder_strerror(code: i32) -> *const c_char {
    ALL.iter()
        .find(|s| **s as i32 == code)
        .map_or(c"unknown larder status code", |s| s.describe())
        .as_ptr()
}

/// The message of the calling thread's last failed call, more precise than
/// `larder_strerror` (it names the key length, the path, the OS error). Owned by larder and
/// valid until the next failed call on this thread; an empty string before any failure.
/// Successful calls leave it unchanged.
#[no_mangle]
pub extern "C" fn larder_last_error() -> *const c_char {
    // The CString lives in this thread's slot until the next failure replaces it.
    LAST.with(|l| l.borrow().as_deref().unwrap_or(c"").as_ptr())
}
