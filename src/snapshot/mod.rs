//! Snapshots: the live items of an arena saved to a file, and loaded into a new arena.
//!
//! # Format (version 3, all integers little-endian)
//!
//! ```text
//! header (40 B)  magic "LRDRSNAP" | version u32 | reserved u32 (0) | created u64 (unix s)
//!                | items u64 | reserved u32 (0) | crc32c u32 of bytes 0..36
//! frames         len u32 | crc32c u32 of the payload | payload (len bytes)
//!   item payload   tag u8 = 1 | key_len u16 | key | value_len u32 | value
//!                  | expires u64 (absolute unix seconds, 0 = never)
//!                  | grace u32 (seconds the value may be served stale after `expires`)
//!                  | flags u32 (client flags; 0 for most items)
//!   end payload    tag u8 = 2 | items u64
//! ```
//!
//! Version 2 is the same without `flags`, version 1 also without `grace`; both are still
//! read (their items load with flags 0 and no grace).
//!
//! The end frame is the last bytes of the file; its count, the header's count and the
//! number of item frames must agree, so a truncated file is always detected, and every
//! frame (and the header) carries a checksum, so is every flipped bit.
//!
//! # Crash safety
//!
//! A snapshot is written to `<dir>/.<name>.tmp`, fsynced, renamed over `<name>`, and the
//! directory is fsynced. A crash at any point leaves the previous snapshot complete under
//! `<name>`; the temporary file is overwritten by the next attempt. Items are streamed from
//! the arena with [`Cache::entries`] while clients keep working: the snapshot holds every
//! item that was live for the whole walk, and items changed during it with either value.

mod format;
mod job;
mod load;
#[cfg(test)]
mod tests;
mod write;

pub use crate::units::unix_now;
pub use format::{ReadError, MAGIC, VERSION};
pub use job::Job;
pub use load::{load, LoadReport};
pub use write::{write, Control, WriteReport};
