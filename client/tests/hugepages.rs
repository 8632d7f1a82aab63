//! Transparent huge pages for the arena: every handle maps it aligned, and collapsing a live
//! arena keeps its contents.

mod common;

use std::path::PathBuf;

/// A directory on tmpfs (huge folios need a file system that has them; /tmp may be a disk).
struct ShmDir(PathBuf);

impl ShmDir {
    fn new(tag: &str) -> Option<ShmDir> {
        let shm = std::path::Path::new("/dev/shm");
        if !shm.is_dir() {
            return None;
        }
        let p = shm.join(format!("larder-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).ok()?;
        Some(ShmDir(p))
    }
}

impl Drop for ShmDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether this kernel has MADV_COLLAPSE (Linux 6.1) and THP for shmem: if it has, a refusal is a failure of
/// ours (a misaligned mapping is refused too), not a reason to skip.
fn kernel_has_collapse() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    // Without THP in the kernel, or with shmem THP forbidden outright, nothing collapses.
    let shmem = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/shmem_enabled");
    let allowed = shmem.is_ok_and(|s| !s.contains("[deny]"));
    (major, minor) >= (6, 1) && allowed
}

/// Skips (returns true) only when the kernel cannot collapse at all, or could not this
/// time for lack of memory; any other refusal fails the test.
fn refused(r: &larder::HugePages) -> bool {
    if r.huge_bytes > 0 {
        return false;
    }
    let transient = r.error.as_deref().is_some_and(|e| {
        e.contains("Resource temporarily unavailable") || e.contains("Cannot allocate memory")
    });
    assert!(
        !kernel_has_collapse() || transient,
        "MADV_COLLAPSE refused on a kernel that has it: {:?}",
        r.error
    );
    eprintln!("skipped: no huge pages from this kernel now: {:?}", r.error);
    true
}

/// Reads every item, so that every page of the arena the index points into is mapped.
fn read_all(cache: &larder::Cache, n: u32) {
    let mut buf = Vec::new();
    for i in 0..n {
        buf.clear();
        let key = format!("key:{i:08}");
        assert!(
            cache.get_into(key.as_bytes(), &mut buf).unwrap(),
            "{key} missing"
        );
        common::check_value(key.as_bytes(), &buf).unwrap();
    }
}

#[test]
fn collapsed_arena_is_mapped_huge_by_every_handle_and_keeps_its_items() {
    let Some(dir) = ShmDir::new("huge") else {
        eprintln!("skipped: no /dev/shm");
        return;
    };
    let path = dir.0.join("arena");
    // Small pages at creation, so that the collapse below works on a live, filled arena.
    let config = larder::Config::new(32 << 20)
        .max_value_len(4096)
        .huge_pages(false);
    let a = larder::Cache::create(&path, &config).unwrap();
    let n = 40_000;
    for i in 0..n {
        let key = format!("key:{i:08}");
        let v = common::make_value(key.as_bytes(), u64::from(i), 600);
        a.set(key.as_bytes(), &v, None).unwrap();
    }
    assert_eq!(
        a.huge_page_bytes(),
        Some(0),
        "huge pages before any collapse"
    );

    let b = larder::Cache::open(&path).unwrap();
    let report = b.collapse_huge_pages();
    assert_eq!(report.total_bytes, 32 << 20);
    if refused(&report) {
        return;
    }
    // Handles opened before and after the collapse both map the huge folios with PMD
    // entries, which needs their mappings to be aligned.
    let c = larder::Cache::open(&path).unwrap();
    for cache in [&a, &b, &c] {
        read_all(cache, n);
        let mapped = cache.huge_page_bytes().expect("/proc/self/smaps");
        assert_eq!(
            mapped, report.huge_bytes,
            "every collapsed range is mapped huge"
        );
    }
    assert_eq!(a.stats().items, u64::from(n));
}

#[test]
fn new_arenas_are_created_huge_unless_told_not_to() {
    let Some(dir) = ShmDir::new("create") else {
        eprintln!("skipped: no /dev/shm");
        return;
    };
    let n = 20_000;
    let mut mapped = Vec::new();
    for huge in [false, true] {
        let path = dir.0.join(format!("arena-{huge}"));
        let config = larder::Config::new(16 << 20)
            .max_value_len(4096)
            .huge_pages(huge);
        let writer = larder::Cache::create(&path, &config).unwrap();
        for i in 0..n {
            let key = format!("key:{i:08}");
            let v = common::make_value(key.as_bytes(), u64::from(i), 600);
            writer.set(key.as_bytes(), &v, None).unwrap();
        }
        // A fresh handle maps pages as it touches them; nobody collapsed anything since
        // the arena was created.
        let reader = larder::Cache::open(&path).unwrap();
        read_all(&reader, n);
        mapped.push(reader.huge_page_bytes().expect("/proc/self/smaps"));
    }
    let probe = larder::Cache::open(dir.0.join("arena-false"))
        .unwrap()
        .collapse_huge_pages();
    if refused(&probe) {
        return;
    }
    assert_eq!(
        mapped[0], 0,
        "huge pages in an arena created with huge_pages(false)"
    );
    assert!(
        mapped[1] == 16 << 20,
        "{} bytes of a 16 MiB arena created with huge pages are mapped huge",
        mapped[1]
    );
}
