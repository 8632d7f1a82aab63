//! The memcached-protocol listener of the real `larderd`: exact replies for every text
//! command, noreply, pipelining, memcached's exptime rules, bad input (unknown commands, bad
//! lines, bad data chunks, values over the limit, lines over the limit), the connection
//! limit, items shared with linked clients, and the socket removed at SIGTERM.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use larder::Cache;
use larder_testkit::Daemon;

struct Server {
    _dir: tempfile::TempDir,
    sock: PathBuf,
    arena: PathBuf,
    metrics: PathBuf,
    daemon: Daemon,
}

fn server(tag: &str, env: &[(&str, &str)]) -> Server {
    let dir = tempfile::Builder::new()
        .prefix(&format!("larder-listen-{tag}-"))
        .tempdir()
        .unwrap();
    let sock = dir.path().join("memcached.sock");
    let arena = dir.path().join("arena");
    let metrics = dir.path().join("metrics.prom");
    let mut all = vec![
        ("LARDER_LISTEN_MEMCACHED", sock.to_str().unwrap()),
        ("LARDER_METRICS_TEXTFILE", metrics.to_str().unwrap()),
        ("LARDER_SWEEP_INTERVAL", "100ms"),
    ];
    all.extend_from_slice(env);
    let mut daemon = Daemon::spawn(env!("CARGO_BIN_EXE_larderd"), dir.path(), &arena, tag, &all);
    daemon.ready().expect("larderd ready");
    Server {
        _dir: dir,
        sock,
        arena,
        metrics,
        daemon,
    }
}

fn connect(p: &Path) -> UnixStream {
    let s = UnixStream::connect(p).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Sends `req` and reads until the reply ends with `end` (or the server closes).
fn exchange(s: &mut UnixStream, req: &[u8], end: &[u8]) -> Vec<u8> {
    s.write_all(req).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while !got.ends_with(end) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "reading the reply to {:?}: {e}; got {:?}",
                String::from_utf8_lossy(req),
                String::from_utf8_lossy(&got)
            ),
        }
    }
    got
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn every_text_command_answers_as_memcached_does() {
    let srv = server("cmds", &[]);
    let mut s = connect(&srv.sock);
    let cases: &[(&[u8], &str)] = &[
        (b"get k\r\n", "END\r\n"),
        (b"set k 0 0 5\r\nhello\r\n", "STORED\r\n"),
        (b"get k\r\n", "VALUE k 0 5\r\nhello\r\nEND\r\n"),
        (b"add k 0 0 1\r\nx\r\n", "NOT_STORED\r\n"),
        (b"add a 0 0 1\r\nx\r\n", "STORED\r\n"),
        (b"replace nope 0 0 1\r\nx\r\n", "NOT_STORED\r\n"),
        (b"replace a 0 0 1\r\ny\r\n", "STORED\r\n"),
        (
            b"get a k nope\r\n",
            "VALUE a 0 1\r\ny\r\nVALUE k 0 5\r\nhello\r\nEND\r\n",
        ),
        (b"append k 0 0 6\r\n world\r\n", "STORED\r\n"),
        (b"prepend k 0 0 2\r\n> \r\n", "STORED\r\n"),
        (b"get k\r\n", "VALUE k 0 13\r\n> hello world\r\nEND\r\n"),
        (b"append nope 0 0 1\r\nx\r\n", "NOT_STORED\r\n"),
        (b"cas nope 0 0 1 1\r\nx\r\n", "NOT_FOUND\r\n"),
        (b"set n 0 0 2\r\n41\r\n", "STORED\r\n"),
        (b"incr n 1\r\n", "42\r\n"),
        (b"incr n 18446744073709551615\r\n", "41\r\n"),
        (b"decr n 100\r\n", "0\r\n"),
        (b"incr nope 1\r\n", "NOT_FOUND\r\n"),
        (
            b"incr k 1\r\n",
            "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
        ),
        (
            b"incr n abc\r\n",
            "CLIENT_ERROR invalid numeric delta argument\r\n",
        ),
        (b"touch n 100\r\n", "TOUCHED\r\n"),
        (b"touch nope 100\r\n", "NOT_FOUND\r\n"),
        (b"delete a\r\n", "DELETED\r\n"),
        (b"delete a\r\n", "NOT_FOUND\r\n"),
        (
            b"delete k 5\r\n",
            "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n",
        ),
        (b"bogus\r\n", "ERROR\r\n"),
        (b"\r\n", "ERROR\r\n"),
        (
            b"set k 0 0 notanumber\r\n",
            "CLIENT_ERROR bad command line format\r\n",
        ),
        // memcached reads exactly the announced bytes and "\r\n"; what is left ("\n") is
        // an empty line.
        (
            b"set k 0 0 1\r\nxy\r\n",
            "CLIENT_ERROR bad data chunk\r\nERROR\r\n",
        ),
        (b"set f 5 0 1\r\nx\r\n", "STORED\r\n"),
        (b"get f\r\n", "VALUE f 5 1\r\nx\r\nEND\r\n"),
        (b"append f 9 0 1\r\ny\r\n", "STORED\r\n"),
        (b"get f\r\n", "VALUE f 5 2\r\nxy\r\nEND\r\n"),
        (b"verbosity 1\r\n", "OK\r\n"),
        (b"mn\r\n", "MN\r\n"),
        (b"shutdown\r\n", "ERROR: shutdown not enabled\r\n"),
        (
            b"version\r\n",
            concat!("VERSION ", env!("CARGO_PKG_VERSION"), "\r\n"),
        ),
    ];
    for (req, want) in cases {
        let got = exchange(&mut s, req, b"\r\n");
        assert_eq!(text(&got), *want, "request {:?}", text(req));
    }
    // gets, then cas with its token and with a stale one.
    let got = text(&exchange(&mut s, b"gets n\r\n", b"END\r\n"));
    let token: u64 = got
        .lines()
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let stale = format!("cas n 0 0 1 {}\r\n5\r\n", token + 1);
    assert_eq!(
        text(&exchange(&mut s, stale.as_bytes(), b"\r\n")),
        "EXISTS\r\n"
    );
    let good = format!("cas n 0 0 1 {token}\r\n7\r\n");
    assert_eq!(
        text(&exchange(&mut s, good.as_bytes(), b"\r\n")),
        "STORED\r\n"
    );
    // gat touches and returns; gats adds the token.
    let got = text(&exchange(&mut s, b"gats 100 n\r\n", b"END\r\n"));
    assert!(
        got.starts_with("VALUE n 0 1 ") && got.ends_with("\r\n7\r\nEND\r\n"),
        "{got}"
    );
    let stats = text(&exchange(&mut s, b"stats\r\n", b"END\r\n"));
    for k in [
        "pid",
        "uptime",
        "curr_items",
        "bytes",
        "get_hits",
        "get_misses",
        "evictions",
        "curr_connections",
    ] {
        assert!(
            stats.contains(&format!("STAT {k} ")),
            "stats lacks {k}: {stats}"
        );
    }
    let settings = text(&exchange(&mut s, b"stats settings\r\n", b"END\r\n"));
    assert!(settings.contains("STAT item_size_max 4096"), "{settings}");
    assert_eq!(text(&exchange(&mut s, b"flush_all\r\n", b"\r\n")), "OK\r\n");
    assert_eq!(text(&exchange(&mut s, b"get n k\r\n", b"\r\n")), "END\r\n");
    assert_eq!(
        text(&exchange(&mut s, b"quit\r\n", b"\r\n")),
        "",
        "quit closes"
    );
}

#[test]
fn exptime_noreply_and_pipelining() {
    let srv = server("exp", &[]);
    let mut s = connect(&srv.sock);
    // Pipelined, noreply ones silent: only the gets answer.
    let got = exchange(
        &mut s,
        b"set a 0 0 1 noreply\r\n1\r\nset b 0 -1 1\r\n2\r\nset c 0 1 1 noreply\r\n3\r\nset d 0 2000000000 1\r\n4\r\nset w 0 4000000000 1\r\n5\r\ndelete nope noreply\r\nget a b c d w\r\n",
        b"END\r\n",
    );
    assert_eq!(
        text(&got),
        "STORED\r\nSTORED\r\nSTORED\r\nVALUE a 0 1\r\n1\r\nVALUE c 0 1\r\n3\r\nVALUE d 0 1\r\n4\r\nEND\r\n",
        "negative exptime stores nothing live; above 30 days an absolute time; past 2^31 it wraps to negative, as memcached"
    );
    let cache = Cache::open(&srv.arena).unwrap();
    let ttl = cache.ttl(b"d").unwrap().unwrap().unwrap();
    assert!(
        ttl > Duration::from_secs(1_000_000),
        "absolute exptime in the future: {ttl:?}"
    );
    // An absolute time in the past expires at once.
    assert_eq!(
        text(&exchange(
            &mut s,
            b"set e 0 2592001 1\r\n5\r\nget e\r\n",
            b"END\r\n"
        )),
        "STORED\r\nEND\r\n"
    );
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(
        text(&exchange(&mut s, b"get c\r\n", b"END\r\n")),
        "END\r\n",
        "1 s TTL over"
    );
    // Linked clients see the listener's items and the other way round.
    cache.set(b"linked", b"from rust", None).unwrap();
    assert_eq!(
        text(&exchange(&mut s, b"get linked\r\n", b"END\r\n")),
        "VALUE linked 0 9\r\nfrom rust\r\nEND\r\n"
    );
    assert_eq!(cache.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
}

#[test]
fn oversize_values_and_lines_are_refused_and_the_connection_recovers_or_closes() {
    let srv = server("bad", &[]);
    let mut s = connect(&srv.sock);
    let mut big = b"set big 0 0 5000\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'x', 5000));
    big.extend_from_slice(b"\r\nget big\r\n");
    assert_eq!(
        text(&exchange(&mut s, &big, b"END\r\n")),
        "SERVER_ERROR object too large for cache\r\nEND\r\n",
        "the data block is dropped and the next request served"
    );
    let mut key = b"get ".to_vec();
    key.extend(std::iter::repeat_n(b'k', 9000));
    key.extend_from_slice(b"\r\n");
    assert_eq!(
        text(&exchange(&mut s, &key, b"\r\n")),
        "CLIENT_ERROR bad command line format\r\n",
        "a key over 250 bytes, as memcached answers"
    );
    let mut long = b"get ".to_vec();
    long.extend(std::iter::repeat_n(b'k', 70_000));
    assert_eq!(
        text(&exchange(&mut s, &long, b"\r\n")),
        "CLIENT_ERROR line too long\r\n"
    );
    let mut buf = [0u8; 16];
    assert_eq!(
        s.read(&mut buf).unwrap_or(0),
        0,
        "closed after a line over the limit"
    );
    // A client that goes away mid-value loses nobody else's data.
    let mut half = connect(&srv.sock);
    half.write_all(b"set torn 0 0 100\r\nonly part").unwrap();
    drop(half);
    let mut s = connect(&srv.sock);
    assert_eq!(
        text(&exchange(&mut s, b"get torn\r\n", b"END\r\n")),
        "END\r\n"
    );
}

#[test]
fn connections_over_the_limit_are_refused() {
    let srv = server("limit", &[("LARDER_MAX_CONNECTIONS", "2")]);
    let mut a = connect(&srv.sock);
    let mut b = connect(&srv.sock);
    assert!(text(&exchange(&mut a, b"version\r\n", b"\r\n")).starts_with("VERSION"));
    assert!(text(&exchange(&mut b, b"version\r\n", b"\r\n")).starts_with("VERSION"));
    let mut c = connect(&srv.sock);
    // The refusal is written at accept and the connection closed: read it without sending
    // anything (a write could meet the closed socket first).
    let got = text(&exchange(&mut c, b"", b"\r\n"));
    assert_eq!(got, "ERROR Too many open connections\r\n");
    drop(a);
    std::thread::sleep(Duration::from_millis(1500));
    let mut d = connect(&srv.sock);
    assert!(text(&exchange(&mut d, b"version\r\n", b"\r\n")).starts_with("VERSION"));
}

#[test]
fn sigterm_stops_the_listener_and_removes_its_socket() {
    let mut srv = server("term", &[]);
    assert!(srv.sock.exists());
    let st = srv.daemon.stop();
    assert!(st.success(), "{st}");
    assert!(!srv.sock.exists(), "socket file left behind");
}

#[test]
fn the_metrics_file_counts_the_listeners_connections_commands_and_errors() {
    let srv = server("metrics", &[]);
    let mut s = connect(&srv.sock);
    exchange(&mut s, b"set k 0 0 1\r\nv\r\nget k k\r\n", b"END\r\n");
    exchange(&mut s, b"bogus\r\n", b"\r\n");
    let want = [
        "larder_listener_connections{",
        "larder_listener_connections_total{",
        "larder_listener_set_total{",
        "larder_listener_get_keys_total{",
        "larder_listener_protocol_errors_total{",
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&srv.metrics).unwrap_or_default();
        let value = |name: &str| -> Option<f64> {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
        };
        if want.iter().all(|w| value(w).is_some()) && value(want[4]) == Some(1.0) {
            assert_eq!(value(want[0]), Some(1.0), "{text}");
            assert_eq!(value(want[2]), Some(1.0), "{text}");
            assert_eq!(value(want[3]), Some(2.0), "{text}");
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metrics file lacks the listener's counters:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The documented difference from memcached: a CAS token names the exact item, so `touch`
/// (a copy with the new expiry) gives the value a new token, and a `cas` with the old one
/// answers EXISTS; the client re-reads, as after any other change.
#[test]
fn a_touch_gives_a_new_cas_token_and_the_old_one_answers_exists() {
    let srv = server("castouch", &[]);
    let mut s = connect(&srv.sock);
    let token = |s: &mut UnixStream| {
        let got = text(&exchange(s, b"gets t\r\n", b"END\r\n"));
        got.lines()
            .next()
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .to_string()
    };
    exchange(&mut s, b"set t 0 0 1\r\na\r\n", b"\r\n");
    let before = token(&mut s);
    assert_eq!(token(&mut s), before, "a read keeps the token");
    assert_eq!(
        text(&exchange(&mut s, b"touch t 100\r\n", b"\r\n")),
        "TOUCHED\r\n"
    );
    let after = token(&mut s);
    assert_ne!(after, before, "larder's token changes on touch");
    let stale = format!("cas t 0 0 1 {before}\r\nb\r\n");
    assert_eq!(
        text(&exchange(&mut s, stale.as_bytes(), b"\r\n")),
        "EXISTS\r\n"
    );
    let fresh = format!("cas t 0 0 1 {after}\r\nb\r\n");
    assert_eq!(
        text(&exchange(&mut s, fresh.as_bytes(), b"\r\n")),
        "STORED\r\n"
    );
}

#[test]
fn cachectl_stats_shows_the_listeners_counters() {
    let srv = server("ctlstats", &[]);
    let mut s = connect(&srv.sock);
    exchange(&mut s, b"set k 0 0 1\r\nv\r\nget k k\r\n", b"END\r\n");
    exchange(&mut s, b"bogus\r\n", b"\r\n");
    let ctl = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cachectl"))
            .env_remove("LARDER_ARENA")
            .arg("--arena")
            .arg(&srv.arena)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let sock = srv.sock.to_str().unwrap();
    let (code, out, err) = ctl(&["stats", "--json", "--listener", sock]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let l = &v["listener"];
    // cachectl's own connection is one of them, and its `stats` is not yet counted.
    assert_eq!(l["connections"], 2, "{v}");
    assert_eq!(l["get_keys_total"], 2, "{v}");
    assert_eq!(l["set_total"], 1, "{v}");
    assert_eq!(l["protocol_errors_total"], 1, "{v}");
    let (_, out, _) = ctl(&["stats", "--format", "prometheus", "--listener", sock]);
    assert!(out.contains("\nlarder_listener_set_total 1\n"), "{out}");
    let (_, out, _) = ctl(&["stats", "--listener", sock]);
    assert!(
        out.contains("listener ") && out.contains("protocol errors 1"),
        "{out}"
    );
    // A listener that is not there: a clear error, exit 2.
    let (code, _, err) = ctl(&["stats", "--listener", "/nonexistent/larder.sock"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cannot reach larderd's listener"), "{err}");
}

/// The meta protocol's stale-while-revalidate is larder's lease and stale grace: a memcached
/// client and a linked one wait for each other's refresh, and see each other's stale values.
#[test]
fn meta_leases_and_stale_values_are_shared_with_linked_clients() {
    use larder::{Leased, LoadOptions, SetOptions};
    let srv = server("meta", &[]);
    let cache = Cache::open(&srv.arena).unwrap();
    let mut s = connect(&srv.sock);
    let mut other = connect(&srv.sock);
    let opts = LoadOptions::new().lease(Duration::from_secs(30));
    let mut buf = Vec::new();

    // A linked loader holds the key's lease: the memcached client is told to wait (Z).
    let Leased::Acquired(lease) = cache.get_or_lease(b"a", &opts, &mut buf).unwrap() else {
        panic!("the lease is free");
    };
    let r = text(&exchange(&mut s, b"mg a v N30\r\n", b"\r\n\r\n"));
    assert!(r.starts_with("VA 0") && r.contains(" Z"), "{r}");
    assert!(!r.contains(" W"), "{r}");
    cache
        .fill_lease(b"a", lease, b"loaded", &SetOptions::new().flags(3))
        .unwrap();
    assert_eq!(
        text(&exchange(&mut s, b"mg a v f\r\n", b"loaded\r\n")),
        "VA 6 f3\r\nloaded\r\n"
    );

    // The memcached client wins (W): a linked loader waits for it; its store on another
    // connection gives the lease back.
    let r = text(&exchange(&mut s, b"mg b v N30\r\n", b"\r\n\r\n"));
    assert!(r.contains(" W"), "{r}");
    assert!(matches!(
        cache.get_or_lease(b"b", &opts, &mut buf).unwrap(),
        Leased::Wait { .. }
    ));
    assert_eq!(
        text(&exchange(&mut other, b"ms b 5 T60\r\nfresh\r\n", b"\r\n")),
        "HD\r\n"
    );
    assert_eq!(cache.get(b"b").unwrap().as_deref(), Some(&b"fresh"[..]));
    cache.delete(b"b").unwrap();
    assert!(
        matches!(
            cache.get_or_lease(b"b", &opts, &mut buf).unwrap(),
            Leased::Acquired(_)
        ),
        "the store gave the memcached client's lease back"
    );

    // `md … I` makes a value stale for everyone: linked `get` misses it, `get_stale`
    // serves it, and one `mg` wins its refresh (X W) while the next is told to wait (X Z).
    cache
        .set(b"c", b"old", Some(Duration::from_secs(600)))
        .unwrap();
    assert_eq!(
        text(&exchange(&mut s, b"md c I T30\r\n", b"\r\n")),
        "HD\r\n"
    );
    assert_eq!(cache.get(b"c").unwrap(), None);
    let st = cache
        .get_stale(b"c")
        .unwrap()
        .expect("stale within its grace");
    assert!(st.stale && st.value == b"old");
    let r = text(&exchange(&mut s, b"mg c v t\r\n", b"old\r\n"));
    assert!(r.starts_with("VA 3 t") && r.contains(" X W"), "{r}");
    let r = text(&exchange(&mut other, b"mg c v\r\n", b"old\r\n"));
    assert_eq!(r, "VA 3 Z X\r\nold\r\n");
    // A refused request is answered as such and the connection goes on.
    assert_eq!(
        text(&exchange(&mut s, b"ms c 1 c\r\nx\r\nmn\r\n", b"MN\r\n")),
        "CLIENT_ERROR c (return CAS) on ms is not supported by larderd: read the token with mg c\r\nMN\r\n"
    );
}

#[test]
fn a_delete_during_a_won_refresh_keeps_the_refreshed_value_out() {
    // The cache-aside write path over memcached: a client wins the refresh of a missing key
    // (W) and reads the backing store; a writer changes the store and deletes the key (text
    // `delete`, `md`, or a linked `invalidate`); the refresh's `ms` then carries a value
    // read before the change. It is not stored (NS), and the next `mg` wins anew.
    let srv = server("poison", &[]);
    let cache = Cache::open(&srv.arena).unwrap();
    let mut loader = connect(&srv.sock);
    let mut writer = connect(&srv.sock);
    for delete in [&b"delete k\r\n"[..], b"md k\r\n", b"linked"] {
        let what = text(delete);
        let r = text(&exchange(&mut loader, b"mg k v N30\r\n", b"\r\n\r\n"));
        assert!(r.contains(" W"), "{what}: {r}");
        if delete == b"linked" {
            assert!(!cache.invalidate(b"k").unwrap());
        } else {
            let r = text(&exchange(&mut writer, delete, b"\r\n"));
            assert!(r == "NOT_FOUND\r\n" || r == "NF\r\n", "{what}: {r}");
        }
        assert_eq!(
            text(&exchange(&mut loader, b"ms k 3 T60\r\nold\r\n", b"\r\n")),
            "NS\r\n",
            "{what}"
        );
        assert_eq!(cache.get(b"k").unwrap(), None, "{what}");
        // The next refresh wins (the poisoned lease is free) and is kept.
        let r = text(&exchange(&mut loader, b"mg k v N30\r\n", b"\r\n\r\n"));
        assert!(r.contains(" W"), "{what}: {r}");
        assert_eq!(
            text(&exchange(&mut loader, b"ms k 3 T60\r\nnew\r\n", b"\r\n")),
            "HD\r\n",
            "{what}"
        );
        assert_eq!(cache.get(b"k").unwrap().as_deref(), Some(&b"new"[..]));
        cache.delete(b"k").unwrap();
    }

    // `md … I` on a live value takes a refresh already under way away too.
    cache
        .set(b"s", b"v1", Some(Duration::from_secs(1)))
        .unwrap();
    let r = text(&exchange(&mut loader, b"mg s v R30\r\n", b"v1\r\n"));
    assert!(r.contains(" W"), "{r}");
    assert_eq!(
        text(&exchange(&mut writer, b"md s I T30\r\n", b"\r\n")),
        "HD\r\n"
    );
    assert_eq!(
        text(&exchange(&mut loader, b"ms s 2 T60\r\nv2\r\n", b"\r\n")),
        "NS\r\n"
    );
    let r = text(&exchange(&mut writer, b"mg s v\r\n", b"v1\r\n"));
    assert!(
        r.contains(" X W"),
        "the stale value's refresh is won anew: {r}"
    );
}

#[test]
fn a_refresh_belongs_to_the_connection_that_won_it() {
    let srv = server("owner", &[]);
    let cache = Cache::open(&srv.arena).unwrap();
    let mut c: Vec<UnixStream> = (0..3).map(|_| connect(&srv.sock)).collect();
    let won = |s: &mut UnixStream, key: &str| {
        let r = text(&exchange(
            s,
            format!("mg {key} v N30\r\n").as_bytes(),
            b"\r\n\r\n",
        ));
        assert!(r.contains(" W"), "{key}: {r}");
    };
    let ms = |s: &mut UnixStream, key: &str, v: &str| {
        let req = format!("ms {key} {} T60\r\n{v}\r\n", v.len());
        text(&exchange(s, req.as_bytes(), b"\r\n"))
    };
    let value = |key: &str| cache.get(key.as_bytes()).unwrap().map(|v| text(&v));

    // A writer's own write after its delete is stored; the refresh from before the delete
    // is the one refused.
    won(&mut c[0], "f1");
    assert_eq!(text(&exchange(&mut c[1], b"md f1\r\n", b"\r\n")), "NF\r\n");
    assert_eq!(ms(&mut c[1], "f1", "NEW"), "HD\r\n");
    assert_eq!(ms(&mut c[0], "f1", "OLD"), "NS\r\n");
    assert_eq!(value("f1").as_deref(), Some("NEW"));

    // A second win after the delete: the first winner's store is refused whichever order
    // the two stores come in.
    for (first, second) in [(0, 2), (2, 0)] {
        let key = format!("f2-{first}");
        won(&mut c[0], &key);
        let del = format!("delete {key}\r\n");
        assert_eq!(
            text(&exchange(&mut c[1], del.as_bytes(), b"\r\n")),
            "NOT_FOUND\r\n"
        );
        won(&mut c[2], &key);
        for i in [first, second] {
            // Connection 0 won before the delete (read OLD), connection 2 after it.
            let (v, want) = if i == 0 {
                ("OLD", "NS\r\n")
            } else {
                ("NEW", "HD\r\n")
            };
            assert_eq!(ms(&mut c[i], &key, v), want, "{key}: store of {v}");
        }
        assert_eq!(value(&key).as_deref(), Some("NEW"), "{key}");
    }

    // A pooled client stores its refresh on another connection: a plain store, which ends
    // the refresh, so the key's lease is free for the next miss.
    won(&mut c[0], "pool");
    assert_eq!(ms(&mut c[1], "pool", "v"), "HD\r\n");
    cache.delete(b"pool").unwrap();
    won(&mut c[2], "pool");
    assert_eq!(ms(&mut c[2], "pool", "v2"), "HD\r\n");

    // A winner that goes away leaves the others waiting (Z), as memcached's win does,
    // until a store of the key ends the refresh.
    won(&mut c[0], "gone");
    drop(c.remove(0));
    std::thread::sleep(Duration::from_millis(100));
    let r = text(&exchange(&mut c[0], b"mg gone v N30\r\n", b"\r\n\r\n"));
    assert!(r.contains(" Z") && !r.contains(" W"), "{r}");
    assert_eq!(ms(&mut c[0], "gone", "v"), "HD\r\n");
    cache.delete(b"gone").unwrap();
    won(&mut c[1], "gone");
}

/// Socket activation (systemd/larderd.socket): systemd binds the socket and starts larderd
/// on the first connection with it as descriptor 3 (LISTEN_FDS); larderd serves it as a
/// `--listen-memcached` one. systemd-socket-activate (Debian's `systemd`) plays systemd.
#[test]
fn a_socket_systemd_passes_is_served() {
    if std::process::Command::new("systemd-socket-activate")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("LARDER_REQUIRE_SOCKET_ACTIVATION").is_none(),
            "systemd-socket-activate is required (LARDER_REQUIRE_SOCKET_ACTIVATION)"
        );
        eprintln!("systemd-socket-activate not installed: skipped");
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("larder-listen-activation-")
        .tempdir()
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The testkit starts an executable with the daemon's environment: a script that has
    // systemd-socket-activate bind the port and exec larderd with it.
    let wrapper = dir.path().join("activate.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec systemd-socket-activate -l 127.0.0.1:{port} {} {}\n",
            // It passes the child only the variables it is told to.
            [
                "LARDER_ARENA",
                "LARDER_SIZE",
                "LARDER_MAX_VALUE",
                "LARDER_SEGMENT_SIZE",
                "NOTIFY_SOCKET",
                "RUST_LOG",
            ]
            .map(|v| format!("-E {v}"))
            .join(" "),
            env!("CARGO_BIN_EXE_larderd")
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut d = Daemon::spawn(&wrapper, dir.path(), &dir.path().join("arena"), "act", &[]);
    // The port is bound before larderd runs; the first connection starts it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "no socket: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"set k 0 0 2\r\nhi\r\nget k\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.ends_with(b"END\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed; log:\n{}", d.log());
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(text(&got), "STORED\r\nVALUE k 0 2\r\nhi\r\nEND\r\n");
    d.ready().expect("larderd ready");
    let log = d.log();
    assert!(
        log.contains("socket from systemd"),
        "the log says where the socket came from:\n{log}"
    );
    assert!(
        log.contains(&dir.path().join("arena").display().to_string()),
        "larderd got the test's environment (its arena), not the defaults:\n{log}"
    );
}
