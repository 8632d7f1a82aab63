#!/usr/bin/env bash
# The bindings against their runtimes' own shared caches, same run (docs/performance.md):
# a Lua GET through lua/larder.lua vs ngx.shared.DICT:get inside one nginx worker, and
# Larder\Cache::fetch vs apcu_fetch in one PHP process (reads, and 90/10). Needs nginx with
# the Lua module (libnginx-mod-http-lua), php8.2-cli and php8.2-apcu.
#
#   bash bench/bindings.sh            # 7 interleaved rounds of 200 000 operations each
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-7}
OPS=${OPS:-200000}
work=$(mktemp -d /dev/shm/larder-bindings-XXXXXX)
trap 'kill $(cat "$work/nginx.pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
cargo build --release -q -p larder-ffi -p larderd
bash ffi/install.sh --prefix "$work/prefix" --lib-dir target/release >/dev/null
export LARDER_LIB="$work/prefix/lib/liblarder.so" ARENA="$work/arena"
# A 64 MiB arena, made and held by a larderd as in production.
LARDER_SIZE=64MiB target/release/larderd --arena "$ARENA" >"$work/larderd.log" 2>&1 &
larderd=$!
trap 'kill $larderd 2>/dev/null || true; kill $(cat "$work/nginx.pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do [ -e "$ARENA" ] && break; sleep 0.1; done
sleep 0.5

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
user=""; [ "$(id -u)" = 0 ] && user="user root;"
cat >"$work/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
$user
worker_processes 1;
pid $work/nginx.pid;
error_log $work/error.log;
env LARDER_LIB;
env ARENA;
events { worker_connections 16; }
http {
    access_log off;
    client_body_temp_path $work/body; proxy_temp_path $work/proxy;
    fastcgi_temp_path $work/fastcgi; uwsgi_temp_path $work/uwsgi; scgi_temp_path $work/scgi;
    lua_package_path "$PWD/lua/?.lua;;";
    lua_shared_dict bench 64m;
    server {
        listen 127.0.0.1:$port;
        location /bench { content_by_lua_file $PWD/bench/bindings/nginx_bench.lua; }
    }
}
CONF
nginx -p "$work" -c "$work/nginx.conf"
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.05; done
echo "== nginx, one worker: ns per get of a 100 B value (median, min, max of $ROUNDS rounds)"
curl -s --max-time 600 "http://127.0.0.1:$port/bench?rounds=$ROUNDS&ops=$OPS"
echo "== PHP, one process: ns per operation (median, min, max of $ROUNDS rounds)"
php -d apc.enable_cli=1 -d apc.shm_size=64M bench/bindings/php_bench.php "$ROUNDS" "$OPS"
echo "== PHP, four processes forked after APCu started: wall ns per operation over all four (median, min, max of $ROUNDS rounds)"
php -d apc.enable_cli=1 -d apc.shm_size=64M bench/bindings/php_bench.php "$ROUNDS" "$OPS" 4
