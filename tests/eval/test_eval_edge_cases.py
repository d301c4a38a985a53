"""Runs that go wrong in small ways still measure what they can, and say what they left out:
a model that returns NaN, a crash inside a multi-line answer, one class only, degraded
copies that must reach the model as degraded pixels."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path

import pytest
from eval_helpers import StandInModel, prediction_rows, write_png
from PIL import Image, ImageChops
from sklearn.metrics import average_precision_score, roc_auc_score

from fakescope.evaluation.evaluate import EvalConfig, evaluate
from fakescope.evaluation.output_files import replacing, write_text
from fakescope.evaluation.runner import FIELDS, PredictionsFormatError, PredictionStore


def _tree(root: Path, fakes: int = 3, reals: int = 3) -> Path:
    for i in range(fakes):
        write_png(root / "reddit" / "fake" / f"f{i}.png", 130 + 40 * i)
    for i in range(reals):
        write_png(root / "reddit" / "real" / f"r{i}.png", 10 + 40 * i)
    return root


def _config(data: Path, out: Path, **overrides: object) -> EvalConfig:
    values: dict[str, object] = {
        "datasets": [str(data)],
        "model": "stand-in",
        "out": out,
        "batch_size": 4,
        "bootstrap": 20,
        "progress": False,
    }
    values.update(overrides)
    return EvalConfig(**values)  # type: ignore[arg-type]


class _NanModel(StandInModel):
    """Returns NaN for the darkest-red fake and the brightest real (a broken fp16 model)."""

    def score(self, images: Sequence[Image.Image]) -> list[float]:
        scores = super().score(images)
        return [float("nan") if round(s * 255) in (130, 90) else s for s in scores]


def test_a_nan_p_fake_is_a_failed_image_not_a_crash_or_a_real(tmp_path: Path) -> None:
    data = _tree(tmp_path / "data")
    out = tmp_path / "out"
    metrics = evaluate(_config(data, out), _NanModel())
    rows = {r["key"]: r for r in prediction_rows(out)}
    for key in ("reddit/fake/f0.png", "reddit/real/r2.png"):
        assert rows[key]["error"] == "NonFiniteScore: p_fake = nan"
        assert rows[key]["predicted"] == "" and rows[key]["p_fake"] == ""
    quantitative = metrics["datasets"]["data"]["protocols"]["quantitative"]
    assert quantitative["errors"] == 2
    overall = quantitative["overall"]
    assert (overall["n_fake"], overall["n_real"]) == (2, 2)
    assert overall["ap"] == 1.0 and overall["auc"] == 1.0  # the four left rank perfectly
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "images left out (unreadable, or no finite p_fake): 2" in report


def test_nan_rows_written_by_an_older_version_are_left_out_when_resumed(tmp_path: Path) -> None:
    data = _tree(tmp_path / "data")
    out = tmp_path / "out"
    evaluate(_config(data, out), StandInModel())
    rows = prediction_rows(out)
    rows[0].update(p_fake="nan", score="nan", model_label="real", predicted="real")
    with (out / "predictions.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    metrics = evaluate(_config(data, out), StandInModel())
    quantitative = metrics["datasets"]["data"]["protocols"]["quantitative"]
    assert quantitative["errors"] == 1 and quantitative["overall"]["n"] == 5
    assert quantitative["overall"]["ap"] == 1.0


def _row(key: str, answer: str) -> dict[str, str]:
    row = dict.fromkeys(FIELDS, "")
    row.update(dataset="d", key=key, condition="clean", protocol="closed", answer=answer)
    return row


def test_a_crash_inside_a_multi_line_answer_does_not_swallow_later_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "predictions.csv"
    PredictionStore(path).append([_row("a", "Fake."), _row("b", "Real.\nThe noise is natural")])
    raw = path.read_bytes()
    path.write_bytes(raw[: raw.index(b"Real.\n") + len(b"Real.\n")])  # cut inside the quotes
    resumed = PredictionStore(path)
    assert set(resumed.rows) == {("d", "a", "clean", "closed")}
    resumed.append([_row("b", 'Real.\nsaid "twice"'), _row("c", "fake")])
    again = PredictionStore(path)
    assert {rid[1] for rid in again.rows} == {"a", "b", "c"}
    assert again.rows[("d", "b", "clean", "closed")]["answer"] == 'Real.\nsaid "twice"'


def test_predictions_of_another_column_layout_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "predictions.csv"
    path.write_text("dataset,key,p_fake\nd,a,0.5\n", encoding="utf-8")
    with pytest.raises(PredictionsFormatError, match="another version"):
        PredictionStore(path)


def test_one_class_only_draws_no_curves_and_the_report_says_so(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for name in ("pr_curves.png", "roc_curves.png", "robustness.png"):
        write_png(out / name)  # left by an earlier run in this folder
    metrics = evaluate(
        _config(_tree(tmp_path / "data", reals=0), out, robustness=True), StandInModel()
    )
    # Calibration is measured with one class too: the reliability diagram is drawn.
    assert metrics["figures"] == ["reliability.png"]
    for name in ("pr_curves.png", "roc_curves.png", "robustness.png"):
        assert not (out / name).exists(), name
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "No curves: no dataset has both fakes and reals" in report
    assert "No figure: AP needs both fakes and reals" in report
    assert "](pr_curves.png)" not in report and "](robustness.png)" not in report
    overall = metrics["datasets"]["data"]["protocols"]["quantitative"]["overall"]
    # 3 fakes, p_fake 130/255 .. 210/255: all above 0.5.
    assert overall["accuracy"] == 1.0 and overall["tpr"] == 1.0
    assert overall["balanced_accuracy"] is None and overall["ap"] is None
    assert "| **overall** | 3 | 0 | 1.000 | — | 1.000 | — | — | — |" in report


def test_a_run_with_both_classes_draws_and_links_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "out"
    metrics = evaluate(_config(_tree(tmp_path / "data"), out, robustness=True), StandInModel())
    assert metrics["figures"] == [
        "pr_curves.png",
        "roc_curves.png",
        "reliability.png",
        "robustness.png",
    ]
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "![precision-recall](pr_curves.png)" in report
    assert "![reliability diagram](reliability.png)" in report
    assert "![AP against degradation](robustness.png)" in report
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary left
    assert json.loads((out / "metrics.json").read_text())["figures"] == metrics["figures"]


def test_report_says_where_provenance_replaced_the_model_score(tmp_path: Path) -> None:
    on = tmp_path / "on"
    evaluate(_config(_tree(tmp_path / "data"), on), StandInModel())
    assert "the prediction is fake and the score is 1" in (on / "report.md").read_text()
    off = tmp_path / "off"
    evaluate(_config(_tree(tmp_path / "data"), off, provenance=False), StandInModel())
    assert "the score is 1" not in (off / "report.md").read_text()


def test_per_subset_numbers_recompute_from_predictions_csv(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for platform, offset in (("reddit", 0), ("twitter", 25)):
        for i in range(4):
            write_png(data / platform / "fake" / f"f{i}.png", 70 + 40 * i + offset)
            write_png(data / platform / "real" / f"r{i}.png", 20 + 45 * i + offset)
    out = tmp_path / "out"
    metrics = evaluate(_config(data, out), StandInModel())
    subsets = metrics["datasets"]["data"]["protocols"]["quantitative"]["subsets"]
    rows = prediction_rows(out)
    for platform in ("reddit", "twitter"):
        chosen = [r for r in rows if r["subset"] == platform]
        y = [int(r["label"] == "fake") for r in chosen]
        s = [float(r["score"]) for r in chosen]
        predicted = [int(r["predicted"] == "fake") for r in chosen]
        assert subsets[platform]["ap"] == pytest.approx(average_precision_score(y, s))
        assert subsets[platform]["auc"] == pytest.approx(roc_auc_score(y, s))
        correct = sum(p == t for p, t in zip(predicted, y, strict=True))
        assert subsets[platform]["accuracy"] == pytest.approx(correct / len(y))
        # The threshold is 0.5 on p_fake; the stand-in's p_fake is the red level / 255.
        assert all(
            p == int(float(r["p_fake"]) >= 0.5) for p, r in zip(predicted, chosen, strict=True)
        )


class _RecordingModel(StandInModel):
    """Keeps every image it was asked to score."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Image.Image] = []

    def score(self, images: Sequence[Image.Image]) -> list[float]:
        self.seen += [im.copy() for im in images]
        return super().score(images)


def test_the_robustness_sweep_feeds_the_model_the_degraded_pixels(tmp_path: Path) -> None:
    data = tmp_path / "data"
    photo = Image.linear_gradient("L").resize((64, 48)).convert("RGB")
    for label in ("fake", "real"):
        (data / "x" / label).mkdir(parents=True)
        photo.save(data / "x" / label / "a.png")
    model = _RecordingModel()
    evaluate(_config(data, tmp_path / "out", robustness=True, batch_size=100), model)
    # The first image, under each of its 12 conditions in order (clean first).
    seen = model.seen[:12]
    clean = seen[0]
    assert clean.size == (64, 48) and not ImageChops.difference(clean, photo).getbbox()
    by_size = [im.size for im in seen]
    assert by_size[1:5] == [(64, 48)] * 4  # JPEG keeps the size...
    assert all(ImageChops.difference(im, photo).getbbox() for im in seen[3:5])  # ...not pixels
    assert by_size[5:8] == [(48, 36), (32, 24), (16, 12)]  # downscale 0.75 / 0.5 / 0.25
    assert by_size[8:10] == [(48, 36), (32, 24)]  # center crop 0.75 / 0.5
    assert seen[9].getpixel((0, 0)) == photo.getpixel((16, 12))  # the center, not a corner
    assert by_size[10:12] == [(64, 48)] * 2  # screenshot: size kept, pixels resampled
    assert ImageChops.difference(seen[11], photo).getbbox()


def test_atomic_write_replaces_whole_or_keeps_the_old_file(tmp_path: Path) -> None:
    path = write_text(tmp_path / "report.md", "first\n")
    assert path.read_text() == "first\n"
    write_text(path, "second\r\n")
    assert path.read_bytes() == b"second\r\n"  # written as given

    with pytest.raises(RuntimeError), replacing(path) as temporary:
        temporary.write_text("half")
        raise RuntimeError("crash mid-write")
    assert path.read_bytes() == b"second\r\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_an_image_whose_name_is_not_utf8_is_measured_and_resumed(tmp_path: Path) -> None:
    data = _tree(tmp_path / "data")
    odd = os.path.join(os.fsencode(data / "reddit" / "fake"), b"caf\xe9.png")  # Latin-1 name
    write_png(Path(os.fsdecode(odd)), 250)
    out = tmp_path / "out"
    metrics = evaluate(_config(data, out), StandInModel())  # raised UnicodeEncodeError
    assert metrics["datasets"]["data"]["protocols"]["quantitative"]["overall"]["n_fake"] == 4
    raw = (out / "predictions.csv").read_bytes()
    assert b"caf\xe9.png" in raw  # the name's own bytes

    again = StandInModel()
    evaluate(_config(data, out), again)
    assert again.calls == 0  # the row is found again: nothing redone
