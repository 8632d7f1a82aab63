//! memcached's meta protocol (`mg`, `ms`, `md`, `ma`): a request line parsed into a
//! [`Meta`] request, or the error memcached answers it with. Pure, as `text.rs`.
//!
//! A meta line is a two-letter command, a key, (for `ms`) the data length, then flags: one
//! letter each, some followed by a token (`T30`, `Oabc`). Return flags are echoed in the
//! order the request gave them.

use base64::Engine as _;

use super::text::{Refusal, BAD_FORMAT, KEY_MAX};

/// Which meta command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmd {
    Get,
    /// `ms`, with its data length.
    Set(usize),
    Delete,
    Arith,
}

/// `ms`'s mode (`M` flag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetMode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
}

/// A parsed meta request.
#[derive(Debug, PartialEq, Eq)]
pub struct Meta<'a> {
    pub cmd: Cmd,
    /// The key as stored (base64-decoded under `b`).
    pub key: Vec<u8>,
    /// The key as sent (what `k` echoes).
    pub wire_key: &'a [u8],
    /// `b`: the key is base64.
    pub binary: bool,
    /// Return flags in request order: `c f k O s t` (`O` with [`Meta::opaque`]).
    pub ret: Vec<u8>,
    pub opaque: Option<&'a [u8]>,
    /// `q`: no reply for the common outcome (a miss for `mg`, success otherwise).
    pub quiet: bool,
    /// `v`: return the value.
    pub value: bool,
    /// `T`: a new TTL (memcached's exptime rules).
    pub ttl: Option<i64>,
    /// `N`: vivify on miss with this TTL (`mg`), create with it (`ma`).
    pub vivify: Option<i64>,
    /// `R`: win the refresh when less than this many seconds are left.
    pub recache: Option<i64>,
    /// `F`: client flags to store.
    pub client_flags: Option<u32>,
    /// `C`: compare with this CAS token.
    pub compare: Option<u64>,
    /// `I`: invalidate (`md`: make stale instead of deleting).
    pub invalidate: bool,
    pub mode: SetMode,
    /// `ma`: decrement (`MD`, `M-`).
    pub decr: bool,
    /// `ma`: `D`, the delta (1 by default).
    pub delta: u64,
    /// `ma`: `J`, the initial value when `N` creates the counter (0 by default).
    pub initial: u64,
}

/// What the longest opaque token may be (memcached's limit).
const OPAQUE_MAX: usize = 32;

const INVALID_FLAG: Refusal = Refusal::Client("invalid flag");
const BAD_TOKEN: Refusal = Refusal::Client("bad token in command line format");
const DUPLICATE: Refusal = Refusal::Client("duplicate flag");
/// What `md` and `ma` answer a bad token or a repeated flag with.
const INVALID_OR_DUPLICATE: Refusal = Refusal::Client("invalid or duplicate flag");

/// An `ms` data length: a 32-bit signed count, as memcached reads it (anything else is a bad
/// line, not a block to read), so the connection's `length + 2` cannot overflow.
fn data_len(t: &[u8]) -> Option<usize> {
    let n: i32 = std::str::from_utf8(t).ok()?.parse().ok()?;
    usize::try_from(n).ok()
}

/// The length of the data block an `ms` line announces, even when the rest of the line is
/// refused: memcached reads and drops that block, so what follows it is the next request.
pub fn refused_data_len(line: &[u8]) -> Option<usize> {
    let mut t = line.split(|&b| b == b' ').filter(|t| !t.is_empty());
    if t.next()? != b"ms" {
        return None;
    }
    // memcached refuses a key past its limit before it reads the length: the data block
    // is then read as the next request (its reply an ERROR, as memcached's).
    if t.next()?.len() > KEY_MAX {
        return None;
    }
    data_len(t.next()?)
}

/// Parses a meta line (`cmd` already told apart as one of `mg ms md ma`) and its tokens.
pub fn parse<'a>(cmd: &[u8], args: &[&'a [u8]]) -> Result<Meta<'a>, Refusal> {
    let bad = Refusal::Client(BAD_FORMAT);
    let (&wire_key, rest) = args.split_first().ok_or(Refusal::Unknown)?;
    let (cmd, flags) = match cmd {
        b"mg" => (Cmd::Get, rest),
        b"md" => (Cmd::Delete, rest),
        b"ma" => (Cmd::Arith, rest),
        _ => {
            let (len, flags) = rest.split_first().ok_or(bad)?;
            (Cmd::Set(data_len(len).ok_or(bad)?), flags)
        }
    };
    let mut m = Meta {
        cmd,
        key: Vec::new(),
        wire_key,
        binary: false,
        ret: Vec::new(),
        opaque: None,
        quiet: false,
        value: false,
        ttl: None,
        vivify: None,
        recache: None,
        client_flags: None,
        compare: None,
        invalidate: false,
        mode: SetMode::Set,
        decr: false,
        delta: 1,
        initial: 0,
    };
    // What a bad token is answered with, per command, as memcached does.
    let bad_token = match cmd {
        Cmd::Delete | Cmd::Arith => INVALID_OR_DUPLICATE,
        _ => BAD_TOKEN,
    };
    let num = |t: &[u8]| -> Result<i64, Refusal> {
        std::str::from_utf8(t)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(bad_token)
    };
    let unum = |t: &[u8]| -> Result<u64, Refusal> {
        std::str::from_utf8(t)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(bad_token)
    };
    let mut seen = [false; 128];
    for f in flags {
        let (c, tok) = (f[0], &f[1..]);
        if c.is_ascii() && std::mem::replace(&mut seen[usize::from(c)], true) {
            return Err(match cmd {
                Cmd::Delete | Cmd::Arith => INVALID_OR_DUPLICATE,
                _ => DUPLICATE,
            });
        }
        if c == b'c' && matches!(cmd, Cmd::Set(_)) {
            return Err(Refusal::Client(
                "c (return CAS) on ms is not supported by larderd: read the token with mg c",
            ));
        }
        // Which flags each command takes; anything else is refused as memcached does.
        let allowed: &[u8] = match cmd {
            // E (an explicit CAS value to store) is refused as memcached 1.6.18 refuses it;
            // larder's tokens name an item's place in the arena and could not be chosen.
            Cmd::Get => b"bcfkOqstvuNRT",
            Cmd::Set(_) => b"bFCkOqTIMN", // c: refused above
            Cmd::Delete => b"bCkOqTI",    // C: refused below
            Cmd::Arith => b"bCkOqtcvNJDTM",
        };
        if !allowed.contains(&c) {
            return Err(INVALID_FLAG);
        }
        match c {
            b'b' => m.binary = true,
            b'c' | b'f' | b'k' | b's' | b't' => m.ret.push(c),
            b'O' => {
                if tok.len() > OPAQUE_MAX {
                    return Err(Refusal::Client("opaque token too long"));
                }
                m.opaque = Some(tok);
                m.ret.push(c);
            }
            b'q' => m.quiet = true,
            b'v' => m.value = true,
            // No LRU bump: larder's reference bit is set by every hit; accepted, no effect.
            b'u' => {}
            b'T' => m.ttl = Some(num(tok)?),
            b'N' => m.vivify = Some(num(tok)?),
            b'R' => m.recache = Some(num(tok)?),
            b'F' => {
                m.client_flags = Some(
                    std::str::from_utf8(tok)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or(bad)?,
                )
            }
            // md and ma would have to compare and act in two steps, and a writer between
            // them would be overwritten: refused rather than half done.
            b'C' if matches!(cmd, Cmd::Delete | Cmd::Arith) => {
                return Err(Refusal::Client(
                    "C (compare CAS) on md and ma is not supported by larderd",
                ))
            }
            b'C' => m.compare = Some(unum(tok)?),
            b'I' => m.invalidate = true,
            b'D' => m.delta = unum(tok)?,
            b'J' => m.initial = unum(tok)?,
            b'M' => match (cmd, tok.first()) {
                (Cmd::Set(_), Some(b'S' | b's')) => m.mode = SetMode::Set,
                (Cmd::Set(_), Some(b'E' | b'e')) => m.mode = SetMode::Add,
                (Cmd::Set(_), Some(b'R' | b'r')) => m.mode = SetMode::Replace,
                (Cmd::Set(_), Some(b'A' | b'a')) => m.mode = SetMode::Append,
                (Cmd::Set(_), Some(b'P' | b'p')) => m.mode = SetMode::Prepend,
                (Cmd::Set(_), _) => return Err(Refusal::Client("invalid mode for ms M token")),
                (_, Some(b'I' | b'i' | b'+')) => m.decr = false,
                (_, Some(b'D' | b'd' | b'-')) => m.decr = true,
                _ => return Err(Refusal::Client("invalid mode for ma M token")),
            },
            _ => return Err(INVALID_FLAG),
        }
    }
    m.key = if m.binary {
        base64::engine::general_purpose::STANDARD
            .decode(wire_key)
            .map_err(|_| Refusal::Client("error decoding key"))?
    } else {
        wire_key.to_vec()
    };
    // memcached checks the key as sent (a base64 key's token too) against its limit.
    if m.key.is_empty()
        || wire_key.len() > KEY_MAX
        || m.key.len() > KEY_MAX
        || (!m.binary && m.key.iter().any(u8::is_ascii_control))
    {
        return Err(bad);
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<Meta<'_>, Refusal> {
        let t: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
        parse(t[0], &t[1..])
    }

    #[test]
    fn flags_and_tokens() {
        let m = p("mg k v f t c k s O9 N30 R10 T60 q").unwrap();
        assert_eq!(m.cmd, Cmd::Get);
        assert_eq!(m.key, b"k");
        assert_eq!(m.ret, b"ftcksO");
        assert_eq!(m.opaque, Some(&b"9"[..]));
        assert!(m.value && m.quiet);
        assert_eq!((m.vivify, m.recache, m.ttl), (Some(30), Some(10), Some(60)));
        let m = p("ms k 5 F7 C12 MA I T-1").unwrap();
        assert_eq!(m.cmd, Cmd::Set(5));
        assert_eq!(
            (m.client_flags, m.compare, m.mode),
            (Some(7), Some(12), SetMode::Append)
        );
        assert!(m.invalidate);
        assert_eq!(m.ttl, Some(-1));
        let m = p("ma n MD D5 J9 N0").unwrap();
        assert!(m.decr);
        assert_eq!((m.delta, m.initial, m.vivify), (5, 9, Some(0)));
        assert_eq!(p("mg Zm9v b k").unwrap().key, b"foo");
    }

    #[test]
    fn refusals() {
        assert_eq!(p("mg k x"), Err(INVALID_FLAG));
        assert_eq!(p("md k v"), Err(INVALID_FLAG));
        assert_eq!(p("mg k Nabc"), Err(BAD_TOKEN));
        assert_eq!(p("ma k Dabc"), Err(INVALID_OR_DUPLICATE));
        assert_eq!(p("ms k 1 Fx"), Err(Refusal::Client(BAD_FORMAT)));
        assert_eq!(p("mg k v v"), Err(DUPLICATE));
        assert_eq!(p("md k q q"), Err(INVALID_OR_DUPLICATE));
        assert_eq!(refused_data_len(b"ms k 5 zz"), Some(5));
        assert_eq!(refused_data_len(b"ms k x"), None);
        // Lengths past 2^31 - 1 are bad lines, as memcached reads them (they overflowed the
        // connection's arithmetic).
        assert_eq!(
            p("ms k 18446744073709551615"),
            Err(Refusal::Client(BAD_FORMAT))
        );
        assert_eq!(p("ms k 2147483648"), Err(Refusal::Client(BAD_FORMAT)));
        assert_eq!(refused_data_len(b"ms k 18446744073709551614 zz"), None);
        assert_eq!(refused_data_len(b"mg k 5"), None);
        assert_eq!(
            p("ms k 1 MX"),
            Err(Refusal::Client("invalid mode for ms M token"))
        );
        assert_eq!(
            p("ma k Mz"),
            Err(Refusal::Client("invalid mode for ma M token"))
        );
        assert_eq!(p("mg k E5"), Err(INVALID_FLAG));
        assert!(matches!(p("ms k 1 c"), Err(Refusal::Client(m)) if m.contains("not supported")));
        assert_eq!(p("ms k abc"), Err(Refusal::Client(BAD_FORMAT)));
        assert_eq!(p("ms k"), Err(Refusal::Client(BAD_FORMAT)));
        assert_eq!(p("mg !!! b"), Err(Refusal::Client("error decoding key")));
        let long = format!("mg {}", "k".repeat(251));
        assert_eq!(p(&long), Err(Refusal::Client(BAD_FORMAT)));
    }
}
