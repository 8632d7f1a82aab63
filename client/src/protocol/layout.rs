//! The arena's byte layout: the one place every offset and size is defined.
//!
//! `larderd`, `cachectl` and every client use these definitions; nothing re-derives an
//! offset. The structs here are `#[repr(C)]` *descriptions* used for `offset_of!` and
//! `size_of`; none is ever materialised over shared memory (bytes another process may write
//! are only touched through `Mem` atomics). See `docs/design.md` §2.

use std::mem::{offset_of, size_of};

/// First eight bytes of every arena file.
pub const MAGIC: [u8; 8] = *b"LARDER\0\x01";
/// Bumped whenever any offset, size or word encoding below changes meaning.
pub const LAYOUT_VERSION: u32 = 4;
/// `hash_algo` value for xxh3-64 with the header's seed.
pub const HASH_ALGO_XXH3: u32 = 1;

/// The immutable part of the header, written once before the file is renamed into place.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    pub magic: [u8; 8],
    pub layout_version: u32,
    pub header_size: u32,
    pub arena_size: u64,
    pub hash_seed: u64,
    pub hash_algo: u32,
    pub seg_shift: u32,
    pub nsegs: u32,
    pub nprocs: u32,
    pub nbuckets: u64,
    pub ntags: u32,
    pub nleases: u32,
    pub max_key: u32,
    pub max_value: u32,
    /// Unix seconds at creation; item expiry times are seconds after it.
    pub epoch: u64,
    pub procs_off: u64,
    pub tags_off: u64,
    pub leases_off: u64,
    pub segtab_off: u64,
    pub index_off: u64,
    pub segs_off: u64,
}
const _: () = assert!(size_of::<Params>() == 128);

impl Params {
    /// Little-endian encoding, in field order (exactly `PARAMS_LEN` bytes).
    pub fn to_bytes(&self) -> [u8; PARAMS_LEN] {
        let mut b = [0u8; PARAMS_LEN];
        let mut w = Cursor { b: &mut b, at: 0 };
        w.put(&self.magic);
        for v in [self.layout_version, self.header_size] {
            w.put(&v.to_le_bytes());
        }
        w.put(&self.arena_size.to_le_bytes());
        w.put(&self.hash_seed.to_le_bytes());
        for v in [self.hash_algo, self.seg_shift, self.nsegs, self.nprocs] {
            w.put(&v.to_le_bytes());
        }
        w.put(&self.nbuckets.to_le_bytes());
        for v in [self.ntags, self.nleases, self.max_key, self.max_value] {
            w.put(&v.to_le_bytes());
        }
        for v in [
            self.epoch,
            self.procs_off,
            self.tags_off,
            self.leases_off,
            self.segtab_off,
            self.index_off,
            self.segs_off,
        ] {
            w.put(&v.to_le_bytes());
        }
        debug_assert_eq!(w.at, PARAMS_LEN);
        b
    }

    /// Decodes what `to_bytes` wrote. Any bytes decode; validation is the caller's.
    pub fn from_bytes(b: &[u8; PARAMS_LEN]) -> Params {
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        Params {
            magic: b[0..8].try_into().expect("8 bytes"),
            layout_version: u32_at(offset_of!(Params, layout_version)),
            header_size: u32_at(offset_of!(Params, header_size)),
            arena_size: u64_at(offset_of!(Params, arena_size)),
            hash_seed: u64_at(offset_of!(Params, hash_seed)),
            hash_algo: u32_at(offset_of!(Params, hash_algo)),
            seg_shift: u32_at(offset_of!(Params, seg_shift)),
            nsegs: u32_at(offset_of!(Params, nsegs)),
            nprocs: u32_at(offset_of!(Params, nprocs)),
            nbuckets: u64_at(offset_of!(Params, nbuckets)),
            ntags: u32_at(offset_of!(Params, ntags)),
            nleases: u32_at(offset_of!(Params, nleases)),
            max_key: u32_at(offset_of!(Params, max_key)),
            max_value: u32_at(offset_of!(Params, max_value)),
            epoch: u64_at(offset_of!(Params, epoch)),
            procs_off: u64_at(offset_of!(Params, procs_off)),
            tags_off: u64_at(offset_of!(Params, tags_off)),
            leases_off: u64_at(offset_of!(Params, leases_off)),
            segtab_off: u64_at(offset_of!(Params, segtab_off)),
            index_off: u64_at(offset_of!(Params, index_off)),
            segs_off: u64_at(offset_of!(Params, segs_off)),
        }
    }

    /// These parameters with every derived offset recomputed from the counts (when the
    /// counts fit `arena_size`), for tools that build headers field by field: tests of the
    /// validator and the fuzzer's structured mode.
    #[doc(hidden)]
    pub fn with_derived_offsets(mut self) -> Params {
        if let Some(g) = self.counted() {
            self.procs_off = g.procs_off;
            self.tags_off = g.tags_off;
            self.leases_off = g.leases_off;
            self.segtab_off = g.segtab_off;
            self.index_off = g.index_off;
            self.segs_off = g.segs_off;
        }
        self
    }

    /// The immutable header as stored: the parameters, then their crc32c (`params_crc`).
    #[doc(hidden)]
    pub fn to_bytes_with_crc(&self) -> [u8; PARAMS_LEN + 4] {
        let mut b = [0u8; PARAMS_LEN + 4];
        let p = self.to_bytes();
        b[..PARAMS_LEN].copy_from_slice(&p);
        b[PARAMS_LEN..].copy_from_slice(&crc32c::crc32c(&p).to_le_bytes());
        b
    }

    /// The geometry the counts imply, whatever offsets the parameters carry.
    fn counted(&self) -> Option<Geometry> {
        Geometry::from_counts(
            self.arena_size,
            self.seg_shift,
            self.nsegs,
            self.nprocs,
            self.nbuckets,
            self.ntags,
            self.nleases,
        )
    }

    /// The geometry these parameters describe, if their offsets are the ones the counts
    /// imply.
    pub fn geometry(&self) -> Option<Geometry> {
        let g = self.counted()?;
        let same = (
            g.procs_off,
            g.tags_off,
            g.leases_off,
            g.segtab_off,
            g.index_off,
            g.segs_off,
        ) == (
            self.procs_off,
            self.tags_off,
            self.leases_off,
            self.segtab_off,
            self.index_off,
            self.segs_off,
        );
        same.then_some(g)
    }
}

struct Cursor<'a> {
    b: &'a mut [u8],
    at: usize,
}

impl Cursor<'_> {
    fn put(&mut self, v: &[u8]) {
        self.b[self.at..self.at + v.len()].copy_from_slice(v);
        self.at += v.len();
    }
}

/// A mutable header word alone on its cache line.
#[repr(C, align(64))]
pub struct Line {
    pub v: u64,
}

#[repr(C, align(64))]
pub struct DaemonLine {
    pub pid: u64,
    pub started: u64,
}

#[repr(C, align(64))]
pub struct SnapAckLine {
    pub ack: u64,
    pub time: u64,
    pub bytes: u64,
}

/// Header page: immutable `params` + crc, then one line per mutable word.
#[repr(C)]
pub struct Header {
    pub params: Params,
    pub params_crc: u32,
    pub generation: Line,
    pub clean: Line,
    pub retired: Line,
    pub flush_gen: Line,
    pub next_reg: Line,
    pub clock_hand: Line,
    pub sweep_hand: Line,
    pub daemon: DaemonLine,
    pub snap_req: Line,
    pub snap_ack: SnapAckLine,
    pub seal_seq: Line,
}

/// Size of the header region (one page).
pub const HEADER_SIZE: u64 = 4096;
const _: () = assert!(size_of::<Header>() as u64 <= HEADER_SIZE);
/// Bytes covered by `params_crc`.
pub const PARAMS_LEN: usize = size_of::<Params>();
pub const H_PARAMS_CRC: u64 = offset_of!(Header, params_crc) as u64;
pub const H_GENERATION: u64 = offset_of!(Header, generation) as u64;
pub const H_CLEAN: u64 = offset_of!(Header, clean) as u64;
pub const H_RETIRED: u64 = offset_of!(Header, retired) as u64;
pub const H_FLUSH_GEN: u64 = offset_of!(Header, flush_gen) as u64;
pub const H_NEXT_REG: u64 = offset_of!(Header, next_reg) as u64;
pub const H_CLOCK_HAND: u64 = offset_of!(Header, clock_hand) as u64;
pub const H_SWEEP_HAND: u64 = offset_of!(Header, sweep_hand) as u64;
pub const H_DAEMON_PID: u64 = (offset_of!(Header, daemon) + offset_of!(DaemonLine, pid)) as u64;
pub const H_DAEMON_STARTED: u64 =
    (offset_of!(Header, daemon) + offset_of!(DaemonLine, started)) as u64;
pub const H_SNAP_REQ: u64 = offset_of!(Header, snap_req) as u64;
pub const H_SEAL_SEQ: u64 = offset_of!(Header, seal_seq) as u64;
pub const H_SNAP_ACK: u64 = (offset_of!(Header, snap_ack) + offset_of!(SnapAckLine, ack)) as u64;
pub const H_SNAP_TIME: u64 = (offset_of!(Header, snap_ack) + offset_of!(SnapAckLine, time)) as u64;
pub const H_SNAP_BYTES: u64 =
    (offset_of!(Header, snap_ack) + offset_of!(SnapAckLine, bytes)) as u64;
const _: () = assert!(H_GENERATION == 192 && H_SNAP_BYTES == 784);

/// Per-process counters, in slot order. Monotone; never reset (design.md §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Counter {
    Touches,
    Hits,
    Misses,
    Sets,
    Deletes,
    Evictions,
    Expired,
    IndexEvictions,
    Rejected,
    TornRetries,
    Corrupt,
    Reclaimed,
}
pub const NCOUNTERS: usize = 12;
const _: () = assert!(Counter::Reclaimed as usize + 1 == NCOUNTERS);

/// One registered process (design.md §2.2).
#[repr(C)]
pub struct ProcSlot {
    pub reg: u64,
    pub pid: u64,
    pub started: u64,
    pub counters: [u64; NCOUNTERS],
    pub base: [u64; NCOUNTERS],
    pub reserved: [u64; 5],
}
pub const PROC_SLOT_SIZE: u64 = size_of::<ProcSlot>() as u64;
const _: () = assert!(PROC_SLOT_SIZE == 256);
pub const PS_REG: u64 = offset_of!(ProcSlot, reg) as u64;
pub const PS_PID: u64 = offset_of!(ProcSlot, pid) as u64;
pub const PS_STARTED: u64 = offset_of!(ProcSlot, started) as u64;
pub const PS_COUNTERS: u64 = offset_of!(ProcSlot, counters) as u64;
pub const PS_BASE: u64 = offset_of!(ProcSlot, base) as u64;

/// One segment's control block (design.md §2.3), alone on its line.
#[repr(C, align(64))]
pub struct SegEntry {
    pub ctl: u64,
    pub wptr: u64,
    /// Smallest `expires_at` of the items below `wptr` that have one (0: none). Written by
    /// the segment's owner before it publishes an item; a lower bound the sweeper trusts to
    /// skip segments with nothing to expire.
    pub min_expiry: u64,
    /// Position in the log: drawn from the header's `seal_seq` when the segment is sealed or
    /// parked (and when a second chance sends it to the back). Eviction takes the lowest.
    pub seq: u64,
    pub reserved: [u64; 4],
}
pub const SEG_ENTRY_SIZE: u64 = size_of::<SegEntry>() as u64;
const _: () = assert!(SEG_ENTRY_SIZE == 64);
pub const SE_CTL: u64 = offset_of!(SegEntry, ctl) as u64;
pub const SE_WPTR: u64 = offset_of!(SegEntry, wptr) as u64;
pub const SE_MIN_EXPIRY: u64 = offset_of!(SegEntry, min_expiry) as u64;
pub const SE_SEQ: u64 = offset_of!(SegEntry, seq) as u64;

/// One hash bucket: eight slots, one cache line (design.md §2.4).
#[repr(C, align(64))]
pub struct Bucket {
    pub slots: [u64; SLOTS_PER_BUCKET],
}
pub const SLOTS_PER_BUCKET: usize = 8;
pub const BUCKET_SIZE: u64 = size_of::<Bucket>() as u64;
const _: () = assert!(BUCKET_SIZE == 64);
pub const B_SLOTS: u64 = offset_of!(Bucket, slots) as u64;
/// Home buckets that share one insert lock word (design.md §5.2).
pub const LOCK_STRIPE: u64 = 64;
/// Bytes of insert locks for `nbuckets` buckets (whole lines).
pub const fn locks_size(nbuckets: u64) -> u64 {
    align_up(nbuckets.div_ceil(LOCK_STRIPE) * 8, 64)
}

/// A stampede lease entry (design.md §2.6): the lease word, and a word reserved (zero).
#[repr(C)]
pub struct Lease {
    pub word: u64,
    pub reserved: u64,
}
pub const LEASE_SIZE: u64 = size_of::<Lease>() as u64;
/// Reserved: a tag version counter.
pub const TAG_SIZE: u64 = size_of::<u64>() as u64;

/// Item header (design.md §2.5): one word before the extension words and the key.
#[repr(C)]
pub struct ItemHeader {
    pub w0: u64,
}
pub const ITEM_HEADER_SIZE: u64 = size_of::<ItemHeader>() as u64;
const _: () = assert!(ITEM_HEADER_SIZE == 8);
/// Largest value the item header can describe (`value_len` is 24 bits): 16 MiB − 1.
pub const VALUE_LEN_LIMIT: u32 = (1 << 24) - 1;
/// Largest `expires_at` (31 bits of seconds after the arena's epoch: ~68 years).
pub const EXPIRES_LIMIT: u32 = (1 << 31) - 1;

/// Largest key the item header can describe (`key_len` is 8 bits).
pub const KEY_LEN_LIMIT: u32 = 255;
/// Smallest and largest segment sizes a layout may use.
#[cfg(not(larder_loom))]
pub const MIN_SEG_SHIFT: u32 = 16;
/// Loom models use 128-byte segments so that a whole arena is a few hundred atomics.
#[cfg(larder_loom)]
pub const MIN_SEG_SHIFT: u32 = 7;
pub const MAX_SEG_SHIFT: u32 = 30;
/// Largest arena the 35-bit `loc` (in 8-byte units) can address.
pub const MAX_ARENA_SIZE: u64 = (1 << LOC_BITS) * 8;
/// Fewest segments an arena may have: the copy-forward reserve plus room to write.
pub const MIN_SEGS: u32 = 4;

/// Bytes an item with these lengths occupies in a segment.
pub const fn item_size(key_len: u64, value_len: u64) -> u64 {
    (ITEM_HEADER_SIZE + key_len + value_len + 7) & !7
}

// ---- Slot word: [63 ref][62..49 tag][48..35 gen14][34..0 loc] ----
pub const LOC_BITS: u32 = 35;
pub const LOC_MASK: u64 = (1 << LOC_BITS) - 1;
pub const SLOT_GEN_SHIFT: u32 = LOC_BITS;
pub const SLOT_GEN_BITS: u32 = 14;
pub const SLOT_GEN_MASK: u64 = (1 << SLOT_GEN_BITS) - 1;
pub const TAG_SHIFT: u32 = SLOT_GEN_SHIFT + SLOT_GEN_BITS;
pub const TAG_BITS: u32 = 14;
pub const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
pub const REF_BIT: u64 = 1 << 63;
const _: () = assert!(TAG_SHIFT + TAG_BITS == 63);

// ---- Item extension words (design.md §2.6) ----
/// Most tags one item may carry (ext words: one meta word + one per tag).
pub const MAX_TAGS: usize = 8;
/// Most extension words one item may carry: the meta word, `MAX_TAGS` tags and the client
/// flags word.
pub const MAX_EXT_WORDS: usize = 2 + MAX_TAGS;
/// Largest recompute time (XFetch delta) an item can record, in milliseconds.
pub const MAX_DELTA_MS: u32 = (1 << 24) - 1;
/// Meta word bit: a client flags word follows the tag words (layout 3).
pub const META_FLAGS_BIT: u64 = 1 << 39;
const META_NTAGS_SHIFT: u32 = 32;
/// Bits 38..32 of the meta word: the tag count (at most `MAX_TAGS`; more is damage).
const META_NTAGS_MASK: u64 = 0x7f;

/// Meta ext word: `[31..0 stale grace, s][38..32 tag count][39 flags word follows]
/// [63..40 recompute time, ms]`.
#[inline]
pub const fn item_meta(grace_secs: u32, ntags: u8, delta_ms: u32, flagged: bool) -> u64 {
    grace_secs as u64
        | ((ntags as u64 & META_NTAGS_MASK) << META_NTAGS_SHIFT)
        | if flagged { META_FLAGS_BIT } else { 0 }
        | (((delta_ms & MAX_DELTA_MS) as u64) << 40)
}
/// The tag count of a meta word (not yet checked against `MAX_TAGS`).
#[inline]
pub const fn meta_ntags(meta: u64) -> u64 {
    (meta >> META_NTAGS_SHIFT) & META_NTAGS_MASK
}
/// The item's extension words end with a client flags word.
#[inline]
pub const fn meta_flagged(meta: u64) -> bool {
    meta & META_FLAGS_BIT != 0
}
/// Client flags word: `[31..0 flags][63..32 zero]` (memcached's 32-bit client flags; items
/// with flags 0 have no such word).
#[inline]
pub const fn item_flags(flags: u32) -> u64 {
    flags as u64
}
/// Tag ext word: `[31..0 index in the tag table][63..32 the tag's version when written]`.
#[inline]
pub const fn item_tag(index: u32, version: u32) -> u64 {
    index as u64 | ((version as u64) << 32)
}

// ---- Lease word (design.md §2.6, layout 4): [63..38 take count][37..0 expiry, 10 ms ticks
// after epoch]. Expiry 0 is a free entry; the take count survives release and poisoning so a
// word, once taken, is not taken again until the count wraps (2^26 takes of the entry). ----
pub const LEASE_EXPIRY_BITS: u32 = 38;
/// Milliseconds per lease tick (38 bits of ticks span ~87 years, past the arena's ~68-year
/// time range, EXPIRES_LIMIT seconds).
pub const LEASE_TICK_MS: u64 = 10;
pub const LEASE_EXPIRY_MASK: u64 = (1 << LEASE_EXPIRY_BITS) - 1;
const _: () = assert!(EXPIRES_LIMIT as u64 * 1000 / LEASE_TICK_MS <= LEASE_EXPIRY_MASK);

/// The lease word after `cur` (any word of the entry, free or held) is taken until `until`
/// (ticks): the next take count, so it differs from every word taken since the count last
/// wrapped.
#[inline]
pub const fn lease_taken(cur: u64, until: u64) -> u64 {
    let count = (cur >> LEASE_EXPIRY_BITS).wrapping_add(1);
    (count << LEASE_EXPIRY_BITS) | (until & LEASE_EXPIRY_MASK)
}

/// The free word that replaces `cur` when its lease is released or poisoned: the take
/// count kept, the expiry 0.
#[inline]
pub const fn lease_freed(cur: u64) -> u64 {
    cur & !LEASE_EXPIRY_MASK
}

/// Builds a slot word. `gen` is truncated to its low 14 bits.
#[inline]
pub const fn slot_word(tag: u64, gen: u64, loc: u64) -> u64 {
    ((tag & TAG_MASK) << TAG_SHIFT) | ((gen & SLOT_GEN_MASK) << SLOT_GEN_SHIFT) | (loc & LOC_MASK)
}
#[inline]
pub const fn slot_tag(w: u64) -> u64 {
    (w >> TAG_SHIFT) & TAG_MASK
}
#[inline]
pub const fn slot_gen(w: u64) -> u64 {
    (w >> SLOT_GEN_SHIFT) & SLOT_GEN_MASK
}
#[inline]
pub const fn slot_loc(w: u64) -> u64 {
    w & LOC_MASK
}
/// The tag a key's slot carries: the low 14 bits of its hash. Not the top bits: the home
/// bucket is chosen by multiply-shift from the top bits, so keys sharing a bucket would
/// share top-bit tags and the tag would filter nothing.
#[inline]
pub const fn hash_tag(hash: u64) -> u64 {
    hash & TAG_MASK
}

// ---- Segment control word: [63..36 gen][35..32 state][31..0 owner registration] ----
pub const SEG_GEN_SHIFT: u32 = 36;
pub const SEG_GEN_MASK: u64 = (1 << 28) - 1;
pub const SEG_STATE_SHIFT: u32 = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegState {
    Free = 0,
    Open = 1,
    Sealed = 2,
    Parked = 3,
    Evicting = 4,
}

#[inline]
pub const fn seg_ctl(gen: u64, state: SegState, owner: u32) -> u64 {
    ((gen & SEG_GEN_MASK) << SEG_GEN_SHIFT) | ((state as u64) << SEG_STATE_SHIFT) | owner as u64
}
#[inline]
pub const fn ctl_gen(c: u64) -> u64 {
    c >> SEG_GEN_SHIFT
}
#[inline]
pub const fn ctl_owner(c: u64) -> u32 {
    c as u32
}
/// Decodes the state; an unknown value (damaged arena) decodes as `None`.
#[inline]
pub const fn ctl_state(c: u64) -> Option<SegState> {
    match (c >> SEG_STATE_SHIFT) & 0xf {
        0 => Some(SegState::Free),
        1 => Some(SegState::Open),
        2 => Some(SegState::Sealed),
        3 => Some(SegState::Parked),
        4 => Some(SegState::Evicting),
        _ => None,
    }
}

// ---- Item header: [63 ext][62..32 expires_at][31..24 key_len][23..0 value_len] ----
const ITEM_KEY_SHIFT: u32 = 24;
const ITEM_EXPIRES_SHIFT: u32 = 32;
const ITEM_EXT_BIT: u64 = 1 << 63;
#[inline]
pub const fn item_hdr(key_len: u64, value_len: u64, expires_at: u32, ext: bool) -> u64 {
    (value_len & VALUE_LEN_LIMIT as u64)
        | ((key_len & 0xff) << ITEM_KEY_SHIFT)
        | (((expires_at & EXPIRES_LIMIT) as u64) << ITEM_EXPIRES_SHIFT)
        | if ext { ITEM_EXT_BIT } else { 0 }
}
#[inline]
pub const fn hdr_value_len(h: u64) -> u64 {
    h & VALUE_LEN_LIMIT as u64
}
#[inline]
pub const fn hdr_key_len(h: u64) -> u64 {
    (h >> ITEM_KEY_SHIFT) & 0xff
}
#[inline]
pub const fn hdr_expires_at(h: u64) -> u32 {
    ((h >> ITEM_EXPIRES_SHIFT) as u32) & EXPIRES_LIMIT
}
/// The item has extension words: a meta word, as many tag words as it counts, and a client
/// flags word if the meta word says so.
#[inline]
pub const fn hdr_has_ext(h: u64) -> bool {
    h & ITEM_EXT_BIT != 0
}

/// Where every region starts, derived from the counts alone (design.md §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub arena_size: u64,
    pub seg_shift: u32,
    pub nsegs: u32,
    pub nprocs: u32,
    pub nbuckets: u64,
    pub ntags: u32,
    pub nleases: u32,
    pub procs_off: u64,
    pub tags_off: u64,
    pub leases_off: u64,
    pub segtab_off: u64,
    /// Insert locks (not in `Params`: derived from the counts like every offset).
    pub locks_off: u64,
    pub index_off: u64,
    pub segs_off: u64,
}

const fn align_up(v: u64, a: u64) -> u64 {
    (v + a - 1) & !(a - 1)
}

impl Geometry {
    /// Offsets for the given counts, or `None` if they do not fit in `arena_size`.
    pub fn from_counts(
        arena_size: u64,
        seg_shift: u32,
        nsegs: u32,
        nprocs: u32,
        nbuckets: u64,
        ntags: u32,
        nleases: u32,
    ) -> Option<Geometry> {
        if !(MIN_SEG_SHIFT..=MAX_SEG_SHIFT).contains(&seg_shift)
            || nsegs < MIN_SEGS
            || nprocs == 0
            || nbuckets < 2
            || arena_size > MAX_ARENA_SIZE
        {
            return None;
        }
        let procs_off = HEADER_SIZE;
        let tags_off = align_up(
            procs_off.checked_add(u64::from(nprocs) * PROC_SLOT_SIZE)?,
            64,
        );
        let leases_off = align_up(tags_off + u64::from(ntags) * TAG_SIZE, 64);
        let segtab_off = align_up(leases_off + u64::from(nleases) * LEASE_SIZE, 64);
        let locks_off = align_up(segtab_off + u64::from(nsegs) * SEG_ENTRY_SIZE, 64);
        let index_off = locks_off + locks_size(nbuckets);
        let segs_off = align_up(
            index_off.checked_add(nbuckets.checked_mul(BUCKET_SIZE)?)?,
            4096,
        );
        let end = segs_off.checked_add(u64::from(nsegs) << seg_shift)?;
        (end <= arena_size).then_some(Geometry {
            arena_size,
            seg_shift,
            nsegs,
            nprocs,
            nbuckets,
            ntags,
            nleases,
            procs_off,
            tags_off,
            leases_off,
            segtab_off,
            locks_off,
            index_off,
            segs_off,
        })
    }

    /// Chooses counts for an arena of `arena_size` bytes: as many segments as fit, with an
    /// index sized for at most a 0.7 load factor at `avg_item` bytes per item; the bytes
    /// left over once the last whole segment is placed (up to a segment plus its index
    /// share) also go to the index, so less than a page of the arena is unused.
    pub fn plan(
        arena_size: u64,
        seg_shift: u32,
        nprocs: u32,
        ntags: u32,
        nleases: u32,
        avg_item: u64,
    ) -> Option<Geometry> {
        let seg = 1u64 << seg_shift;
        let fixed = HEADER_SIZE
            + u64::from(nprocs) * PROC_SLOT_SIZE
            + u64::from(ntags) * TAG_SIZE
            + u64::from(nleases) * LEASE_SIZE
            + 5 * 4096;
        // 0.7: with 8-slot buckets, 1.8 % of inserts at 100-byte values met a full
        // neighbourhood (an index eviction) and 4.9 % at 0.75, for 0.2 B more per item
        // (`larder-bench memory`; design.md §2.4).
        let slots_per_seg = (seg * 10).div_ceil(avg_item.max(16) * 7);
        let index_per_seg = slots_per_seg.div_ceil(SLOTS_PER_BUCKET as u64) * BUCKET_SIZE;
        let per_seg =
            seg + SEG_ENTRY_SIZE + index_per_seg + locks_size(index_per_seg / BUCKET_SIZE);
        let mut nsegs = arena_size.checked_sub(fixed)? / per_seg;
        while nsegs >= u64::from(MIN_SEGS) {
            let nbuckets = (nsegs * slots_per_seg)
                .div_ceil(SLOTS_PER_BUCKET as u64)
                .max(2);
            let n = u32::try_from(nsegs).ok()?;
            if let Some(g) =
                Geometry::from_counts(arena_size, seg_shift, n, nprocs, nbuckets, ntags, nleases)
            {
                // The largest bucket count that still leaves `segs_off` (page-aligned) low
                // enough for every segment.
                let segs_bytes = g.segs_end() - g.segs_off;
                let room = ((arena_size - segs_bytes) & !4095) - g.locks_off;
                // Buckets and their locks (8 bytes per LOCK_STRIPE buckets, whole lines).
                let fits = |m: u64| locks_size(m) + m * BUCKET_SIZE <= room;
                // A line of locks serves 8 × LOCK_STRIPE buckets: start just below, adjust.
                let mut most = room * 8 * LOCK_STRIPE / (BUCKET_SIZE * (8 * LOCK_STRIPE + 1));
                while fits(most + 1) {
                    most += 1;
                }
                while most > nbuckets && !fits(most) {
                    most -= 1;
                }
                let most = most.max(nbuckets);
                return Some(
                    Geometry::from_counts(arena_size, seg_shift, n, nprocs, most, ntags, nleases)
                        .unwrap_or(g),
                );
            }
            nsegs -= 1;
        }
        None
    }

    pub const fn seg_size(&self) -> u64 {
        1 << self.seg_shift
    }
    pub const fn segs_end(&self) -> u64 {
        self.segs_off + ((self.nsegs as u64) << self.seg_shift)
    }
    pub const fn seg_base(&self, seg: u32) -> u64 {
        self.segs_off + ((seg as u64) << self.seg_shift)
    }
    pub const fn seg_ctl_off(&self, seg: u32) -> u64 {
        self.segtab_off + seg as u64 * SEG_ENTRY_SIZE + SE_CTL
    }
    pub const fn seg_wptr_off(&self, seg: u32) -> u64 {
        self.segtab_off + seg as u64 * SEG_ENTRY_SIZE + SE_WPTR
    }
    pub const fn seg_seq_off(&self, seg: u32) -> u64 {
        self.segtab_off + seg as u64 * SEG_ENTRY_SIZE + SE_SEQ
    }
    pub const fn seg_min_expiry_off(&self, seg: u32) -> u64 {
        self.segtab_off + seg as u64 * SEG_ENTRY_SIZE + SE_MIN_EXPIRY
    }
    pub const fn bucket_off(&self, b: u64) -> u64 {
        self.index_off + b * BUCKET_SIZE
    }
    /// The insert lock word of the bucket at offset `bucket_off`.
    pub const fn lock_off(&self, bucket_off: u64) -> u64 {
        self.locks_off + (bucket_off - self.index_off) / BUCKET_SIZE / LOCK_STRIPE * 8
    }
    pub const fn proc_off(&self, slot: u32) -> u64 {
        self.procs_off + slot as u64 * PROC_SLOT_SIZE
    }
    /// Home bucket of a hash: multiply-shift onto `0..nbuckets`.
    #[inline]
    pub fn home_bucket(&self, hash: u64) -> u64 {
        ((u128::from(hash) * u128::from(self.nbuckets)) >> 64) as u64
    }
    /// The segment an item offset lies in, if it lies in the segment area at all.
    #[inline]
    pub fn seg_of(&self, off: u64) -> Option<u32> {
        if off < self.segs_off || off >= self.segs_end() {
            return None;
        }
        Some(((off - self.segs_off) >> self.seg_shift) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_word_round_trips_and_never_collides_with_empty() {
        let w = slot_word(TAG_MASK, 0x3fff, LOC_MASK);
        assert_eq!(slot_tag(w), TAG_MASK);
        assert_eq!(slot_gen(w), 0x3fff);
        assert_eq!(slot_loc(w), LOC_MASK);
        assert_eq!(w & REF_BIT, 0);
        let w = slot_word(0, 0, HEADER_SIZE / 8);
        assert_ne!(w, 0);
    }

    #[test]
    fn item_header_round_trips_at_its_limits() {
        for (k, v, e, x) in [
            (1, 0, 0, false),
            (255, u64::from(VALUE_LEN_LIMIT), EXPIRES_LIMIT, true),
            (12, 100, 12_345, false),
            (250, 1, 1, true),
        ] {
            let h = item_hdr(k, v, e, x);
            assert_eq!(
                (
                    hdr_key_len(h),
                    hdr_value_len(h),
                    hdr_expires_at(h),
                    hdr_has_ext(h)
                ),
                (k, v, e, x)
            );
        }
    }

    #[test]
    fn ctl_word_round_trips() {
        let c = seg_ctl(SEG_GEN_MASK, SegState::Evicting, u32::MAX);
        assert_eq!(ctl_gen(c), SEG_GEN_MASK);
        assert_eq!(ctl_state(c), Some(SegState::Evicting));
        assert_eq!(ctl_owner(c), u32::MAX);
        assert_eq!(ctl_state(0xf << SEG_STATE_SHIFT), None);
    }

    #[test]
    fn plan_fits_and_is_reproducible_from_counts() {
        for size in [1u64 << 20, 8 << 20, 64 << 20, 1 << 30] {
            let g = Geometry::plan(size, 16, 64, 1024, 1024, 128).expect("plan");
            assert!(g.segs_end() <= size);
            assert_eq!(g.segs_off % 4096, 0);
            assert_eq!(g.index_off % 64, 0);
            let again = Geometry::from_counts(
                size,
                g.seg_shift,
                g.nsegs,
                g.nprocs,
                g.nbuckets,
                g.ntags,
                g.nleases,
            );
            assert_eq!(again, Some(g));
            // The index is sized for at most 0.7 load of full segments of 128-byte items.
            let items = (u64::from(g.nsegs) << g.seg_shift) / 128;
            assert!(
                g.nbuckets * SLOTS_PER_BUCKET as u64 * 7 >= items * 10,
                "{g:?}"
            );
            // Nothing worth a bucket is left unused: the space after the last segment is
            // less than a page (the alignment of the segment area).
            assert!(g.arena_size - g.segs_end() < 4096, "{g:?}");
            let more = Geometry::from_counts(
                size,
                g.seg_shift,
                g.nsegs,
                g.nprocs,
                g.nbuckets + 1,
                g.ntags,
                g.nleases,
            );
            assert_eq!(more, None, "one more bucket would not fit: {g:?}");
        }
        assert!(Geometry::plan(64 << 10, 16, 64, 1024, 1024, 128).is_none());
    }

    #[test]
    fn params_round_trip_through_bytes() {
        let g = Geometry::plan(8 << 20, 16, 8, 16, 16, 128).unwrap();
        let p = Params {
            magic: MAGIC,
            layout_version: LAYOUT_VERSION,
            header_size: HEADER_SIZE as u32,
            arena_size: g.arena_size,
            hash_seed: 0x0123_4567_89ab_cdef,
            hash_algo: HASH_ALGO_XXH3,
            seg_shift: g.seg_shift,
            nsegs: g.nsegs,
            nprocs: g.nprocs,
            nbuckets: g.nbuckets,
            ntags: g.ntags,
            nleases: g.nleases,
            max_key: 250,
            max_value: 1000,
            epoch: 1_700_000_000,
            procs_off: g.procs_off,
            tags_off: g.tags_off,
            leases_off: g.leases_off,
            segtab_off: g.segtab_off,
            index_off: g.index_off,
            segs_off: g.segs_off,
        };
        assert_eq!(Params::from_bytes(&p.to_bytes()), p);
        assert_eq!(p.geometry(), Some(g));
        let mut q = p;
        q.index_off += 64;
        assert_eq!(q.geometry(), None);
    }

    #[test]
    fn home_bucket_is_in_range() {
        let g = Geometry::plan(8 << 20, 16, 8, 16, 16, 128).unwrap();
        for h in [0, 1, u64::MAX, u64::MAX / 3, 1 << 63] {
            assert!(g.home_bucket(h) < g.nbuckets);
        }
    }
}
