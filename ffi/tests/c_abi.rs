//! liblarder from C, for real: `tests/c/abi_test.c` is installed against with
//! `ffi/install.sh` and compiled by `cc` with the flags `pkg-config --cflags --libs larder`
//! gives, once against the shared library and once against the static one, then run as
//! processes of its own beside this (Rust) one: every status code, values written by each
//! language and verified by the other, the two-call lease across processes, a handle used
//! across `fork`, and the same under valgrind's memcheck.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use larder::{Cache, Config};
use larder_testkit::{check_value, make_value, result_field};
use support::{built, c_tools, pkg_config, run};

fn arena(dir: &tempfile::TempDir) -> PathBuf {
    let p = dir.path().join("arena");
    drop(
        Cache::create(
            &p,
            &Config::new(16 << 20)
                .max_value_len(4096)
                .segment_size(64 << 10)
                .huge_pages(false),
        )
        .unwrap(),
    );
    p
}

fn temp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("larder-ffi-run-")
        .tempdir()
        .unwrap()
}

fn c(exe: &Path, args: &[&dyn AsRef<std::ffi::OsStr>]) -> String {
    let out = run(Command::new(exe).args(args.iter().map(|a| a.as_ref())));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_status_code_from_c_through_the_shared_library() {
    if !c_tools() {
        return;
    }
    let d = temp();
    let out = c(&built().shared, &[&"statuses", &d.path()]);
    assert!(out.contains("RESULT statuses=ok"), "{out}");
}

#[test]
fn the_static_library_works_the_same() {
    if !c_tools() {
        return;
    }
    let d = temp();
    let out = c(&built().static_, &[&"statuses", &d.path()]);
    assert!(out.contains("RESULT statuses=ok"), "{out}");
}

#[test]
fn values_written_by_rust_verify_in_c_and_the_other_way_round() {
    if !c_tools() {
        return;
    }
    let d = temp();
    let p = arena(&d);
    let cache = Cache::open(&p).unwrap();
    let n = 500u64;
    for i in 0..n {
        let k = format!("rust:{i}");
        let len = 20 + (i as usize * 53) % 3000;
        cache
            .set(k.as_bytes(), &make_value(k.as_bytes(), i, len), None)
            .unwrap();
    }
    let out = c(&built().shared, &[&"read", &p, &n.to_string()]);
    assert_eq!(result_field(&out, "verified"), n);
    let out = c(&built().shared, &[&"write", &p, &n.to_string()]);
    assert_eq!(result_field(&out, "written"), n);
    for i in 0..n {
        let k = format!("c:{i}");
        let v = cache
            .get(k.as_bytes())
            .unwrap()
            .unwrap_or_else(|| panic!("{k} written by C is missing"));
        assert_eq!(check_value(k.as_bytes(), &v), Ok(i * 3 + 1), "{k}");
    }
}

#[test]
fn the_two_call_lease_between_processes() {
    if !c_tools() {
        return;
    }
    let d = temp();
    let p = arena(&d);
    let out = c(&built().shared, &[&"lease", &p]);
    assert!(out.contains("RESULT lease=ok"), "{out}");
    // The Rust side sees what the C processes left: the child's fill, and no value where
    // the invalidation kept the load out.
    let cache = Cache::open(&p).unwrap();
    assert_eq!(
        cache.get(b"lease:c").unwrap().as_deref(),
        Some(&b"from the child"[..])
    );
    assert_eq!(cache.get(b"lease:b").unwrap(), None);
}

#[test]
fn a_handle_opened_before_fork_works_in_the_children() {
    if !c_tools() {
        return;
    }
    let d = temp();
    let p = arena(&d);
    let out = c(&built().shared, &[&"fork", &p]);
    assert!(out.contains("RESULT fork=ok"), "{out}");
    let cache = Cache::open(&p).unwrap();
    assert_eq!(
        cache.get(b"fork:counter").unwrap().as_deref(),
        Some(&b"400"[..])
    );
}

/// valgrind's memcheck over every mode (forked children included): no invalid access, no
/// use of uninitialised memory, no definite leak. Skipped, saying so, where valgrind is not
/// installed, unless LARDER_REQUIRE_VALGRIND is set (CI sets it).
#[test]
fn memcheck_finds_no_error() {
    if !c_tools() {
        return;
    }
    let have = Command::new("valgrind").arg("--version").output().is_ok();
    if !have {
        assert!(
            std::env::var_os("LARDER_REQUIRE_VALGRIND").is_none(),
            "valgrind is required (LARDER_REQUIRE_VALGRIND) but not installed"
        );
        eprintln!("valgrind not installed: memcheck skipped");
        return;
    }
    let d = temp();
    let p = arena(&d);
    let runs: [&[&dyn AsRef<std::ffi::OsStr>]; 4] = [
        &[&"statuses", &d.path()],
        &[&"write", &p, &"200"],
        &[&"lease", &p],
        &[&"fork", &p],
    ];
    for args in runs {
        let out = run(Command::new("valgrind")
            .args([
                "--tool=memcheck",
                "--error-exitcode=99",
                "--leak-check=full",
                "--errors-for-leak-kinds=definite",
                "--child-silent-after-fork=no",
                "-q",
            ])
            .arg(&built().shared)
            .args(args.iter().map(|a| a.as_ref())));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("=="), "memcheck reported something:\n{err}");
    }
}

/// The README's "From C" example, compiled with the command it gives and run against an
/// arena of ours: it prints the value it stored.
#[test]
fn the_readme_example_compiles_as_shown_and_runs() {
    if !c_tools() {
        return;
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let after = readme
        .split_once("<!-- c-example")
        .expect("README has the C example marker")
        .1;
    let code = after
        .split_once("```c\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("a ```c block after the marker")
        .0;
    let d = temp();
    let src = d.path().join("hello.c");
    std::fs::write(&src, code).unwrap();
    let b = built();
    let exe = d.path().join("hello");
    run(Command::new("cc")
        .arg(&src)
        .args(pkg_config(&b.prefix, &["--cflags", "--libs"]))
        .arg(format!("-Wl,-rpath,{}", b.prefix.join("lib").display()))
        .arg("-o")
        .arg(&exe));
    let p = arena(&d);
    let out = run(Command::new(&exe).env("LARDER_ARENA", &p));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    let cache = Cache::open(&p).unwrap();
    let ttl = cache
        .ttl(b"greeting")
        .unwrap()
        .expect("stored")
        .expect("with a TTL");
    assert!(ttl <= std::time::Duration::from_secs(60) && ttl > std::time::Duration::from_secs(50));
}
