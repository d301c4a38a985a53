"""/work/shared/DESIGN.md §1 "Command line (`fakescope`)": the claims tests/core/test_cli.py,
tests/server/test_server_cli.py, tests/admin/test_admin_cli.py and tests/eval do not pin yet.

Each test is named after the claim it pins; the commands run in-process (`main`) to stay fast.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_runs import run_main
from PIL import Image

from fakescope.cli import build_parser


def write_png(path: Path, seed: int, size: tuple[int, int] = (40, 24)) -> Path:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGB").save(path, "PNG")
    return path


# --- `fakescope analyze IMAGE... --json`: "path plus the analysis fields below, or path plus
# error (type, detail); exit 1 if any input failed" ----------------------------------------------


def test_analyze_json_lines_hold_path_and_analysis_or_path_and_error_type_and_detail(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    good = write_png(tmp_path / "good.png", 1)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    inputs = [str(broken), str(good), str(tmp_path / "missing.png"), str(text), str(tmp_path)]
    status, out, _err = run_main(capsys, "analyze", *inputs, "--json", "--quiet")
    assert status == 1
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["path"] for line in lines] == inputs
    analysed = lines[1]
    assert "error" not in analysed
    assert {"sha256", "label", "p_fake", "decided_by", "evidence", "explanation", "model"} <= set(
        analysed
    )
    assert (analysed["image"]["width"], analysed["image"]["height"]) == (40, 24)
    for failed in lines[:1] + lines[2:]:
        assert set(failed) == {"path", "error"}, failed
        assert set(failed["error"]) == {"type", "detail"}, failed
        assert failed["error"]["type"] and isinstance(failed["error"]["type"], str)
        assert failed["error"]["detail"] and isinstance(failed["error"]["detail"], str)
    assert [line["error"]["type"] for line in lines[2:]] == [
        "FileNotFoundError",
        "UnsupportedFormatError",
        "IsADirectoryError",
    ]


def test_analyze_exits_0_when_every_input_is_analysed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    paths = [str(write_png(tmp_path / f"{i}.png", 10 + i)) for i in range(3)]
    status, out, _err = run_main(capsys, "analyze", *paths, "--json", "--quiet")
    assert status == 0
    assert [json.loads(line)["path"] for line in out.splitlines()] == paths


# --- `[--quantization nf4/int8/none]` -----------------------------------------------------------


def test_analyze_and_ask_take_exactly_the_quantizations_nf4_int8_and_none(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = build_parser()
    for choice in ("nf4", "int8", "none"):
        args = parser.parse_args(["analyze", "x.png", "--quantization", choice, "--json"])
        assert args.quantization == choice
        args = parser.parse_args(
            ["ask", "x.png", "--model", "m", "--enhance", "--quantization", choice]
        )
        assert args.quantization == choice
    status, out, err = run_main(capsys, "analyze", "x.png", "--quantization", "fp16", "--json")
    assert status == 2 and out == "" and "--quantization" in err


def test_analyze_with_quantization_none_reports_it_in_the_model_facts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_model_dir: Path
) -> None:
    image = write_png(tmp_path / "a.png", 3)
    status, out, _err = run_main(
        capsys,
        "analyze", str(image), "--model", str(tiny_model_dir), "--quantization", "none",
        "--json", "--quiet", "--device", "cpu",
    )  # fmt: skip
    assert status == 0
    (line,) = [json.loads(x) for x in out.splitlines()]
    assert line["model"]["quantization"] == "none" and line["model"]["untrained"] is True


# --- `fakescope ask IMAGE --model M (--aspect NAME / --question TEXT / --enhance)`: one answer --


@pytest.mark.parametrize(
    "question",
    [("--question", "Are the shadows consistent?"), ("--enhance",)],
    ids=["question", "enhance"],
)
def test_ask_prints_one_answer_for_a_question_or_enhance(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    tiny_model_dir: Path,
    question: tuple[str, ...],
) -> None:
    image = write_png(tmp_path / "a.png", 4)
    status, out, _err = run_main(
        capsys, "ask", str(image), "--model", str(tiny_model_dir), *question,
        "--max-new-tokens", "6", "--device", "cpu",
    )  # fmt: skip
    assert status == 0
    assert out.endswith("\n") and out.strip()
    assert not out.strip().startswith("{"), "the answer itself, not a JSON object"


@pytest.mark.parametrize(
    "options",
    [(), ("--aspect", "texture", "--enhance"), ("--question", "why?", "--aspect", "edge")],
    ids=["none", "aspect-and-enhance", "question-and-aspect"],
)
def test_ask_takes_exactly_one_of_aspect_question_and_enhance(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, options: tuple[str, ...]
) -> None:
    status, out, err = run_main(capsys, "ask", str(tmp_path / "a.png"), "--model", "m", *options)
    assert status == 2 and out == ""
    assert "--aspect" in err or "one of the arguments" in err


# --- `fakescope eval DATASET... --model M --out DIR`: metrics, report, plots, predictions -----


def test_eval_of_two_datasets_writes_metrics_report_plots_and_per_image_predictions(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_model_dir: Path
) -> None:
    datasets = []
    seed = 100
    for name in ("first", "second"):
        for label in ("real", "fake"):
            for i in range(2):
                seed += 1
                write_png(tmp_path / name / label / f"{i}.png", seed)
        datasets.append(str(tmp_path / name))
    out = tmp_path / "run"
    status, _out, err = run_main(
        capsys, "eval", *datasets, "--model", str(tiny_model_dir), "--out", str(out),
        "--quiet", "--bootstrap", "0", "--device", "cpu",
    )  # fmt: skip
    assert status == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["datasets"]) == {"first", "second"}
    assert (out / "report.md").read_text().strip()
    plots = sorted(p.name for p in out.glob("*.png"))
    assert plots and all((out / p).read_bytes()[:4] == b"\x89PNG" for p in plots)
    with (out / "predictions.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8  # every image of both datasets, once (quantitative protocol)


# --- `fakescope serve [--host H] [--port P]` ----------------------------------------------------


def test_serve_runs_the_server_on_the_host_and_port_given(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    sqlite_url: str,
    tmp_path: Path,
) -> None:
    import uvicorn

    monkeypatch.setenv("FAKESCOPE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("FAKESCOPE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("FAKESCOPE_MODEL", raising=False)
    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    status, _out, err = run_main(capsys, "serve", "--host", "0.0.0.0", "--port", "8123")
    assert status == 0, err
    ((app, options),) = calls
    assert app == "server.asgi:create_app" and options["factory"] is True
    assert (options["host"], options["port"]) == ("0.0.0.0", 8123)


# --- `fakescope admin create-token --role admin/reviewer/client`: the new token alone on stdout


@pytest.mark.parametrize("role", ["admin", "reviewer", "client"])
def test_create_token_prints_the_new_token_alone_for_every_role(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    sqlite_url: str,
    tmp_path: Path,
    role: str,
) -> None:
    monkeypatch.setenv("FAKESCOPE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("FAKESCOPE_DATA_DIR", str(tmp_path / "data"))
    status, out, err = run_main(capsys, "admin", "create-token", "--role", role)
    assert status == 0, err
    token = out.removesuffix("\n")
    assert out == token + "\n" and token and len(token.split()) == 1
    assert token not in err
    status, listed, _err = run_main(capsys, "admin", "list-tokens", "--json")
    assert status == 0
    assert [json.loads(line)["role"] for line in io.StringIO(listed)] == [role]
