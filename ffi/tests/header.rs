//! The checked-in headers are what cbindgen makes of the crate now: `include/larder.h`
//! (with include guard, `extern "C"` for C++ and the system includes) and
//! `include/larder_ffi.h` (the same declarations without a single preprocessor line or
//! comment, for LuaJIT's `ffi.cdef` and PHP's `FFI::cdef`). A change to an exported
//! signature without regenerating fails here; `LARDER_BLESS=1` rewrites them.

use std::path::{Path, PathBuf};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn config() -> cbindgen::Config {
    cbindgen::Config::from_file(crate_dir().join("cbindgen.toml")).expect("cbindgen.toml")
}

fn generate(cfg: cbindgen::Config) -> String {
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir())
        .with_config(cfg)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut out);
    String::from_utf8(out).expect("UTF-8 header")
}

/// The declarations alone: no guard, no includes, no C++ block, no comments.
fn bare() -> cbindgen::Config {
    let mut c = config();
    c.header = None;
    c.include_guard = None;
    c.cpp_compat = false;
    c.sys_includes = Vec::new();
    c.no_includes = true;
    c.documentation = false;
    c.autogen_warning = None;
    c
}

fn check(path: &Path, want: &str) {
    if std::env::var_os("LARDER_BLESS").is_some() {
        std::fs::write(path, want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        have == want,
        "{} is stale: regenerate it with `LARDER_BLESS=1 cargo test -p larder-ffi --test header`",
        path.display()
    );
}

#[test]
fn larder_h_is_current() {
    check(&crate_dir().join("include/larder.h"), &generate(config()));
}

#[test]
fn larder_ffi_h_is_current_and_has_no_preprocessor_line_or_comment() {
    let h = generate(bare());
    for (i, line) in h.lines().enumerate() {
        let t = line.trim_start();
        assert!(
            !t.starts_with('#'),
            "line {}: preprocessor line {line:?}",
            i + 1
        );
        assert!(
            !t.starts_with("//") && !t.contains("/*"),
            "line {}: comment {line:?}",
            i + 1
        );
    }
    assert!(h.contains("larder_get("), "declarations are there");
    check(&crate_dir().join("include/larder_ffi.h"), &h);
}
