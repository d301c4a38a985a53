#!/usr/bin/env bash
# Creates .venv (Python 3.11+) and installs FakeScope with its test tools. Safe to run again.
# Sourced by serve.sh and test.sh; run it alone to just set up.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || { echo "FakeScope needs Python 3.11 or newer (found $("$PYTHON" --version))" >&2; exit 1; }
    "$PYTHON" -c 'import ensurepip' 2>/dev/null \
        || { echo "$PYTHON cannot create virtual environments: install python3-venv (Debian, Ubuntu)" >&2; exit 1; }
    "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate

stamp=.venv/.fakescope-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    # pip runs --quiet: say why nothing seems to happen for a few minutes.
    echo "FakeScope: installing into .venv (the first time takes several minutes)..." >&2
    python -m pip install --quiet --upgrade pip
    # Without a GPU, install the CPU build of torch first; an unpinned torch pulls several GB of CUDA.
    if ! python -c 'import torch' 2>/dev/null; then
        if command -v nvidia-smi >/dev/null 2>&1; then
            python -m pip install --quiet "${FAKESCOPE_TORCH:-torch}"
        else
            # FAKESCOPE_TORCH_INDEX: an index with CPU builds (PyPI's Linux wheel bundles CUDA).
            python -m pip install --quiet ${FAKESCOPE_TORCH_INDEX:+--index-url "$FAKESCOPE_TORCH_INDEX"} \
                "${FAKESCOPE_TORCH:-torch==2.13.0}"
        fi
    fi
    python -m pip install --quiet -e ".[dev]"
    touch "$stamp"
fi
