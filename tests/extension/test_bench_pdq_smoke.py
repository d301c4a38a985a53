"""The PDQ benchmarks of the extension run end to end on a few rounds and pictures: the timing
script (Node) against itself, and the turned-copies measurement on real pictures against the
extension's own pdq_cli.mjs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from live_server import REPO_ROOT


def test_bench_pdq_js_times_both_versions_in_turns(tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node is not None, "Node.js 20+ runs the extension's PDQ"
    out = tmp_path / "pdq-js.json"
    result = subprocess.run(
        [node, "benchmarks/bench_pdq_js.mjs", "--rounds", "2", "--json", str(out), "--compare",
         "extension/lib/pdq.js"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "current / compared" in result.stdout
    rows = json.loads(out.read_text())["results"]
    sizes = [(r["width"], r["height"]) for r in rows]
    assert sizes == [(512, 384), (512, 512), (384, 512), (256, 171)]
    for row in rows:
        assert row["ms"]["current"] > 0 and row["ms"]["compared"] > 0
        assert row["ratio"] > 0


def test_turned_copies_measure_every_turn_against_the_original(
    shared_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "turned.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/pdq_turned_copies.py", "--data", str(shared_data),
         "--limit", "3", "--json", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["pictures"] >= 1
    current = figures["figures"]["current"]
    assert len(current["copies"]) == 7
    for kind, summary in current["copies"].items():
        # Each copy's hash for its turn is the original's (give or take float rounding).
        assert summary["within_near"] == 1.0 and summary["max"] <= 4, (kind, summary)
    assert current["plain_hash_min"] > 64, "no copy matches by its own hash"


def test_turned_copies_reencoded_as_reposts_still_come_near(
    shared_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "reencoded.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/pdq_turned_copies.py", "--data", str(shared_data),
         "--limit", "3", "--reencode", "--json", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["reencoded"] is True
    current = figures["figures"]["current"]
    for kind, summary in current["copies"].items():
        # Shrunk and re-encoded: some bits move, as for any resized copy, but each stays near.
        assert summary["within_near"] == 1.0, (kind, summary)
    assert current["plain_hash_min"] > 64
