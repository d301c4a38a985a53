"""The scale-out benchmark runs end to end in --quick mode against PostgreSQL."""

from __future__ import annotations

import json

import pytest
from server_helpers import run_quick_bench


@pytest.mark.postgres
def test_bench_scale_out_quick_measures_three_deployments(postgres_url: str, tmp_path) -> None:
    out = tmp_path / "scale.json"
    stdout = run_quick_bench("bench_scale_out.py", out)
    assert "api+1 / all" in stdout and "api+2 / all" in stdout
    figures = json.loads(out.read_text())
    assert set(figures["deployments"]) == {"all", "api+1", "api+2"}
    for row in figures["deployments"].values():
        assert row["analyses_per_s"] > 0 and 0 < row["p50_ms"] <= row["p99_ms"]
    assert figures["ratio_api_1_worker_to_all"] > 0
