//! larder hosts behind twemproxy (Debian's `nutcracker`), the configuration docs/scale-out.md
//! shows: two larderd listeners as the pool's servers, keys spread between them by ketama, each
//! key in exactly one arena (where linked clients of that host read it), and with one host
//! stopped the other's keys still served. Skipped (saying so) without nutcracker, unless
//! LARDER_REQUIRE_MEMCACHED is set (CI sets it and installs it).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use larder::Cache;
use larder_testkit::Daemon;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `req` and reads until the reply ends with `end`, or is an error line (or 5 s pass).
fn ask(s: &mut TcpStream, req: &[u8], end: &[u8]) -> String {
    s.write_all(req).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    let error_line = |g: &[u8]| g.ends_with(b"\r\n") && g.starts_with(b"SERVER_ERROR");
    while !got.ends_with(end) && !error_line(&got) && Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("reading the proxy: {e}"),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn larderd(dir: &Path, tag: &str, port: u16) -> Daemon {
    let addr = format!("127.0.0.1:{port}");
    let mut d = Daemon::spawn(
        env!("CARGO_BIN_EXE_larderd"),
        dir,
        &dir.join(format!("arena-{tag}")),
        tag,
        &[("LARDER_LISTEN_MEMCACHED", &addr), ("LARDER_SIZE", "16MiB")],
    );
    d.ready().expect("larderd ready");
    d
}

#[test]
fn two_larder_hosts_behind_twemproxy_split_the_keys_and_survive_one_going_away() {
    if Command::new("nutcracker").arg("-V").output().is_err() {
        assert!(
            std::env::var_os("LARDER_REQUIRE_MEMCACHED").is_none(),
            "nutcracker is required (LARDER_REQUIRE_MEMCACHED) but not installed"
        );
        eprintln!("nutcracker not installed: scale-out test skipped");
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("larder-scale-")
        .tempdir()
        .unwrap();
    let (pa, pb, proxy_port, stats_port) = (free_port(), free_port(), free_port(), free_port());
    let a = larderd(dir.path(), "a", pa);
    let mut b = larderd(dir.path(), "b", pb);
    let conf = dir.path().join("nutcracker.yml");
    std::fs::write(
        &conf,
        format!(
            "larder:\n  listen: 127.0.0.1:{proxy_port}\n  hash: fnv1a_64\n  distribution: ketama\n  \
             timeout: 1000\n  server_retry_timeout: 30000\n  server_failure_limit: 1\n  \
             auto_eject_hosts: true\n  servers:\n   - 127.0.0.1:{pa}:1 a\n   - 127.0.0.1:{pb}:1 b\n"
        ),
    )
    .unwrap();
    let check = Command::new("nutcracker")
        .arg("-t")
        .arg("-c")
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "nutcracker -t: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let _proxy = Proxy(
        Command::new("nutcracker")
            .arg("-c")
            .arg(&conf)
            .args(["-s", &stats_port.to_string(), "-a", "127.0.0.1"])
            .arg("-o")
            .arg(dir.path().join("nutcracker.log"))
            .arg("-p")
            .arg(dir.path().join("nutcracker.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        match TcpStream::connect(("127.0.0.1", proxy_port)) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("nutcracker did not listen: {e}"),
        }
    };
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();

    // Written through the proxy, with client flags: each key lands in exactly one arena.
    const N: usize = 200;
    for i in 0..N {
        let req = format!(
            "set key{i} {i} 0 {}\r\nvalue-{i}\r\n",
            format!("value-{i}").len()
        );
        assert_eq!(ask(&mut s, req.as_bytes(), b"\r\n"), "STORED\r\n", "key{i}");
    }
    let ca = Cache::open(dir.path().join("arena-a")).unwrap();
    let cb = Cache::open(dir.path().join("arena-b")).unwrap();
    let mut on_a = Vec::new();
    for i in 0..N {
        let k = format!("key{i}");
        let want = format!("value-{i}").into_bytes();
        let (va, vb) = (ca.get(k.as_bytes()).unwrap(), cb.get(k.as_bytes()).unwrap());
        assert!(
            (va.as_ref() == Some(&want)) ^ (vb.as_ref() == Some(&want)),
            "{k} must be on exactly one host: a {va:?}, b {vb:?}"
        );
        if va.is_some() {
            on_a.push(i);
        }
        let got = ask(&mut s, format!("get {k}\r\n").as_bytes(), b"END\r\n");
        assert_eq!(
            got,
            format!("VALUE {k} {i} {}\r\nvalue-{i}\r\nEND\r\n", want.len())
        );
    }
    assert!(
        on_a.len() > N / 5 && on_a.len() < N * 4 / 5,
        "ketama spreads the keys: {} of {N} on a",
        on_a.len()
    );
    // A multi-key get is split between the hosts and joined by the proxy.
    let got = ask(&mut s, b"get key0 key1 key2 key3\r\n", b"END\r\n");
    assert_eq!(got.matches("VALUE ").count(), 4, "{got}");

    // Host b goes away: a's keys are still served; b's are misses or errors, never another
    // host's stale copy.
    assert!(b.stop().success());
    for i in 0..N {
        let got = ask(&mut s, format!("get key{i}\r\n").as_bytes(), b"END\r\n");
        if on_a.contains(&i) {
            assert!(got.starts_with(&format!("VALUE key{i} ")), "key{i}: {got}");
        } else {
            assert!(
                !got.starts_with("VALUE"),
                "key{i} was only on the stopped host: {got}"
            );
        }
    }
    drop(a);
}
