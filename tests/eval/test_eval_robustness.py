"""Degradations do what platforms do, deterministically, and round-trip through their names."""

from __future__ import annotations

import pytest
from PIL import Image, ImageChops

from fakescope.evaluation.robustness import (
    CLEAN,
    DEFAULT_SWEEP,
    Degradation,
    parse_degradation,
    sweep_conditions,
)


@pytest.fixture
def photo() -> Image.Image:
    image = Image.linear_gradient("L").resize((200, 120)).convert("RGB")
    return Image.merge(
        "RGB", (image.getchannel(0), image.getchannel(0).rotate(90), image.getchannel(0))
    )


def _differs(a: Image.Image, b: Image.Image) -> bool:
    return ImageChops.difference(a, b).getbbox() is not None


def test_jpeg_recompression_keeps_size_and_loses_detail(photo: Image.Image) -> None:
    out = Degradation("jpeg", 30).apply(photo)
    assert out.size == photo.size and out.mode == "RGB"
    assert _differs(out, photo)
    assert not _differs(out, Degradation("jpeg", 30).apply(photo))  # deterministic


def test_downscale_and_center_crop_change_the_size(photo: Image.Image) -> None:
    assert Degradation("downscale", 0.5).apply(photo).size == (100, 60)
    assert Degradation("downscale", 0.25).apply(photo).size == (50, 30)
    crop = Degradation("crop", 0.5).apply(photo)
    assert crop.size == (100, 60)
    assert not _differs(crop, photo.crop((50, 30, 150, 90)))


def test_screenshot_resampling_keeps_the_size_but_blurs(photo: Image.Image) -> None:
    out = Degradation("screenshot", 0.5).apply(photo)
    assert out.size == photo.size
    assert _differs(out, photo)


def test_names_round_trip_and_the_sweep_starts_clean() -> None:
    for degradation in DEFAULT_SWEEP:
        assert parse_degradation(degradation.name) == degradation
    assert parse_degradation(CLEAN).apply(Image.new("RGB", (3, 3))).size == (3, 3)
    conditions = sweep_conditions(True)
    assert conditions[0] == CLEAN and "jpeg:75" in conditions and "downscale:0.5" in conditions
    assert sweep_conditions(False) == [CLEAN]
    with pytest.raises(ValueError, match="unknown degradation"):
        parse_degradation("blur:3")
