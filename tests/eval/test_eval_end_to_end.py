"""`fakescope eval` on ../shared/data with the tiny checkpoint writes every report file, resumes
after a crash to the same numbers, and `eval compare` shows two runs side by side.

The full 344 images take about 30 s (quantitative) on 2 CPU cores; these tests use balanced
subsets (--limit) so that the robustness sweep and the closed protocol stay quick.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from fakescope.cli import main
from fakescope.evaluation.evaluate import EvalConfig, evaluate

pytestmark = pytest.mark.shared_data

REPORT_FILES = (
    "metrics.json", "report.md", "predictions.csv", "pr_curves.png", "roc_curves.png",
    "robustness.png", "run.json",
)  # fmt: skip


def _eval(shared_data: Path, model_dir: Path, out: Path, *extra: str) -> int:
    return main(["eval", str(shared_data), "--model", str(model_dir), "--out", str(out),
                 "--quiet", "--bootstrap", "50", *extra])  # fmt: skip


@pytest.fixture(scope="module")
def full_run(
    shared_data: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("eval") / "run"
    code = _eval(
        shared_data, tiny_model_dir, out, "--limit", "12", "--protocol", "both", "--robustness"
    )
    assert code == 0
    return out


def test_a_run_writes_every_report_file(full_run: Path) -> None:
    for name in REPORT_FILES:
        assert (full_run / name).stat().st_size > 0, name
    for png in ("pr_curves.png", "roc_curves.png", "robustness.png"):
        assert (full_run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_metrics_cover_both_protocols_subsets_and_the_sweep(full_run: Path) -> None:
    metrics = json.loads((full_run / "metrics.json").read_text())
    data = metrics["datasets"]["data"]
    quantitative = data["protocols"]["quantitative"]
    assert quantitative["overall"]["n"] == 12
    assert quantitative["overall"]["n_fake"] == 6
    assert 0.0 <= quantitative["overall"]["ap"] <= 1.0
    assert len(quantitative["overall"]["ci95"]["ap"]) == 2
    assert quantitative["subsets"] and quantitative["mean_ap"] is not None
    assert data["protocols"]["closed"]["overall"]["n"] == 12
    assert "jpeg:50" in metrics["robustness"]["data"]["quantitative"]
    assert metrics["run"]["untrained"] is True
    with (full_run / "predictions.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12 * 2 + 12 * 11  # both protocols clean, then 11 degradations


def test_the_report_says_an_untrained_model_is_at_chance_by_construction(full_run: Path) -> None:
    report = (full_run / "report.md").read_text()
    assert "Untrained model" in report and "near chance *by construction*" in report
    assert "robustness.png" in report and "| **overall** |" in report


def test_resume_after_a_crash_with_the_tiny_model_gives_the_same_metrics(
    shared_data: Path, tiny_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def config(out: Path) -> EvalConfig:
        return EvalConfig(datasets=[str(shared_data)], model="tiny", out=out, limit=16,
                          batch_size=4, bootstrap=50, progress=False)  # fmt: skip

    whole = evaluate(config(tmp_path / "whole"), tiny_model)
    real_score = tiny_model.score
    calls = []

    def crash_on_third_batch(images):
        calls.append(len(images))
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated crash")
        return real_score(images)

    monkeypatch.setattr(tiny_model, "score", crash_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        evaluate(config(tmp_path / "resumed"), tiny_model)
    monkeypatch.undo()
    resumed = evaluate(config(tmp_path / "resumed"), tiny_model)
    assert resumed["run"]["processed_this_run"] == 8
    assert {k: v for k, v in resumed.items() if k != "run"} == {
        k: v for k, v in whole.items() if k != "run"
    }


def test_compare_prints_per_subset_differences(
    full_run: Path,
    shared_data: Path,
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    other = tmp_path / "no-provenance"
    assert _eval(shared_data, tiny_model_dir, other, "--limit", "12", "--no-provenance") == 0
    capsys.readouterr()
    assert main(["eval", "compare", str(full_run), str(other)]) == 0
    table = capsys.readouterr().out
    assert "Δap" in table and "overall" in table and "mAP" in table
    subsets = json.loads((full_run / "metrics.json").read_text())["datasets"]["data"]["protocols"]
    for subset in subsets["quantitative"]["subsets"]:
        assert subset in table
    assert "untrained" in table


def test_eval_without_a_model_or_with_a_bad_dataset_fails_clearly(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", str(tmp_path)]) == 2
    assert "--model is required" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing"), "--model", str(tiny_model_dir)]) == 2
    assert "dataset not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        main(["eval", "compare", str(tmp_path)])
    assert refused.value.code == 2
    assert "fakescope eval compare: error:" in capsys.readouterr().err


def test_eval_compare_has_its_own_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as shown:
        main(["eval", "compare", "--help"])
    assert shown.value.code == 0
    help_text = capsys.readouterr().out
    assert help_text.startswith("usage: fakescope eval compare [-h] RUN_A RUN_B")
    assert "--model" not in help_text  # not `fakescope eval`'s help


def test_eval_compare_refuses_options_it_does_not_take(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as refused:
        main(["eval", "compare", str(tmp_path), str(tmp_path), "--model", "m"])
    assert refused.value.code == 2
    assert "unrecognized arguments: --model m" in capsys.readouterr().err
