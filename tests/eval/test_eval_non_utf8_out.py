"""An --out folder named in no valid UTF-8 (b'run_\\xff' on Linux), measured end to end with the
tiny checkpoint and a stdout that refuses what is not UTF-8, as a UTF-8 terminal or pipe does:
`fakescope eval` prints the report's path as its own bytes (a script can open what it printed),
every output is written into that folder and the run resumes there; `fakescope eval compare`
prints valid UTF-8, such bytes shown as \\xNN, for run folders and dataset or subset names alike,
and for a metrics.json that still holds them as JSON \\udcNN escapes."""

from __future__ import annotations

import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from eval_helpers import write_png

from fakescope.cli import main


def _path(*parts: bytes) -> Path:
    return Path(os.fsdecode(os.path.join(*parts)))


def _main(*args: str) -> tuple[int, bytes]:
    """`fakescope ARGS...` with a strict UTF-8 stdout (a lone surrogate raises); its bytes."""
    raw = io.BytesIO()
    stdout = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", write_through=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "stdout", stdout)
        status = main(list(args))
        stdout.flush()
    return status, raw.getvalue()


def _eval(data: Path, model_dir: Path, out: Path) -> tuple[int, bytes]:
    return _main("eval", str(data), "--model", str(model_dir), "--out", str(out), "--quiet",
                 "--bootstrap", "10")  # fmt: skip


@dataclass(frozen=True)
class Runs:
    data: Path  # b"data_\xff/plat\xe9/{fake,real}/*.png"
    outs: tuple[Path, Path]  # b"run_\xff", b"run_\xfe"
    printed: tuple[bytes, bytes]  # what `fakescope eval` printed for each


@pytest.fixture(scope="module")
def runs(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    root = os.fsencode(tmp_path_factory.mktemp("out-names"))
    data = _path(root, b"data_\xff")
    for i in range(2):
        write_png(_path(root, b"data_\xff", b"plat\xe9", b"fake", b"f%d.png" % i), 140 + 40 * i)
        write_png(_path(root, b"data_\xff", b"plat\xe9", b"real", b"r%d.png" % i), 20 + 40 * i)
    outs = (_path(root, b"run_\xff"), _path(root, b"run_\xfe"))
    printed = []
    for out in outs:
        status, stdout = _eval(data, tiny_model_dir, out)
        assert status == 0
        printed.append(stdout)
    return Runs(data, outs, (printed[0], printed[1]))


def _text(path: Path) -> str:
    return path.read_bytes().decode("utf-8")  # strict: raises on anything that is not UTF-8


def _row(lines: list[str], dataset: str, subset: str) -> str:
    return next(line for line in lines if line.split()[:3] == [dataset, "quantitative", subset])


def test_eval_prints_the_report_path_as_its_own_bytes_which_a_script_can_open(runs: Runs) -> None:
    printed = runs.printed[0]
    assert printed == os.fsencode(runs.outs[0] / "report.md") + b"\n"
    assert printed.endswith(b"/run_\xff/report.md\n")
    assert Path(os.fsdecode(printed.rstrip(b"\n"))).is_file()


def test_every_output_is_written_into_the_folder_and_the_run_resumes_there(
    runs: Runs, tiny_model_dir: Path
) -> None:
    out = runs.outs[0]
    report = _text(out / "report.md")
    assert "# FakeScope evaluation\n" in report  # the finished report, not the note
    assert "| plat\\xe9 | 2 | 2 |" in report
    json.loads(_text(out / "run.json"))
    metrics = json.loads(_text(out / "metrics.json"))
    for figure in metrics["figures"]:
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    predictions = (out / "predictions.csv").read_bytes()
    assert _eval(runs.data, tiny_model_dir, out) == (0, runs.printed[0])
    assert json.loads(_text(out / "metrics.json"))["run"]["processed_this_run"] == 0
    assert (out / "predictions.csv").read_bytes() == predictions


def test_compare_of_two_runs_in_non_utf8_folders_prints_valid_utf8(runs: Runs) -> None:
    status, stdout = _main("eval", "compare", str(runs.outs[0]), str(runs.outs[1]))
    assert status == 0
    lines = stdout.decode("utf-8").splitlines()  # strict
    assert lines[0].startswith("A: ") and "/run_\\xff (" in lines[0]
    assert lines[1].startswith("B: ") and "/run_\\xfe (" in lines[1]
    assert _row(lines, "data_\\xff", "plat\\xe9")


def test_compare_shows_names_a_metrics_json_keeps_as_json_escapes_readably(
    runs: Runs, tmp_path: Path
) -> None:
    """A metrics.json written before names were made readable, or edited by hand: its JSON
    escapes decode to lone surrogates, which reach the table as \\xNN (a byte) or \\uXXXX."""
    metrics = json.loads(_text(runs.outs[0] / "metrics.json"))
    entry = metrics["datasets"].pop("data_\\xff")
    subsets = entry["protocols"]["quantitative"]["subsets"]
    subsets["plat\udce9"] = subsets.pop("plat\\xe9")
    subsets["gen\ud800"] = subsets["plat\udce9"]
    metrics["datasets"]["data_\udcff"] = entry
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "metrics.json").write_text(json.dumps(metrics), encoding="ascii")  # \udcNN escapes
    status, stdout = _main("eval", "compare", str(legacy), str(runs.outs[0]))
    assert status == 0
    lines = stdout.decode("utf-8").splitlines()  # strict
    assert _row(lines, "data_\\xff", "gen\\ud800")
    assert not any(line.startswith("  - only run") for line in lines)  # one dataset, both runs
    header = next(line for line in lines if line.startswith("dataset "))
    # The columns are measured on the names as shown: the images cell sits under its header.
    assert _row(lines, "data_\\xff", "plat\\xe9").index("2f/2r") == header.index("images")
