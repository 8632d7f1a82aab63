//! memcached's text protocol: one request line parsed into a [`Request`], or the error
//! memcached answers it with. Pure: no I/O, no cache, so the fuzz target and the unit tests
//! drive it directly.

/// The longest key memcached accepts (and larder's default limit).
pub const KEY_MAX: usize = 250;

/// exptime values above this many seconds are absolute unix times (memcached's rule).
pub const RELATIVE_MAX: i64 = 60 * 60 * 24 * 30;

/// A storage command's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
}

/// A parsed request line. Keys borrow from the line.
#[derive(Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// `get`/`gets` (`cas`: also return CAS tokens).
    Get {
        keys: Vec<&'a [u8]>,
        cas: bool,
    },
    /// `gat`/`gats`: get and touch.
    Gat {
        exptime: i64,
        keys: Vec<&'a [u8]>,
        cas: bool,
    },
    /// A storage command; its data block of `bytes` bytes and `\r\n` follows the line.
    Store {
        cmd: Store,
        key: &'a [u8],
        flags: u32,
        exptime: i64,
        bytes: usize,
        cas: u64,
        noreply: bool,
    },
    Delete {
        key: &'a [u8],
        noreply: bool,
    },
    Arith {
        key: &'a [u8],
        incr: bool,
        delta: u64,
        noreply: bool,
    },
    Touch {
        key: &'a [u8],
        exptime: i64,
        noreply: bool,
    },
    FlushAll {
        delay: i64,
        noreply: bool,
    },
    Stats {
        arg: Option<&'a [u8]>,
    },
    Version,
    Verbosity {
        noreply: bool,
    },
    Quit,
    Shutdown,
    /// `mn`, the meta protocol's no-op: clients send it after a batch of quiet requests and
    /// read `MN` to know every earlier reply has arrived.
    MetaNoop,
    /// `mg`, `ms`, `md`, `ma` (meta.rs).
    Meta(super::meta::Meta<'a>),
}

impl Request<'_> {
    /// The length of the data block that follows the line, for the requests that have one.
    pub fn data_len(&self) -> Option<usize> {
        match self {
            Request::Store { bytes, .. } => Some(*bytes),
            Request::Meta(m) => match m.cmd {
                super::meta::Cmd::Set(n) => Some(n),
                _ => None,
            },
            _ => None,
        }
    }
}

/// What memcached answers a line it cannot take with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `ERROR`: an unknown command (or an empty line).
    Unknown,
    /// `CLIENT_ERROR <reason>`.
    Client(&'static str),
}

pub const BAD_FORMAT: &str = "bad command line format";

impl Refusal {
    /// The reply line, with its `\r\n`.
    pub fn reply(self) -> Vec<u8> {
        match self {
            Refusal::Unknown => b"ERROR\r\n".to_vec(),
            Refusal::Client(why) => format!("CLIENT_ERROR {why}\r\n").into_bytes(),
        }
    }
}

fn num<T: std::str::FromStr>(t: &[u8]) -> Option<T> {
    std::str::from_utf8(t).ok()?.parse().ok()
}

/// A key memcached would take: 1..=250 bytes, no control characters (the line is split on
/// spaces, so there are none in it).
fn key(t: &[u8]) -> Result<&[u8], Refusal> {
    if t.is_empty() || t.len() > KEY_MAX || t.iter().any(|b| b.is_ascii_control()) {
        return Err(Refusal::Client(BAD_FORMAT));
    }
    Ok(t)
}

/// `noreply` as the last token, if it is there.
fn noreply(tokens: &[&[u8]], at: usize) -> Result<bool, Refusal> {
    match tokens.get(at) {
        None => Ok(false),
        Some(t) if *t == b"noreply" && tokens.len() == at + 1 => Ok(true),
        Some(_) => Err(Refusal::Client(BAD_FORMAT)),
    }
}

/// Parses one request line (without its line ending).
pub fn parse(line: &[u8]) -> Result<Request<'_>, Refusal> {
    let tokens: Vec<&[u8]> = line
        .split(|&b| b == b' ')
        .filter(|t| !t.is_empty())
        .collect();
    let Some((&cmd, args)) = tokens.split_first() else {
        return Err(Refusal::Unknown);
    };
    let bad = Refusal::Client(BAD_FORMAT);
    match cmd {
        b"get" | b"gets" => {
            if args.is_empty() {
                return Err(Refusal::Unknown);
            }
            let keys = args.iter().map(|k| key(k)).collect::<Result<_, _>>()?;
            Ok(Request::Get {
                keys,
                cas: cmd == b"gets",
            })
        }
        b"gat" | b"gats" => {
            let (exp, ks) = args.split_first().ok_or(Refusal::Unknown)?;
            if ks.is_empty() {
                return Err(Refusal::Unknown);
            }
            Ok(Request::Gat {
                exptime: num(exp).ok_or(Refusal::Client("invalid exptime argument"))?,
                keys: ks.iter().map(|k| key(k)).collect::<Result<_, _>>()?,
                cas: cmd == b"gats",
            })
        }
        b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas" => {
            let store = match cmd {
                b"set" => Store::Set,
                b"add" => Store::Add,
                b"replace" => Store::Replace,
                b"append" => Store::Append,
                b"prepend" => Store::Prepend,
                _ => Store::Cas,
            };
            let fixed = if store == Store::Cas { 5 } else { 4 };
            if args.len() < fixed || args.len() > fixed + 1 {
                return Err(Refusal::Unknown);
            }
            let k = key(args[0])?;
            let flags = num::<u32>(args[1]).ok_or(bad)?;
            let exptime = num::<i64>(args[2]).ok_or(bad)?;
            let bytes = num::<i64>(args[3]).filter(|&b| b >= 0).ok_or(bad)? as usize;
            let cas = if store == Store::Cas {
                num::<u64>(args[4]).ok_or(bad)?
            } else {
                0
            };
            Ok(Request::Store {
                cmd: store,
                key: k,
                flags,
                exptime,
                bytes,
                cas,
                noreply: noreply(args, fixed)?,
            })
        }
        b"delete" => {
            let k = key(args.first().ok_or(Refusal::Unknown)?)?;
            // `delete <key> 0` is the legacy form with a zero hold time.
            let rest = match args.get(1) {
                Some(&b"0") => &args[2..],
                _ => &args[1..],
            };
            match rest {
                [] => Ok(Request::Delete {
                    key: k,
                    noreply: false,
                }),
                [t] if *t == b"noreply" => Ok(Request::Delete {
                    key: k,
                    noreply: true,
                }),
                _ => Err(Refusal::Client(
                    "bad command line format.  Usage: delete <key> [noreply]",
                )),
            }
        }
        b"incr" | b"decr" => {
            if args.len() < 2 || args.len() > 3 {
                return Err(Refusal::Unknown);
            }
            Ok(Request::Arith {
                key: key(args[0])?,
                incr: cmd == b"incr",
                delta: num(args[1]).ok_or(Refusal::Client("invalid numeric delta argument"))?,
                noreply: noreply(args, 2)?,
            })
        }
        b"touch" => {
            if args.len() < 2 || args.len() > 3 {
                return Err(Refusal::Unknown);
            }
            Ok(Request::Touch {
                key: key(args[0])?,
                exptime: num(args[1]).ok_or(Refusal::Client("invalid exptime argument"))?,
                noreply: noreply(args, 2)?,
            })
        }
        b"flush_all" => {
            let (delay, rest) = match args.first() {
                Some(t) if *t != b"noreply" => (num(t).ok_or(bad)?, &args[1..]),
                _ => (0, args),
            };
            Ok(Request::FlushAll {
                delay,
                noreply: noreply(rest, 0)?,
            })
        }
        b"stats" => match args {
            [] => Ok(Request::Stats { arg: None }),
            [a] => Ok(Request::Stats { arg: Some(a) }),
            _ => Err(Refusal::Unknown),
        },
        b"version" if args.is_empty() => Ok(Request::Version),
        b"verbosity" => match args {
            // memcached takes a bare `noreply` too, and answers nothing.
            [n] if *n == b"noreply" => Ok(Request::Verbosity { noreply: true }),
            [level] if num::<u32>(level).is_some() => Ok(Request::Verbosity { noreply: false }),
            [level, n] if num::<u32>(level).is_some() && *n == b"noreply" => {
                Ok(Request::Verbosity { noreply: true })
            }
            _ => Err(Refusal::Unknown),
        },
        b"quit" if args.is_empty() => Ok(Request::Quit),
        b"shutdown" => Ok(Request::Shutdown),
        // memcached ignores what follows `mn`.
        b"mn" => Ok(Request::MetaNoop),
        b"mg" | b"ms" | b"md" | b"ma" => super::meta::parse(cmd, args).map(Request::Meta),
        _ => Err(Refusal::Unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retrievals_take_many_keys() {
        assert_eq!(
            parse(b"get a bb  ccc"),
            Ok(Request::Get {
                keys: vec![b"a", b"bb", b"ccc"],
                cas: false
            })
        );
        assert_eq!(
            parse(b"gets k"),
            Ok(Request::Get {
                keys: vec![b"k"],
                cas: true
            })
        );
        assert_eq!(
            parse(b"gat 10 a b"),
            Ok(Request::Gat {
                exptime: 10,
                keys: vec![b"a", b"b"],
                cas: false
            })
        );
        assert_eq!(parse(b"get"), Err(Refusal::Unknown));
    }

    #[test]
    fn storage_lines() {
        assert_eq!(
            parse(b"set k 5 -1 3 noreply"),
            Ok(Request::Store {
                cmd: Store::Set,
                key: b"k",
                flags: 5,
                exptime: -1,
                bytes: 3,
                cas: 0,
                noreply: true
            })
        );
        assert_eq!(
            parse(b"cas k 0 0 1 99"),
            Ok(Request::Store {
                cmd: Store::Cas,
                key: b"k",
                flags: 0,
                exptime: 0,
                bytes: 1,
                cas: 99,
                noreply: false
            })
        );
        for bad in [
            &b"set k x 0 1"[..],
            b"set k 0 0 -1",
            b"set k 0 0 one",
            b"set k 4294967296 0 1",
            b"set k 0 0 1 yesreply",
        ] {
            assert_eq!(parse(bad), Err(Refusal::Client(BAD_FORMAT)), "{:?}", bad);
        }
        assert_eq!(parse(b"set k 0 0"), Err(Refusal::Unknown));
        let long = format!("set {} 0 0 1", "k".repeat(251));
        assert_eq!(parse(long.as_bytes()), Err(Refusal::Client(BAD_FORMAT)));
    }

    #[test]
    fn other_commands() {
        assert_eq!(
            parse(b"delete k"),
            Ok(Request::Delete {
                key: b"k",
                noreply: false
            })
        );
        assert_eq!(
            parse(b"delete k 0 noreply"),
            Ok(Request::Delete {
                key: b"k",
                noreply: true
            })
        );
        assert!(matches!(parse(b"delete k 5"), Err(Refusal::Client(_))));
        assert_eq!(
            parse(b"incr n 18446744073709551615"),
            Ok(Request::Arith {
                key: b"n",
                incr: true,
                delta: u64::MAX,
                noreply: false
            })
        );
        assert_eq!(
            parse(b"decr n -1"),
            Err(Refusal::Client("invalid numeric delta argument"))
        );
        assert_eq!(
            parse(b"touch k 10 noreply"),
            Ok(Request::Touch {
                key: b"k",
                exptime: 10,
                noreply: true
            })
        );
        assert_eq!(
            parse(b"flush_all"),
            Ok(Request::FlushAll {
                delay: 0,
                noreply: false
            })
        );
        assert_eq!(
            parse(b"flush_all 5 noreply"),
            Ok(Request::FlushAll {
                delay: 5,
                noreply: true
            })
        );
        assert_eq!(
            parse(b"flush_all noreply"),
            Ok(Request::FlushAll {
                delay: 0,
                noreply: true
            })
        );
        assert_eq!(parse(b"stats"), Ok(Request::Stats { arg: None }));
        assert_eq!(
            parse(b"stats settings"),
            Ok(Request::Stats {
                arg: Some(b"settings")
            })
        );
        assert_eq!(parse(b"version"), Ok(Request::Version));
        assert_eq!(
            parse(b"verbosity 1"),
            Ok(Request::Verbosity { noreply: false })
        );
        assert_eq!(parse(b"quit"), Ok(Request::Quit));
        assert_eq!(parse(b"mn"), Ok(Request::MetaNoop));
        assert_eq!(parse(b""), Err(Refusal::Unknown));
        assert_eq!(parse(b"bogus k"), Err(Refusal::Unknown));
        assert_eq!(Refusal::Unknown.reply(), b"ERROR\r\n");
    }

    #[test]
    fn any_line_parses_or_is_refused_without_panicking() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let words: [&[u8]; 12] = [
            b"get",
            b"set",
            b"cas",
            b"incr",
            b"k",
            b"0",
            b"-1",
            b"99999999999999999999",
            b"noreply",
            b"\x01",
            b"gat",
            b"flush_all",
        ];
        for _ in 0..20_000 {
            let mut line = Vec::new();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            for i in 0..(x % 7) {
                line.extend_from_slice(words[((x >> (i * 4)) % 12) as usize]);
                line.push(b' ');
            }
            let _ = parse(&line);
        }
    }
}
