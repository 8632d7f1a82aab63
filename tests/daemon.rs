//! The real `larderd` binary: readiness, warm restarts after SIGTERM and SIGKILL, one daemon
//! per arena.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Daemon {
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Dir(PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir(tag: &str) -> Dir {
    let p = std::env::temp_dir().join(format!("larderd-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    Dir(p)
}

/// Starts larderd on `arena` and waits for READY=1 on a notify socket we bind.
fn start(dir: &Path, arena: &Path) -> Daemon {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let sock_path = dir.join(format!("notify-{n}"));
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_larderd"))
        .env("LARDER_ARENA", arena)
        .env("LARDER_SIZE", "8MiB")
        .env("LARDER_MAX_VALUE", "4KiB")
        .env("NOTIFY_SOCKET", &sock_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let d = Daemon { child };
    let mut buf = [0u8; 256];
    let n = sock
        .recv(&mut buf)
        .expect("READY=1 from larderd within 20 s");
    assert_eq!(&buf[..n], b"READY=1");
    let _ = std::fs::remove_file(&sock_path);
    d
}

fn signal(d: &Daemon, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(d.child.id() as i32, sig) }, 0);
}

#[test]
fn warm_restart_after_sigterm_and_after_sigkill_keeps_every_key() {
    let dir = tempdir("restart");
    let arena = dir.0.join("arena");
    let mut d = start(&dir.0, &arena);
    {
        let c = larder::Cache::open(&arena).unwrap();
        for i in 0..500 {
            c.set(format!("k{i}").as_bytes(), format!("v{i}").as_bytes(), None)
                .unwrap();
        }
        assert_eq!(c.info().daemon_pid, d.child.id());
    }
    signal(&d, libc::SIGTERM);
    let st = d.child.wait().unwrap();
    assert!(st.success(), "{st:?}");
    let c = larder::Cache::open(&arena).unwrap();
    assert!(c.info().clean);
    drop(c);

    let mut d = start(&dir.0, &arena);
    let c = larder::Cache::open(&arena).unwrap();
    assert!(!c.info().clean);
    for i in 0..500 {
        assert_eq!(
            c.get(format!("k{i}").as_bytes()).unwrap(),
            Some(format!("v{i}").into_bytes())
        );
    }
    signal(&d, libc::SIGKILL);
    let _ = d.child.wait();
    drop(d);
    let _d = start(&dir.0, &arena);
    for i in 0..500 {
        assert_eq!(
            c.get(format!("k{i}").as_bytes()).unwrap(),
            Some(format!("v{i}").into_bytes())
        );
    }
    assert_eq!(c.info().generation, 3);
}

#[test]
fn a_second_daemon_is_refused_with_exit_code_2() {
    let dir = tempdir("second");
    let arena = dir.0.join("arena");
    let d = start(&dir.0, &arena);
    let out = Command::new(env!("CARGO_BIN_EXE_larderd"))
        .env("LARDER_ARENA", &arena)
        .env("LARDER_SIZE", "8MiB")
        .env("LARDER_MAX_VALUE", "4KiB")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("pid {}", d.child.id())), "{err}");
}

#[test]
fn a_file_that_is_not_an_arena_is_moved_aside_not_deleted() {
    let dir = tempdir("aside");
    let arena = dir.0.join("arena");
    std::fs::write(&arena, b"precious data that is not an arena").unwrap();
    let _d = start(&dir.0, &arena);
    larder::Cache::open(&arena).unwrap();
    let aside: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("arena.bad-"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(
        std::fs::read(aside[0].path()).unwrap(),
        b"precious data that is not an arena"
    );
}

#[test]
fn bad_arguments_are_clear_errors() {
    for args in [
        &["--size", "lots"][..],
        &["--sweep-interval", "5y"],
        &["--mode", "999"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_larderd"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
}
