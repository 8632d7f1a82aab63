//! The real `cachectl` binary against arenas made by the library: every command's output,
//! exit status and error messages. No daemon is needed (`snapshot` is tested for its
//! "no daemon" error).

use std::path::{Path, PathBuf};

use std::time::Duration;

use assert_cmd::Command;
use larder::{Cache, Config};
use serde_json::Value;

/// A scratch directory removed on drop.
struct Dir(PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = tempfile::Builder::new()
            .prefix(&format!("cachectl-test-{tag}-"))
            .tempdir()
            .unwrap();
        Dir(d.path().to_owned(), d)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

/// A fresh 8 MiB arena with 64 KiB values, and this process attached to it.
fn arena(tag: &str) -> (Dir, PathBuf, Cache) {
    let dir = Dir::new(tag);
    let path = dir.path("arena");
    let cache = Cache::create(&path, &Config::new(8 << 20).max_value_len(64 << 10)).unwrap();
    (dir, path, cache)
}

/// `cachectl --arena PATH ARGS...`, with LARDER_ARENA cleared so the flag decides.
fn ctl(path: &Path, args: &[&str]) -> Command {
    let mut c = Command::cargo_bin("cachectl").unwrap();
    c.env_remove("LARDER_ARENA")
        .arg("--arena")
        .arg(path)
        .args(args);
    c
}

struct Run {
    code: i32,
    out: Vec<u8>,
    err: String,
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8(self.out.clone()).unwrap()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.out)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout()))
    }
    fn json_lines(&self) -> Vec<Value> {
        self.stdout()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

fn run(mut c: Command) -> Run {
    let o = c.output().unwrap();
    Run {
        code: o.status.code().expect("exited, not killed"),
        out: o.stdout,
        err: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn go(path: &Path, args: &[&str]) -> Run {
    run(ctl(path, args))
}

fn go_stdin(path: &Path, args: &[&str], stdin: &[u8]) -> Run {
    let mut c = ctl(path, args);
    c.write_stdin(stdin.to_vec());
    run(c)
}

/// Asserts an error run: status 2, nothing on stdout, one line on stderr containing every
/// fragment.
fn assert_error(r: &Run, fragments: &[&str]) {
    assert_eq!(r.code, 2, "stderr: {}", r.err);
    assert!(r.out.is_empty(), "stdout: {}", r.stdout());
    assert_eq!(
        r.err.trim_end().lines().count(),
        1,
        "not one line: {}",
        r.err
    );
    for f in fragments {
        assert!(r.err.contains(f), "{f:?} not in {:?}", r.err);
    }
}

#[test]
fn help_teaches() {
    let r = run({
        let mut c = Command::cargo_bin("cachectl").unwrap();
        c.arg("--help");
        c
    });
    assert_eq!(r.code, 0);
    let h = r.stdout();
    for s in [
        "Examples:",
        "Exit status:",
        "LARDER_ARENA",
        "--json",
        "keys",
        "snapshot",
    ] {
        assert!(h.contains(s), "{s} missing from --help");
    }
    let r = run({
        let mut c = Command::cargo_bin("cachectl").unwrap();
        c.args(["dump", "--help"]);
        c
    });
    assert!(
        r.stdout().contains("value_b64"),
        "dump --help documents the format"
    );
    // A usage error is an error: status 2.
    let r = run({
        let mut c = Command::cargo_bin("cachectl").unwrap();
        c.arg("frobnicate");
        c
    });
    assert_eq!(r.code, 2);
}

#[test]
fn set_get_and_misses() {
    let (_d, p, cache) = arena("setget");
    let r = go(&p, &["set", "greeting", "hello"]);
    assert_eq!((r.code, r.out.len()), (0, 0), "{}", r.err);
    assert_eq!(
        cache.get(b"greeting").unwrap().as_deref(),
        Some(&b"hello"[..])
    );
    let r = go(&p, &["get", "greeting"]);
    assert_eq!((r.code, r.stdout().as_str()), (0, "hello"));

    let r = go(&p, &["get", "nope"]);
    assert_eq!(r.code, 1);
    assert!(r.out.is_empty());
    assert!(r.err.contains("key \"nope\" not found"), "{}", r.err);
    let r = go(&p, &["-q", "get", "nope"]);
    assert_eq!((r.code, r.err.as_str()), (1, ""));

    // A key starting with '-' after `--`.
    assert_eq!(go(&p, &["set", "--", "-dash", "v"]).code, 0);
    assert_eq!(go(&p, &["get", "--", "-dash"]).stdout(), "v");
}

#[test]
fn binary_values_round_trip_through_stdin_and_stdout() {
    let (_d, p, cache) = arena("binary");
    let mut v: Vec<u8> = (0..=255u8).collect();
    v.extend((0..40_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    v.extend_from_slice(b"\r\n\0\n");
    let r = go_stdin(&p, &["set", "blob"], &v);
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(cache.get(b"blob").unwrap().as_deref(), Some(&v[..]));
    let r = go(&p, &["get", "blob"]);
    assert_eq!(r.code, 0);
    assert!(
        r.out == v,
        "get returned {} bytes, not the {} stored",
        r.out.len(),
        v.len()
    );

    // `-` reads stdin too; an empty value is a value.
    let r = go_stdin(&p, &["set", "empty", "-"], b"");
    assert_eq!(r.code, 0);
    let r = go(&p, &["get", "empty"]);
    assert_eq!((r.code, r.out.len()), (0, 0));

    // --json gives non-UTF-8 values as base64.
    let j = go(&p, &["get", "blob", "--json"]).json();
    use base64::Engine as _;
    let b = base64::engine::general_purpose::STANDARD
        .decode(j["value_b64"].as_str().unwrap())
        .unwrap();
    assert_eq!(b, v);
    assert_eq!(j["found"], true);
}

#[test]
fn ttl_and_touch() {
    let (_d, p, _c) = arena("ttl");
    assert_eq!(go(&p, &["set", "a", "1", "--ttl", "5m"]).code, 0);
    let secs: u64 = go(&p, &["ttl", "a"]).stdout().trim().parse().unwrap();
    assert!((298..=300).contains(&secs), "{secs}");
    assert_eq!(go(&p, &["set", "b", "1", "--ttl", "0"]).code, 0);
    assert_eq!(go(&p, &["ttl", "b"]).stdout(), "-1\n");
    assert_eq!(go(&p, &["set", "c", "1"]).code, 0);
    assert_eq!(go(&p, &["ttl", "c"]).stdout(), "-1\n");
    let r = go(&p, &["ttl", "missing"]);
    assert_eq!((r.code, r.out.len()), (1, 0));

    assert_eq!(go(&p, &["touch", "c", "--ttl", "1h"]).code, 0);
    let secs: u64 = go(&p, &["ttl", "c"]).stdout().trim().parse().unwrap();
    assert!((3598..=3600).contains(&secs), "{secs}");
    assert_eq!(go(&p, &["touch", "a", "--ttl", "0"]).code, 0);
    assert_eq!(go(&p, &["ttl", "a"]).stdout(), "-1\n");
    assert_eq!(go(&p, &["touch", "missing", "--ttl", "1h"]).code, 1);
    // --ttl is required for touch.
    assert_eq!(go(&p, &["touch", "a"]).code, 2);

    let j = go(&p, &["ttl", "c", "--json"]).json();
    assert_eq!(j["key"], "c");
    assert!(j["ttl"].as_u64().unwrap() > 3000);
    let j = go(&p, &["ttl", "b", "--json"]).json();
    assert_eq!(j["ttl"], Value::Null);
    assert_eq!(j["found"], true);
    let r = go(&p, &["ttl", "missing", "--json"]);
    assert_eq!(r.code, 1);
    assert_eq!(r.json()["found"], false);
}

#[test]
fn bad_ttl_text() {
    let (_d, p, cache) = arena("badttl");
    for bad in ["soon", "5y", "-3s", ""] {
        let r = go(&p, &["set", "k", "v", &format!("--ttl={bad}")]);
        assert_eq!(r.code, 2, "{bad}");
        assert!(r.err.contains("--ttl"), "{}", r.err);
        assert!(r.err.contains("duration"), "{}", r.err);
    }
    assert_eq!(cache.get(b"k").unwrap(), None, "nothing stored");
    let r = go(&p, &["touch", "k", "--ttl", "tomorrow"]);
    assert_eq!(r.code, 2);
    assert!(r.err.contains("try 30s, 5m, 1h"), "{}", r.err);
}

#[test]
fn add_replace_del() {
    let (_d, p, cache) = arena("addrep");
    assert_eq!(go(&p, &["add", "k", "one"]).code, 0);
    let r = go(&p, &["add", "k", "two"]);
    assert_eq!(r.code, 1);
    assert!(r.err.contains("already exists"), "{}", r.err);
    assert_eq!(cache.get(b"k").unwrap().as_deref(), Some(&b"one"[..]));
    let r = go(&p, &["replace", "nope", "x"]);
    assert_eq!(r.code, 1);
    assert!(r.err.contains("does not exist"), "{}", r.err);
    assert_eq!(cache.get(b"nope").unwrap(), None);
    assert_eq!(go(&p, &["replace", "k", "three"]).code, 0);
    assert_eq!(cache.get(b"k").unwrap().as_deref(), Some(&b"three"[..]));
    let j = go(&p, &["add", "k", "x", "--json"]).json();
    assert_eq!(j["stored"], false);

    assert_eq!(go(&p, &["set", "k2", "v"]).code, 0);
    let r = go(&p, &["del", "k", "k2", "absent"]);
    assert_eq!((r.code, r.stdout().as_str()), (0, "2\n"));
    let r = go(&p, &["del", "k", "k2"]);
    assert_eq!((r.code, r.stdout().as_str()), (1, "0\n"));
    assert!(r.err.contains("none of the 2 keys"), "{}", r.err);
    assert_eq!(go(&p, &["set", "k3", "v"]).code, 0);
    let j = go(&p, &["del", "k3", "--json"]).json();
    assert_eq!(j["deleted"], 1);
    // del needs at least one key.
    assert_eq!(go(&p, &["del"]).code, 2);
}

#[test]
fn del_by_tag_invalidates_every_tagged_item() {
    let (_d, p, cache) = arena("deltag");
    let tagged = larder::SetOptions::new().tag("user:7");
    cache.set_with(b"a", b"1", &tagged).unwrap();
    cache.set_with(b"b", b"2", &tagged).unwrap();
    cache.set(b"c", b"3", None).unwrap();
    assert_eq!(go(&p, &["del", "--tag", "user:7"]).code, 0);
    assert_eq!(cache.get(b"a").unwrap(), None);
    assert_eq!(cache.get(b"b").unwrap(), None);
    assert_eq!(cache.get(b"c").unwrap().as_deref(), Some(&b"3"[..]));
    assert_eq!(
        go(&p, &["del", "--tag", "user:7", "c"]).code,
        2,
        "keys and --tag conflict"
    );
}

#[test]
fn incr_decr() {
    let (_d, p, _c) = arena("incr");
    assert_eq!(go(&p, &["set", "n", "41"]).code, 0);
    assert_eq!(go(&p, &["incr", "n"]).stdout(), "42\n");
    assert_eq!(go(&p, &["incr", "n", "8"]).stdout(), "50\n");
    assert_eq!(go(&p, &["decr", "n", "7"]).stdout(), "43\n");
    assert_eq!(go(&p, &["decr", "n", "100"]).stdout(), "0\n");
    let j = go(&p, &["incr", "n", "--json"]).json();
    assert_eq!(j["value"], 1);
    let r = go(&p, &["incr", "missing"]);
    assert_eq!((r.code, r.out.len()), (1, 0));
    assert!(r.err.contains("not found"));
    assert_eq!(go(&p, &["decr", "missing"]).code, 1);
    assert_eq!(go(&p, &["set", "word", "abc"]).code, 0);
    assert_error(
        &go(&p, &["incr", "word"]),
        &["not a decimal", "cachectl set KEY 0"],
    );
    assert_eq!(go(&p, &["incr", "n", "-5"]).code, 2, "N is unsigned");
}

#[test]
fn keys_glob_and_limit() {
    let (_d, p, cache) = arena("keys");
    for i in 1..=5 {
        cache
            .set(format!("user:{i}").as_bytes(), b"u", None)
            .unwrap();
    }
    cache.set(b"user:10", b"u", None).unwrap();
    cache.set(b"session:1", b"s", None).unwrap();
    cache.set(b"star*key", b"s", None).unwrap();
    cache.set(b"bin:\xff", b"b", None).unwrap();
    let sorted = |r: &Run| {
        let mut v: Vec<String> = r.stdout().lines().map(str::to_owned).collect();
        v.sort();
        v
    };

    let r = go(&p, &["keys"]);
    assert_eq!(r.code, 0);
    assert_eq!(
        r.out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
        9
    );
    assert!(r.out.windows(5).any(|w| w == b"bin:\xff"), "raw key bytes");

    let r = go(&p, &["keys", "user:*"]);
    assert_eq!(
        sorted(&r),
        ["user:1", "user:10", "user:2", "user:3", "user:4", "user:5"]
    );
    assert_eq!(sorted(&go(&p, &["keys", "user:?"])).len(), 5);
    assert_eq!(
        sorted(&go(&p, &["keys", "user:[12]*"])),
        ["user:1", "user:10", "user:2"]
    );
    assert_eq!(sorted(&go(&p, &["keys", "user:[!1-4]"])), ["user:5"]);
    assert_eq!(sorted(&go(&p, &["keys", r"star\*key"])), ["star*key"]);
    assert_eq!(sorted(&go(&p, &["keys", "*:1"])), ["session:1", "user:1"]);
    let r = go(&p, &["keys", "nothing*"]);
    assert_eq!((r.code, r.out.len()), (0, 0));

    let r = go(&p, &["keys", "user:*", "--limit", "2"]);
    assert_eq!(r.stdout().lines().count(), 2);
    assert!(r.stdout().lines().all(|l| l.starts_with("user:")));
    assert_eq!(go(&p, &["keys", "--limit", "0"]).out.len(), 0);

    let j = go(&p, &["keys", "--json"]).json();
    let arr = j.as_array().unwrap();
    assert_eq!(arr.len(), 9);
    assert!(arr.iter().any(|o| o["key_b64"] == "YmluOv8="), "{j}");
    let j = go(&p, &["keys", "session:*", "--json"]).json();
    assert_eq!(j, serde_json::json!([{"key": "session:1"}]));
    let j = go(&p, &["keys", "none*", "--json"]).json();
    assert_eq!(j, serde_json::json!([]));

    assert_error(
        &go(&p, &["keys", "user:[12"]),
        &["bad pattern", "unclosed '['"],
    );
}

#[test]
fn flush_without_a_terminal() {
    let (_d, p, cache) = arena("flush");
    for i in 0..20 {
        cache.set(format!("k{i}").as_bytes(), b"v", None).unwrap();
    }
    // assert_cmd gives the child a pipe/null stdin, never a terminal: no --yes needed there
    // (on a terminal it is required; that path is not testable without a pty).
    let r = go(&p, &["flush"]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.stdout(), "flushed 20 items\n");
    assert_eq!(cache.keys().count(), 0);
    cache.set(b"x", b"v", None).unwrap();
    let j = go(&p, &["flush", "--yes", "--json"]).json();
    assert_eq!(j["flushed"], 1);
}

#[test]
fn stats_text_json_prometheus() {
    let (_d, p, cache) = arena("stats");
    cache.set(b"a", b"1", None).unwrap();
    cache.get(b"a").unwrap();
    cache.get(b"a").unwrap();
    cache.get(b"zz").unwrap();

    let r = go(&p, &["stats"]);
    assert_eq!(r.code, 0);
    let t = r.stdout();
    for s in [
        "items",
        "bytes used",
        "hit ratio        66.67%",
        "hits             2",
        "misses           1",
        "sets             1",
        "evictions",
        "expired",
        "processes        1 attached",
    ] {
        assert!(t.contains(s), "{s:?} not in\n{t}");
    }
    assert!(
        t.contains(&std::process::id().to_string()),
        "this test process is listed"
    );

    let j = go(&p, &["stats", "--json"]).json();
    assert_eq!(j["totals"]["hits"], 2);
    assert_eq!(j["totals"]["misses"], 1);
    assert_eq!(j["items"], 1);
    assert!(j["capacity"].as_u64().unwrap() > 0);
    let procs = j["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 1, "cachectl itself is not listed: {j}");
    assert_eq!(procs[0]["pid"], std::process::id());
    assert_eq!(procs[0]["counters"]["sets"], 1);
    assert_eq!(go(&p, &["stats", "--format", "json"]).json(), {
        let mut j2 = go(&p, &["stats", "--json"]).json();
        // Totals move only with our reads; nothing else touched the arena between runs.
        j2["processes"][0]["attached_at"] = j["processes"][0]["attached_at"].clone();
        j2
    });

    let r = go(&p, &["stats", "--format", "prometheus"]);
    let t = r.stdout();
    assert!(
        t.contains("# TYPE larder_hits_total counter\nlarder_hits_total 2\n"),
        "{t}"
    );
    assert!(t.contains("larder_items 1\n"));
    assert!(t.contains(&format!(
        "larder_process_sets_total{{pid=\"{}\",",
        std::process::id()
    )));
    for l in t.lines().filter(|l| !l.starts_with('#')) {
        let (_, v) = l.rsplit_once(' ').unwrap();
        v.parse::<f64>()
            .unwrap_or_else(|_| panic!("bad sample line {l}"));
    }
    assert_eq!(go(&p, &["stats", "--format", "yaml"]).code, 2);
}

#[test]
fn info_and_snapshot_without_daemon() {
    let (_d, p, c) = arena("info");
    let r = go(&p, &["info"]);
    assert_eq!(r.code, 0);
    let t = r.stdout();
    for s in [
        &format!("arena            {}", p.display())[..],
        "size             8.0 MiB",
        "layout version",
        "limits           key 250 bytes, value 65536 bytes",
        "daemon           none attached",
        "last snapshot    never",
        "state",
    ] {
        assert!(t.contains(s), "{s:?} not in\n{t}");
    }
    let j = go(&p, &["info", "--json"]).json();
    assert_eq!(j["arena"], p.to_str().unwrap());
    assert_eq!(j["arena_size"], 8 << 20);
    assert_eq!(j["max_value"], 64 << 10);
    assert_eq!(j["daemon"]["pid"], Value::Null);
    assert_eq!(j["snapshot"]["last_time"], Value::Null);
    let planned = j["planned_item_size"].as_u64().unwrap();
    assert!((64..=200).contains(&planned), "{planned}");
    assert_eq!(j["avg_item_size"], Value::Null, "no items yet");
    // Items of 4 KiB in an index planned for ~128 bytes: info says so, and what to do.
    for i in 0..1200 {
        c.set(format!("k{i}").as_bytes(), &[7u8; 4000], None)
            .unwrap();
    }
    let t = go(&p, &["info"]).stdout();
    for s in [
        "sized for items of ~",
        "items average    ~40",
        "larger than planned",
        "--avg-item-size 40",
    ] {
        assert!(t.contains(s), "{s:?} not in\n{t}");
    }
    // Overwritten again and again with small values: the dead copies awaiting eviction are
    // not counted, so the average is the live items' (8 + 5-byte keys + 100, padded: 120),
    // and no advice is given for an index planned near it.
    c.flush().unwrap();
    for round in 0..5u8 {
        for i in 0..10_000 {
            c.set(format!("k{i:04}").as_bytes(), &[round; 100], None)
                .unwrap();
        }
    }
    let j = go(&p, &["info", "--json"]).json();
    let avg = j["avg_item_size"].as_u64().unwrap();
    assert!((112..=128).contains(&avg), "live items average {avg}");
    let t = go(&p, &["info"]).stdout();
    assert!(!t.contains("--avg-item-size"), "{t}");

    let r = go(&p, &["snapshot", "--timeout", "2s"]);
    assert_error(&r, &["no daemon is attached to", "larderd"]);
    assert_eq!(go(&p, &["snapshot", "--timeout", "0"]).code, 2);
}

#[test]
fn watch_counts_refreshes() {
    let (_d, p, _c) = arena("watch");
    let r = go(&p, &["watch", "--interval", "50ms", "--count", "3"]);
    assert_eq!(r.code, 0, "{}", r.err);
    let lines: Vec<_> = r.stdout().lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 4, "a header and 3 refreshes: {lines:?}");
    assert!(
        lines[0].contains("hits/s")
            && lines[0].contains("sets/s")
            && lines[0].contains("evictions/s")
    );

    let r = go(
        &p,
        &["watch", "--interval", "50ms", "--count", "2", "--json"],
    );
    let v = r.json_lines();
    assert_eq!(v.len(), 2);
    for o in v {
        for f in [
            "hits_per_s",
            "sets_per_s",
            "evictions_per_s",
            "items",
            "time",
        ] {
            assert!(o.get(f).is_some(), "{f} missing from {o}");
        }
    }
    assert_eq!(
        go(&p, &["watch", "--interval", "0s", "--count", "1"]).code,
        2
    );
}

/// Every (key, value, has-TTL) in the cache, sorted.
fn contents(c: &Cache) -> Vec<(Vec<u8>, Vec<u8>, bool)> {
    let mut v: Vec<_> = c
        .entries()
        .map(|e| (e.key, e.value, e.ttl.is_some()))
        .collect();
    v.sort();
    v
}

#[test]
fn dump_flush_load_round_trip() {
    let (d, p, cache) = arena("dump");
    cache.set(b"text", b"hello \"world\"\n", None).unwrap();
    cache
        .set(b"unicode", "caf\u{e9} \u{1F600}".as_bytes(), None)
        .unwrap();
    cache.set(b"bin:\x00\xff", b"\x80\x81\x00", None).unwrap();
    cache
        .set(b"ttl", b"soon", Some(Duration::from_secs(600)))
        .unwrap();
    cache.set(b"empty", b"", None).unwrap();
    cache.set(b"big", &vec![b'x'; 60_000], None).unwrap();
    let before = contents(&cache);
    assert_eq!(before.len(), 6);

    let file = d.path("dump.jsonl");
    let r = go(&p, &["dump", file.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(r.stdout().contains("dumped 6 entries"), "{}", r.stdout());
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    let ttl = lines.iter().find(|o| o["key"] == "ttl").unwrap();
    assert!((590..=600).contains(&ttl["ttl"].as_u64().unwrap()));
    assert!(lines
        .iter()
        .any(|o| o["key_b64"] == "YmluOgD/" && o["value_b64"] == "gIEA"));
    assert!(lines
        .iter()
        .any(|o| o["key"] == "unicode" && o["value"] == "caf\u{e9} \u{1F600}"));
    // No temporary file is left beside it.
    assert_eq!(
        std::fs::read_dir(&d.0).unwrap().count(),
        2,
        "arena and dump only"
    );

    // To stdout, identical content (order aside).
    let r = go(&p, &["dump", "-"]);
    let mut a: Vec<&str> = text.lines().collect();
    let out = r.stdout();
    let mut b: Vec<&str> = out.lines().collect();
    a.sort();
    b.sort();
    // TTL seconds may tick between the two dumps; compare without that line.
    a.retain(|l| !l.contains("\"key\":\"ttl\""));
    b.retain(|l| !l.contains("\"key\":\"ttl\""));
    assert_eq!(a, b);

    assert_eq!(go(&p, &["flush"]).code, 0);
    assert_eq!(contents(&cache).len(), 0);
    let r = go(&p, &["load", file.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.stdout(),
        format!("loaded 6 entries from {}\n", file.display())
    );
    assert_eq!(contents(&cache), before);
    let t = cache.ttl(b"ttl").unwrap().unwrap().unwrap();
    assert!(
        t > Duration::from_secs(580) && t <= Duration::from_secs(600),
        "{t:?}"
    );

    // And through stdin.
    assert_eq!(go(&p, &["flush"]).code, 0);
    let r = go_stdin(&p, &["load", "-", "--json"], text.as_bytes());
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.json()["loaded"], 6);
    assert_eq!(contents(&cache), before);

    // --no-overwrite keeps what is there.
    cache.set(b"text", b"newer", None).unwrap();
    let r = go(&p, &["load", file.to_str().unwrap(), "--no-overwrite"]);
    assert!(
        r.stdout().contains("loaded 0 entries") && r.stdout().contains("kept 6 existing"),
        "{}",
        r.stdout()
    );
    assert_eq!(cache.get(b"text").unwrap().as_deref(), Some(&b"newer"[..]));
}

#[test]
fn dump_and_load_keep_stale_grace_and_flags() {
    let (d, p, cache) = arena("dump-grace");
    let opts = larder::SetOptions::new()
        .ttl(Duration::from_secs(600))
        .stale_grace(Duration::from_secs(3600));
    cache.set_with(b"graceful", b"v", &opts).unwrap();
    cache
        .set_with(b"flagged", b"v", &larder::SetOptions::new().flags(16))
        .unwrap();
    cache
        .set(b"plain", b"v", Some(Duration::from_secs(600)))
        .unwrap();
    let file = d.path("dump.jsonl");
    assert_eq!(go(&p, &["dump", file.to_str().unwrap()]).code, 0);
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let g = lines.iter().find(|o| o["key"] == "graceful").unwrap();
    assert_eq!(g["grace"], 3600, "{g}");
    let plain = lines.iter().find(|o| o["key"] == "plain").unwrap();
    assert!(plain.get("grace").is_none(), "{plain}");
    assert!(plain.get("flags").is_none(), "{plain}");
    let f = lines.iter().find(|o| o["key"] == "flagged").unwrap();
    assert_eq!(f["flags"], 16, "{f}");
    assert_eq!(go(&p, &["flush"]).code, 0);
    let r = go(&p, &["load", file.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.err);
    let entry = |k: &[u8]| cache.entries().find(|e| e.key == k).unwrap();
    assert_eq!(entry(b"graceful").grace, Some(Duration::from_secs(3600)));
    assert_eq!(entry(b"plain").grace, None);
    assert_eq!(entry(b"flagged").flags, 16);
    assert_eq!(entry(b"plain").flags, 0);
}

#[test]
fn load_rejects_malformed_files_whole() {
    let (d, p, cache) = arena("load");
    let file = d.path("in.jsonl");
    let big = "x".repeat((64 << 10) + 1);
    let content = format!(
        "{}\n{}\n\n{}\n{}\n{}\n{}\n",
        r#"{"key":"good1","value":"v1","ttl":60}"#,
        r#"{"key":"bad2","value":"#,
        r#"{"key":"good4","value_b64":"AAEC"}"#,
        r#"{"key":"bad5"}"#,
        format_args!(r#"{{"key":"bad6","value":"{big}"}}"#),
        r#"{"key":"good7","value":"v7","ttl":null}"#,
    );
    std::fs::write(&file, &content).unwrap();

    let r = go(&p, &["load", file.to_str().unwrap()]);
    assert_error(
        &r,
        &[
            "3 malformed lines, nothing loaded",
            "line 2:",
            "line 5: missing \"value\"",
            "line 6: value of 65537 bytes exceeds this arena's limit of 65536 bytes",
            "--skip-bad",
        ],
    );
    assert_eq!(cache.keys().count(), 0, "nothing partial");
    // Same from stdin.
    let r = go_stdin(&p, &["load", "-"], content.as_bytes());
    assert_error(&r, &["stdin: 3 malformed lines", "line 2:"]);
    assert_eq!(cache.keys().count(), 0);

    let r = go(&p, &["load", file.to_str().unwrap(), "--skip-bad"]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(
        r.stdout().contains("loaded 3 entries") && r.stdout().contains("skipped 3 bad lines"),
        "{}",
        r.stdout()
    );
    for n in [2, 5, 6] {
        assert!(r.err.contains(&format!("skipping line {n}:")), "{}", r.err);
    }
    let mut keys: Vec<_> = cache.keys().collect();
    keys.sort();
    assert_eq!(keys, [&b"good1"[..], b"good4", b"good7"]);
    assert_eq!(
        cache.get(b"good4").unwrap().as_deref(),
        Some(&[0u8, 1, 2][..])
    );
    assert!(cache.ttl(b"good1").unwrap().unwrap().is_some());
    assert_eq!(cache.ttl(b"good7").unwrap(), Some(None));

    // An unreadable or missing input file is an error.
    assert_error(
        &go(&p, &["load", d.path("absent").to_str().unwrap()]),
        &["opening", "absent"],
    );
}

#[test]
fn oversize_keys_and_values() {
    let (_d, p, cache) = arena("oversize");
    let long_key = "k".repeat(251);
    assert_error(
        &go(&p, &["set", &long_key, "v"]),
        &[
            "key of 251 bytes exceeds this arena's limit of 250 bytes",
            "shorter key",
        ],
    );
    let big = "v".repeat((64 << 10) + 1);
    assert_error(
        &go(&p, &["set", "k", &big]),
        &[
            "value of 65537 bytes exceeds this arena's limit of 65536 bytes",
            "--max-value",
        ],
    );
    assert_error(
        &go_stdin(&p, &["set", "k"], big.as_bytes()),
        &[
            "larger than this arena's limit of 65536 bytes",
            "--max-value",
        ],
    );
    assert_error(&go(&p, &["get", &long_key]), &["limit of 250 bytes"]);
    assert_error(&go(&p, &["set", "", "v"]), &["empty key"]);
    assert_eq!(cache.keys().count(), 0);
    // Exactly at the limits is fine.
    let max = "v".repeat(64 << 10);
    assert_eq!(
        go_stdin(&p, &["set", &"k".repeat(250)], max.as_bytes()).code,
        0
    );
}

#[test]
fn arena_errors_say_what_to_do() {
    let d = Dir::new("errors");

    let missing = d.path("nothing-here");
    assert_error(
        &go(&missing, &["get", "k"]),
        &["no arena at", "nothing-here", "is larderd running?"],
    );

    let junk = d.path("junk");
    std::fs::write(&junk, vec![0x5a; 16 << 10]).unwrap();
    assert_error(
        &go(&junk, &["stats"]),
        &["is not a larder arena", "--arena"],
    );
    let short = d.path("short");
    std::fs::write(&short, b"hi").unwrap();
    assert_error(&go(&short, &["info"]), &["is not a larder arena"]);

    assert_error(&go(&d.0, &["info"]), &["is a directory"]);

    // LARDER_ARENA is read when --arena is absent.
    let r = run({
        let mut c = Command::cargo_bin("cachectl").unwrap();
        c.env("LARDER_ARENA", &missing).args(["get", "k"]);
        c
    });
    assert_error(&r, &["no arena at", "nothing-here"]);
}

#[test]
fn unreadable_arena() {
    use std::os::unix::fs::PermissionsExt;
    let (_d, p, cache) = arena("perm");
    drop(cache);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .is_ok()
    {
        eprintln!("skipping unreadable_arena: permissions do not deny this user (root?)");
        return;
    }
    assert_error(
        &go(&p, &["get", "k"]),
        &["permission denied on", "add your user to group"],
    );
}

#[test]
fn completions_and_man_page() {
    // Neither needs an arena.
    let missing = Path::new("/nonexistent/arena");
    let r = go(missing, &["completions", "bash"]);
    assert_eq!(r.code, 0, "{}", r.err);
    let t = r.stdout();
    assert!(
        t.contains("cachectl") && t.contains("complete") && t.contains("snapshot"),
        "{t}"
    );
    for sh in ["zsh", "fish", "elvish", "powershell"] {
        let r = go(missing, &["completions", sh]);
        assert_eq!(r.code, 0);
        assert!(!r.out.is_empty());
    }
    assert_eq!(go(missing, &["completions", "tcsh"]).code, 2);

    let r = go(missing, &["man"]);
    assert_eq!(r.code, 0, "{}", r.err);
    let t = r.stdout();
    assert!(
        t.starts_with(".ie") || t.contains(".TH cachectl"),
        "{}",
        &t[..t.len().min(200)]
    );
    assert!(t.contains(".TH cachectl") && t.contains(".SH NAME") && t.contains("LARDER_ARENA"));
}

#[test]
fn looking_needs_no_process_slot() {
    // One slot, held by this test: item commands are refused with a way out, while stats,
    // info and watch still work and do not count cachectl as a client.
    let dir = Dir::new("full");
    let p = dir.path("arena");
    let config = Config::new(8 << 20)
        .max_value_len(64 << 10)
        .max_processes(1);
    let cache = Cache::create(&p, &config).unwrap();
    cache.set(b"a", b"1", None).unwrap();

    assert_error(&go(&p, &["get", "a"]), &["process slots", "cachectl stats"]);
    let s = go(&p, &["--json", "stats"]);
    assert_eq!(s.code, 0, "{}", s.err);
    let j = s.json();
    assert_eq!(j["items"], 1, "{j}");
    assert_eq!(j["processes"].as_array().map(Vec::len), Some(1), "{j}");
    let i = go(&p, &["info"]);
    assert_eq!(i.code, 0, "{}", i.err);
    assert!(i.stdout().contains("1 processes"), "{}", i.stdout());
    let w = go(&p, &["watch", "--count", "1", "--interval", "100ms"]);
    assert_eq!(w.code, 0, "{}", w.err);
}
