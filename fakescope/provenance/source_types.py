"""IPTC Digital Source Type codes, shared by the C2PA and XMP readers.

https://cv.iptc.org/newscodes/digitalsourcetype/ — the same vocabulary appears in C2PA
actions (`digitalSourceType`) and in XMP (`Iptc4xmpExt:DigitalSourceType`).
"""

from __future__ import annotations

from enum import Enum

# Made by a model or an algorithm, whole or in part: what FakeScope calls "fake".
GENERATIVE_CODES = frozenset(
    {
        "trainedAlgorithmicMedia",
        "compositeWithTrainedAlgorithmicMedia",
        "algorithmicMedia",
        "compositeSynthetic",
    }
)
# A sensor or film recorded the scene.
CAPTURE_CODES = frozenset(
    {"digitalCapture", "computationalCapture", "negativeFilm", "positiveFilm", "compositeCapture"}
)


class SourceClass(Enum):
    GENERATIVE = "generative"
    CAPTURE = "capture"
    OTHER = "other"


def source_code(value: str) -> str:
    """The bare code of a Digital Source Type URI ("…/trainedAlgorithmicMedia" → the code)."""
    return value.strip().rstrip("/").rsplit("/", 1)[-1]


def classify(value: str) -> SourceClass:
    code = source_code(value)
    if code in GENERATIVE_CODES:
        return SourceClass.GENERATIVE
    if code in CAPTURE_CODES:
        return SourceClass.CAPTURE
    return SourceClass.OTHER
