"""The review queue benchmark runs end to end in --quick mode on PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from server_helpers import run_quick_bench


@pytest.mark.postgres
def test_bench_review_queue_quick_times_each_read_before_and_after_0007(
    postgres_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "queue.json"
    stdout = run_quick_bench("bench_review_queue.py", out)
    assert "open items served as fake" in stdout and "before 0007" in stdout
    figures = json.loads(out.read_text())
    assert figures["items"] == 5000 and figures["open_items"] == 3750
    assert set(figures["now_ms"]) == set(figures["before_ms"]) == set(figures["speedup"])
    assert all(ms > 0 for ms in [*figures["now_ms"].values(), *figures["before_ms"].values()])
