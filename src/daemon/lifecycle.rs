//! The arena's lifecycle: attach to a valid arena, create one, replace one planned
//! otherwise (carrying its items over), move a bad one aside, and fill a new one from the
//! snapshot (docs/design.md §6.2, §6.3).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use larder::{Cache, Config, OpenError};

use crate::notify::Notifier;
use crate::snapshot::{self, unix_now, ReadError};

/// Backs the arena with huge pages from a background thread: a new arena mostly is already
/// (creation collapses it), one re-attached after a restart or replaced may not be, and
/// collapsing it takes 1–2 ms per 2 MiB that serving should not wait for.
pub(crate) fn collapse_in_background(cache: &Cache) {
    let cache = cache.clone();
    let spawned = std::thread::Builder::new()
        .name("huge-pages".into())
        .spawn(move || {
            let r = cache.collapse_huge_pages();
            let (huge, total) = (r.huge_bytes >> 20, r.total_bytes >> 20);
            match r.error {
                None => tracing::info!(huge_mib = huge, arena_mib = total, "arena backed by huge pages"),
                Some(e) if huge > 0 => tracing::info!(huge_mib = huge, arena_mib = total, refused = %e, "arena partly backed by huge pages"),
                Some(e) => tracing::warn!(error = %e, "no huge pages for the arena; it works on 4 KiB pages, GETs are slower"),
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the huge-page thread");
    }
}

/// How the arena came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A valid arena was there: warm restart.
    Attached,
    /// New and empty: a snapshot may fill it.
    Created,
    /// New, filled from the arena it replaced.
    Replaced,
}

/// Opens a valid arena (warm restart) or creates a new one. An existing file that is not a
/// usable arena is moved aside, never deleted; a valid arena of another size or limits is
/// replaced by a new one that gets its live items.
pub(crate) fn attach_or_create(path: &Path, config: &Config) -> anyhow::Result<(Cache, Origin)> {
    match Cache::open(path) {
        Ok(old) => {
            let info = old.info();
            if config.fits(&info)? {
                tracing::info!(clean = info.clean, "re-attached to existing arena");
                return Ok((old, Origin::Attached));
            }
            return replace(path, config, old).map(|c| (c, Origin::Replaced));
        }
        Err(OpenError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
        Err(OpenError::LayoutVersion {
            found, expected, ..
        }) => {
            let aside = move_aside(path, &format!("layout{found}"))?;
            tracing::warn!(
                found,
                expected,
                old = %aside.display(),
                "the arena was made by another larder version (another layout): moved aside; starting from the snapshot (snapshots do not depend on the layout) or empty; processes still using the old library keep the old file until they restart"
            );
        }
        Err(e @ (OpenError::NotAnArena { .. } | OpenError::BadArena { .. })) => {
            let aside = move_aside(path, "bad")?;
            tracing::warn!(error = %e, old = %aside.display(), "unusable arena moved aside; starting from the snapshot or empty");
        }
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    }
    let c = Cache::create(path, config)
        .with_context(|| format!("creating arena {}", path.display()))?;
    Ok((c, Origin::Created))
}

/// Moves `old` aside, creates the new arena at `path`, marks the old one retired (attached
/// clients re-open the path) and copies its live items over. Items written to the new
/// arena meanwhile win: copies are stored with `add`.
pub(crate) fn replace(path: &Path, config: &Config, old: Cache) -> anyhow::Result<Cache> {
    let info = old.info();
    let (max_key, max_value) = old.limits();
    let aside = move_aside(path, "replaced")?;
    let new = Cache::create(path, config)
        .with_context(|| format!("creating arena {}", path.display()))?;
    old.mark_retired();
    let t0 = Instant::now();
    let (mut carried, mut refused) = (0u64, 0u64);
    for e in old.entries() {
        if e.ttl.is_some_and(|t| t.is_zero()) {
            continue;
        }
        let added = new.add_with(&e.key, &e.value, &e.options());
        match added {
            Ok(_) => carried += 1,
            Err(_) => refused += 1,
        }
    }
    tracing::warn!(
        old = %aside.display(),
        old_size = info.arena_size,
        old_max_key = max_key,
        old_max_value = max_value,
        old_buckets = info.buckets,
        new_size = config.capacity(),
        new_buckets = new.info().buckets,
        carried,
        refused,
        ms = t0.elapsed().as_millis() as u64,
        "the existing arena has another size, limits or index sizing: replaced it, carried its live items over, marked it retired and left it aside (remove it once no client maps it)"
    );
    Ok(new)
}

/// Loads `snap` into the new arena; a damaged snapshot is moved aside and the cache
/// starts empty. Never fails the start.
pub(crate) fn load_snapshot(cache: &Cache, snap: &Path, notifier: &Notifier) {
    tracing::info!(snapshot = %snap.display(), "loading snapshot");
    notifier.send("STATUS=loading snapshot");
    let mut progress = |done: u64, total: u64| {
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        tracing::info!(done, total, "loading snapshot: {pct}%");
        // Loading a large snapshot may outlast systemd's start timeout: it is progress.
        notifier.send(&format!(
            "EXTEND_TIMEOUT_USEC=30000000\nSTATUS=loading snapshot: {done} of {total} items"
        ));
    };
    match snapshot::load(cache, snap, &mut progress) {
        Ok(r) => tracing::info!(
            items = r.items,
            loaded = r.loaded,
            expired = r.expired,
            refused = r.rejected,
            age_s = unix_now().saturating_sub(r.created),
            ms = r.elapsed.as_millis() as u64,
            "snapshot loaded"
        ),
        Err(ReadError::Corrupt(why)) => {
            // The whole file is checked before anything is stored; flush anyway in case
            // it changed between the check and the load.
            let _ = cache.flush();
            match move_aside(snap, "corrupt") {
                Ok(aside) => tracing::warn!(
                    snapshot = %snap.display(),
                    moved_to = %aside.display(),
                    reason = %why,
                    "snapshot is damaged: moved it aside, starting with an empty cache"
                ),
                Err(e) => tracing::error!(
                    snapshot = %snap.display(),
                    reason = %why,
                    error = %format!("{e:#}"),
                    "snapshot is damaged and could not be moved aside; starting with an empty cache"
                ),
            }
        }
        Err(ReadError::Io(e)) => {
            // Keep it from being replaced by the next snapshot of a cache that starts empty.
            let aside = move_aside(snap, "unreadable").map_err(|e| format!("{e:#}"));
            tracing::error!(
                snapshot = %snap.display(),
                error = %e,
                moved_to = ?aside,
                "cannot read the snapshot; starting with an empty cache"
            );
        }
    }
}

/// Renames `path` to `<path>.<tag>-<unix time>` (never over an existing file).
pub(crate) fn move_aside(path: &Path, tag: &str) -> anyhow::Result<PathBuf> {
    let name = path
        .file_name()
        .map_or_else(|| "arena".into(), |n| n.to_string_lossy());
    let stamp = unix_now();
    let mut aside = path.with_file_name(format!("{name}.{tag}-{stamp}"));
    let mut n = 1;
    while aside.symlink_metadata().is_ok() {
        aside = path.with_file_name(format!("{name}.{tag}-{stamp}-{n}"));
        n += 1;
    }
    std::fs::rename(path, &aside).with_context(|| format!("moving {} aside", path.display()))?;
    Ok(aside)
}
