"""A dataset whose folder names are not UTF-8 (bytes such as b'fake_\\xff' on Linux) is measured
end to end with the tiny checkpoint: the report, metrics.json and the figures are valid UTF-8
and show each such byte as \\xNN; predictions.csv and run.json keep the exact names, so that the
same command resumes the run without redoing anything."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from eval_helpers import write_png

from fakescope.cli import main


def _path(*parts: bytes) -> Path:
    return Path(os.fsdecode(os.path.join(*parts)))


def _eval(data: Path, model_dir: Path, out: Path) -> int:
    return main(["eval", str(data), "--model", str(model_dir), "--out", str(out), "--quiet",
                 "--bootstrap", "20", "--robustness", "--batch-size", "16"])  # fmt: skip


@pytest.fixture(scope="module")
def run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = os.fsencode(tmp_path_factory.mktemp("names"))
    data = _path(root, b"fake_\xff")  # the dataset's folder, named in no valid UTF-8
    for i in range(2):
        write_png(_path(root, b"fake_\xff", b"plat\xe9", b"fake", b"f%d.png" % i), 130 + 40 * i)
        write_png(_path(root, b"fake_\xff", b"plat\xe9", b"real", b"r%d.png" % i), 10 + 40 * i)
    for label in (b"fake", b"real"):  # the same bytes under both labels: listed in the report
        write_png(_path(root, b"fake_\xff", b"plat\xe9", label, b"dup\xe9.png"), 77)
    out = Path(os.fsdecode(root)) / "out"
    assert _eval(data, tiny_model_dir, out) == 0
    return data, out


def _text(path: Path) -> str:
    return path.read_bytes().decode("utf-8")  # strict: raises on anything that is not UTF-8


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_the_report_names_the_folders_readably(run: tuple[Path, Path]) -> None:
    report = _text(run[1] / "report.md")
    assert "# FakeScope evaluation\n" in report  # the finished report, not the note
    assert "- datasets: fake_\\xff (folder)" in report
    assert "### fake_\\xff (folder)" in report
    assert "| plat\\xe9 | 3 | 3 |" in report
    assert "fake `plat\\xe9/fake/dup\\xe9.png`; real `plat\\xe9/real/dup\\xe9.png`" in report


def test_metrics_json_is_utf8_with_readable_names_and_every_figure_is_drawn(
    run: tuple[Path, Path],
) -> None:
    metrics = json.loads(_text(run[1] / "metrics.json"))
    for text in _strings(metrics):
        text.encode("utf-8")  # no lone surrogate: JSON tools everywhere can read every name
    (name,) = metrics["datasets"]
    assert name == "fake_\\xff"
    assert list(metrics["datasets"][name]["protocols"]["quantitative"]["subsets"]) == ["plat\\xe9"]
    assert metrics["run"]["datasets"][name]["source"].endswith("/fake_\\xff")
    assert list(metrics["robustness"]) == [name]
    figures = ["pr_curves.png", "roc_curves.png", "reliability.png", "robustness.png"]
    assert metrics["figures"] == figures
    for figure in metrics["figures"]:
        assert (run[1] / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_same_command_resumes_the_run_and_redoes_nothing(
    run: tuple[Path, Path], tiny_model_dir: Path
) -> None:
    data, out = run
    raw = (out / "predictions.csv").read_bytes()
    assert b"\nfake_\xff,plat\xe9,plat\xe9/fake/f0.png," in raw  # the names' own bytes
    _text(out / "run.json")  # exact names as JSON escapes, which decode back to them
    assert _eval(data, tiny_model_dir, out) == 0
    metrics = json.loads(_text(out / "metrics.json"))
    assert metrics["run"]["processed_this_run"] == 0
    assert (out / "predictions.csv").read_bytes() == raw
