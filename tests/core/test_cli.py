"""The `fakescope` command as a user runs it: JSON Lines per image, errors per file, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import hostile_images
import pytest
from cli_runs import run_main
from PIL import Image

from fakescope.loading import load_model


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fakescope.cli", *args],
        capture_output=True,
        text=True,
        timeout=240,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )


def rows_where(manifest_rows: list[dict[str, str]], label: str, provenance: str) -> list[str]:
    return [
        r["relative_path"]
        for r in manifest_rows
        if r["label"] == label and provenance in r["has_provenance_metadata"]
    ]


@pytest.fixture
def sample_paths(
    shared_data: Path, manifest_rows: list[dict[str, str]], tmp_path: Path
) -> dict[str, Path]:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return {
        "comfyui": shared_data / rows_where(manifest_rows, "fake", "PNGtext:prompt")[0],
        "camera": shared_data / rows_where(manifest_rows, "real", "EXIF camera=Canon")[0],
        "broken": broken,
        "missing": tmp_path / "missing.png",
    }


def test_analyze_without_a_model_prints_one_provenance_verdict_per_input_in_order(
    sample_paths: dict[str, Path],
) -> None:
    paths = [str(sample_paths[k]) for k in ("comfyui", "broken", "camera", "missing")]
    result = run_cli("analyze", *paths, "--json", "--quiet")
    assert result.returncode == 1, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["path"] for line in lines] == paths

    comfy, broken, camera, missing = lines
    assert (comfy["label"], comfy["decided_by"], comfy["p_fake"]) == ("fake", "provenance", None)
    assert comfy["evidence"][0]["kind"] == "comfyui_workflow"
    assert comfy["mode"] == "provenance-only" and comfy["model"] is None
    assert len(comfy["sha256"]) == 64 and len(comfy["image"]["pdq"]) == 64

    assert camera["label"] == "uncertain"
    assert any(e["kind"] == "camera_exif" for e in camera["evidence"])
    assert not any(e["indicates"] == "fake" for e in camera["evidence"])

    assert broken["error"]["type"] == "UndecodableImageError"
    assert missing["error"]["type"] == "FileNotFoundError"


def test_analyze_with_the_tiny_model_scores_and_explains_and_says_it_is_untrained(
    sample_paths: dict[str, Path], tiny_model_dir: Path
) -> None:
    result = run_cli(
        "analyze",
        str(sample_paths["camera"]),
        "--model",
        str(tiny_model_dir),
        "--explain",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    (line,) = [json.loads(x) for x in result.stdout.splitlines()]
    assert 0.0 <= line["p_fake"] <= 1.0
    assert line["decided_by"] == "model"
    assert line["model"]["untrained"] is True and line["untrained"] is True
    assert line["model"]["quantization"] == "none"
    assert isinstance(line["explanation"], str)
    assert "untrained" in result.stderr


def test_ask_answers_an_aspect_question(
    sample_paths: dict[str, Path], tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run_main(
        capsys,
        "ask",
        str(sample_paths["comfyui"]),
        "--model",
        str(tiny_model_dir),
        "--aspect",
        "texture",
        "--max-new-tokens",
        "8",
    )
    assert status == 0, err
    assert out.endswith("\n")


def test_ask_rejects_an_unknown_aspect(sample_paths: dict[str, Path], tiny_model_dir: Path) -> None:
    result = run_cli(
        "ask", str(sample_paths["comfyui"]), "--model", str(tiny_model_dir), "--aspect", "vibes"
    )
    assert result.returncode != 0
    assert "vibes" in result.stderr


def test_tiny_model_command_writes_a_loadable_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _out, err = run_main(capsys, "tiny-model", str(tmp_path / "tiny"))
    assert status == 0, err
    assert (tmp_path / "tiny" / "config.json").is_file()
    assert sum(f.stat().st_size for f in (tmp_path / "tiny").iterdir()) < 3_000_000
    model = load_model(str(tmp_path / "tiny"), device="cpu", progress=False)
    (p_fake,) = model.score([Image.new("RGB", (40, 30), (120, 60, 200))])
    assert 0.0 <= p_fake <= 1.0


def test_tiny_model_into_a_folder_of_other_files_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "qwen2_vl"}')
    status, _out, err = run_main(capsys, "tiny-model", str(tmp_path))
    assert status == 2
    assert "Traceback" not in err
    assert str(tmp_path) in err and "not empty" in err
    assert (tmp_path / "config.json").read_text() == '{"model_type": "qwen2_vl"}'
    assert not (tmp_path / "model.safetensors").exists()


# User errors: one line on stderr, no traceback, a usage exit status


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    return lines[-1]


@pytest.mark.parametrize(
    "options",
    [
        ("--fake-threshold", "1.5"),
        ("--real-threshold", "-0.1"),
        ("--fake-threshold", "0.3", "--real-threshold", "0.4"),
        ("--max-pixels", "0"),
        ("--max-pixels", "600000000"),
    ],
)
def test_analyze_rejects_impossible_options_as_usage_errors(
    capsys: pytest.CaptureFixture[str], sample_paths: dict[str, Path], options: tuple[str, ...]
) -> None:
    status, out, err = run_main(capsys, "analyze", str(sample_paths["camera"]), *options)
    assert status == 2 and out == ""
    assert options[0] in one_line_error(err) or "threshold" in one_line_error(err)


@pytest.mark.parametrize(
    ("option", "message"),
    [(("--aspect", ""), "unknown aspect ''"), (("--question", " "), "the question is empty")],
)
def test_ask_with_an_empty_aspect_or_question_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str],
    sample_paths: dict[str, Path],
    option: tuple[str, str],
    message: str,
) -> None:
    # No --model load needed: the question is checked first.
    status, _out, err = run_main(
        capsys, "ask", str(sample_paths["camera"]), "--model", "/nonexistent", *option
    )
    assert status == 2
    assert message in one_line_error(err)


@pytest.mark.parametrize("kind", ["missing", "broken", "directory"])
def test_ask_on_an_unreadable_image_names_it_in_one_line(
    capsys: pytest.CaptureFixture[str], sample_paths: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    path = tmp_path if kind == "directory" else sample_paths[kind]
    status, out, err = run_main(
        capsys, "ask", str(path), "--model", "/nonexistent", "--aspect", "texture"
    )
    assert status == 1 and out == ""
    line = one_line_error(err)
    assert line.startswith(f"fakescope ask: error: {path}: ")


def test_ask_rejects_a_non_positive_token_budget(
    capsys: pytest.CaptureFixture[str], sample_paths: dict[str, Path]
) -> None:
    status, _out, err = run_main(
        capsys, "ask", str(sample_paths["camera"]), "--model", "m", "--question", "hi",
        "--max-new-tokens", "0",
    )  # fmt: skip
    assert status == 2 and "--max-new-tokens" in one_line_error(err)


def test_analyze_reads_standard_input_for_a_dash(
    sample_paths: dict[str, Path],
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fakescope.cli", "analyze", "-", "--json"],
        input=sample_paths["comfyui"].read_bytes(),
        capture_output=True,
        timeout=240,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    (line,) = [json.loads(x) for x in result.stdout.splitlines()]
    assert line["path"] == "-" and line["label"] == "fake"


@pytest.mark.parametrize("io_encoding", ["utf-8", ""])  # strict UTF-8 stdout, and the locale's
def test_analyze_writes_utf8_json_for_a_file_name_that_is_not_utf8(
    sample_paths: dict[str, Path], tmp_path: Path, io_encoding: str
) -> None:
    odd = os.path.join(os.fsencode(tmp_path), b"caf\xe9.jpg")  # a Latin-1 name
    Path(os.fsdecode(odd)).write_bytes(sample_paths["camera"].read_bytes())
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "PYTHONIOENCODING": io_encoding}
    command = [sys.executable, "-m", "fakescope.cli", "analyze", odd, str(sample_paths["camera"])]
    result = subprocess.run(
        [*command, "--json", "--quiet"],
        capture_output=True,
        timeout=240,
        env=env,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    first, second = (json.loads(line.decode("utf-8")) for line in result.stdout.splitlines())
    assert os.fsencode(first["path"]) == odd  # the escape reads back into the same name
    assert first["label"] == second["label"] == "uncertain"


def test_analyze_of_an_endless_input_stops_at_the_byte_cap(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # `fakescope analyze /dev/zero`, a video passed by mistake, `cat huge | fakescope analyze -`:
    # read up to the cap, not into memory whole.
    stream = hostile_images.EndlessStream()
    monkeypatch.setattr(sys, "stdin", type("Stdin", (), {"buffer": stream})())
    status, out, _err = run_main(capsys, "analyze", "-", "--json", "--quiet")
    assert status == 1
    (line,) = [json.loads(x) for x in out.splitlines()]
    assert line["error"]["type"] == "ImageTooLargeError"
    assert stream.bytes_read <= 26 * 1024 * 1024


def test_analyze_into_a_closed_pipe_stops_quietly(sample_paths: dict[str, Path]) -> None:
    paths = [str(sample_paths["camera"])] * 40
    with subprocess.Popen(
        [sys.executable, "-m", "fakescope.cli", "analyze", *paths, "--json", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        process.stdout.readline()  # like `| head -1`
        process.stdout.close()
        err = process.stderr.read().decode()
        process.wait(timeout=240)
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_unwritable_eval_output_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from PIL import Image

    data = tmp_path / "data"
    for label in ("real", "fake"):
        (data / label).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(data / label / "x.png")
    not_a_folder = tmp_path / "taken"
    not_a_folder.write_text("a file")
    status, _out, err = run_main(
        capsys, "eval", str(data), "--model", "m", "--out", str(not_a_folder), "--quiet"
    )
    assert status == 2
    assert one_line_error(err) == (
        f"fakescope eval: error: --out {not_a_folder} is a file; it names the output folder"
    )


def test_human_readable_analysis_says_when_the_model_is_untrained(
    sample_paths: dict[str, Path], tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run_main(
        capsys, "analyze", str(sample_paths["camera"]), "--model", str(tiny_model_dir)
    )
    assert status == 0, err
    first = out.splitlines()[0]
    assert "decided by model" in first and "untrained" in first
