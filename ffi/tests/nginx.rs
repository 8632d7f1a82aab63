//! `lua/larder.lua` inside a real nginx with the Lua module (Debian's
//! `libnginx-mod-http-lua`): four worker processes serve `/set`, `/get` and `/incr` from one
//! arena that this Rust process reads and writes too — every worker serves what Rust stored,
//! four clients' increments over the four workers add up exactly — and a worker SIGKILLed
//! between requests is replaced by nginx and finds every item. Skipped without nginx's Lua module, unless
//! LARDER_REQUIRE_NGINX_LUA is set (CI sets it).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use larder::{Cache, Config};
use support::{
    built, c_tools, free_port, http_get as get, is_root, value_and_flags, wait_http, Killed,
};

const MODULES: &str = "/usr/lib/nginx/modules";

fn nginx_lua() -> bool {
    let ok = Command::new("nginx").arg("-v").output().is_ok()
        && Path::new(MODULES).join("ngx_http_lua_module.so").exists();
    if !ok {
        assert!(
            std::env::var_os("LARDER_REQUIRE_NGINX_LUA").is_none(),
            "nginx with the Lua module is required (LARDER_REQUIRE_NGINX_LUA) but is not installed"
        );
        eprintln!("nginx with the Lua module not installed: skipped");
    }
    ok
}

fn config(dir: &Path, port: u16) -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let d = dir.display();
    // As root, the workers run as `nobody`: not the arena's owner, only in its group
    // (see `share_with_nogroup`), as the workers of a deployment run as a user in the
    // arena's group.
    let root = is_root();
    format!(
        r#"load_module {MODULES}/ndk_http_module.so;
load_module {MODULES}/ngx_http_lua_module.so;
{user}
daemon off;
master_process on;
worker_processes 4;
error_log {d}/error.log info;
pid {d}/nginx.pid;
env LARDER_LIB;
env ARENA;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    lua_package_path "{repo}/lua/?.lua;;";
    server {{
        listen 127.0.0.1:{port};
        location /set {{
            content_by_lua_block {{
                local d = assert(require("larder").open(os.getenv("ARENA")))
                local ok, err = d:set(ngx.var.arg_k, ngx.var.arg_v, 0, 3)
                ngx.say(ok and "STORED" or ("ERR " .. err))
            }}
        }}
        location /get {{
            content_by_lua_block {{
                local d = assert(require("larder").open(os.getenv("ARENA")))
                local v = d:get(ngx.var.arg_k)
                ngx.say(ngx.worker.pid(), " ", v == nil and "MISS" or ("VALUE " .. tostring(v)))
            }}
        }}
        location /incr {{
            content_by_lua_block {{
                local d = assert(require("larder").open(os.getenv("ARENA")))
                local n, err = d:incr(ngx.var.arg_k, 1, 0)
                ngx.say(n and ("COUNT " .. n) or ("ERR " .. err))
            }}
        }}
        location /pid {{
            content_by_lua_block {{ ngx.say(ngx.worker.pid()) }}
        }}
    }}
}}
"#,
        user = if root { "user nobody nogroup;" } else { "" },
        repo = repo.display(),
    )
}

/// The group of `nobody` on Debian.
const NOGROUP: u32 = 65534;

/// Gives the arena to group `nogroup`, read-write for the group only (0660; its directory
/// 0750), as larderd's `--group` does, so that workers running as `nobody` reach it through
/// the group and nothing else.
fn share_with_nogroup(dir: &Path, arena: &Path) {
    use std::os::unix::fs::{chown, PermissionsExt};
    chown(dir, None, Some(NOGROUP)).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750)).unwrap();
    chown(arena, None, Some(NOGROUP)).unwrap();
    std::fs::set_permissions(arena, std::fs::Permissions::from_mode(0o660)).unwrap();
}

#[test]
fn nginx_workers_share_the_arena_with_rust_and_survive_a_killed_worker() {
    if !c_tools() || !nginx_lua() {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("larder-nginx-")
        .tempdir()
        .unwrap();
    let arena: PathBuf = dir.path().join("arena");
    let c = Cache::create(&arena, &Config::new(16 << 20).huge_pages(false)).unwrap();
    if is_root() {
        share_with_nogroup(dir.path(), &arena);
    }
    let port = free_port();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, config(dir.path(), port)).unwrap();
    let _nginx = Killed(
        Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .env("LARDER_LIB", built().prefix.join("lib/liblarder.so"))
            .env("ARENA", &arena)
            .stdout(Stdio::null())
            .spawn()
            .expect("nginx"),
    );
    wait_http(port, "/pid", &dir.path().join("error.log"));

    // nginx writes, Rust reads (with the dict's flags 3 in the high half); Rust writes,
    // nginx reads; both count one counter.
    assert_eq!(get(port, "/set?k=from_nginx&v=hello").unwrap(), "STORED");
    assert_eq!(
        value_and_flags(&c, b"from_nginx"),
        (b"hello".to_vec(), 3 << 16)
    );
    c.set(b"from_rust", b"world", None).unwrap();
    // Every worker serves what Rust stored (requests go to the workers in turn, roughly).
    let mut served = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while served.len() < 4 {
        assert!(
            Instant::now() < deadline,
            "only workers {served:?} answered"
        );
        let r = get(port, "/get?k=from_rust").unwrap();
        let (pid, v) = r.split_once(' ').unwrap();
        assert_eq!(v, "VALUE world", "worker {pid}");
        served.insert(pid.to_string());
    }
    assert!(get(port, "/get?k=absent").unwrap().ends_with(" MISS"));
    // Four clients at once, 50 increments each, over the four workers: exact.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..50 {
                    assert!(get(port, "/incr?k=hits").unwrap().starts_with("COUNT "));
                }
            });
        }
    });
    assert_eq!(
        c.incr(b"hits", 1).unwrap(),
        Some(201),
        "200 counted by the workers"
    );

    // A worker SIGKILLed between requests: nginx starts another, which finds everything.
    let pid: i32 = get(port, "/pid").unwrap().parse().unwrap();
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pids = std::collections::HashSet::new();
    while pids.len() < 4 {
        assert!(Instant::now() < deadline, "no replacement worker: {pids:?}");
        if let Ok(p) = get(port, "/pid") {
            pids.insert(p.parse::<i32>().unwrap());
            pids.retain(|&p| p != pid);
        }
    }
    for _ in 0..20 {
        assert!(get(port, "/get?k=from_rust")
            .unwrap()
            .ends_with(" VALUE world"));
        assert!(get(port, "/get?k=from_nginx")
            .unwrap()
            .ends_with(" VALUE hello"));
    }
    assert_eq!(get(port, "/incr?k=hits").unwrap(), "COUNT 202");
}
