#!/usr/bin/env bash
# Installs liblarder (shared and static), its headers and larder.pc under a prefix.
#
#   ffi/install.sh [--prefix DIR] [--lib-dir DIR]
#
# --prefix   where to install (default /usr/local): lib/, include/, lib/pkgconfig/
# --lib-dir  where the built liblarder_ffi.{so,a} are (default: build them with
#            `cargo build --release -p larder-ffi` and use target/release)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
prefix=/usr/local
libdir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --lib-dir) libdir="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ -z "$libdir" ]; then
  (cd "$here/.." && cargo build --release -p larder-ffi)
  libdir="$(cd "$here/.." && cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release"
fi
for f in liblarder_ffi.so liblarder_ffi.a; do
  [ -f "$libdir/$f" ] || { echo "install.sh: no $libdir/$f (build larder-ffi first)" >&2; exit 1; }
done

version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/Cargo.toml" | head -1)"
abi="${version%%.*}"
# The soname is liblarder.so.<ABI> (ffi/build.rs); for 0.x the ABI is 0.
soname="liblarder.so.$abi"

install -d "$prefix/lib/pkgconfig" "$prefix/include"
install -m 0755 "$libdir/liblarder_ffi.so" "$prefix/lib/liblarder.so.$version"
ln -sf "liblarder.so.$version" "$prefix/lib/$soname"
ln -sf "$soname" "$prefix/lib/liblarder.so"
install -m 0644 "$libdir/liblarder_ffi.a" "$prefix/lib/liblarder.a"
install -m 0644 "$here/include/larder.h" "$here/include/larder_ffi.h" "$prefix/include/"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" "$here/larder.pc.in" \
  > "$prefix/lib/pkgconfig/larder.pc"
echo "installed liblarder $version under $prefix"
