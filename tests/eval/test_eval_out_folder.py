"""An --out folder holds one run: reusing it for another is refused (or cleared with --fresh),
a wider run extends it, and while a run is unfinished nothing describes the previous one.
Identical images under both labels are found (SHA-256) and reported, never dropped."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from eval_helpers import StandInModel, prediction_rows, write_png

from fakescope.cli import main
from fakescope.evaluation import evaluate as evaluate_module
from fakescope.evaluation.evaluate import EvalConfig, RunMismatchError, evaluate


def _tree(root: Path, shade: int = 0) -> Path:
    for i in range(2):
        write_png(root / "reddit" / "fake" / f"f{i}.png", 150 + 40 * i + shade)
        write_png(root / "reddit" / "real" / f"r{i}.png", 20 + 40 * i + shade)
    return root


def _config(datasets: list[str], out: Path, **overrides: object) -> EvalConfig:
    values: dict[str, object] = {
        "datasets": datasets,
        "model": "stand-in",
        "out": out,
        "batch_size": 2,
        "bootstrap": 0,
        "progress": False,
    }
    values.update(overrides)
    return EvalConfig(**values)  # type: ignore[arg-type]


def _argv(out: Path, *datasets: Path | str, extra: tuple[str, ...] = ()) -> list[str]:
    names = [str(d) for d in datasets]
    return ["eval", *names, "--model", "stand-in", "--out", str(out), "--quiet", *extra]


class _Interrupted(StandInModel):
    """Ctrl-C while the second batch is scored."""

    def score(self, images):  # type: ignore[no-untyped-def]
        if self.calls >= 1:
            raise KeyboardInterrupt
        return super().score(images)


def test_another_dataset_in_a_used_folder_is_refused_in_one_line_until_fresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = _tree(tmp_path / "first"), _tree(tmp_path / "second", shade=5)
    out = tmp_path / "out"
    loads: list[object] = []

    def load(config: EvalConfig) -> StandInModel:
        loads.append(config)
        return StandInModel()

    monkeypatch.setattr(evaluate_module, "_load_model", load)
    assert main(_argv(out, first)) == 0
    report = (out / "report.md").read_text(encoding="utf-8")
    capsys.readouterr()

    assert main(_argv(out, second)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "dataset first" in err and "another --out" in err and "--fresh" in err
    assert len(loads) == 1  # refused before the model loaded
    assert (out / "report.md").read_text(encoding="utf-8") == report  # nothing touched

    assert main(_argv(out, second, extra=("--fresh",))) == 0
    assert {r["dataset"] for r in prediction_rows(out)} == {"second"}
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert set(metrics["datasets"]) == {"second"}
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert set(run["datasets"]) == {"second"}


def test_a_narrower_run_is_refused_and_says_what_the_folder_holds(tmp_path: Path) -> None:
    data = _tree(tmp_path / "data")
    out = tmp_path / "out"
    evaluate(_config([str(data)], out, protocol="both"), StandInModel())
    with pytest.raises(RunMismatchError, match="protocol closed"):
        evaluate(_config([str(data)], out), StandInModel())
    with pytest.raises(RunMismatchError, match="--limit/--seed selection"):
        evaluate(_config([str(data)], out, protocol="both", limit=2), StandInModel())


def test_a_wider_run_keeps_what_is_done_and_its_report_covers_the_whole_folder(
    tmp_path: Path,
) -> None:
    data, other = _tree(tmp_path / "data"), _tree(tmp_path / "other", shade=5)
    out = tmp_path / "out"
    evaluate(_config([str(data)], out), StandInModel())
    model = StandInModel()
    metrics = evaluate(_config([str(data), str(other)], out, protocol="both"), model)
    assert metrics["run"]["processed_this_run"] == 4 + 4  # data: closed only; other: both
    rows = prediction_rows(out)
    assert {(r["dataset"], r["protocol"]) for r in rows} == {
        (d, p) for d in ("data", "other") for p in ("quantitative", "closed")
    }
    assert set(metrics["datasets"]) == {"data", "other"}


def test_an_unfinished_run_leaves_no_report_of_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _tree(tmp_path / "data")
    out = tmp_path / "out"
    monkeypatch.setattr(evaluate_module, "_load_model", lambda config: StandInModel())
    assert main(_argv(out, data, extra=("--bootstrap", "0"))) == 0
    assert (out / "metrics.json").is_file() and (out / "pr_curves.png").is_file()

    # The same folder, now with the closed protocol too: interrupted part-way.
    monkeypatch.setattr(evaluate_module, "_load_model", lambda config: _Interrupted())
    wider = _argv(out, data, extra=("--bootstrap", "0", "--protocol", "both", "--batch-size", "2"))
    assert main(wider) == 130
    report = (out / "report.md").read_text(encoding="utf-8")
    assert report.startswith("# FakeScope evaluation: not finished")
    assert "run the same `fakescope eval` command again" in report
    assert "| **overall** |" not in report
    for name in ("metrics.json", "pr_curves.png", "roc_curves.png"):
        assert not (out / name).exists(), name
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["protocols"] == ["quantitative", "closed"]
    capsys.readouterr()
    assert main(["eval", "compare", str(out), str(out)]) == 2
    assert "has not finished" in capsys.readouterr().err

    monkeypatch.setattr(evaluate_module, "_load_model", lambda config: StandInModel())
    assert main(wider) == 0
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "not finished" not in report and "**closed** protocol" in report
    assert (out / "metrics.json").is_file()


def test_the_same_image_under_both_labels_is_reported_not_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _tree(tmp_path / "data")
    shutil.copy(data / "reddit" / "fake" / "f0.png", data / "reddit" / "real" / "oops.png")
    shutil.copy(data / "reddit" / "fake" / "f1.png", data / "reddit" / "fake" / "again.png")
    shutil.copy(data / "reddit" / "real" / "r0.png", data / "reddit" / "real" / "twice.png")
    shutil.copy(data / "reddit" / "real" / "r0.png", data / "reddit" / "real" / "thrice.png")

    from fakescope import images

    reads: list[Path] = []
    real_read = images.read_image_bytes

    def counting_read(source, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not hasattr(source, "read"):  # a path (it then calls itself with the open file)
            reads.append(Path(source))
        return real_read(source, *args, **kwargs)

    monkeypatch.setattr(images, "read_image_bytes", counting_read)
    out = tmp_path / "out"
    metrics = evaluate(_config([str(data)], out, protocol="both"), StandInModel())
    assert len(reads) == len(set(reads)) == 8  # each file read once, for the model and the hash

    entry = metrics["datasets"]["data"]
    duplicates = entry["duplicates"]
    assert duplicates["hashed"] == 8 and duplicates["both_labels_images"] == 2
    [group] = duplicates["both_labels"]
    assert group["fake"] == ["reddit/fake/f0.png"] and group["real"] == ["reddit/real/oops.png"]
    assert len(group["sha256"]) == 64
    assert duplicates["same_label_copies"] == {"fake": 1, "real": 2}
    overall = entry["protocols"]["quantitative"]["overall"]
    assert (overall["n_fake"], overall["n_real"]) == (3, 5)  # kept, each under its label

    report = (out / "report.md").read_text(encoding="utf-8")
    top = report.split("## ")[0]
    assert "The same image under both labels" in top and "data: 2 images" in top
    assert "fake `reddit/fake/f0.png`; real `reddit/real/oops.png`" in report
    assert "1 fake and 2 real image(s) have the same bytes as another" in report
    assert {
        r["sha256"] for r in prediction_rows(out) if r["key"].endswith(("f0.png", "oops.png"))
    } == {group["sha256"]}


def test_a_clean_dataset_reports_no_duplicates(tmp_path: Path) -> None:
    out = tmp_path / "out"
    metrics = evaluate(_config([str(_tree(tmp_path / "data"))], out), StandInModel())
    duplicates = metrics["datasets"]["data"]["duplicates"]
    assert duplicates["both_labels"] == [] and duplicates["same_label_copies"] == {
        "fake": 0,
        "real": 0,
    }
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "both labels" not in report and "Repeated images" not in report


def test_predictions_without_the_sha256_column_are_upgraded_and_still_checked(
    tmp_path: Path,
) -> None:
    data = _tree(tmp_path / "data")
    shutil.copy(data / "reddit" / "fake" / "f0.png", data / "reddit" / "real" / "oops.png")
    out = tmp_path / "out"
    whole = evaluate(_config([str(data)], out), StandInModel())
    rows = prediction_rows(out)
    old_columns = [c for c in rows[0] if c != "sha256"]
    with (out / "predictions.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=old_columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    model = StandInModel()
    resumed = evaluate(_config([str(data)], out), model)
    assert model.calls == 0  # nothing predicted again
    assert resumed["datasets"] == whole["datasets"]
    assert resumed["datasets"]["data"]["duplicates"]["both_labels_images"] == 2
    assert "sha256" in prediction_rows(out)[0]


def test_a_manifest_listing_one_file_as_fake_and_as_real_measures_both_and_says_so(
    tmp_path: Path,
) -> None:
    data = _tree(tmp_path / "data")
    images = [data / "reddit" / "fake" / "f0.png", data / "reddit" / "fake" / "f1.png"]
    images += [data / "reddit" / "real" / "r0.png", data / "reddit" / "real" / "r1.png"]
    manifest = tmp_path / "set.csv"
    labels = ["fake", "fake", "real", "real"]
    lines = ["path,label", *(f"{p},{lab}" for p, lab in zip(images, labels, strict=True))]
    lines += [f"{images[0]},real", f"{images[1]},fake"]  # listed again: once wrongly, once twice
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    metrics = evaluate(_config([str(manifest)], out), StandInModel())

    entry = metrics["datasets"]["set"]
    overall = entry["protocols"]["quantitative"]["overall"]
    assert (overall["n_fake"], overall["n_real"]) == (3, 3)  # every listing has its own row
    assert len(prediction_rows(out)) == 6
    [group] = entry["duplicates"]["both_labels"]
    assert group["fake"] == [str(images[0])] and group["real"] == [f"{images[0]}#2"]
    # The same file listed twice under one label is not a copy of another file.
    assert entry["duplicates"]["same_label_copies"] == {"fake": 0, "real": 0}


def test_a_label_fixed_since_the_predictions_is_not_read_from_the_old_rows(
    tmp_path: Path,
) -> None:
    data = _tree(tmp_path / "data")
    images = sorted(str(p) for p in data.rglob("*.png"))
    manifest = tmp_path / "set.csv"
    labelled = [f"{p},{'fake' if '/fake/' in p else 'real'}" for p in images]
    manifest.write_text("\n".join(["path,label", *labelled]) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    evaluate(_config([str(manifest)], out), StandInModel())
    labelled[0] = labelled[0].replace(",fake", ",real")
    manifest.write_text("\n".join(["path,label", *labelled]) + "\n", encoding="utf-8")
    with pytest.raises(RunMismatchError, match=r"1 image\(s\) labelled otherwise since.*--fresh"):
        evaluate(_config([str(manifest)], out), StandInModel())
    metrics = evaluate(_config([str(manifest)], out, fresh=True), StandInModel())
    overall = metrics["datasets"]["set"]["protocols"]["quantitative"]["overall"]
    assert (overall["n_fake"], overall["n_real"]) == (1, 3)


def test_a_second_run_into_a_folder_in_use_is_refused_and_touches_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two runs in one folder removed each other's temporary files and mixed predictions.
    import os
    import signal
    import subprocess
    import sys

    first = _tree(tmp_path / "first")
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(evaluate_module, "_load_model", lambda config: StandInModel())
    holder = subprocess.Popen(  # another process, holding the folder as a run does
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path\n"
            "from fakescope.evaluation.output_files import held_alone\n"
            "with held_alone(Path(sys.argv[1])):\n"
            "    print('held', flush=True); sys.stdin.readline()",
            str(out),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        before = sorted(p.name for p in out.iterdir())
        assert main(_argv(out, first)) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert "another fakescope eval is writing" in err and "another --out" in err
        assert sorted(p.name for p in out.iterdir()) == before  # nothing written or removed
        os.kill(holder.pid, signal.SIGKILL)  # a holder killed outright leaves no stale lock
        holder.wait(timeout=30)
        assert main(_argv(out, first)) == 0
        assert {r["dataset"] for r in prediction_rows(out)} == {"first"}
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_a_folder_that_can_be_written_but_not_listed_runs_unguarded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Mode 0333 (a drop-box): writing works, opening the folder to lock it does not. Tests run
    # as root here, which may open anything, so the refusal is stood in for.
    import os

    from fakescope.evaluation import output_files

    real_open = os.open

    def refusing(path, flags, *args):  # type: ignore[no-untyped-def]
        if Path(path) == tmp_path and flags & getattr(os, "O_DIRECTORY", 0):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refusing)
    with output_files.held_alone(tmp_path):
        (tmp_path / "written").write_text("the run goes on")
    assert (tmp_path / "written").exists()
