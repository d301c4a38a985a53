"""Runs measure calibration; `fakescope eval calibrate` fits one; `--calibration` applies it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eval_helpers import StandInModel, write_png

from fakescope.calibration import Calibration
from fakescope.cli import main
from fakescope.evaluation.evaluate import EvalConfig, evaluate

FAKE_SHADE, REAL_SHADE = 230, 25  # the stand-in's p_fake is the red level / 255


def _tree(root: Path, fakes: list[int], reals: list[int]) -> Path:
    for i, shade in enumerate(fakes):
        write_png(root / "fake" / f"f{i}.png", shade)
    for i, shade in enumerate(reals):
        write_png(root / "real" / f"r{i}.png", shade)
    return root


def test_a_run_reports_ece_brier_and_a_reliability_diagram(tmp_path: Path) -> None:
    data = _tree(tmp_path / "data", [FAKE_SHADE, FAKE_SHADE, REAL_SHADE], [REAL_SHADE] * 2)
    out = tmp_path / "run"
    metrics = evaluate(
        EvalConfig(datasets=[str(data)], model="m", out=out, bootstrap=0, progress=False),
        StandInModel(),
    )
    high, low = FAKE_SHADE / 255, REAL_SHADE / 255
    # Bin of `low`: 3 images, 1 fake; bin of `high`: 2 images, both fake.
    ece = 3 / 5 * abs(1 / 3 - low) + 2 / 5 * abs(1 - high)
    brier = (2 * (1 - high) ** 2 + (1 - low) ** 2 + 2 * low**2) / 5
    measured = metrics["datasets"]["data"]["protocols"]["quantitative"]["calibration"]
    assert measured["ece"] == pytest.approx(ece) and measured["brier"] == pytest.approx(brier)
    assert measured["bins"] == 15 and measured["n"] == 5 and measured["score"] == "model p_fake"
    written = json.loads((out / "metrics.json").read_text())
    assert written["datasets"]["data"]["protocols"]["quantitative"]["calibration"]["ece"] == (
        pytest.approx(ece)
    )
    assert (out / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "reliability.png" in written["figures"]
    report = (out / "report.md").read_text()
    assert "## Calibration" in report and "15 equal-width bins" in report
    assert f"| data | 5 | {ece:.3f} | {brier:.3f} |" in report
    assert "the model's own p_fake" in report and "raw, as token-based" in report


def test_calibrate_fits_a_tiny_run_and_eval_applies_it_elsewhere(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shades = [20, 60, 100, 140, 180, 220]
    fitting = _tree(tmp_path / "fit", shades, [s + 15 for s in shades])
    held_out = _tree(tmp_path / "held", [40, 200], [90, 170])
    model = str(tiny_model_dir)
    common = ["--model", model, "--quiet", "--bootstrap", "0", "--no-provenance"]
    assert main(["eval", f"fit={fitting}", "--out", str(tmp_path / "run"), *common]) == 0
    capsys.readouterr()

    cal_file = tmp_path / "calibration.json"
    assert main(["eval", "calibrate", str(tmp_path / "run"), "--out", str(cal_file)]) == 0
    printed = capsys.readouterr().out
    calibration = Calibration.load(cal_file)
    raw_run = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert calibration.model_key == raw_run["run"]["model_key"]
    assert calibration.fitted_on["n_fake"] == 6 and calibration.fitted_on["n_real"] == 6
    assert calibration.fitted_on["datasets"] == ["fit"]
    scores = calibration.fit_metrics
    raw_measured = raw_run["datasets"]["fit"]["protocols"]["quantitative"]["calibration"]
    assert scores["ece_before"] == pytest.approx(raw_measured["ece"])
    assert scores["brier_before"] == pytest.approx(raw_measured["brier"])
    assert scores["brier_after"] <= scores["brier_before"] + 1e-12  # the fit minimises it
    assert f"{scores['ece_before']:.4f} -> {scores['ece_after']:.4f}" in printed
    assert "flatters it" in printed and "fit on one dataset and measure on another" in printed

    calibrated_out = tmp_path / "calibrated"
    args = ["eval", f"held={held_out}", "--out", str(calibrated_out), *common]
    assert main([*args, "--calibration", str(cal_file)]) == 0
    applied = json.loads((calibrated_out / "metrics.json").read_text())
    assert applied["run"]["model_key"] == f"{calibration.model_key}+cal-{calibration.digest}"
    assert applied["run"]["model"]["calibration"]["digest"] == calibration.digest
    assert "calibrated by Platt scaling" in (calibrated_out / "report.md").read_text()
    # A calibrated run is no ground to fit another calibration on.
    capsys.readouterr()
    again = ["eval", "calibrate", str(calibrated_out), "--out", str(tmp_path / "x.json")]
    assert main(again) == 2
    assert "already calibrated" in capsys.readouterr().err


def test_calibrate_refuses_what_it_cannot_fit_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fakes_only = _tree(tmp_path / "fakes", [200, 220], [])
    out = tmp_path / "run"
    evaluate(
        EvalConfig(datasets=[str(fakes_only)], model="m", out=out, bootstrap=0, progress=False),
        StandInModel(),
    )
    target = str(tmp_path / "cal.json")
    assert main(["eval", "calibrate", str(out), "--out", target]) == 2
    error = capsys.readouterr().err
    assert "needs both fakes and reals" in error and error.count("\n") == 1
    assert main(["eval", "calibrate", str(out), "--out", target, "--dataset", "nope"]) == 2
    assert "no dataset named 'nope'" in capsys.readouterr().err
    assert main(["eval", "calibrate", str(tmp_path / "empty"), "--out", target]) == 2
    assert "no metrics.json" in capsys.readouterr().err
    assert not Path(target).exists()


def test_eval_refuses_a_calibration_fitted_for_another_model(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _tree(tmp_path / "data", [200], [30])
    foreign = Calibration(1.0, 0.0, "another-model@-:none").save(tmp_path / "cal.json")
    code = main(["eval", str(data), "--model", str(tiny_model_dir), "--out",
                 str(tmp_path / "run"), "--quiet", "--calibration", str(foreign)])  # fmt: skip
    assert code == 2
    error = capsys.readouterr().err
    assert "fitted for the model another-model@-:none, not " in error
    assert str(tiny_model_dir) in error and error.count("\n") == 1
