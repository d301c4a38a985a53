"""The fuzz harnesses (fuzz/, run by hand: see fuzz/README.md) import, and pass their own
synthetic seeds: a harness that breaks, or a seed that became a finding, shows here in
seconds instead of at the next fuzzing session."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from fuzz.harness import check_one  # noqa: E402
from fuzz.make_seeds import HARNESSES, seeds  # noqa: E402


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", HARNESSES)
def test_each_harness_passes_its_seeds(name: str) -> None:
    harness = importlib.import_module(f"fuzz.fuzz_{name}")
    inputs = seeds(name)
    assert inputs
    for data in inputs.values():
        check_one(harness.target, harness.ALLOWED, data)
