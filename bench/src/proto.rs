//! Minimal hand-rolled clients: the memcached text protocol and Redis RESP, one request at a
//! time (no pipelining in the measured loop), over a Unix or TCP stream; and larder itself.
//! All three behind one trait so the measured loop is the same code for every system.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

/// Where a system listens (or, for larder, where its arena is).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Larder(PathBuf),
    McUnix(PathBuf),
    McTcp(u16),
    /// larderd's memcached-protocol listener on a Unix socket / TCP port.
    LdUnix(PathBuf),
    LdTcp(u16),
    RedisUnix(PathBuf),
    RedisTcp(u16),
}

impl Target {
    /// Short name used in tables: `larder`, `memcached/unix`, `redis/tcp`, ...
    pub fn system(&self) -> &'static str {
        match self {
            Target::Larder(_) => "larder",
            Target::McUnix(_) => "memcached/unix",
            Target::McTcp(_) => "memcached/tcp",
            Target::LdUnix(_) => "larder-mc/unix",
            Target::LdTcp(_) => "larder-mc/tcp",
            Target::RedisUnix(_) => "redis/unix",
            Target::RedisTcp(_) => "redis/tcp",
        }
    }
    /// One-line encoding passed to worker processes.
    pub fn encode(&self) -> String {
        match self {
            Target::Larder(p) => format!("larder:{}", p.display()),
            Target::McUnix(p) => format!("mc-unix:{}", p.display()),
            Target::McTcp(port) => format!("mc-tcp:{port}"),
            Target::LdUnix(p) => format!("ld-unix:{}", p.display()),
            Target::LdTcp(port) => format!("ld-tcp:{port}"),
            Target::RedisUnix(p) => format!("redis-unix:{}", p.display()),
            Target::RedisTcp(port) => format!("redis-tcp:{port}"),
        }
    }
    pub fn decode(s: &str) -> Option<Target> {
        let (kind, rest) = s.split_once(':')?;
        Some(match kind {
            "larder" => Target::Larder(rest.into()),
            "mc-unix" => Target::McUnix(rest.into()),
            "mc-tcp" => Target::McTcp(rest.parse().ok()?),
            "ld-unix" => Target::LdUnix(rest.into()),
            "ld-tcp" => Target::LdTcp(rest.parse().ok()?),
            "redis-unix" => Target::RedisUnix(rest.into()),
            "redis-tcp" => Target::RedisTcp(rest.parse().ok()?),
            _ => return None,
        })
    }
}

/// What the measured loop needs from a system.
pub trait Client {
    /// Replaces `out` with the value of `key`; `true` on a hit.
    fn get(&mut self, key: &[u8], out: &mut Vec<u8>) -> io::Result<bool>;
    fn set(&mut self, key: &[u8], value: &[u8]) -> io::Result<()>;
}

/// A stream that is both halves of a connection.
pub trait Stream: Read + Write {}
impl Stream for UnixStream {}
impl Stream for TcpStream {}

pub fn connect_unix(path: &std::path::Path) -> io::Result<UnixStream> {
    UnixStream::connect(path)
}

pub fn connect_tcp(port: u16) -> io::Result<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_nodelay(true)?;
    Ok(s)
}

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// Reads one `\r\n`-terminated line into `line` (terminator included).
fn read_line<R: BufRead>(r: &mut R, line: &mut Vec<u8>) -> io::Result<()> {
    line.clear();
    if r.read_until(b'\n', line)? == 0 || !line.ends_with(b"\r\n") {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed mid-reply",
        ));
    }
    Ok(())
}

fn parse_usize(b: &[u8]) -> Option<usize> {
    if b.is_empty() || b.len() > 19 {
        return None;
    }
    b.iter().try_fold(0usize, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + usize::from(c - b'0'))
    })
}

/// Reads `n` payload bytes and the `\r\n` after them into `out`.
fn read_payload<R: BufRead>(r: &mut R, n: usize, out: &mut Vec<u8>) -> io::Result<()> {
    out.clear();
    out.resize(n + 2, 0);
    r.read_exact(out)?;
    if !out.ends_with(b"\r\n") {
        return Err(bad("payload not followed by CRLF"));
    }
    out.truncate(n);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// memcached, text protocol.

pub struct Memcached<S: Stream> {
    r: BufReader<S>,
    req: Vec<u8>,
    line: Vec<u8>,
}

impl<S: Stream> Memcached<S> {
    pub fn new(s: S) -> Self {
        Memcached {
            r: BufReader::with_capacity(64 << 10, s),
            req: Vec::with_capacity(32 << 10),
            line: Vec::with_capacity(128),
        }
    }

    fn push_set(&mut self, key: &[u8], value: &[u8], noreply: bool) {
        self.req.extend_from_slice(b"set ");
        self.req.extend_from_slice(key);
        self.req.extend_from_slice(b" 0 0 ");
        self.req
            .extend_from_slice(value.len().to_string().as_bytes());
        if noreply {
            self.req.extend_from_slice(b" noreply");
        }
        self.req.extend_from_slice(b"\r\n");
        self.req.extend_from_slice(value);
        self.req.extend_from_slice(b"\r\n");
    }

    /// Stores many items with one write per batch (`noreply`), then waits for the server
    /// to have processed them all. For filling only; the measured loop never batches.
    pub fn set_many<'a>(
        &mut self,
        items: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    ) -> io::Result<()> {
        self.req.clear();
        for (k, v) in items {
            self.push_set(k, v, true);
            if self.req.len() >= 256 << 10 {
                self.r.get_mut().write_all(&self.req)?;
                self.req.clear();
            }
        }
        self.req.extend_from_slice(b"mn\r\n");
        self.r.get_mut().write_all(&self.req)?;
        // `mn` (meta no-op) answers `MN` once everything before it was processed.
        loop {
            read_line(&mut self.r, &mut self.line)?;
            if self.line.starts_with(b"MN") {
                return Ok(());
            }
            if !self.line.starts_with(b"STORED") {
                return Err(bad(format!(
                    "memcached: {}",
                    String::from_utf8_lossy(&self.line).trim()
                )));
            }
        }
    }

    /// `stats` as (name, value) pairs.
    pub fn stats(&mut self) -> io::Result<Vec<(String, String)>> {
        self.r.get_mut().write_all(b"stats\r\n")?;
        let mut out = Vec::new();
        loop {
            read_line(&mut self.r, &mut self.line)?;
            if self.line.starts_with(b"END") {
                return Ok(out);
            }
            let l = String::from_utf8_lossy(&self.line);
            let mut it = l.trim().splitn(3, ' ');
            if let (Some("STAT"), Some(k), Some(v)) = (it.next(), it.next(), it.next()) {
                out.push((k.to_owned(), v.to_owned()));
            }
        }
    }
}

impl<S: Stream> Client for Memcached<S> {
    fn get(&mut self, key: &[u8], out: &mut Vec<u8>) -> io::Result<bool> {
        self.req.clear();
        self.req.extend_from_slice(b"get ");
        self.req.extend_from_slice(key);
        self.req.extend_from_slice(b"\r\n");
        self.r.get_mut().write_all(&self.req)?;
        read_line(&mut self.r, &mut self.line)?;
        if self.line == b"END\r\n" {
            return Ok(false);
        }
        // VALUE <key> <flags> <bytes>\r\n
        let l = &self.line[..self.line.len() - 2];
        if !l.starts_with(b"VALUE ") {
            return Err(bad(format!(
                "memcached get: {}",
                String::from_utf8_lossy(&self.line).trim()
            )));
        }
        let n = l
            .rsplit(|&c| c == b' ')
            .next()
            .and_then(parse_usize)
            .ok_or_else(|| bad("memcached get: bad VALUE line"))?;
        read_payload(&mut self.r, n, out)?;
        read_line(&mut self.r, &mut self.line)?;
        if self.line != b"END\r\n" {
            return Err(bad("memcached get: no END after the value"));
        }
        Ok(true)
    }

    fn set(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.req.clear();
        self.push_set(key, value, false);
        self.r.get_mut().write_all(&self.req)?;
        read_line(&mut self.r, &mut self.line)?;
        if self.line != b"STORED\r\n" {
            return Err(bad(format!(
                "memcached set: {}",
                String::from_utf8_lossy(&self.line).trim()
            )));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Redis, RESP2.

pub struct Redis<S: Stream> {
    r: BufReader<S>,
    req: Vec<u8>,
    line: Vec<u8>,
}

fn push_bulk(req: &mut Vec<u8>, b: &[u8]) {
    req.push(b'$');
    req.extend_from_slice(b.len().to_string().as_bytes());
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(b);
    req.extend_from_slice(b"\r\n");
}

impl<S: Stream> Redis<S> {
    pub fn new(s: S) -> Self {
        Redis {
            r: BufReader::with_capacity(64 << 10, s),
            req: Vec::with_capacity(32 << 10),
            line: Vec::with_capacity(128),
        }
    }

    fn push_cmd(&mut self, args: &[&[u8]]) {
        self.req.push(b'*');
        self.req
            .extend_from_slice(args.len().to_string().as_bytes());
        self.req.extend_from_slice(b"\r\n");
        for a in args {
            push_bulk(&mut self.req, a);
        }
    }

    fn expect_simple(&mut self, want: &[u8]) -> io::Result<()> {
        read_line(&mut self.r, &mut self.line)?;
        if self.line != want {
            return Err(bad(format!(
                "redis: {}",
                String::from_utf8_lossy(&self.line).trim()
            )));
        }
        Ok(())
    }

    /// SETs in batches of 1000 pipelined commands (filling only).
    pub fn set_many<'a>(
        &mut self,
        items: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    ) -> io::Result<()> {
        let mut pending = 0usize;
        self.req.clear();
        let mut items = items.peekable();
        while let Some((k, v)) = items.next() {
            self.push_cmd(&[b"SET", k, v]);
            pending += 1;
            if pending == 1000 || items.peek().is_none() {
                self.r.get_mut().write_all(&self.req)?;
                self.req.clear();
                for _ in 0..pending {
                    self.expect_simple(b"+OK\r\n")?;
                }
                pending = 0;
            }
        }
        Ok(())
    }

    /// A command whose reply is an integer (`DBSIZE`, ...).
    pub fn integer(&mut self, args: &[&[u8]]) -> io::Result<i64> {
        self.req.clear();
        self.push_cmd(args);
        self.r.get_mut().write_all(&self.req)?;
        read_line(&mut self.r, &mut self.line)?;
        let l = &self.line[..self.line.len() - 2];
        l.strip_prefix(b":")
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| bad(format!("redis: {}", String::from_utf8_lossy(l))))
    }

    /// A command whose reply is a bulk string (`INFO memory`, ...).
    pub fn bulk(&mut self, args: &[&[u8]]) -> io::Result<Option<Vec<u8>>> {
        self.req.clear();
        self.push_cmd(args);
        self.r.get_mut().write_all(&self.req)?;
        let mut out = Vec::new();
        Ok(self.read_bulk(&mut out)?.then_some(out))
    }

    fn read_bulk(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        read_line(&mut self.r, &mut self.line)?;
        let l = &self.line[..self.line.len() - 2];
        if l == b"$-1" {
            return Ok(false);
        }
        let n = l
            .strip_prefix(b"$")
            .and_then(parse_usize)
            .ok_or_else(|| bad(format!("redis: {}", String::from_utf8_lossy(l))))?;
        read_payload(&mut self.r, n, out)?;
        Ok(true)
    }
}

impl<S: Stream> Client for Redis<S> {
    fn get(&mut self, key: &[u8], out: &mut Vec<u8>) -> io::Result<bool> {
        self.req.clear();
        self.push_cmd(&[b"GET", key]);
        self.r.get_mut().write_all(&self.req)?;
        self.read_bulk(out)
    }

    fn set(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.req.clear();
        self.push_cmd(&[b"SET", key, value]);
        self.r.get_mut().write_all(&self.req)?;
        self.expect_simple(b"+OK\r\n")
    }
}

// ---------------------------------------------------------------------------------------
// larder: a library call in this process on the shared arena.

pub struct Larder(pub larder::Cache);

impl Client for Larder {
    #[inline]
    fn get(&mut self, key: &[u8], out: &mut Vec<u8>) -> io::Result<bool> {
        out.clear();
        self.0
            .get_into(key, out)
            .map_err(|e| io::Error::other(e.to_string()))
    }
    #[inline]
    fn set(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.0
            .set(key, value, None)
            .map_err(|e| io::Error::other(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A fake connection: replies come from `input`, requests go to `output`.
    struct Fake {
        input: Cursor<Vec<u8>>,
        output: Vec<u8>,
    }
    impl Read for Fake {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.input.read(buf)
        }
    }
    impl Write for Fake {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl Stream for Fake {}

    fn fake(replies: &[u8]) -> Fake {
        Fake {
            input: Cursor::new(replies.to_vec()),
            output: Vec::new(),
        }
    }

    #[test]
    fn memcached_get_set_and_miss() {
        let mut c = Memcached::new(fake(b"VALUE k 0 5\r\nhe\r\no\r\nEND\r\nEND\r\nSTORED\r\n"));
        let mut out = Vec::new();
        assert!(c.get(b"k", &mut out).unwrap());
        assert_eq!(out, b"he\r\no");
        assert!(!c.get(b"k", &mut out).unwrap());
        c.set(b"k", b"abc").unwrap();
        assert_eq!(
            c.r.get_ref().output,
            b"get k\r\nget k\r\nset k 0 0 3\r\nabc\r\n".to_vec()
        );
    }

    #[test]
    fn memcached_errors_are_errors() {
        let mut c = Memcached::new(fake(b"SERVER_ERROR out of memory\r\n"));
        assert!(c.set(b"k", b"v").is_err());
        let mut c = Memcached::new(fake(b"VALUE k 0 5\r\nab"));
        assert!(c.get(b"k", &mut Vec::new()).is_err());
    }

    #[test]
    fn redis_get_set_and_miss() {
        let mut c = Redis::new(fake(b"$3\r\nabc\r\n$-1\r\n+OK\r\n:42\r\n"));
        let mut out = Vec::new();
        assert!(c.get(b"k", &mut out).unwrap());
        assert_eq!(out, b"abc");
        assert!(!c.get(b"k", &mut out).unwrap());
        c.set(b"k", b"xy").unwrap();
        assert_eq!(c.integer(&[b"DBSIZE"]).unwrap(), 42);
        assert_eq!(
            c.r.get_ref().output,
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n\
              *3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nxy\r\n*1\r\n$6\r\nDBSIZE\r\n"
                .to_vec()
        );
        let mut c = Redis::new(fake(b"-ERR wrong\r\n"));
        assert!(c.get(b"k", &mut out).is_err());
    }

    #[test]
    fn targets_round_trip() {
        for t in [
            Target::Larder("/dev/shm/x".into()),
            Target::McUnix("/tmp/a b/mc.sock".into()),
            Target::McTcp(11211),
            Target::RedisUnix("/tmp/r.sock".into()),
            Target::RedisTcp(6379),
        ] {
            assert_eq!(Target::decode(&t.encode()), Some(t));
        }
    }
}
