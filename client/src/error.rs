//! The library's two error types: what opening an arena can return ([`OpenError`]) and what an
//! operation on an open handle can return ([`Error`]). A `get` cannot fail with "already
//! exists", and `open` cannot fail with "value too large"; matching on either enum sees only
//! the cases that can happen.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why [`crate::Cache::create`], [`crate::Cache::open`] or a [`crate::Config`] check failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The configuration given to [`crate::Cache::create`] is unusable.
    #[error("invalid configuration: {reason}")]
    InvalidConfig { reason: String },
    /// The file exists but is not a larder arena.
    #[error("{path} is not a larder arena: {reason}")]
    NotAnArena { path: PathBuf, reason: String },
    /// The arena was made by a build with another layout version.
    #[error("{path} has arena layout version {found}; this build reads version {expected} (restart larderd to recreate it)")]
    LayoutVersion {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    /// The arena is damaged: its header does not describe a consistent arena.
    #[error("{path} is a damaged arena: {reason}")]
    BadArena { path: PathBuf, reason: String },
    /// There is already a file at the path given to [`crate::Cache::create`].
    #[error("{path} already exists")]
    AlreadyExists { path: PathBuf },
    /// All process slots are held by live processes.
    #[error("all {max} process slots of the arena are in use by live processes")]
    TooManyProcesses { max: u32 },
    /// An I/O error, with what was being done.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Why an operation on an open [`crate::Cache`] failed; each variant says what the caller can
/// do about it. Nothing was changed in the arena when an operation returns one of these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Keys must have at least one byte.
    #[error("empty key: keys must be 1 to {max} bytes")]
    EmptyKey { max: u32 },
    /// The key is longer than the arena's limit.
    #[error("key of {len} bytes exceeds this arena's limit of {max} bytes")]
    KeyTooLarge { len: usize, max: u32 },
    /// The value is longer than the arena's limit.
    #[error("value of {len} bytes exceeds this arena's limit of {max} bytes")]
    ValueTooLarge { len: usize, max: u32 },
    /// A TTL that cannot be stored.
    #[error("invalid TTL {ttl:?}: {reason}")]
    InvalidTtl { ttl: Duration, reason: &'static str },
    /// Every segment is held by writers or being evicted; nothing was stored. Retry, or
    /// give the arena more segments (larger capacity or smaller segment size).
    #[error("arena full: no segment can be claimed or evicted right now; nothing was stored")]
    ArenaFull,
    /// The handle was opened with [`crate::Cache::open_observer`], which reads the arena's
    /// header and statistics only.
    #[error("this handle only observes the arena (Cache::open_observer); open it with Cache::open to use items")]
    Observer,
    /// A forked child registers on its first operation, and all process slots are held by
    /// live processes.
    #[error("all {max} process slots of the arena are in use by live processes")]
    TooManyProcesses { max: u32 },
    /// An item may carry at most `max` tags.
    #[error("{count} tags given; an item may carry at most {max}")]
    TooManyTags { count: usize, max: usize },
    /// [`crate::Cache::fill_lease`] or [`crate::Cache::release_lease`] was given a lease
    /// taken for another key.
    #[error("this lease was taken for another key")]
    WrongLease,
    /// `incr`/`decr` on a value that is not a decimal u64.
    #[error("value is not a decimal unsigned 64-bit number")]
    NotANumber,
    /// An I/O error, with what was being done (a forked child re-opening the arena file to
    /// register, or the daemon locking a slot to reclaim it).
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl OpenError {
    pub(crate) fn io(what: &'static str, path: &Path, source: std::io::Error) -> OpenError {
        OpenError::Io {
            what,
            path: path.to_owned(),
            source,
        }
    }
}

impl Error {
    pub(crate) fn io(what: &'static str, path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            what,
            path: path.to_owned(),
            source,
        }
    }
}

/// Registering a process slot fails the same two ways whether it happens in `open` or in a
/// forked child's first operation; each caller reports it in its own error type.
#[derive(Debug)]
pub(crate) enum Unregistered {
    Full {
        max: u32,
    },
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<Unregistered> for OpenError {
    fn from(u: Unregistered) -> OpenError {
        match u {
            Unregistered::Full { max } => OpenError::TooManyProcesses { max },
            Unregistered::Io { what, path, source } => OpenError::Io { what, path, source },
        }
    }
}

impl From<Unregistered> for Error {
    fn from(u: Unregistered) -> Error {
        match u {
            Unregistered::Full { max } => Error::TooManyProcesses { max },
            Unregistered::Io { what, path, source } => Error::Io { what, path, source },
        }
    }
}
