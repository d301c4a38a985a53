"""The image store benchmark runs end to end in --quick mode (files, SQLite, PostgreSQL)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.postgres
def test_bench_image_store_quick_measures_every_store(postgres_url: str, tmp_path: Path) -> None:
    out = tmp_path / "images.json"
    script = REPO_ROOT / "benchmarks" / "bench_image_store.py"
    result = subprocess.run(
        [sys.executable, str(script), "--quick", "--json", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert set(figures["ms_per_operation"]) == {str(64 * 1024), str(1024 * 1024)}
    for by_store in figures["ms_per_operation"].values():
        assert set(by_store) == {"files", "sqlite", "postgres"}
        for row in by_store.values():
            assert all(row[op] > 0 for op in ("save", "again", "load"))
    for ratios in figures["ratio_to_files"].values():
        assert set(ratios) == {"sqlite", "postgres"}
    assert "postgres" in result.stdout and "/files" in result.stdout
