//! The systemd service protocol (`sd_notify`) without libsystemd: one datagram per message
//! to `$NOTIFY_SOCKET`, and the watchdog period from `$WATCHDOG_USEC`.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where to send `READY=1`, `STATUS=…`, `WATCHDOG=1`, `STOPPING=1`. Does nothing when the
/// daemon was not started by systemd (or by a test that binds a socket).
pub struct Notifier {
    sock: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace) and
    /// `$WATCHDOG_USEC` / `$WATCHDOG_PID`.
    pub fn from_env() -> Notifier {
        let sock = std::env::var_os("NOTIFY_SOCKET")
            .filter(|s| !s.is_empty())
            .and_then(|s| {
                let addr = match address(s.as_encoded_bytes()) {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, socket = ?s, "unusable NOTIFY_SOCKET");
                        return None;
                    }
                };
                let sock = UnixDatagram::unbound().ok()?;
                // Never block the main loop on a receiver that does not read: a full queue
                // loses one message (logged), not the daemon's timers.
                sock.set_nonblocking(true).ok()?;
                Some((sock, addr))
            });
        Notifier {
            sock,
            watchdog: watchdog_from_env(),
        }
    }

    /// Sends one message; failures are logged, never fatal.
    pub fn send(&self, msg: &str) {
        let Some((sock, addr)) = &self.sock else {
            return;
        };
        if let Err(e) = sock.send_to_addr(msg.as_bytes(), addr) {
            tracing::warn!(error = %e, "sd_notify failed");
        }
    }

    /// How often to send `WATCHDOG=1` (half the period systemd enforces), if it wants any.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|d| d / 2)
    }
}

fn address(s: &[u8]) -> std::io::Result<SocketAddr> {
    if let Some(name) = s.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name)
    } else {
        use std::os::unix::ffi::OsStrExt;
        SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(s))
    }
}

/// `WATCHDOG_USEC` applies to us unless `WATCHDOG_PID` names another process.
fn watchdog_from_env() -> Option<Duration> {
    if let Some(pid) = std::env::var("WATCHDOG_PID").ok().filter(|p| !p.is_empty()) {
        if pid.trim() != std::process::id().to_string() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}
