"""The report lays the benchmarks out like the paper's table; runs compare subset by subset."""

from __future__ import annotations

import json
from pathlib import Path

from eval_helpers import StandInModel, write_json, write_png

from fakescope.evaluation.compare import compare_runs
from fakescope.evaluation.evaluate import EvalConfig, evaluate
from fakescope.evaluation.report import UNTRAINED_WARNING, fmt


def _benchmarks(root: Path) -> list[str]:
    """Small copies of WildRF, SynthWildX, FakeBench (FakeClass + multiple choice)."""
    for i, platform in enumerate(("reddit", "facebook", "twitter")):
        for j in range(3):
            write_png(
                root / "WildRF" / "test" / platform / "fake" / f"f{j}.png", 140 + 30 * j - 20 * i
            )
            write_png(
                root / "WildRF" / "test" / platform / "real" / f"r{j}.png", 30 + 40 * j + 10 * i
            )
    lines = ["url,filename,typ"]
    for k, typ in enumerate(("dalle3", "firefly", "midjourney", "real")):
        for j in range(3):
            shade = 60 + 50 * j if typ == "real" else 100 + 40 * j - 10 * k
            write_png(root / "SynthWildX" / typ / f"{j}.jpg", shade)
            lines.append(f"https://x/{typ}{j},{typ}/{j}.jpg,{typ}")
    (root / "SynthWildX" / "list.csv").write_text("\n".join(lines) + "\n")
    fb = root / "FakeBench"
    records = []
    for j in range(3):
        write_png(fb / "FakeBench_images" / "fake_images" / f"sd-0000{j}.png", 150 + 40 * j)
        write_png(fb / "FakeBench_images" / "real_images" / f"n0{j}.JPEG", 20 + 60 * j)
        yes_no = "Is this a fake image, yes or no?"
        fake_or_real = "What is the authenticity of this image, fake or real?"
        records.append({"image_id": f"sd-0000{j}.png", "question": yes_no, "authenticity": 0})
        records.append({"image_id": f"n0{j}.JPEG", "question": fake_or_real, "authenticity": 1})
    write_json(fb / "Evaluation" / "FakeClass.json", records)
    mcq = [
        {
            "image_id": f"sd-0000{j}.png",
            "question": "Which flaw?",
            "options": ["x", "y"],
            "answer": "A" if j else "B",
        }
        for j in range(3)
    ]
    write_json(fb / "mcq.json", mcq)
    return [
        str(root / "WildRF"),
        str(root / "SynthWildX"),
        str(fb),
        f"fakebench-mcq={fb / 'mcq.json'}",
    ]


def _run(tmp_path: Path, name: str, **overrides: object) -> Path:
    out = tmp_path / name
    config = EvalConfig(
        datasets=_benchmarks(tmp_path / "data"),
        model="stand-in",
        out=out,
        protocol="both",
        bootstrap=30,
        progress=False,
    )
    for key, value in overrides.items():
        setattr(config, key, value)
    evaluate(config, StandInModel())
    return out


def test_report_fills_the_papers_table_from_its_benchmarks(tmp_path: Path) -> None:
    out = _run(tmp_path, "run")
    metrics = json.loads((out / "metrics.json").read_text())
    report = (out / "report.md").read_text()
    assert UNTRAINED_WARNING in report
    table = report.split("## The paper's table")[1].split("\n\n")[1].splitlines()
    assert "WildRF Reddit AP" in table[0] and "SynthWildX Midjourney AP" in table[0]
    cells = [c.strip() for c in table[2].strip("|").split("|")]
    assert "—" not in cells  # every column measured
    fakebench = metrics["datasets"]["FakeBench"]["protocols"]["closed"]["overall"]
    assert cells[0] == fmt(fakebench["accuracy"])
    wildrf = metrics["datasets"]["WildRF"]["protocols"]["quantitative"]["subsets"]
    assert cells[1] == fmt(wildrf["reddit"]["ap"])
    synth = metrics["datasets"]["SynthWildX"]["protocols"]["quantitative"]["subsets"]
    assert cells[6] == fmt(synth["midjourney"]["ap"])
    assert synth["midjourney"]["reference"] == "all_reals" and synth["midjourney"]["n_real"] == 3
    aps = [wildrf[k]["ap"] for k in ("reddit", "facebook", "twitter")]
    aps += [synth[k]["ap"] for k in ("dalle3", "firefly", "midjourney")]
    assert cells[7] == fmt(sum(aps) / 6)
    assert cells[8] == fmt(metrics["datasets"]["fakebench-mcq"]["mcq"]["accuracy"]) == "0.667"


def test_compare_lists_every_subset_with_its_difference(tmp_path: Path) -> None:
    a = _run(tmp_path, "a")
    b = _run(tmp_path, "b", provenance=False, protocol="quantitative")
    text = compare_runs(a, b)
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("dataset"))
    assert "ap A" in header and "Δap" in header and "Δtnr" in header
    reddit = next(
        line
        for line in lines
        if line.startswith("WildRF") and " quantitative " in line and " reddit " in line
    )
    assert "+0.000" in reddit  # same stand-in model: no difference
    assert any(line.startswith("FakeBench") and " closed " in line for line in lines)
    assert any(line.startswith("fakebench-mcq") and " mcq " in line for line in lines)
    assert "run A used an untrained checkpoint" in text


def test_compare_refuses_a_json_file_that_is_not_a_run_in_one_line(tmp_path: Path) -> None:
    import pytest

    from fakescope.errors import DatasetError

    other = write_json(tmp_path / "other" / "metrics.json", {"something": "else"})
    with pytest.raises(DatasetError, match=r"not the metrics\.json of a `fakescope eval` run"):
        compare_runs(other.parent, other.parent)


def test_compare_lists_the_settings_that_differ_and_marks_other_images(tmp_path: Path) -> None:
    a = _run(tmp_path, "a")
    b = _run(tmp_path, "b", provenance=False, limit=4, robustness=True)
    text = compare_runs(a, b)
    settings = text.split("Settings that differ")[1].split("\n\n")[0]
    assert "provenance: A True, B False" in settings and "limit: A None, B 4" in settings
    assert "conditions: A ['clean'], B ['clean', 'jpeg:95'" in settings
    wildrf_overall = next(
        line for line in text.splitlines()
        if line.startswith("WildRF") and " quantitative " in line and " overall " in line
    )  # fmt: skip
    assert "9f/9r ≠ 2f/2r (!)" in wildrf_overall
    assert "(!): the runs measured different images there" in text
    # The sweep is compared too (run B only: A's cells are empty).
    assert any("quantitative @ jpeg:30, model alone" in line for line in text.splitlines())


def test_compare_of_like_with_like_flags_nothing(tmp_path: Path) -> None:
    a = _run(tmp_path, "a")
    b = _run(tmp_path, "b")
    text = compare_runs(a, b)
    assert "Settings that differ" not in text and "(!)" not in text
    fakebench_overall = next(
        line for line in text.splitlines()
        if line.startswith("FakeBench") and " closed " in line and " overall " in line
    )  # fmt: skip
    assert " 3f/3r " in fakebench_overall and "+0.000" in fakebench_overall


def test_the_robustness_figure_puts_clean_images_at_their_own_tick() -> None:
    from fakescope.evaluation.plots import _robustness_points

    per_condition = {
        "clean": {"ap": 0.9},
        "jpeg:95": {"ap": 0.8},
        "jpeg:30": {"ap": 0.6},
        "crop:0.5": {"ap": 0.7},
        "downscale:0.5": {"ap": None},
    }
    assert _robustness_points(per_condition, "jpeg") == [
        (30.0, 0.6, "30"),
        (95.0, 0.8, "95"),
        (100.0, 0.9, "clean"),
    ]
    assert _robustness_points(per_condition, "downscale") == [(1.0, 0.9, "clean")]
