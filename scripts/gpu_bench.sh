#!/usr/bin/env bash
# The GPU benchmark on a bare CUDA machine without network access (issue 7's device runs).
#
#   bash scripts/gpu_bench.sh fetch    # here, with the package index: wheels into .whl/
#   bash scripts/gpu_bench.sh run      # there, with .whl/ carried along: the NF4 run
#
# The device machines come with a CUDA torch (and its triton) but no bitsandbytes, and an
# older transformers than the project's. `fetch` downloads the two wheels the run needs
# (pure-Python transformers, manylinux bitsandbytes); `run` installs them into a scratch
# folder put first on PYTHONPATH, leaving the machine's own packages alone, then runs
# benchmarks/bench_gpu.py and writes its JSON to $OUT (or benchmarks/results/).
# BUDGET_S bounds its optional experiments (default 240 s); QUANT picks nf4, bf16 or both.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
fetch)
    mkdir -p .whl
    python3 -m pip download --no-deps --only-binary=:all: --dest .whl \
        --platform manylinux2014_x86_64 --platform manylinux_2_24_x86_64 \
        --python-version "${PY_VERSION:-3.12}" \
        "bitsandbytes==0.50.2" "transformers==5.24.0"
    ls -l .whl
    ;;
run)
    site=/tmp/fakescope-site
    if ! python -c "import bitsandbytes" 2>/dev/null ||
        ! python -c "import sys, transformers as t; sys.exit(tuple(map(int, t.__version__.split('.')[:2])) < (5, 24))"; then
        python -m pip install --quiet --no-deps --target "$site" .whl/*.whl
        export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    fi
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python -c "import torch, triton, transformers, bitsandbytes as b; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__, 'bitsandbytes', b.__version__)"
    python benchmarks/bench_gpu.py --quantization "${QUANT:-nf4}" \
        --budget-s "${BUDGET_S:-240}" --out "${OUT:-benchmarks/results}"
    ;;
*)
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
