//! One client connection: read request lines and data blocks, run them, write the replies.
//! Everything it buffers is bounded: a request line by [`LINE_MAX`], a data block by the
//! arena's value limit (a larger one is read and thrown away in small pieces), the replies
//! by what one read's worth of requests can ask for; a client that stops reading blocks
//! only its own thread, until the idle timeout closes it.

use std::io::{self, Read, Write};
// Relaxed for every counter here: statistics, read racily by `stats` and the metrics file.
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::exec::{execute, Flow};
use super::text::parse;
use super::Shared;

/// The longest request line taken (a `get` of a few hundred keys). A longer one closes the
/// connection; within it, a key over 250 bytes is `CLIENT_ERROR bad command line format`,
/// as memcached answers.
pub const LINE_MAX: usize = 64 << 10;

/// How often a blocked read wakes to check for shutdown and idleness.
pub const TICK: Duration = Duration::from_millis(500);

/// A stream the listener serves: TCP or Unix.
pub trait Socket: Read + Write + Send + 'static {
    fn set_timeouts(&self, d: Duration) -> io::Result<()>;
}

impl Socket for std::net::TcpStream {
    fn set_timeouts(&self, d: Duration) -> io::Result<()> {
        self.set_nodelay(true)?;
        self.set_read_timeout(Some(d))?;
        self.set_write_timeout(Some(d))
    }
}

impl Socket for std::os::unix::net::UnixStream {
    fn set_timeouts(&self, d: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(d))?;
        self.set_write_timeout(Some(d))
    }
}

/// What the next bytes of the stream are.
enum State {
    /// Request lines.
    Lines,
    /// The rest of a refused data block, to be read and dropped.
    Swallow(usize),
}

/// Serves `s` until the client quits or goes away, stays idle for the idle timeout, sends a
/// line longer than [`LINE_MAX`], or the listener stops.
pub fn serve<S: Socket>(mut s: S, sh: &Shared) {
    if s.set_timeouts(TICK).is_err() {
        return;
    }
    // Relaxed: a unique number is all it is. (A refresh this connection won outlives it,
    // as memcached's win does: another connection's store ends it, or its time: leases.rs.)
    let conn = sh.conn_ids.fetch_add(1, Relaxed);
    let (_, max_value) = sh.cache.limits();
    let mut inbuf: Vec<u8> = Vec::with_capacity(16 << 10);
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 << 10];
    let mut state = State::Lines;
    let mut idle = Duration::ZERO;
    loop {
        // Every complete request in the buffer, then the replies in one write.
        let mut used = 0;
        let mut close = false;
        while let State::Lines = state {
            let pending = &inbuf[used..];
            let Some(nl) = pending.iter().position(|&b| b == b'\n') else {
                if pending.len() > LINE_MAX {
                    out.extend_from_slice(b"CLIENT_ERROR line too long\r\n");
                    sh.stats.protocol_errors.fetch_add(1, Relaxed);
                    close = true;
                }
                break;
            };
            if nl > LINE_MAX {
                out.extend_from_slice(b"CLIENT_ERROR line too long\r\n");
                sh.stats.protocol_errors.fetch_add(1, Relaxed);
                close = true;
                break;
            }
            let line = pending[..nl].strip_suffix(b"\r").unwrap_or(&pending[..nl]);
            match parse(line) {
                Ok(req) => match req.data_len() {
                    Some(bytes) if bytes > max_value as usize => {
                        // As memcached: refuse, and drop the data block that follows.
                        out.extend_from_slice(b"SERVER_ERROR object too large for cache\r\n");
                        state = State::Swallow(bytes + 2);
                        used += nl + 1;
                        break;
                    }
                    Some(bytes) => {
                        let need = nl + 1 + bytes + 2;
                        if pending.len() < need {
                            break; // the rest of the data block is still to come
                        }
                        let block = &pending[nl + 1..need];
                        if &block[bytes..] != b"\r\n" {
                            out.extend_from_slice(b"CLIENT_ERROR bad data chunk\r\n");
                            sh.stats.protocol_errors.fetch_add(1, Relaxed);
                        } else {
                            execute(sh, conn, &req, &block[..bytes], &mut out);
                        }
                        used += need;
                    }
                    None => {
                        let flow = execute(sh, conn, &req, &[], &mut out);
                        used += nl + 1;
                        if flow == Flow::Close {
                            close = true;
                            break;
                        }
                    }
                },
                Err(refusal) => {
                    out.extend_from_slice(&refusal.reply());
                    sh.stats.protocol_errors.fetch_add(1, Relaxed);
                    used += nl + 1;
                    // A refused `ms` whose length was readable: its data block is dropped.
                    if let Some(bytes) = super::meta::refused_data_len(line) {
                        state = State::Swallow(bytes + 2);
                        break;
                    }
                }
            }
        }
        inbuf.drain(..used);
        if let State::Swallow(left) = state {
            let n = left.min(inbuf.len());
            inbuf.drain(..n);
            state = if left == n {
                State::Lines
            } else {
                State::Swallow(left - n)
            };
            if matches!(state, State::Lines) && !inbuf.is_empty() {
                continue; // requests pipelined after the dropped block
            }
        }
        if !out.is_empty() {
            if s.write_all(&out).is_err() {
                return;
            }
            sh.stats.bytes_written.fetch_add(out.len() as u64, Relaxed);
            out.clear();
        }
        if close || sh.stopping() {
            return;
        }
        match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => {
                idle = Duration::ZERO;
                sh.stats.bytes_read.fetch_add(n as u64, Relaxed);
                inbuf.extend_from_slice(&chunk[..n]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                idle += TICK;
                if !sh.idle_timeout.is_zero() && idle >= sh.idle_timeout {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}
