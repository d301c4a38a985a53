"""Evidence: one finding about an image, with what it points to and how strongly."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Indication(StrEnum):
    """Which verdict a finding supports."""

    FAKE = "fake"
    REAL = "real"
    NEUTRAL = "neutral"


class Strength(StrEnum):
    """How much a finding weighs.

    decisive: settles the verdict on its own (a valid, signed C2PA generative claim).
    strong:   settles it unless something decisive disagrees (an unsigned generator chunk).
    weak:     reported, never decides (camera EXIF: metadata is easy to write).
    info:     context only (a metadata block that could not be read, a software tag).
    """

    DECISIVE = "decisive"
    STRONG = "strong"
    WEAK = "weak"
    INFO = "info"


@dataclass(frozen=True)
class Evidence:
    """One finding. `kind` is a stable machine name; `summary` is one sentence for people."""

    kind: str
    indicates: Indication
    strength: Strength
    summary: str
    source: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "indicates": self.indicates.value,
            "strength": self.strength.value,
            "summary": self.summary,
            "source": self.source,
            "details": self.details,
        }
