//! Cache operations composed from the protocol pieces (docs/design.md §4).

use std::time::Duration;

use crate::protocol::alloc::{Lane, NoSpace};
use crate::protocol::engine::{Engine, Who};
use crate::protocol::expiry::Fresh;
use crate::protocol::index::{Lookup, Mode, Outcome, READ_RETRIES};
use crate::protocol::item::{ItemInfo, Sink, SliceSink};
use crate::protocol::layout::{
    hash_tag, item_meta, item_size, slot_loc, slot_tag, slot_word, Counter, B_SLOTS, H_FLUSH_GEN,
    ITEM_HEADER_SIZE, SLOTS_PER_BUCKET,
};
use crate::protocol::mem::Mem;
use crate::protocol::sync::Ordering::*;
use crate::Error;

/// What [`Engine::fetch`] found.
pub(crate) enum Fetched {
    /// A live item (its value appended), with its cas token.
    Live(ItemInfo, u64),
    /// Expired but within its stale grace (its value appended), with its cas token.
    Stale(ItemInfo, u64),
    Missing,
}

impl<M: Mem> Engine<M> {
    pub(crate) fn check_key(&self, key: &[u8]) -> Result<(), Error> {
        if key.is_empty() {
            return Err(Error::EmptyKey { max: self.max_key });
        }
        if key.len() > self.max_key as usize {
            return Err(Error::KeyTooLarge {
                len: key.len(),
                max: self.max_key,
            });
        }
        Ok(())
    }

    /// The longest value an item with this key and `ext` extension words may have: the
    /// arena's limit, or less where the item would not fit a segment (design.md §2.5).
    fn max_value_with(&self, key_len: usize, ext: usize) -> u32 {
        let room = self
            .geo
            .seg_size()
            .saturating_sub(ITEM_HEADER_SIZE + ext as u64 * 8 + key_len as u64);
        u32::try_from(room).unwrap_or(u32::MAX).min(self.max_value)
    }

    fn check_value(&self, value: &[u8]) -> Result<(), Error> {
        if value.len() > self.max_value as usize {
            return Err(Error::ValueTooLarge {
                len: value.len(),
                max: self.max_value,
            });
        }
        Ok(())
    }

    /// Appends the value of `key` to `out` if it is live or stale, and says which (design.md
    /// §4.1). Counts a hit for a live item, a miss otherwise; unlinks a dead one.
    pub(crate) fn fetch<S: Sink>(&self, who: Who, key: &[u8], hash: u64, out: &mut S) -> Fetched {
        // The first lookup's two common ends — a live hit, a miss — are answered here; the
        // rest (stale, dead, torn) out of line, so the hot path carries no retry loop (whose
        // loop-invariant loads the compiler hoisted and spilled on every call).
        let mark = out.mark();
        let first = self.lookup(who, key, hash, Some(out));
        match first {
            Lookup::Found(f) if self.fresh(&f.info) == Fresh::Live => {
                self.touch_ref(&f);
                self.count(who, Counter::Hits);
                Fetched::Live(f.info, f.token())
            }
            Lookup::NotFound => {
                self.count(who, Counter::Misses);
                Fetched::Missing
            }
            first => self.fetch_rest(who, key, hash, out, mark, first),
        }
    }

    /// `fetch` after a first lookup that found a stale or dead item, or a torn read.
    #[inline(never)]
    fn fetch_rest<S: Sink>(
        &self,
        who: Who,
        key: &[u8],
        hash: u64,
        out: &mut S,
        mark: usize,
        first: Lookup,
    ) -> Fetched {
        let mut found = first;
        for round in 0..READ_RETRIES {
            if round > 0 {
                found = self.lookup(who, key, hash, Some(out));
            }
            match found {
                Lookup::Found(f) => match self.fresh(&f.info) {
                    Fresh::Live => {
                        self.touch_ref(&f);
                        self.count(who, Counter::Hits);
                        return Fetched::Live(f.info, f.token());
                    }
                    Fresh::Stale => {
                        self.count(who, Counter::Misses);
                        return Fetched::Stale(f.info, f.token());
                    }
                    Fresh::Dead => {
                        out.truncate(mark);
                        // Relaxed: unlinking a dead item publishes nothing.
                        if self.still_current(&f)
                            && self.mem.cas(f.slot, f.w, 0, Relaxed, Relaxed).is_ok()
                        {
                            self.count(who, Counter::Expired);
                        }
                        break;
                    }
                },
                Lookup::NotFound => break,
                Lookup::Torn => self.count(who, Counter::TornRetries),
            }
        }
        self.count(who, Counter::Misses);
        Fetched::Missing
    }

    /// Several GETs with their memory accesses overlapped: each one is two dependent cache
    /// misses (bucket, then item), so a batch first prefetches every key's buckets, then
    /// every item their matching slots point at, then reads them in order. Each result is
    /// what [`Engine::get`] would have returned; a bad key fails the whole call up front.
    pub(crate) fn get_batch(
        &self,
        who: Who,
        keys: &[&[u8]],
        mut each: impl FnMut(usize, &mut Vec<u8>, Option<(ItemInfo, u64)>),
    ) -> Result<(), Error> {
        /// Keys whose lines are in flight at once (a batch must stay in L1: 2 lines each).
        const BATCH: usize = 16;
        for k in keys {
            self.check_key(k)?;
        }
        let mut hashes = [0u64; BATCH];
        let mut out = Vec::new();
        for (c, chunk) in keys.chunks(BATCH).enumerate() {
            for (h, k) in hashes.iter_mut().zip(chunk) {
                *h = self.hash(k);
                for b in self.neighbourhood(*h) {
                    self.mem.prefetch(b);
                }
            }
            for &h in &hashes[..chunk.len()] {
                self.prefetch_item(h);
            }
            for (i, (k, &h)) in chunk.iter().zip(&hashes).enumerate() {
                out.clear();
                let hit = match self.fetch(who, k, h, &mut out) {
                    Fetched::Live(info, token) => Some((info, token)),
                    Fetched::Stale(..) | Fetched::Missing => None,
                };
                each(c * BATCH + i, &mut out, hit);
            }
        }
        Ok(())
    }

    /// Prefetches the item behind the first slot of `hash`'s neighbourhood whose tag matches.
    /// Only a hint: nothing is validated, and a wrong guess costs one wasted line.
    fn prefetch_item(&self, hash: u64) {
        let tag = hash_tag(hash);
        for bucket in self.neighbourhood(hash) {
            for i in 0..SLOTS_PER_BUCKET as u64 {
                // Relaxed: a hint; the real lookup re-reads the slot with Acquire.
                let w = self.mem.load(bucket + B_SLOTS + i * 8, Relaxed);
                if w != 0 && slot_tag(w) == tag {
                    let off = slot_loc(w) * 8;
                    self.mem.prefetch(off);
                    self.mem.prefetch(off + 64);
                    return;
                }
            }
        }
    }

    /// Appends the value of a live `key` to `out`; returns what was found, and its cas token.
    #[inline]
    pub(crate) fn get(
        &self,
        who: Who,
        key: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<(ItemInfo, u64)>, Error> {
        self.check_key(key)?;
        let mark = out.len();
        match self.fetch(who, key, self.hash(key), out) {
            Fetched::Live(info, token) => Ok(Some((info, token))),
            Fetched::Stale(..) => {
                out.truncate(mark);
                Ok(None)
            }
            Fetched::Missing => Ok(None),
        }
    }

    /// The value of a live `key` into the front of `buf` if it fits: its length (larger than
    /// `buf` when it did not fit, and nothing was copied) and its client flags, or `None`
    /// on a miss.
    #[inline]
    pub(crate) fn get_slice(
        &self,
        who: Who,
        key: &[u8],
        buf: &mut [u8],
    ) -> Result<Option<(usize, u32)>, Error> {
        self.check_key(key)?;
        let mut sink = SliceSink { buf, len: 0 };
        Ok(match self.fetch(who, key, self.hash(key), &mut sink) {
            Fetched::Live(info, _) => Some((sink.len, info.flags)),
            Fetched::Stale(..) | Fetched::Missing => None,
        })
    }

    /// Appends the value of a live `key` to `out` without counting or marking it referenced;
    /// returns its remaining TTL (`Some(None)`: no expiry), its stale grace (seconds) and
    /// whether it carries tags.
    pub(crate) fn peek(
        &self,
        who: Who,
        key: &[u8],
        out: &mut Vec<u8>,
    ) -> Option<(Option<Duration>, ItemInfo)> {
        let hash = self.hash(key);
        let mark = out.len();
        let f = self.lookup_for_write(who, key, hash, Some(out))?;
        if !self.is_live(&f.info) {
            out.truncate(mark);
            return None;
        }
        Some((self.remaining(f.info.expires_at), f.info))
    }

    /// Writes a new item and publishes it according to `mode` (design.md §4.2).
    pub(crate) fn write(
        &self,
        who: Who,
        lane: &mut Lane,
        key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
        mode: Mode,
    ) -> Result<Outcome, Error> {
        self.write_ext(who, lane, key, value, ttl, mode, &[])
    }

    /// `write` with extension words (meta + tags, design.md §2.5).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn write_ext(
        &self,
        who: Who,
        lane: &mut Lane,
        key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
        mode: Mode,
        ext: &[u64],
    ) -> Result<Outcome, Error> {
        self.check_key(key)?;
        self.check_value(value)?;
        let expires_at = self.expires_at(ttl)?;
        let hash = self.hash(key);
        // publish needs the key's home bucket: start that miss now, so that it overlaps with
        // writing the new item into the lane's segment.
        self.mem.prefetch(self.neighbourhood(hash)[0]);
        if mode == Mode::Add {
            if let Some(f) = self.lookup_for_write(who, key, hash, None::<&mut Vec<u8>>) {
                if self.is_live(&f.info) {
                    return Ok(Outcome::NotStored);
                }
            }
        }
        let new_w = self.append(who, lane, key, value, expires_at, hash, ext)?;
        let o = self.publish(who, key, hash, new_w, mode);
        if o == Outcome::Stored {
            self.count(who, Counter::Sets);
        }
        Ok(o)
    }

    /// Appends an item to the lane's segment; returns the slot word that would publish it.
    #[allow(clippy::too_many_arguments)]
    fn append(
        &self,
        who: Who,
        lane: &mut Lane,
        key: &[u8],
        value: &[u8],
        expires_at: u32,
        hash: u64,
        ext: &[u64],
    ) -> Result<u64, Error> {
        let size = item_size(ext.len() as u64 * 8 + key.len() as u64, value.len() as u64);
        if size > self.geo.seg_size() {
            // Only in an arena whose limits were checked without extension words (before
            // layout 2's review): its largest value fits a segment only without them.
            self.count(who, Counter::Rejected);
            return Err(Error::ValueTooLarge {
                len: value.len(),
                max: self.max_value_with(key.len(), ext.len()),
            });
        }
        let s = match self.lane_room(who, lane, size) {
            // No segment can be claimed or evicted: dead processes may hold some (OPEN
            // lane segments, EVICTING victims). Reap every dead registration, as the daemon
            // would, and try again; without a daemon nobody else ever will (design.md §6.1).
            Err(NoSpace) if self.reap_dead(who).unwrap_or(0) > 0 => self.lane_room(who, lane, size),
            r => r,
        }
        .map_err(|NoSpace| {
            self.count(who, Counter::Rejected);
            Error::ArenaFull
        })?;
        let at = self.geo.seg_base(s.seg) + s.wptr;
        self.write_item_ext(at, key, value, expires_at, ext);
        self.lane_commit(lane, size, expires_at);
        Ok(slot_word(hash_tag(hash), s.gen, at / 8))
    }

    /// Removes `key`; `true` if a live item was removed.
    pub(crate) fn delete(&self, who: Who, key: &[u8]) -> Result<bool, Error> {
        self.check_key(key)?;
        let hash = self.hash(key);
        while let Some(f) = self.lookup_for_write(who, key, hash, None::<&mut Vec<u8>>) {
            // Relaxed: unlinking publishes nothing; the item stays intact for readers that
            // already loaded the old word (they linearize before the delete).
            if self.still_current(&f) && self.mem.cas(f.slot, f.w, 0, Relaxed, Relaxed).is_ok() {
                let live = self.is_live(&f.info);
                self.count(
                    who,
                    if live {
                        Counter::Deletes
                    } else {
                        Counter::Expired
                    },
                );
                return Ok(live);
            }
        }
        Ok(false)
    }

    /// Copy-and-republish of a live item (design.md §4.3): `f` may change the value and the
    /// expiry; the new item replaces exactly the one read, or the whole step is redone.
    pub(crate) fn rewrite<T>(
        &self,
        who: Who,
        lane: &mut Lane,
        key: &[u8],
        mut f: impl FnMut(&mut Vec<u8>, &mut u32, &mut Vec<u64>) -> Result<T, Error>,
    ) -> Result<Option<T>, Error> {
        self.check_key(key)?;
        let hash = self.hash(key);
        let mut buf = Vec::new();
        let mut ext = Vec::new();
        loop {
            buf.clear();
            let Some(found) = self.lookup_for_write(who, key, hash, Some(&mut buf)) else {
                return Ok(None);
            };
            if !self.is_live(&found.info) {
                return Ok(None);
            }
            // Tags and grace travel with the value; a torn read of them means the item
            // moved: start over.
            if !self.read_ext(found.slot, found.w, &mut ext) {
                continue;
            }
            let mut expires_at = found.info.expires_at;
            let t = f(&mut buf, &mut expires_at, &mut ext)?;
            self.check_value(&buf)?;
            let new_w = self.append(who, lane, key, &buf, expires_at, hash, &ext)?;
            // The word was read before the append, which may have evicted and waited:
            // re-validated right before the CAS. Release: publishes the new item. Relaxed
            // failure: redo from the new state (the new item is left as dead space).
            if self.still_current(&found)
                && self
                    .mem
                    .cas(found.slot, found.w, new_w, Release, Relaxed)
                    .is_ok()
            {
                self.count(who, Counter::Sets);
                return Ok(Some(t));
            }
        }
    }

    /// Adds `delta` (or subtracts, flooring at 0) to a decimal value.
    pub(crate) fn incr(
        &self,
        who: Who,
        lane: &mut Lane,
        key: &[u8],
        delta: u64,
        decr: bool,
    ) -> Result<Option<u64>, Error> {
        self.rewrite(who, lane, key, |v, _, _| {
            let n = parse_u64(v).ok_or(Error::NotANumber)?;
            let n = if decr {
                n.saturating_sub(delta)
            } else {
                n.wrapping_add(delta)
            };
            v.clear();
            v.extend_from_slice(n.to_string().as_bytes());
            Ok(n)
        })
    }

    /// Sets a new TTL on a live item; `false` if there was none.
    pub(crate) fn touch(
        &self,
        who: Who,
        lane: &mut Lane,
        key: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, Error> {
        let at = self.expires_at(ttl)?;
        self.count(who, Counter::Touches);
        Ok(self
            .rewrite(who, lane, key, |_, e, _| {
                *e = at;
                Ok(())
            })?
            .is_some())
    }

    /// Makes a live item stale at once (design.md §2.6): it expires now and is served as
    /// stale for `grace`. The same copy-and-republish as `touch`, with the meta word's grace
    /// replaced (or a meta word added). `true` if there was a live item.
    pub(crate) fn mark_stale(
        &self,
        who: Who,
        lane: &mut Lane,
        key: &[u8],
        grace: Duration,
    ) -> Result<bool, Error> {
        // Expired as of this second. An arena's epoch is a second before its creation, so
        // the current relative time is never 0 ("never"); a damaged or older clock that
        // gives 0 still stores 1, not "never".
        let now = self.now_rel().max(1);
        let g = self.grace_secs(now, grace)?;
        Ok(self
            .rewrite(who, lane, key, |_, e, ext| {
                *e = now;
                match ext.first_mut() {
                    Some(meta) => *meta = (*meta & !u64::from(u32::MAX)) | u64::from(g),
                    None => ext.push(item_meta(g, 0, 0, false)),
                }
                Ok(())
            })?
            .is_some())
    }

    /// Remaining TTL: `None` missing, `Some(None)` no expiry.
    pub(crate) fn ttl(&self, who: Who, key: &[u8]) -> Result<Option<Option<Duration>>, Error> {
        self.check_key(key)?;
        let hash = self.hash(key);
        Ok(self
            .lookup_for_write(who, key, hash, None::<&mut Vec<u8>>)
            .filter(|f| self.is_live(&f.info))
            .map(|f| self.remaining(f.info.expires_at)))
    }

    /// Empties the index, then returns every segment of the log to the free pool
    /// (design.md §4.8). Returns the number of items removed.
    pub(crate) fn flush(&self, who: Who) -> u64 {
        // Relaxed: a generation number for observers; the unlinks below are the flush.
        self.mem.fetch_add(H_FLUSH_GEN, 1, Relaxed);
        let mut n = 0;
        self.for_each_slot(|slot, mut w| {
            // A slot that changed between the load and the CAS is emptied all the same: the
            // word may be an item older than the flush moved forward by an evictor into a
            // destination the flush leaves to it (so skipping it would let the item survive
            // the flush); a write since is concurrent with the flush, and may go too.
            // Relaxed: unlinking publishes nothing.
            while let Err(now) = self.mem.cas(slot, w, 0, Relaxed, Relaxed) {
                if now == 0 {
                    return;
                }
                w = now;
            }
            n += 1;
        });
        // Whatever a concurrent writer published meanwhile is unlinked by the walk like any
        // evicted item (it was concurrent with the flush); segments held by writers or
        // evictors are left to them.
        for seg in 0..self.geo.nsegs {
            if let Some(prev) = self.take_for_walk(who, seg) {
                let gen = crate::protocol::layout::ctl_gen(prev);
                self.walk_segment(who, seg, gen, crate::protocol::eviction::Walk::Evict, None);
                self.free_segment(who, seg, gen);
            }
        }
        n
    }
}

/// Parses a memcached-style counter: 1 to 20 ASCII digits.
fn parse_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 20 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[cfg(not(larder_loom))]
    #[test]
    fn an_item_whose_extension_words_make_it_larger_than_a_segment_is_refused() {
        use crate::protocol::alloc::Lane;
        use crate::protocol::index::Mode;
        use crate::protocol::layout::{item_meta, item_size};
        use crate::Error;
        // 64 KiB segments and keys up to 16 bytes: the largest value fits a segment exactly
        // without extension words, as an arena checked only that way allows.
        let max = (64 << 10) - 8 - 16;
        let (e, w, _) = crate::protocol::testkit::engine(4, 16, 64, 1, max);
        assert_eq!(item_size(16, u64::from(max)), 64 << 10);
        let mut lane = Lane::default();
        let key = [b'k'; 16];
        let value = vec![7u8; max as usize];
        // One extension word (stale grace, or get_or_load's load time): 8 bytes too many.
        let r = e.write_ext(
            w[0],
            &mut lane,
            &key,
            &value,
            None,
            Mode::Set,
            &[item_meta(5, 0, 0, false)],
        );
        match r {
            Err(Error::ValueTooLarge { len, max: limit }) => {
                assert_eq!(len, value.len());
                assert_eq!(
                    limit,
                    max - 8,
                    "the limit for this key with one extension word"
                );
            }
            other => panic!("{other:?}"),
        }
        // Nothing was written anywhere: every segment is still free, and the largest item
        // without extension words is stored and reads back.
        assert_eq!(e.stats().items, 0);
        e.write(w[0], &mut lane, &key, &value, None, Mode::Set)
            .unwrap();
        let mut out = Vec::new();
        assert!(e.get(w[0], &key, &mut out).unwrap().is_some());
        assert_eq!(out, value);
        let small = vec![1u8; max as usize - 8];
        e.write_ext(
            w[0],
            &mut lane,
            b"other",
            &small,
            None,
            Mode::Set,
            &[item_meta(5, 0, 0, false)],
        )
        .unwrap();
        assert!(e.get(w[0], b"other", &mut Vec::new()).unwrap().is_some());
        assert!(e.get(w[0], &key, &mut Vec::new()).unwrap().is_some());
    }

    #[test]
    fn parse_u64_accepts_only_decimal() {
        assert_eq!(super::parse_u64(b"0"), Some(0));
        assert_eq!(super::parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(super::parse_u64(b"18446744073709551616"), None);
        assert_eq!(super::parse_u64(b""), None);
        assert_eq!(super::parse_u64(b"-1"), None);
        assert_eq!(super::parse_u64(b"1 "), None);
        assert_eq!(super::parse_u64(b"+1"), None);
    }
}
