"""Runs the extension's pure-module unit tests (Node's built-in test runner)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

EXTENSION_DIR = Path(__file__).resolve().parents[2] / "extension"


def test_extension_unit_tests_pass_under_node() -> None:
    node = shutil.which("node")
    assert node is not None, "Node.js 20+ runs the extension's unit tests"
    run = subprocess.run(
        [node, "--test", "tests/"], cwd=EXTENSION_DIR, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "# fail 0" in run.stdout
