"""`fakescope ask` marks an untrained checkpoint's answer on stdout, where scripts read it: a first
line in plain text, `"untrained": true` in `--json` (as `analyze --json` does)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_runs import run_main
from PIL import Image


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ask") / "photo.png"
    Image.new("RGB", (24, 16), (120, 60, 200)).save(path)
    return path


@pytest.fixture(scope="module")
def unmarked_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint without its `fakescope_untrained` mark, as a trained one loads."""
    copy = Path(shutil.copytree(tiny_model_dir, tmp_path_factory.mktemp("unmarked") / "ckpt"))
    config = json.loads((copy / "config.json").read_text(encoding="utf-8"))
    config["fakescope_untrained"] = False
    (copy / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return copy


def _ask(capsys: pytest.CaptureFixture[str], model: Path, image: Path, *args: str) -> str:
    status, out, err = run_main(
        capsys, "ask", str(image), "--model", str(model), "--max-new-tokens", "4", *args
    )
    assert status == 0, err
    return out


def test_a_plain_answer_of_an_untrained_checkpoint_starts_with_a_notice_line(
    capsys: pytest.CaptureFixture[str], tiny_model_dir: Path, image: Path
) -> None:
    out = _ask(capsys, tiny_model_dir, image, "--question", "Is the sky real?")
    first, _answer = out.split("\n", 1)
    assert first == "[untrained model: random weights, this answer means nothing]"


def test_a_plain_answer_of_a_trained_checkpoint_has_no_notice(
    capsys: pytest.CaptureFixture[str], unmarked_model_dir: Path, image: Path
) -> None:
    out = _ask(capsys, unmarked_model_dir, image, "--question", "Is the sky real?")
    assert "untrained" not in out and out.endswith("\n")


def test_json_answer_says_untrained_as_analyze_does(
    capsys: pytest.CaptureFixture[str], tiny_model_dir: Path, image: Path
) -> None:
    out = _ask(capsys, tiny_model_dir, image, "--aspect", "Light & Shadow", "--json")
    (line,) = out.splitlines()
    answer = json.loads(line)
    assert answer["untrained"] is True and answer["model"]["untrained"] is True
    assert answer["path"] == str(image) and len(answer["sha256"]) == 64
    assert (answer["kind"], answer["aspect"]) == ("aspect", "light_and_shadow")
    assert isinstance(answer["answer"], str) and answer["prompt_version"]


def test_json_answer_of_a_trained_checkpoint_says_untrained_false(
    capsys: pytest.CaptureFixture[str], unmarked_model_dir: Path, image: Path
) -> None:
    out = _ask(capsys, unmarked_model_dir, image, "--question", " Is  it real? ", "--json")
    answer = json.loads(out)
    assert answer["untrained"] is False and answer["model"]["untrained"] is False
    assert (answer["kind"], answer["question"]) == ("question", "Is it real?")
