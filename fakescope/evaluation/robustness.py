"""In-the-wild degradations for robustness sweeps: what platforms do to images on the way.

Each degradation maps an RGB image to an RGB image deterministically. Metadata does not survive
any of them (they re-encode), so robustness runs measure the model alone.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

CLEAN = "clean"


@dataclass(frozen=True)
class Degradation:
    """`family` groups a sweep (jpeg, downscale, crop, screenshot); `level` is its x-axis value."""

    family: str
    level: float

    @property
    def name(self) -> str:
        if self.family == CLEAN:
            return CLEAN
        level = int(self.level) if self.family == "jpeg" else self.level
        return f"{self.family}:{level}"

    def apply(self, image: Image.Image) -> Image.Image:
        return _APPLY[self.family](image.convert("RGB"), self.level)


def _jpeg(image: Image.Image, quality: float) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def _scaled_size(image: Image.Image, factor: float) -> tuple[int, int]:
    return max(1, round(image.width * factor)), max(1, round(image.height * factor))


def _downscale(image: Image.Image, factor: float) -> Image.Image:
    return image.resize(_scaled_size(image, factor), Image.Resampling.LANCZOS)


def _center_crop(image: Image.Image, fraction: float) -> Image.Image:
    """Keep the central `fraction` of each side (a platform's square or zoomed crop)."""
    width, height = _scaled_size(image, fraction)
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return image.crop((left, top, left + width, top + height))


def _screenshot(image: Image.Image, factor: float) -> Image.Image:
    """Displayed smaller, captured, scaled back: bilinear down and up.

    A screenshot is saved as PNG, which is lossless: the pixels are these, so no encoding is
    spent on them (encoding a 12-megapixel PNG costs about a second).
    """
    small = image.resize(_scaled_size(image, factor), Image.Resampling.BILINEAR)
    return small.resize(image.size, Image.Resampling.BILINEAR)


_APPLY = {
    CLEAN: lambda image, _level: image,
    "jpeg": _jpeg,
    "downscale": _downscale,
    "crop": _center_crop,
    "screenshot": _screenshot,
}

DEFAULT_SWEEP: tuple[Degradation, ...] = (
    *(Degradation("jpeg", q) for q in (95, 75, 50, 30)),
    *(Degradation("downscale", f) for f in (0.75, 0.5, 0.25)),
    *(Degradation("crop", f) for f in (0.75, 0.5)),
    *(Degradation("screenshot", f) for f in (0.75, 0.5)),
)
FAMILY_AXES = {
    "jpeg": "JPEG quality",
    "downscale": "scale factor",
    "crop": "center crop (fraction of side)",
    "screenshot": "display scale before capture",
}


def parse_degradation(name: str) -> Degradation:
    """The inverse of `Degradation.name` ("jpeg:75", "downscale:0.5", "clean")."""
    if name == CLEAN:
        return Degradation(CLEAN, 1.0)
    family, _, level = name.partition(":")
    if family not in _APPLY or not level:
        raise ValueError(f"unknown degradation {name!r}")
    return Degradation(family, float(level))


def sweep_conditions(robustness: bool, sweep: Sequence[Degradation] = DEFAULT_SWEEP) -> list[str]:
    return [CLEAN, *(d.name for d in sweep)] if robustness else [CLEAN]
