"""One image in, one analysis out: decode, read provenance, score, decide, explain.

The steps are separate functions so that a server can run the CPU parts (`inspect_image`) per
request, batch the model part across requests, and finish each with `build_analysis`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fakescope.evidence import Evidence
from fakescope.images import DecodedImage, ImageLimits, decode_image
from fakescope.prompts import PROMPT_VERSION
from fakescope.provenance import read_provenance
from fakescope.verdict import Thresholds, decide

if TYPE_CHECKING:
    from fakescope.model import ForensicModel, ModelInfo


@dataclass
class Inspection:
    """What is known about an image before any model runs."""

    image: DecodedImage
    evidence: list[Evidence]
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class Analysis:
    """The verdict on one image with everything that led to it."""

    sha256: str
    label: str
    p_fake: float | None
    decided_by: str
    evidence: list[Evidence]
    explanation: str | None
    model: ModelInfo | None
    image: dict[str, Any]
    prompt_version: str
    flags: list[str]
    created_at: datetime
    timings_ms: dict[str, float]

    @property
    def untrained(self) -> bool:
        return bool(self.model is not None and self.model.untrained)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "label": self.label,
            "p_fake": self.p_fake,
            "decided_by": self.decided_by,
            "mode": "model" if self.model is not None else "provenance-only",
            "evidence": [e.to_dict() for e in self.evidence],
            "explanation": self.explanation,
            "model": self.model.to_dict() if self.model is not None else None,
            "untrained": self.untrained,
            "image": self.image,
            "prompt_version": self.prompt_version,
            "flags": self.flags,
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
            "timings_ms": self.timings_ms,
        }


def _elapsed_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)


def inspect_image(data: bytes, limits: ImageLimits = ImageLimits()) -> Inspection:
    """Decode the bytes safely and read their provenance. Raises an ImageError for bad input."""
    start = time.perf_counter()
    image = decode_image(data, limits)
    decoded = time.perf_counter()
    evidence = read_provenance(data, image.format)
    return Inspection(
        image=image,
        evidence=evidence,
        timings_ms={"decode": _elapsed_ms(start), "provenance": _elapsed_ms(decoded)},
    )


def build_analysis(
    inspection: Inspection,
    *,
    p_fake: float | None,
    model_info: ModelInfo | None,
    explanation: str | None = None,
    thresholds: Thresholds = Thresholds(),
    timings_ms: dict[str, float] | None = None,
) -> Analysis:
    """Turn an inspection and an optional model score into the final analysis.

    A non-finite p_fake (NaN or inf, from a model whose logits overflowed) is no score: it is
    left out (null, never NaN in JSON), the verdict comes from provenance or is uncertain,
    and the `model_score_not_finite` flag sends the item to review."""
    not_finite = p_fake is not None and not math.isfinite(p_fake)
    if not_finite:
        p_fake = None
    if p_fake is not None:
        # The verdict reads the p_fake it shows: 0.5999997 is shown as 0.6, and with a fake
        # threshold of 0.6 it is "fake", not an "uncertain" beside a p_fake of 0.6.
        p_fake = round(float(p_fake), 6)
    verdict = decide(inspection.evidence, p_fake, thresholds)
    flags = list(verdict.flags)
    if not_finite:
        flags.append("model_score_not_finite")
    evidence = list(inspection.evidence)
    if verdict.deciding_evidence is not None:
        # The deciding finding comes first, so that readers see why before the rest.
        evidence.remove(verdict.deciding_evidence)
        evidence.insert(0, verdict.deciding_evidence)
    return Analysis(
        sha256=inspection.image.sha256,
        label=verdict.label,
        p_fake=p_fake,
        decided_by=verdict.decided_by,
        evidence=evidence,
        explanation=explanation,
        model=model_info,
        image=inspection.image.facts(),
        prompt_version=PROMPT_VERSION,
        flags=flags,
        created_at=datetime.now(UTC),
        timings_ms={**inspection.timings_ms, **(timings_ms or {})},
    )


def analyze_image(
    data: bytes,
    *,
    model: ForensicModel | None = None,
    explain: bool = False,
    thresholds: Thresholds = Thresholds(),
    limits: ImageLimits = ImageLimits(),
) -> Analysis:
    """Analyse one image: provenance always, the model's score (and explanation) when given one."""
    inspection = inspect_image(data, limits)
    if model is None:
        return build_analysis(inspection, p_fake=None, model_info=None, thresholds=thresholds)

    timings: dict[str, float] = {}
    start = time.perf_counter()
    (p_fake,) = model.score([inspection.image.rgb])
    timings["score"] = _elapsed_ms(start)
    explanation = None
    if explain:
        from fakescope.tasks import explain as explain_image

        start = time.perf_counter()
        explanation = explain_image(model, inspection.image.rgb)
        timings["explain"] = _elapsed_ms(start)
    return build_analysis(
        inspection,
        p_fake=p_fake,
        model_info=model.info,
        explanation=explanation,
        thresholds=thresholds,
        timings_ms=timings,
    )
