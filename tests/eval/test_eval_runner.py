"""Predictions are batched, appended as they finish, and a re-run continues where one stopped."""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from eval_helpers import StandInModel, prediction_rows, write_png

from fakescope.evaluation.evaluate import EvalConfig, RunMismatchError, evaluate


def _tree(root: Path, n: int = 6) -> Path:
    for i in range(n):
        write_png(root / "reddit" / "fake" / f"f{i}.png", 120 + 20 * i)
        write_png(root / "reddit" / "real" / f"r{i}.png", 40 + 25 * i)
        write_png(root / "twitter" / "fake" / f"f{i}.png", 60 + 30 * i)
        write_png(root / "twitter" / "real" / f"r{i}.png", 30 + 35 * i)
    return root


def _config(data: Path, out: Path, **overrides: object) -> EvalConfig:
    values: dict[str, object] = {
        "datasets": [f"wildrf={data}"],
        "model": "stand-in",
        "out": out,
        "batch_size": 4,
        "bootstrap": 50,
        "progress": False,
    }
    values.update(overrides)
    return EvalConfig(**values)  # type: ignore[arg-type]


def _without_run(metrics: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in metrics.items() if k != "run"}


def test_each_finished_batch_is_on_disk_when_a_run_crashes(tmp_path: Path) -> None:
    data = _tree(tmp_path / "data")
    with pytest.raises(RuntimeError, match="simulated crash"):
        evaluate(_config(data, tmp_path / "out"), StandInModel(fail_after_calls=3))
    assert len(prediction_rows(tmp_path / "out")) == 12  # three batches of four


def test_resumed_run_equals_an_uninterrupted_one_and_redoes_nothing(tmp_path: Path) -> None:
    data = _tree(tmp_path / "data")
    whole = evaluate(_config(data, tmp_path / "whole", protocol="both"), StandInModel())

    out = tmp_path / "crashed"
    with pytest.raises(RuntimeError):
        evaluate(_config(data, out, protocol="both"), StandInModel(fail_after_calls=2))
    resumed_model = StandInModel()
    resumed = evaluate(_config(data, out, protocol="both"), resumed_model)

    assert _without_run(resumed) == _without_run(whole)
    ids = [(r["key"], r["condition"], r["protocol"]) for r in prediction_rows(out)]
    assert len(ids) == len(set(ids)) == 24 * 2
    assert resumed["run"]["processed_this_run"] < 24  # the batches done before the crash are kept

    again = StandInModel()
    evaluate(_config(data, out, protocol="both"), again)
    assert again.calls == 0


def test_a_half_written_last_line_is_dropped_and_redone(tmp_path: Path) -> None:
    data = _tree(tmp_path / "data")
    out = tmp_path / "out"
    whole = evaluate(_config(data, out), StandInModel())
    predictions = out / "predictions.csv"
    lines = predictions.read_text().splitlines(keepends=True)
    predictions.write_text("".join(lines[:-1]) + lines[-1][:25])  # crash mid-write
    resumed = evaluate(_config(data, out), StandInModel())
    assert resumed["run"]["processed_this_run"] == 1
    assert _without_run(resumed) == _without_run(whole)


def test_resuming_with_another_setting_is_refused(tmp_path: Path) -> None:
    data = _tree(tmp_path / "data")
    out = tmp_path / "out"
    evaluate(_config(data, out), StandInModel())
    with pytest.raises(RunMismatchError, match="another --out"):
        evaluate(_config(data, out, provenance=False), StandInModel())


def test_unreadable_images_are_reported_not_fatal(tmp_path: Path) -> None:
    data = _tree(tmp_path / "data", n=2)
    (data / "reddit" / "fake" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    metrics = evaluate(_config(data, tmp_path / "out"), StandInModel())
    quantitative = metrics["datasets"]["wildrf"]["protocols"]["quantitative"]
    assert quantitative["errors"] == 1
    assert quantitative["overall"]["n"] == 8
    broken = [r for r in prediction_rows(tmp_path / "out") if r["key"].endswith("broken.png")]
    assert broken[0]["error"].startswith(("UndecodableImageError", "UnsupportedFormatError"))


def test_robustness_sweep_scores_every_degradation_for_the_quantitative_protocol(
    tmp_path: Path,
) -> None:
    data = _tree(tmp_path / "data", n=2)
    metrics = evaluate(
        _config(data, tmp_path / "out", robustness=True, protocol="both"), StandInModel()
    )
    sweep = metrics["robustness"]["wildrf"]["quantitative"]
    assert next(iter(sweep)) == "clean" and {"jpeg:30", "downscale:0.25", "crop:0.5"} <= set(sweep)
    rows = prediction_rows(tmp_path / "out")
    assert {r["protocol"] for r in rows if r["condition"] != "clean"} == {"quantitative"}
    assert (tmp_path / "out" / "robustness.png").stat().st_size > 10_000


@pytest.mark.shared_data
def test_provenance_decides_only_when_switched_on(shared_data: Path, tmp_path: Path) -> None:
    # ComfyUI outputs carry their workflow: strong evidence of generation.
    comfy = sorted((shared_data / "images" / "fake" / "comfyui_examples").glob("*.png"))[:2]
    reals = sorted((shared_data / "images" / "real" / "cnndetection").rglob("*.jpg"))[:2]
    manifest = tmp_path / "set.csv"
    lines = ["path,label"] + [f"{p},fake" for p in comfy] + [f"{p},real" for p in reals]
    manifest.write_text("\n".join(lines) + "\n")
    config = _config(manifest, tmp_path / "on")
    config.datasets = [str(manifest)]
    evaluate(config, StandInModel())
    on = {r["key"]: r for r in prediction_rows(tmp_path / "on")}
    assert all(on[str(p)]["decided_by"] == "provenance" for p in comfy)
    assert all(
        float(on[str(p)]["score"]) == 1.0 and on[str(p)]["predicted"] == "fake" for p in comfy
    )
    assert all(on[str(p)]["decided_by"] == "model" for p in reals)

    config.out, config.provenance = tmp_path / "off", False
    evaluate(config, StandInModel())
    off = {r["key"]: r for r in prediction_rows(tmp_path / "off")}
    assert {r["decided_by"] for r in off.values()} == {"model"}
    assert all(off[k]["p_fake"] == on[k]["p_fake"] for k in off)


def test_closed_protocol_keeps_the_generated_answer_text(tmp_path: Path) -> None:
    data = _tree(tmp_path / "data", n=2)
    evaluate(_config(data, tmp_path / "out", protocol="closed"), StandInModel())
    rows = prediction_rows(tmp_path / "out")
    assert rows and all(r["protocol"] == "closed" for r in rows)
    # The model's own words ("Fake." / "Real."), not only the verdict read from them.
    assert {r["answer"] for r in rows} == {"Fake.", "Real."}
    assert all(r["predicted"] == r["answer"].rstrip(".").lower() for r in rows)


class _InterruptedModel(StandInModel):
    """Ctrl-C arrives while the second batch is being scored."""

    def score(self, images):  # type: ignore[no-untyped-def]
        if self.calls >= 1:
            raise KeyboardInterrupt
        return super().score(images)


def test_ctrl_c_says_how_to_resume_and_the_rerun_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fakescope.cli import main
    from fakescope.evaluation import evaluate as evaluate_module

    data = _tree(tmp_path / "data", n=2)
    out = tmp_path / "out"
    argv = ["eval", str(data), "--model", "stand-in", "--out", str(out), "--batch-size", "4"]
    argv += ["--quiet", "--bootstrap", "0"]
    monkeypatch.setattr(evaluate_module, "_load_model", lambda config: _InterruptedModel())
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"interrupted; finished batches are kept in {out}" in err and "resume" in err
    assert len(prediction_rows(out)) == 4  # the first batch

    monkeypatch.setattr(evaluate_module, "_load_model", lambda config: StandInModel())
    assert main(argv) == 0
    assert len(prediction_rows(out)) == 8 and (out / "report.md").is_file()


def test_a_same_named_dataset_from_another_folder_does_not_reuse_predictions(
    tmp_path: Path,
) -> None:
    # Both folders are called "test" and hold the same file names, but other pictures: the
    # second run must not take the first one's rows for its own.
    first = _tree(tmp_path / "a" / "test", n=2)
    second = tmp_path / "b" / "test"
    for i in range(2):
        write_png(second / "reddit" / "fake" / f"f{i}.png", 250)
        write_png(second / "reddit" / "real" / f"r{i}.png", 5)
    out = tmp_path / "out"
    evaluate(_config(first, out, datasets=[str(first)]), StandInModel())
    with pytest.raises(RunMismatchError, match="dataset named 'test' read from"):
        evaluate(_config(second, out, datasets=[str(second)]), StandInModel())
    # Named apart, both live in one folder; the same folder again resumes as before.
    evaluate(_config(second, out, datasets=[f"second={second}", str(first)]), StandInModel())
    assert {r["dataset"] for r in prediction_rows(out)} == {"test", "second"}


@pytest.mark.parametrize("provenance", [True, False])
@pytest.mark.parametrize("batch_size", [1, 5, 8])
def test_the_robustness_sweep_decodes_each_image_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch_size: int, provenance: bool
) -> None:
    # 12 conditions per image: with 1, 5 or 8 per batch, an image's conditions span batches.
    from fakescope import analysis, images

    decodes: Counter[str] = Counter()
    real_decode = images.decode_image

    def counting_decode(data: bytes, *args: Any, **kwargs: Any) -> Any:
        decodes[hashlib.sha256(data).hexdigest()] += 1
        return real_decode(data, *args, **kwargs)

    monkeypatch.setattr(images, "decode_image", counting_decode)
    monkeypatch.setattr(analysis, "decode_image", counting_decode)  # inspect_image's own name
    data = tmp_path / "data"
    for i, folder in enumerate(("reddit/fake", "reddit/real", "twitter/fake", "twitter/real")):
        write_png(data / folder / "a.png", 20 + 60 * i)
        write_png(data / folder / "b.png", 50 + 60 * i)  # eight different images
    config = _config(data, tmp_path / "out", robustness=True, batch_size=batch_size)
    evaluate(dataclasses.replace(config, provenance=provenance), StandInModel())
    assert len(prediction_rows(tmp_path / "out")) == 8 * 12  # every condition was measured
    assert len(decodes) == 8 and set(decodes.values()) == {1}, decodes


class _ConfidentModel(StandInModel):
    """Scores as a confident tuned model gives them: some within 1e-6 of 1."""

    SCORES = {200: 1 - 1e-9, 100: 1 - 1e-8, 150: 0.9, 50: 0.1}  # by the image's red level

    def score(self, images):  # type: ignore[no-untyped-def]
        self.calls += 1
        return [self.SCORES[im.convert("RGB").getpixel((0, 0))[0]] for im in images]


def test_predictions_keep_every_digit_of_p_fake_that_the_metrics_read(tmp_path: Path) -> None:
    # A fake at 1 - 1e-9 ranks above a (confidently wrong) real at 1 - 1e-8. Written with six
    # decimals both read back as 1.000000: a tie, and AP/ROC-AUC no longer what the model gave.
    from sklearn.metrics import average_precision_score, roc_auc_score

    data = tmp_path / "data"
    for shade, label in ((200, "fake"), (100, "real"), (150, "fake"), (50, "real")):
        write_png(data / label / f"{shade}.png", shade)
    metrics = evaluate(_config(data, tmp_path / "out", bootstrap=0), _ConfidentModel())
    rows = prediction_rows(tmp_path / "out")
    exact = {r["key"]: _ConfidentModel.SCORES[int(Path(r["key"]).stem)] for r in rows}
    labels = [int(r["label"] == "fake") for r in rows]
    scores = [exact[r["key"]] for r in rows]
    overall = metrics["datasets"]["wildrf"]["protocols"]["quantitative"]["overall"]
    assert overall["auc"] == pytest.approx(roc_auc_score(labels, scores)) == 0.75
    assert overall["ap"] == pytest.approx(average_precision_score(labels, scores))
    assert overall["ap"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert all(float(r["p_fake"]) == float(r["score"]) == exact[r["key"]] for r in rows)
