"""The server benchmark runs end to end in --quick mode and reports its three figures."""

from __future__ import annotations

import json
from pathlib import Path

from server_helpers import run_quick_bench


def test_bench_server_quick_prints_and_records_the_four_figures(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    stdout = run_quick_bench("bench_server.py", out)
    assert "ratio" in stdout and "p99" in stdout and "batching gain" in stdout
    assert "explanation batching gain" in stdout and "ttft ratio" in stdout
    figures = json.loads(out.read_text())
    assert figures["quick"] is True
    assert figures["ratio"] > 0 and figures["bare_rps"] > 0
    assert 0 < figures["lookup_median_ms"] <= figures["lookup_p99_ms"]
    assert figures["sequential_per_s"] > 0 and figures["concurrent_per_s"] > 0
    assert figures["explain_sequential_per_s"] > 0 and figures["explain_concurrent_per_s"] > 0
    assert figures["explain_batching_gain"] > 0
    assert figures["streamed_batching_gain"] > 0
    assert figures["ttft_joining_s"] > 0 and figures["ttft_waiting_s"] > 0
