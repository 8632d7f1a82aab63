//! `php/` (Larder\Cache with APCu's vocabulary, Larder\SimpleCache for PSR-16, over PHP's
//! FFI): `php/tests/CacheTest.php` under Debian's phpunit against a real arena that this Rust
//! process wrote before and reads after, then four PHP processes incrementing one counter at
//! once. Skipped without php (with FFI), phpunit and php-psr-simple-cache, unless
//! LARDER_REQUIRE_PHP is set (CI sets it).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::{
    binding_arena, built, c_tools, free_port, http_get, is_root, replace_arena, run,
    value_and_flags, wait_http, Killed, Stepped,
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn php() -> bool {
    let ffi = Command::new("php")
        .args(["-r", "exit(extension_loaded('FFI') ? 0 : 1);"])
        .status()
        .is_ok_and(|s| s.success());
    let ok = ffi
        && Command::new("phpunit").arg("--version").output().is_ok()
        && Path::new("/usr/share/php/Psr/SimpleCache/CacheInterface.php").exists();
    if !ok {
        assert!(
            std::env::var_os("LARDER_REQUIRE_PHP").is_none(),
            "php with FFI, phpunit and php-psr-simple-cache are required (LARDER_REQUIRE_PHP)"
        );
        eprintln!("php, phpunit or php-psr-simple-cache not installed: skipped");
    }
    ok
}

fn php_cmd(program: &str, arena: &Path) -> Command {
    let mut c = Command::new(program);
    c.env("LARDER_LIB", built().prefix.join("lib/liblarder.so"))
        .env("ARENA", arena)
        .current_dir(repo());
    c
}

#[test]
fn the_php_classes_share_the_arena_with_rust_and_count_exactly_across_processes() {
    if !c_tools() || !php() {
        return;
    }
    let (_dir, arena, c) = binding_arena("larder-php-");

    let out = run(php_cmd("phpunit", &arena).args([
        "--colors=never",
        "--do-not-cache-result",
        "php/tests/CacheTest.php",
    ]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("OK ("), "{text}");

    assert_eq!(
        value_and_flags(&c, b"php:int"),
        (b"42".to_vec(), 2),
        "an integer: decimal text, flags 2"
    );
    assert_eq!(value_and_flags(&c, b"php:str"), (b"from php".to_vec(), 0));
    let (v, flags) = value_and_flags(&c, b"php:arr");
    assert_eq!(flags, 1024, "serialize()d");
    assert!(v.starts_with(b"a:2:{"), "{:?}", String::from_utf8_lossy(&v));
    assert_eq!(
        c.get(b"rust:n").unwrap().as_deref(),
        Some(&b"8"[..]),
        "PHP counted it"
    );

    // Four PHP processes at once, 200 increments each, plus Rust's: exact.
    let kids: Vec<_> = (0..4)
        .map(|_| {
            php_cmd("php", &arena)
                .args(["php/tests/inc.php", "200"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for k in kids {
        assert!(k.wait_with_output().unwrap().status.success());
    }
    assert_eq!(c.incr(b"php:count", 1).unwrap(), Some(801));
}

/// larderd replaced the arena (moved it aside, created a new one, marked the old retired):
/// the next write, and every read after it, reaches the new arena; a generator that holds
/// `entry`'s lease when it happens (and re-opens the handle by writing) stores its value
/// in the new arena, not the one moved aside, and nothing uses a closed handle.
#[test]
fn larder_cache_follows_a_replaced_arena_even_while_a_generator_holds_the_lease() {
    if !c_tools() || !php() {
        return;
    }
    let (_dir, arena, first) = binding_arena("larder-php-replaced-");
    let mut s = Stepped::spawn(php_cmd("php", &arena).arg("php/tests/replaced.php"));
    assert_eq!(s.line(), "replace");
    let second = replace_arena(&arena, &first);
    second.set(b"k", b"new", None).unwrap();
    s.go();
    assert_eq!(
        s.line(),
        "k='new'",
        "reads follow the write to the new arena"
    );
    assert_eq!(
        second.get(b"after").unwrap().as_deref(),
        Some(&b"written"[..])
    );
    assert_eq!(
        first.get(b"after").unwrap(),
        None,
        "nothing written to the old arena"
    );

    assert_eq!(s.line(), "replace");
    let third = replace_arena(&arena, &second);
    s.go();
    assert_eq!(s.line(), "entry=made e");
    assert_eq!(s.line(), "e='made e'");
    assert_eq!(s.line(), "done");
    s.success();
    assert_eq!(third.get(b"inside").unwrap().as_deref(), Some(&b"yes"[..]));
    assert_eq!(third.get(b"e").unwrap().as_deref(), Some(&b"made e"[..]));
    assert_eq!(
        second.get(b"e").unwrap(),
        None,
        "not into the arena moved aside"
    );
}

/// A real php8.2-fpm pool of four workers (FFI enabled for the pool with
/// `php_admin_value[ffi.enable] = 1`, the snippet docs/bindings.md ships) behind nginx:
/// every worker reads what Rust stored, and four clients' increments over the pool add up.
#[test]
fn a_php_fpm_pool_shares_the_arena_and_counts_exactly() {
    if !c_tools() || !php() {
        return;
    }
    let fpm = "php-fpm8.2";
    if Command::new(fpm).arg("-v").output().is_err() {
        assert!(
            std::env::var_os("LARDER_REQUIRE_PHP").is_none(),
            "{fpm} is required (LARDER_REQUIRE_PHP)"
        );
        eprintln!("{fpm} not installed: skipped");
        return;
    }
    let (dir, arena, c) = binding_arena("larder-fpm-");
    let d = dir.path().display();
    let root = is_root();
    std::fs::write(
        dir.path().join("fpm.conf"),
        format!(
            "[global]\npid = {d}/fpm.pid\nerror_log = {d}/fpm.log\ndaemonize = no\n\
             [larder]\n{user}listen = {d}/fpm.sock\npm = static\npm.max_children = 4\n\
             clear_env = no\ncatch_workers_output = yes\nphp_admin_value[ffi.enable] = 1\n",
            user = if root { "user = root\n" } else { "" },
        ),
    )
    .unwrap();
    let mut cmd = php_cmd(fpm, &arena);
    cmd.args(["-F", "-y"]).arg(dir.path().join("fpm.conf"));
    if root {
        cmd.arg("-R");
    }
    let _fpm = Killed(cmd.stderr(Stdio::null()).spawn().unwrap());
    let port = free_port();
    std::fs::write(
        dir.path().join("nginx.conf"),
        format!(
            "daemon off;\nworker_processes 1;\n{user}pid {d}/nginx.pid;\n\
             error_log {d}/nginx.log;\nevents {{ worker_connections 64; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
             server {{\n  listen 127.0.0.1:{port};\n  location /fpm {{\n\
             include /etc/nginx/fastcgi_params;\n\
             fastcgi_param SCRIPT_FILENAME {script};\n\
             fastcgi_pass unix:{d}/fpm.sock;\n  }}\n }}\n}}\n",
            user = if root { "user root;\n" } else { "" },
            script = repo().join("php/tests/fpm.php").display(),
        ),
    )
    .unwrap();
    let _nginx = Killed(
        Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_http(port, "/fpm?op=get&k=rust:str", &dir.path().join("fpm.log"));

    let mut served = std::collections::HashSet::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while served.len() < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {served:?} answered"
        );
        let r = http_get(port, "/fpm?op=get&k=rust:str").unwrap();
        let (pid, v) = r.split_once(' ').unwrap();
        assert_eq!(v, "'from rust'", "worker {pid}");
        served.insert(pid.to_string());
    }
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..50 {
                    http_get(port, "/fpm?op=inc").unwrap();
                }
            });
        }
    });
    assert_eq!(c.incr(b"fpm:count", 1).unwrap(), Some(201));
}
