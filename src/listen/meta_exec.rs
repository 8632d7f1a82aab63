//! Running a meta request (meta.rs) against the arena and writing memcached's reply.
//!
//! Stale-while-revalidate maps onto larder's own machinery, so a memcached client gets the
//! stampede protection a linked one has, on the same items: `mg` reads with
//! [`Cache::get_revalidating`]; winning the key's arena lease is `W` (held for the winning
//! connection until its `ms` of the key, its close, or the lease's end: leases.rs), finding
//! it held is `Z`, a value within its stale grace is `X`. `md … I` is [`Cache::mark_stale`], plain `md` (and text `delete`) [`Cache::invalidate`]: both poison
//! the key's lease, so a refresh that read the value before the change is not stored. What
//! larder does not keep (last access, fetched-before) is not offered; `E` is refused
//! (meta.rs).

use std::io::Write as _;
// Relaxed for the listener's counters: statistics (exec.rs, ListenerStats).
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use larder::{Cache, Error, Found, Revalidate, SetOptions};

use super::exec::{store, ttl, ListenerStats, Ttl};
use super::leases::{ConnId, Leases};
use super::meta::{Cmd, Meta, SetMode};
use super::text::Store;
use super::Shared;
use crate::units::unix_now;

/// How long a lease won without a time in the request (a stale item's refresh) is held.
const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// The stale time of `md <key> I` on an item that never expires, without a `T`.
const NEVER_EXPIRING_STALE: Duration = Duration::from_secs(86_400);

/// What the return flags report about an item.
struct Facts {
    flags: u32,
    cas: u64,
    size: usize,
    /// Time left (`None`: never expires).
    ttl: Option<Duration>,
}

/// Serves one meta request, appending its reply (if any) to `out`.
pub fn run(
    sh: &Shared,
    conn: ConnId,
    m: &Meta<'_>,
    data: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let (cache, stats, leases) = (&sh.cache, &sh.stats, &sh.leases);
    match m.cmd {
        Cmd::Get => get(cache, stats, (leases, conn), m, out),
        Cmd::Set(_) => set(cache, stats, (leases, conn), m, data, out),
        Cmd::Delete => delete(cache, m, out),
        Cmd::Arith => arith(cache, m, out),
    }
}

/// The return flags of `m` in request order (`c f s t` only with an item), then `b` when
/// the key is echoed in base64.
fn put_flags(out: &mut Vec<u8>, m: &Meta<'_>, item: Option<&Facts>) {
    // Writing into a Vec cannot fail.
    for &c in &m.ret {
        match (c, item) {
            (b'k', _) => {
                out.extend_from_slice(b" k");
                out.extend_from_slice(m.wire_key);
            }
            (b'O', _) => {
                out.extend_from_slice(b" O");
                out.extend_from_slice(m.opaque.unwrap_or_default());
            }
            (b'c', Some(f)) => drop(write!(out, " c{}", f.cas)),
            (b'f', Some(f)) => drop(write!(out, " f{}", f.flags)),
            (b's', Some(f)) => drop(write!(out, " s{}", f.size)),
            (b't', Some(f)) => match f.ttl {
                None => out.extend_from_slice(b" t-1"),
                Some(d) => drop(write!(out, " t{}", d.as_secs())),
            },
            _ => {}
        }
    }
    if m.binary && m.ret.contains(&b'k') {
        out.extend_from_slice(b" b");
    }
}

/// A status line: `code`, the return flags, `\r\n`.
fn status(out: &mut Vec<u8>, code: &str, m: &Meta<'_>, item: Option<&Facts>) {
    out.extend_from_slice(code.as_bytes());
    put_flags(out, m, item);
    out.extend_from_slice(b"\r\n");
}

fn secs(n: i64) -> Duration {
    Duration::from_secs(n.max(0) as u64)
}

fn options(flags: u32, t: Ttl) -> SetOptions {
    let o = SetOptions::new().flags(flags);
    match t.live() {
        Some(d) => o.ttl(d),
        None => o,
    }
}

fn get(
    cache: &Cache,
    stats: &ListenerStats,
    (leases, conn): (&Leases, ConnId),
    m: &Meta<'_>,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    stats.cmd_get.fetch_add(1, Relaxed);
    let now = unix_now();
    // `N`'s token is the TTL memcached gives the empty item it creates (exptime rules); the
    // lease it maps to is capped, so a winner that never comes back holds others off for
    // at most DEFAULT_LEASE. `R`'s token is a threshold, not a time to hold.
    let vivify_ttl = m.vivify.map(|e| ttl(e, now));
    let lease = match vivify_ttl {
        Some(Ttl::After(d)) => d.clamp(Duration::from_secs(1), DEFAULT_LEASE),
        _ => DEFAULT_LEASE,
    };
    // memcached's empty item of an expired `N` is gone at once, so every such `mg` of a
    // missing key wins: answered so, with no lease taken (there is nothing to hold off).
    let expired_vivify = vivify_ttl == Some(Ttl::Expired);
    let mut v = Vec::new();
    let (mut found, rv) = cache.get_revalidating(
        &m.key,
        &mut v,
        lease,
        m.vivify.is_some() && !expired_vivify,
        m.recache.map(secs),
    )?;
    // A lease won is held (or given back) before anything else can fail.
    let (won, held) = match rv {
        Revalidate::NotNeeded if expired_vivify && found == Found::Missing => (true, false),
        Revalidate::Won(l) => {
            let kept = leases.hold(cache, &m.key, conn, l, lease);
            (kept, !kept)
        }
        Revalidate::Held(_) => (false, true),
        Revalidate::NotNeeded => (false, false),
    };
    // `T` on a hit: a new TTL, as `touch`; the reply shows the item after it. An expired
    // `T` (negative, or an absolute time past) serves the value read, then deletes it.
    if let (Some(exp), Found::Live(..)) = (m.ttl, found) {
        stats.cmd_touch.fetch_add(1, Relaxed);
        match ttl(exp, now) {
            Ttl::Expired => {
                cache.delete(&m.key)?;
            }
            t => {
                let kept = cache.touch(&m.key, t.live())?;
                found = match kept
                    .then(|| cache.get_meta_into(&m.key, &mut v))
                    .transpose()?
                {
                    Some(Some(meta)) => Found::Live(meta, t.live()),
                    _ => Found::Missing,
                };
            }
        }
    }
    let (facts, stale) = match found {
        Found::Live(meta, left) => (
            Some(Facts {
                flags: meta.flags,
                cas: meta.cas.0,
                size: v.len(),
                ttl: left,
            }),
            false,
        ),
        Found::Stale(meta, left) => (
            Some(Facts {
                flags: meta.flags,
                cas: meta.cas.0,
                size: v.len(),
                ttl: Some(left),
            }),
            true,
        ),
        // A vivified miss: memcached answers for the empty item it created; larder stores
        // nothing (a `get` still misses) and answers the same.
        Found::Missing if won || held => (
            Some(Facts {
                flags: 0,
                cas: 0,
                size: 0,
                ttl: match (rv, vivify_ttl) {
                    // N0: memcached's empty item never expires (t-1).
                    (_, Some(Ttl::Never)) => None,
                    (Revalidate::Held(left), _) => Some(left),
                    (_, Some(Ttl::After(d))) => Some(d),
                    _ => None,
                },
            }),
            false,
        ),
        Found::Missing => (None, false),
    };
    let Some(f) = facts else {
        if !m.quiet {
            status(out, "EN", m, None);
        }
        return Ok(());
    };
    if m.value {
        let _ = write!(out, "VA {}", v.len());
    } else {
        out.extend_from_slice(b"HD");
    }
    put_flags(out, m, Some(&f));
    for (on, flag) in [(held, &b" Z"[..]), (stale, b" X"), (won, b" W")] {
        if on {
            out.extend_from_slice(flag);
        }
    }
    out.extend_from_slice(b"\r\n");
    if m.value {
        out.extend_from_slice(&v);
        out.extend_from_slice(b"\r\n");
    }
    Ok(())
}

/// memcached's meta code for a text-protocol storage reply.
fn code(reply: &str) -> &'static str {
    match reply {
        "STORED" => "HD",
        "EXISTS" => "EX",
        "NOT_FOUND" => "NF",
        _ => "NS",
    }
}

fn set(
    cache: &Cache,
    stats: &ListenerStats,
    (leases, conn): (&Leases, ConnId),
    m: &Meta<'_>,
    data: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    stats.cmd_set.fetch_add(1, Relaxed);
    let t = m.ttl.map_or(Ttl::Never, |e| ttl(e, unix_now()));
    let flags = m.client_flags.unwrap_or(0);
    let lease = leases.take(&m.key, conn);
    let reply = match (lease, m.mode, m.compare, t) {
        // The refresh this connection won: store and give the lease back in one step, so
        // an invalidation meanwhile drops what was loaded (design.md §2.6).
        // `false`: the key was deleted or invalidated (anywhere) while the lease was held,
        // so the value may predate that change and is not kept.
        (Some(l), SetMode::Set, None, Ttl::Never | Ttl::After(_)) => {
            if cache.fill_lease(&m.key, l, data, &options(flags, t))? {
                "HD"
            } else {
                "NS"
            }
        }
        (lease, mode, compare, t) => {
            let cmd = match (mode, compare) {
                (SetMode::Set | SetMode::Replace, Some(_)) => Store::Cas,
                (SetMode::Set, None) => Store::Set,
                (SetMode::Replace, None) => Store::Replace,
                (SetMode::Add, _) => Store::Add,
                (SetMode::Append, _) => Store::Append,
                (SetMode::Prepend, _) => Store::Prepend,
            };
            let r = store(cache, cmd, &m.key, data, flags, t, compare.unwrap_or(0));
            if let Some(l) = lease {
                let _ = cache.release_lease(&m.key, l);
            }
            let r = code(r?);
            if r == "HD" {
                // Another connection's refresh of the key is over (leases.rs).
                leases.settle(cache, &m.key, conn);
            }
            r
        }
    };
    // `I` stores a value marked stale when its CAS is older than the item's; larder's
    // tokens have no order, so a mismatch stays `EX` (as memcached answers a newer one).
    if !(m.quiet && reply == "HD") {
        status(out, reply, m, None);
    }
    Ok(())
}

fn delete(cache: &Cache, m: &Meta<'_>, out: &mut Vec<u8>) -> Result<(), Error> {
    // memcached deletes (or marks) a stale item as any other: HD.
    let stale = matches!(cache.get_stale(&m.key)?, Some(v) if v.stale);
    let found = if m.invalidate {
        let stale_for = match m.ttl.map(|e| ttl(e, unix_now())) {
            Some(Ttl::After(d)) => d,
            Some(Ttl::Never) => NEVER_EXPIRING_STALE,
            Some(Ttl::Expired) => Duration::from_secs(1),
            None => match cache.ttl(&m.key)? {
                Some(Some(left)) => left.max(Duration::from_secs(1)),
                _ => NEVER_EXPIRING_STALE,
            },
        };
        // A refresh under way (through the listener or a linked loader) may have read the
        // value before this change: its lease is poisoned, so its store is dropped (an `ms`
        // through the lease answers NS) and the next `mg` wins the refresh.
        cache.mark_stale(&m.key, stale_for)?
    } else {
        cache.invalidate(&m.key)?
    };
    let found = found || stale;
    let reply = if found { "HD" } else { "NF" };
    if !(m.quiet && found) {
        status(out, reply, m, None);
    }
    Ok(())
}

fn arith(cache: &Cache, m: &Meta<'_>, out: &mut Vec<u8>) -> Result<(), Error> {
    let step = |c: &Cache| {
        if m.decr {
            c.decr(&m.key, m.delta)
        } else {
            c.incr(&m.key, m.delta)
        }
    };
    let now = unix_now();
    let mut n = step(cache)?;
    let mut created = false;
    if let (None, Some(exp)) = (n, m.vivify) {
        // `N`: create the counter at `J`; if another client created it first, count on it.
        // Created already expired (a negative or past exptime), it is answered and gone.
        let init = m.initial.to_string();
        n = match ttl(exp, now) {
            Ttl::Expired => {
                created = true;
                Some(m.initial)
            }
            t if cache.add_with(&m.key, init.as_bytes(), &options(0, t))? => {
                created = true;
                Some(m.initial)
            }
            _ => step(cache)?,
        };
    }
    let Some(n) = n else {
        status(out, "NF", m, None);
        return Ok(());
    };
    // `T` after the update; an expired one leaves the counter gone, as `touch` would.
    match m.ttl.map(|e| ttl(e, now)) {
        Some(Ttl::Expired) => {
            cache.delete(&m.key)?;
        }
        Some(t) => {
            cache.touch(&m.key, t.live())?;
        }
        None => {}
    }
    let digits = n.to_string();
    // What `c`, `t` and `f` report is read back after the update.
    let facts = if m.ret.iter().any(|c| b"cft".contains(c)) {
        let mut v = Vec::new();
        let meta = cache.get_meta_into(&m.key, &mut v)?;
        meta.map(|meta| Facts {
            flags: meta.flags,
            cas: meta.cas.0,
            size: digits.len(),
            ttl: cache.ttl(&m.key).ok().flatten().flatten(),
        })
    } else {
        None
    };
    let facts = facts.unwrap_or(Facts {
        flags: 0,
        cas: 0,
        size: digits.len(),
        ttl: None,
    });
    if m.value {
        let _ = write!(out, "VA {}", digits.len());
        put_flags(out, m, Some(&facts));
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(digits.as_bytes());
        out.extend_from_slice(b"\r\n");
    } else if !m.quiet || created {
        // memcached 1.6.18 answers a counter created by `N` even under `q`.
        status(out, "HD", m, Some(&facts));
    }
    Ok(())
}
