"""FakeScope: transparent forensics for AI-generated images.

The public surface, each name backed by one module:

- `load_model` (loading): a vision-language checkpoint, quantized on GPU.
- `analyze_image`, `inspect_image`, `build_analysis`, `Analysis` (analysis): an image in,
  a verdict out.
- `decode_image`, `ImageLimits` (images): safe decoding, SHA-256 and PDQ identity.
- `read_provenance` (provenance): C2PA, IPTC and generator metadata as `Evidence`.
- `p_fake_from_logits` (scoring): the paper's token-based probability estimation.
- `decide`, `Thresholds` (verdict): how evidence and score combine.
- `evaluate`, `EvalConfig` (evaluation): the paper's benchmarks, metrics and reports.
- `build_tiny_checkpoint` (tiny): a random-weight checkpoint for tests and demos.

Names are imported on first use, so `import fakescope` stays cheap (no torch until a model
is needed).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fakescope.errors import (
    DatasetError,
    EmptyImageError,
    FakeScopeError,
    ImageError,
    ImageTooLargeError,
    LabelTokenError,
    ModelError,
    ModelLoadError,
    QuantizationError,
    UndecodableImageError,
    UnsupportedFormatError,
)
from fakescope.evidence import Evidence, Indication, Strength

__version__ = "0.1.0"

_LAZY = {
    "load_model": "fakescope.loading",
    "ForensicModel": "fakescope.model",
    "ModelInfo": "fakescope.model",
    "analyze_image": "fakescope.analysis",
    "inspect_image": "fakescope.analysis",
    "build_analysis": "fakescope.analysis",
    "Analysis": "fakescope.analysis",
    "Inspection": "fakescope.analysis",
    "decode_image": "fakescope.images",
    "DecodedImage": "fakescope.images",
    "ImageLimits": "fakescope.images",
    "read_provenance": "fakescope.provenance",
    "p_fake_from_logits": "fakescope.scoring",
    "decide": "fakescope.verdict",
    "Thresholds": "fakescope.verdict",
    "build_tiny_checkpoint": "fakescope.tiny",
    "PROMPT_VERSION": "fakescope.prompts",
    "ASPECTS": "fakescope.prompts",
    "evaluate": "fakescope.evaluation.evaluate",
    "EvalConfig": "fakescope.evaluation.evaluate",
}

if TYPE_CHECKING:
    from fakescope.analysis import (
        Analysis,
        Inspection,
        analyze_image,
        build_analysis,
        inspect_image,
    )
    from fakescope.evaluation.evaluate import EvalConfig, evaluate
    from fakescope.images import DecodedImage, ImageLimits, decode_image
    from fakescope.loading import load_model
    from fakescope.model import ForensicModel, ModelInfo
    from fakescope.prompts import ASPECTS, PROMPT_VERSION
    from fakescope.provenance import read_provenance
    from fakescope.scoring import p_fake_from_logits
    from fakescope.tiny import build_tiny_checkpoint
    from fakescope.verdict import Thresholds, decide


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fakescope' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "ASPECTS",
    "PROMPT_VERSION",
    "Analysis",
    "DatasetError",
    "DecodedImage",
    "EmptyImageError",
    "EvalConfig",
    "Evidence",
    "FakeScopeError",
    "ForensicModel",
    "ImageError",
    "ImageLimits",
    "ImageTooLargeError",
    "Indication",
    "Inspection",
    "LabelTokenError",
    "ModelError",
    "ModelInfo",
    "ModelLoadError",
    "QuantizationError",
    "Strength",
    "Thresholds",
    "UndecodableImageError",
    "UnsupportedFormatError",
    "analyze_image",
    "build_analysis",
    "build_tiny_checkpoint",
    "decide",
    "decode_image",
    "evaluate",
    "inspect_image",
    "load_model",
    "p_fake_from_logits",
    "read_provenance",
]
