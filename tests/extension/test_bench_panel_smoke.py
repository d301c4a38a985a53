"""The panel benchmark runs end to end in --quick mode (real Chromium, real server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from live_server import REPO_ROOT


def test_bench_panel_quick_measures_checks_and_panels(chromium_path: str, tmp_path: Path) -> None:
    out = tmp_path / "panel.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/bench_panel.py", "--quick", "--json", str(out)],
        cwd=REPO_ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "panel / check" in result.stdout
    figures = json.loads(out.read_text())
    for name in ("new", "cached"):
        rounds = figures[name]
        assert rounds["count"] >= 2
        for key in ("check", "panel"):
            assert 0 < rounds[key]["median_ms"] <= rounds[key]["p90_ms"]
        # The verdict shows after the check's result, never before it.
        assert rounds["panel"]["median_ms"] >= rounds["check"]["median_ms"]
        assert rounds["extra"]["median_ms"] >= 0
        assert rounds["ratio_panel_to_check"] >= 1
