"""IPTC Digital Source Type codes, shared by the C2PA and XMP readers.

https://cv.iptc.org/newscodes/digitalsourcetype/ — the same vocabulary appears in C2PA
actions (`digitalSourceType`) and in XMP (`Iptc4xmpExt:DigitalSourceType`).
"""

from __future__ import annotations

from enum import Enum

# Made by a trained model, whole or in part: what FakeScope calls "fake".
GENERATIVE_CODES = frozenset({"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"})
# Synthetic, but by IPTC's definitions not from a trained model: "algorithmicMedia" is made
# "purely by an algorithm not based on any sampled training data" (a fractal, a formula),
# "compositeSynthetic" mixes elements "at least one of which is synthetic" (CGI, digital art).
# Not a photograph, yet not what a generative-AI claim means: weak evidence, never decisive.
SYNTHETIC_CODES = frozenset({"algorithmicMedia", "compositeSynthetic"})
# A sensor or film recorded the scene.
CAPTURE_CODES = frozenset(
    {"digitalCapture", "computationalCapture", "negativeFilm", "positiveFilm", "compositeCapture"}
)


class SourceClass(Enum):
    GENERATIVE = "generative"
    SYNTHETIC = "synthetic"
    CAPTURE = "capture"
    OTHER = "other"


def source_code(value: str) -> str:
    """The bare code of a Digital Source Type URI ("…/trainedAlgorithmicMedia" → the code)."""
    return value.strip().rstrip("/").rsplit("/", 1)[-1]


def classify(value: str) -> SourceClass:
    code = source_code(value)
    if code in GENERATIVE_CODES:
        return SourceClass.GENERATIVE
    if code in SYNTHETIC_CODES:
        return SourceClass.SYNTHETIC
    if code in CAPTURE_CODES:
        return SourceClass.CAPTURE
    return SourceClass.OTHER
