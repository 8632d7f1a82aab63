//! Writing a snapshot atomically and at a limited rate while clients keep working.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use larder::Cache;

use super::format::*;
use crate::units::unix_now;

/// Shared between the daemon's main loop and a snapshot being written.
#[derive(Default)]
pub struct Control {
    /// Stop rate-limiting (the daemon is stopping and wants it finished).
    pub(super) hurry: AtomicBool,
    /// Give up; the previous snapshot stays.
    pub(super) abort: AtomicBool,
}

/// What [`write`] did.
#[derive(Debug, Clone, Copy)]
pub struct WriteReport {
    /// Unix seconds the snapshot was taken.
    pub created: u64,
    pub items: u64,
    pub bytes: u64,
    pub elapsed: Duration,
}

/// Writes a snapshot of `cache` to `path` atomically (temp file, fsync, rename, fsync of
/// the directory), at most `rate` bytes a second (0: no limit).
pub fn write(
    cache: &Cache,
    path: &Path,
    rate: u64,
    control: &Control,
) -> anyhow::Result<WriteReport> {
    let t0 = Instant::now();
    let tmp = crate::atomic_file::tmp_path(path);
    // write_tmp fsyncs the file it wrote (after its rate-limited writeback).
    let result = write_tmp(cache, &tmp, rate, control).and_then(|rep| {
        crate::atomic_file::rename_durably(&tmp, path)
            .with_context(|| format!("renaming {} over {}", tmp.display(), path.display()))?;
        Ok(rep)
    });
    match result {
        Ok(mut rep) => {
            rep.elapsed = t0.elapsed();
            Ok(rep)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

pub(super) fn write_tmp(
    cache: &Cache,
    tmp: &Path,
    rate: u64,
    control: &Control,
) -> anyhow::Result<WriteReport> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .open(tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    let created = unix_now();
    let start = Instant::now();
    let mut written = 0u64;
    let mut synced = 0u64;
    let fd = f.as_raw_fd();
    let mut sink = |chunk: &[u8]| -> std::io::Result<()> {
        // Relaxed: a request flag; nothing is published with it.
        if control.abort.load(Ordering::Relaxed) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "snapshot abandoned",
            ));
        }
        f.write_all(chunk)?;
        written += chunk.len() as u64;
        if written - synced >= WRITEBACK_EVERY {
            // Raw libc: nix has no sync_file_range.
            // SAFETY: sync_file_range on a descriptor we own; it only starts writeback.
            unsafe {
                libc::sync_file_range(
                    fd,
                    synced as libc::off64_t,
                    (written - synced) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                )
            };
            synced = written;
        }
        // Relaxed: as above.
        if rate > 0 && !control.hurry.load(Ordering::Relaxed) {
            let due = Duration::from_secs_f64(written as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        Ok(())
    };
    let items = encode(cache.entries(), created, &mut sink)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all_at(&header(created, items), 0)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    Ok(WriteReport {
        created,
        items,
        bytes: written,
        elapsed: Duration::ZERO,
    })
}
