//! The arena protocol: everything that reads or writes arena words, generic over `Mem`
//! (word at an offset), so that it builds under loom and runs on heap memory in tests as it
//! runs on the shared mapping in production (docs/design.md). Nothing here opens a file,
//! maps memory or takes a lock; that is the host side, beside this folder.

pub(crate) mod alloc;
#[cfg(all(test, not(larder_loom)))]
mod crash_tests;
pub(crate) mod engine;
pub(crate) mod eviction;
pub(crate) mod expiry;
pub(crate) mod index;
#[cfg(all(test, not(larder_loom)))]
mod interleave_tests;
pub(crate) mod item;
pub mod layout;
pub(crate) mod lease;
#[cfg(all(test, larder_loom))]
mod loom_tests;
pub(crate) mod mem;
pub(crate) mod ops;
pub(crate) mod procs;
pub(crate) mod stats;
pub(crate) mod sync;
pub(crate) mod tags;
#[cfg(any(test, larder_loom))]
pub(crate) mod testkit;
