//! The shared mapping of an arena file, and transparent huge pages for it.
//!
//! A GET is two dependent cache misses (bucket, item) scattered over the whole arena. With
//! 4 KiB pages each of them is also a TLB miss, and in a virtual machine a TLB miss is a
//! two-dimensional page walk: measured on our 2-core VM, huge pages take a hit from 448 ns to
//! 196 ns (benches/engine.rs). So every process maps the arena at an address aligned to the
//! PMD size (2 MiB on x86_64), which lets the kernel map any huge folio of the file with one
//! PMD entry, and whoever creates the arena asks the kernel to back it with huge folios.
//!
//! How: tmpfs (`/dev/shm`, `/run`) mounts default to `huge=never`, which `madvise
//! (MADV_HUGEPAGE)` cannot override, but `MADV_COLLAPSE` (Linux 6.1) works independently of
//! the sysfs and mount THP settings: it allocates a huge folio for a 2 MiB range, copies the
//! present small pages into it and replaces them in the file's page cache. The page cache is
//! shared, so the huge folio serves every process that maps the file aligned, and it stays
//! when the process that collapsed it exits. The kernel locks the small pages while it copies
//! them, so collapsing a range other processes are using is safe (their accesses wait on
//! the page lock); it is what khugepaged does to live memory all the time.
//!
//! Where `MADV_COLLAPSE` is refused (an older kernel, a file system without huge folios,
//! memory too fragmented) the arena works as before on small pages; the report says so.

use std::fs::File;
use std::io;
use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

use nix::sys::mman::{self, MapFlags, ProtFlags};

use crate::protocol::mem::Mem;

/// `MADV_COLLAPSE` from linux/mman.h. Neither nix's `MmapAdvise` nor every libc target
/// has it, so `collapse` calls `libc::madvise` with this number directly.
const MADV_COLLAPSE: libc::c_int = 25;

/// The size a PMD maps: the huge page size transparent huge pages use.
pub(crate) fn pmd_size() -> usize {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|n| n.is_power_of_two() && *n >= 4096)
        .unwrap_or(2 << 20)
}

/// A read-write `MAP_SHARED` mapping of a whole file, aligned to the huge-page (PMD) size. Exported
/// (hidden) only so that benches/engine.rs can give its reference table the same pages.
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value until drop; all access to its
// bytes goes through atomics (mem.rs), so sharing the pointer between threads is sound.
unsafe impl Send for Mapping {}
// SAFETY: as for Send.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `file` (which must be at least that long).
    pub fn map(file: &File, len: usize) -> io::Result<Mapping> {
        let size = NonZeroUsize::new(len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"))?;
        let align = pmd_size();
        // Reserve `len + align` bytes of address space, then place the file at the first
        // aligned address inside the reservation and give back what is left on each side.
        let span = len
            .checked_add(align)
            .and_then(NonZeroUsize::new)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "mapping too large"))?;
        // SAFETY: a fresh anonymous PROT_NONE reservation at an address the kernel picks;
        // it aliases nothing.
        let base = unsafe {
            mman::mmap_anonymous(
                None,
                span,
                ProtFlags::PROT_NONE,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE,
            )
        }?
        .cast::<u8>();
        let head = (align - (base.as_ptr() as usize & (align - 1))) & (align - 1);
        let start = base.as_ptr() as usize + head;
        // SAFETY: MAP_FIXED replaces part of the reservation made above, which this function
        // owns and nothing else uses; the file is open for reading and writing.
        let mapped = unsafe {
            mman::mmap(
                NonZeroUsize::new(start),
                size,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED | MapFlags::MAP_FIXED,
                file,
                0,
            )
        };
        let unmap = |at: usize, n: usize| {
            if let (Some(p), true) = (NonNull::new(at as *mut std::ffi::c_void), n > 0) {
                // SAFETY: only ever called on parts of the reservation made above that
                // hold nothing of ours.
                let _ = unsafe { mman::munmap(p, n) };
            }
        };
        let ptr = match mapped {
            Ok(p) => p.cast::<u8>(),
            Err(e) => {
                unmap(base.as_ptr() as usize, span.get());
                return Err(e.into());
            }
        };
        // Give back the unused ends of the reservation (either may be empty).
        unmap(base.as_ptr() as usize, head);
        unmap(start + len, span.get() - head - len);
        Ok(Mapping { ptr, len })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: `map` refuses empty mappings.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Asks the kernel to back every whole PMD-sized range of the mapping with a huge folio.
    /// `touch(off)` must make the page at `off` present (a read of an arena word does); a
    /// range with no present page is refused by the kernel.
    pub fn collapse(&self, mut touch: impl FnMut(usize)) -> HugePages {
        let align = pmd_size();
        let chunks = self.len / align;
        let mut report = HugePages {
            huge_bytes: 0,
            total_bytes: self.len as u64,
            error: None,
        };
        for i in 0..chunks {
            let off = i * align;
            touch(off);
            // SAFETY: the range is inside our mapping; MADV_COLLAPSE changes how the pages
            // are backed, never their contents.
            let r =
                unsafe { libc::madvise(self.ptr.as_ptr().add(off).cast(), align, MADV_COLLAPSE) };
            if r == 0 {
                report.huge_bytes += align as u64;
                continue;
            }
            let e = io::Error::last_os_error();
            // EAGAIN/ENOMEM: this range could not get a huge folio now; keep trying the
            // others. Anything else (EINVAL on kernels before 6.1 or file systems without
            // huge folios) will be the same for every range.
            let transient = matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::ENOMEM));
            report.error.get_or_insert_with(|| e.to_string());
            if !transient {
                break;
            }
        }
        report
    }

    /// How many bytes of this mapping the kernel currently maps with PMD entries in this
    /// process (from /proc/self/smaps; `None` if that cannot be read).
    pub fn pmd_mapped(&self) -> Option<u64> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let start = format!("{:x}-", self.ptr.as_ptr() as usize);
        let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&start));
        lines.next()?;
        let mut kb = 0;
        for l in lines {
            // The next mapping's header line ends this one's fields.
            if l.split_whitespace()
                .next()
                .is_some_and(|w| w.contains('-') && !w.ends_with(':'))
            {
                break;
            }
            if let Some(rest) = l
                .strip_prefix("ShmemPmdMapped:")
                .or_else(|| l.strip_prefix("FilePmdMapped:"))
            {
                kb += rest
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()?;
            }
        }
        Some(kb * 1024)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped; no reference into it outlives self.
        let _ = unsafe { mman::munmap(self.ptr.cast(), self.len) };
    }
}

/// What asking for huge pages achieved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HugePages {
    /// Bytes of the arena now backed by huge folios (collapsed by this call).
    pub huge_bytes: u64,
    /// Size of the arena.
    pub total_bytes: u64,
    /// The first refusal from the kernel, if any range was refused.
    pub error: Option<String>,
}

/// The shared mapping of an arena file.
pub(crate) struct MapMem {
    map: Mapping,
    len: u64,
}

impl MapMem {
    pub(crate) fn new(map: Mapping) -> MapMem {
        let len = map.len() as u64;
        MapMem { map, len }
    }

    pub(crate) fn mapping(&self) -> &Mapping {
        &self.map
    }
}

impl Mem for MapMem {
    #[inline]
    fn word(&self, off: u64) -> &AtomicU64 {
        assert!(
            off.is_multiple_of(8) && off + 8 <= self.len,
            "arena word {off} out of bounds"
        );
        // SAFETY: the check above keeps `off..off+8` inside the mapping, which is
        // page-aligned, so the pointer is 8-byte aligned. The mapping lives as long as
        // `self`. Other processes access these bytes only through 8-byte atomics too
        // (design.md §2), so viewing them as an `AtomicU64` creates no data race.
        unsafe { AtomicU64::from_ptr(self.map.as_ptr().add(off as usize).cast::<u64>()) }
    }

    #[inline]
    fn words(&self, off: u64, n: usize) -> &[AtomicU64] {
        let end = (n as u64).checked_mul(8).and_then(|b| b.checked_add(off));
        assert!(
            off.is_multiple_of(8) && end.is_some_and(|e| e <= self.len),
            "arena words {off}+{n} out of bounds"
        );
        // SAFETY: as in `word`, for every one of the `n` words: the check above keeps
        // `off..off + 8n` inside the mapping, and the pointer is 8-byte aligned.
        unsafe {
            std::slice::from_raw_parts(self.map.as_ptr().add(off as usize).cast::<AtomicU64>(), n)
        }
    }

    #[inline]
    fn prefetch(&self, off: u64) {
        #[cfg(target_arch = "x86_64")]
        if off < self.len {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            // SAFETY: `off` is inside the mapping (checked above), so the pointer
            // arithmetic stays in bounds; a prefetch only hints the cache and never
            // faults or reads into the program.
            #[allow(unused_unsafe)]
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(self.map.as_ptr().add(off as usize).cast::<i8>())
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = off;
    }
}
