"""The feed benchmark runs end to end in --quick mode (real Chromium, a stub server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from live_server import REPO_ROOT


def test_bench_feed_quick_badges_the_feed_and_measures_its_frames(
    chromium_path: str, tmp_path: Path
) -> None:
    out = tmp_path / "feed.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/bench_feed.py", "--quick", "--json", str(out)],
        cwd=REPO_ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["images"] == 160 and figures["distinct_pictures"] == 145
    shown, on_screen = map(int, figures["badged_last_screen"].split("/"))
    assert shown == on_screen > 0, figures  # every picture on the last screen has its badge
    assert figures["fetched"] == figures["distinct_pictures"] and figures["fetched_twice"] == 0
    assert 0 < figures["max_keys"] <= 500 and figures["lookups"] >= 1
    assert 0 < figures["frame_p50_ms"] <= figures["frame_p90_ms"]
    assert figures["scroll_main_ms_per_frame"] > 0
