//! A real `larderd` for a test: started on a notify socket the test binds, so the test can
//! wait for READY=1 and read every later status message; killed on drop, its log printed
//! when the test is failing.

use std::fs::File;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A running `larderd`, killed on drop (its log printed if the test is failing).
pub struct Daemon {
    pub child: Child,
    /// The NOTIFY_SOCKET we bound; stays open so later messages can be read.
    pub notify: UnixDatagram,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts the larderd at `exe` (a test passes `env!("CARGO_BIN_EXE_larderd")`) on `arena` (8 MiB, 4 KiB values, 1 MiB segments, no inherited service environment)
    /// plus `env`, which overrides those defaults (an empty value unsets one); logs to
    /// `dir/larderd-<tag>.log`. Does not
    /// wait: see [`Daemon::ready`].
    pub fn spawn(
        exe: impl AsRef<Path>,
        dir: &Path,
        arena: &Path,
        tag: &str,
        env: &[(&str, &str)],
    ) -> Daemon {
        let sock = dir.join(format!("notify-{tag}"));
        let _ = std::fs::remove_file(&sock);
        let log = dir.join(format!("larderd-{tag}.log"));
        let notify = UnixDatagram::bind(&sock).expect("bind the notify socket");
        let mut cmd = Command::new(exe.as_ref());
        for v in [
            "STATE_DIRECTORY",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "JOURNAL_STREAM",
            "LARDER_SNAPSHOT",
            "LARDER_METRICS_TEXTFILE",
            "LARDER_EVICT_AHEAD",
            "LARDER_AVG_ITEM_SIZE",
            "LARDER_SEGMENT_SIZE",
        ] {
            cmd.env_remove(v);
        }
        cmd.env("LARDER_ARENA", arena)
            .env("LARDER_SIZE", "8MiB")
            .env("LARDER_MAX_VALUE", "4KiB")
            // The layout the suites were written for: 7 segments of 1 MiB in 8 MiB.
            .env("LARDER_SEGMENT_SIZE", "1MiB")
            .env("NOTIFY_SOCKET", &sock)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied().filter(|(_, v)| !v.is_empty()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("daemon log file"));
        // An empty value unsets the variable (so the daemon's own default applies).
        for (k, _) in env.iter().filter(|(_, v)| v.is_empty()) {
            cmd.env_remove(k);
        }
        let child = cmd.spawn().expect("spawn larderd");
        Daemon { child, notify, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for READY=1; `Err(status)` if the daemon exited first. Panics after 20 s.
    pub fn ready(&mut self) -> Result<(), ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(msg) = self.next_message(Duration::from_millis(20)) {
                if msg.lines().any(|l| l == "READY=1") {
                    return Ok(());
                }
            }
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return Err(st);
            }
            assert!(
                Instant::now() < deadline,
                "larderd neither ready nor gone within 20 s; log:\n{}",
                self.log()
            );
        }
    }

    /// The next datagram larderd sent, within `limit`.
    pub fn next_message(&self, limit: Duration) -> Option<String> {
        self.notify.set_read_timeout(Some(limit)).unwrap();
        let mut buf = [0u8; 1024];
        let n = self.notify.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Sends `sig` (a `libc::SIG*` number) to the daemon, which has not been reaped yet.
    pub fn signal(&self, sig: i32) {
        let sig = Signal::try_from(sig).expect("a signal number");
        kill(Pid::from_raw(self.child.id() as i32), sig).expect("kill larderd");
    }

    /// SIGKILL; fails if it had died by itself.
    pub fn kill(&mut self) {
        use std::os::unix::process::ExitStatusExt;
        if let Some(st) = self.child.try_wait().expect("try_wait") {
            panic!("larderd exited by itself with {st}; log:\n{}", self.log());
        }
        let _ = self.child.kill();
        let st = self.child.wait().expect("wait");
        assert_eq!(
            st.signal(),
            Some(Signal::SIGKILL as i32),
            "larderd ended with {st}; log:\n{}",
            self.log()
        );
    }

    /// Waits up to `limit` for it to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        crate::wait_for(&mut self.child, limit)
    }

    /// SIGTERM, then the exit status (fails after 20 s).
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM as i32);
        self.wait_exit(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("larderd did not stop within 20 s; log:\n{}", self.log()))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- larderd log {}:\n{}", self.log.display(), self.log());
        }
    }
}
