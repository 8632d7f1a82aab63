//! `lua/larder.lua` (the ngx.shared.DICT-shaped module over liblarder, for nginx/OpenResty)
//! under the `luajit` command: `lua/tests/dict_test.lua` runs every call against a real
//! arena beside this Rust process, which wrote what the script reads and reads what it
//! wrote (values and their type flags). Skipped without luajit, unless LARDER_REQUIRE_LUAJIT
//! is set (CI sets it). And the module's embedded `ffi.cdef` must be the checked-in
//! `include/larder_ffi.h` exactly.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{binding_arena, built, c_tools, replace_arena, run, value_and_flags, Stepped};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn luajit() -> bool {
    let ok = Command::new("luajit")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("LARDER_REQUIRE_LUAJIT").is_none(),
            "luajit is required (LARDER_REQUIRE_LUAJIT) but cannot be run"
        );
        eprintln!("luajit not installed: skipped");
    }
    ok
}

fn lua(arena: &Path, script: &[&str]) -> String {
    let lib = built().prefix.join("lib/liblarder.so");
    let out = run(Command::new("luajit")
        .args(script)
        .env("LARDER_LIB", &lib)
        .env("LUA_PATH", format!("{}/lua/?.lua;;", repo().display()))
        .env("ARENA", arena));
    String::from_utf8(out.stdout).unwrap()
}

/// larderd replaced the arena (moved it aside, created a new one, marked the old retired):
/// the module's cached handle follows within 256 reads, and at once on a write.
#[test]
fn the_module_follows_a_replaced_arena() {
    if !c_tools() || !luajit() {
        return;
    }
    let (_dir, arena, first) = binding_arena("larder-lua-replaced-");
    let mut s = Stepped::spawn(
        Command::new("luajit")
            .arg("lua/tests/replaced.lua")
            .arg(&arena)
            .current_dir(repo())
            .env("LARDER_LIB", built().prefix.join("lib/liblarder.so"))
            .env("LUA_PATH", format!("{}/lua/?.lua;;", repo().display())),
    );
    assert_eq!(s.line(), "replace");
    let second = replace_arena(&arena, &first);
    second.set(b"k", b"new", None).unwrap();
    s.go();
    assert_eq!(s.line(), "read follows after at most 256");
    assert_eq!(s.line(), "replace");
    let third = replace_arena(&arena, &second);
    third.set(b"k", b"newer", None).unwrap();
    s.go();
    assert_eq!(
        s.line(),
        "k=newer",
        "the write re-opened: reads see the newest arena"
    );
    assert_eq!(s.line(), "done");
    s.success();
    assert_eq!(
        third.get(b"after").unwrap().as_deref(),
        Some(&b"written"[..])
    );
    assert_eq!(second.get(b"after").unwrap(), None);
}

#[test]
fn the_embedded_cdef_is_the_checked_in_header() {
    let module = std::fs::read_to_string(repo().join("lua/larder.lua")).unwrap();
    let header = std::fs::read_to_string(repo().join("ffi/include/larder_ffi.h")).unwrap();
    let start = module.find("ffi.cdef[[\n").expect("cdef start") + "ffi.cdef[[\n".len();
    let end = module[start..]
        .find("]]\n-- END larder_ffi.h")
        .expect("cdef end")
        + start;
    assert!(
        module[start..end] == header,
        "lua/larder.lua's ffi.cdef differs from ffi/include/larder_ffi.h: paste the header \
         between the markers"
    );
}

#[test]
fn the_dict_api_under_luajit_shares_items_with_rust() {
    if !c_tools() || !luajit() {
        return;
    }
    let (_dir, arena, c) = binding_arena("larder-lua-");
    let script = repo().join("lua/tests/dict_test.lua");
    let out = lua(&arena, &[script.to_str().unwrap(), arena.to_str().unwrap()]);
    assert!(out.contains("RESULT ok"), "{out}");

    // What Lua wrote, as Rust (and the listener, and Python) see it.
    assert_eq!(
        value_and_flags(&c, b"lua:int"),
        (b"42".to_vec(), 2),
        "an integer: decimal text, flags 2"
    );
    assert_eq!(value_and_flags(&c, b"lua:str"), (b"from lua".to_vec(), 0));
    assert_eq!(
        value_and_flags(&c, b"lua:user").1,
        7 << 16,
        "the dict's flags in the high 16 bits"
    );
    assert_eq!(
        c.get(b"rust:n").unwrap().as_deref(),
        Some(&b"8"[..]),
        "Lua counted it"
    );
    assert_eq!(
        c.incr(b"c", 1).unwrap(),
        Some(17),
        "Rust counts Lua's counter"
    );

    // flush_all empties the arena for everyone.
    lua(
        &arena,
        &[
            "-e",
            "local d = assert(require('larder').open(os.getenv('ARENA'))) d:flush_all()",
        ],
    );
    assert_eq!(c.get(b"rust:str").unwrap(), None);
    assert_eq!(c.stats().items, 0);
}
