"""The GPU benchmark runs end to end on the CPU with the tiny checkpoint (as CI runs it)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REQUIRED_NUMBERS = (
    "verdict_ms_b1",
    "verdicts_per_s_b32",
    "decode_tok_s_b1",
    "decode_tok_s_b8",
    "ttft_ms_b1",
    "peak_mem_gib_b1",
    "per_image_ms_b8",
    "per_image_ms_b32",
)


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("bench-results")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "benchmarks/bench_gpu.py", "--tiny", "--quantization", "nf4"]
    completed = subprocess.run(
        [*command, "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "verdict latency b1" in completed.stdout  # the table was printed
    return [json.loads(path.read_text()) for path in sorted(out.glob("*.json"))]


def test_tiny_run_writes_one_json_per_quantization(tiny_results: list[dict]) -> None:
    assert [result["quantization"] for result in tiny_results] == ["nf4"]


def test_result_names_the_machine_and_the_software(tiny_results: list[dict]) -> None:
    result = tiny_results[0]
    assert result["gpu"] == "cpu (tiny checkpoint)"
    for key in ("torch", "transformers", "quantization"):
        assert isinstance(result[key], str) and result[key]


def test_every_headline_number_is_positive_and_finite(tiny_results: list[dict]) -> None:
    result = tiny_results[0]
    for key in REQUIRED_NUMBERS:
        value = result[key]
        assert isinstance(value, (int, float)), key
        assert math.isfinite(value) and value > 0, (key, value)


def test_the_shipped_verdicts_agree_with_the_plain_forward(tiny_results: list[dict]) -> None:
    result = tiny_results[0]
    assert result["compiled_layers"] == "off"  # auto: compiled on CUDA only
    assert result["warm_up_s"] > 0
    for batch in (8, 32):
        assert 0 <= result[f"p_fake_max_abs_diff_b{batch}"] < 1e-5


def test_a_joining_answer_is_measured_and_checked(
    tiny_results: list[dict],
) -> None:
    result = tiny_results[0]
    joined = result["variants"]["decode_joined"]
    assert joined["joined"] is True and result["continuous_matches_eager"] is True
    assert isinstance(joined["matches_alone"], bool)  # bf16: rows may differ with the batch
    assert joined["graphs_captured"] == 0  # the CPU decodes eagerly
    assert joined["joiner_ttft_ms"] > 0 and joined["session_tok_s"] > 0


def test_no_measurement_failed(tiny_results: list[dict]) -> None:
    assert tiny_results[0]["errors"] == {}


def test_each_target_is_judged_with_what_limits_it(tiny_results: list[dict]) -> None:
    targets = tiny_results[0]["targets"]
    assert set(targets) == {
        "verdicts_per_s_b32 >= 70",
        "verdict_ms_b1 <= 50",
        "decode_tok_s_b1 >= 100",
        "decode_tok_s_b8 >= 800",
    }
    for judgement in targets.values():
        assert isinstance(judgement["met"], bool)
        assert judgement["limit"]
        if not judgement["met"]:
            assert judgement["missed_by_pct"] > 0


def test_graph_decoder_and_shipped_generate_both_ran(tiny_results: list[dict]) -> None:
    variants = tiny_results[0]["variants"]
    for batch in (1, 8):
        for path in ("generate", "graph_decoder"):
            assert variants[f"decode_b{batch}_{path}"]["tok_s"] > 0
