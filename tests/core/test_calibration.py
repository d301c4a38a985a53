"""Platt scaling of p_fake: the fit, the measures, the file, and the model's identity."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from fakescope.calibration import (
    P_ONE_MARGIN,
    Calibration,
    brier_score,
    calibration_metrics,
    expected_calibration_error,
    fit_calibration,
    fit_platt,
    margin_from_p,
    reliability_bins,
    sigmoid,
)
from fakescope.errors import CalibrationError
from fakescope.loading import expected_model_key, load_model
from fakescope.model import ModelInfo, model_key


def test_the_fit_recovers_the_slope_and_intercept_that_made_the_labels() -> None:
    rng = np.random.default_rng(7)
    margins = rng.normal(0.0, 3.0, 40_000)
    labels = (rng.random(margins.size) < sigmoid(0.5 * margins + 1.0)).astype(int)
    a, b = fit_platt(margins, labels)
    assert a == pytest.approx(0.5, abs=0.03) and b == pytest.approx(1.0, abs=0.05)
    # The same labels on margins 100 times as large and shifted: the same fit, rescaled.
    a_scaled, b_scaled = fit_platt(100.0 * margins + 7.0, labels)
    assert a_scaled == pytest.approx(a / 100.0, rel=1e-6)
    assert b_scaled == pytest.approx(b - 7.0 * a / 100.0, abs=1e-6)


def test_a_separable_set_gets_a_finite_fit_and_one_class_is_refused() -> None:
    a, b = fit_platt(np.array([-2.0, -1.0, 1.0, 2.0]), np.array([0, 0, 1, 1]))
    assert math.isfinite(a) and a > 0 and math.isfinite(b)
    with pytest.raises(CalibrationError, match="both fakes and reals"):
        fit_platt(np.array([1.0, 2.0]), np.array([1, 1]))
    with pytest.raises(CalibrationError, match="every score is the same"):
        fit_platt(np.array([0.3, 0.3]), np.array([0, 1]))


def test_ece_and_brier_match_hand_computed_values() -> None:
    p = [0.1, 0.1, 0.9, 0.9, 0.5]
    y = [0, 1, 1, 1, 0]
    # Bins of width 1/15: 0.1 -> bin 1 (2 images, half fake), 0.9 -> bin 13 (2, all fake),
    # 0.5 -> bin 7 (1, real). ECE = 2/5*|0.5-0.1| + 2/5*|1-0.9| + 1/5*|0-0.5| = 0.30.
    assert expected_calibration_error(p, y) == pytest.approx(0.30)
    # Brier = (0.01 + 0.81 + 0.01 + 0.01 + 0.25) / 5.
    assert brier_score(p, y) == pytest.approx(1.09 / 5)
    table = reliability_bins(p, y)
    assert len(table) == 15 and sum(row["n"] for row in table) == 5
    assert table[1] == {
        "low": 1 / 15,
        "high": 2 / 15,
        "n": 2,
        "mean_p_fake": pytest.approx(0.1),
        "share_fake": 0.5,
    }
    assert reliability_bins([1.0], [1])[14]["n"] == 1  # the last bin is closed
    measured = calibration_metrics([0.2, float("nan"), 0.8], [0, 1, 1])
    assert measured["n"] == 2 and measured["bins"] == 15  # NaN left out
    assert expected_calibration_error([], []) is None and brier_score([], []) is None


def test_edge_p_fake_values_stay_sane() -> None:
    calibration = Calibration(0.5, 1.0, "m@-:none")
    got = calibration.apply_margin([np.nan, np.inf, -np.inf, 1e308, -1e308, 0.0])
    assert got.dtype == np.float64
    assert math.isnan(got[0])
    assert list(got[1:5]) == [1.0, 0.0, 1.0, 0.0]
    assert got[5] == pytest.approx(1 / (1 + math.exp(-1.0)))
    flat = Calibration(0.0, 1.0, "m@-:none")  # 0 * inf would be NaN
    assert np.all(np.isfinite(flat.apply_margin([np.inf, -np.inf])))
    margins = margin_from_p([0.0, 1.0, 0.5, np.nan, 1.5])
    assert margins[1] == P_ONE_MARGIN and margins[0] < -700 and margins[2] == 0.0
    assert np.isnan(margins[3]) and np.isnan(margins[4])
    assert calibration.apply_p([0.5])[0] == pytest.approx(1 / (1 + math.exp(-1.0)))


def test_a_fit_records_what_it_was_fitted_on_and_round_trips(tmp_path: Path) -> None:
    p = [0.2, 0.3, 0.7, 0.9, 0.6, 0.4]
    y = [0, 1, 1, 1, 0, 0]
    fitted = fit_calibration(p, y, model_key="m@r:none", fitted_on={"run": "r", "datasets": ["d"]})
    assert fitted.fitted_on["n_fake"] == 3 and fitted.fitted_on["n_real"] == 3
    assert fitted.fit_metrics["ece_before"] == pytest.approx(expected_calibration_error(p, y))
    assert fitted.fit_metrics["brier_after"] == pytest.approx(brier_score(fitted.apply_p(p), y))
    path = fitted.save(tmp_path / "cal.json")
    loaded = Calibration.load(path)
    assert loaded == fitted and loaded.digest == fitted.digest
    assert loaded.fitted_on == fitted.fitted_on and loaded.source == str(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the calibration file"),
        (b"\xff\xfe", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b"[]", "not a calibration file"),
        (b'{"format": "fakescope-calibration", "version": 9}', "version 9"),
        (b'{"format": "fakescope-calibration", "version": 1, "a": "1", "b": 0}', "a is '1'"),
        (b'{"format": "fakescope-calibration", "version": 1, "a": 1, "b": NaN}', "finite"),
        (b'{"format": "fakescope-calibration", "version": 1, "a": 1, "b": 0}', "model_key"),
    ],
)
def test_a_bad_file_is_one_line_naming_it_and_what_to_do(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "cal.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CalibrationError, match=message) as caught:
        Calibration.load(path)
    text = str(caught.value)
    assert text.startswith(str(path)) and "\n" not in text
    # ... and says where a good one comes from.
    assert text.endswith("`fakescope eval calibrate RUN_DIR --out FILE` wrote") or text.endswith(
        "fit it again (`fakescope eval calibrate RUN_DIR --out FILE`)"
    )


@pytest.mark.parametrize(("b", "shown"), [(-0.0824006, "- 0.0824006"), (0.5, "+ 0.5")])
def test_the_formula_reads_as_written_by_hand(b: float, shown: str) -> None:
    assert Calibration(0.189814, b, "m").formula() == f"sigmoid(0.189814 * margin {shown})"


def test_the_cache_identity_changes_with_the_calibration() -> None:
    info = ModelInfo("m", "rev", "nf4", "cuda", "float16", "llava", untrained=False)
    first = Calibration(0.5, 1.0, info.key)
    other = Calibration(0.5, 1.0000001, info.key)
    calibrated = ModelInfo(**{**info.__dict__, "calibration": first})
    assert calibrated.key == f"m@rev:nf4+cal-{first.digest}" and calibrated.base_key == info.key
    assert model_key("m", "rev", "nf4", other) != calibrated.key
    assert info.to_dict()["calibration"] is None
    assert calibrated.to_dict()["calibration"] == {
        "a": 0.5,
        "b": 1.0,
        "digest": first.digest,
        "method": "platt",
    }


def test_a_calibration_of_another_model_is_refused_before_the_weights_load(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = expected_model_key(str(tiny_model_dir), quantization="none", device="cpu")
    foreign = Calibration(1.0, 0.0, "other@-:nf4", source="cal.json")
    with pytest.raises(CalibrationError) as caught:
        expected_model_key(str(tiny_model_dir), device="cpu", calibration=foreign)
    assert "other@-:nf4" in str(caught.value) and base in str(caught.value)
    import fakescope.loading as loading

    def no_weights(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("weights loaded for a refused calibration")

    monkeypatch.setattr(loading, "_load_weights", no_weights)
    with pytest.raises(CalibrationError, match="fitted for the model other@-:nf4"):
        load_model(str(tiny_model_dir), device="cpu", calibration=foreign, progress=False)


def test_a_calibrated_model_scores_sigmoid_of_its_rescaled_margin(
    tiny_model: Any, tiny_model_dir: Path
) -> None:
    base = tiny_model.info.key
    calibration = Calibration(2.5, -0.75, base)
    calibrated = load_model(
        str(tiny_model_dir),
        quantization="none",
        device="cpu",
        progress=False,
        calibration=calibration,
    )
    assert calibrated.info.key == f"{base}+cal-{calibration.digest}"
    assert (
        expected_model_key(
            str(tiny_model_dir), quantization="none", device="cpu", calibration=calibration
        )
        == calibrated.info.key
    )
    images = [Image.new("RGB", (40, 30), colour) for colour in ("red", "navy", "olive")]
    raw = np.array(tiny_model.score(images))
    margins = np.log(raw) - np.log1p(-raw)
    expected = 1.0 / (1.0 + np.exp(-(2.5 * margins - 0.75)))
    assert calibrated.score(images) == pytest.approx(list(expected), rel=1e-9, abs=1e-12)
    assert json.dumps(calibrated.info.to_dict())  # the API's model object stays JSON


def test_analyze_with_calibration_reports_the_calibrated_p_fake(
    tiny_model: Any, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli_runs import run_main

    image = tmp_path / "x.png"
    Image.new("RGB", (40, 30), "teal").save(image)
    calibration = Calibration(-1.5, 0.25, tiny_model.info.key)
    path = calibration.save(tmp_path / "cal.json")
    model = ["--model", str(tiny_model_dir), "--quantization", "none", "--device", "cpu"]
    status, out, _ = run_main(capsys, "analyze", str(image), *model, "--json", "--quiet")
    assert status == 0
    raw = json.loads(out)
    assert raw["model"]["calibration"] is None
    status, out, _ = run_main(
        capsys, "analyze", str(image), *model, "--calibration", str(path), "--json", "--quiet"
    )
    assert status == 0
    calibrated = json.loads(out)
    assert calibrated["model"]["calibration"]["digest"] == calibration.digest
    margin = math.log(raw["p_fake"] / (1 - raw["p_fake"]))  # raw p_fake is rounded to 6 places
    expected = 1 / (1 + math.exp(-(-1.5 * margin + 0.25)))
    assert calibrated["p_fake"] == pytest.approx(expected, abs=1e-4)
    status, _, err = run_main(capsys, "analyze", str(image), "--calibration", str(path))
    assert status == 2 and "--calibration needs --model" in err


def test_plain_analyze_marks_a_calibrated_p_fake() -> None:
    from fakescope.cli import _human_line

    result = {"path": "a.png", "label": "uncertain", "p_fake": 0.491672, "decided_by": "model",
              "evidence": [], "explanation": None,
              "model": {"id": "m", "calibration": {"digest": "ab88ebb051e2"}}}  # fmt: skip
    assert _human_line(result) == "a.png: uncertain (p_fake 0.492 calibrated, decided by model)"
    raw = {**result, "model": {"id": "m", "calibration": None}}
    assert _human_line(raw) == "a.png: uncertain (p_fake 0.492, decided by model)"
