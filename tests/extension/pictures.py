"""Synthetic pictures for the extension's PDQ tests (tests may not copy the shared images)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def textured_picture(width: int, height: int, seed: int) -> Image.Image:
    """Overlapping waves per channel: photo-like structure, PDQ quality 100."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    channels = []
    for _ in range(3):
        value = np.zeros_like(x)
        for _ in range(6):
            fx, fy, phase = rng.uniform(1, 9), rng.uniform(1, 9), rng.uniform(0, 6.3)
            value += np.sin(2 * np.pi * (fx * x + fy * y) + phase)
        channels.append(value)
    stacked = np.stack(channels, axis=-1)
    stacked = (stacked - stacked.min()) / (np.ptp(stacked) or 1)
    return Image.fromarray((stacked * 255).astype(np.uint8))


def encoded(img: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()
