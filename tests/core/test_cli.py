"""The `fakescope` command as a user runs it: JSON Lines per image, errors per file, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


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
    sample_paths: dict[str, Path], tiny_model_dir: Path
) -> None:
    result = run_cli(
        "ask",
        str(sample_paths["comfyui"]),
        "--model",
        str(tiny_model_dir),
        "--aspect",
        "texture",
        "--max-new-tokens",
        "8",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n")


def test_ask_rejects_an_unknown_aspect(sample_paths: dict[str, Path], tiny_model_dir: Path) -> None:
    result = run_cli(
        "ask", str(sample_paths["comfyui"]), "--model", str(tiny_model_dir), "--aspect", "vibes"
    )
    assert result.returncode != 0
    assert "vibes" in result.stderr


def test_tiny_model_command_writes_a_loadable_checkpoint(tmp_path: Path) -> None:
    result = run_cli("tiny-model", str(tmp_path / "tiny"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "tiny" / "config.json").is_file()
    assert sum(f.stat().st_size for f in (tmp_path / "tiny").iterdir()) < 3_000_000
