//! Building the C test program against an installed liblarder, for the C tests and the
//! ABI benchmark: `ffi/install.sh` into a prefix beside the libraries cargo just built, then
//! `cc` with what `pkg-config` says, once against the shared and once against the static
//! library.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Where cargo put liblarder_ffi.so / liblarder_ffi.a for this test: beside the test binary
/// (`<target>/<profile>/deps`), built from the current source as a dependency of the test
/// (only `cargo build` copies them up to `<target>/<profile>`).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().to_owned()
}

pub struct Built {
    pub prefix: PathBuf,
    pub shared: PathBuf,
    pub static_: PathBuf,
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\n--- stdout:\n{}--- stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn pkg_config(prefix: &Path, args: &[&str]) -> Vec<String> {
    let out = run(Command::new("pkg-config")
        .args(args)
        .arg("larder")
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig")));
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Whether `cc` and `pkg-config` can run. Without them the C tests are skipped, saying so,
/// so `cargo test --workspace` stays green on a machine without a C toolchain — unless
/// LARDER_REQUIRE_C_TOOLS is set (CI sets it), when their absence fails the test.
pub fn c_tools() -> bool {
    let runs = |bin: &str| {
        Command::new(bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let ok = runs("cc") && runs("pkg-config");
    if !ok {
        assert!(
            std::env::var_os("LARDER_REQUIRE_C_TOOLS").is_none(),
            "cc and pkg-config are required (LARDER_REQUIRE_C_TOOLS) but cannot be run"
        );
        eprintln!(
            "cc or pkg-config not installed: C ABI test skipped (apt-get install gcc pkg-config)"
        );
    }
    ok
}

/// What the build depends on, to tell whether an earlier build is current.
fn stamp(libs: &Path, crate_dir: &Path) -> String {
    ["liblarder_ffi.so", "liblarder_ffi.a"]
        .iter()
        .map(|f| libs.join(f))
        .chain([
            crate_dir.join("tests/c/abi_test.c"),
            crate_dir.join("include/larder.h"),
            crate_dir.join("install.sh"),
            crate_dir.join("larder.pc.in"),
        ])
        .map(|p| {
            let m = std::fs::metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            format!("{} {} {:?}\n", p.display(), m.len(), m.modified().ok())
        })
        .collect()
}

/// Installs the library into a prefix beside it and builds the C test program against it:
/// once per build of the library, shared by every test process (nextest runs each test in a
/// process of its own), under a file lock.
pub fn built() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    B.get_or_init(|| {
        let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let libs = lib_dir();
        // Beside the libraries, not in a temporary directory: a static is never dropped,
        // so a TempDir here would be left behind by every run.
        let dir = libs.join("ffi-c-test");
        let prefix = dir.join("prefix");
        let built = Built {
            prefix: prefix.clone(),
            shared: dir.join("abi_test"),
            static_: dir.join("abi_test_static"),
        };
        assert!(
            libs.join("liblarder_ffi.so").exists(),
            "no liblarder_ffi.so in {} (cargo builds it with this crate's tests)",
            libs.display()
        );
        let lock = std::fs::File::create(libs.join("ffi-c-test.lock")).unwrap();
        lock.lock().unwrap();
        let want = stamp(&libs, &crate_dir);
        if std::fs::read_to_string(dir.join("stamp")).ok().as_deref() == Some(&want) {
            return built;
        }
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        run(Command::new("bash")
            .arg(crate_dir.join("install.sh"))
            .arg("--prefix")
            .arg(&prefix)
            .arg("--lib-dir")
            .arg(&libs));
        let src = crate_dir.join("tests/c/abi_test.c");
        let cflags = pkg_config(&prefix, &["--cflags"]);
        let warn = ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-g", "-O2"];
        let shared = &built.shared;
        let rpath = format!("-Wl,-rpath,{}", prefix.join("lib").display());
        run(Command::new("cc")
            .args(warn)
            .args(&cflags)
            .arg(&src)
            .arg("-o")
            .arg(shared)
            .args(pkg_config(&prefix, &["--libs"]))
            .arg(&rpath));
        let static_ = &built.static_;
        run(Command::new("cc")
            .args(warn)
            .args(&cflags)
            .arg(&src)
            .arg("-o")
            .arg(static_)
            .arg(prefix.join("lib/liblarder.a"))
            .args(pkg_config(&prefix, &["--libs-only-other", "--static"]))
            .args(["-lpthread", "-ldl", "-lm"]));
        std::fs::write(dir.join("stamp"), want).unwrap();
        built
    })
}

/// An arena for a binding's test (16 MiB, values to 256 KiB, 4 KiB pages) in a temporary
/// directory, holding what the binding's script expects Rust to have stored: `rust:str` =
/// "from rust" and the counter `rust:n` = 7 as text.
pub fn binding_arena(prefix: &str) -> (tempfile::TempDir, PathBuf, larder::Cache) {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    let arena = dir.path().join("arena");
    let c = larder::Cache::create(&arena, &binding_config()).unwrap();
    c.set(b"rust:str", b"from rust", None).unwrap();
    c.set(b"rust:n", b"7", None).unwrap();
    (dir, arena, c)
}

fn binding_config() -> larder::Config {
    larder::Config::new(16 << 20)
        .max_value_len(256 << 10)
        .segment_size(1 << 20)
        .huge_pages(false)
}

/// What larderd does when it replaces an arena (src/daemon/lifecycle.rs): the file moved
/// aside, a new arena created at the path, the old one marked retired so that every
/// attached process re-opens the path. Returns the new arena.
pub fn replace_arena(arena: &Path, old: &larder::Cache) -> larder::Cache {
    let aside = arena.with_extension("replaced");
    std::fs::rename(arena, &aside).unwrap();
    let new = larder::Cache::create(arena, &binding_config()).unwrap();
    old.mark_retired();
    new
}

/// A script that stops at each step it prints until this side answers `go` on its stdin.
pub struct Stepped {
    child: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl Stepped {
    pub fn spawn(cmd: &mut Command) -> Stepped {
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        Stepped { child, out }
    }

    /// The next line the script prints (panics at its end: it said less than expected).
    pub fn line(&mut self) -> String {
        use std::io::BufRead;
        let mut l = String::new();
        self.out.read_line(&mut l).unwrap();
        assert!(
            !l.is_empty(),
            "the script ended early: {:?}",
            self.child.wait()
        );
        l.trim_end().to_owned()
    }

    pub fn go(&mut self) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
    }

    pub fn success(mut self) {
        drop(self.child.stdin.take());
        assert!(self.child.wait().unwrap().success());
    }
}

/// The value and client flags of `key`, as Rust (and the listener) see them.
pub fn value_and_flags(c: &larder::Cache, key: &[u8]) -> (Vec<u8>, u32) {
    let mut v = Vec::new();
    let meta = c
        .get_meta_into(key, &mut v)
        .unwrap()
        .unwrap_or_else(|| panic!("{} is missing", String::from_utf8_lossy(key)));
    (v, meta.flags)
}

/// A server a test started, stopped when dropped: SIGTERM (nginx's and php-fpm's master
/// then stops its workers; a SIGKILLed master would leave them running, holding the port),
/// and SIGKILL if it has not exited within 5 s.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.0 GET to 127.0.0.1:`port`: the status line and the body, trimmed.
fn http(port: u16, path: &str) -> std::io::Result<(String, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut r = String::new();
    s.read_to_string(&mut r)?;
    let (head, body) = r.split_once("\r\n\r\n").unwrap_or((&r, ""));
    let status = head.lines().next().unwrap_or_default().to_string();
    Ok((status, body.trim().to_string()))
}

/// One HTTP/1.0 GET to 127.0.0.1:`port`; the body, trimmed. Asserts a 200.
pub fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let (status, body) = http(port, path)?;
    assert!(
        status.starts_with("HTTP/1.1 200"),
        "{path}: {status}\n{body}"
    );
    Ok(body)
}

/// Waits until `port` answers `path` with a 200 (servers the test started, and what they
/// stand in front of), or panics with `log`.
pub fn wait_http(port: u16, path: &str, log: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !http(port, path).is_ok_and(|(status, _)| status.starts_with("HTTP/1.1 200")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not start: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Whether this process runs as root (servers it starts must then be told whom to run as).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}
