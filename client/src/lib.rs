//! # larder: a lock-free shared-memory cache for processes on one host
//!
//! Every process that links this crate maps the same arena file and reads and writes items
//! directly in shared memory: no socket, no lock on the read path, and no state that breaks
//! when a process is SIGKILLed between any two instructions. The daemon `larderd` creates
//! the arena and keeps it healthy; this crate is all a client needs.
//!
//! ```
//! # let dir = std::env::temp_dir().join(format!("larder-lib-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! # let path = dir.join("arena");
//! # let _ = std::fs::remove_file(&path);
//! let cache = larder::Cache::create(&path, &larder::Config::new(8 << 20).max_value_len(4096))?;
//! cache.set(b"hits", b"41", None)?;
//! assert_eq!(cache.incr(b"hits", 1)?, Some(42));
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! In production, attach to the daemon's arena with
//! `Cache::open(larder::default_arena_path())`. The protocol is described in
//! `docs/design.md`.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
// Under loom only the protocol is built (no mapping, no `Cache`), so much of it is unused.
#![cfg_attr(larder_loom, allow(dead_code, unused_imports))]

// The protocol (loom-buildable, words only), then the host side: files, mappings, locks,
// registration, the public handle and the patterns built on it.
mod protocol;

#[cfg(not(larder_loom))]
mod admin;
#[cfg(not(larder_loom))]
mod arena;
#[cfg(not(larder_loom))]
mod backing;
#[cfg(not(larder_loom))]
mod cache;
mod error;
#[cfg(not(larder_loom))]
mod evictor;
#[cfg(not(larder_loom))]
mod fork;
mod glob;
#[cfg(not(larder_loom))]
mod info;
#[cfg(not(larder_loom))]
mod mapping;
#[cfg(not(larder_loom))]
mod ofd;
#[cfg(not(larder_loom))]
mod patterns;
#[cfg(not(larder_loom))]
mod registration;

/// The arena's byte layout: offsets and word formats, for tools that read arena files
/// directly (the fuzz targets, tests, benchmarks). Not a stable API: it changes with the
/// layout version.
#[doc(hidden)]
pub use protocol::layout;

#[cfg(not(larder_loom))]
pub use arena::{default_arena_path, Config};
#[cfg(not(larder_loom))]
pub use backing::Backing;
#[cfg(not(larder_loom))]
pub use cache::{Cache, CasOutcome, CasToken, Entry, ItemMeta, Keys};
pub use error::{Error, OpenError};
#[cfg(not(larder_loom))]
#[doc(hidden)]
pub use evictor::Evictor;
pub use glob::{Glob, GlobError};
#[cfg(not(larder_loom))]
pub use info::ArenaInfo;
#[cfg(not(larder_loom))]
pub use mapping::HugePages;
#[cfg(not(larder_loom))]
#[doc(hidden)]
pub use mapping::Mapping as AlignedMapping;
#[cfg(not(larder_loom))]
pub use patterns::{
    Found, Lease, Leased, LoadError, LoadOptions, MaybeStale, Revalidate, SetOptions, Store,
    WriteBehind, WriteError, WriteThrough,
};
pub use protocol::expiry::SweepReport;
pub use protocol::stats::{Counters, ProcessStats, Stats};
