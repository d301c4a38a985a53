"""JSON manifests whose strings hold lone surrogate escapes ("\\ud800"), read by `fakescope eval`
with the tiny checkpoint. An escape that stands for no character is refused as the manifest is
read: one line on stderr naming the file and the key, exit status 2, and the --out folder as it
was (no run started, none half written). A "\\udcNN" escape in a name is how Python writes a byte
of a name that is not UTF-8: it is carried exactly, as a folder name's byte is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eval_helpers import write_png

from fakescope.cli import main


def _folder(tmp_path: Path) -> Path:
    write_png(tmp_path / "a.png", 200)
    write_png(tmp_path / "b.png", 20)
    return tmp_path


def _manifest(path: Path, text: str) -> Path:
    path.write_text(text, encoding="ascii")  # the escapes as JSON writes them, "\ud800"
    return path


def _eval(
    capsys: pytest.CaptureFixture[str], model: Path, data: Path, out: Path
) -> tuple[int, str, str]:
    status = main(["eval", str(data), "--model", str(model), "--out", str(out), "--quiet",
                   "--bootstrap", "0"])  # fmt: skip
    stdout, stderr = capsys.readouterr()
    return status, stdout, stderr


def _refused(capsys: pytest.CaptureFixture[str], model: Path, data: Path, out: Path) -> str:
    status, stdout, stderr = _eval(capsys, model, data, out)
    assert (status, stdout) == (2, "")
    (line,) = stderr.splitlines()  # one line, no traceback
    assert line.startswith(f"fakescope: error: {data}:")
    return line


def test_a_generator_with_a_lone_surrogate_is_refused_before_anything_is_written(
    capsys: pytest.CaptureFixture[str], tiny_model_dir: Path, tmp_path: Path
) -> None:
    data = _manifest(
        _folder(tmp_path) / "list.json",
        '[{"path": "a.png", "label": "fake", "generator": "gen\\ud800"},'
        ' {"path": "b.png", "label": "real", "generator": "camera"}]',
    )
    line = _refused(capsys, tiny_model_dir, data, tmp_path / "out")
    assert "list.json:1: generator 'gen\\ud800' holds the escape \\ud800" in line
    assert not (tmp_path / "out").exists()


def test_a_refused_manifest_leaves_the_previous_run_in_its_folder_as_it_was(
    capsys: pytest.CaptureFixture[str], tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The manifest of a finished run gains an entry: resuming would measure it alone."""
    write_png(_folder(tmp_path) / "c.png", 90)
    lines = ['{"path": "a.png", "label": "fake", "subset": "x"}\n',
             '{"path": "b.png", "label": "real", "subset": "x"}\n']  # fmt: skip
    data = _manifest(tmp_path / "list.jsonl", "".join(lines))
    out = tmp_path / "out"
    assert _eval(capsys, tiny_model_dir, data, out)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    _manifest(data, "".join(lines) + '{"path": "c.png", "label": "real", "subset": "\\udfff"}\n')
    line = _refused(capsys, tiny_model_dir, data, out)
    assert "list.jsonl:3: subset '\\udfff' holds the escape \\udfff" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the report still finished


def test_a_path_or_a_label_with_a_lone_surrogate_is_refused_naming_its_key(
    capsys: pytest.CaptureFixture[str], tiny_model_dir: Path, tmp_path: Path
) -> None:
    _folder(tmp_path)
    path = _manifest(tmp_path / "paths.json", '[{"image": "a\\ud834.png", "label": "fake"}]')
    line = _refused(capsys, tiny_model_dir, path, tmp_path / "out")
    assert "paths.json:1: image 'a\\ud834.png' holds the escape \\ud834" in line
    label = _manifest(tmp_path / "labels.json", '[{"path": "a.png", "label": "fake\\ud800"}]')
    line = _refused(capsys, tiny_model_dir, label, tmp_path / "out")
    assert "labels.json:1: unknown label 'fake\\ud800'" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("entry", "key", "escape"),
    [
        ({"question": "Which is it? \udce9", "options": ["fake", "real"]}, "question", "\\udce9"),
        ({"question": "Which is it?", "options": {"A": "fake", "B": "re\ud800al"}}, "options",
         "\\ud800"),
    ],
)  # fmt: skip
def test_text_the_model_reads_is_refused_with_any_lone_surrogate(
    capsys: pytest.CaptureFixture[str],
    tiny_model_dir: Path,
    tmp_path: Path,
    entry: dict[str, object],
    key: str,
    escape: str,
) -> None:
    """A question or an option goes to the tokenizer, which fails on any lone surrogate (a byte
    escape too) in the middle of the run."""
    _folder(tmp_path)
    record = {"image_id": "a.png", "answer": "A", **entry}
    data = _manifest(tmp_path / "mcq.json", json.dumps([record]))  # "\\udce9" escapes
    line = _refused(capsys, tiny_model_dir, data, tmp_path / "out")
    assert f"mcq.json: entry 1: {key} " in line and f"holds the escape {escape}" in line
    assert not (tmp_path / "out").exists()


def test_a_byte_escape_in_a_generator_is_carried_as_that_byte(
    capsys: pytest.CaptureFixture[str], tiny_model_dir: Path, tmp_path: Path
) -> None:
    data = _manifest(
        _folder(tmp_path) / "list.json",
        '[{"path": "a.png", "label": "fake", "generator": "gen\\udce9"},'
        ' {"path": "b.png", "label": "real", "generator": "gen\\udce9"}]',
    )
    out = tmp_path / "out"
    assert _eval(capsys, tiny_model_dir, data, out)[0] == 0
    assert b"\nlist,gen\xe9,a.png," in (out / "predictions.csv").read_bytes()
    assert "| gen\\xe9 | 1 | 1 |" in (out / "report.md").read_bytes().decode("utf-8")
