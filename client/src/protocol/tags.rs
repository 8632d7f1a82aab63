//! Tags: version counters in the arena's tag table (docs/design.md §2.6). An item records
//! each of its tags' versions when written; `invalidate` moves a counter on, and every item
//! carrying an older version is dead from then on — O(1) for any number of items.

use crate::protocol::engine::Engine;
use crate::protocol::layout::{item_tag, TAG_SIZE};
use crate::protocol::mem::Mem;
use crate::protocol::sync::Ordering::{AcqRel, Acquire};

impl<M: Mem> Engine<M> {
    /// The tag table entry of a tag (tags share entries by hash: an invalidation then
    /// drops the other tag's items too — extra misses, never stale hits).
    pub(crate) fn tag_index(&self, tag: &[u8]) -> u32 {
        let h = xxhash_rust::xxh3::xxh3_64_with_seed(tag, self.seed ^ 0x7461_6773);
        (((h & 0xffff_ffff) * u64::from(self.geo.ntags.max(1))) >> 32) as u32
    }

    /// The arena offset of tag table entry `idx` (which the caller has bounds-checked).
    pub(crate) fn tag_off(&self, idx: u32) -> u64 {
        self.geo.tags_off + u64::from(idx) * TAG_SIZE
    }

    /// The extension word an item written now records for `tag`: its entry and version.
    pub(crate) fn tag_word(&self, tag: &[u8]) -> u64 {
        let idx = self.tag_index(tag);
        // Acquire: pairs with invalidate_tag's AcqRel; an invalidation that happened before
        // this load is not undone by the item about to be written.
        let ver = self.mem.load(self.tag_off(idx), Acquire) as u32;
        item_tag(idx, ver)
    }

    /// Makes every item carrying `tag`, as written so far, dead.
    pub(crate) fn invalidate_tag(&self, tag: &[u8]) {
        // AcqRel: pairs with the Acquire loads of readers (item.rs tags_ok) and writers
        // (tag_word) of tagged items.
        self.mem
            .fetch_add(self.tag_off(self.tag_index(tag)), 1, AcqRel);
    }
}
