//! The caching patterns applications use, each one call: cache-aside with stampede
//! protection and early refresh, stale reads, tags, write-through, write-behind, warm-up.

mod cache_aside;
mod lease;
mod options;
mod revalidate;
mod write;

pub use lease::{Lease, Leased};
pub use options::{LoadError, LoadOptions, MaybeStale, SetOptions};
pub use revalidate::{Found, Revalidate};
pub use write::{Store, WriteBehind, WriteError, WriteThrough};
