"""How provenance evidence and the model's p_fake combine into one verdict.

The rules, in order:
1. A decisive finding that the image is generated (a valid, signed C2PA generative claim) decides.
2. A strong finding that it is generated (an unsigned generator chunk, IPTC source type) decides,
   unless a decisive finding says otherwise.
3. Otherwise the model decides by thresholds on p_fake, when a model ran.
4. Otherwise the verdict is "uncertain". Evidence of camera capture never decides "real" alone:
   metadata is easy to write.
Disagreements between the evidence and the model are returned as flags for human review.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fakescope.evidence import Evidence, Indication, Strength

FAKE, REAL, UNCERTAIN = "fake", "real", "uncertain"
BY_PROVENANCE, BY_MODEL, BY_REVIEW = "provenance", "model", "review"


@dataclass(frozen=True)
class Thresholds:
    """p_fake at or above `fake` reads "fake", at or below `real` reads "real", else uncertain."""

    fake: float = 0.6
    real: float = 0.4
    conflict: float = 0.9  # a model this sure against the evidence sends the item to review

    def __post_init__(self) -> None:
        if not 0.0 <= self.real <= self.fake <= 1.0:
            raise ValueError(
                f"thresholds need 0 <= real <= fake <= 1, got {self.real}, {self.fake}"
            )
        if not 0.5 <= self.conflict <= 1.0:
            raise ValueError(f"conflict threshold must lie in [0.5, 1], got {self.conflict}")


@dataclass(frozen=True)
class Verdict:
    label: str
    decided_by: str
    deciding_evidence: Evidence | None
    flags: tuple[str, ...]


def _strongest(
    evidence: Sequence[Evidence], indication: Indication, strength: Strength
) -> Evidence | None:
    return next((e for e in evidence if e.indicates is indication and e.strength is strength), None)


def label_from_score(p_fake: float, thresholds: Thresholds) -> str:
    if p_fake >= thresholds.fake:
        return FAKE
    if p_fake <= thresholds.real:
        return REAL
    return UNCERTAIN


def decide(
    evidence: Sequence[Evidence],
    p_fake: float | None,
    thresholds: Thresholds = Thresholds(),
) -> Verdict:
    """Combine evidence and an optional model score into a verdict with review flags."""
    flags: list[str] = []
    if any(e.kind == "c2pa_invalid" for e in evidence):
        flags.append("c2pa_invalid")

    deciding = _strongest(evidence, Indication.FAKE, Strength.DECISIVE) or _strongest(
        evidence, Indication.FAKE, Strength.STRONG
    )
    if deciding is not None:
        # The model's P(real) = 1 - p_fake (not p_fake <= 1 - conflict: 1 - 0.9 < 0.1).
        if p_fake is not None and 1.0 - p_fake >= thresholds.conflict:
            flags.append("conflict_provenance_vs_model")
        return Verdict(FAKE, BY_PROVENANCE, deciding, tuple(flags))

    if p_fake is None:
        return Verdict(UNCERTAIN, BY_PROVENANCE, None, tuple(flags))

    label = label_from_score(p_fake, thresholds)
    capture = next((e for e in evidence if e.indicates is Indication.REAL), None)
    if capture is not None and p_fake >= thresholds.conflict:
        flags.append("conflict_camera_vs_model")
    if label == UNCERTAIN:
        flags.append("uncertain")
    return Verdict(label, BY_MODEL, None, tuple(flags))
