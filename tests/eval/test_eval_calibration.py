"""Runs measure calibration; `fakescope eval calibrate` fits one; `--calibration` applies it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eval_helpers import StandInModel, write_png

from fakescope.calibration import Calibration
from fakescope.cli import main
from fakescope.errors import DatasetError
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
    assert f"{tmp_path / 'empty'}: no such folder; give a `fakescope eval --out` folder" in (
        capsys.readouterr().err
    )
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


def test_eval_with_a_calibration_that_is_no_calibration_leaves_no_out_folder(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _tree(tmp_path / "data", [200], [30])
    broken = tmp_path / "cal.json"
    broken.write_text("not json")
    out = tmp_path / "run"
    code = main(["eval", str(data), "--model", str(tiny_model_dir), "--out", str(out),
                 "--quiet", "--calibration", str(broken)])  # fmt: skip
    assert code == 2
    assert str(broken) in capsys.readouterr().err
    assert not out.exists()  # refused before anything was written


class _CalibratedInfo:
    """A stand-in's identity with a calibration applied, as `ModelInfo` gives it."""

    def __init__(self, calibration: Calibration) -> None:
        self.calibration = calibration
        self.untrained = True
        self.base = StandInModel().info

    @property
    def key(self) -> str:
        return self.calibration.key_of(self.base.key)

    def to_dict(self) -> dict[str, object]:
        return {**self.base.to_dict(), "calibration": self.calibration.describe()}


class _CalibratedStandIn(StandInModel):
    """The stand-in whose p_fake go through a calibration, as `--calibration` makes a model's."""

    def __init__(self, calibration: Calibration) -> None:
        super().__init__()
        self.info = _CalibratedInfo(calibration)  # type: ignore[assignment]
        self.calibration = calibration

    def score(self, images):  # type: ignore[no-untyped-def]
        return [float(p) for p in self.calibration.apply_p(super().score(images))]


def _stand_in_run(out: Path, data: Path, model: StandInModel) -> dict:  # type: ignore[type-arg]
    config = EvalConfig(datasets=[f"data={data}"], model="m", out=out, bootstrap=0, progress=False)
    return evaluate(config, model)


def test_compare_shows_ece_and_brier_and_lists_a_calibration_that_differs(
    tmp_path: Path,
) -> None:
    from fakescope.evaluation.compare import compare_runs
    from fakescope.evaluation.report import fmt

    data = _tree(tmp_path / "data", [FAKE_SHADE, 180, REAL_SHADE], [REAL_SHADE, 90])
    first = Calibration(0.5, -0.25, StandInModel().info.key)
    second = Calibration(2.0, 0.125, StandInModel().info.key)
    raw = _stand_in_run(tmp_path / "raw", data, StandInModel())
    calibrated = _stand_in_run(tmp_path / "cal1", data, _CalibratedStandIn(first))
    _stand_in_run(tmp_path / "cal2", data, _CalibratedStandIn(second))

    text = compare_runs(tmp_path / "raw", tmp_path / "cal1")
    settings = text.split("Settings that differ")[1].split("\n\n")[0]
    assert f"calibration of p_fake: A raw p_fake, B platt {first.digest}" in settings
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("dataset  images"))
    assert header.split() == ["dataset", "images", "ece", "A", "ece", "B", "Δece",
                              "brier", "A", "brier", "B", "Δbrier"]  # fmt: skip
    row = lines[lines.index(header) + 1].split()
    ma = raw["datasets"]["data"]["protocols"]["quantitative"]["calibration"]
    mb = calibrated["datasets"]["data"]["protocols"]["quantitative"]["calibration"]
    assert ma["ece"] != mb["ece"] and ma["brier"] != mb["brier"]
    assert row == [
        "data", "5",
        fmt(ma["ece"]), fmt(mb["ece"]), f"{mb['ece'] - ma['ece']:+.3f}",
        fmt(ma["brier"]), fmt(mb["brier"]), f"{mb['brier'] - ma['brier']:+.3f}",
    ]  # fmt: skip

    two = compare_runs(tmp_path / "cal1", tmp_path / "cal2")
    assert f"A platt {first.digest} (a=0.5, b=-0.25), B platt {second.digest}" in two
    # Like with like: nothing listed, the calibration table still shown.
    same = compare_runs(tmp_path / "cal1", tmp_path / "cal1")
    assert "Settings that differ" not in same and "Δece" in same


def test_compare_leaves_out_calibration_a_run_did_not_measure(tmp_path: Path) -> None:
    """A run made before calibration was measured: no ECE row, and its p_fake count as raw."""
    from fakescope.evaluation.compare import compare_runs

    data = _tree(tmp_path / "data", [FAKE_SHADE], [REAL_SHADE])
    _stand_in_run(tmp_path / "new", data, StandInModel())
    _stand_in_run(tmp_path / "old", data, StandInModel())
    metrics_file = tmp_path / "old" / "metrics.json"
    old = json.loads(metrics_file.read_text())
    del old["datasets"]["data"]["protocols"]["quantitative"]["calibration"]
    old["run"]["model"].pop("calibration", None)
    metrics_file.write_text(json.dumps(old))
    text = compare_runs(tmp_path / "old", tmp_path / "new")
    assert "Δece" not in text and "Settings that differ" not in text
    # A damaged calibration entry is refused in one line naming the part.
    old["datasets"]["data"]["protocols"]["quantitative"]["calibration"] = {"ece": "low"}
    metrics_file.write_text(json.dumps(old))
    with pytest.raises(DatasetError, match=r"quantitative\.calibration\.ece is 'low', not a"):
        compare_runs(tmp_path / "old", tmp_path / "new")


def test_a_calibrated_runs_report_says_so_where_it_names_the_model(tmp_path: Path) -> None:
    data = _tree(tmp_path / "data", [FAKE_SHADE], [REAL_SHADE])
    calibration = Calibration(0.5, -0.25, StandInModel().info.key)
    _stand_in_run(tmp_path / "run", data, _CalibratedStandIn(calibration))
    report = (tmp_path / "run" / "report.md").read_text()
    model_line = next(line for line in report.splitlines() if line.startswith("- model:"))
    assert f"p_fake calibrated (Platt scaling, digest {calibration.digest})" in model_line
    assert "sigmoid(0.5 * margin - 0.25)" in report and "+ -" not in report
    _stand_in_run(tmp_path / "raw", data, StandInModel())
    raw_report = (tmp_path / "raw" / "report.md").read_text()
    assert "calibrated" not in next(
        line for line in raw_report.splitlines() if line.startswith("- model:")
    )


def test_the_reliability_diagram_counts_whole_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fakescope.evaluation import plots

    drawn: list[tuple[Path, Any]] = []
    monkeypatch.setattr(plots, "_save", lambda fig, path, title: drawn.append((path, fig)))
    data = _tree(tmp_path / "data", [FAKE_SHADE, FAKE_SHADE], [REAL_SHADE])  # bins of 1 and 2
    _stand_in_run(tmp_path / "run", data, StandInModel())
    (figure,) = [fig for path, fig in drawn if path.name == "reliability.png"]
    figure.canvas.draw()
    counts_axis = figure.axes[1]
    ticks = [t for t in counts_axis.get_yticks() if t <= counts_axis.get_ylim()[1]]
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)
    assert counts_axis.get_ylabel() == "images in the bin"


def test_calibrate_says_in_one_line_when_it_cannot_write_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _tree(tmp_path / "data", [FAKE_SHADE, 180], [REAL_SHADE, 90])
    _stand_in_run(tmp_path / "run", data, StandInModel())
    for target in (tmp_path / "no-such-folder" / "cal.json", tmp_path / "run"):
        assert main(["eval", "calibrate", str(tmp_path / "run"), "--out", str(target)]) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"fakescope: error: {target}: cannot write the calibration file")
        assert "give --out a file name in a folder that exists" in error
        assert error.count("\n") == 1


def test_calibrate_prints_the_formula_as_written_by_hand(tmp_path: Path) -> None:
    from fakescope.evaluation.calibrate import summary

    printed = summary(Calibration(0.5, -0.25, "m"), tmp_path / "cal.json")
    assert "p_fake = sigmoid(0.5 * margin - 0.25)" in printed and "+ -" not in printed
