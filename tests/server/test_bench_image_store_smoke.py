"""The image store benchmark runs end to end in --quick mode (files, SQLite, PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from server_helpers import run_quick_bench


@pytest.mark.postgres
def test_bench_image_store_quick_measures_every_store(postgres_url: str, tmp_path: Path) -> None:
    out = tmp_path / "images.json"
    stdout = run_quick_bench("bench_image_store.py", out, timeout_s=180)
    figures = json.loads(out.read_text())
    assert set(figures["ms_per_operation"]) == {str(64 * 1024), str(1024 * 1024)}
    for by_store in figures["ms_per_operation"].values():
        assert set(by_store) == {"files", "sqlite", "postgres"}
        for row in by_store.values():
            assert all(row[op] > 0 for op in ("save", "again", "load"))
    for ratios in figures["ratio_to_files"].values():
        assert set(ratios) == {"sqlite", "postgres"}
    assert "postgres" in stdout and "/files" in stdout
