//! The memcached-protocol listener (`larderd --listen-memcached ADDR`): processes that cannot
//! link the library reach the same items over a socket, with memcached's text protocol.
//!
//! Shape: one accept thread per address, one thread per connection (bounded by
//! `--max-connections`), blocking reads with a short timeout to notice shutdown and idleness.
//! Each connection works on its own clone of the daemon's `Cache` handle, so it reads and
//! writes the arena exactly as a linked client does, lock-free; nothing of the linked path
//! changes. There is no authentication (memcached's text protocol has none): listen on
//! loopback or a Unix socket whose mode and group say who may connect.
//!
//! Client flags are kept with the item (design.md §2.6); items stored through the library
//! read back with flags 0. The meta protocol is `meta.rs` (parser) and `meta_exec.rs`.

mod activation;
pub mod conn;
pub mod exec;
pub mod leases;
pub mod meta;
pub mod meta_exec;
pub mod text;

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use larder::Cache;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use exec::ListenerStats;

/// Where to listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// `host:port` (a bare port means loopback), or a path (anything with a `/`) for a Unix
/// socket.
pub fn parse_addr(s: &str) -> Result<Addr, String> {
    if s.contains('/') {
        return Ok(Addr::Unix(PathBuf::from(s)));
    }
    if let Ok(port) = s.parse::<u16>() {
        return Ok(Addr::Tcp(SocketAddr::from(([127, 0, 0, 1], port))));
    }
    s.to_socket_addrs()
        .map_err(|e| format!("{s}: {e} (give host:port, a port, or a socket path)"))?
        .next()
        .map(Addr::Tcp)
        .ok_or_else(|| format!("{s}: no address"))
}

/// How the listener behaves.
#[derive(Clone, Debug)]
pub struct Options {
    pub max_connections: usize,
    pub idle_timeout: Duration,
    /// Mode of a Unix socket file (the arena's).
    pub socket_mode: u32,
}

/// What every connection thread shares.
pub struct Shared {
    pub cache: Cache,
    pub stats: ListenerStats,
    pub started: u64,
    pub idle_timeout: Duration,
    /// Leases won by `mg` and not yet given back (leases.rs).
    pub leases: leases::Leases,
    /// The next connection's identity (its leases are its own).
    pub conn_ids: std::sync::atomic::AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    pub fn stopping(&self) -> bool {
        // Relaxed: a flag polled every tick; nothing is published with it.
        self.stop.load(Relaxed)
    }
}

/// Decrements a connection count when dropped.
struct CountedOut<'a>(&'a std::sync::atomic::AtomicU64);

impl Drop for CountedOut<'_> {
    fn drop(&mut self) {
        // Relaxed: a count, as where it is incremented.
        self.0.fetch_sub(1, Relaxed);
    }
}

/// A running listener. [`Listener::stop`] ends it.
pub struct Listener {
    shared: Arc<Shared>,
    accepters: Vec<JoinHandle<()>>,
    sockets: Vec<PathBuf>,
}

/// An accepted connection.
enum Conn {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Conn {
    fn serve(self, sh: &Shared) {
        match self {
            Conn::Tcp(s) => conn::serve(s, sh),
            Conn::Unix(s) => conn::serve(s, sh),
        }
    }

    /// Over the connection limit: memcached's reply, then closed.
    fn refuse(self) {
        use std::io::Write;
        let msg = b"ERROR Too many open connections\r\n";
        let _ = match self {
            Conn::Tcp(mut s) => s.write_all(msg),
            Conn::Unix(mut s) => s.write_all(msg),
        };
    }
}

enum Bound {
    Tcp(TcpListener),
    Unix(UnixListener),
}

fn bind(addr: &Addr, opts: &Options) -> anyhow::Result<Bound> {
    Ok(match addr {
        Addr::Tcp(a) => {
            Bound::Tcp(TcpListener::bind(a).with_context(|| format!("listening on {a}"))?)
        }
        Addr::Unix(p) => {
            if let Ok(meta) = std::fs::symlink_metadata(p) {
                use std::os::unix::fs::FileTypeExt;
                if !meta.file_type().is_socket() {
                    bail!(
                        "{} exists and is not a socket; not replacing it",
                        p.display()
                    );
                }
                if std::os::unix::net::UnixStream::connect(p).is_ok() {
                    bail!("{} is a socket something is listening on", p.display());
                }
                std::fs::remove_file(p)
                    .with_context(|| format!("removing stale {}", p.display()))?;
            }
            let l =
                UnixListener::bind(p).with_context(|| format!("listening on {}", p.display()))?;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(opts.socket_mode))
                .with_context(|| format!("setting the mode of {}", p.display()))?;
            Bound::Unix(l)
        }
    })
}

/// Binds every address (all or none), takes the sockets systemd passed (socket activation:
/// activation.rs), and starts serving them all with `cache`; `None` when there is nothing
/// to serve.
pub fn start(
    cache: &Cache,
    addrs: &[Addr],
    opts: Options,
    started: u64,
) -> anyhow::Result<Option<Listener>> {
    let inherited = activation::inherited()?;
    if addrs.is_empty() && inherited.is_empty() {
        return Ok(None);
    }
    let mut bound = addrs
        .iter()
        .map(|a| Ok((a.clone(), bind(a, &opts)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Their Unix socket files are systemd's: not removed at stop.
    let sockets = addrs
        .iter()
        .filter_map(|a| match a {
            Addr::Unix(p) => Some(p.clone()),
            Addr::Tcp(_) => None,
        })
        .collect();
    for (a, _) in &inherited {
        tracing::info!(addr = ?a, "socket from systemd (socket activation)");
    }
    bound.extend(inherited);
    let shared = Arc::new(Shared {
        cache: cache.clone(),
        stats: ListenerStats::default(),
        started,
        idle_timeout: opts.idle_timeout,
        leases: leases::Leases::default(),
        conn_ids: std::sync::atomic::AtomicU64::new(1),
        stop: AtomicBool::new(false),
    });
    let mut accepters = Vec::new();
    for (a, b) in bound {
        let sh = shared.clone();
        let max = opts.max_connections;
        let name = format!("listen {a:?}");
        accepters.push(
            std::thread::Builder::new()
                .name("memcached-accept".into())
                .spawn(move || accept_loop(b, &sh, max))
                .with_context(|| format!("starting {name}"))?,
        );
        tracing::info!(addr = ?a, "memcached protocol listener ready");
    }
    Ok(Some(Listener {
        shared,
        accepters,
        sockets,
    }))
}

fn accept_loop(b: Bound, sh: &Arc<Shared>, max: usize) {
    while !sh.stopping() {
        // Wait for a connection, waking to notice a stop.
        let ready = {
            let fd = match &b {
                Bound::Tcp(l) => l.as_fd(),
                Bound::Unix(l) => l.as_fd(),
            };
            let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::from(200u16)).unwrap_or(0)
        };
        if ready == 0 {
            continue;
        }
        let accepted = match &b {
            Bound::Tcp(l) => l.accept().map(|(s, _)| Conn::Tcp(s)),
            Bound::Unix(l) => l.accept().map(|(s, _)| Conn::Unix(s)),
        };
        let Ok(c) = accepted else { continue };
        sh.stats.total_connections.fetch_add(1, Relaxed);
        // Relaxed: a count; the limit is approximate by a connection or two at worst.
        if sh.stats.curr_connections.load(Relaxed) as usize >= max {
            sh.stats.rejected_connections.fetch_add(1, Relaxed);
            c.refuse();
            continue;
        }
        sh.stats.curr_connections.fetch_add(1, Relaxed);
        let sh2 = sh.clone();
        let spawned = std::thread::Builder::new()
            .name("memcached-conn".into())
            .spawn(move || {
                // Counted out when the thread ends, by a panic too.
                let _out = CountedOut(&sh2.stats.curr_connections);
                c.serve(&sh2);
            });
        if spawned.is_err() {
            sh.stats.curr_connections.fetch_sub(1, Relaxed);
            tracing::warn!("cannot start a connection thread; connection dropped");
        }
    }
}

impl Listener {
    /// The counters `stats` shows, copied for the metrics file.
    pub fn metrics(&self) -> crate::metrics::ListenerMetrics {
        let s = &self.shared.stats;
        // Relaxed: statistics.
        let g = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed);
        crate::metrics::ListenerMetrics {
            connections: g(&s.curr_connections),
            connections_total: g(&s.total_connections),
            rejected_connections: g(&s.rejected_connections),
            cmd_get: g(&s.cmd_get),
            cmd_set: g(&s.cmd_set),
            cmd_touch: g(&s.cmd_touch),
            cmd_flush: g(&s.cmd_flush),
            protocol_errors: g(&s.protocol_errors),
            bytes_read: g(&s.bytes_read),
            bytes_written: g(&s.bytes_written),
        }
    }

    /// Stops accepting, lets connections finish what they are doing for at most `grace`,
    /// and removes the Unix socket files.
    pub fn stop(self, grace: Duration) {
        // Relaxed: pairs with nothing; the accept and connection loops poll it (stopping).
        self.shared.stop.store(true, Relaxed);
        for a in self.accepters {
            let _ = a.join();
        }
        let deadline = Instant::now() + grace;
        // Relaxed: a count polled until it reaches zero; no data is handed over with it.
        while self.shared.stats.curr_connections.load(Relaxed) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Refreshes left unfinished: other clients need not wait for their leases to run out.
        self.shared.leases.release_all(&self.shared.cache);
        for p in &self.sockets {
            let _ = std::fs::remove_file(p);
        }
    }
}
