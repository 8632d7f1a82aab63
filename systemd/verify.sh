#!/usr/bin/env bash
# Checks the unit files with `systemd-analyze verify`, on copies whose ExecStart points at
# a built larderd (the installed path does not exist on a build machine).
#
#   systemd/verify.sh [path/to/larderd]     (default: target/debug/larderd, else release)
#
# Exits 0 with a message when systemd-analyze is not installed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "verify.sh: systemd-analyze not found; unit files not checked"
    exit 0
fi

bin="${1:-}"
if [[ -z "$bin" ]]; then
    for b in "$repo/target/debug/larderd" "$repo/target/release/larderd"; do
        if [[ -x "$b" ]]; then bin="$b"; break; fi
    done
fi
if [[ -z "$bin" || ! -x "$bin" ]]; then
    echo "verify.sh: no larderd binary (build it, or pass its path)" >&2
    exit 1
fi
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for unit in larderd.service larderd@.service; do
    sed "s|^ExecStart=.*|ExecStart=$bin|" "$here/$unit" >"$tmp/$unit"
done
# A template is verified through an instance name.
ln -s "larderd@.service" "$tmp/larderd@check.service"
# Each drop-in example, verified as the unit with the drop-in's sections appended (what
# systemd makes of a unit and its drop-in).
units=(larderd.service larderd@check.service larderd.socket)
cp "$here/larderd.socket" "$tmp/larderd.socket"
for d in "$here"/larderd.service.d/*.conf.example; do
    [[ -e "$d" ]] || continue
    name="larderd-$(basename "$d" .conf.example).service"
    cat "$tmp/larderd.service" "$d" >"$tmp/$name"
    units+=("$name")
done

status=0
for unit in "${units[@]}"; do
    # verify prints warnings (and exits 0) for problems it tolerates; treat any output
    # about our units as a failure so a typo in a setting name is not missed.
    out="$(cd "$tmp" && SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no "$tmp/$unit" 2>&1)" || status=1
    ours="$(grep -E "larderd" <<<"$out" || true)"
    if [[ -n "$ours" ]]; then
        echo "$ours"
        status=1
    fi
    if [[ $status -ne 0 ]]; then
        echo "verify.sh: $unit FAILED" >&2
        echo "$out" >&2
        exit 1
    fi
    echo "verify.sh: $unit ok"
done
