"""The scale-out benchmark runs end to end in --quick mode against PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.postgres
def test_bench_scale_out_quick_measures_three_deployments(postgres_url: str, tmp_path) -> None:
    out = tmp_path / "scale.json"
    script = REPO_ROOT / "benchmarks" / "bench_scale_out.py"
    result = subprocess.run(
        [sys.executable, str(script), "--quick", "--json", str(out)],
        cwd=REPO_ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "api+1 / all" in result.stdout and "api+2 / all" in result.stdout
    figures = json.loads(out.read_text())
    assert set(figures["deployments"]) == {"all", "api+1", "api+2"}
    for row in figures["deployments"].values():
        assert row["analyses_per_s"] > 0 and 0 < row["p50_ms"] <= row["p99_ms"]
    assert figures["ratio_api_1_worker_to_all"] > 0
