//! Running a parsed request against the arena and writing memcached's reply.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use larder::{Cache, CasOutcome, CasToken, Error, ItemMeta, SetOptions};

use super::leases::ConnId;
use super::text::{Request, Store, RELATIVE_MAX};
use super::Shared;
use crate::units::unix_now;

/// The listener's own counters, shown by `stats` (Relaxed throughout: statistics).
#[derive(Default)]
pub struct ListenerStats {
    pub curr_connections: AtomicU64,
    pub total_connections: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub cmd_get: AtomicU64,
    pub cmd_set: AtomicU64,
    pub cmd_touch: AtomicU64,
    pub cmd_flush: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
}

/// What the connection does after a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Close,
}

/// When an item stored with memcached's `exptime` expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ttl {
    Never,
    After(Duration),
    /// Negative, or an absolute time already past: stored and expired at once.
    Expired,
}

/// memcached's rules: 0 never; negative expired; up to 30 days relative seconds; above that
/// an absolute unix time. memcached keeps exptime in a 32-bit int, so a value outside it
/// wraps (4000000000 is negative, expired): the same here.
pub fn ttl(exptime: i64, now: u64) -> Ttl {
    match i64::from(exptime as i32) {
        0 => Ttl::Never,
        e if e < 0 => Ttl::Expired,
        e if e <= RELATIVE_MAX => Ttl::After(Duration::from_secs(e as u64)),
        e => match (e as u64).checked_sub(now) {
            Some(left) if left > 0 => Ttl::After(Duration::from_secs(left)),
            _ => Ttl::Expired,
        },
    }
}

impl Ttl {
    pub(super) fn live(self) -> Option<Duration> {
        match self {
            Ttl::After(d) => Some(d),
            _ => None,
        }
    }
}

pub(super) fn line(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `VALUE <key> <flags> <bytes> [<cas>]`, the data block and its end.
fn value(out: &mut Vec<u8>, key: &[u8], v: &[u8], meta: ItemMeta, with_cas: bool) {
    out.extend_from_slice(b"VALUE ");
    out.extend_from_slice(key);
    // Writing into a Vec cannot fail.
    let _ = write!(out, " {} {}", meta.flags, v.len());
    if with_cas {
        let _ = write!(out, " {}", meta.cas.0);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(v);
    out.extend_from_slice(b"\r\n");
}

/// The reply for a library error met while serving a request.
pub(super) fn error(out: &mut Vec<u8>, e: &Error) {
    match e {
        Error::ValueTooLarge { .. } => line(out, "SERVER_ERROR object too large for cache"),
        Error::ArenaFull => line(out, "SERVER_ERROR out of memory storing object"),
        Error::NotANumber => line(
            out,
            "CLIENT_ERROR cannot increment or decrement non-numeric value",
        ),
        Error::KeyTooLarge { .. } | Error::EmptyKey { .. } => {
            line(out, "CLIENT_ERROR bad command line format")
        }
        Error::InvalidTtl { .. } => line(out, "CLIENT_ERROR invalid exptime argument"),
        e => line(out, &format!("SERVER_ERROR {e}")),
    }
}

/// Serves one request. `data` is the data block of a storage command (without its
/// `\r\n`). Replies are appended to `out` (nothing for `noreply`).
pub fn execute(
    sh: &Shared,
    conn: ConnId,
    req: &Request<'_>,
    data: &[u8],
    out: &mut Vec<u8>,
) -> Flow {
    // Written in place; taken back for noreply, or when an error ends the request partway
    // (a reply is all or nothing).
    let mark = out.len();
    let done = match req {
        Request::Meta(m) => {
            super::meta_exec::run(sh, conn, m, data, out).map(|()| (false, Flow::Continue))
        }
        _ => run(sh, conn, req, data, out),
    };
    match done {
        Ok((quiet, flow)) => {
            if quiet {
                out.truncate(mark);
            }
            flow
        }
        Err(e) => {
            out.truncate(mark);
            error(out, &e);
            Flow::Continue
        }
    }
}

/// `(noreply, flow)` after writing the reply into `out`.
fn run(
    sh: &Shared,
    conn: ConnId,
    req: &Request<'_>,
    data: &[u8],
    out: &mut Vec<u8>,
) -> Result<(bool, Flow), Error> {
    let (cache, stats, started) = (&sh.cache, &sh.stats, sh.started);
    let now = unix_now();
    match *req {
        Request::Get { ref keys, cas } => {
            stats.cmd_get.fetch_add(keys.len() as u64, Relaxed);
            cache.get_multi_with(keys, |i, v, meta| value(out, keys[i], v, meta, cas))?;
            line(out, "END");
        }
        Request::Gat {
            exptime,
            ref keys,
            cas,
        } => {
            stats.cmd_touch.fetch_add(keys.len() as u64, Relaxed);
            let t = ttl(exptime, now);
            let mut v = Vec::new();
            for k in keys {
                let live = match t {
                    Ttl::Expired => cache.get_meta_into(k, &mut v)?.inspect(|_| {
                        let _ = cache.delete(k);
                    }),
                    _ if cache.touch(k, t.live())? => cache.get_meta_into(k, &mut v)?,
                    _ => None,
                };
                if let Some(meta) = live {
                    value(out, k, &v, meta, cas);
                }
            }
            line(out, "END");
        }
        Request::Store {
            cmd,
            key,
            flags,
            exptime,
            cas,
            noreply,
            ..
        } => {
            stats.cmd_set.fetch_add(1, Relaxed);
            let reply = store(cache, cmd, key, data, flags, ttl(exptime, now), cas)?;
            if reply == "STORED" {
                // Another connection's refresh of the key is over (leases.rs).
                sh.leases.settle(cache, key, conn);
            }
            line(out, reply);
            return Ok((noreply, Flow::Continue));
        }
        Request::Delete { key, noreply } => {
            // A delete is the cache-aside write path ("the store changed"): a refresh under
            // way may have read the old value, so its lease is poisoned (meta_exec.rs).
            line(
                out,
                if cache.invalidate(key)? {
                    "DELETED"
                } else {
                    "NOT_FOUND"
                },
            );
            return Ok((noreply, Flow::Continue));
        }
        Request::Arith {
            key,
            incr,
            delta,
            noreply,
        } => {
            let v = if incr {
                cache.incr(key, delta)?
            } else {
                cache.decr(key, delta)?
            };
            match v {
                Some(n) => line(out, &n.to_string()),
                None => line(out, "NOT_FOUND"),
            }
            return Ok((noreply, Flow::Continue));
        }
        Request::Touch {
            key,
            exptime,
            noreply,
        } => {
            stats.cmd_touch.fetch_add(1, Relaxed);
            let found = match ttl(exptime, now) {
                Ttl::Expired => cache.delete(key)?,
                t => cache.touch(key, t.live())?,
            };
            line(out, if found { "TOUCHED" } else { "NOT_FOUND" });
            return Ok((noreply, Flow::Continue));
        }
        Request::FlushAll { delay, noreply } => {
            stats.cmd_flush.fetch_add(1, Relaxed);
            if delay > 0 {
                let c = cache.clone();
                let _ = std::thread::Builder::new()
                    .name("flush_all".into())
                    .spawn(move || {
                        std::thread::sleep(Duration::from_secs(delay as u64));
                        let _ = c.flush();
                    });
            } else {
                cache.flush()?;
            }
            line(out, "OK");
            return Ok((noreply, Flow::Continue));
        }
        Request::Stats { arg: None } => general_stats(cache, stats, started, now, out),
        Request::Stats {
            arg: Some(b"settings"),
        } => {
            let (max_key, max_value) = cache.limits();
            for (k, v) in [
                ("maxbytes", cache.stats().capacity.to_string()),
                ("item_size_max", max_value.to_string()),
                ("key_max_length", max_key.to_string()),
                ("evictions", "on".into()),
                ("cas_enabled", "yes".into()),
            ] {
                line(out, &format!("STAT {k} {v}"));
            }
            line(out, "END");
        }
        Request::Stats { arg: Some(_) } => line(out, "ERROR"),
        Request::Version => line(out, &format!("VERSION {}", env!("CARGO_PKG_VERSION"))),
        Request::Verbosity { noreply } => {
            line(out, "OK");
            return Ok((noreply, Flow::Continue));
        }
        Request::Quit => return Ok((true, Flow::Close)),
        Request::Shutdown => line(out, "ERROR: shutdown not enabled"),
        Request::MetaNoop => line(out, "MN"),
        Request::Meta(_) => unreachable!("meta requests are served by meta_exec"),
    }
    Ok((false, Flow::Continue))
}

pub(super) fn store(
    cache: &Cache,
    cmd: Store,
    key: &[u8],
    data: &[u8],
    flags: u32,
    t: Ttl,
    token: u64,
) -> Result<&'static str, Error> {
    const STORED: &str = "STORED";
    const NOT_STORED: &str = "NOT_STORED";
    let live = |k: &[u8]| cache.get_into_slice(k, &mut []).map(|v| v.is_some());
    let opts = {
        let o = SetOptions::new().flags(flags);
        match t.live() {
            Some(d) => o.ttl(d),
            None => o,
        }
    };
    Ok(match (cmd, t) {
        // Stored and expired at once: what is left is the absence of the key.
        (Store::Set, Ttl::Expired) => {
            cache.delete(key)?;
            STORED
        }
        (Store::Add, Ttl::Expired) => {
            if live(key)? {
                NOT_STORED
            } else {
                STORED
            }
        }
        (Store::Replace, Ttl::Expired) => {
            if cache.delete(key)? {
                STORED
            } else {
                NOT_STORED
            }
        }
        (Store::Set, _) => {
            cache.set_with(key, data, &opts)?;
            STORED
        }
        (Store::Add, _) => {
            if cache.add_with(key, data, &opts)? {
                STORED
            } else {
                NOT_STORED
            }
        }
        (Store::Replace, _) => {
            if cache.replace_with(key, data, &opts)? {
                STORED
            } else {
                NOT_STORED
            }
        }
        (Store::Cas, Ttl::Expired) => match cache.gets(key)? {
            None => "NOT_FOUND",
            Some((_, t)) if t.0 != token => "EXISTS",
            Some(_) => {
                cache.delete(key)?;
                STORED
            }
        },
        (Store::Cas, _) => match cache.cas_with(key, data, CasToken(token), &opts)? {
            CasOutcome::Stored => STORED,
            CasOutcome::Exists => "EXISTS",
            CasOutcome::NotFound => "NOT_FOUND",
        },
        // append/prepend keep the item's TTL and flags and ignore the request's, as
        // memcached does: read, join, and store only over the same item (a CAS), again if
        // it changed.
        (Store::Append | Store::Prepend, _) => loop {
            let mut old = Vec::new();
            let Some(meta) = cache.get_meta_into(key, &mut old)? else {
                break NOT_STORED;
            };
            let kept = SetOptions::new().flags(meta.flags);
            let kept = match cache.ttl(key)?.flatten() {
                Some(left) => kept.ttl(left),
                None => kept,
            };
            let joined = if cmd == Store::Append {
                [&old[..], data].concat()
            } else {
                [data, &old[..]].concat()
            };
            match cache.cas_with(key, &joined, meta.cas, &kept)? {
                CasOutcome::Stored => break STORED,
                CasOutcome::NotFound => break NOT_STORED,
                CasOutcome::Exists => continue,
            }
        },
    })
}

fn general_stats(cache: &Cache, ls: &ListenerStats, started: u64, now: u64, out: &mut Vec<u8>) {
    let s = cache.stats();
    let t = &s.totals;
    let g = |a: &AtomicU64| a.load(Relaxed).to_string();
    for (k, v) in [
        ("pid", std::process::id().to_string()),
        ("uptime", now.saturating_sub(started).to_string()),
        ("time", now.to_string()),
        ("version", env!("CARGO_PKG_VERSION").to_string()),
        ("curr_connections", g(&ls.curr_connections)),
        ("total_connections", g(&ls.total_connections)),
        ("rejected_connections", g(&ls.rejected_connections)),
        ("cmd_get", g(&ls.cmd_get)),
        ("cmd_set", g(&ls.cmd_set)),
        ("cmd_flush", g(&ls.cmd_flush)),
        ("cmd_touch", g(&ls.cmd_touch)),
        // The arena's figures: every process's, linked or through this listener.
        ("get_hits", t.hits.to_string()),
        ("get_misses", t.misses.to_string()),
        ("get_expired", t.expired.to_string()),
        ("delete_hits", t.deletes.to_string()),
        ("touch_hits", t.touches.to_string()),
        ("bytes_read", g(&ls.bytes_read)),
        ("bytes_written", g(&ls.bytes_written)),
        ("limit_maxbytes", s.capacity.to_string()),
        ("curr_items", s.items.to_string()),
        ("bytes", s.bytes_used.to_string()),
        (
            "evictions",
            t.evictions.wrapping_add(t.index_evictions).to_string(),
        ),
        ("protocol_errors", g(&ls.protocol_errors)),
    ] {
        line(out, &format!("STAT {k} {v}"));
    }
    line(out, "END");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exptime_follows_memcached() {
        let now = 1_800_000_000;
        assert_eq!(ttl(0, now), Ttl::Never);
        assert_eq!(ttl(-1, now), Ttl::Expired);
        assert_eq!(ttl(10, now), Ttl::After(Duration::from_secs(10)));
        assert_eq!(
            ttl(RELATIVE_MAX, now),
            Ttl::After(Duration::from_secs(RELATIVE_MAX as u64))
        );
        assert_eq!(
            ttl(now as i64 + 60, now),
            Ttl::After(Duration::from_secs(60))
        );
        assert_eq!(ttl(now as i64, now), Ttl::Expired);
        assert_eq!(
            ttl(RELATIVE_MAX + 1, now),
            Ttl::Expired,
            "an absolute time in 1970"
        );
    }
}
