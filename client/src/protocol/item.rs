//! Items: how their bytes are written into a segment and read back optimistically.
//!
//! Every byte of an item is stored and loaded through 8-byte atomics with `Relaxed` order:
//! the read is made trustworthy by the generation re-check (design.md §4.1), not by the
//! individual loads.

use crate::protocol::engine::Engine;
use crate::protocol::layout::{
    ctl_gen, hdr_expires_at, hdr_has_ext, hdr_key_len, hdr_value_len, item_hdr, item_size,
    meta_flagged, meta_ntags, slot_gen, slot_loc, ITEM_HEADER_SIZE, MAX_EXT_WORDS, MAX_TAGS,
    REF_BIT, SLOT_GEN_MASK,
};
use crate::protocol::mem::Mem;
use crate::protocol::sync::{fence, Ordering::*};

/// What reading the item a slot word points at found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Read {
    /// The item holds the key; if a buffer was given, the value was appended to it.
    Match(ItemInfo),
    /// A valid item of another key.
    Other,
    /// The slot word's generation is not its segment's: the slot points into a recycled
    /// segment and is garbage (design.md §4.6).
    StaleSlot,
    /// The segment was recycled while we read: nothing read can be trusted; retry.
    Torn,
    /// The bytes are invalid while the generation was stable: damaged arena.
    Corrupt,
}

/// Facts about a matched item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ItemInfo {
    /// Full (28-bit) generation of the item's segment.
    pub gen: u64,
    pub expires_at: u32,
    /// Seconds past `expires_at` during which the value may still be served as stale.
    pub grace: u32,
    /// The last recompute took this long (XFetch), in milliseconds.
    pub delta_ms: u32,
    /// All of the item's tags still have the version it was written under.
    pub tags_ok: bool,
    /// The item carries tags.
    pub tagged: bool,
    /// Client flags (memcached's; 0 for items stored without them).
    pub flags: u32,
}

/// Decoded and validated item header.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hdr {
    pub key_len: u64,
    pub value_len: u64,
    /// Offset of the first key byte.
    pub key_off: u64,
    pub expires_at: u32,
    /// Bytes the whole item occupies.
    pub size: u64,
    /// Extension words (meta, tags, flags) between the header and the key.
    pub ext: u64,
    pub grace: u32,
    pub ntags: u64,
    /// The last extension word is a client flags word.
    pub flagged: bool,
    pub delta_ms: u32,
}

impl<M: Mem> Engine<M> {
    /// Decodes the header at `off`, or `None` if it is not a valid item ending by `end`.
    #[inline]
    pub(crate) fn decode_hdr(&self, off: u64, end: u64) -> Option<Hdr> {
        let w = self.mem.load(off, Relaxed);
        let value_len = hdr_value_len(w);
        let key_len = hdr_key_len(w);
        let ok = key_len != 0
            && key_len <= u64::from(self.max_key)
            && value_len <= u64::from(self.max_value);
        if !ok {
            return None;
        }
        // Relaxed: as the header word; validated by the caller's generation re-check.
        let meta = if hdr_has_ext(w) {
            self.mem.load(
                off.checked_add(ITEM_HEADER_SIZE).filter(|&m| m < end)?,
                Relaxed,
            )
        } else {
            0
        };
        let ntags = meta_ntags(meta);
        if ntags > MAX_TAGS as u64 {
            return None;
        }
        let flagged = meta_flagged(meta);
        let ext = if hdr_has_ext(w) {
            1 + ntags + u64::from(flagged)
        } else {
            0
        };
        let size = item_size(ext * 8 + key_len, value_len);
        if off.checked_add(size)? > end {
            return None;
        }
        Some(Hdr {
            key_len,
            value_len,
            key_off: off + ITEM_HEADER_SIZE + ext * 8,
            expires_at: hdr_expires_at(w),
            size,
            ext,
            grace: meta as u32,
            ntags,
            flagged,
            delta_ms: (meta >> 40) as u32,
        })
    }

    /// The client flags of the item at `off` (0 without a flags word).
    #[inline]
    fn flags_of(&self, off: u64, h: &Hdr) -> u32 {
        if !h.flagged {
            return 0;
        }
        // Relaxed: item bytes, validated by the caller's generation re-check (the flags
        // word is read inside the seqlock window like the meta word; design.md §2.6).
        self.mem
            .load(off + ITEM_HEADER_SIZE + (h.ext - 1) * 8, Relaxed) as u32
    }

    /// `true` if every tag of the item at `off` still has the version it was written under
    /// (design.md §2.6). A tag index outside the table (damage) counts as invalidated.
    #[inline]
    pub(crate) fn tags_ok(&self, off: u64, h: &Hdr) -> bool {
        (0..h.ntags).all(|i| {
            // Relaxed: item bytes, validated by the caller's generation re-check.
            let t = self.mem.load(off + ITEM_HEADER_SIZE + 8 + i * 8, Relaxed);
            let idx = t as u32;
            // Acquire: pairs with invalidate_tag's fetch_add (AcqRel); a version seen
            // changed means the invalidation happened before this read.
            idx < self.geo.ntags
                && self.mem.load(self.tag_off(idx), Acquire) as u32 == (t >> 32) as u32
        })
    }

    /// Reads the item slot word `w` (loaded from `slot`) points at (design.md §4.1 steps
    /// 2–5). On a key match the value is appended to `out` when given; on any other outcome
    /// `out` is left as it was.
    pub(crate) fn read_item<S: Sink>(
        &self,
        slot: u64,
        w: u64,
        key: &[u8],
        out: Option<&mut S>,
    ) -> Read {
        let off = slot_loc(w) * 8;
        let Some(seg) = self.geo.seg_of(off) else {
            return Read::Corrupt;
        };
        let ctl_off = self.geo.seg_ctl_off(seg);
        // Acquire: the loads of item bytes below must not move above this first read of the
        // generation (seqlock reader; pairs with the claimer's fence(Release) in alloc.rs).
        let c1 = self.mem.load(ctl_off, Acquire);
        let gen = ctl_gen(c1);
        if gen & SLOT_GEN_MASK != slot_gen(w) {
            return Read::StaleSlot;
        }
        let end = self.geo.seg_base(seg) + self.geo.seg_size();
        let hdr = self.decode_hdr(off, end);
        let result = match hdr {
            Some(h) if h.key_len as usize == key.len() && self.key_eq(h.key_off, key) => {
                Read::Match(ItemInfo {
                    gen,
                    expires_at: h.expires_at,
                    grace: h.grace,
                    delta_ms: h.delta_ms,
                    tags_ok: h.ntags == 0 || self.tags_ok(off, &h),
                    tagged: h.ntags > 0,
                    flags: self.flags_of(off, &h),
                })
            }
            Some(_) => Read::Other,
            None => Read::Corrupt,
        };
        if let (Read::Match(_), Some(out), Some(h)) = (result, out, hdr) {
            let mark = out.mark();
            out.take(self, h.key_off + h.key_len, h.value_len as usize);
            if !self.unchanged(ctl_off, gen, slot, w) {
                out.truncate(mark);
                return Read::Torn;
            }
            return result;
        }
        // Nothing concluded from the bytes (not even "another key") counts unless the
        // generation held still; a match or damage also needs the slot to be unchanged.
        match result {
            Read::Other if ctl_gen(self.recheck(ctl_off)) == gen => result,
            Read::Match(_) | Read::Corrupt if self.unchanged(ctl_off, gen, slot, w) => result,
            _ => Read::Torn,
        }
    }

    /// Reads the item slot word `w` (loaded from `slot`) points at under the seqlock: `f`
    /// gets the item's offset, header and segment generation and may load its bytes; its
    /// result is returned only if the generation and the slot held still (so nothing `f`
    /// saw was torn).
    pub(crate) fn read_validated<T>(
        &self,
        slot: u64,
        w: u64,
        f: impl FnOnce(u64, &Hdr, u64) -> T,
    ) -> Option<T> {
        let off = slot_loc(w) * 8;
        let seg = self.geo.seg_of(off)?;
        let ctl_off = self.geo.seg_ctl_off(seg);
        // Acquire: first read of the seqlock generation, as in read_item.
        let gen = ctl_gen(self.mem.load(ctl_off, Acquire));
        if gen & SLOT_GEN_MASK != slot_gen(w) {
            return None;
        }
        let end = self.geo.seg_base(seg) + self.geo.seg_size();
        let h = self.decode_hdr(off, end)?;
        let t = f(off, &h, gen);
        self.unchanged(ctl_off, gen, slot, w).then_some(t)
    }

    /// The key of the item `w` (loaded from `slot`) points at, and what decides whether it
    /// is live.
    pub(crate) fn read_key(&self, slot: u64, w: u64) -> Option<(Vec<u8>, ItemInfo)> {
        self.read_validated(slot, w, |off, h, gen| {
            let mut key = Vec::with_capacity(h.key_len as usize);
            self.copy_out(h.key_off, h.key_len as usize, &mut key);
            let info = ItemInfo {
                gen,
                expires_at: h.expires_at,
                grace: h.grace,
                delta_ms: h.delta_ms,
                tags_ok: h.ntags == 0 || self.tags_ok(off, h),
                tagged: h.ntags > 0,
                flags: self.flags_of(off, h),
            };
            (key, info)
        })
    }

    /// The extension words of the item `w` (loaded from `slot`) points at; `false` if it
    /// did not read consistently.
    pub(crate) fn read_ext(&self, slot: u64, w: u64, out: &mut Vec<u64>) -> bool {
        out.clear();
        self.read_validated(slot, w, |off, h, _| {
            // Relaxed: validated by the generation re-check.
            out.extend((0..h.ext).map(|i| self.mem.load(off + ITEM_HEADER_SIZE + i * 8, Relaxed)));
        })
        .is_some()
    }

    /// After an optimistic read of the item `w` points at: the segment still has generation
    /// `gen` *and* the slot still holds `w` (its reference bit aside). The second half is
    /// what rules out a reader stalled across 2¹⁴ recyclings of the segment, whose slot word
    /// would pass the 14-bit generation check against bytes of another generation: the slot
    /// was emptied before the first of them (design.md §4.1, hazard 11).
    #[inline(always)]
    fn unchanged(&self, ctl_off: u64, gen: u64, slot: u64, w: u64) -> bool {
        // Relaxed slot load: after recheck's fence(Acquire), so it cannot be satisfied before
        // the item loads; coherence with the Acquire load of `c1` does the rest (§4.1).
        ctl_gen(self.recheck(ctl_off)) == gen
            && (self.mem.load(slot, Relaxed) | REF_BIT) == (w | REF_BIT)
    }

    /// Second read of a segment's control word, after an optimistic read of its bytes.
    #[inline]
    fn recheck(&self, ctl_off: u64) -> u64 {
        // Acquire fence: pairs with the fence(Release) a claimer issues after its claim CAS
        // and before writing into a recycled segment (alloc.rs); if any Relaxed load of item
        // bytes before this saw such a write, the load below sees the new generation.
        fence(Acquire);
        self.mem.load(ctl_off, Relaxed)
    }

    /// Compares the key stored at `at` (8-aligned) with `key`.
    #[inline]
    pub(crate) fn key_eq(&self, at: u64, key: &[u8]) -> bool {
        let words = self.mem.words(at, key.len().div_ceil(8));
        let mut chunks = key.chunks_exact(8);
        for (c, w) in (&mut chunks).zip(words) {
            let want = u64::from_le_bytes(c.try_into().expect("chunk of 8"));
            if w.load(Relaxed) != want {
                return false;
            }
        }
        let rest = chunks.remainder();
        let Some(last) = words.get(key.len() / 8).filter(|_| !rest.is_empty()) else {
            return true;
        };
        // The remainder's 1..=7 bytes as the low bytes of a word, without a memcpy call:
        // from the key's last 8 bytes shifted down when it has them, else byte by byte.
        let want = match key.len().checked_sub(8) {
            Some(from) => {
                let tail = u64::from_le_bytes(key[from..].try_into().expect("8 bytes"));
                tail >> ((8 - rest.len()) * 8)
            }
            None => rest
                .iter()
                .rev()
                .fold(0, |acc, &b| (acc << 8) | u64::from(b)),
        };
        let mask = (1u64 << (rest.len() * 8)) - 1;
        last.load(Relaxed) & mask == want
    }

    /// Appends `len` bytes starting at byte offset `start` (any alignment) to `out`. The
    /// caller guarantees `start + len` rounded up to 8 is inside a validated item.
    #[inline]
    pub(crate) fn copy_out(&self, start: u64, len: usize, out: &mut Vec<u8>) {
        // The covering aligned words are stored whole into spare capacity, then the bytes
        // are shifted down by the start's misalignment with one memmove.
        let skew = (start & 7) as usize;
        let words = (skew + len).div_ceil(8);
        out.reserve(words * 8);
        let base = out.len();
        let dst = out.spare_capacity_mut().as_mut_ptr().cast::<u8>();
        let src = self.mem.words(start - skew as u64, words);
        for (i, w) in src.iter().enumerate() {
            let w = w.load(Relaxed);
            // SAFETY: i * 8 + 8 ≤ words * 8 ≤ the spare capacity reserved above;
            // write_unaligned has no alignment requirement.
            unsafe { dst.add(i * 8).cast::<u64>().write_unaligned(w.to_le()) };
        }
        if skew != 0 {
            // SAFETY: both ranges lie within the words * 8 bytes just written.
            unsafe { std::ptr::copy(dst.add(skew), dst, len) };
        }
        // SAFETY: bytes base..base + len were initialised above.
        unsafe { out.set_len(base + len) };
    }

    /// Copies `len` bytes starting at byte offset `start` (any alignment) to the front of
    /// `dst`, which has room for them. The caller guarantees `start + len` rounded up to 8
    /// is inside a validated item.
    #[inline]
    pub(crate) fn copy_into(&self, start: u64, len: usize, dst: &mut [u8]) {
        assert!(
            len <= dst.len(),
            "copy_into: {len} bytes into {}",
            dst.len()
        );
        let skew = (start & 7) as usize;
        let words = (skew + len).div_ceil(8);
        let src = self.mem.words(start - skew as u64, words);
        if words * 8 <= dst.len() {
            // Room for the covering words whole: as copy_out, store them, then shift.
            let p = dst.as_mut_ptr();
            for (i, w) in src.iter().enumerate() {
                let w = w.load(Relaxed);
                // SAFETY: i * 8 + 8 ≤ words * 8 ≤ dst.len(); no alignment needed.
                unsafe { p.add(i * 8).cast::<u64>().write_unaligned(w.to_le()) };
            }
            if skew != 0 {
                dst.copy_within(skew..skew + len, 0);
            }
            return;
        }
        // A buffer of exactly the value's size: the words' bytes one by one at the edges.
        let mut at = 0;
        for (i, w) in src.iter().enumerate() {
            let b = w.load(Relaxed).to_le_bytes();
            let from = if i == 0 { skew } else { 0 };
            let n = (8 - from).min(len - at);
            dst[at..at + n].copy_from_slice(&b[from..from + n]);
            at += n;
        }
    }

    /// Writes a complete item at `at` (in a segment the caller owns), with extension words
    /// `ext` (meta, then tags, then flags if the meta word says so) between header and key.
    /// Returns its size.
    pub(crate) fn write_item_ext(
        &self,
        at: u64,
        key: &[u8],
        value: &[u8],
        expires_at: u32,
        ext: &[u64],
    ) -> u64 {
        // Ext words are a meta word counting the tags (and the flags word) that follow it
        // (design.md §2.6).
        debug_assert!(
            ext.is_empty()
                || ext.len() as u64 == 1 + meta_ntags(ext[0]) + u64::from(meta_flagged(ext[0]))
        );
        debug_assert!(ext.len() <= MAX_EXT_WORDS);
        // Relaxed stores: the item becomes visible only through the publish CAS (Release)
        // that follows, or through `wptr` (Release) for walkers.
        self.mem.store(
            at,
            item_hdr(
                key.len() as u64,
                value.len() as u64,
                expires_at,
                !ext.is_empty(),
            ),
            Relaxed,
        );
        for (i, &e) in ext.iter().enumerate() {
            self.mem
                .store(at + ITEM_HEADER_SIZE + i as u64 * 8, e, Relaxed);
        }
        let mut w = WordWriter {
            mem: &self.mem,
            off: at + ITEM_HEADER_SIZE + ext.len() as u64 * 8,
            acc: 0,
            n: 0,
        };
        w.put(key);
        w.put(value);
        w.finish();
        item_size(ext.len() as u64 * 8 + key.len() as u64, value.len() as u64)
    }

    /// Writes an item without extension words (loom models).
    #[cfg(larder_loom)]
    pub(crate) fn write_item(&self, at: u64, key: &[u8], value: &[u8], expires_at: u32) -> u64 {
        self.write_item_ext(at, key, value, expires_at, &[])
    }

    /// Copies the item at `from` (`size` bytes, stable: its segment is being evicted by us)
    /// to `to`. Items carry no generation, so the copy is the same bytes.
    pub(crate) fn copy_item(&self, from: u64, to: u64, size: u64) {
        // Relaxed throughout: published by the caller's CAS (Release) afterwards.
        let mut i = 0;
        while i < size {
            self.mem
                .store(to + i, self.mem.load(from + i, Relaxed), Relaxed);
            i += 8;
        }
    }
}

/// Streams bytes into consecutive arena words.
/// Where a value read from the arena goes: a vector (appended, grown as needed) or a
/// caller's buffer ([`SliceSink`]). Generic, so the vector path compiles to what it was.
pub(crate) trait Sink {
    /// What `truncate` goes back to: the state before a value was taken.
    fn mark(&self) -> usize;
    /// Forgets a value taken since `mark` (a torn read, or one not to be returned).
    fn truncate(&mut self, mark: usize);
    /// Takes the `len` value bytes at byte offset `start` of a validated item.
    fn take<M: Mem>(&mut self, e: &Engine<M>, start: u64, len: usize);
}

impl Sink for Vec<u8> {
    #[inline]
    fn mark(&self) -> usize {
        self.len()
    }
    #[inline]
    fn truncate(&mut self, mark: usize) {
        Vec::truncate(self, mark)
    }
    #[inline]
    fn take<M: Mem>(&mut self, e: &Engine<M>, start: u64, len: usize) {
        e.copy_out(start, len, self)
    }
}

/// A caller's buffer (a C caller's, through the ABI): the value is copied to its front when
/// it fits, without a second copy; `len` is the value's length whether or not it fitted.
pub(crate) struct SliceSink<'a> {
    pub(crate) buf: &'a mut [u8],
    pub(crate) len: usize,
}

impl Sink for SliceSink<'_> {
    #[inline]
    fn mark(&self) -> usize {
        0
    }
    #[inline]
    fn truncate(&mut self, mark: usize) {
        self.len = mark;
    }
    #[inline]
    fn take<M: Mem>(&mut self, e: &Engine<M>, start: u64, len: usize) {
        self.len = len;
        if len <= self.buf.len() {
            e.copy_into(start, len, self.buf);
        }
    }
}

struct WordWriter<'a, M: Mem> {
    mem: &'a M,
    off: u64,
    acc: u64,
    n: u32,
}

impl<M: Mem> WordWriter<'_, M> {
    #[inline]
    fn put(&mut self, mut b: &[u8]) {
        while self.n != 0 && !b.is_empty() {
            self.acc |= u64::from(b[0]) << (self.n * 8);
            self.n += 1;
            b = &b[1..];
            if self.n == 8 {
                self.flush();
            }
        }
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            // Relaxed: see write_item.
            self.mem.store(
                self.off,
                u64::from_le_bytes(c.try_into().expect("chunk of 8")),
                Relaxed,
            );
            self.off += 8;
        }
        for &byte in chunks.remainder() {
            self.acc |= u64::from(byte) << (self.n * 8);
            self.n += 1;
        }
    }

    #[inline]
    fn flush(&mut self) {
        // Relaxed: see write_item.
        self.mem.store(self.off, self.acc, Relaxed);
        self.off += 8;
        self.acc = 0;
        self.n = 0;
    }

    #[inline]
    fn finish(mut self) {
        if self.n != 0 {
            self.flush();
        }
    }
}
