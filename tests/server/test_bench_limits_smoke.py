"""The limits benchmark runs end to end in --quick mode on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.postgres
def test_bench_limits_quick_measures_memory_and_database_limits(
    postgres_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "limits.json"
    script = REPO_ROOT / "benchmarks" / "bench_limits.py"
    result = subprocess.run(
        [sys.executable, str(script), "--quick", "--json", str(out)],
        cwd=REPO_ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "postgres database / memory" in result.stdout
    assert "sqlite database / memory" in result.stdout
    figures = json.loads(out.read_text())
    assert set(figures["deployments"]) == {
        "sqlite/memory",
        "sqlite/database",
        "postgres/memory",
        "postgres/database",
    }
    for by_spread in figures["deployments"].values():
        assert set(by_spread) == {"one_client", "many_clients"}
        for row in by_spread.values():
            assert row["requests_per_s"] > 0 and 0 < row["p50_ms"] <= row["p99_ms"]
    assert figures["ratio_postgres_database_to_memory"] > 0
    assert figures["ratio_sqlite_database_to_memory"] > 0
