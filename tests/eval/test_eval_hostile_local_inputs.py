"""Hostile local inputs to `fakescope eval`: dataset arguments that are no plain file, manifests
built or broken to mislead their readers, output folders in the way or on a full disk, and run
files damaged between two runs. Each is a one-line error naming what to fix, given before the
model loads where it can be; nothing is left half written, and a rerun resumes the work done.
Commands that could hang or read without end run in a subprocess with a timeout and a memory cap.
"""

from __future__ import annotations

import csv
import errno
import os
import resource
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from eval_helpers import StandInModel, prediction_rows, write_json, write_png
from matplotlib.figure import Figure

from fakescope.cli import main
from fakescope.errors import DatasetError
from fakescope.evaluation import evaluate as evaluate_module
from fakescope.evaluation.datasets import load_dataset
from fakescope.evaluation.evaluate import (
    EvalConfig,
    OutputInTheWayError,
    RunMismatchError,
    evaluate,
)
from fakescope.evaluation.output_files import replacing


def _pair(folder: Path) -> Path:
    write_png(folder / "f.png", 200)
    write_png(folder / "r.png", 20)
    return folder


def _config(dataset: Path | str, out: Path) -> EvalConfig:
    return EvalConfig(
        datasets=[str(dataset)], model="stand-in", out=out, batch_size=1, bootstrap=0,
        progress=False,
    )  # fmt: skip


def _eval_subprocess(dataset: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """`fakescope eval` in a child with 60 s and 2 GiB: a hang or an endless read fails."""

    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    return subprocess.run(
        [sys.executable, "-m", "fakescope.cli", "eval", str(dataset), "--model", "unused",
         "--out", str(out), "--quiet"],
        capture_output=True, text=True, timeout=60, preexec_fn=cap_memory,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


# -- dataset arguments and manifests -------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_manifest_that_is_a_named_pipe_is_refused_at_once(tmp_path: Path) -> None:
    pipe = tmp_path / "list.csv"
    os.mkfifo(pipe)
    result = _eval_subprocess(pipe, tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"fakescope: error: {pipe}: not a folder or a regular file (a named pipe, a device?); "
        "give the dataset's folder or its manifest file"
    ]
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero here")
def test_a_manifest_that_is_an_endless_device_is_refused_without_reading_it(
    tmp_path: Path,
) -> None:
    endless = tmp_path / "list.json"
    endless.symlink_to("/dev/zero")
    result = _eval_subprocess(endless, tmp_path / "out")
    assert result.returncode == 2, result.stderr[-300:]
    assert "not a folder or a regular file" in result.stderr


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links here")
def test_a_dataset_that_is_a_link_to_nothing_says_where_it_links(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(DatasetError, match=f"{loop} is a symbolic link to {loop}, which is not"):
        load_dataset(str(loop))


def test_json_nested_thousands_deep_is_a_dataset_error(tmp_path: Path) -> None:
    manifest = tmp_path / "list.json"
    manifest.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(DatasetError, match="nested too deeply"):
        load_dataset(str(manifest))


def test_a_broken_json_lines_entry_is_named_by_its_line_in_the_file(tmp_path: Path) -> None:
    folder = _pair(tmp_path)
    manifest = folder / "list.jsonl"
    manifest.write_text(
        '{"path": "f.png", "label": "fake"}\n\n{"path": "r.png", "label": \n', encoding="utf-8"
    )
    with pytest.raises(DatasetError, match=r"list\.jsonl:3: invalid JSON"):
        load_dataset(str(manifest))


def test_a_quote_left_open_is_an_error_not_a_field_that_swallows_the_lines_after_it(
    tmp_path: Path,
) -> None:
    folder = _pair(tmp_path)
    manifest = folder / "list.csv"
    # Read leniently, the generator of f.png swallowed the line of r.png: one image measured.
    manifest.write_text('path,label,generator\nf.png,fake,"sd\nr.png,real,camera\n', "utf-8")
    with pytest.raises(DatasetError, match=r"list\.csv:2: .*a quoted field is never closed"):
        load_dataset(str(manifest))


def test_a_listed_name_longer_than_the_system_allows_is_named_by_its_entry(
    tmp_path: Path,
) -> None:
    folder = _pair(tmp_path)
    manifest = write_json(
        folder / "list.json",
        [{"path": "f.png", "label": "fake"}, {"path": "x" * 5000 + ".png", "label": "real"}],
    )
    with pytest.raises(DatasetError, match=r"list\.json:2: cannot look up .*x+…: ") as refused:
        load_dataset(str(manifest))
    assert len(str(refused.value)) < 400  # the name is cut short, not printed whole


def test_listed_names_with_line_breaks_are_shown_on_one_line(tmp_path: Path) -> None:
    folder = _pair(tmp_path)
    manifest = write_json(
        folder / "list.json",
        [{"path": "f.png", "label": "fake"}, {"path": "gone\n.png", "label": "real"}],
    )
    with pytest.raises(DatasetError, match=r"not found \(.*gone\\n\.png\)") as refused:
        load_dataset(str(manifest))
    assert "\n" not in str(refused.value)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links here")
def test_a_link_to_nothing_in_a_folder_tree_is_a_missing_image_not_a_silent_gap(
    tmp_path: Path,
) -> None:
    _pair(tmp_path / "data" / "fake")
    _pair(tmp_path / "data" / "real")
    (tmp_path / "data" / "real" / "moved.png").symlink_to(tmp_path / "elsewhere.png")
    with pytest.raises(DatasetError, match=r"1 listed image\(s\) not found .*moved\.png"):
        load_dataset(str(tmp_path / "data"))
    dataset = load_dataset(str(tmp_path / "data"), skip_missing=True)
    assert [p.name for p in dataset.missing] == ["moved.png"]
    assert len(dataset.samples) == 4


def test_a_label_folder_that_cannot_be_listed_is_an_error_not_a_silent_gap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # chmod 000 does not stop root (these tests may run as root): the refusal is simulated
    # where os.walk meets it, in os.scandir.
    data = tmp_path / "data"
    _pair(data / "real")
    _pair(data / "fake")
    (data / "lost+found").mkdir()  # a volume's: no label folder, nothing of the dataset
    locked = {data / "lost+found"}
    scandir = os.scandir

    def refusing(path: object = ".") -> object:
        if Path(str(path)) in locked:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return scandir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", refusing)
    assert len(load_dataset(str(data)).samples) == 4
    for folder in (data / "fake" / "inside", data / "real"):
        _pair(folder)
        locked.add(folder)
        with pytest.raises(DatasetError, match=f"{folder}: cannot list this folder"):
            load_dataset(str(data))
        locked.discard(folder)


# -- run files damaged between two runs ---------------------------------------------------


def test_a_generator_name_longer_than_a_csv_field_is_read_back_when_the_run_resumes(
    tmp_path: Path,
) -> None:
    folder = _pair(tmp_path)
    manifest = write_json(
        folder / "list.json",
        [
            {"path": "f.png", "label": "fake", "generator": "g" * 200_000},
            {"path": "r.png", "label": "real"},
        ],
    )
    default = csv.field_size_limit(131_072)  # the csv module's own default, whatever ran before
    try:
        evaluate(_config(manifest, tmp_path / "out"), StandInModel())
        resumed = StandInModel()
        metrics = evaluate(_config(manifest, tmp_path / "out"), resumed)
    finally:
        csv.field_size_limit(default)
    assert resumed.calls == 0  # nothing redone
    assert metrics["datasets"]["list"]["protocols"]["quantitative"]["overall"]["n"] == 2


def test_a_prediction_row_whose_score_is_no_number_is_redone_not_fatal(tmp_path: Path) -> None:
    folder = _pair(tmp_path)
    manifest = write_json(
        folder / "list.json",
        [{"path": "f.png", "label": "fake"}, {"path": "r.png", "label": "real"}],
    )
    out = tmp_path / "out"
    evaluate(_config(manifest, out), StandInModel())
    rows = prediction_rows(out)
    rows[0]["p_fake"] = rows[0]["score"] = "abc"
    with (out / "predictions.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    resumed = StandInModel()
    metrics = evaluate(_config(manifest, out), resumed)
    assert resumed.calls == 1  # that one image, again
    assert metrics["datasets"]["list"]["protocols"]["quantitative"]["overall"]["n"] == 2
    assert all(row["p_fake"] != "abc" for row in prediction_rows(out))


def test_an_image_unreadable_in_one_run_is_read_again_when_the_run_resumes(
    tmp_path: Path,
) -> None:
    # A file that vanished mid-run, or could not be read, and is back: measured on the rerun.
    folder = _pair(tmp_path)
    good = (folder / "f.png").read_bytes()
    (folder / "f.png").write_bytes(good[:20])  # cut short while the first run reads it
    manifest = write_json(
        folder / "list.json",
        [{"path": "f.png", "label": "fake"}, {"path": "r.png", "label": "real"}],
    )
    out = tmp_path / "out"
    first = evaluate(_config(manifest, out), StandInModel())
    assert first["datasets"]["list"]["protocols"]["quantitative"]["errors"] == 1
    (folder / "f.png").write_bytes(good)
    resumed = StandInModel()
    metrics = evaluate(_config(manifest, out), resumed)
    assert resumed.calls == 1  # that image only
    assert metrics["datasets"]["list"]["protocols"]["quantitative"]["errors"] == 0
    assert sorted((r["key"], r["error"]) for r in prediction_rows(out)) == [
        ("f.png", ""),
        ("r.png", ""),
    ]


@pytest.mark.parametrize(
    ("run_json", "says"),
    [
        ('{"datasets": ["a", "b"]}', "not a run record"),
        ('{"datasets": {"list": 3}}', "not a run record"),
        ("[]", "not a run record"),
        ("[" * 100_000, "nested too deeply"),
    ],
    ids=["datasets-a-list", "source-a-number", "an-array", "deep"],
)
def test_a_damaged_run_json_is_refused_in_one_line_before_the_model_loads(
    tmp_path: Path, run_json: str, says: str
) -> None:
    folder = _pair(tmp_path)
    manifest = write_json(folder / "list.json", [{"path": "f.png", "label": "fake"}])
    out = tmp_path / "out"
    evaluate(_config(manifest, out), StandInModel())
    (out / "run.json").write_text(run_json, encoding="utf-8")
    with pytest.raises(RunMismatchError, match=f"run.json .*{says}.*--fresh"):
        evaluate(_config(manifest, out), StandInModel())


# -- output folders in the way, on a full disk -------------------------------------------


@pytest.mark.parametrize("name", ["run.json", "predictions.csv", "metrics.json", "roc_curves.png"])
def test_a_folder_where_an_output_file_goes_is_refused_before_anything_is_predicted(
    tmp_path: Path, name: str
) -> None:
    folder = _pair(tmp_path)
    manifest = write_json(folder / "list.json", [{"path": "f.png", "label": "fake"}])
    out = tmp_path / "out"
    (out / name).mkdir(parents=True)
    model = StandInModel()
    with pytest.raises(OutputInTheWayError, match=f"{out / name} is not a file.*move it away"):
        evaluate(_config(manifest, out), model)
    assert model.calls == 0
    assert sorted(p.name for p in out.iterdir()) == [name]


def test_an_out_folder_where_no_file_can_be_created_is_refused_before_anything_is_predicted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # chmod does not stop root (these tests may run as root): the refusal is simulated where
    # the file system gives it, in os.open.
    folder = _pair(tmp_path)
    manifest = write_json(folder / "list.json", [{"path": "f.png", "label": "fake"}])
    out = tmp_path / "out"
    out.mkdir()
    real_open = os.open

    def read_only(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if Path(str(path)).parent == out and flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", read_only)
    model = StandInModel()
    with pytest.raises(PermissionError) as refused:
        evaluate(_config(manifest, out), model)
    assert refused.value.filename == str(out)
    assert model.calls == 0


def test_a_full_disk_names_the_file_it_stopped_and_the_rerun_finishes_without_redoing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _pair(tmp_path)
    manifest = write_json(
        folder / "list.json",
        [{"path": "f.png", "label": "fake"}, {"path": "r.png", "label": "real"}],
    )
    out = tmp_path / "out"

    def disk_full(self: Figure, *args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # a write names no file

    with monkeypatch.context() as patch:
        patch.setattr(Figure, "savefig", disk_full)
        with pytest.raises(OSError) as stopped:
            evaluate(_config(manifest, out), StandInModel())
    assert stopped.value.filename == str(out / "pr_curves.png")
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left
    assert "not finished" in (out / "report.md").read_text(encoding="utf-8")
    resumed = StandInModel()
    evaluate(_config(manifest, out), resumed)
    assert resumed.calls == 0
    assert (out / "pr_curves.png").is_file() and (out / "metrics.json").is_file()


def test_a_full_disk_while_predictions_are_appended_names_the_predictions_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _pair(tmp_path)
    manifest = write_json(folder / "list.json", [{"path": "f.png", "label": "fake"}])

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError) as stopped:
        evaluate(_config(manifest, tmp_path / "out"), StandInModel())
    assert stopped.value.filename == str(tmp_path / "out" / "predictions.csv")


def test_a_failed_rename_names_the_output_not_its_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    target.mkdir()
    with pytest.raises(IsADirectoryError) as refused, replacing(target) as temporary:
        temporary.write_text("x", encoding="utf-8")
    assert refused.value.filename == str(target)
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


# `fakescope eval` in a child whose first figure stalls once its temporary file is written.
_STALLED_RUN = """
import sys, time
sys.path.insert(0, sys.argv.pop(1))  # tests/eval, for the stand-in model
from eval_helpers import StandInModel
from matplotlib.figure import Figure
from fakescope.cli import main
from fakescope.evaluation import evaluate

def stalled_savefig(self, path, *args, **kwargs):
    with open(path, "wb") as fh:
        fh.write(b"half a figure")
    print("writing", flush=True)
    time.sleep(60)

evaluate._load_model = lambda config: StandInModel()
Figure.savefig = stalled_savefig
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="no SIGTERM here")
def test_sigterm_mid_write_removes_the_temporary_file_and_the_rerun_resumes(
    tmp_path: Path,
) -> None:
    folder = _pair(tmp_path)
    manifest = write_json(
        folder / "list.json",
        [{"path": "f.png", "label": "fake"}, {"path": "r.png", "label": "real"}],
    )
    out = tmp_path / "out"
    argv = ["eval", str(manifest), "--model", "stand-in", "--out", str(out), "--quiet"]
    child = subprocess.Popen(
        [sys.executable, "-c", _STALLED_RUN, str(Path(__file__).parent), *argv, "--bootstrap", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"},
    )  # fmt: skip
    try:
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], 60)  # a child that hangs fails
        assert ready and child.stdout.readline() == "writing\n"
        assert [p.name for p in out.iterdir() if p.name.endswith(".tmp.png")]  # mid-write
        child.send_signal(signal.SIGTERM)
        _out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert f"terminated; finished batches are kept in {out}" in err
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary left
    resumed = StandInModel()
    evaluate(_config(manifest, out), resumed)
    assert resumed.calls == 0  # the predictions made before SIGTERM were kept


def test_a_run_removes_the_temporary_files_a_killed_run_left_and_nothing_else(
    tmp_path: Path,
) -> None:
    folder = _pair(tmp_path)
    manifest = write_json(folder / "list.json", [{"path": "f.png", "label": "fake"}])
    out = tmp_path / "out"
    out.mkdir()
    left = [
        ".report.0123456789ab.tmp.md",
        ".pr_curves.0123456789ab.tmp.png",
        ".predictions.0123456789ab.tmp.csv",
        ".write-check.0123456789ab",
    ]
    others = [".report.md.swp", ".notes.0123456789ab.tmp.md", ".report.0123456789ab.tmp.md.bak"]
    for name in left + others:
        (out / name).write_text("x", encoding="utf-8")
    (out / ".metrics.0123456789ab.tmp.json").mkdir()  # not a file: not one of ours
    evaluate(_config(manifest, out), StandInModel())
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == sorted(
        [*others, ".metrics.0123456789ab.tmp.json"]
    )


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links here")
def test_an_out_folder_that_is_a_link_to_nothing_is_named_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _pair(tmp_path)
    manifest = write_json(folder / "list.json", [{"path": "f.png", "label": "fake"}])
    out = tmp_path / "out"
    out.symlink_to(tmp_path / "gone" / "out")
    monkeypatch.setattr(evaluate_module, "_load_model", lambda config: StandInModel())
    assert main(["eval", str(manifest), "--model", "stand-in", "--out", str(out)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "is a symbolic link to" in line and "not there" in line  # not "File exists"


def test_a_generator_with_a_bar_or_a_line_break_keeps_each_report_row_on_one_line(
    tmp_path: Path,
) -> None:
    folder = _pair(tmp_path)
    manifest = write_json(
        folder / "list.json",
        [
            {"path": "f.png", "label": "fake", "generator": "sd|xl\nturbo"},
            {"path": "r.png", "label": "real", "generator": "camera"},
        ],
    )
    evaluate(_config(manifest, tmp_path / "out"), StandInModel())
    report = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    row = next(line for line in report.splitlines() if line.startswith("| sd"))
    assert row.startswith("| sd\\|xl\\nturbo | 1 | ")  # the name whole, then its counts
    assert not any(line.startswith("turbo") for line in report.splitlines())


# -- compare -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[" * 100_000, "nested too deeply"),
        (b'{"datasets": {"a": 5}}', "datasets.a is not what `fakescope eval` writes"),
        (
            b'{"datasets": {"a": {"protocols": {"quantitative": {"overall": {"ap": "x"}}}}}}',
            "datasets.a.protocols.quantitative.overall.ap is 'x', not a number",
        ),
        (b'{"datasets": {}, "run": {"datasets": {"a": 3}}}', "run.datasets.a is not what"),
    ],
    ids=["not-utf8", "deep", "entry-a-number", "ap-a-string", "run-dataset-a-number"],
)
def test_compare_refuses_a_damaged_metrics_json_in_one_line_naming_the_part(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, says: str
) -> None:
    good, damaged = tmp_path / "good", tmp_path / "damaged"
    good.mkdir()
    damaged.mkdir()
    (good / "metrics.json").write_text('{"datasets": {}}', encoding="utf-8")
    (damaged / "metrics.json").write_bytes(content)
    assert main(["eval", "compare", str(good), str(damaged)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"fakescope: error: {damaged / 'metrics.json'}: ")
    assert says in line
