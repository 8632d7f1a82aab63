//! Real memcached and redis-server processes in a temporary directory, killed when dropped
//! (also when the benchmark panics: the guards drop during unwinding) and, through
//! `PR_SET_PDEATHSIG`, when the benchmark process itself is killed.

use std::io;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::proto::{connect_tcp, connect_unix, Target};
use crate::util::which;

/// A server process; killed and reaped on drop.
pub struct Server {
    pub name: &'static str,
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Makes the child die with this process (the benchmark), however it dies.
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and calls only prctl(2),
    // which is async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

fn spawn(name: &'static str, mut cmd: Command) -> io::Result<Server> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    die_with_parent(&mut cmd);
    Ok(Server {
        name,
        child: cmd.spawn()?,
    })
}

/// Waits until `target` accepts connections (5 s at most).
fn wait_ready(server: &mut Server, target: &Target) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ok = match target {
            Target::McUnix(p) | Target::RedisUnix(p) | Target::LdUnix(p) => connect_unix(p).is_ok(),
            Target::McTcp(port) | Target::RedisTcp(port) | Target::LdTcp(port) => {
                connect_tcp(*port).is_ok()
            }
            Target::Larder(_) => true,
        };
        if ok {
            return Ok(());
        }
        if let Some(st) = server.child.try_wait()? {
            return Err(io::Error::other(format!("{} exited: {st}", server.name)));
        }
        if Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "{} did not accept connections within 5 s",
                server.name
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Is `bin` installed? If not, says so on stderr (once per call).
pub fn installed(bin: &str, package: &str) -> Option<PathBuf> {
    let p = which(bin);
    if p.is_none() {
        eprintln!("{bin} is not installed: skipping it (apt-get install -y {package})");
    }
    p
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `memcached -m <mem_mb>` on a Unix socket in `dir` (`unix`) or on 127.0.0.1 TCP.
/// memcached's `-s` disables TCP, so the two transports are two servers.
pub fn memcached(bin: &Path, dir: &Path, mem_mb: u32, unix: bool) -> io::Result<(Server, Target)> {
    let mut cmd = Command::new(bin);
    cmd.args(["-m", &mem_mb.to_string(), "-U", "0", "-c", "4096"]);
    if is_root() {
        cmd.args(["-u", "root"]);
    }
    let target = if unix {
        let sock = dir.join("mc.sock");
        let _ = std::fs::remove_file(&sock);
        cmd.arg("-s").arg(&sock).args(["-a", "0700"]);
        Target::McUnix(sock)
    } else {
        let port = free_port()?;
        cmd.args(["-l", "127.0.0.1", "-p", &port.to_string()]);
        Target::McTcp(port)
    };
    let mut s = spawn("memcached", cmd)?;
    wait_ready(&mut s, &target)?;
    Ok((s, target))
}

/// The larderd beside this benchmark's binary (`cargo build --release --bin larderd` puts
/// it there), or `$LARDERD`.
pub fn larderd_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LARDERD") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.join("larderd");
    p.exists().then_some(p)
}

/// A larderd on its own arena of `mem_mb` MiB in `dir`, with its memcached listener on a
/// Unix socket and/or a TCP port: the targets `larder-mc/unix` and `larder-mc/tcp`.
pub fn larderd(
    bin: &Path,
    dir: &Path,
    mem_mb: u32,
    unix: bool,
    tcp: bool,
) -> io::Result<(Server, Vec<Target>)> {
    let mut cmd = Command::new(bin);
    let arena = dir.join("larderd-arena");
    let _ = std::fs::remove_file(&arena);
    cmd.arg("--arena").arg(&arena).args([
        "--size",
        &format!("{mem_mb}MiB"),
        "--no-snapshot",
        "--max-connections",
        "4096",
    ]);
    for v in [
        "LARDER_SNAPSHOT",
        "LARDER_ARENA",
        "LARDER_LISTEN_MEMCACHED",
        "NOTIFY_SOCKET",
    ] {
        cmd.env_remove(v);
    }
    let mut targets = Vec::new();
    if unix {
        let sock = dir.join("larderd-mc.sock");
        let _ = std::fs::remove_file(&sock);
        cmd.arg("--listen-memcached").arg(&sock);
        targets.push(Target::LdUnix(sock));
    }
    if tcp {
        let port = free_port()?;
        cmd.arg("--listen-memcached")
            .arg(format!("127.0.0.1:{port}"));
        targets.push(Target::LdTcp(port));
    }
    let mut s = spawn("larderd", cmd)?;
    for t in &targets {
        wait_ready(&mut s, t)?;
    }
    Ok((s, targets))
}

/// One redis-server listening on both a Unix socket in `dir` and 127.0.0.1 TCP, no
/// persistence. `maxmemory_mb` adds `--maxmemory` with `allkeys-lru`.
pub fn redis(
    bin: &Path,
    dir: &Path,
    maxmemory_mb: Option<u32>,
) -> io::Result<(Server, Target, Target)> {
    let sock = dir.join("redis.sock");
    let _ = std::fs::remove_file(&sock);
    let port = free_port()?;
    let mut cmd = Command::new(bin);
    cmd.args(["--port", &port.to_string(), "--unixsocket"])
        .arg(&sock)
        .args([
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--bind",
            "127.0.0.1",
            "--dir",
        ])
        .arg(dir);
    if let Some(mb) = maxmemory_mb {
        cmd.args([
            "--maxmemory",
            &format!("{mb}mb"),
            "--maxmemory-policy",
            "allkeys-lru",
        ]);
    }
    let mut s = spawn("redis-server", cmd)?;
    let unix = Target::RedisUnix(sock);
    wait_ready(&mut s, &unix)?;
    let tcp = Target::RedisTcp(port);
    wait_ready(&mut s, &tcp)?;
    Ok((s, unix, tcp))
}
