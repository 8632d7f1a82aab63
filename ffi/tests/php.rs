//! `php/` (Larder\Cache with APCu's vocabulary, Larder\SimpleCache for PSR-16, over PHP's
//! FFI): `php/tests/CacheTest.php` under Debian's phpunit against a real arena that this Rust
//! process wrote before and reads after, then four PHP processes incrementing one counter at
//! once. Skipped without php (with FFI), phpunit and php-psr-simple-cache, unless
//! LARDER_REQUIRE_PHP is set (CI sets it).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{binding_arena, built, c_tools, run, value_and_flags};

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
