"""The limits benchmark runs end to end in --quick mode on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from server_helpers import run_quick_bench


@pytest.mark.postgres
def test_bench_limits_quick_measures_memory_and_database_limits(
    postgres_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "limits.json"
    stdout = run_quick_bench("bench_limits.py", out)
    assert "postgres database / memory" in stdout
    assert "sqlite database / memory" in stdout
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
