"""Evidence: one finding about an image, with what it points to and how strongly."""

from __future__ import annotations

import math
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

    def __post_init__(self) -> None:
        # Metadata is attacker-written: JSON escapes ("\\ud800" in a ComfyUI graph or a
        # C2PA manifest) yield lone surrogates, which no UTF-8 output (JSON Lines, HTTP,
        # the database) can encode. Replace them here, once, for every reader. JSON's
        # non-standard NaN and Infinity (json.loads reads them: "cfg": NaN in a ComfyUI graph)
        # are no JSON numbers: PostgreSQL refuses them, strict readers of the CLI's JSON Lines
        # too. They become None (null).
        object.__setattr__(self, "summary", _valid_text(self.summary))
        object.__setattr__(self, "source", _valid_text(self.source))
        object.__setattr__(self, "details", _valid_values(self.details))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "indicates": self.indicates.value,
            "strength": self.strength.value,
            "summary": self.summary,
            "source": self.source,
            "details": self.details,
        }


def _valid_text(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD (text that UTF-8 can encode)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def _valid_values(value: Any) -> Any:
    if isinstance(value, str):
        return _valid_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {_valid_values(k): _valid_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_valid_values(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_valid_values(v) for v in value)
    return value
