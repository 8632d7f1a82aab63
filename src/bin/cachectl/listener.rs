//! `cachectl stats --listener ADDR`: the counters of larderd's memcached listener, which live
//! in the daemon (not in the arena), asked for over the listener itself with memcached's
//! `stats`.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use larderd::metrics::ListenerMetrics;

const TIMEOUT: Duration = Duration::from_secs(2);

/// Asks the listener at `addr` (`host:port`, or a Unix socket path) for its counters.
pub fn query(addr: &str) -> anyhow::Result<ListenerMetrics> {
    let reply = if addr.contains('/') {
        let s = UnixStream::connect(addr)
            .with_context(|| format!("cannot reach larderd's listener at {addr}"))?;
        s.set_read_timeout(Some(TIMEOUT))?;
        s.set_write_timeout(Some(TIMEOUT))?;
        exchange(s)
    } else {
        let to = addr
            .to_socket_addrs()
            .with_context(|| format!("{addr:?} is neither host:port nor a socket path"))?
            .next()
            .ok_or_else(|| anyhow!("{addr:?} names no address"))?;
        let s = TcpStream::connect_timeout(&to, TIMEOUT)
            .with_context(|| format!("cannot reach larderd's listener at {addr}"))?;
        s.set_read_timeout(Some(TIMEOUT))?;
        s.set_write_timeout(Some(TIMEOUT))?;
        exchange(s)
    }
    .with_context(|| format!("asking {addr} for its stats"))?;
    ListenerMetrics::from_stats_reply(&reply).ok_or_else(|| {
        anyhow!("{addr} answered `stats` without the listener's counters: is it larderd's listener? ({})",
            reply.lines().next().unwrap_or("no reply"))
    })
}

fn exchange(mut s: impl Read + Write) -> anyhow::Result<String> {
    s.write_all(b"stats\r\n")?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + TIMEOUT;
    while !got.ends_with(b"END\r\n") {
        if Instant::now() > deadline || got.len() > 1 << 20 {
            bail!("no complete reply");
        }
        match s.read(&mut buf)? {
            0 => bail!("the connection closed before the reply ended"),
            n => got.extend_from_slice(&buf[..n]),
        }
    }
    Ok(String::from_utf8_lossy(&got).into_owned())
}
