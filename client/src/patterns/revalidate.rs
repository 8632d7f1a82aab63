//! Stale-while-revalidate for callers that speak memcached's meta protocol (`mg` with `N`,
//! `R` and the `W`/`X`/`Z` replies), on the same lease table and stale grace as
//! [`Cache::get_or_load`]: one read says what the value is (live, stale, missing) and whether
//! this caller won the key's lease to refresh it. [`Cache::mark_stale`] is the soft
//! invalidation (`md … I`) that makes a value stale instead of deleting it.
//!
//! Nothing new is in the arena: the lease word is taken exactly as `get_or_lease` takes it
//! (design.md §2.6), and a stale item is an item past its expiry within its grace.

use std::time::Duration;

use super::lease::Lease;
use crate::cache::{Cache, CasToken, ItemMeta};
use crate::protocol::lease::LeaseTry;
use crate::protocol::ops::Fetched;
use crate::Error;

/// What a value read by [`Cache::get_revalidating`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// Live, with the time it has left (`None`: it never expires).
    Live(ItemMeta, Option<Duration>),
    /// Past its TTL, within its stale grace for the time given.
    Stale(ItemMeta, Duration),
    Missing,
}

/// Whether the caller may refresh the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a lease won must be given back (fill_lease or release_lease)"]
pub enum Revalidate {
    /// No refresh was called for: the value is live and not near its end.
    NotNeeded,
    /// The caller holds the key's lease: refresh it, then [`Cache::fill_lease`] (or
    /// [`Cache::release_lease`]). memcached's `W`.
    Won(Lease),
    /// Another caller holds the lease for this long yet. memcached's `Z`.
    Held(Duration),
}

impl Cache {
    /// Reads `key` into `out` (replacing its contents; empty on a miss) and decides who
    /// refreshes it: a stale value always calls for a refresh, a missing one when `vivify`,
    /// a live one when it has less than `refresh_below` left. The lease, when tried, is
    /// held for `lease`.
    pub fn get_revalidating(
        &self,
        key: &[u8],
        out: &mut Vec<u8>,
        lease: Duration,
        vivify: bool,
        refresh_below: Option<Duration>,
    ) -> Result<(Found, Revalidate), Error> {
        out.clear();
        self.with_engine(|e, who| {
            e.check_key(key)?;
            let lease_ms = e.lease_ms(lease)?;
            let hash = e.hash(key);
            let meta = |info: &crate::protocol::item::ItemInfo, token| ItemMeta {
                flags: info.flags,
                cas: CasToken(token),
            };
            let (found, refresh) = match e.fetch(who, key, hash, out) {
                Fetched::Live(info, token) => {
                    let left = e.remaining(info.expires_at);
                    let near = matches!((left, refresh_below), (Some(l), Some(r)) if l < r);
                    (Found::Live(meta(&info, token), left), near)
                }
                Fetched::Stale(info, token) => {
                    let end = info.expires_at.saturating_add(info.grace);
                    let left = e.remaining(end).unwrap_or_default();
                    (Found::Stale(meta(&info, token), left), true)
                }
                Fetched::Missing => (Found::Missing, vivify),
            };
            if !refresh {
                return Ok((found, Revalidate::NotNeeded));
            }
            Ok(match e.lease_try(hash, lease_ms) {
                LeaseTry::Acquired(word) => (found, Revalidate::Won(Lease::new(hash, word))),
                LeaseTry::Held { until_ms } => (
                    found,
                    Revalidate::Held(Duration::from_millis(until_ms.saturating_sub(e.now_ms()))),
                ),
            })
        })?
    }

    /// Makes the live value of `key` stale at once, for `grace`: `get` misses it from now
    /// on, `get_stale`, `get_or_load`'s waiters and [`Cache::get_revalidating`] are served it
    /// while one caller refreshes it. `false` if there was no live value. (memcached's
    /// `md <key> I`.) Like [`Cache::invalidate`], it takes the key's lease away from a
    /// refresh already under way, whose value may predate the change: that holder's
    /// [`Cache::fill_lease`] returns `false`, and the next reader wins the refresh.
    pub fn mark_stale(&self, key: &[u8], grace: Duration) -> Result<bool, Error> {
        self.poison_lease(key)?;
        self.with_writer(|e, who, lane| e.mark_stale(who, lane, key, grace))?
    }
}
