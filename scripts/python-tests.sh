#!/usr/bin/env bash
# The Python package's tests: `pip install ./python` into a fresh venv (as a user would),
# then pytest over python/tests (the API, the Django backend, processes sharing an arena
# with a Rust one, a SIGKILLed writer, fork, gunicorn, pymemcache against larderd's
# memcached listener). Needs python3 with venv and pip, and network access to PyPI for
# maturin, pytest, Django, gunicorn and pymemcache.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${LARDER_PYVENV:-target/pyvenv}"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q pytest "django>=5.2,<5.3" gunicorn pymemcache
"$venv/bin/python" -m pip install -q ./python
cargo build -q --bin cachectl --bin larderd
# From the repository root, so that `import larder` is the installed package (python/larder
# holds only the pure-Python half).
LARDER_CACHECTL="$PWD/target/debug/cachectl" LARDERD="$PWD/target/debug/larderd" "$venv/bin/python" -m pytest -q python/tests "$@"
