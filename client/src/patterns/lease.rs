//! The stampede lease as two calls, for callers that cannot hand larder a loader closure
//! (LuaJIT inside nginx cannot yield across a C callback; a C caller may load on an event
//! loop): [`Cache::get_or_lease`] returns the value or the key's lease, and the holder
//! stores what it loaded with [`Cache::fill_lease`] (or gives the lease up with
//! [`Cache::release_lease`]). [`Cache::get_or_load`] is these two calls with a loop.
//!
//! Nothing new is in the arena: this is the lease table of design.md §2.6 as
//! `get_or_load` always used it. A holder that dies or never calls back only delays the
//! others until the lease runs out.

use std::time::Duration;

use super::options::{LoadOptions, SetOptions};
use crate::cache::Cache;
use crate::protocol::index::Mode;
use crate::protocol::lease::LeaseTry;
use crate::protocol::ops::Fetched;
use crate::Error;

/// A key's lease, held by the caller [`Cache::get_or_lease`] gave it to. Give it back with
/// [`Cache::fill_lease`] or [`Cache::release_lease`]; dropping it without either leaves
/// others waiting until it runs out (the lease time of the [`LoadOptions`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a lease not given back makes others wait until it runs out"]
pub struct Lease {
    hash: u64,
    word: u64,
    /// When the lease was taken, on the system-wide monotonic clock (valid in every
    /// process of the host, unlike an `Instant`), for the load time early refresh uses.
    started_ms: u64,
}

/// Milliseconds on CLOCK_MONOTONIC: the real time a load takes, whatever clock the arena
/// reads (tests give it a manual one).
fn monotonic_ms() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        (t.tv_sec() as u64).saturating_mul(1000) + t.tv_nsec() as u64 / 1_000_000
    })
}

impl Lease {
    /// A lease just taken: its word in the table for `hash`, timed from now.
    pub(super) fn new(hash: u64, word: u64) -> Lease {
        Lease {
            hash,
            word,
            started_ms: monotonic_ms(),
        }
    }

    /// The lease as three plain words, for a binding that keeps it in a C struct.
    pub fn to_words(self) -> [u64; 3] {
        [self.hash, self.word, self.started_ms]
    }

    /// A lease back from [`Lease::to_words`]. Words that were never a lease are harmless:
    /// [`Cache::fill_lease`] refuses them for any key whose hash differs, and releasing a
    /// lease word nobody holds changes nothing.
    pub fn from_words(w: [u64; 3]) -> Lease {
        Lease {
            hash: w[0],
            word: w[1],
            started_ms: w[2],
        }
    }
}

/// What [`Cache::get_or_lease`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leased {
    /// The buffer holds the live value.
    Hit,
    /// The buffer holds a value past its TTL but within its stale grace, and another
    /// caller holds the lease (it is refreshing the value): serve this one.
    Stale,
    /// The caller holds the key's lease and the buffer is empty: load the value, then
    /// [`Cache::fill_lease`] (or [`Cache::release_lease`] if loading failed).
    Acquired(Lease),
    /// Another caller holds the lease and there is no value to serve: ask again after
    /// `retry_after` (at most the time left on that lease).
    Wait { retry_after: Duration },
}

impl Cache {
    /// The value of `key` into `out` (replacing its contents), or the key's lease when there
    /// is none to serve: missing, stale with nobody refreshing it, or chosen for early
    /// refresh (`opts`' `early_refresh`). One caller per key across every process holds the
    /// lease at a time.
    pub fn get_or_lease(
        &self,
        key: &[u8],
        opts: &LoadOptions,
        out: &mut Vec<u8>,
    ) -> Result<Leased, Error> {
        out.clear();
        self.with_engine(|e, who| {
            e.check_key(key)?;
            let hash = e.hash(key);
            let lease_ms = e.lease_ms(opts.lease)?;
            let found = e.fetch(who, key, hash, out);
            let refresh = match &found {
                Fetched::Live(info, _) => match opts.beta {
                    Some(beta) if info.expires_at != 0 => {
                        let left_ms =
                            (u64::from(info.expires_at) * 1000).saturating_sub(e.now_ms()) as f64;
                        let delta = f64::from(info.delta_ms.max(1));
                        -delta * beta * super::cache_aside::uniform().ln() >= left_ms
                    }
                    _ => false,
                },
                _ => true,
            };
            if !refresh {
                return Ok(Leased::Hit);
            }
            Ok(match e.lease_try(hash, lease_ms) {
                LeaseTry::Acquired(word) => {
                    out.clear();
                    Leased::Acquired(Lease::new(hash, word))
                }
                LeaseTry::Held { until_ms } => match found {
                    // Someone else refreshes: serve what we have.
                    Fetched::Live(..) => Leased::Hit,
                    Fetched::Stale(..) => Leased::Stale,
                    Fetched::Missing => Leased::Wait {
                        retry_after: Duration::from_millis(
                            until_ms.saturating_sub(e.now_ms()).max(1),
                        ),
                    },
                },
            })
        })?
    }

    /// Stores `value` for `key` with `opts` and gives the lease back; returns whether the
    /// value is kept. `false`: a writer invalidated the key ([`Cache::invalidate`]) while
    /// the lease was held, so what was loaded may predate its change and is not left cached.
    /// The lease is given back also when storing fails (the error is returned).
    pub fn fill_lease(
        &self,
        key: &[u8],
        lease: Lease,
        value: &[u8],
        opts: &SetOptions,
    ) -> Result<bool, Error> {
        self.lease_for(key, lease)?;
        // Already taken away (invalidated, or run out and taken over): store nothing, and
        // leave what is there — a value marked stale by the invalidation, or the new
        // holder's — untouched. The check after storing catches an invalidation meanwhile.
        if !self.lease_is_current(key, lease)? {
            return Ok(false);
        }
        let took = monotonic_ms()
            .saturating_sub(lease.started_ms)
            .clamp(1, u64::from(u32::MAX)) as u32;
        let stored = self.set_ext(key, value, opts, took, Mode::Set);
        // Released after the set, so a waiter that sees the lease gone finds the value.
        let poisoned = self.with_engine(|e, _| {
            let still_ours = e.lease_current(lease.hash) == lease.word;
            e.lease_release(lease.hash, lease.word);
            !still_ours
        })?;
        stored?;
        if poisoned {
            self.delete(key)?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Gives the lease of `key` back without storing anything (loading failed): the next
    /// caller of [`Cache::get_or_lease`] gets it.
    pub fn release_lease(&self, key: &[u8], lease: Lease) -> Result<(), Error> {
        self.lease_for(key, lease)?;
        self.with_engine(|e, _| e.lease_release(lease.hash, lease.word))
    }

    /// Whether `lease` is still the key's: not given back, poisoned by an invalidation, or
    /// run out and taken over since.
    pub fn lease_is_current(&self, key: &[u8], lease: Lease) -> Result<bool, Error> {
        self.lease_for(key, lease)?;
        self.with_engine(|e, _| e.lease_current(lease.hash) == lease.word)
    }

    fn lease_for(&self, key: &[u8], lease: Lease) -> Result<(), Error> {
        self.with_engine(|e, _| {
            e.check_key(key)?;
            if e.hash(key) == lease.hash {
                Ok(())
            } else {
                Err(Error::WrongLease)
            }
        })?
    }
}
