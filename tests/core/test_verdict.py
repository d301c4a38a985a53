"""The verdict rules: which evidence decides, when the model decides, and what goes to review."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence

import pytest
from PIL import Image

from fakescope.analysis import analyze_image
from fakescope.evidence import Evidence, Indication, Strength
from fakescope.model import ModelInfo
from fakescope.verdict import Thresholds, decide, label_from_score


def finding(kind: str, indicates: Indication, strength: Strength) -> Evidence:
    return Evidence(kind=kind, indicates=indicates, strength=strength, summary=kind, source="test")


SIGNED_AI = finding("c2pa_generative", Indication.FAKE, Strength.DECISIVE)
SD_PARAMETERS = finding("generator_parameters", Indication.FAKE, Strength.STRONG)
CAMERA = finding("camera_exif", Indication.REAL, Strength.WEAK)
C2PA_CAPTURE = finding("c2pa_capture", Indication.REAL, Strength.WEAK)
INVALID_C2PA = finding("c2pa_invalid", Indication.NEUTRAL, Strength.INFO)


def test_signed_generative_c2pa_decides_fake_even_when_the_model_says_real() -> None:
    verdict = decide([CAMERA, SIGNED_AI], p_fake=0.02)
    assert (verdict.label, verdict.decided_by) == ("fake", "provenance")
    assert verdict.deciding_evidence is SIGNED_AI
    assert "conflict_provenance_vs_model" in verdict.flags


def test_decisive_evidence_wins_over_strong_evidence_as_the_stated_reason() -> None:
    assert decide([SD_PARAMETERS, SIGNED_AI], p_fake=None).deciding_evidence is SIGNED_AI


def test_unsigned_generator_chunk_decides_fake_without_a_model() -> None:
    verdict = decide([SD_PARAMETERS], p_fake=None)
    assert (verdict.label, verdict.decided_by, verdict.flags) == ("fake", "provenance", ())


def test_camera_metadata_alone_never_decides_real() -> None:
    verdict = decide([CAMERA, C2PA_CAPTURE], p_fake=None)
    assert (verdict.label, verdict.decided_by) == ("uncertain", "provenance")


def test_without_evidence_or_model_the_verdict_is_uncertain() -> None:
    assert decide([], p_fake=None).label == "uncertain"


@pytest.mark.parametrize(
    ("p_fake", "label"),
    [(0.0, "real"), (0.4, "real"), (0.5, "uncertain"), (0.6, "fake"), (1.0, "fake")],
)
def test_model_decides_by_thresholds(p_fake: float, label: str) -> None:
    verdict = decide([], p_fake=p_fake)
    assert (verdict.label, verdict.decided_by) == (label, "model")


def test_uncertain_model_verdicts_are_flagged_for_review() -> None:
    assert decide([], p_fake=0.5).flags == ("uncertain",)


def test_camera_capture_against_a_confident_model_is_flagged_as_a_conflict() -> None:
    verdict = decide([CAMERA], p_fake=0.97)
    assert verdict.label == "fake"
    assert verdict.flags == ("conflict_camera_vs_model",)
    assert decide([CAMERA], p_fake=0.7).flags == ()


def test_invalid_c2pa_is_flagged_whatever_the_verdict() -> None:
    assert "c2pa_invalid" in decide([INVALID_C2PA], p_fake=0.1).flags
    assert "c2pa_invalid" in decide([INVALID_C2PA], p_fake=None).flags


def test_thresholds_are_configurable_and_validated() -> None:
    strict = Thresholds(fake=0.9, real=0.1)
    assert label_from_score(0.8, strict) == "uncertain"
    with pytest.raises(ValueError, match="thresholds"):
        Thresholds(fake=0.3, real=0.7)


class _FixedScoreModel:
    """A model that gives every image the same p_fake (NaN or inf: its logits overflowed)."""

    def __init__(self, p_fake: float) -> None:
        self.p_fake = p_fake
        self.info = ModelInfo("m", None, "nf4", "cuda", "float16", "llava", untrained=False)

    def score(self, images: Sequence[Image.Image]) -> list[float]:
        return [self.p_fake for _ in images]


@pytest.mark.parametrize("p_fake", [math.nan, math.inf, -math.inf])
def test_a_non_finite_model_score_is_no_score_and_goes_to_review(p_fake: float) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (90, 120, 30)).save(buffer, "PNG")
    analysis = analyze_image(buffer.getvalue(), model=_FixedScoreModel(p_fake))  # type: ignore[arg-type]
    result = analysis.to_dict()
    assert result["p_fake"] is None and result["label"] == "uncertain"
    assert "model_score_not_finite" in result["flags"]
    json.loads(json.dumps(result, default=str), parse_constant=_refuse)  # no NaN in the JSON


@pytest.mark.parametrize(
    ("p_fake", "shown", "label"),
    [(0.5999997, 0.6, "fake"), (0.4000004, 0.4, "real"), (0.5999994, 0.599999, "uncertain")],
)
def test_the_label_agrees_with_the_p_fake_shown(p_fake: float, shown: float, label: str) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (90, 120, 30)).save(buffer, "PNG")
    analysis = analyze_image(buffer.getvalue(), model=_FixedScoreModel(p_fake))  # type: ignore[arg-type]
    result = analysis.to_dict()
    assert (result["p_fake"], result["label"]) == (shown, label)


def _refuse(constant: str) -> None:
    raise AssertionError(f"{constant} is not JSON")


@pytest.mark.parametrize("conflict", [0.7, 0.8, 0.9, 0.95])
def test_a_model_exactly_as_sure_as_the_conflict_threshold_is_flagged_either_way(
    conflict: float,
) -> None:
    # "A model this sure against the evidence": P(fake) >= conflict against camera metadata,
    # P(real) >= conflict against a generator tag. p_fake = 0.1 is a model 0.9 sure of "real";
    # comparing it with 1 - 0.9 (0.09999999999999998 in floating point) missed it.
    thresholds = Thresholds(conflict=conflict)
    sure_fake = decide([CAMERA], p_fake=conflict, thresholds=thresholds)
    assert "conflict_camera_vs_model" in sure_fake.flags
    as_sure = round(1 - conflict, 12)  # 0.1 for 0.9
    sure_real = decide([SD_PARAMETERS], p_fake=as_sure, thresholds=thresholds)
    assert "conflict_provenance_vs_model" in sure_real.flags
    less_sure = decide([SD_PARAMETERS], p_fake=as_sure + 1e-9, thresholds=thresholds)
    assert "conflict_provenance_vs_model" not in less_sure.flags
