"""The server benchmark runs end to end in --quick mode and reports its three figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_bench_server_quick_prints_and_records_the_four_figures(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "bench_server.py"),
            "--quick",
            "--json",
            str(out),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ratio" in result.stdout and "p99" in result.stdout and "batching gain" in result.stdout
    assert "explanation batching gain" in result.stdout and "ttft ratio" in result.stdout
    figures = json.loads(out.read_text())
    assert figures["quick"] is True
    assert figures["ratio"] > 0 and figures["bare_rps"] > 0
    assert 0 < figures["lookup_median_ms"] <= figures["lookup_p99_ms"]
    assert figures["sequential_per_s"] > 0 and figures["concurrent_per_s"] > 0
    assert figures["explain_sequential_per_s"] > 0 and figures["explain_concurrent_per_s"] > 0
    assert figures["explain_batching_gain"] > 0
    assert figures["streamed_batching_gain"] > 0
    assert figures["ttft_joining_s"] > 0 and figures["ttft_waiting_s"] > 0
