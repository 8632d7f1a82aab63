//! Arena files: configuration, creation, validation before mapping, and discovery.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::mapping::{HugePages, Mapping};
use crate::protocol::layout::{
    self as layout, item_size, Geometry, Params, HASH_ALGO_XXH3, HEADER_SIZE, H_PARAMS_CRC,
    ITEM_HEADER_SIZE, KEY_LEN_LIMIT, LAYOUT_VERSION, MAGIC, MAX_SEG_SHIFT, MIN_SEG_SHIFT,
    PARAMS_LEN, VALUE_LEN_LIMIT,
};
use crate::OpenError;

/// How to format a new arena. Built with [`Config::new`] and the builder methods.
///
/// ```
/// let config = larder::Config::new(64 << 20).max_value_len(64 << 10);
/// assert_eq!(config.capacity(), 64 << 20);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    capacity: u64,
    max_key: u32,
    /// `None`: 1 MiB, or less where an explicit segment size needs it (see `limits`).
    max_value: Option<u32>,
    segment_size: Option<u64>,
    avg_item_size: u64,
    max_processes: u32,
    mode: u32,
    huge_pages: bool,
}

impl Config {
    /// An arena file of `capacity_bytes` bytes (1 MiB and up), with defaults: keys up to 250
    /// bytes, segments of about a sixty-fourth of the arena (64 KiB to 2 MiB), values up to
    /// 1 MiB or the largest that fits such a segment with every extension word (arenas
    /// under 128 MiB), 256 processes, index sized for 128-byte items, mode 0660.
    pub fn new(capacity_bytes: u64) -> Config {
        Config {
            capacity: capacity_bytes,
            max_key: 250,
            max_value: None,
            segment_size: None,
            avg_item_size: 128,
            max_processes: 256,
            mode: 0o660,
            huge_pages: true,
        }
    }
    /// Longest key accepted (1..=255).
    pub fn max_key_len(mut self, n: u32) -> Config {
        self.max_key = n;
        self
    }
    /// Longest value accepted (at most 16 MiB − 1).
    pub fn max_value_len(mut self, n: u32) -> Config {
        self.max_value = Some(n);
        self
    }
    /// Segment size (a power of two from 64 KiB to 1 GiB, at least the largest item with
    /// every extension word: header, key, value, and up to 80 bytes of stale grace, tags,
    /// load time and client flags). Default: about a sixty-fourth of the arena (64 KiB to
    /// 2 MiB); with an explicit value limit, at least the smallest power of two that holds
    /// its largest item.
    pub fn segment_size(mut self, n: u64) -> Config {
        self.segment_size = Some(n);
        self
    }
    /// Expected average item size (8-byte header + key + value), which sizes the index.
    pub fn avg_item_size(mut self, n: u64) -> Config {
        self.avg_item_size = n;
        self
    }
    /// How many processes may be attached at once.
    pub fn max_processes(mut self, n: u32) -> Config {
        self.max_processes = n;
        self
    }
    /// Permission bits of the arena file (applied with fchmod, so the umask does not decide).
    pub fn mode(mut self, mode: u32) -> Config {
        self.mode = mode;
        self
    }
    /// Back the new arena with transparent huge pages where the kernel allows it (default
    /// `true`). A hit is two dependent cache misses anywhere in the arena; on small pages
    /// each is also a TLB miss. Costs nothing to readers; the arena's memory is committed when
    /// it is created instead of as it fills (it is reserved with `posix_fallocate` anyway).
    pub fn huge_pages(mut self, on: bool) -> Config {
        self.huge_pages = on;
        self
    }
    /// Size of the arena file.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    fn invalid(reason: String) -> OpenError {
        OpenError::InvalidConfig { reason }
    }

    /// The value limit and segment size this configuration gives, checked: the largest
    /// item — header, key, value *and* every extension word a write may add (the meta word,
    /// `MAX_TAGS` tags and client flags: `get_or_load` always adds the meta word) — must fit a segment
    /// (design.md §2.5, §2.6). Counting without them let a maximum-size `get_or_load`
    /// write past its segment's end, over the next segment's first items.
    fn limits(&self) -> Result<(u32, u64), OpenError> {
        let ext = MAX_EXT_WORDS * 8 + u64::from(self.max_key);
        let fits = |seg: u64| seg.saturating_sub(ITEM_HEADER_SIZE + ext);
        let auto = auto_segment_size(self.capacity);
        let max_value = match (self.max_value, self.segment_size) {
            (Some(v), _) => v,
            // The default limit, lowered to what the segment (explicit, or chosen from the
            // arena's size) can hold.
            (None, Some(seg)) => u32::try_from(fits(seg))
                .unwrap_or(u32::MAX)
                .min(DEFAULT_MAX_VALUE),
            (None, None) => u32::try_from(fits(auto))
                .unwrap_or(u32::MAX)
                .min(DEFAULT_MAX_VALUE),
        };
        if max_value > VALUE_LEN_LIMIT {
            return Err(Self::invalid(format!(
                "max value length {max_value} is over {VALUE_LEN_LIMIT} (16 MiB - 1), the most an item header can describe"
            )));
        }
        let largest = item_size(ext, u64::from(max_value));
        let seg = match (self.segment_size, self.max_value) {
            (Some(s), _) => s,
            (None, None) => auto,
            // An explicit value limit: the smallest power of two that holds its largest item,
            // and no smaller than the arena's size calls for (at most 1 MiB, as before).
            (None, Some(_)) => largest.next_power_of_two().max(auto.min(1 << 20)),
        };
        if !seg.is_power_of_two()
            || !(MIN_SEG_SHIFT..=MAX_SEG_SHIFT).contains(&seg.trailing_zeros())
        {
            return Err(Self::invalid(format!(
                "segment size {seg} is not a power of two from 64 KiB to 1 GiB"
            )));
        }
        if largest > seg {
            return Err(Self::invalid(format!(
                "the largest item ({largest} bytes: max key {}, max value {max_value} and up to {} bytes of stale grace, tags, load time and client flags) does not fit a {seg}-byte segment; lower max value to at most {} or raise the segment size",
                self.max_key,
                MAX_EXT_WORDS * 8,
                fits(seg)
            )));
        }
        Ok((max_value, seg))
    }

    /// Checks everything [`Cache::create`](crate::Cache::create) would check of this
    /// configuration, without creating anything: the limits, and that the capacity holds
    /// the index and enough segments. Returns the segment size and count it plans.
    pub fn check(&self) -> Result<(u64, u32), OpenError> {
        self.plan().map(|g| (g.seg_size(), g.nsegs))
    }

    /// The longest value an arena created from this configuration accepts.
    pub fn value_limit(&self) -> Result<u32, OpenError> {
        self.limits().map(|(v, _)| v)
    }

    /// Checks the limits and plans the layout.
    pub(crate) fn plan(&self) -> Result<Geometry, OpenError> {
        if self.max_key == 0 || self.max_key > KEY_LEN_LIMIT {
            return Err(Self::invalid(format!(
                "max key length {} is not in 1..={KEY_LEN_LIMIT}",
                self.max_key
            )));
        }
        if self.max_processes == 0 || self.max_processes > 65536 {
            return Err(Self::invalid(format!(
                "max processes {} is not in 1..=65536",
                self.max_processes
            )));
        }
        let (_, seg) = self.limits()?;
        Geometry::plan(self.capacity, seg.trailing_zeros(), self.max_processes, 1024, 1024, self.avg_item_size).ok_or_else(|| {
            Self::invalid(format!(
                "capacity {} bytes holds fewer than {} segments of {seg} bytes plus the index; raise capacity or lower max value / segment size",
                self.capacity,
                crate::protocol::layout::MIN_SEGS
            ))
        })
    }

    /// `true` if an arena created from this configuration would have exactly the layout
    /// `info` describes (size, segments, index buckets, process slots, key and value
    /// limits): a daemon re-attaches to such an arena and replaces any other.
    pub fn fits(&self, info: &crate::ArenaInfo) -> Result<bool, OpenError> {
        let g = self.plan()?;
        Ok(g.arena_size == info.arena_size
            && g.seg_size() == info.segment_size
            && g.nsegs == info.segments
            && g.nbuckets == info.buckets
            && g.nprocs == info.max_processes
            && self.max_key == info.max_key
            && self.value_limit()? == info.max_value)
    }
}

/// The arena path every program uses when none is given: `$LARDER_ARENA`, else
/// `/run/larder/arena` if it exists (the system service), else
/// `$XDG_RUNTIME_DIR/larder/arena`, else `/dev/shm/larder-$UID/arena`.
pub fn default_arena_path() -> PathBuf {
    if let Some(p) = std::env::var_os("LARDER_ARENA").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let system = Path::new("/run/larder/arena");
    if system.exists() {
        return system.to_owned();
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        return Path::new(&d).join("larder").join("arena");
    }
    let uid = nix::unistd::getuid();
    PathBuf::from(format!("/dev/shm/larder-{uid}/arena"))
}

/// Formats a new arena file at `path` (which must not exist): written under a temporary
/// name, then linked into place, so nobody ever opens a half-formatted arena.
pub(crate) fn create_file(path: &Path, config: &Config) -> Result<(), OpenError> {
    let geo = config.plan()?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.new.{}",
        path.file_name()
            .map_or("arena".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let result = format_into(&tmp, &geo, config).and_then(|()| {
        // link(2) fails with EEXIST instead of replacing: never clobber a live arena.
        std::fs::hard_link(&tmp, path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => OpenError::AlreadyExists {
                path: path.to_owned(),
            },
            _ => OpenError::io("creating", path, e),
        })
    });
    let _ = std::fs::remove_file(&tmp);
    result
}

fn format_into(tmp: &Path, geo: &Geometry, config: &Config) -> Result<(), OpenError> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(config.mode)
        .open(tmp)
        .map_err(|e| OpenError::io("creating", tmp, e))?;
    f.set_permissions(std::fs::Permissions::from_mode(config.mode))
        .map_err(|e| OpenError::io("setting the mode of", tmp, e))?;
    f.set_len(geo.arena_size)
        .map_err(|e| OpenError::io("sizing", tmp, e))?;
    if config.huge_pages {
        // Collapsing ranges that hold one present page allocates their huge folios without
        // copying 511 zero pages each (posix_fallocate first would make it ~15x slower).
        // Refusals are not errors: the arena works on small pages.
        let _ = collapse_new(&f, geo.arena_size);
    }
    let len = libc::off_t::try_from(geo.arena_size).map_err(|_| OpenError::InvalidConfig {
        reason: format!("arena size {} does not fit a file offset", geo.arena_size),
    })?;
    nix::fcntl::posix_fallocate(&f, 0, len)
        .map_err(|e| OpenError::io("reserving space for", tmp, e.into()))?;
    let p = Params {
        magic: MAGIC,
        layout_version: LAYOUT_VERSION,
        header_size: HEADER_SIZE as u32,
        arena_size: geo.arena_size,
        hash_seed: random_seed(),
        hash_algo: HASH_ALGO_XXH3,
        seg_shift: geo.seg_shift,
        nsegs: geo.nsegs,
        nprocs: geo.nprocs,
        nbuckets: geo.nbuckets,
        ntags: geo.ntags,
        nleases: geo.nleases,
        max_key: config.max_key,
        max_value: config.value_limit()?,
        // One second before creation (layout 3): relative time 0 means "never expires", so
        // no current time may be 0 — an item made stale in the arena's first second
        // (`mark_stale`: expires now) would otherwise live on for that second.
        epoch: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .saturating_sub(1),
        procs_off: geo.procs_off,
        tags_off: geo.tags_off,
        leases_off: geo.leases_off,
        segtab_off: geo.segtab_off,
        index_off: geo.index_off,
        segs_off: geo.segs_off,
    };
    let bytes = p.to_bytes();
    f.write_all_at(&bytes, 0)
        .map_err(|e| OpenError::io("writing the header of", tmp, e))?;
    f.write_all_at(&crc32c::crc32c(&bytes).to_le_bytes(), H_PARAMS_CRC)
        .map_err(|e| OpenError::io("writing the header of", tmp, e))?;
    f.flush().map_err(|e| OpenError::io("writing", tmp, e))?;
    Ok(())
}

/// Backs a new, not yet shared arena file with huge folios where the kernel agrees.
fn collapse_new(f: &File, size: u64) -> std::io::Result<HugePages> {
    let len = usize::try_from(size).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let map = Mapping::map(f, len)?;
    Ok(map.collapse(|off| {
        // SAFETY: `off` is inside the mapping, which only this process can reach yet (the
        // file has a temporary name); a volatile read makes the page present.
        unsafe { std::ptr::read_volatile(map.as_ptr().add(off)) };
    }))
}

fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_ok() {
        u64::from_le_bytes(b)
    } else {
        // No entropy source: the seed only spreads keys, it is not a secret.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id())
    }
}

/// Latest creation time (`epoch`, unix seconds) an arena header may carry: year ~4147. Time
/// arithmetic on it (milliseconds for leases, the 2³¹-second expiry range) then has decades
/// of bits to spare; a header saying more is damaged.
const MAX_EPOCH: u64 = 1 << 36;

/// The value limit when none is given: 1 MiB, or what a small arena's segments hold.
const DEFAULT_MAX_VALUE: u32 = 1 << 20;

/// The segment size an arena of `capacity` bytes gets when neither a segment size nor a
/// value limit is given: about a sixty-fourth of the arena, a power of two from 64 KiB to
/// 2 MiB. Small arenas need small segments: the copy-forward reserve is two segments
/// whatever their size (a 16 MiB arena of 2 MiB segments kept 29 % of its log idle), and
/// eviction frees a whole segment at a time. From 128 MiB up the segments are 2 MiB and
/// the value limit 1 MiB.
pub(crate) fn auto_segment_size(capacity: u64) -> u64 {
    let target = (capacity / 64).max(1);
    // The largest power of two not above the target.
    let floor = 1u64 << (63 - target.leading_zeros());
    floor.clamp(1 << MIN_SEG_SHIFT, 2 << 20)
}

/// Extension words a write may put between an item's header and its key: the meta word,
/// up to `MAX_TAGS` tags and the client flags word (design.md §2.6).
const MAX_EXT_WORDS: u64 = layout::MAX_EXT_WORDS as u64;

/// Opens `path` read-write and validates everything about it that can be checked before
/// mapping: a regular file, long enough, our magic, version, checksum, size and geometry.
pub(crate) fn open_validated(path: &Path) -> Result<(File, Params, Geometry), OpenError> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| OpenError::io("opening arena", path, e))?;
    let meta = f
        .metadata()
        .map_err(|e| OpenError::io("inspecting", path, e))?;
    let bad = |reason: String| OpenError::NotAnArena {
        path: path.to_owned(),
        reason,
    };
    if !meta.file_type().is_file() {
        return Err(bad("not a regular file".into()));
    }
    let len = meta.len();
    if len < HEADER_SIZE {
        return Err(bad(format!(
            "{len} bytes is shorter than an arena header ({HEADER_SIZE} bytes)"
        )));
    }
    let mut head = [0u8; PARAMS_LEN + 4];
    f.read_exact_at(&mut head, 0)
        .map_err(|e| OpenError::io("reading the header of", path, e))?;
    let pb: &[u8; PARAMS_LEN] = head[..PARAMS_LEN].try_into().expect("PARAMS_LEN bytes");
    let p = Params::from_bytes(pb);
    if p.magic != MAGIC {
        return Err(bad("wrong magic number".into()));
    }
    if p.layout_version != LAYOUT_VERSION {
        return Err(OpenError::LayoutVersion {
            path: path.to_owned(),
            found: p.layout_version,
            expected: LAYOUT_VERSION,
        });
    }
    let damaged = |reason: String| OpenError::BadArena {
        path: path.to_owned(),
        reason,
    };
    let crc = u32::from_le_bytes(head[PARAMS_LEN..].try_into().expect("4 bytes"));
    if crc != crc32c::crc32c(pb) {
        return Err(damaged("header checksum mismatch".into()));
    }
    if p.arena_size != len {
        return Err(damaged(format!(
            "file is {len} bytes but its header says {}",
            p.arena_size
        )));
    }
    if p.hash_algo != HASH_ALGO_XXH3 || u64::from(p.header_size) != HEADER_SIZE {
        return Err(damaged(format!(
            "unknown hash algorithm {} or header size {}",
            p.hash_algo, p.header_size
        )));
    }
    // Without extension words, as arenas were checked before layout 2's review: such an
    // arena keeps working, and a write whose item with its extension words cannot fit a
    // segment is refused with ValueTooLarge (ops.rs `append`).
    if p.max_key == 0
        || p.max_key > KEY_LEN_LIMIT
        || p.max_value > VALUE_LEN_LIMIT
        || item_size(u64::from(p.max_key), u64::from(p.max_value)) > 1 << p.seg_shift.min(63)
    {
        return Err(damaged(
            "key/value limits do not fit the segment size".into(),
        ));
    }
    let geo = p
        .geometry()
        .ok_or_else(|| damaged("region offsets do not match its counts".into()))?;
    // Parameters a checksum-valid header may carry that the code cannot live with (a
    // random patch never produces them: it breaks the derived offsets or the checksum).
    // Every arena this crate creates has both tables (1024 entries each); without a tag
    // table invalidate_tag would count in the next region's words.
    if p.ntags == 0 || p.nleases == 0 {
        return Err(damaged(format!(
            "{} tag table entries and {} lease table entries (an arena has both tables)",
            p.ntags, p.nleases
        )));
    }
    if p.epoch > MAX_EPOCH {
        return Err(damaged(format!(
            "creation time (epoch) {} lies beyond the year 4000: not a time a clock gave",
            p.epoch
        )));
    }
    Ok((f, p, geo))
}
