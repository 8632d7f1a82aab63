//! Loading a snapshot into a new arena, all or nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use larder::Cache;

use super::format::*;
use crate::units::unix_now;

/// What [`load`] did.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Unix seconds the snapshot was taken.
    pub created: u64,
    /// Items in the file.
    pub items: u64,
    pub loaded: u64,
    /// Items whose expiry passed since the snapshot.
    pub expired: u64,
    /// Items the arena refused (too large for its limits, or no space).
    pub rejected: u64,
    pub elapsed: Duration,
}

/// Loads the snapshot at `path` into `cache` (a new arena). The whole file is checked
/// first; nothing is stored unless every frame is intact. `progress(done, total)` is
/// called about once a second while items are stored.
pub fn load(
    cache: &Cache,
    path: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<LoadReport, ReadError> {
    let t0 = Instant::now();
    let (_, total) = open_and_decode(path, &mut |_| {})?;
    let mut rep = LoadReport {
        items: total,
        ..LoadReport::default()
    };
    let mut tick = Instant::now();
    let mut first_refusal = true;
    let (created, _) = open_and_decode(path, &mut |item| {
        let now = unix_now();
        let ttl = match item.expires {
            0 => None,
            e if e <= now => {
                rep.expired += 1;
                return;
            }
            e => Some(Duration::from_secs(e - now)),
        };
        let stored = cache.set_with(
            item.key,
            item.value,
            &larder::Entry {
                key: Vec::new(),
                value: Vec::new(),
                ttl,
                // Grace runs from the TTL's end: none without a TTL.
                grace: ttl
                    .filter(|_| item.grace > 0)
                    .map(|_| Duration::from_secs(item.grace.into())),
                flags: item.flags,
            }
            .options(),
        );
        match stored {
            Ok(()) => rep.loaded += 1,
            Err(e) => {
                if first_refusal {
                    tracing::warn!(error = %e, "the arena refused an item of the snapshot (first of possibly many; counted)");
                    first_refusal = false;
                }
                rep.rejected += 1;
            }
        }
        if tick.elapsed() >= Duration::from_secs(1) {
            tick = Instant::now();
            progress(rep.loaded + rep.expired + rep.rejected, total);
        }
    })?;
    rep.created = created;
    rep.elapsed = t0.elapsed();
    Ok(rep)
}
